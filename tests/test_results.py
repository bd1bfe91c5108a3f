"""initsweep.results() and initsweep.curves(): the runs of a real store as DataFrames.

The store is built in-process once for the module: a single run, a sweep of two jobs (init=zeros, normal), then
a newer sweep of two Optuna-style trials (the job side's tags, without a study), a sweep of another experiment and
an experiment without runs.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import initsweep
from conftest import client_for, compose, store_uri
from initsweep.jobs.job import JobContext, execute
from initsweep.protocol import Parent, Tag
from initsweep.report import results as results_module
from initsweep.report.results import CURVE_COLUMNS, RUN_COLUMNS
from initsweep.tracking import client as tracking
from initsweep.writer import sweep_runs

QUICK = ("trainer.epochs=3", "tracking.log_plots=false", "tracking.system_metrics=false")


@dataclass(frozen=True)
class Store:
    directory: Path
    uri: str
    single: str  # run ids
    sweep_a: str
    jobs_a: tuple[str, ...]
    sweep_b: str
    trials_b: tuple[str, ...]
    other_sweep: str


def _job(uri: str, overrides: tuple[str, ...], sweep_dir: Path | None = None, num: int | None = None, tags=None) -> str:
    init = next((o.split("=")[1] for o in overrides if o.startswith("init=")), "normal")
    ctx = JobContext(overrides=overrides, init_choice=init, sweep_dir=sweep_dir, job_num=num)
    outcome = execute(compose([*QUICK, f"tracking.uri={uri}", *overrides]), ctx, extra_tags=tags)
    assert outcome.status.value == "FINISHED", outcome.reason
    return outcome.run_id


def _sweep(uri: str, experiment: str, sweep_dir: Path, name: str) -> tracking.RunLogger:
    """A sweep's parent run, opened as the sweep callback opens it, and its parent file for the jobs."""
    parent = sweep_runs.open_parent(uri, experiment, name, None, [name], {"sweep_dir": str(sweep_dir)})
    Parent(parent.run_id, str(parent.experiment_id), uri, parent.run_id).write(sweep_dir)
    return parent


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    directory = tmp_path_factory.mktemp("results")
    uri = store_uri(directory)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        single = _job(uri, ("init=normal", "seed=0"))
        a = _sweep(uri, "initsweep", directory / "a", "sweep init=zeros,normal")
        jobs_a = tuple(_job(uri, (f"init={i}",), directory / "a", n) for n, i in enumerate(("zeros", "normal")))
        a.end()
        b = _sweep(uri, "initsweep", directory / "b", "study init.std")
        trials_b = tuple(
            _job(uri, (f"init.std={std}",), directory / "b", n, {Tag.TRIAL_NUMBER: n, Tag.STUDY_NAME: "std"})
            for n, std in enumerate((0.05, 0.1))
        )
        b.end()
        other = _sweep(uri, "other", directory / "other", "sweep of another experiment")
        other.end()
        tracking.experiment_id(tracking.connect(uri), "empty")
    return Store(directory, uri, single, a.run_id, jobs_a, b.run_id, trials_b, other.run_id)


@pytest.fixture(autouse=True)
def _no_environment_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def test_one_row_per_job_run_with_the_stores_values(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    df = initsweep.results(tracking_uri=store.uri)
    jobs = [store.single, *store.jobs_a, *store.trials_b]
    assert list(df.run_id) == jobs  # oldest first; the sweeps' parent runs are no rows
    assert tuple(df.columns[: len(RUN_COLUMNS)]) == RUN_COLUMNS
    client = client_for(store.directory)
    for row in df.itertuples(index=False):
        run = client.get_run(row.run_id)
        assert row.run_name == run.info.run_name and row.status == "FINISHED"
        assert row.seed == int(run.data.params["seed"]) and row.init == run.data.tags[Tag.INIT]
        assert row.start_time.value // 10**6 == run.info.start_time  # a UTC timestamp
        for key in ("val/acc_best", "test/acc", "val/epochs_to_learn", "train/loss_final"):
            assert df.loc[df.run_id == row.run_id, key].item() == pytest.approx(run.data.metrics[key], nan_ok=True)
    assert list(df.init) == ["normal", "zeros", "normal", "normal", "normal"]
    assert list(df.group) == ["init=normal", "init=zeros", "init=normal", "init.std=0.05", "init.std=0.1"]
    assert list(df.sweep_id.fillna("")) == ["", store.sweep_a, store.sweep_a, store.sweep_b, store.sweep_b]
    assert df.trial_number.tolist()[3:] == [0, 1] and df.trial_number[:3].isna().all()
    # Params by their dotted key, numbers as numbers; "None" (a null in the config) is missing.
    assert df["trainer.epochs"].tolist() == [3] * 5 and df["trainer.lr"].dtype.kind == "f"
    assert df["init.std"].tolist()[3:] == [0.05, 0.1] and df["trainer.steps"].isna().all()
    assert df["init.name"].tolist() == ["normal", "zeros", "normal", "normal", "normal"]
    assert "seed" not in df.columns[len(RUN_COLUMNS) :]  # the seed param is the seed column

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)  # the environment's store, as for train.py
    assert initsweep.results().run_id.tolist() == jobs


