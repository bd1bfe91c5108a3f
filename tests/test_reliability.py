"""Reliability, each shown by a real train.py subprocess and then read back from its store."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from conftest import all_runs, client_for, run_train, start_train
from initsweep.protocol import Tag

pytestmark = pytest.mark.slow


def _children(directory: Path) -> list:
    return [r for r in all_runs(directory) if Tag.PARENT in r.data.tags]


def _parent(directory: Path):
    (parent,) = [r for r in all_runs(directory) if Tag.PARENT not in r.data.tags]
    return parent


def _steps(directory: Path, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client_for(directory).get_metric_history(run_id, key))


def test_diverged_job_is_a_result_and_the_sweep_goes_on(tmp_path: Path):
    proc = run_train(["-m", "init=normal", "trainer.lr=10,0.01", "trainer.epochs=3"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    runs = {r.data.params["trainer.lr"]: r for r in _children(tmp_path)}
    diverged, fine = runs["10"], runs["0.01"]
    assert diverged.info.status == "FAILED"
    assert diverged.data.tags["failure"] == "diverged"
    assert diverged.data.tags["failure.epoch"] == "1"
    assert _steps(tmp_path, diverged.info.run_id, "train/loss") == [1]  # metrics up to the divergence kept
    assert fine.info.status == "FINISHED" and _steps(tmp_path, fine.info.run_id, "train/loss") == [1, 2, 3]
    assert "FAILED (diverged)" in proc.stdout
    assert _parent(tmp_path).info.status == "FINISHED"


def test_loss_above_the_configured_multiple_counts_as_divergence(tmp_path: Path):
    proc = run_train(["init=ones", "trainer.lr=10", "trainer.epochs=2", "trainer.divergence_factor=1000"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run,) = all_runs(tmp_path)
    assert run.data.tags["failure"] == "diverged"
    assert "x initial loss" in run.data.tags["failure.reason"]


CRASH_HOOK = """
import initsweep.core.trainer as t
_fit = t.fit
def fit(model, data, cfg, seed, *args, **kwargs):
    for epoch in _fit(model, data, cfg, seed, *args, **kwargs):
        if seed == 1 and epoch.epoch == 2:
            raise RuntimeError("injected fault in epoch 2")
        yield epoch
