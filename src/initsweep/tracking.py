"""Every MLflow call of the project lives here.

Runs are written with :class:`mlflow.MlflowClient` (no global "active run" state), and metrics are
buffered and sent with one ``log_batch`` call per flush instead of one call per value: a flush costs about
as much as a single ``log_metric`` call.
"""

from __future__ import annotations

import os
import random
import re
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from initsweep import locks
from initsweep.protocol import OPTUNA_SWEEPER_NAME, ROLE_SWEEP, Failure, Parent, Tag, TrialOutcome

DEFAULT_STORE_DIR = "mlruns"
# MLflow's limits for one log_batch request.
_MAX_METRICS, _MAX_PARAMS, _MAX_TAGS = 1000, 100, 100
_MAX_PARAM_CHARS = 6000
_T = TypeVar("_T")
# A remote server that stops answering mid-sweep should fail a job in seconds, not after MLflow's default
# of 7 retries with exponential backoff (minutes). The user's own settings win.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
# No progress bars between the sweep's lines when the report reads the per-layer tables back.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


class TrackingError(RuntimeError):
    """The tracking store cannot be reached or written; the message says which and what to do."""


def resolve_uri(configured: str | None = None) -> str:
    """Tracking URI: $MLFLOW_TRACKING_URI, else ``configured``, else sqlite:///<cwd>/mlruns/mlflow.db."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured
    if uri:
        return uri
    return f"sqlite:///{Path.cwd() / DEFAULT_STORE_DIR / 'mlflow.db'}"


def _check_server(uri: str, timeout_s: float = 3.0) -> None:
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s):
            pass
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise TrackingError(
            f"cannot reach the MLflow tracking server at {uri} ({reason}). Start it, or unset "
            "MLFLOW_TRACKING_URI / tracking.uri to use the local store mlruns/mlflow.db."
        ) from None


def _check_directory(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as e:
        raise TrackingError(
            f"the MLflow store directory {directory} is not a writable directory ({e.strerror or e})."
        ) from None


@lru_cache(maxsize=4)
def connect(uri: str) -> MlflowClient:
    """A client for ``uri`` whose store is checked to be reachable and writable (TrackingError otherwise,
    within seconds). Cached: a multirun in one process pays the store's start-up cost once."""
    db_file = Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None
    if uri.startswith(("http://", "https://")):
        _check_server(uri)
    elif db_file is not None:
        _check_directory(db_file.parent)
    try:
        with locks.store_creation(db_file) if db_file else nullcontext():  # one process creates a new store
            client = MlflowClient(tracking_uri=uri)  # opens (and on first use creates) the store
            retrying(client.search_experiments, max_results=1)
    except Exception as e:  # noqa: BLE001 - any store failure becomes one clear message
        raise TrackingError(f"cannot open the MLflow store {uri}: {type(e).__name__}: {e}") from None
    return client


def retrying(call: Callable[..., _T], *args: Any, attempts: int = 10, **kwargs: Any) -> _T:
    """``call(*args, **kwargs)``, retried with jittered exponential backoff (0.05 s doubling, at most
    about 25 s in all) while SQLite reports "database is locked" (several writer processes)."""
    for attempt in range(attempts):
        try:
            return call(*args, **kwargs)
        except Exception as e:  # noqa: BLE001
            if "locked" not in str(e).lower() or attempt == attempts - 1:
                raise
            time.sleep(0.05 * 2**attempt * (0.5 + random.random()))
    raise AssertionError("unreachable")


# MLflow 3's UI opens an experiment in GenAI mode (traces) unless this tag says it holds model training runs.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"


