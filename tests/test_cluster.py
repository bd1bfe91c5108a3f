"""Scale-out: pure helpers (batch size, device per worker, storage driver) and, marked ``cluster``, real
services started by scripts/services/*.sh (PostgreSQL, `mlflow server`, single-node SLURM).

Start them first (as root): ``make services`` (or the three scripts' ``start``). A service that is not up
when these tests are selected fails the test: nothing is skipped.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from conftest import PG, ROOT, all_runs, client_for, run_train, start_train
from initsweep.core.config import ConfigError
from initsweep.jobs.devices import device_for_worker, job_device, worker_rank
from initsweep.sweep.launchers import batch_size, finish_warm_up, joblib_args, warm_up_joblib_workers
from initsweep.tracking.drivers import check_storage_driver

STATE = Path(os.environ.get("INITSWEEP_SERVICES_DIR", "/tmp/initsweep-services"))
MLFLOW = f"http://127.0.0.1:{os.environ.get('INITSWEEP_MLFLOW_PORT', '5001')}"
QUICK = ("trainer.epochs=1", "diagnostics.enabled=false")


# ---------------------------------------------------------------------------------------------------
# Pure helpers


def test_batch_size_follows_the_launcher():
    assert batch_size(None) == 1  # basic launcher
    assert batch_size({"n_jobs": 3}) == 3  # joblib
    assert batch_size({"n_jobs": -1}, cpu_count=8) == 8
    assert batch_size({"n_jobs": -2}, cpu_count=8) == 7
    assert batch_size({"array_parallelism": 2, "timeout_min": 5}) == 2  # submitit
    assert batch_size({"array_parallelism": 0}) == 1


def test_device_per_worker_with_simulated_device_counts():
    assert [device_for_worker(r, 4) for r in range(6)] == ["cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:0", "cuda:1"]
    assert device_for_worker(3, 0) == "cpu"
    assert device_for_worker(3, 1, visible="2") == "cuda:0"  # SLURM gave this task one GPU
    assert device_for_worker(3, 2, visible="0,1") == "cuda:1"
    assert worker_rank({"SLURM_LOCALID": "2"}) == 2
    assert worker_rank({}, job_num=5, n_workers=2) == 1  # joblib worker
    assert worker_rank({}) == 0


def test_each_parallel_job_trains_on_its_own_gpu_with_simulated_device_counts():
    # joblib n_jobs=2 on 2 GPUs: job k of a batch runs on worker k mod 2
    assert [job_device("cuda", k, 2, n_devices=2, env={}) for k in range(4)] == ["cuda:0", "cuda:1"] * 2
    assert job_device("cuda", 3, 4, n_devices=2, env={}) == "cuda:1"  # more workers than GPUs: shared round robin
    assert job_device("cuda", 5, 2, n_devices=1, env={}) == "cuda"  # one GPU: every job on it
    assert job_device("cpu", 1, 2, n_devices=4, env={}) == "cpu"
    slurm_task = {"SLURM_LOCALID": "3", "CUDA_VISIBLE_DEVICES": "0,1,2,3"}
    assert job_device("cuda", 0, 1, n_devices=4, env=slurm_task) == "cuda:3"  # rank from the SLURM task
    assert job_device("cuda", 0, 1, n_devices=4, env={"SLURM_LOCALID": "3", "CUDA_VISIBLE_DEVICES": "2"}) == "cuda:0"


def _note_pid(folder: Path) -> None:
    time.sleep(0.5)  # long enough for each worker to take one task
    (folder / str(os.getpid())).touch()


def _fail() -> None:
    raise ValueError("no torch here")


def test_joblib_workers_started_early_are_the_ones_the_launch_uses(tmp_path):
    """A joblib sweep starts its workers while its parent run opens; the launch must find them, not new ones."""
    from joblib import Parallel, delayed
    from joblib.externals.loky import get_reusable_executor

    launcher = {"_target_": "the launcher", "n_jobs": 2, "pre_dispatch": "2*n_jobs", "batch_size": "auto"}
    assert joblib_args(launcher) == {"n_jobs": 2, "pre_dispatch": "2*n_jobs", "batch_size": "auto", "backend": "loky"}
    try:
        warm_up_joblib_workers(launcher, functools.partial(_note_pid, tmp_path))
        assert finish_warm_up() is None and finish_warm_up() is None  # the second: nothing left to wait for
        warmed = {int(p.name) for p in tmp_path.iterdir()}
        assert len(warmed) == 2 and os.getpid() not in warmed
        assert set(Parallel(**joblib_args(launcher))(delayed(os.getpid)() for _ in range(4))) <= warmed
        warm_up_joblib_workers(launcher, _fail)
        assert finish_warm_up() == "ValueError: no torch here"  # said, and the launch goes on with new workers
    finally:
        get_reusable_executor().shutdown(wait=True)


def test_storage_driver_check_names_the_extra():
    check_storage_driver(f"{PG}/optuna", "hydra.sweeper.storage")  # psycopg 3 is installed
    check_storage_driver("/tmp/journal.log", "hydra.sweeper.storage")
    check_storage_driver("sqlite:///x.db", "hydra.sweeper.storage")
    with pytest.raises(ConfigError, match=r"hydra.sweeper.storage .*pymysql"):
        check_storage_driver("mysql+pymysql://u:p@h/db", "hydra.sweeper.storage")


# ---------------------------------------------------------------------------------------------------
# Real services


def _require(name: str, ok: bool) -> None:
    if not ok:
        pytest.fail(f"{name} is not running: start it with `make services` (scripts/services/*.sh)")


@pytest.fixture(scope="module")
def postgres() -> str:
    import psycopg

    try:
        psycopg.connect(f"{PG}/optuna", connect_timeout=3).close()
    except psycopg.OperationalError as e:
        _require(f"PostgreSQL ({e})", False)
    return f"{PG}/optuna"


@pytest.fixture(scope="module")
def mlflow_server() -> str:
    try:
        urllib.request.urlopen(f"{MLFLOW}/health", timeout=3).close()
    except OSError:
        _require(f"the MLflow server at {MLFLOW}", False)
    return MLFLOW


@pytest.fixture(scope="module")
def slurm() -> None:
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    _require("SLURM", out.returncode == 0 and out.stdout.strip().startswith(("idle", "mixed", "alloc")))


def _env() -> dict[str, str]:
    return {"PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}


@pytest.mark.cluster
@pytest.mark.slow
def test_missing_driver_is_one_message_exit_2(tmp_path):
    # A scheme whose driver is not installed here: the same path a missing psycopg takes.
    r = run_train(["-m", "hparams_search=normal_std", "hydra.sweeper.storage=mysql+pymysql://u:p@h/db"], tmp_path)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "initsweep: hydra.sweeper.storage" in r.stderr and "Traceback" not in r.stderr


def _set_view_tags(uri: str, experiment_id: str, start: Any) -> None:
    """One study worker's share of the race: the same large tags set on one experiment (as its view)."""
    from mlflow import MlflowClient

    from initsweep.tracking.client import set_experiment_tag

    client = MlflowClient(tracking_uri=uri)
    start.wait(60)
    for i in range(40):
        set_experiment_tag(client, experiment_id, f"view-{i}", "state" * 800)


