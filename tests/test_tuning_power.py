"""Tuning power features (issue 16): multi-objective studies, warm starts, best-trial checkpoints, system
metrics and named objectives. In-process checks first; studies through `python train.py -m` (slow) last."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf

from conftest import client_for, compose, run_train
from initsweep.core.config import ConfigError
from initsweep.tuning.objectives import objective_values, resolve_directions
from initsweep.tuning.search_space import parse_search_space
from initsweep.tuning.warmstart import enqueue, enqueue_points, variance_preserving_stds
from test_tuning import plan_for

optuna.logging.set_verbosity(optuna.logging.WARNING)
MULTI = "optimized_metric=[val/loss_best,val/acc_best]"


# --- multi-objective --------------------------------------------------------------------------------------


def test_directions_follow_each_metric():
    metrics = ["val/loss_best", "val/acc_best"]
    assert resolve_directions(metrics, "auto") == ["minimize", "maximize"]
    assert resolve_directions(metrics, ["maximize", "auto"]) == ["maximize", "maximize"]
    assert resolve_directions(metrics, "minimize") == ["minimize", "minimize"]
    with pytest.raises(ConfigError, match=r"hydra.sweeper.direction = \['minimize'\]: 1 directions for 2 optimized"):
        resolve_directions(metrics, ["minimize"])
    with pytest.raises(ConfigError, match="'up' is not a direction; allowed: auto, maximize, minimize"):
        resolve_directions(metrics, ["up", "auto"])


def test_job_returns_one_value_per_objective():
    assert objective_values([0.5, 0.9], 2) == [0.5, 0.9]
    assert objective_values(0.5, 1) == 0.5
    for bad, n, reason in [(0.5, 2, "not 2 values"), ([0.5, math.nan], 2, "returned"), ("x", 1, "not a number")]:
        with pytest.raises(ValueError, match=reason):
            objective_values(bad, n)


@pytest.mark.parametrize("name", ["tpe", "nsga2", "random", "qmc"])
def test_multi_objective_samplers_ask_and_tell(name):
    from initsweep.tuning.plan import make_sampler

    study = optuna.create_study(directions=["minimize", "maximize"], sampler=make_sampler(name, seed=0))
    dist = {"init.std": optuna.distributions.FloatDistribution(0.01, 1.0, log=True)}
    for _ in range(4):
        trial = study.ask(dist)
        study.tell(trial, [trial.params["init.std"], -abs(trial.params["init.std"] - 0.1)])
    assert len(study.trials) == 4 and study.best_trials


def test_a_multi_objective_plan_and_its_pruner_refusal(tmp_path, monkeypatch):
    plan = plan_for(["hparams_search=normal_std", MULTI, "hydra.sweeper.pruner=none"], tmp_path, monkeypatch)
    assert plan.directions == ["minimize", "maximize"] and plan.metrics == ["val/loss_best", "val/acc_best"]
    with pytest.raises(ConfigError, match="pruner = 'median': Optuna cannot prune a multi-objective study"):
        plan_for(["hparams_search=normal_std", MULTI], tmp_path, monkeypatch)
    with pytest.raises(ConfigError, match="'val/los_best' is not a summary metric"):
        plan_for(["hparams_search=normal_std", "optimized_metric=[val/los_best]"], tmp_path, monkeypatch)


# --- warm start -------------------------------------------------------------------------------------------


def test_variance_preserving_points_of_the_default_mlp(tmp_path, monkeypatch):
    """digits MLP, width 256: its largest layer is 256 -> 256, so He = sqrt(2/256), LeCun = Xavier = 1/16."""
    stds = variance_preserving_stds((256, 256))
    assert stds == pytest.approx({"he": math.sqrt(2 / 256), "lecun": 0.0625, "xavier": 0.0625}, rel=1e-15)
    args = ["hparams_search=normal_std", "hydra.sweeper.enqueue=variance_preserving"]
    assert plan_for(args, tmp_path, monkeypatch).enqueue == [{"init.std": 0.088388}, {"init.std": 0.0625}]
    args = ["hparams_search=xavier_gain", "hydra.sweeper.enqueue=[variance_preserving,{init.gain:3.0}]"]
    assert plan_for(args, tmp_path, monkeypatch).enqueue == [
        {"init.gain": 1.414214},
        {"init.gain": 1.0},
        {"init.gain": 3.0},
    ]
    uniform = plan_for(
        ["hparams_search=uniform_range", "hydra.sweeper.enqueue=variance_preserving"], tmp_path, monkeypatch
    )
    assert uniform.enqueue[0] == {"init.low": -0.153093, "init.high": 0.153093}  # sqrt(3) x He std


def test_bad_enqueued_points_name_the_point():
    space = parse_search_space({"init.std": "tag(log, interval(0.01, 1.0))"}, [])
    base = OmegaConf.to_container(compose(["init=normal"]), resolve=True)
    for setting, message in [
        ([{"init.stdd": 0.1}], r"enqueue\[0\]: init.stdd is not searched; searched: init.std"),
        ([{"init.std": 0.1}, {"init.std": 5.0}], r"enqueue\[1\]: init.std=5.0 lies outside its search space"),
        (["he"], r"enqueue\[0\] = 'he': a point is a mapping"),
    ]:
        with pytest.raises(ConfigError, match=message):
            enqueue_points(setting, space, base)
    space = parse_search_space({"trainer.lr": "interval(0.01, 1.0)"}, [])
    with pytest.raises(ConfigError, match="none of the searched keys .trainer.lr. has a variance-preserving value"):
        enqueue_points("variance_preserving", space, base)


def test_enqueued_points_come_first_and_are_not_queued_twice():
    study = optuna.create_study()
    dist = {"init.std": optuna.distributions.FloatDistribution(0.01, 1.0, log=True)}
    enqueue(study, [{"init.std": 0.088}, {"init.std": 0.0625}])
    first = study.ask(dist)
    study.tell(first, 1.0)
    enqueue(study, [{"init.std": 0.088}, {"init.std": 0.0625}])  # a resumed command
    assert first.params == {"init.std": 0.088}
    assert [t.params for t in study.trials] == [{"init.std": 0.088}, {}]  # 0.0625 waits once, 0.088 is not requeued
    assert study.ask(dist).params == {"init.std": 0.0625}


# --- checkpoints and system metrics, one job in-process --------------------------------------------------


def test_a_checkpoint_reloads_the_best_val_weights_and_system_metrics_are_sampled(tmp_path, tmp_store):
    import torch

    from initsweep.core import data as datasets
    from initsweep.core.config import validate
    from initsweep.jobs.job import JobContext, execute
    from initsweep.tracking.checkpoint import ARTIFACT, load_model

    args = ["trainer.epochs=2", f"tracking.uri={tmp_store}", "tracking.log_plots=false", "tracking.checkpoint=best"]
    cfg = compose([*args, "tracking.system_metrics_interval_s=0.2"])
    outcome = execute(cfg, JobContext())
    client = client_for(tmp_path)
    run = client.get_run(outcome.run_id)
    assert run.data.tags["initsweep.checkpoint"] == ARTIFACT
    model = load_model(outcome.run_id, tmp_store)
    data = datasets.load(validate(OmegaConf.to_container(cfg, resolve=True)).data)
    with torch.no_grad():
        acc = (model(data.x_val).argmax(1) == data.y_val).float().mean().item()
    assert acc == pytest.approx(run.data.metrics["val/acc_best"], abs=1e-6)  # the weights of the best val acc
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(run.data.metrics)

    # Outside a study, checkpoint=auto saves nothing; system metrics can be switched off.
    quiet = execute(compose([*args[:3], "tracking.system_metrics=false"]), JobContext())
    run = client.get_run(quiet.run_id)
    assert "initsweep.checkpoint" not in run.data.tags and not client.list_artifacts(quiet.run_id, "checkpoint")
    assert not [k for k in run.data.metrics if k.startswith("system/")]


# --- studies through train.py --------------------------------------------------------------------------

QUICK = ("trainer.epochs=1", "tracking.log_plots=false")  # system metrics: one sample at the end of each run


def the_study(directory: Path) -> optuna.Study:
    from initsweep.tuning.plan import open_storage

    storage = open_storage(str(directory / "mlruns" / "optuna" / "journal.log"))
    (name,) = optuna.get_all_study_names(storage)
    return optuna.load_study(study_name=name, storage=storage)


def study_runs(directory: Path) -> tuple:
    client = client_for(directory)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=100)
    (parent,) = [r for r in runs if r.data.tags.get("initsweep.role") == "sweep"]
    trials = {int(r.data.tags["trial_number"]): r for r in runs if "trial_number" in r.data.tags}
    return client, parent, trials


@pytest.mark.slow
def test_a_multi_objective_study_records_its_pareto_front(tmp_path):
    args = ["-m", "hparams_search=normal_std", MULTI, "hydra.sweeper.pruner=none", "hydra.sweeper.sampler=nsga2"]
    proc = run_train([*args, "hydra.sweeper.n_trials=2", *QUICK], cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = the_study(tmp_path)
    assert study.metric_names == ["val/loss_best", "val/acc_best"]  # named objectives, not "Objective 0"
    assert [d.name for d in study.directions] == ["MINIMIZE", "MAXIMIZE"]
    front = sorted(t.number for t in study.best_trials)
    (results_file,) = tmp_path.glob("multirun/*/*/optimization_results.yaml")
    results = OmegaConf.load(results_file)
    assert [t.number for t in results.best_trials] == front and "best_value" not in results
    assert results.best_trials[0]["values"]["val/acc_best"] == study.trials[front[0]].values[1]

    client, parent, trials = study_runs(tmp_path)
    assert sorted(trials) == [0, 1]
    assert parent.data.tags["optuna.best_trials"] == ",".join(map(str, front))
    assert "optuna/pareto_front.png" in {a.path for a in client.list_artifacts(parent.info.run_id, "optuna")}
    for number, run in trials.items():
        assert (run.data.tags.get("optuna.best") == "true") == (number in front)
        assert run.data.tags["initsweep.checkpoint"] == "checkpoint/model_state_dict.pt"  # auto: on in a study
        assert "system/cpu_utilization_percentage" in run.data.metrics
        assert run.data.metrics["val/acc_best"] == study.trials[number].values[1]


@pytest.mark.slow
def test_a_warm_started_study_evaluates_the_variance_preserving_points_first(tmp_path):
    from initsweep.tracking.checkpoint import best_run_id, load_best

    args = ["-m", "hparams_search=normal_std", "hydra.sweeper.enqueue=variance_preserving"]
    proc = run_train([*args, "hydra.sweeper.n_trials=2", *QUICK], cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = the_study(tmp_path)
    assert [t.params["init.std"] for t in study.trials] == [0.088388, 0.0625]
    assert study.metric_names == ["val/loss_best"]

    client, parent, trials = study_runs(tmp_path)
    assert parent.data.tags["optuna.best_trials"] == str(study.best_trial.number)
    assert [n for n, r in trials.items() if r.data.tags.get("optuna.best") == "true"] == [study.best_trial.number]
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    assert best_run_id(tracking_uri=uri) == trials[study.best_trial.number].info.run_id
    assert type(load_best(tracking_uri=uri)).__name__ == "MLP"


@pytest.mark.slow
def test_pruning_a_multi_objective_study_is_refused_before_any_trial(tmp_path):
    proc = run_train(["-m", "hparams_search=normal_std", MULTI], cwd=tmp_path)
    assert proc.returncode == 2
    assert "initsweep: hydra.sweeper.pruner = 'median': Optuna cannot prune a multi-objective study" in proc.stderr
    assert "Traceback" not in proc.stderr
