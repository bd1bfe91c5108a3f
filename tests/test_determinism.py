"""trainer.deterministic=true: the same metrics whatever the launcher, and the thread count logged as a number."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import all_runs, client_for, run_train
from initsweep.protocol import Tag

KEYS = ("train/loss", "train/acc", "val/loss", "val/acc")
ARGS = ("init=uniform", "seed=5", "trainer.epochs=2", "trainer.deterministic=true", "tracking.log_plots=false")


def _history(directory: Path, run) -> dict[str, list[tuple[int, float]]]:
    client = client_for(directory)
    return {k: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, k)) for k in KEYS}


@pytest.mark.slow
def test_deterministic_job_gives_identical_metrics_alone_and_in_a_joblib_sweep(tmp_path: Path):
    solo_dir, sweep_dir = tmp_path / "solo", tmp_path / "sweep"
    solo_dir.mkdir(), sweep_dir.mkdir()
    assert run_train([*ARGS, "trainer.threads=null"], cwd=solo_dir).returncode == 0
    proc = run_train(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *ARGS, "seed=5,6"], cwd=sweep_dir)
    assert proc.returncode == 0, proc.stderr
    (solo,) = all_runs(solo_dir)
    (in_sweep,) = [r for r in all_runs(sweep_dir) if Tag.PARENT in r.data.tags and r.data.params["seed"] == "5"]
    assert solo.data.params["trainer.threads"] == in_sweep.data.params["trainer.threads"] == "1"
    assert _history(solo_dir, solo) == _history(sweep_dir, in_sweep)


@pytest.mark.slow
def test_the_effective_thread_count_is_logged(tmp_path: Path):
    assert run_train(["trainer.epochs=1", "tracking.log_plots=false"], cwd=tmp_path).returncode == 0  # threads=null
    (run,) = all_runs(tmp_path)
    assert int(run.data.params["trainer.threads"]) >= 1
