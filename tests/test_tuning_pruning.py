"""Pruning that does not prune the promising (issue 32): warm-up defaults derived from the study's length,
never a prune at a trial's last epoch, the user's pruner_kwargs first; and a resumed study end to end (slow)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from conftest import run_train
from initsweep.core.trainer import EpochMetrics
from initsweep.tuning.plan import make_pruner
from initsweep.tuning.pruning import default_pruner_kwargs, describe, may_prune, pruner_kwargs_for, warmup_epochs
from initsweep.tuning.trial import EpochReporter
from test_tuning import plan_for
from test_tuning_study import parents_and_children, study_of

optuna.logging.set_verbosity(optuna.logging.WARNING)


def epoch(n: int, val_loss: float) -> EpochMetrics:
    return EpochMetrics(n, 1.0, 0.5, val_loss, 0.5, 0.01, train_loss_running=1.0)


# --- the defaults, pure functions -----------------------------------------------------------------------


@pytest.mark.parametrize(("epochs", "warmup"), [(1, 1), (2, 1), (3, 1), (4, 2), (5, 2), (6, 2), (20, 7), (30, 10)])
def test_warmup_is_a_third_of_the_epochs_rounded_up_and_at_least_one(epochs, warmup):
    assert warmup_epochs(epochs) == warmup


def test_median_and_percentile_wait_for_five_complete_trials_and_a_third_of_the_epochs():
    for name in ("median", "percentile"):
        kwargs = default_pruner_kwargs(name, 5)
        assert kwargs == {"n_startup_trials": 5, "n_min_trials": 5, "n_warmup_steps": 3}  # first prune: epoch 3
    assert default_pruner_kwargs("median", 20)["n_warmup_steps"] == 8
    assert default_pruner_kwargs("median", None) == {"n_startup_trials": 5, "n_min_trials": 5}  # epochs searched


def test_resource_pruners_start_their_first_rung_after_the_warmup():
    assert default_pruner_kwargs("successive_halving", 20) == {"min_resource": 8}
    assert default_pruner_kwargs("hyperband", 20) == {"min_resource": 8, "max_resource": 20}
    assert default_pruner_kwargs("hyperband", 1) == {"min_resource": 1, "max_resource": 1}
    assert default_pruner_kwargs("hyperband", None) == {}


def test_other_pruners_and_nodes_get_no_defaults():
    assert default_pruner_kwargs("none", 5) == {}
    assert default_pruner_kwargs("threshold", 5) == {}
    assert default_pruner_kwargs({"_target_": "optuna.pruners.MedianPruner"}, 5) == {}


def test_given_pruner_kwargs_win_and_a_given_startup_sets_the_minimum_of_trials():
    given = {"n_warmup_steps": 0, "interval_steps": 2}
    assert pruner_kwargs_for("median", given, 5) == {
        "n_startup_trials": 5,
        "n_min_trials": 5,
        "n_warmup_steps": 0,
        "interval_steps": 2,
    }
    assert pruner_kwargs_for("median", {"n_startup_trials": 2}, 5)["n_min_trials"] == 2
    assert pruner_kwargs_for("median", {"n_startup_trials": 0}, 5)["n_min_trials"] == 1
    assert pruner_kwargs_for("median", {"n_startup_trials": 2, "n_min_trials": 4}, 5)["n_min_trials"] == 4
    assert pruner_kwargs_for("hyperband", {"max_resource": 9}, 20) == {"min_resource": 8, "max_resource": 9}


def test_the_last_epoch_is_never_judged():
    assert may_prune(4, 5) and not may_prune(5, 5) and not may_prune(6, 5)
    assert may_prune(5, None)
    assert describe({"n_warmup_steps": 3}) == "(n_warmup_steps=3)" and describe({}) == ""


def test_every_derived_default_builds_its_pruner():
    for name in ("median", "percentile", "successive_halving", "hyperband"):
        for epochs in (1, 2, 5, 20):
            pruner = make_pruner(name, pruner_kwargs_for(name, {}, epochs))
            assert isinstance(pruner, optuna.pruners.BasePruner)


# --- the reporter never prunes at the last epoch ------------------------------------------------------


def test_reporter_asks_the_pruner_before_the_last_epoch_but_not_at_it():
    pruner = make_pruner("median", {"n_startup_trials": 1, "n_warmup_steps": 0})
    study = optuna.create_study(direction="minimize", pruner=pruner)
    good = study.ask()
    for n in (1, 2, 3):
        good.report(0.1, n)
    study.tell(good, 0.1)

    bad = EpochReporter(study.ask(), "val/loss_best", last_epoch=3)
    assert bad(epoch(3, 2.0)) is False  # worse than the median, but its cost is spent: it completes
    early = EpochReporter(study.ask(), "val/loss_best", last_epoch=3)
    assert early(epoch(2, 2.0)) is True  # the same value one epoch earlier is pruned


# --- the plan -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given, used",
    [
        ([], {"n_startup_trials": 5, "n_min_trials": 5, "n_warmup_steps": 3}),  # derived from trainer.epochs
        (  # the user's pruner_kwargs win
            ["+hydra.sweeper.pruner_kwargs.n_warmup_steps=1", "+hydra.sweeper.pruner_kwargs.n_startup_trials=2"],
            {"n_startup_trials": 2, "n_min_trials": 2, "n_warmup_steps": 1},
        ),
    ],
    ids=["derived", "given"],
)
def test_a_plan_derives_the_warmup_from_trainer_epochs_unless_given(tmp_path, monkeypatch, given, used):
    plan = plan_for(["hparams_search=normal_std", "trainer.epochs=5", *given], tmp_path, monkeypatch)
    assert plan.pruner_kwargs == used
    assert plan.pruner()._n_warmup_steps == used["n_warmup_steps"]


def test_a_plan_with_searched_epochs_sets_no_epoch_warmup(tmp_path, monkeypatch):
    overrides = [
        "hparams_search=normal_std",
        "++hydra.sweeper.params={init.std:'interval(0.05, 0.1)',trainer.epochs:'choice(3,6)'}",
    ]
    plan = plan_for(overrides, tmp_path, monkeypatch)
    assert "n_warmup_steps" not in plan.pruner_kwargs


# --- a resumed study end to end -------------------------------------------------------------------------

RESUMED = (
    "-m",
    "hparams_search=normal_std",
    "hydra.sweeper.n_trials=8",
    "trainer.epochs=5",
    "diagnostics.enabled=false",
    "tracking.log_plots=false",
)


@pytest.mark.slow
def test_a_resumed_study_keeps_its_new_trials_past_the_warmup_and_never_prunes_a_last_epoch(tmp_path: Path):
    """The reproduction of issue 32: 8 trials, then the same command again. With Optuna's defaults all 8 new
    trials were pruned at epoch 1 (the first 8 had spent the 5 startup trials) and trial 5 at epoch 5 of 5."""
    for _ in range(2):
        proc = run_train(RESUMED, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert "pruner=median(n_startup_trials=5, n_min_trials=5, n_warmup_steps=3)" in proc.stderr + proc.stdout

    study = study_of(tmp_path)
    assert [t.number for t in study.trials] == list(range(16))
    new = study.trials[8:]
    past_epoch_2 = [t for t in new if max(t.intermediate_values) > 2]
    assert len(past_epoch_2) >= len(new) / 2, [(t.number, t.state.name, t.intermediate_values) for t in new]
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    assert pruned  # pruning still works after the warm-up
    assert all(max(t.intermediate_values) < 5 for t in pruned), [(t.number, t.intermediate_values) for t in pruned]
    assert all(t.user_attrs["epochs"] == 5 for t in study.trials if t.state.name == "COMPLETE")

    parents, _ = parents_and_children(tmp_path)
    assert len(parents) == 2
    assert all("'n_warmup_steps': 3" in p.data.params["optuna.pruner_kwargs"] for p in parents)
