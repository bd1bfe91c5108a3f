"""The Optuna side in-process (no subprocess): search-space parsing, samplers, pruners, the per-epoch
reporter, the sweeper's outcome classification and its checks on the hparams_search overlays."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from conftest import CONF
from initsweep.core.config import ConfigError
from initsweep.core.trainer import EpochMetrics
from initsweep.protocol import direction as metric_direction
from initsweep.tuning.plan import make_pruner, make_sampler
from initsweep.tuning.search_space import format_override, grid_points, parse_search_space
from initsweep.tuning.trial import EpochReporter, intermediate_value

optuna.logging.set_verbosity(optuna.logging.WARNING)


def epoch(n: int, val_acc: float, val_loss: float = 1.0, train_loss: float = 1.0) -> EpochMetrics:
    return EpochMetrics(n, train_loss, 0.5, val_loss, val_acc, 0.01, train_loss_running=train_loss)


# --- search space -------------------------------------------------------------------------------------


def test_sweep_syntax_becomes_optuna_distributions():
    space = parse_search_space(
        {
            "init.std": "tag(log, interval(0.001, 1.0))",
            "init.mean": "interval(-0.1, 0.1)",
            "model.width": "tag(int, interval(16, 256))",
            "model.activation": "choice(relu, tanh)",
            "model.depth": "range(1, 4)",
            "trainer.lr": "range(0.1, 0.35, 0.1)",
            "trainer.momentum": 0.5,  # a plain value: passed to every trial
        },
        [],
    )
    d = space.distributions
    assert d["init.std"] == FloatDistribution(0.001, 1.0, log=True)
    assert d["init.mean"] == FloatDistribution(-0.1, 0.1)
    assert d["model.width"] == IntDistribution(16, 256)
    assert d["model.activation"] == CategoricalDistribution(["relu", "tanh"])
    assert d["model.depth"] == IntDistribution(1, 3)  # Hydra's range excludes stop
    assert d["trainer.lr"] == FloatDistribution(0.1, 0.3, step=0.1)
    assert space.fixed == ("trainer.momentum=0.5",)


def test_command_line_replaces_or_fixes_the_overlay_params():
    overlay = {"init.std": "tag(log, interval(0.001, 1.0))", "init.mean": "interval(-0.1, 0.1)"}
    space = parse_search_space(overlay, ["init.std=interval(0.01,0.1)", "init.mean=0.0", "trainer.epochs=3"])
    assert space.distributions == {"init.std": FloatDistribution(0.01, 0.1)}
    assert space.fixed == ("init.mean=0.0", "trainer.epochs=3")
    assert space.overrides({"init.std": 0.05}) == ["init.mean=0.0", "trainer.epochs=3", "init.std=0.05"]


@pytest.mark.parametrize(
    "expression, message",
    [
        ("interval(1.0, 0.5)", "empty interval"),
        ("interval(0.5, 0.5)", "empty interval"),
        ("tag(log, interval(0.0, 1.0))", "log interval needs low > 0"),
        ("tag(foo, interval(0.1, 1.0))", "unknown tag"),
        ("range(3, 1)", "empty range"),
        ("tag(log, choice(1, 2))", "tag log applies to interval"),
        ("interval(0.1", "cannot parse"),
    ],
)
def test_bad_search_expressions_name_the_key(expression, message):
    with pytest.raises(ConfigError) as e:
        parse_search_space({"init.std": expression}, [])
    assert "hydra.sweeper.params.init.std" in str(e.value) and message in str(e.value)


def test_nothing_to_search_is_an_error():
    with pytest.raises(ConfigError, match="nothing to search"):
        parse_search_space({}, ["trainer.epochs=3"])


@pytest.mark.parametrize("value", [0.1, 1e-05, 0.30676100149812735, 3, -2, True, None, "relu", "a b", "it's"])
def test_overrides_round_trip_through_hydras_parser(value):
    line = format_override("x.y", value)
    assert OverridesParser.create().parse_override(line).value() == value


def test_grid_points_of_a_finite_space():
    space = parse_search_space({"a": "choice(1, 2)", "b": "range(0, 3)"}, [])
    assert grid_points(space) == [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]


# --- samplers, pruners, direction ------------------------------------------------------------------------


def test_unknown_sampler_or_pruner_lists_the_available_ones():
    with pytest.raises(ConfigError, match=r"hydra.sweeper.sampler = 'foo': unknown sampler; available: tpe, random"):
        make_sampler("foo")
    with pytest.raises(ConfigError, match=r"hydra.sweeper.pruner = 'bar': unknown pruner; available: median"):
        make_pruner("bar")


def test_bad_kwargs_say_what_the_constructor_accepts():
    with pytest.raises(ConfigError, match="sampler_kwargs.*it accepts: seed"):
        make_sampler("random", {"n_startup_trials": 3})
    with pytest.raises(ConfigError, match="pruner_kwargs.*n_warmup_steps"):
        make_pruner("median", {"warmup": 3})


def test_grid_needs_a_finite_space():
    with pytest.raises(ConfigError, match="finite search space.*init.std"):
        make_sampler("grid", space=parse_search_space({"init.std": "interval(0.1, 1.0)"}, []))


@pytest.mark.parametrize("name", ["tpe", "random", "qmc", "gp", "nsga2"])
def test_every_builtin_sampler_asks_and_tells(name):
    space = parse_search_space({"init.std": "tag(log, interval(0.001, 1.0))"}, [])
    study = optuna.create_study(sampler=make_sampler(name, seed=0, space=space), direction="maximize")
    for _ in range(3):
        trial = study.ask(space.distributions)
        study.tell(trial, -abs(math.log10(trial.params["init.std"]) + 1))
    assert len(study.trials) == 3 and 0.001 <= study.best_params["init.std"] <= 1.0


def test_grid_sampler_works_with_ask_and_tell_to_the_end():
    """Optuna's GridSampler calls study.stop() when the grid is done, which raises outside optimize()."""
    space = parse_search_space({"a": "choice(1, 2, 3)"}, [])
    study = optuna.create_study(sampler=make_sampler("grid", seed=0, space=space))
    for _ in range(3):
        study.tell(study.ask(space.distributions), 0.0)
    assert sorted(t.params["a"] for t in study.trials) == [1, 2, 3]


