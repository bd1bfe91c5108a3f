"""Storage faults mid-sweep (issue 31 item 5): a job the store fails fails alone, in one line; the sweep goes on
and ends with the list of those jobs and the command that runs them again."""

from __future__ import annotations

import logging
import os
import shlex
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import RunTag
from mlflow.exceptions import MlflowException

from conftest import ROOT, all_runs, run_train, store_uri
from initsweep.protocol import STORE_FAILED_FILE, Failure, Tag, one_line, record_store_failure, store_failures
from initsweep.report.console import quiet_libraries
from initsweep.sweep.resume import rerun_command, store_failure_lines
from initsweep.tracking import client as tracking
from initsweep.tracking import recovery
from initsweep.tracking.metrics_file import MetricsFile
from initsweep.writer import client as writer

# Fault injection: the store fails every run created after the first two (the sweep's parent run and job 0), as
# MLflow's SQLite store fails on a replaced or read-only file: inside its session, which logs the error (with
# a traceback) on the `mlflow.store.db.utils` logger before raising it.
CREATE_FAILS_HOOK = """
import sqlite3
import sqlalchemy.exc
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as S
original, created = S.create_run, []
def create_run(self, *args, **kwargs):
    created.append(1)
    if len(created) <= 2:
        return original(self, *args, **kwargs)
    with self.ManagedSessionMaker():
        error = sqlite3.OperationalError("attempt to write a readonly database")
        raise sqlalchemy.exc.OperationalError("INSERT INTO runs ...", {}, error)
S.create_run = create_run
"""

ARGS = ["-m", "init=zeros,ones,normal", "trainer.epochs=2", "model.width=16", "diagnostics.enabled=false"]
ARGS += ["tracking.log_plots=false", "hydra.sweep.dir=multirun/faults"]


@pytest.mark.slow
def test_jobs_the_store_fails_are_listed_with_the_command_that_runs_them_again(tmp_path: Path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(CREATE_FAILS_HOOK)
    env = {"PYTHONPATH": f"{hook}{os.pathsep}{ROOT / 'src'}", writer.MODE_ENV: "1"}
    proc = run_train(ARGS, cwd=tmp_path, env=env)
    err = proc.stderr
    assert proc.returncode == 1, err
    assert "Traceback" not in err and "ERROR mlflow" not in err and len(err.splitlines()) < 15, err
    assert "initsweep: job 1 not run: cannot create a run in" in err and "job 2 not run" in err
    listed = err[err.index("job(s) failed on the tracking store") :]
    assert "#1 (init=ones" in listed and "#2 (init=normal" in listed and "#0" not in listed
    runs = all_runs(tmp_path)
    jobs = {r.data.tags[Tag.JOB_NUM]: r for r in runs if Tag.ROLE not in r.data.tags}
    assert list(jobs) == ["0"] and jobs["0"].info.status == "FINISHED"
    (parent,) = [r for r in runs if Tag.ROLE in r.data.tags]
    assert parent.info.status == "FAILED" and parent.data.tags[Tag.FAILURE] == "tracking"

    # The store takes writes again: the command the sweep printed (same hydra.sweep.dir) finishes the sweep.
    command = shlex.split(err.rsplit(" with: ", 1)[1].strip())
    assert command[:2] == ["python", str(ROOT / "train.py")] and "hydra.sweep.dir=multirun/faults" in command
    again = run_train(command[2:], cwd=tmp_path, env={"PYTHONPATH": str(ROOT / "src")})
    assert again.returncode == 0, again.stderr
    assert "1 of 3 jobs already finished; running 2" in again.stderr
    runs = [r for r in all_runs(tmp_path) if Tag.ROLE not in r.data.tags]
    assert sorted(r.data.tags[Tag.JOB_NUM] for r in runs) == ["0", "1", "2"]
    assert {r.info.status for r in runs} == {"FINISHED"}


def test_a_store_failure_is_one_line_per_job_each_job_once(tmp_path: Path):
    record_store_failure(tmp_path, 1, ["init=ones", "seed=0"], "cannot create a run: MlflowException: x\n[SQL: ...]")
    record_store_failure(tmp_path, 2, ["init=normal"], "the store refused the metrics")
    record_store_failure(tmp_path, 2, ["init=normal"], "the store refused the metrics")  # said twice: listed once
    assert (tmp_path / STORE_FAILED_FILE).read_text().count("\n") == 3
    assert store_failures(tmp_path) == [
        "#1 (init=ones seed=0): cannot create a run: MlflowException: x [SQL: ...]",
        "#2 (init=normal): the store refused the metrics",
    ]
    assert store_failures(tmp_path / "none") == []


def test_one_line_keeps_the_type_and_the_first_line():
    assert one_line(RuntimeError("attempt to write\n[SQL: INSERT]\n(Background)")) == "RuntimeError: attempt to write"
    url = "http://127.0.0.1:9/api/2.0/mlflow/runs/create"
    refused = (  # MLflow's message when nothing listens (mlflow 3.x, urllib3 2.x)
        f"API request to {url} failed with exception HTTPConnectionPool(host='127.0.0.1', port=9): Max retries "
        f'exceeded with url: /api/2.0/mlflow/runs/create (Caused by NewConnectionError("HTTPConnection(host='
        f"'127.0.0.1', port=9): Failed to establish a new connection: [Errno 111] Connection refused\"))"
    )
    assert one_line(RuntimeError(refused)) == (
        f"RuntimeError: API request to {url} failed: "
        "Failed to establish a new connection: [Errno 111] Connection refused"
    )
    assert one_line(OSError()) == "OSError"


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["train.py", "-m", "init=a,b"], "python train.py -m init=a,b hydra.sweep.dir=multirun/x"),
        (["/p/initsweep", "-m", "hydra.sweep.dir=old", "s=1"], "/p/initsweep -m s=1 hydra.sweep.dir=multirun/x"),
        (
            ["/p/initsweep/__main__.py", "-m", "a='b c'"],
            "python -m initsweep -m 'a='\"'\"'b c'\"'\"'' hydra.sweep.dir=multirun/x",
        ),
    ],
)
def test_the_rerun_command_is_the_same_command_into_the_same_dir(argv: list[str], expected: str):
    assert rerun_command(argv, Path("multirun/x")) == expected


