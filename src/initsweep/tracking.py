"""Every MLflow call of the project lives here.

Runs are written with :class:`mlflow.MlflowClient` (no global "active run" state), and metrics are
buffered and sent with one ``log_batch`` call per flush instead of one call per value: a flush costs about
as much as a single ``log_metric`` call.
"""

from __future__ import annotations

import os
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException

DEFAULT_STORE_DIR = "mlruns"
PARENT_TAG = "mlflow.parentRunId"
# MLflow's limits for one log_batch request.
_MAX_METRICS, _MAX_PARAMS, _MAX_TAGS = 1000, 100, 100
_MAX_PARAM_CHARS = 6000


def resolve_uri(configured: str | None = None) -> str:
    """Tracking URI: $MLFLOW_TRACKING_URI, else ``configured``, else sqlite:///<cwd>/mlruns/mlflow.db."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured
    if uri:
        return uri
    return f"sqlite:///{Path.cwd() / DEFAULT_STORE_DIR / 'mlflow.db'}"


@lru_cache(maxsize=4)
def get_client(uri: str) -> MlflowClient:
    """One client per URI and process, so the store's one-time start-up cost is paid once per sweep."""
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri)


def experiment_id(client: MlflowClient, name: str) -> str:
    """Id of the experiment called ``name``, created if absent (safe when two processes race)."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mapping -> {"a.b.c": "value"}; lists are kept as their string form."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)[:_MAX_PARAM_CHARS]
    return flat


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class RunLogger:
    """Writes one MLflow run. Metrics are buffered until :meth:`flush` (also called by :meth:`end`)."""

    def __init__(self, client: MlflowClient, run_id: str, flush_every_s: float = 30.0):
        self.client = client
        self.run_id = run_id
        self.flush_every_s = flush_every_s
        self._pending: list[Metric] = []
        self._last_flush = time.monotonic()
        self.ended = False

    @property
    def artifact_uri(self) -> str:
        return self.client.get_run(self.run_id).info.artifact_uri

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Buffer metrics for ``step``; flushes when the last flush is older than flush_every_s."""
        ts = int(time.time() * 1000)
        self._pending.extend(Metric(k, float(v), ts, step) for k, v in metrics.items())
        if time.monotonic() - self._last_flush > self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        """Send buffered metrics, 1000 per request."""
        pending, self._pending = self._pending, []
        for chunk in _chunks(pending, _MAX_METRICS):
            self.client.log_batch(self.run_id, metrics=chunk)
        self._last_flush = time.monotonic()

    def log_params(self, params: Mapping[str, str]) -> None:
        items = [Param(k, str(v)[:_MAX_PARAM_CHARS]) for k, v in params.items()]
        for chunk in _chunks(items, _MAX_PARAMS):
            self.client.log_batch(self.run_id, params=chunk)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        items = [RunTag(k, str(v)) for k, v in tags.items()]
        for chunk in _chunks(items, _MAX_TAGS):
            self.client.log_batch(self.run_id, tags=chunk)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def end(self, status: str = "FINISHED") -> None:
        """Flush and close the run with FINISHED, FAILED or KILLED (once; later calls do nothing)."""
        if self.ended:
            return
        try:
            self.flush()
        finally:
            self.client.set_terminated(self.run_id, status=status)
            self.ended = True


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
        all_tags[PARENT_TAG] = parent_run_id
    run = client.create_run(exp_id, run_name=run_name, tags=all_tags)
    return RunLogger(client, run.info.run_id)


def child_runs(client: MlflowClient, exp_id: str, parent_run_id: str) -> list:
    """All runs whose parent is ``parent_run_id``, oldest first."""
    runs = client.search_runs(
        [exp_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
        max_results=10000,
        order_by=["attributes.start_time ASC"],
    )
    return list(runs)


def is_terminal(status: str) -> bool:
    return RunStatus.is_terminated(RunStatus.from_string(status))


# ---------------------------------------------------------------------------------------------------
# Reading runs back (the comparison report)

SWEEP_ROLE_TAG = "initsweep.role"


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
        exp_ids, filter_string=f"tags.`{SWEEP_ROLE_TAG}` = 'sweep'", max_results=1, order_by=["attributes.start_time DESC"]
    )
    return runs[0] if runs else None


def find_run(client: MlflowClient, run_id: str) -> Any | None:
    """The run with this id, or None when there is none."""
    try:
        return client.get_run(run_id)
    except MlflowException:
        return None


def job_runs(client: MlflowClient, experiment_name: str) -> list | None:
    """Every job run of the named experiment (not parents: those carry a role tag), oldest first.

    None when there is no such experiment.
    """
    exp = client.get_experiment_by_name(experiment_name)
    if exp is None:
        return None
    runs = client.search_runs([exp.experiment_id], max_results=10000, order_by=["attributes.start_time ASC"])
    return [r for r in runs if SWEEP_ROLE_TAG not in r.data.tags]
