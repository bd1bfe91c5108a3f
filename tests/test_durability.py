"""Durability (issue 11 parts 2-4, issue 17 part 3): killed processes, signals under joblib, failing stores.

Each test drives real train.py processes (SIGKILL, SIGTERM, SIGINT to the process group as Ctrl-C sends it)
and counts the records in the store afterwards. Children start in a new session with the default SIGINT
handler, whatever the handlers of the process running pytest.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ROOT, all_runs, client_for, group_gone, reap, run_train, start_train
from initsweep.protocol import Tag
from initsweep.tracking import metrics_file as ledger
from initsweep.tracking import processes
from initsweep.writer import client as writer

pytestmark = pytest.mark.slow


def start(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """train.py ARGS in its own session (its own process group) with default signal handlers."""
    return start_train(args, cwd, env, start_new_session=True)


def epochs_in(path: Path) -> list[int]:
    """The epochs (steps with train/loss) a job's metrics.jsonl holds."""
    return sorted(step for step, _, values in ledger.read(path).metrics if "train/loss" in values)


def wait_for_epochs(proc: subprocess.Popen, cwd: Path, jobs: int, epochs: int, timeout: float = 300) -> list[Path]:
    """Wait until ``jobs`` metrics.jsonl files under cwd each hold at least ``epochs`` epochs."""
    deadline = time.monotonic() + timeout
    while True:
        files = sorted(cwd.glob("*/*/*/**/metrics.jsonl"))
        if len(files) >= jobs and all(len(epochs_in(f)) >= epochs for f in files[:jobs]):
            return files
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"the jobs never got {epochs} epochs in (rc {proc.returncode}):\n{err[-3000:]}")
        time.sleep(0.2)


def store_epochs(cwd: Path, run_id: str) -> list[int]:
    return sorted(m.step for m in client_for(cwd).get_metric_history(run_id, "train/loss"))


def test_sigkill_of_the_trainer_alone_the_tracking_writer_closes_its_run_with_every_epoch(tmp_path: Path):
    proc = start(["trainer.epochs=500", "diagnostics.enabled=false"], tmp_path)
    (local,) = wait_for_epochs(proc, tmp_path, jobs=1, epochs=3)
    proc.kill()  # SIGKILL of train.py only: its tracking writer (initsweep.writer.client) lives on
    proc.wait(timeout=60)
    done = epochs_in(local)
    assert group_gone(proc.pid), "the tracking writer outlived its trainer"
    (run,) = all_runs(tmp_path)  # closed without any later process
    assert run.info.status == "KILLED" and run.data.tags["failure"] == "lost"
    assert f"process {proc.pid}" in run.data.tags["failure.reason"]
    assert store_epochs(tmp_path, run.info.run_id) == done == list(range(1, len(done) + 1))


def test_sigkill_keeps_every_completed_epoch_and_the_next_process_closes_the_run(tmp_path: Path):
    proc = start(["trainer.epochs=500", "diagnostics.enabled=false"], tmp_path)
    (local,) = wait_for_epochs(proc, tmp_path, jobs=1, epochs=3)
    os.killpg(proc.pid, signal.SIGKILL)  # trainer and tracking writer at once: no handler, no exit hook runs
    proc.wait(timeout=60)
    assert group_gone(proc.pid)
    done = epochs_in(local)
    (run,) = all_runs(tmp_path)
    assert run.info.status == "RUNNING"  # what a dead process leaves behind
    tags = run.data.tags
    assert tags[Tag.HOST] and tags[Tag.PID] == str(proc.pid) and tags[Tag.METRICS_FILE] == str(local.resolve())

    closed = reap(tmp_path)
    assert closed.returncode == 0, closed.stderr
    (run,) = all_runs(tmp_path)
    assert run.info.status == "KILLED" and run.data.tags["failure"] == "lost"
    assert f"process {proc.pid}" in run.data.tags["failure.reason"]
    assert store_epochs(tmp_path, run.info.run_id) == done == list(range(1, len(done) + 1))


