"""The runs of an experiment or of one sweep as pandas DataFrames, for notebooks.

:func:`results` has one row per job run (its summary metrics and params), :func:`curves` the per-epoch metrics
in long format (one row per run, metric and logged epoch), ready for seaborn. Both are also
``initsweep.results`` and ``initsweep.curves``. They read the store as the comparison report does
(:func:`initsweep.tracking.client.job_runs`, :func:`~initsweep.tracking.client.child_runs`,
:func:`~initsweep.tracking.client.metric_history`); the group of a run is the report's
(:func:`initsweep.report.comparison.group_of`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from initsweep.protocol import Tag, redact
from initsweep.report.comparison import group_of
from initsweep.tracking import client as tracking

# The columns every results() frame starts with; the metrics (by MLflow name) and params (dotted keys) follow.
RUN_COLUMNS = ("run_id", "run_name", "status", "init", "seed", "group", "start_time", "trial_number", "sweep_id")
CURVE_COLUMNS = ("run_id", "run_name", "group", "init", "seed", "epoch", "metric", "value")
CURVE_METRICS = ("val/acc", "val/loss", "train/loss")
LATEST = "latest"
_LISTED = 10  # sweeps named in an error message


def results(experiment: str = "initsweep", sweep: str | None = None, tracking_uri: str | None = None) -> pd.DataFrame:
    """One row per job run of ``experiment`` (parent runs left out; Optuna trials in, with ``trial_number``),
    oldest first.

    Columns: run_id, run_name, status (FINISHED, FAILED, ...), init, seed, group (the configuration without the
    seed), start_time (UTC), trial_number (missing outside a study), sweep_id (the parent run; missing for a
    single run), then every metric by its MLflow name (``val/acc_best``, ``test/acc``, ...: each metric's last
    logged value; a curve's history is in :func:`curves`), then every param by its dotted key (``trainer.lr``:
    the flattened config; numbers where every value of the column is one; the ``seed`` param is the seed
    column). NaN in a metric means "never" (``val/epochs_to_learn``) or not logged by that run.

    ``sweep``: None (every job run of the experiment), a sweep's parent run id, or ``"latest"`` (the most
    recently started sweep of the experiment). The store: $MLFLOW_TRACKING_URI, else ``tracking_uri``, else
    ``sqlite:///mlruns/mlflow.db`` under the current directory. An unknown experiment or sweep is a ValueError
    that names what there is.
    """
    _, runs = select_runs(experiment, sweep, tracking_uri)
    return runs_frame(runs)


def curves(
    experiment: str = "initsweep",
    sweep: str | None = None,
    metrics: str | Sequence[str] = CURVE_METRICS,
    tracking_uri: str | None = None,
) -> pd.DataFrame:
    """The logged history of ``metrics`` of the same runs as :func:`results`, in long format: one row per
    run, metric and logged epoch, with the columns run_id, run_name, group, init, seed, epoch, metric, value.

    Epoch 0 is the network at initialization (``val/acc``, ``val/loss``: logged before training); the training
    metrics start at epoch 1. A long run logs a subset of its epochs (``tracking.max_points``, see
    docs/metrics.md). For seaborn: ``sns.lineplot(data=df[df.metric == "val/acc"], x="epoch", y="value",
    hue="init")`` draws the mean over seeds with a 95% band.
    """
    keys = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    client, runs = select_runs(experiment, sweep, tracking_uri)
    rows = []
    for run in runs:
        who = _identity(run)
        for key in keys:
            rows += [(*who, step, key, value) for step, value in tracking.metric_history(client, run.info.run_id, key)]
    frame = pd.DataFrame(rows, columns=list(CURVE_COLUMNS))
    return frame.astype({"seed": "Int64", "epoch": "int64", "value": "float64"})


# ---------------------------------------------------------------------------------------------------
# Which runs


def select_runs(experiment: str, sweep: str | None, tracking_uri: str | None) -> tuple[Any, list]:
    """(client, job runs) of the experiment, or of one of its sweeps; ValueError names what exists instead."""
    uri = tracking.resolve_uri(tracking_uri)
    db = tracking.sqlite_path(uri)
    if db is not None and not db.exists():  # reading must not create an empty store (a notebook's own cwd)
        raise ValueError(
            f"no MLflow store at {db.absolute()}: pass tracking_uri='sqlite:////path/to/mlruns/mlflow.db' "
            "(or set MLFLOW_TRACKING_URI), or run from the directory where initsweep (or train.py) ran"
        )
    client = tracking.connect(uri)
    exp = tracking.find_experiment(client, experiment)
    if exp is None:
        names = ", ".join(repr(n) for n in tracking.experiment_names(client)) or "none"
        raise ValueError(f"no experiment {experiment!r} in the MLflow store {redact(uri)}; its experiments: {names}")
    if sweep is None:
        return client, tracking.job_runs(client, experiment, trials=True) or []
    parent = _sweep_parent(client, exp.experiment_id, experiment, sweep)
    runs = tracking.child_runs(client, exp.experiment_id, parent.info.run_id)
    return client, [r for r in runs if Tag.ROLE not in r.data.tags]


def _sweep_parent(client: Any, experiment_id: str, experiment: str, sweep: str) -> Any:
    """The parent run that ``sweep`` names (a run id, or "latest") in the experiment."""
    if sweep == LATEST:
        parent = tracking.latest_sweep(client, experiment_id)
        if parent is None:
            raise ValueError(
                f"experiment {experiment!r} has no sweep (no run tagged {Tag.ROLE}=sweep): use sweep=None for its runs"
            )
        return parent
    run = tracking.find_run(client, sweep)
    if run is not None and Tag.ROLE in run.data.tags and run.info.experiment_id == experiment_id:
        return run
    if run is None:
        why = f"no run {sweep!r} in the store"
    elif run.info.experiment_id != experiment_id:
        other = tracking.experiment_name(client, run.info.experiment_id)
        why = f"run {sweep!r} belongs to experiment {other!r}: pass experiment={other!r}"
    else:
        why = f"run {sweep!r} is a job run, not a sweep's parent run"
    raise ValueError(f"{why}; sweeps of experiment {experiment!r}, newest first: {_listing(client, experiment_id)}")


def _listing(client: Any, experiment_id: str) -> str:
    """The experiment's newest sweeps as ``<run id> (<run name>, <start time>)``, or "none"."""
    parents = tracking.sweep_parents(client, experiment_id, max_results=_LISTED + 1)
    shown = [f"{p.info.run_id} ({p.info.run_name}, {_start(p.info.start_time):%Y-%m-%d %H:%M})" for p in parents]
    more = ", ..." if len(shown) > _LISTED else ""
    return ", ".join(shown[:_LISTED]) + more if shown else "none"