@pytest.mark.cluster
def test_workers_setting_one_experiment_tag_at_once_all_succeed(mlflow_server):
    """Study workers that open their shared parent at once all set its view tag; MLflow's SQL store reads
    then inserts, so without a retry some of 4 such processes fail on the key's unique constraint."""
    import multiprocessing as mp

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server)
    exp = client.create_experiment(f"tag-race-{uuid.uuid4().hex[:8]}")
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(4)
    procs = [ctx.Process(target=_set_view_tags, args=(mlflow_server, exp, start)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    tags = client.get_experiment(exp).tags
    assert all(tags[f"view-{i}"] == "state" * 800 for i in range(40))


@pytest.mark.cluster
@pytest.mark.slow
@pytest.mark.timeout(1800)  # a hang guard sized for a loaded 2-core CI machine
def test_three_workers_share_one_postgresql_study(tmp_path, new_pg_database, mlflow_server):
    import optuna

    postgres = new_pg_database("workers")  # a new database: the workers also race to create Optuna's schema
    from mlflow import MlflowClient

    study = f"cluster-{uuid.uuid4().hex[:8]}"
    args = [
        sys.executable, str(ROOT / "train.py"), "-m", "hparams_search=normal_std", *QUICK,
        f"hydra.sweeper.storage={postgres}", f"hydra.sweeper.study_name={study}", "hydra.sweeper.n_trials=1",
        f"tracking.uri={mlflow_server}", f"experiment_name={study}", "hydra.sweeper.shared_parent=true",
    ]  # fmt: skip
    env = {**os.environ, **_env()}
    env.pop("MLFLOW_TRACKING_URI", None)
    # Each worker gets a sweep dir of its own; the same sampler seed (the overlay's 0) draws distinct points.
    procs = [
        subprocess.Popen(
            [*args, f"hydra.sweep.dir=multirun/worker{i}"],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for i in range(3)
    ]  # fmt: skip
    outs = [p.communicate(timeout=900)[0] for p in procs]  # generous: a loaded CI machine
    failed = "\n".join(out[-3000:] for p, out in zip(procs, outs, strict=True) if p.returncode != 0)
    assert [p.returncode for p in procs] == [0, 0, 0], failed
    trials = optuna.load_study(study_name=study, storage=postgres).trials
    assert sorted(t.number for t in trials) == [0, 1, 2]
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    assert len({t.params["init.std"] for t in trials}) == 3
    client = MlflowClient(tracking_uri=mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name(study).experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]  # ONE study-level parent run
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags.get("trial_number") for r in children) == ["0", "1", "2"]
    assert parent.info.status == "FINISHED" and parent.data.tags["initsweep.study_parent"] == study
    # The storage URL's password (initsweep:initsweep@) is shown as *** in params, tags, results and the log.
    secret = ":initsweep@"
    recorded = [v for r in runs for v in [*r.data.params.values(), *r.data.tags.values()]]
    assert parent.data.params["optuna.storage"].startswith("postgresql://initsweep:***@")
    assert not [v for v in recorded if secret in v]
    results = list((tmp_path / "multirun").glob("worker*/optimization_results.yaml"))
    assert results and not [f for f in results if secret in f.read_text()]
    assert not [o for o in outs if secret in o]


@pytest.mark.cluster
@pytest.mark.slow
def test_mlflow_server_on_postgresql_receives_a_sweep_with_artifacts(tmp_path, mlflow_server):
    from mlflow import MlflowClient

    experiment = f"cluster-{uuid.uuid4().hex[:8]}"
    r = run_train(
        ["-m", "seed=0,1", *QUICK, f"tracking.uri={mlflow_server}", f"experiment_name={experiment}"], tmp_path
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert not (tmp_path / "mlruns").exists()  # nothing went to a local store
    client = MlflowClient(tracking_uri=mlflow_server)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    parents = [x for x in runs if "mlflow.parentRunId" not in x.data.tags]
    children = [x for x in runs if "mlflow.parentRunId" in x.data.tags]
    assert len(parents) == 1 and len(children) == 2
    assert {x.data.tags["mlflow.parentRunId"] for x in children} == {parents[0].info.run_id}
    for run in children:
        assert run.info.status == "FINISHED" and "val/acc" in run.data.metrics
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # uploaded over HTTP, not written locally
        assert client.list_artifacts(run.info.run_id)
        on_server = STATE / "mlflow-artifacts" / exp.experiment_id / run.info.run_id / "artifacts"
        assert any(on_server.rglob("*")), on_server


@pytest.mark.cluster
@pytest.mark.slow
def test_init_sweep_as_slurm_jobs_under_one_parent(tmp_path, slurm):
    r = run_train(["-m", "hydra/launcher=submitit_slurm", "init=zeros,ones,normal,uniform", *QUICK], tmp_path, _env())
    assert r.returncode == 0, r.stderr[-3000:]
    runs = all_runs(tmp_path)
    parents = [x for x in runs if "mlflow.parentRunId" not in x.data.tags]
    children = [x for x in runs if "mlflow.parentRunId" in x.data.tags]
    assert len(parents) == 1 and len(children) == 4
    assert all(x.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for x in children)
    assert all(x.info.status == "FINISHED" for x in children)
    assert len(list((tmp_path / "multirun").rglob(".submitit/*/*_result.pkl"))) == 4  # each job ran under SLURM


@pytest.mark.cluster
@pytest.mark.slow
def test_a_requeued_slurm_job_resumes_its_run_from_its_checkpoint(tmp_path, slurm):
    """`scontrol requeue` (what preemption does): SLURM sends SIGTERM, the job saves its state and exits; SLURM
    runs it again, and it continues the same MLflow run, every epoch logged once."""
    sweep = ["-m", "hydra/launcher=submitit_slurm", "init=kaiming_normal", "model.width=256", "trainer.epochs=16"]
    proc = start_train([*sweep, "diagnostics.enabled=false", "hydra.sweep.dir=sweep"], tmp_path, env=_env())
    metrics = tmp_path / "sweep" / "0" / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 5):  # a header, epochs 0-3
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.5)
    (job,) = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout.split()
    subprocess.run(["scontrol", "requeue", job], check=True)
    while "PENDING" not in subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout:
        time.sleep(0.5)
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)  # not SLURM's 2-min delay
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    logs = "".join(p.read_text() for p in (tmp_path / "sweep" / ".submitit").rglob("*_log.err"))
    assert "initsweep: resuming run" in logs, logs[-3000:]
    (child,) = [r for r in all_runs(tmp_path) if "mlflow.parentRunId" in r.data.tags]
    assert child.info.status == "FINISHED"
    steps = [m.step for m in client_for(tmp_path).get_metric_history(child.info.run_id, "train/loss")]
    assert steps == list(range(1, 17)), steps  # each epoch once, in the one run


