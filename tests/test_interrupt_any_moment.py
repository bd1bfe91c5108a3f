"""Ctrl-C at any moment of a sweep (issue 30, item 6): while the command loads, before its first job, while its
parent run is being opened, between jobs, during a job, during the summary, the sweep exits and leaves nothing
RUNNING in the store, as read by a plain MLflow client (no later initsweep process cleans up), and no sweep dir
holding only its lock."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from conftest import all_runs, start_train
from initsweep.tracking.locks import LOCK_FILE

SWEEP = ["-m", "init=zeros,normal,uniform", "trainer.epochs=3", "model.width=32", "tracking.log_plots=false"]


@pytest.mark.slow
@pytest.mark.parametrize("after_s", [0.3, 0.8, 1.6, 2.4, 3.2, 4.5, 6.0, 8.0])
def test_ctrl_c_at_any_moment_leaves_nothing_running(tmp_path: Path, after_s: float) -> None:
    proc = start_train([*SWEEP, "hydra.sweep.dir=sweep"], tmp_path, start_new_session=True)
    time.sleep(after_s)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, 130), err[-2000:]
    assert "Traceback" not in err, err[-3000:]
    if (tmp_path / "mlruns" / "mlflow.db").exists():
        running = [r.info.run_name for r in all_runs(tmp_path) if r.info.status == "RUNNING"]
        assert not running, f"left RUNNING after SIGINT at {after_s} s: {running}\n{err[-2000:]}"
    sweep = tmp_path / "sweep"
    assert not sweep.exists() or {p.name for p in sweep.iterdir()} != {LOCK_FILE}, "a lock-only sweep dir"