def test_direction_follows_the_metric():
    assert metric_direction("val/acc_best") == "maximize"
    assert metric_direction("test/acc") == "maximize"
    assert metric_direction("val/loss_best") == "minimize"
    assert metric_direction("train/loss_final") == "minimize"


# --- the job side ----------------------------------------------------------------------------------------


def test_intermediate_values_are_the_metric_so_far():
    history = [epoch(1, 0.5, 2.0), epoch(2, 0.8, 0.5), epoch(3, 0.7, 0.9)]
    assert intermediate_value("val/acc_best", history) == 0.8
    assert intermediate_value("val/loss_best", history) == 0.5
    assert intermediate_value("val/acc_final", history) == 0.7
    assert intermediate_value("test/acc", history) == 0.7  # val acc stands in during training


def test_reporter_reports_every_epoch_and_stops_when_pruned():
    study = optuna.create_study(direction="maximize", pruner=make_pruner("median", {"n_startup_trials": 1}))
    good = study.ask()
    for n in (1, 2, 3):
        good.report(0.9, n)
    study.tell(good, 0.9)

    trial = study.ask()
    reporter = EpochReporter(trial, "val/acc_best")
    assert reporter(epoch(1, 0.2)) is True  # below the median of the finished trial: prune
    assert reporter.last_value == 0.2
    assert study.trials[1].intermediate_values == {1: 0.2}


def test_reporter_does_not_report_a_non_finite_value():
    """Divergence itself is decided by trainer.divergence (one place), after the reporter saw the epoch."""
    study = optuna.create_study(direction="minimize", pruner=make_pruner("none"))
    reporter = EpochReporter(study.ask(), "val/loss_best")
    assert reporter(epoch(1, 0.5, val_loss=0.7)) is False
    assert reporter(epoch(2, 0.1, val_loss=float("inf"))) is False
    assert study.trials[0].intermediate_values == {1: 0.7}


def test_divergence_is_decided_in_one_place():
    from initsweep.core.trainer import divergence

    assert divergence(epoch(1, 0.5, train_loss=float("nan")), 2.3, None) == "train loss is nan"
    assert divergence(epoch(1, 0.5, val_loss=float("inf")), 2.3, None) == "val loss is inf"
    assert "> 1000 x initial loss 2.3" in divergence(epoch(1, 0.5, train_loss=5000.0), 2.3, 1000.0)
    assert divergence(epoch(1, 0.5, train_loss=2.0), 2.3, 1000.0) is None


