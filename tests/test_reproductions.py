"""The reproduction overlays (conf/experiment/) compose and run in a tiny mode; named init variants make
zeros, He and N(0, 10^2) one sweep with one parent run."""

from __future__ import annotations

import pytest

from conftest import all_runs, compose, run_train

# Tiny mode: few steps, shallow nets; the overlay's settings otherwise stay.
TINY = {
    "coursera_circles": ["trainer.steps=20", "trainer.eval_every=10"],
    "he2015": ["model.depth=3", "model.width=16", "trainer.epochs=1"],
    "glorot2010": ["model.width=16", "trainer.epochs=1"],
    "saxe2014": ["model.depth=3", "trainer.epochs=1"],
    "lsuv2016": ["model.depth=3", "model.width=16", "trainer.epochs=1", "init=lsuv"],
    "seed_study": ["model.width=16", "trainer.epochs=1"],
    "depth_study": ["model.depth=3", "model.width=16", "trainer.epochs=1"],
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_overlay_composes_and_runs_one_tiny_job(name, tmp_store):
    from mlflow import MlflowClient

    from initsweep.jobs.job import JobContext, execute

    cfg = compose([f"experiment={name}", f"tracking.uri={tmp_store}", "tracking.log_plots=false", *TINY[name]])
    assert cfg.experiment_name == name
    outcome = execute(cfg, JobContext())
    assert outcome.status == "FINISHED"
    metrics = MlflowClient(tracking_uri=tmp_store).get_run(outcome.run_id).data.metrics
    assert "test/acc_at_best_val" in metrics and "diag/jacobian_sv_mean" in metrics


def test_coursera_overlay_is_the_published_setting():
    cfg = compose(["experiment=coursera_circles", "init=variants/normal_x10"])
    assert list(cfg.model.widths) == [10, 5] and cfg.model.output == "sigmoid"
    assert cfg.trainer.batch_size == "full" and cfg.trainer.steps == 15000 and cfg.trainer.momentum == 0
    assert cfg.data.val_fraction == 0 and cfg.data.standardize is False
    assert cfg.init.name == "normal" and cfg.init.std == 10.0


@pytest.mark.slow
def test_zeros_he_and_normal_x10_are_one_sweep_with_one_parent(tmp_path):
    args = ["-m", "experiment=coursera_circles", "trainer.steps=20", "trainer.eval_every=10", "seed=0"]
    result = run_train([*args, "tracking.log_plots=false"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = all_runs(tmp_path)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 3
    names = sorted(r.info.run_name for r in children)
    # the fixed override (tracking.log_plots=false, re-rendered False by Hydra) is not in the names
    assert names == ["init=kaiming_normal seed=0", "init=variants/normal_x10 seed=0", "init=zeros seed=0"]
    stds = {r.info.run_name: r.data.params.get("init.std") for r in children}
    assert stds["init=variants/normal_x10 seed=0"] == "10.0"