def test_a_sweep_selects_its_runs_and_latest_is_the_newest_sweep(store: Store) -> None:
    a = initsweep.results(sweep=store.sweep_a, tracking_uri=store.uri)
    assert a.run_id.tolist() == list(store.jobs_a) and a.init.tolist() == ["zeros", "normal"]
    assert set(a.sweep_id) == {store.sweep_a} and a.trial_number.isna().all()

    latest = initsweep.results(sweep="latest", tracking_uri=store.uri)
    assert latest.run_id.tolist() == list(store.trials_b)  # the study, started after sweep a
    assert latest.trial_number.tolist() == [0, 1]
    assert latest.equals(initsweep.results(sweep=store.sweep_b, tracking_uri=store.uri))

    other = initsweep.results("other", sweep="latest", tracking_uri=store.uri)
    assert other.empty and tuple(other.columns) == RUN_COLUMNS  # a sweep without jobs
    assert initsweep.results("empty", tracking_uri=store.uri).empty


def test_curves_have_one_row_per_logged_epoch_per_metric(store: Store) -> None:
    df = initsweep.curves(sweep=store.sweep_a, tracking_uri=store.uri)
    assert tuple(df.columns) == CURVE_COLUMNS
    client = client_for(store.directory)
    for run_id in store.jobs_a:
        for metric, epochs in (("val/acc", [0, 1, 2, 3]), ("val/loss", [0, 1, 2, 3]), ("train/loss", [1, 2, 3])):
            rows = df[(df.run_id == run_id) & (df.metric == metric)]
            history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, metric))
            assert list(zip(rows.epoch, rows.value)) == history
            assert rows.epoch.tolist() == epochs  # epoch 0: the network at initialization
    assert len(df) == 2 * (4 + 4 + 3)
    run = df[df.run_id == store.jobs_a[0]]
    assert set(run.init) == {"zeros"} and set(run.group) == {"init=zeros"} and set(run.seed) == {0}
    assert set(run.run_name) == {client.get_run(store.jobs_a[0]).info.run_name}

    best = initsweep.results(sweep=store.sweep_a, tracking_uri=store.uri).set_index("run_id")["val/acc_best"]
    acc = df[df.metric == "val/acc"].groupby("run_id").value.max()
    assert acc.to_dict() == pytest.approx(best.to_dict())  # every epoch is logged: the best is among them

    one = initsweep.curves(metrics="train/acc", tracking_uri=store.uri)  # one metric by name; every job run
    assert set(one.metric) == {"train/acc"} and len(one) == 5 * 3
    assert initsweep.curves("empty", tracking_uri=store.uri).empty


def test_an_unknown_experiment_or_sweep_is_a_value_error_that_names_what_exists(store: Store, tmp_path) -> None:
    with pytest.raises(ValueError, match="no experiment 'nope'") as e:
        initsweep.results("nope", tracking_uri=store.uri)
    assert "'empty', 'initsweep', 'other'" in str(e.value)

    with pytest.raises(ValueError, match=f"no run '{'0' * 32}'") as e:
        initsweep.curves(sweep="0" * 32, tracking_uri=store.uri)
    assert f"sweeps of experiment 'initsweep', newest first: {store.sweep_b} (study init.std, " in str(e.value)
    assert f"), {store.sweep_a} (sweep init=zeros,normal, " in str(e.value)

    with pytest.raises(ValueError, match=f"run '{store.jobs_a[0]}' is a job run, not a sweep's parent run"):
        initsweep.results(sweep=store.jobs_a[0], tracking_uri=store.uri)
    with pytest.raises(ValueError, match="belongs to experiment 'other': pass experiment='other'"):
        initsweep.results(sweep=store.other_sweep, tracking_uri=store.uri)
    with pytest.raises(ValueError, match="experiment 'empty' has no sweep"):
        initsweep.results("empty", sweep="latest", tracking_uri=store.uri)

    missing = tmp_path / "mlruns" / "mlflow.db"
    with pytest.raises(ValueError, match=re.escape(f"no MLflow store at {missing}:")):
        initsweep.results(tracking_uri=f"sqlite:///{missing}")
    assert not missing.parent.exists()  # reading creates no store


def test_the_package_root_exposes_both() -> None:
    assert initsweep.results is results_module.results and initsweep.curves is results_module.curves
    assert {"results", "curves"} <= set(initsweep.__all__) and {"results", "curves"} <= set(dir(initsweep))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = initsweep.nothing  # type: ignore[attr-defined]


@pytest.mark.slow
def test_import_initsweep_loads_neither_mlflow_nor_pandas() -> None:
    code = "import initsweep, sys; print('mlflow' in sys.modules, 'pandas' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["False", "False", "False"]