def test_job_returns_become_trial_states():
    from hydra_plugins.initsweep_optuna_sweeper._study import classify, consecutive_groups

    def ret(value, status=JobStatus.COMPLETED):
        r = JobReturn()
        r.status, r._return_value = status, value
        return r

    assert classify(ret(0.93)) == ("COMPLETE", 0.93, "")
    assert classify(ret(float("nan")))[0] == "FAIL"
    assert classify(ret(optuna.TrialPruned("pruned at epoch 2"), JobStatus.FAILED)) == (
        "PRUNED",
        None,
        "pruned at epoch 2",
    )
    state, _, reason = classify(ret(RuntimeError("boom"), JobStatus.FAILED))
    assert state == "FAIL" and reason == "RuntimeError: boom"
    assert consecutive_groups([3, 4, 6, 7, 9]) == [[3, 4], [6, 7], [9]]


# --- the overlays, checked the way the sweeper checks them before any trial ----------------------------


def plan_for(overrides: list[str], tmp_path: Path, monkeypatch):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from initsweep.tuning.plan import make_plan

    monkeypatch.chdir(tmp_path)  # the default storage lives under the working directory
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
        return make_plan(cfg, GlobalHydra.instance().config_loader())


OVERLAYS = sorted(p.stem for p in (CONF / "hparams_search").glob("*.yaml"))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_gives_a_valid_study(overlay, tmp_path, monkeypatch):
    needs = (CONF / "hparams_search" / f"{overlay}.yaml").read_text().split("override /init: ")[1].split()[0]
    if not (CONF / "init" / f"{needs}.yaml").exists():
        pytest.skip(f"conf/init/{needs}.yaml is not in this checkout (the initializer catalogue adds it)")
    plan = plan_for([f"hparams_search={overlay}"], tmp_path, monkeypatch)
    assert plan.space.params and plan.direction == "minimize" and plan.metric == "val/loss_best"
    assert plan.settings.sampler == "tpe"
    assert plan.storage == str(tmp_path / "mlruns" / "optuna" / "journal.log")
    assert len(plan.checked_configs) == 2 * len(plan.space.params)  # both bounds of every interval
    assert not (tmp_path / "mlruns").exists()  # checking creates nothing


@pytest.mark.parametrize(
    "override, message",
    [
        ("hydra.sweeper.sampler=foo", "hydra.sweeper.sampler = 'foo': unknown sampler; available: tpe, random, grid"),
        ("hydra.sweeper.pruner=bar", "hydra.sweeper.pruner = 'bar': unknown pruner; available: median"),
        ("hydra.sweeper.params={init.std:'interval(0.5, 0.1)'}", "init.std = 'interval(0.5, 0.1)': empty interval"),
        (
            "++hydra.sweeper.params={init.stdd:'interval(0.1, 0.5)'}",  # ++: params is a struct node
            "init.stdd is not a key of the config; did you mean init.std",
        ),
        ("hydra.sweeper.n_trials=0", "hydra.sweeper.n_trials = 0: must be a whole number >= 1"),
        ("hydra.sweeper.direction=up", "hydra.sweeper.direction = 'up': allowed: auto, maximize, minimize"),
    ],
)
def test_bad_sweeper_settings_are_refused_by_the_plan(override, message, tmp_path, monkeypatch):
    """make_plan is what SweepCallback.on_multirun_start calls (through tuning.plan_for) before any run."""
    with pytest.raises(ConfigError) as e:
        plan_for(["hparams_search=normal_std", override], tmp_path, monkeypatch)
    assert message in str(e.value)


def test_a_bound_outside_the_schema_fails_before_any_trial(tmp_path, monkeypatch):
    with pytest.raises(ConfigError) as e:
        bad_bound = "hydra.sweeper.params={init.std:'interval(-1.0, 1.0)'}"
        plan_for(["hparams_search=normal_std", bad_bound], tmp_path, monkeypatch)
    assert "init.std=-1.0" in str(e.value) and "greater than or equal to 0" in str(e.value)