def test_the_end_of_sweep_list_names_each_job_the_parent_and_the_command():
    lines = store_failure_lines(["#1 (init=ones): refused", "#2 (init=normal): refused"], "python train.py -m", "P")
    assert len(lines) == 4 and lines[0].startswith("initsweep: 2 job(s) failed on the tracking store")
    assert lines[1:3] == ["  #1 (init=ones): refused", "  #2 (init=normal): refused"]
    assert lines[3].startswith("initsweep: P;") and lines[3].endswith("with: python train.py -m")


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_mlflow_store_error_records_are_dropped_and_others_kept():
    quiet_libraries()
    quiet_libraries()  # idempotent: one filter per logger
    store = logging.getLogger("mlflow.store.db.utils")
    monitor = logging.getLogger("mlflow.system_metrics.system_metrics_monitor")
    assert len(store.filters) == 1
    kept = _Kept()
    for logger in (store, monitor):
        logger.addHandler(kept)
    try:
        try:
            raise RuntimeError("attempt to write a readonly database")
        except RuntimeError:
            store.exception("SQLAlchemy database error. The following exception is caught.\n%s", "x")
        monitor.warning("Failed to log system metrics: x")
        store.error("another error")
        monitor.error("another monitor error")
    finally:
        for logger in (store, monitor):
            logger.removeHandler(kept)
    assert kept.messages == ["another error", "another monitor error"]


def test_recovery_sends_a_run_the_store_failed_what_its_file_kept(tmp_path: Path):
    """A run closed FAILED, failure=tracking while the store refused its metrics: once the store takes writes,
    ``python -m initsweep.tracking.recovery`` (its main) sends the lines the file has after its last flushed mark."""
    uri = store_uri(tmp_path)
    client = tracking.connect(uri)
    exp_id = tracking.experiment_id(client, "faults")
    run_id = client.create_run(exp_id).info.run_id
    local = MetricsFile(tmp_path / "metrics.jsonl", run_id, uri)
    local.metrics({"train/loss": 2.0}, 1, 1000)
    local.flushed(1)  # epoch 1 reached the store, epochs 2 and 3 were refused
    client.log_metric(run_id, "train/loss", 2.0, 1000, 1)
    local.metrics({"train/loss": 1.5}, 2, 2000)
    local.metrics({"train/loss": 1.0}, 3, 3000)
    local.end("FAILED", Failure.TRACKING.value, "the store refused the metrics")
    client.set_tag(run_id, Tag.FAILURE, Failure.TRACKING.value)
    client.set_tag(run_id, Tag.METRICS_FILE, str(local.path))
    client.set_terminated(run_id, "FAILED")

    assert recovery.main([uri]) == 0
    assert [m.step for m in client.get_metric_history(run_id, "train/loss")] == [1, 2, 3]
    assert client.get_run(run_id).data.tags[Tag.UPLOADED] == "2"
    assert recovery.complete_refused(client) == []  # once
    assert client.get_run(run_id).info.status == "FAILED"