@pytest.mark.cluster
@pytest.mark.slow
def test_study_with_two_parallel_slurm_tasks(tmp_path, postgres, mlflow_server, slurm):
    import shutil

    import optuna

    study = f"cluster-{uuid.uuid4().hex[:8]}"
    for name in ("train.py", "conf"):
        (shutil.copytree if name == "conf" else shutil.copy)(ROOT / name, tmp_path / name)
    env = {**os.environ, **_env(), "STORAGE": postgres, "TRACKING": mlflow_server, "STUDY": study}
    env["PYTHON"] = sys.executable
    cmd = ["sbatch", "--parsable", "--wait", "--array=0-1", str(ROOT / "scripts" / "slurm_study.sbatch")]
    args = ["hparams_search=normal_std", "hydra.sweeper.max_trials=2", *QUICK]  # a budget the 2 tasks share
    r = subprocess.run([*cmd, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    logs = "".join(p.read_text()[-1500:] for p in tmp_path.glob("slurm-*.out"))
    assert r.returncode == 0, r.stderr + logs
    trials = optuna.load_study(study_name=study, storage=postgres).trials
    assert sorted(t.number for t in trials) == [0, 1], logs
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name("initsweep").experiment_id], max_results=1000)
    (parent,) = [r for r in runs if r.data.tags.get("initsweep.study_parent") == study]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["trial_number"] for r in children) == ["0", "1"], logs


