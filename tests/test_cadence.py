"""Logging cadence (tracking.log_every / max_points): what a run logs, and a summary that does not depend on it."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient
from omegaconf import OmegaConf

from conftest import compose
from initsweep.core.cadence import log_spaced, logged_epochs
from initsweep.core.config import ConfigError, validate
from initsweep.jobs.job import execute
from initsweep.report.plots import drawn, epoch_scale

# Tiny and fast: 60 full-batch epochs of a small MLP on 120 circles points.
TINY = [
    "data=circles",
    "data.n_samples=120",
    "model.widths=[8]",
    "trainer.batch_size=full",
    "trainer.epochs=60",
    "trainer.lr=0.1",
    "tracking.log_plots=false",
    "diagnostics.enabled=false",
]


def test_ordinary_runs_log_every_epoch_and_long_ones_stay_within_the_cap():
    assert logged_epochs(20) == set(range(1, 21))
    long = logged_epochs(15000, max_points=500)
    assert len(long) <= 500 and 15000 in long
    assert {1, 2, 3, 10, 100, 1000} <= long | {e - 1 for e in long} | {e + 1 for e in long}  # log-spaced early
    assert log_spaced(100) == {1, 2, 3, 4, 6, 7, 8, 10, 13, 16, 20, 26, 32, 40, 51, 64, 80, 100}


def test_logged_epochs_are_evaluated_ones():
    chosen = logged_epochs(1003, eval_every=5, max_points=100)
    assert all(e % 5 == 0 or e == 1003 for e in chosen) and len(chosen) <= 100
    assert logged_epochs(100, log_every=25) >= {25, 50, 75, 100}


def test_cadence_keys_are_validated():
    with pytest.raises(ConfigError, match=r"tracking.max_points = 5: .*greater than or equal to 100"):
        validate(OmegaConf.to_container(compose(["tracking.max_points=5"]), resolve=True))
    with pytest.raises(ConfigError, match=r"tracking.log_every = 7: must be a multiple of trainer.eval_every \(5\)"):
        validate(OmegaConf.to_container(compose(["tracking.log_every=7", "trainer.eval_every=5"]), resolve=True))


@pytest.mark.slow
def test_summary_is_exact_whatever_is_logged(tmp_path):
    """Two identical trainings, one logging every epoch, one every 20th (plus log-spaced epochs): the summary
    (best epoch, epochs to learn, test at best val...) is the same; only the logged curve is shorter."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    every = execute(compose([*TINY, f"tracking.uri={uri}"]))
    sparse = execute(compose([*TINY, f"tracking.uri={uri}", "tracking.log_every=20"]))
    client = MlflowClient(tracking_uri=uri)
    full, thin = client.get_run(every.run_id).data.metrics, client.get_run(sparse.run_id).data.metrics
    summary_keys = ["val/acc_best", "val/epoch_best", "val/epochs_to_learn", "test/acc_at_best_val", "test/acc"]
    assert {k: full[k] for k in summary_keys} == pytest.approx({k: thin[k] for k in summary_keys}, nan_ok=True)
    steps = lambda run_id: [m.step for m in client.get_metric_history(run_id, "train/loss")]  # noqa: E731
    assert steps(every.run_id) == list(range(1, 61))
    assert steps(sparse.run_id) == sorted(logged_epochs(60, log_every=20)) and len(steps(sparse.run_id)) < 30


def test_long_curves_get_a_log_axis_and_are_thinned_for_drawing():
    from initsweep.core.trainer import EpochMetrics

    history = [EpochMetrics(e, 1.0, 0.5, 1.0, 0.5, 0.001) for e in range(1, 15001)]
    assert epoch_scale(20) == "linear" and epoch_scale(15000) == "symlog"
    thinned = drawn(history)
    assert len(thinned) <= 2000 and thinned[0].epoch == 1 and thinned[-1].epoch == 15000
    assert drawn(history[:50]) == history[:50]