def test_a_live_run_and_a_reused_pid_are_told_apart():
    from types import SimpleNamespace

    from initsweep.tracking.recovery import lost_because

    me = processes.identity()
    ticks = Path(f"/proc/{me['pid']}/stat").read_text().rsplit(")", 1)[1].split()[19]  # how older runs said it

    def run(**tags):
        return SimpleNamespace(data=SimpleNamespace(tags={Tag.HOST: me["host"], **tags}))

    assert lost_because(run(**{Tag.PID: me["pid"], Tag.PID_START: me["pid_start"]})) is None
    assert lost_because(run(**{Tag.PID: me["pid"], Tag.PID_START: ticks})) is None
    assert lost_because(run(**{Tag.PID: me["pid"], Tag.PID_START: "1"})) is not None  # same pid, other process
    other = SimpleNamespace(data=SimpleNamespace(tags={Tag.HOST: "elsewhere", Tag.PID: "1", Tag.HEARTBEAT: "0"}))
    assert "no heartbeat from elsewhere" in lost_because(other)


JOBLIB = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "diagnostics.enabled=false"]


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_joblib_interrupt_closes_every_run_and_leaves_no_worker(tmp_path: Path, how: str):
    proc = start([*JOBLIB, "seed=0,1", "trainer.epochs=500"], tmp_path)
    wait_for_epochs(proc, tmp_path, jobs=2, epochs=1)
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)  # the terminal sends SIGINT to the whole foreground group
    else:
        proc.send_signal(signal.SIGTERM)  # to the main process only
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyError" not in stderr, stderr
    assert len(re.findall(r"^initsweep: interrupted", stderr, re.M)) == 1, stderr
    assert group_gone(proc.pid), "workers outlived the sweep"
    runs = all_runs(tmp_path)
    children = [r for r in runs if Tag.PARENT in r.data.tags]
    assert len(runs) == 3 and len(children) == 2
    assert [r.info.status for r in runs] == ["KILLED"] * 3
    for child in children:
        assert child.data.tags["failure"] == "interrupted", child.data.tags.get("failure.reason")
        local = Path(child.data.tags[Tag.METRICS_FILE])
        assert store_epochs(tmp_path, child.info.run_id) == epochs_in(local) != [], child.data.tags["failure"]


def test_joblib_worker_killed_the_sweep_says_so_and_its_run_is_killed(tmp_path: Path):
    proc = start([*JOBLIB, "seed=0,1", "trainer.epochs=40"], tmp_path)
    running: list = []
    while not running:  # a job's run that has trained an epoch and still runs (a job may end first)
        files = wait_for_epochs(proc, tmp_path, jobs=1, epochs=1)
        ids = {p.run_id for p in map(ledger.read, files) if p.end is None}
        running = [r for r in all_runs(tmp_path) if r.info.run_id in ids and r.info.status == "RUNNING"]
    victim_run = running[0].info.run_id
    os.kill(int(running[0].data.tags[Tag.PID]), signal.SIGKILL)  # as the OOM killer would
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 1, stderr
    assert group_gone(proc.pid)
    runs = {r.info.run_id: r for r in all_runs(tmp_path) if Tag.ROLE not in r.data.tags}
    assert runs[victim_run].info.status == "KILLED" and runs[victim_run].data.tags["failure"] == "lost"
    assert not [r for r in runs.values() if r.info.status == "RUNNING"]
    # The jobs without a result were launched again and finished: the sweep names them once each, and counts
    # none of them as failed.
    relaunched = re.search(r"a worker died; (\d+) job\(s\) without a result were launched again", stderr)
    assert relaunched and 1 <= int(relaunched[1]) <= 2 and "job(s) failed" not in stderr, stderr
    assert sorted(r.data.params["seed"] for r in runs.values() if r.info.status == "FINISHED") == ["0", "1"]


# Fault injection: from the first batch of metrics of epoch 2 on, every write to the store fails as on a
# full disk (the same error SQLite raises then); reads still work.
DISK_FULL_HOOK = """
import sqlite3
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as S
full = []
def failing(name):
    original = getattr(S, name)
    def call(self, *args, **kwargs):
        metrics = kwargs.get("metrics") or (args[1] if name == "log_batch" and len(args) > 1 else None) or []
        if any(m.step >= 2 and m.key == "train/loss" for m in metrics):
            full.append(1)
        if full:
            raise sqlite3.OperationalError("database or disk is full")
        return original(self, *args, **kwargs)
    setattr(S, name, call)
for name in ("log_batch", "set_tag", "update_run_info", "create_run", "log_metric", "log_param"):
    failing(name)
"""