# ---------------------------------------------------------------------------------------------------
# The frames


def _start(ms: int | None) -> pd.Timestamp:
    return pd.Timestamp(ms, unit="ms", tz="UTC") if ms is not None else pd.NaT


def _number(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _identity(run: Any) -> tuple[str, str, str, str | None, int | None]:
    """(run_id, run_name, group, init, seed) of a run."""
    seed = _number(run.data.params.get("seed"))
    return run.info.run_id, run.info.run_name, group_of(run), run.data.tags.get(Tag.INIT), seed


def _run_row(run: Any) -> dict[str, Any]:
    """The RUN_COLUMNS of a run."""
    run_id, name, group, init, seed = _identity(run)
    return {
        "run_id": run_id,
        "run_name": name,
        "status": run.info.status,
        "init": init,
        "seed": seed,
        "group": group,
        "start_time": _start(run.info.start_time),
        "trial_number": _number(run.data.tags.get(Tag.TRIAL_NUMBER)),
        "sweep_id": run.data.tags.get(Tag.SWEEP_ID),
    }


def _typed(column: pd.Series) -> pd.Series:
    """A param column (MLflow keeps strings) as numbers when every value is one ("None", a null in the config,
    and a param the run lacks are missing); else as it is."""
    try:
        return pd.to_numeric(column.where(column != "None"))
    except (ValueError, TypeError):
        return column


def runs_frame(runs: Sequence[Any]) -> pd.DataFrame:
    """The :func:`results` frame of these runs, in their order."""
    base = pd.DataFrame([_run_row(r) for r in runs], columns=list(RUN_COLUMNS))
    base = base.astype({"seed": "Int64", "trial_number": "Int64"})
    metrics = pd.DataFrame([r.data.metrics for r in runs], index=base.index, dtype="float64")
    params = pd.DataFrame(
        [{k: v for k, v in r.data.params.items() if k not in RUN_COLUMNS} for r in runs], index=base.index
    )
    params = params[sorted(params.columns)].apply(_typed) if len(params.columns) else params
    return pd.concat([base, metrics[sorted(metrics.columns)], params], axis=1)