t.fit = fit
"""


def test_crashed_job_is_recorded_and_the_others_still_run(tmp_path: Path):
    # Fault injection: a sitecustomize module makes the training loop raise in job seed=1.
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(CRASH_HOOK)
    proc = run_train(["-m", "seed=0,1,2", "trainer.epochs=3"], cwd=tmp_path, env={"PYTHONPATH": str(hook)})
    assert proc.returncode == 1
    assert "1 job(s) failed: init=normal seed=1" in proc.stderr
    runs = {r.data.params["seed"]: r for r in _children(tmp_path)}
    assert [runs[s].info.status for s in ("0", "1", "2")] == ["FINISHED", "FAILED", "FINISHED"]
    crashed = runs["1"]
    assert crashed.data.tags["failure"] == "exception"
    assert "injected fault" in crashed.data.tags["failure.reason"]
    client = client_for(tmp_path)
    assert "traceback.txt" in {a.path for a in client.list_artifacts(crashed.info.run_id)}
    text = client.download_artifacts(crashed.info.run_id, "traceback.txt", str(tmp_path))
    assert "RuntimeError: injected fault in epoch 2" in Path(text).read_text()
    assert _steps(tmp_path, crashed.info.run_id, "train/loss") == [1]  # epoch 2 raised before its metrics
    assert "FAILED (exception)" in proc.stdout
    assert _parent(tmp_path).info.status == "FAILED"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_marks_runs_killed_and_keeps_the_store_usable(tmp_path: Path, sig):
    proc = start_train(["-m", "seed=0,1", "trainer.epochs=500"], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 180
        # Read the store only once the sweep has created it (its parent file exists): opening an SQLite
        # store while another process creates it races in MLflow's migrations.
        while not (list(tmp_path.glob("multirun/*/*/initsweep_parent.json")) and _children(tmp_path)):
            assert proc.poll() is None and time.monotonic() < deadline, "the job never started"
            time.sleep(0.5)
        child_id = _children(tmp_path)[0].info.run_id
        while not _steps(tmp_path, child_id, "train/loss"):  # some epochs in, however loaded the machine
            assert proc.poll() is None and time.monotonic() < deadline, "no epoch finished"
            time.sleep(0.5)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "Traceback" not in stderr
    (child,) = _children(tmp_path)
    assert child.info.status == "KILLED" and child.data.tags["failure"] == "interrupted"
    assert len(_steps(tmp_path, child.info.run_id, "train/loss")) >= 1  # pending metrics were flushed
    assert _parent(tmp_path).info.status == "KILLED"
    # The store is intact: the next sweep works.
    again = run_train(["-m", "seed=3", "trainer.epochs=1"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert sum(r.info.status == "FINISHED" for r in all_runs(tmp_path)) == 2


def test_parallel_workers_on_a_new_store_lose_nothing(tmp_path: Path):
    seeds = ",".join(str(s) for s in range(4))  # two jobs per worker: both workers meet the new store at once
    proc = run_train(
        ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"seed={seeds}", "trainer.epochs=3"],
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "database is locked" not in proc.stderr and "migration" not in proc.stderr.lower()
    children = _children(tmp_path)
    assert len(children) == 4
    assert sorted(int(r.data.params["seed"]) for r in children) == list(range(4))
    for run in children:
        assert run.info.status == "FINISHED"
        assert _steps(tmp_path, run.info.run_id, "val/acc") == [0, 1, 2, 3]
    assert _parent(tmp_path).info.status == "FINISHED"


@pytest.mark.parametrize("multirun", [False, True], ids=["run", "multirun"])
def test_unreachable_server_fails_fast_with_one_message(tmp_path: Path, multirun):
    args = ["-m", "seed=0,1"] if multirun else []
    # timeout: a hang guard (MLflow's own retries of an unreachable server would take minutes), not a speed test
    env = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    proc = run_train([*args, "trainer.epochs=1"], cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 2
    assert "cannot reach the MLflow tracking server at http://127.0.0.1:9" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("multirun/*/*/0"))  # no job started


@pytest.mark.parametrize("multirun", [False, True], ids=["run", "multirun"])
def test_unwritable_store_directory_fails_with_one_message(tmp_path: Path, multirun):
    (tmp_path / "mlruns").write_text("not a directory")  # unwritable even for root
    args = ["-m", "seed=0,1"] if multirun else []
    proc = run_train([*args, "trainer.epochs=1"], cwd=tmp_path)
    assert proc.returncode == 2
    assert "is not a writable directory" in proc.stderr and "Traceback" not in proc.stderr


def test_same_seed_gives_identical_metrics_inside_a_multirun(tmp_path: Path):
    solo_dir, sweep_dir = tmp_path / "solo", tmp_path / "sweep"
    solo_dir.mkdir(), sweep_dir.mkdir()
    assert run_train(["init=uniform", "seed=5", "trainer.epochs=3"], cwd=solo_dir).returncode == 0
    assert run_train(["-m", "init=uniform", "seed=1,5", "trainer.epochs=3"], cwd=sweep_dir).returncode == 0
    (solo,) = all_runs(solo_dir)
    (in_sweep,) = [r for r in _children(sweep_dir) if r.data.params["seed"] == "5"]
    for key in ("train/loss", "train/acc", "val/loss", "val/acc"):
        a = [(m.step, m.value) for m in client_for(solo_dir).get_metric_history(solo.info.run_id, key)]
        b = [(m.step, m.value) for m in client_for(sweep_dir).get_metric_history(in_sweep.info.run_id, key)]
        assert sorted(a) == sorted(b), key


@pytest.mark.parametrize("damage", ["truncated", "garbage", "bad_gzip"])
def test_corrupt_idx_file_gives_a_clear_error_naming_the_file(tmp_path: Path, damage):
    from test_data_models import _write_idx_dir

    folder = _write_idx_dir(tmp_path / "mnist", gz=damage == "bad_gzip")
    victim = next(folder.glob("train-images-idx3-ubyte*"))
    raw = victim.read_bytes()
    victim.write_bytes({"truncated": raw[: len(raw) // 2], "garbage": b"\x13\x37" * 100, "bad_gzip": raw[:40]}[damage])
    proc = run_train(["data=idx", f"data.path={folder}", "trainer.epochs=1"], cwd=tmp_path)
    assert proc.returncode == 2
    assert str(victim) in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()