def test_an_existing_study_is_continued_only_when_allowed(tmp_path, monkeypatch):
    from initsweep.tuning.plan import open_storage

    plan = plan_for(["hparams_search=normal_std"], tmp_path, monkeypatch)
    optuna.create_study(storage=open_storage(plan.storage), study_name=plan.study_name, direction="maximize")
    with pytest.raises(ConfigError, match="created to maximize"):
        plan_for(["hparams_search=normal_std"], tmp_path, monkeypatch)
    with pytest.raises(ConfigError, match="already exists"):
        plan_for(["hparams_search=normal_std", "hydra.sweeper.load_if_exists=false"], tmp_path, monkeypatch)


# --- a trial's job in-process: real training, real journal, real MLflow store ------------------------------


def test_a_diverging_job_is_pruned_with_its_reason(tmp_path, tmp_store):
    from conftest import client_for, compose
    from initsweep.jobs.job import JobContext
    from initsweep.protocol import StudySpec
    from initsweep.tuning.plan import open_storage
    from initsweep.tuning.trial import run_trial

    storage = str(tmp_path / "journal.log")
    study = optuna.create_study(storage=open_storage(storage), study_name="s", direction="minimize")
    trial = study.ask({"init.std": FloatDistribution(1.0, 1000.0)})
    StudySpec(storage, "s", "median", {}, "val/loss_best").write(tmp_path)
    cfg = compose(
        ["init.std=1000", "trainer.lr=10", "trainer.epochs=3", f"tracking.uri={tmp_store}", "tracking.log_plots=false"]
    )
    with pytest.raises(optuna.TrialPruned, match="diverged at epoch 1: train.loss.*nan"):
        run_trial(cfg, trial.number, JobContext(sweep_dir=tmp_path))

    assert study.trials[0].user_attrs["epochs"] == 1  # training stopped at the first non-finite loss
    (run,) = client_for(tmp_path).search_runs(["1"])
    assert run.data.tags["trial_number"] == "0" and run.info.status in ("FINISHED", "FAILED")


def test_a_relaunched_trial_whose_run_finished_is_not_trained_again(tmp_path, tmp_store):
    """A worker SIGKILLed after its trial's run ended FINISHED, before its result reached the sweeper: the
    relaunched job (attempt 2) returns that run's value and creates no second run (issue 30, chaos soak)."""
    from mlflow import MlflowClient

    from conftest import client_for, compose
    from initsweep.jobs.job import JobContext
    from initsweep.protocol import Parent, StudySpec
    from initsweep.tuning.plan import open_storage
    from initsweep.tuning.trial import run_trial

    storage = str(tmp_path / "journal.log")
    study = optuna.create_study(storage=open_storage(storage), study_name="s", direction="minimize")
    trial = study.ask({"init.std": FloatDistribution(0.01, 1.0)})
    StudySpec(storage, "s", "none", {}, "val/loss_best").write(tmp_path)
    client = MlflowClient(tracking_uri=tmp_store)
    parent = client.create_run(client.create_experiment("e")).info
    Parent(parent.run_id, parent.experiment_id, tmp_store, parent.run_id).write(tmp_path)
    cfg = compose(["init.std=0.3", "trainer.epochs=2", "optimized_metric=val/loss_best", "tracking.log_plots=false"])
    cfg.tracking.uri = tmp_store
    first = run_trial(cfg, trial.number, JobContext(sweep_dir=tmp_path))
    again = run_trial(cfg, trial.number, JobContext(sweep_dir=tmp_path))  # the relaunch

    (run,) = [r for r in client_for(tmp_path).search_runs([parent.experiment_id]) if r.info.run_id != parent.run_id]
    assert run.info.status == "FINISHED" and again == first == run.data.metrics["val/loss_best"]
    assert study.trials[0].system_attrs["initsweep:attempts"] == 2


def test_an_earlier_attempt_that_stopped_early_was_pruned():
    from initsweep.tuning.trial import earlier_result

    trial = optuna.create_study().ask()
    with pytest.raises(optuna.TrialPruned, match="pruned at epoch 2 \\(run r1\\)"):
        earlier_result(trial, "val/loss_best", ("r1", {"val/loss_best": 1.5}), [1, 2], last=5)
    assert earlier_result(trial, "val/loss_best", ("r1", {"val/loss_best": 1.5}), [1, 2, 5], last=5) == 1.5
    assert earlier_result(trial, ["a", "b"], ("r1", {"a": 1.0, "b": 2.0}), [], last=5) == [1.0, 2.0]
