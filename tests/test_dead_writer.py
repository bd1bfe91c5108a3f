"""A dead or stopped tracking writer (issue 31, item 3): the job trains on, a new writer takes over its runs,
and every run ends closed with every epoch of its metrics file in the store.

Each test finds the writer (``python -c "from initsweep.writer.server import serve ..."``, a child of the
process that tracks) of a real train.py, signals it mid-training, and reads the store afterwards.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import all_runs, client_for, start_train, writers_of
from initsweep.protocol import Tag
from initsweep.tracking import metrics_file as ledger
from initsweep.writer import client as writer

pytestmark = pytest.mark.slow

FAST = ["diagnostics.enabled=false", "tracking.system_metrics=false"]


def epochs_of(path: Path, run_id: str | None = None) -> list[int]:
    return sorted(step for step, _, values in ledger.read(path, run_id).metrics if "train/loss" in values)


def wait_until(proc: subprocess.Popen, cwd: Path, epochs: int, timeout: float = 120) -> list[Path]:
    """Wait until some job's metrics.jsonl under cwd holds ``epochs`` epochs; returns every such file."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        files = sorted(cwd.glob("*/*/*/**/metrics.jsonl"))
        if any(len(epochs_of(f)) >= epochs for f in files):
            return files
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"no job got {epochs} epochs in (rc {proc.poll()}):\n{proc.communicate()[1][-3000:]}")


def assert_every_run_closed_with_every_epoch(cwd: Path, jobs: int) -> None:
    runs = all_runs(cwd)
    children = [r for r in runs if Tag.PARENT in r.data.tags]
    assert len(children) == jobs and [r.info.status for r in runs] == ["FINISHED"] * len(runs)
    client = client_for(cwd)
    for run in children:
        local = Path(run.data.tags[Tag.METRICS_FILE])
        stored = sorted(m.step for m in client.get_metric_history(run.info.run_id, "train/loss"))
        assert stored == epochs_of(local, run.info.run_id) != [], run.info.run_name


def took_over(stderr: str, times: int = 1) -> None:
    lines = re.findall(r"^initsweep: the tracking writer process \d+ .*took over.*$", stderr, re.M)
    assert len(lines) == times and "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr


def test_kill_9_of_the_writer_of_a_basic_sweep_a_new_one_takes_over_every_run(tmp_path: Path):
    proc = start_train(["-m", "seed=0,1", "trainer.epochs=40", *FAST], tmp_path, {writer.MODE_ENV: "1"})
    wait_until(proc, tmp_path, epochs=3)
    (dead,) = writers_of(proc.pid)  # holds the parent run and the running job's run
    dead.kill()
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    took_over(stderr)
    assert f"process {dead.pid} died (exit status -9)" in stderr
    assert_every_run_closed_with_every_epoch(tmp_path, jobs=2)


def test_sigstop_of_the_writer_costs_a_bounded_wait_then_a_new_one_takes_over(tmp_path: Path):
    env = {writer.MODE_ENV: "1", writer.TIMEOUT_ENV: "2"}
    proc = start_train(["-m", "seed=0", "trainer.epochs=12", *FAST], tmp_path, env)
    wait_until(proc, tmp_path, epochs=2)
    (stopped,) = writers_of(proc.pid)
    stopped.suspend()  # SIGSTOP: alive, answering nothing
    try:
        _, stderr = proc.communicate(timeout=120)
    finally:
        if stopped.is_running():
            stopped.resume()
    assert proc.returncode == 0, stderr
    took_over(stderr)
    assert f"process {stopped.pid} answered nothing for 2 s" in stderr
    assert_every_run_closed_with_every_epoch(tmp_path, jobs=1)


def test_kill_9_of_the_writer_of_a_joblib_study_the_study_goes_on(tmp_path: Path):
    args = ["-m", "hparams_search=normal_std", "hydra.sweeper.n_trials=4", "hydra/launcher=joblib"]
    args += ["hydra.launcher.n_jobs=2", "trainer.epochs=15", "hydra.sweeper.pruner=none", *FAST]
    proc = start_train(args, tmp_path, {writer.MODE_ENV: "1"})
    wait_until(proc, tmp_path, epochs=2)
    mains = [w for w in writers_of(proc.pid) if w.ppid() == proc.pid]  # the study's writer: holds the parent
    workers = [w for w in writers_of(proc.pid) if w.ppid() != proc.pid]  # a worker's: holds a trial's run
    assert len(mains) == 1 and workers
    for w in (mains[0], workers[0]):
        os.kill(w.pid, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    took_over(stderr, times=2)
    assert_every_run_closed_with_every_epoch(tmp_path, jobs=4)


def test_sigkill_of_a_joblib_worker_mid_trial_files_each_trial_once(tmp_path: Path):
    """Issue 31 item 2: the relaunched trial has one FINISHED run; the killed attempt keeps its own epochs under
    its own (KILLED) run, which the relaunch never reuses; nothing stays RUNNING. Killed before its first
    checkpoint (``checkpoint_every=null``: the relaunch starts over; one killed after a checkpoint resumes its run,
    tests/test_trial_resume.py)."""
    args = ["-m", "hparams_search=normal_std", "hydra.sweeper.n_trials=2", "hydra/launcher=joblib"]
    args += ["hydra.launcher.n_jobs=2", "trainer.epochs=30", "hydra.sweeper.pruner=none", *FAST]
    args += ["trainer.checkpoint_every=null"]
    proc = start_train(args, tmp_path)
    running: list = []
    while not running:  # a trial's run that has trained 3 epochs and still runs
        files = wait_until(proc, tmp_path, epochs=3)
        ids = {p.run_id for p in map(ledger.read, files) if p.end is None and len(p.metrics) >= 3}
        running = [r for r in all_runs(tmp_path) if r.info.run_id in ids and r.info.status == "RUNNING"]
    run = running[0]
    victim = run.info.run_id
    os.kill(int(run.data.tags[Tag.PID]), signal.SIGKILL)  # the worker, as the OOM killer would
    _, stderr = proc.communicate(timeout=300)
    assert "already reported" not in stderr, stderr[-3000:]
    assert "Traceback" not in stderr, stderr
    runs = [r for r in all_runs(tmp_path) if Tag.PARENT in r.data.tags]
    assert not [r for r in runs if r.info.status == "RUNNING"]
    finished = sorted(r.data.tags[Tag.TRIAL_NUMBER] for r in runs if r.info.status == "FINISHED")
    assert finished == sorted(set(finished)) and len(finished) == 2, [(r.info.status, r.data.tags) for r in runs]
    client = client_for(tmp_path)
    stored: dict[str, list[int]] = {}
    for r in runs:  # every run holds exactly the epochs its own attempt measured, one value per step
        steps = stored[r.info.run_id] = [m.step for m in client.get_metric_history(r.info.run_id, "train/loss")]
        assert steps == epochs_of(Path(r.data.tags[Tag.METRICS_FILE]), r.info.run_id) == sorted(set(steps))
    # The victim had trained 3 epochs; the other trial's attempt may have none: loky stops every worker when
    # one dies, and on a loaded machine that one can still have been at its start.
    assert len(stored[victim]) >= 3, stored
    killed = [r for r in runs if r.info.run_id == victim]
    assert killed[0].info.status == "KILLED" and killed[0].data.tags["failure"] == "lost", stderr[-4000:]
