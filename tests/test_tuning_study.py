"""Optuna studies end to end: `python train.py -m hparams_search=normal_std ...` in a subprocess, with a real
Optuna journal and a real MLflow store under tmp_path, on digits for a few epochs."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch
from omegaconf import OmegaConf

from conftest import client_for, run_train

pytestmark = pytest.mark.slow
optuna.logging.set_verbosity(optuna.logging.WARNING)

QUICK = ("trainer.epochs=2", "tracking.log_plots=false")


def study_of(directory: Path) -> optuna.Study:
    """The one study in the default journal under directory/mlruns."""
    from initsweep.tuning.plan import open_storage

    storage = open_storage(str(directory / "mlruns" / "optuna" / "journal.log"))
    (name,) = optuna.get_all_study_names(storage)
    return optuna.load_study(study_name=name, storage=storage)


def parents_and_children(directory: Path) -> tuple[list, dict[str, list]]:
    """Sweep parent runs (oldest first) and, per parent id, its child runs."""
    client = client_for(directory)
    exp_ids = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(exp_ids, max_results=1000, order_by=["attributes.start_time ASC"])
    parents = [r for r in runs if r.data.tags.get("initsweep.role") == "sweep"]
    children = {
        p.info.run_id: [r for r in runs if r.data.tags.get("mlflow.parentRunId") == p.info.run_id] for p in parents
    }
    return parents, children


def sweep_dirs(directory: Path) -> list[Path]:
    return sorted(p.parent for p in directory.glob("multirun/*/*/initsweep_parent.json"))


def unavailable_device() -> str:
    if not torch.cuda.is_available():
        return "cuda"
    if not torch.backends.mps.is_available():
        return "mps"
    pytest.skip("both cuda and mps are available: no device to fail on")


# --- pruning and resume ---------------------------------------------------------------------------------

# Random sampler over a wide log range: some stds barely learn in 2 epochs, and the median pruner
# (2 startup trials, no warm-up) stops them after their first epoch.
PRUNING_STUDY = (
    "hparams_search=normal_std",
    *QUICK,
    "init.std=tag(log, interval(0.0001, 1.0))",
    "hydra.sweeper.sampler=random",
    "+hydra.sweeper.pruner_kwargs.n_startup_trials=2",
    "+hydra.sweeper.pruner_kwargs.n_warmup_steps=0",
)


@pytest.fixture(scope="module")
def pruned_study(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("study")
    proc = run_train(["-m", *PRUNING_STUDY, "hydra.sweeper.n_trials=4"], cwd=directory)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return directory


def test_pruning_stops_poor_trials_and_mlflow_records_each_trial(pruned_study):
    study = study_of(pruned_study)
    states = {t.number: t.state.name for t in study.trials}
    assert sorted(states) == [0, 1, 2, 3]
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    assert pruned, states
    assert all(max(t.intermediate_values) < 2 for t in pruned)  # stopped before the last epoch
    assert all(t.user_attrs["epochs"] == max(t.intermediate_values) for t in pruned)

    (parent,), children = parents_and_children(pruned_study)
    runs = {int(r.data.tags["trial_number"]): r for r in children[parent.info.run_id]}
    assert sorted(runs) == [0, 1, 2, 3]
    client = client_for(pruned_study)
    for number, run in runs.items():
        assert run.data.tags["trial_state"] == states[number]
        assert study.trials[number].user_attrs["run_id"] == run.info.run_id  # the trial names its MLflow run
        assert run.data.params["init.std"] == repr(study.trials[number].params["init.std"])
        epochs_logged = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
        assert len(epochs_logged) == study.trials[number].user_attrs["epochs"]
        if states[number] == "PRUNED":
            assert run.data.tags["trial_reason"].startswith("pruned at epoch")

    # The study's outcome on the parent run and in the sweep dir.
    best = study.best_trial
    assert parent.info.status == "FINISHED"
    assert float(parent.data.params["best_params.init.std"]) == best.params["init.std"]
    assert parent.data.metrics["best_value"] == best.value
    assert parent.data.metrics["study/n_pruned"] == len(pruned)
    (sweep_dir,) = sweep_dirs(pruned_study)
    results = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    assert results.best_params["init.std"] == best.params["init.std"] and results.best_value == best.value
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "optuna")}
    assert {"optuna/optimization_history.png", "optuna/slice_init.std.png"} <= artifacts


def test_rerunning_the_command_resumes_the_study(pruned_study):
    proc = run_train(["-m", *PRUNING_STUDY, "hydra.sweeper.n_trials=2"], cwd=pruned_study)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = study_of(pruned_study)
    assert [t.number for t in study.trials] == list(range(6))
    assert all(t.state.is_finished() for t in study.trials)

    first, second = parents_and_children(pruned_study)[0]
    assert second.data.params["optuna.first_trial"] == "4"
    children = parents_and_children(pruned_study)[1][second.info.run_id]
    assert sorted(int(r.data.tags["trial_number"]) for r in children) == [4, 5]
    assert first.data.params["optuna.study_name"] == second.data.params["optuna.study_name"]
    # The second invocation's best is the whole study's best.
    assert float(second.data.params["best_params.init.std"]) == study.best_params["init.std"]


# --- parallel workers -----------------------------------------------------------------------------------


def test_two_joblib_workers_share_the_study_and_lose_nothing(tmp_path):
    proc = run_train(
        [
            "-m",
            "hparams_search=normal_std",
            *QUICK,
            "hydra.sweeper.n_trials=4",
            "hydra.sweeper.pruner=none",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = study_of(tmp_path)
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    assert all(t.state.name == "COMPLETE" and len(t.intermediate_values) == 2 for t in study.trials)

    (parent,), children = parents_and_children(tmp_path)
    runs = children[parent.info.run_id]
    assert sorted(int(r.data.tags["trial_number"]) for r in runs) == [0, 1, 2, 3]
    assert all(r.info.status == "FINISHED" and r.data.tags["trial_state"] == "COMPLETE" for r in runs)
    by_number = {int(r.data.tags["trial_number"]): r for r in runs}
    for t in study.trials:  # each worker's run holds its own trial's value
        assert by_number[t.number].data.metrics["val/loss_best"] == t.value
    assert "2 at a time" in proc.stderr + proc.stdout


# --- failures -------------------------------------------------------------------------------------------


def grid_seed_failing_first(bad: str) -> int:
    """A sampler seed whose grid order over trainer.device=choice(bad, cpu) starts with the failing device."""
    from initsweep.tuning.plan import make_sampler
    from initsweep.tuning.search_space import parse_search_space

    space = parse_search_space({}, [f"trainer.device=choice({bad},cpu)"])
    for seed in range(50):
        study = optuna.create_study(sampler=make_sampler("grid", seed=seed, space=space))
        if study.ask(space.distributions).params["trainer.device"] == bad:
            return seed
    raise AssertionError("no seed starts with the failing device")


def test_a_failing_trial_is_recorded_and_the_study_goes_on(tmp_path):
    bad = unavailable_device()
    proc = run_train(
        [
            "-m",
            "hparams_search=normal_std",
            *QUICK,
            "init.std=0.05",
            f"trainer.device=choice({bad},cpu)",
            "hydra.sweeper.sampler=grid",
            f"hydra.sweeper.seed={grid_seed_failing_first(bad)}",
            "hydra.sweeper.max_failure_rate=0.5",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = study_of(tmp_path)
    assert [(t.number, t.params["trainer.device"], t.state.name) for t in study.trials] == [
        (0, bad, "FAIL"),
        (1, "cpu", "COMPLETE"),
    ]
    assert f"'{bad}'" in study.trials[0].user_attrs["reason"]

    (parent,), children = parents_and_children(tmp_path)
    runs = {int(r.data.tags["trial_number"]): r for r in children[parent.info.run_id]}
    assert runs[0].info.status == "FAILED" and runs[0].data.tags["trial_state"] == "FAIL"
    assert bad in runs[0].data.tags["trial_reason"]
    assert runs[1].info.status == "FINISHED" and runs[1].data.tags["trial_state"] == "COMPLETE"
    assert parent.info.status == "FINISHED"  # one failure within max_failure_rate: the study succeeded


def test_max_failure_rate_stops_the_study_cleanly(tmp_path):
    bad = unavailable_device()
    proc = run_train(
        [
            "-m",
            "hparams_search=normal_std",
            *QUICK,
            f"trainer.device={bad}",
            "hydra.sweeper.n_trials=5",
            "hydra.sweeper.max_failure_rate=0.2",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert "2 of 2 trials failed, more than max_failure_rate=0.2" in proc.stderr
    study = study_of(tmp_path)
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL"]  # stopped after the 2nd failure of 5
    (parent,), children = parents_and_children(tmp_path)
    assert parent.info.status == "FAILED" and "max_failure_rate" in parent.data.tags["failure"]
    assert len(children[parent.info.run_id]) == 2
    (sweep_dir,) = sweep_dirs(tmp_path)
    assert "max_failure_rate" in OmegaConf.load(sweep_dir / "optimization_results.yaml").stopped


# --- bad settings ---------------------------------------------------------------------------------------


# End to end for two of them; tests/test_tuning.py checks all four through the same make_plan in-process.
@pytest.mark.parametrize(
    "override, message",
    [
        ("hydra.sweeper.sampler=foo", "hydra.sweeper.sampler = 'foo': unknown sampler; available: tpe, random, grid"),
        ("init.stdd=interval(0.1, 0.5)", "init.stdd is not a key of the config; did you mean init.std"),
    ],
)
def test_bad_sweeper_settings_fail_before_any_trial(tmp_path, override, message):
    proc = run_train(["-m", "hparams_search=normal_std", override], cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "mlruns").exists()  # no study, no MLflow run, no trial