# Two of the four combinations of (run, multirun) x (tracking writer, in-process logging), so that each shape
# and each logging path is covered once (the other two took a minute of CI and covered no other code).
@pytest.mark.parametrize(
    "multirun, tracking_writer", [(False, "0"), (True, "1")], ids=["run-in-process", "multirun-writer"]
)
def test_full_disk_never_looks_like_success_and_keeps_the_metrics(tmp_path: Path, multirun: bool, tracking_writer):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(DISK_FULL_HOOK)
    args = ["-m", "seed=0,1"] if multirun else []
    env = {"PYTHONPATH": f"{hook}{os.pathsep}{ROOT / 'src'}", writer.MODE_ENV: tracking_writer}
    proc = run_train([*args, "trainer.epochs=3", "diagnostics.enabled=false"], cwd=tmp_path, env=env)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "database or disk is full" in proc.stderr and "metrics.jsonl" in proc.stderr
    runs = [r for r in all_runs(tmp_path) if Tag.ROLE not in r.data.tags]
    # The multirun's second job creates its run only when that reaches the store before the first job's failed
    # metrics (the writer creates a run ahead of posted writes); either way no run looks like a success.
    assert 1 <= len(runs) <= (2 if multirun and tracking_writer == "1" else 1)
    assert not [r for r in runs if r.info.status == "FINISHED"]
    files = list(tmp_path.glob("*/*/*/**/metrics.jsonl"))
    assert len(files) == len(runs)
    for local in files:
        assert epochs_in(local) == [1, 2, 3] and ledger.read(local).end["failure"] == "tracking"

    assert reap(tmp_path).returncode == 0  # later, with space again: the files' verdicts and metrics are applied
    after = [r for r in all_runs(tmp_path) if Tag.ROLE not in r.data.tags]
    assert len(after) == len(runs)
    for run in after:
        assert run.info.status == "FAILED" and run.data.tags["failure"] == "tracking"
        assert store_epochs(tmp_path, run.info.run_id) == [1, 2, 3]


# Fault injection: the store refuses to close the first run it is asked to close FINISHED.
REFUSED_END_HOOK = """
from mlflow.entities import RunStatus
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as S
original, refused = S.update_run_info, []
def update_run_info(self, run_id, run_status, end_time, run_name):
    if RunStatus.to_string(run_status) == "FINISHED" and not refused:
        refused.append(run_id)
        raise OSError("disk I/O error")
    return original(self, run_id, run_status, end_time, run_name)
S.update_run_info = update_run_info
"""