def experiment_id(client: MlflowClient, name: str) -> str:
    """Id of the experiment called ``name``, created if absent (safe when two processes race), tagged
    ``mlflow.experimentKind=custom_model_development`` so that the UI opens on its runs."""
    exp = retrying(client.get_experiment_by_name, name)
    if exp is not None:
        if exp.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
            retrying(client.set_experiment_tag, exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return exp.experiment_id
    try:
        return retrying(client.create_experiment, name, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    except MlflowException:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class RunLogger:
    """Writes one MLflow run. Metrics are buffered until :meth:`flush` (also called by :meth:`end`)."""

    def __init__(
        self, client: MlflowClient, run_id: str, flush_every_s: float = 30.0, experiment_id: str | None = None
    ):
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.run_name = ""
        self.flush_every_s = flush_every_s
        self._pending: list[Metric] = []
        self._last_flush = time.monotonic()
        self.ended = False
        self.latest: dict[str, float] = {}  # the last value logged of each metric
        self.on_end: Callable[[RunLogger, str], None] | None = None  # called once the run is closed

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Buffer metrics for ``step``; flushes when the last flush is older than flush_every_s."""
        ts = int(time.time() * 1000)
        self._pending.extend(Metric(k, float(v), ts, step) for k, v in metrics.items())
        self.latest.update({k: float(v) for k, v in metrics.items()})
        if time.monotonic() - self._last_flush > self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        """Send buffered metrics, 1000 per request."""
        pending, self._pending = self._pending, []
        for chunk in _chunks(pending, _MAX_METRICS):
            retrying(self.client.log_batch, self.run_id, metrics=chunk)
        self._last_flush = time.monotonic()

    def log_layers(self, metrics: Mapping[str, float], step: int) -> None:
        """Per-layer values (``diag/<layer>/<stat>``, ``init/<layer>/<stat>``) as one JSON table artifact
        ``layers/step_<step>.json`` ({"layers": [...], "columns": {stat: [value per layer]}}), plus a few scalar
        summaries as metrics (:func:`layer_summaries`); other keys are logged as metrics. A run so carries
        the same few metric keys whatever its depth."""
        scalars, table = split_layers(metrics)
        if table["layers"]:
            retrying(self.client.log_dict, self.run_id, table, f"{LAYERS_DIR}/step_{step:04d}.json")
            scalars.update(layer_summaries(table))
        self.log_metrics(scalars, step)

    def log_params(self, params: Mapping[str, str]) -> None:
        items = [Param(k, str(v)[:_MAX_PARAM_CHARS]) for k, v in params.items()]
        for chunk in _chunks(items, _MAX_PARAMS):
            retrying(self.client.log_batch, self.run_id, params=chunk)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        items = [RunTag(k, str(v)) for k, v in tags.items()]
        for chunk in _chunks(items, _MAX_TAGS):
            retrying(self.client.log_batch, self.run_id, tags=chunk)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        retrying(self.client.log_artifact, self.run_id, str(path), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        retrying(self.client.log_text, self.run_id, text, artifact_file)

    def end(self, status: str = "FINISHED") -> None:
        """Flush and close the run with FINISHED, FAILED or KILLED (once; later calls do nothing)."""
        if self.ended:
            return
        try:
            self.flush()
        finally:
            retrying(self.client.set_terminated, self.run_id, status=status)
            self.ended = True
        if self.on_end is not None:
            self.on_end(self, status)


LAYERS_DIR = "layers"
_LAYER_KEY = re.compile(r"^(?P<kind>diag|init)/(?P<layer>[^/]+)/(?P<stat>[^/]+)$")


def split_layers(metrics: Mapping[str, float]) -> tuple[dict[str, float], dict[str, Any]]:
    """(scalar metrics, per-layer table): ``diag/fc1/act_std`` -> table column ``diag/act_std``, row fc1."""
    scalars: dict[str, float] = {}
    layers: list[str] = []
    cells: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        m = _LAYER_KEY.match(key)
        if m is None:
            scalars[key] = value
            continue
        if m["layer"] not in layers:
            layers.append(m["layer"])
        cells.setdefault(f"{m['kind']}/{m['stat']}", {})[m["layer"]] = float(value)
    columns = {stat: [by_layer.get(layer) for layer in layers] for stat, by_layer in cells.items()}
    return scalars, {"layers": layers, "columns": columns}


def layer_summaries(table: Mapping[str, Any]) -> dict[str, float]:
    """A few scalars of a per-layer table: activation std of the first and last layer and its min and max
    over layers, gradient std of the first and last layer, the largest dead / saturated unit fraction,
    the total duplicate units, and the smallest and largest weight std."""
    cols = table["columns"]

    def values(stat: str) -> list[float]:
        return [v for v in cols.get(stat, []) if v is not None]

    out: dict[str, float] = {}
    for stat in ("diag/act_std", "diag/grad_out_std"):
        if v := values(stat):
            out[f"{stat}_first"], out[f"{stat}_last"] = v[0], v[-1]
    if v := values("diag/act_std"):
        out["diag/act_std_min"], out["diag/act_std_max"] = min(v), max(v)
    for stat in ("diag/dead_frac", "diag/saturated_frac"):
        if v := values(stat):
            out[f"{stat}_max"] = max(v)
    if v := values("diag/duplicate_units"):
        out["diag/duplicate_units_total"] = sum(v)
    if v := values("init/weight_std"):
        out["init/weight_std_min"], out["init/weight_std_max"] = min(v), max(v)
    return out


def layer_table(client: MlflowClient, run_id: str, step: int = 0) -> dict[str, Any] | None:
    """The per-layer table a run logged for ``step`` (see :meth:`RunLogger.log_layers`), or None."""
    import json

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, f"{LAYERS_DIR}/step_{step:04d}.json", tmp)
        except Exception:  # noqa: BLE001 - no such artifact
            return None
        return json.loads(Path(path).read_text())


def start_run(
    client: MlflowClient,
    exp_id: str,
    run_name: str,
    tags: Mapping[str, Any] | None = None,
    parent_run_id: str | None = None,
) -> RunLogger:
    """Create a RUNNING run (a child of ``parent_run_id`` when given) and return its logger."""
    all_tags = {k: str(v) for k, v in (tags or {}).items()}
    if parent_run_id:
        all_tags[Tag.PARENT] = parent_run_id
    run = retrying(client.create_run, exp_id, run_name=run_name, tags=all_tags)
    logger = RunLogger(client, run.info.run_id, experiment_id=exp_id)
    logger.run_name = run_name
    return logger


def child_runs(client: MlflowClient, exp_id: str, parent_run_id: str) -> list:
    """All runs whose parent is ``parent_run_id``, oldest first."""
    runs = client.search_runs(
        [exp_id],
        filter_string=f"tags.`{Tag.PARENT}` = '{parent_run_id}'",
        max_results=10000,
        order_by=["attributes.start_time ASC"],
    )
    return list(runs)


# ---------------------------------------------------------------------------------------------------
# Reading runs back (the comparison report)


def metric_history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) of every logged value of ``key``, by step (the last value logged wins per step)."""
    by_step = {m.step: m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.timestamp)}
    return sorted(by_step.items())


def latest_sweep(client: MlflowClient) -> Any | None:
    """The most recently started sweep parent run of any experiment, or None."""
    exp_ids = [e.experiment_id for e in client.search_experiments()]
    if not exp_ids:
        return None
    runs = client.search_runs(
        exp_ids,
        filter_string=f"tags.`{Tag.ROLE}` = '{ROLE_SWEEP}'",
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    return runs[0] if runs else None


def find_run(client: MlflowClient, run_id: str) -> Any | None:
    """The run with this id, or None when there is none."""
    try:
        return client.get_run(run_id)
    except MlflowException:
        return None


def job_runs(client: MlflowClient, experiment_name: str, trials: bool = False) -> list | None:
    """Every job run of the named experiment (not parents: those carry a role tag), oldest first; Optuna
    trials (tag ``trial_number``) only when ``trials``.

    None when there is no such experiment.
    """
    exp = client.get_experiment_by_name(experiment_name)
    if exp is None:
        return None
    runs = client.search_runs([exp.experiment_id], max_results=10000, order_by=["attributes.start_time ASC"])
    return [r for r in runs if Tag.ROLE not in r.data.tags and (trials or Tag.TRIAL_NUMBER not in r.data.tags)]


# ---------------------------------------------------------------------------------------------------
# A study's bookkeeping: the parent run is the study, each trial a child run


def log_study_start(logger: RunLogger, params: Mapping[str, Any], study_name: str) -> None:
    """The study's settings as params of its parent run, and the tags that mark it as a study."""
    logger.log_params(params)
    logger.set_tags({Tag.STUDY_NAME: study_name, Tag.SWEEPER: OPTUNA_SWEEPER_NAME})


def record_trials(client: MlflowClient, parent: Parent, study_name: str, outcomes: Sequence[TrialOutcome]) -> None:
    """Tag each trial's child run with its number and final state; a trial that failed before its job
    created a run gets a FAILED run of its own, so that every trial has one."""
    if not outcomes:
        return
    runs = {r.data.tags.get(Tag.TRIAL_NUMBER): r for r in child_runs(client, parent.experiment_id, parent.run_id)}
    for o in outcomes:
        name = f"trial {o.number} {o.label}"
        tags: dict[str, Any] = {
            Tag.TRIAL_NUMBER: o.number,
            Tag.TRIAL_STATE: o.state.value,
            Tag.RUN_NAME: name,
            Tag.STUDY_NAME: study_name,
        }
        if o.reason:
            tags[Tag.TRIAL_REASON] = o.reason
        run = runs.get(str(o.number))
        if run is not None:
            RunLogger(client, run.info.run_id).set_tags(tags)
            continue
        lost = {Tag.JOB_NUM: o.number, Tag.SWEEP_ID: parent.sweep_id}
        lost.update({Tag.FAILURE: Failure.EXCEPTION.value, Tag.FAILURE_REASON: o.reason})
        logger = start_run(client, parent.experiment_id, name, {**tags, **lost}, parent.run_id)
        logger.log_params({k: str(v) for k, v in o.params.items()})
        logger.end("FAILED")


def log_study_end(
    logger: RunLogger,
    metrics: Mapping[str, float],
    best: tuple[int, Mapping[str, Any]] | None,
    results: Path,
    plots: Sequence[Path],
) -> None:
    """The study's counts and best value as metrics of its parent, the best trial (number, params) as tag and
    params, and the results file and plots as artifacts."""
    if best is not None:
        number, params = best
        logger.log_params({f"best_params.{k}": v for k, v in params.items()})
        logger.set_tags({Tag.BEST_TRIAL: number})
    logger.log_metrics(metrics, step=0)
    logger.flush()
    logger.log_artifact(results)
    for path in plots:
        logger.log_artifact(path, "optuna")