@pytest.mark.cluster
@pytest.mark.slow
def test_a_slurm_job_killed_hard_is_reported_not_waited_on(tmp_path, slurm):
    # No slurmdbd here: sacct answers nothing, and submitit alone would wait for this job forever.
    import threading

    import submitit
    from submitit.core.utils import UncompletedJobError

    from initsweep.sweep.launchers import install_slurm_watcher

    assert install_slurm_watcher({"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"})
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm")
    executor.update_parameters(timeout_min=5, slurm_mem_per_cpu=500)
    job = executor.submit(submitit.helpers.CommandFunction(["bash", "-c", "kill -9 $PPID"]))  # SIGKILL the job
    outcome: list = []

    def wait() -> None:
        try:
            outcome.append(job.result())
        except UncompletedJobError as e:
            outcome.append(e)

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    waiter.join(timeout=300)  # a hang guard, not a timing assertion: the watcher polls every <= 60 s
    assert outcome, f"job {job.job_id} still waited on"
    assert isinstance(outcome[0], UncompletedJobError) and job.job_id in str(outcome[0])
    assert job.state in ("FAILED", "CANCELLED", "GONE", "OUT_OF_MEMORY", "NODE_FAIL"), job.state


@pytest.mark.cluster
@pytest.mark.slow
def test_a_study_trial_killed_on_slurm_is_a_failed_trial(tmp_path, slurm):
    import optuna

    from initsweep.tuning.plan import open_storage

    args = ["-m", "hparams_search=normal_std", "hydra/launcher=submitit_slurm", "hydra.sweeper.n_trials=1"]
    args += ["trainer.epochs=2000", "diagnostics.enabled=false", "hydra.sweeper.study_name=killed"]
    env = {**os.environ, **_env()}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        job_id = None
        for _ in range(600):
            files = list((tmp_path / "multirun").rglob(".submitit/*/*_submitted.pkl"))
            ids = [p.name.split("_submitted")[0].rsplit("_", 1)[0] for p in files]
            states = subprocess.run(["squeue", "-h", "-o", "%i %T"], capture_output=True, text=True).stdout.split()
            running = [i for i in ids if f"{i}_0" in states or i in states]
            if running and "RUNNING" in states:
                job_id = running[0]
                break
            time.sleep(0.5)
        assert job_id, "the trial's SLURM job never ran"
        time.sleep(3)  # let it train
        subprocess.run(["scancel", "--full", "--signal=KILL", job_id], check=True)
        out = proc.communicate(timeout=400)[0]
    finally:
        proc.kill()
    assert proc.returncode == 1, out[-3000:]  # 1 failed trial of 1: more than max_failure_rate
    study = optuna.load_study(study_name="killed", storage=open_storage(str(tmp_path / "mlruns/optuna/journal.log")))
    (trial,) = study.trials
    assert trial.state.name == "FAIL" and "UncompletedJobError" in trial.user_attrs["reason"], trial.user_attrs
