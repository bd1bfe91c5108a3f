"""The tracking writer (initsweep.writer): when it is used, and what a job's process then imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT, all_runs, run_train
from initsweep import ledger, writer


@pytest.mark.parametrize(
    ("mode", "mlflow_loaded", "expected"),
    [("0", False, False), ("1", True, True), ("auto", False, True), ("auto", True, False)],
)
def test_the_writer_serves_processes_without_mlflow_unless_told(monkeypatch, mode, mlflow_loaded, expected):
    monkeypatch.setenv(writer.MODE_ENV, mode)
    monkeypatch.setattr(writer, "_writer", None)
    modules = dict(sys.modules)
    if not mlflow_loaded:
        modules.pop("mlflow", None)
    else:
        modules.setdefault("mlflow", object())
    monkeypatch.setattr(sys, "modules", modules)
    assert writer.wanted() is expected


def test_a_single_run_never_imports_mlflow_in_the_training_process(tmp_path):
    """The job's process trains; its writer imports MLflow and writes the run, which ends FINISHED."""
    probe = (
        "import runpy, sys, atexit\n"
        "atexit.register(lambda: print('MLFLOW_IN_TRAINER', 'mlflow' in sys.modules))\n"
        f"sys.argv = [{str(ROOT / 'train.py')!r}, 'trainer.epochs=2', 'tracking.log_plots=false']\n"
        f"runpy.run_path({str(ROOT / 'train.py')!r}, run_name='__main__')\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "MLFLOW_IN_TRAINER False" in proc.stdout
    (run,) = all_runs(tmp_path)
    assert run.info.status == "FINISHED" and "train/loss" in run.data.metrics


def test_an_unusable_store_is_reported_through_the_writer_before_training(tmp_path):
    (tmp_path / "mlruns").write_text("not a directory")
    proc = run_train(["trainer.epochs=2"], cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("initsweep: ") and "Traceback" not in proc.stderr
    assert f"the MLflow store directory {tmp_path / 'mlruns'} is not a writable directory" in proc.stderr
    assert not list(tmp_path.glob("outputs/*/*/metrics.jsonl"))  # no run, nothing trained


def test_a_zombie_is_not_alive():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    while ledger._proc_stat(child.pid) is not None and ledger._proc_stat(child.pid)[0] not in "ZX":
        pass  # exited but not waited for: a zombie
    start = ledger._proc_start(child.pid)
    assert not ledger.alive(child.pid, start)
    child.wait()
    assert not ledger.alive(child.pid, start)