def test_recovery_on_a_store_that_still_refuses_writes_says_so_in_one_line(tmp_path: Path, monkeypatch, capsys):
    """Recovery run while the disk is still full: one ``initsweep:`` line and exit 1 (it was a traceback), and
    the run is left for the next recovery (no ``initsweep.uploaded`` tag)."""
    uri = store_uri(tmp_path)
    client = tracking.connect(uri)
    run_id = client.create_run(tracking.experiment_id(client, "faults")).info.run_id
    local = MetricsFile(tmp_path / "metrics.jsonl", run_id, uri)
    local.metrics({"train/loss": 2.0}, 1, 1000)
    local.end("FAILED", Failure.TRACKING.value, "the store refused the metrics")
    client.log_batch(
        run_id, tags=[RunTag(Tag.FAILURE, Failure.TRACKING.value), RunTag(Tag.METRICS_FILE, str(local.path))]
    )
    client.set_terminated(run_id, "FAILED")
    full = MlflowException("(sqlite3.OperationalError) database or disk is full")
    monkeypatch.setattr(MlflowClient, "log_batch", lambda *a, **k: (_ for _ in ()).throw(full))

    assert recovery.main([uri]) == 1
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("initsweep:")]
    assert "Traceback" not in err
    assert line.startswith("initsweep: recovery stopped") and "disk is full" in line
    assert Tag.UPLOADED not in client.get_run(run_id).data.tags


# The store refuses the study's results on its parent run (the batch holding study/n_complete), as a store that
# stopped taking writes at the end of a study does.
RESULTS_FAIL_HOOK = """
import sqlite3
import sqlalchemy.exc
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as S
original = S.log_batch
def log_batch(self, run_id, metrics, params, tags):
    if any(m.key == "study/n_complete" for m in metrics):
        error = sqlite3.OperationalError("database or disk is full")
        raise sqlalchemy.exc.OperationalError("INSERT INTO metrics ...", {}, error)
    return original(self, run_id, metrics, params, tags)
S.log_batch = log_batch
"""


@pytest.mark.slow
def test_a_study_whose_results_the_store_refuses_says_so_in_one_line(tmp_path: Path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(RESULTS_FAIL_HOOK)
    env = {"PYTHONPATH": f"{hook}{os.pathsep}{ROOT / 'src'}"}
    args = ["-m", "hparams_search=normal_std", "hydra.sweeper.n_trials=2", "trainer.epochs=1", "model.width=16"]
    proc = run_train([*args, "diagnostics.enabled=false", "tracking.log_plots=false"], cwd=tmp_path, env=env)
    err = proc.stderr
    assert "Traceback" not in err, err
    (line,) = [x for x in err.splitlines() if "results were not logged" in x]
    assert "database or disk is full" in line and "optimization_results.yaml" in line
    trials = [r for r in all_runs(tmp_path) if Tag.ROLE not in r.data.tags]
    assert sorted(r.data.tags[Tag.TRIAL_NUMBER] for r in trials) == ["0", "1"]  # the trials are all there


def test_a_full_disk_under_the_sweep_dir_stops_the_sweep_in_one_line(tmp_path: Path, capsys, monkeypatch):
    """Hydra writes a job's .hydra/ config before the job runs: a full disk there stops the sweep (every later
    job would fail the same way) in one line with the command that resumes it."""
    import errno

    from initsweep.sweep.resume import RemainingJobsLauncher

    class FullDisk:  # Hydra's launcher at the moment its config save hits a full disk
        def launch(self, batch, initial_job_idx):
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "3" / ".hydra" / "config.yaml"))

    monkeypatch.setattr("sys.argv", ["train.py", "-m", "init=zeros,ones"])
    with pytest.raises(SystemExit) as stopped:
        RemainingJobsLauncher(FullDisk(), tmp_path).launch([["init=zeros"], ["init=ones"]], 0)
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("initsweep:")]
    assert "Traceback" not in err
    assert line.startswith("initsweep: the sweep stopped: No space left on device writing ") and "config.yaml" in line
    assert line.endswith(f"once there is space: python train.py -m init=zeros,ones hydra.sweep.dir={tmp_path}")


def test_a_job_log_file_that_cannot_be_written_says_so_once(capsys):
    from initsweep.report.console import JobLogFile

    handler = JobLogFile("/dev/full")  # every write: ENOSPC
    log = logging.getLogger("test_job_log_file")
    log.addHandler(handler)
    try:
        for _ in range(3):
            log.warning("a line that cannot be written")
    finally:
        log.removeHandler(handler)
        handler.close()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write /dev/full" in err and "No space left on device" in err, err
    assert "Traceback" not in err


def test_recovery_help_prints_usage_and_opens_no_store(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        recovery.main(["--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: python -m initsweep.tracking.recovery [-h] [uri]")
    assert not list(tmp_path.iterdir())  # "--help" is no store URI