def test_a_sweep_job_whose_end_the_store_refuses_fails_the_sweep_but_not_the_next_job(tmp_path: Path):
    """A sweep's jobs do not wait for their run to be closed (initsweep.writer.client); a refusal read later is said,
    recorded in the job's metrics.jsonl, and fails the sweep, while the next job trains and finishes."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(REFUSED_END_HOOK)  # imports MLflow: the writer must be asked for
    env = {"PYTHONPATH": f"{hook}{os.pathsep}{ROOT / 'src'}", writer.MODE_ENV: "1"}
    proc = run_train(["-m", "seed=0,1", "trainer.epochs=2", "diagnostics.enabled=false"], cwd=tmp_path, env=env)
    assert proc.returncode == 1, proc.stderr
    assert "disk I/O error" in proc.stderr and "Traceback" not in proc.stderr
    assert (
        "FAILED: OSError: disk I/O error, kept in" in proc.stderr
        and "1 job(s) failed: init=normal seed=0" in proc.stderr
    )
    runs = {r.data.tags.get(Tag.JOB_NUM): r for r in all_runs(tmp_path) if Tag.ROLE not in r.data.tags}
    assert runs["1"].info.status == "FINISHED"
    # closed by the sweep's summary from the job's metrics.jsonl (initsweep.tracking.recovery), as the job said
    assert runs["0"].info.status == "FAILED" and runs["0"].data.tags[Tag.FAILURE] == "tracking"
    files = {path.parent.name: ledger.read(path).end for path in tmp_path.glob("multirun/*/*/*/metrics.jsonl")}
    assert files["0"]["end"] == "FAILED" and files["0"]["failure"] == "tracking"
    assert files["1"]["end"] == "FINISHED"


def test_corrupt_mlflow_db_names_the_file_and_launches_no_job(tmp_path: Path):
    db = tmp_path / "mlruns" / "mlflow.db"
    db.parent.mkdir()
    db.write_bytes(b"\x13\x37 not sqlite " * 400)
    proc = run_train(["-m", "seed=0,1", "trainer.epochs=1"], cwd=tmp_path)
    assert proc.returncode == 2
    assert f"initsweep: cannot open the MLflow store sqlite:///{db}: {db} is not a readable SQLite" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("initsweep:") == 1
    assert not list(tmp_path.glob("multirun/*/*/0"))


@pytest.mark.parametrize("garbage", [b"\xd2\x00\xff" * 300, b'{"op_code": 0, "worker_id"\n{not json}\n'])
def test_corrupt_optuna_journal_names_the_file_and_launches_no_job(tmp_path: Path, garbage: bytes):
    journal = tmp_path / "mlruns" / "optuna" / "journal.log"
    journal.parent.mkdir(parents=True)
    journal.write_bytes(garbage)
    proc = run_train(["-m", "hparams_search=normal_std", "hydra.sweeper.n_trials=2", "trainer.epochs=1"], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert f"the Optuna storage {journal} cannot be read" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("initsweep:") == 1
    assert not list(tmp_path.glob("multirun/*/*/0"))


def test_metrics_file_is_one_flushed_line_per_epoch(tmp_path: Path):
    """The local record alone: every epoch a line, read back with non-finite values intact."""
    f = ledger.MetricsFile(tmp_path / "metrics.jsonl", "run1", "sqlite:///x")
    f.metrics({"train/loss": 1.5, "val/loss": float("nan")}, step=1, ts_ms=10)
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])["s"] == 1  # on disk already
    f.flushed(1)
    f.metrics({"train/loss": float("inf")}, step=2, ts_ms=20)
    with (tmp_path / "metrics.jsonl").open("a") as torn:
        torn.write('{"s": 3, "t"')  # a write cut short by SIGKILL
    rec = ledger.read(tmp_path / "metrics.jsonl")
    assert rec.run_id == "run1" and rec.flushed == 1 and rec.end is None
    assert [s for s, _, _ in rec.metrics] == [1, 2] and rec.metrics[1][2]["train/loss"] == float("inf")


def test_a_joblib_worker_whose_job_was_interrupted_starts_no_other_job(monkeypatch):
    """Ctrl-C / SIGTERM of a joblib sweep: loky hands a worker whose job was interrupted the next queued job while
    the sweep's process waits for the running ones; that job created a run the sweep then killed (``failure=lost``,
    0 epochs; issue 31 re-run, scenario 38). It now exits 130 before it reads its config or creates a run."""
    from initsweep.jobs import job

    monkeypatch.setattr(job._Worker, "interrupted", True)
    with pytest.raises(SystemExit) as stopped:
        job.run_job(None)  # type: ignore[arg-type]  # never read: nothing of the job runs
    assert stopped.value.code == 130


def test_a_signal_while_the_run_is_created_ends_it_interrupted(tmp_path, monkeypatch):
    """Ctrl-C / SIGTERM arriving while the store creates the job's run (the store has it, the job not yet): the
    run was left RUNNING, then closed ``failure=lost`` with no epochs (issue 31 re-run, scenario 38). The signal
    is deferred until the run is here, which then ends ``KILLED``, ``failure=interrupted``."""
    from conftest import client_for, compose, store_uri
    from initsweep.jobs.job import JobContext, execute
    from initsweep.tracking.local_store import LocalStore

    created = LocalStore.start_run

    def start_run_hit_by_ctrl_c(self, *args, **kwargs):
        logger = created(self, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)  # delivered once the store has the run, before the job gets it
        return logger

    monkeypatch.setattr(LocalStore, "start_run", start_run_hit_by_ctrl_c)
    uri = store_uri(tmp_path)
    cfg = compose(["trainer.epochs=1", "model.width=8", "diagnostics.enabled=false", f"tracking.uri={uri}"])
    with pytest.raises(KeyboardInterrupt):
        execute(cfg, ctx=JobContext())
    client = client_for(tmp_path)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert (run.info.status, run.data.tags.get(Tag.FAILURE)) == ("KILLED", "interrupted")
