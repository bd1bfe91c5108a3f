"""Every MLflow call of the project lives here.

Runs are written with :class:`mlflow.MlflowClient` (no global "active run" state), and metrics are
buffered and sent with one ``log_batch`` call per flush instead of one call per value: a flush costs about
as much as a single ``log_metric`` call.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import closing, nullcontext, suppress
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, TypeVar

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.validation import (
    MAX_ENTITIES_PER_BATCH,
    MAX_METRICS_PER_BATCH,
    MAX_PARAM_VAL_LENGTH,
    MAX_PARAMS_TAGS_PER_BATCH,
)
from sqlalchemy.exc import SADeprecationWarning

from initsweep.diagnostics.layer_table import LAYERS_DIR, layer_record, table_file
from initsweep.protocol import (  # noqa: F401 - TrackingError, resolve_uri, DEFAULT_STORE_DIR: used as tracking.*
    DEFAULT_STORE_DIR,
    OPTUNA_SWEEPER_NAME,
    ROLE_SWEEP,
    Failure,
    Parent,
    Tag,
    TrackingError,
    TrialOutcome,
    one_line,
    redact,
    resolve_uri,
)
from initsweep.tracking import locks, run_logger, ui_view
from initsweep.tracking.metrics_file import MetricsFile, file_changed, watch_file
from initsweep.tracking.processes import identity
from initsweep.tracking.store_races import create_sqlite_atomically, open_despite_races

# MLflow's SQLAlchemy store (3.17) declares relationships with the ``noload`` strategy that SQLAlchemy 2.1
# deprecates; the warning is MLflow's to fix, and would stop a run under PYTHONWARNINGS=error.
warnings.filterwarnings("ignore", message=r"The ``noload`` loader strategy", category=SADeprecationWarning)

_T = TypeVar("_T")
# A remote server that stops answering mid-sweep should fail a job in seconds, not after MLflow's default
# of 7 retries with exponential backoff (minutes). The user's own settings win.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
# No progress bars between the sweep's lines when the report reads the per-layer tables back.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _check_server(uri: str, timeout_s: float = 3.0) -> None:
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s):
            pass
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise TrackingError(
            f"cannot reach the MLflow tracking server at {redact(uri)} ({reason}). Start it, or unset "
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


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None


@lru_cache(maxsize=4)
def connect(uri: str) -> MlflowClient:
    """A client for ``uri`` whose store is checked to be reachable and writable (TrackingError otherwise,
    within seconds; a corrupt SQLite file is named). Cached: a multirun in one process pays the store's
    start-up cost once."""
    db = sqlite_path(uri)
    if uri.startswith(("http://", "https://")):
        _check_server(uri)
    elif db is not None:
        _check_directory(db.parent)
    try:
        # One initsweep process creates a new store; other clients (mlflow ui, a notebook) may still race it.
        with locks.store_creation(db) if db else nullcontext():
            if db is not None:
                create_sqlite_atomically(db, lambda private: _open_client(f"sqlite:///{private}"))
            client = open_despite_races(lambda: _open_client(uri), redact(f"the MLflow store {uri}"))
    except Exception as e:  # noqa: BLE001 - any store failure becomes one clear message
        detail = f"{type(e).__name__}: {e}"
        if db is not None and "not a database" in str(e):  # a corrupt file: name it
            detail = f"{db} is not a readable SQLite database (corrupt?); move it away or set tracking.uri"
        raise TrackingError(redact(f"cannot open the MLflow store {uri}: {detail}")) from None
    if db is not None:
        watch_file(db)  # an open SQLite connection goes on writing into a deleted file without any error
        planner_statistics(db)
    return client


@cache
def planner_statistics(db: Path) -> None:
    """Give SQLite's query planner the store's statistics (``ANALYZE``, which MLflow never runs) when it has none
    or its metrics table has more than doubled since (checked once per store and process, by rowid: cheap).
    Without them SQLite reads a run's metric history (``get_metric_history``) through the metrics table's primary
    key, which starts with the metric name: every run's values of that metric, 86 ms a read on a store of 10,000
    runs instead of 0.05 ms through the (run, metric, step) index (scripts/bench_store.py). ``analysis_limit``
    samples about 1000 rows per index: 0.4 s on a 780 MB store. Only a speed-up: a store that stays locked or is
    read-only is left as it is."""
    with suppress(sqlite3.Error), closing(sqlite3.connect(db, timeout=20)) as con:
        rows = con.execute("SELECT max(rowid) FROM metrics").fetchone()[0] or 0
        known = 0
        if con.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone():
            stat = con.execute("SELECT stat FROM sqlite_stat1 WHERE idx = 'index_metrics_run_uuid_key_step'").fetchone()
            known = int(stat[0].split()[0]) if stat else 0
        if rows > 2 * known + 1000:  # a store of a few runs plans well without statistics
            con.execute("PRAGMA analysis_limit=1000")
            con.execute("ANALYZE")
            con.commit()


def _open_client(uri: str) -> MlflowClient:
    client = MlflowClient(tracking_uri=uri)
    client.search_experiments(max_results=1)  # opens (and on first use creates) the store
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
    ``mlflow.experimentKind=custom_model_development`` so that the UI opens on its runs, and carrying
    initsweep's saved view of its runs page (:mod:`initsweep.tracking.ui_view`)."""
    exp = retrying(client.get_experiment_by_name, name)
    if exp is None:
        tags = {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND, ui_view.VIEW_TAG: ui_view.view_tag_value()}
        try:
            return retrying(client.create_experiment, name, tags=tags)
        except MlflowException:
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
        set_experiment_tag(client, exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    if not ui_view.is_current(exp.tags.get(ui_view.VIEW_TAG)):
        set_experiment_tag(client, exp.experiment_id, ui_view.VIEW_TAG, ui_view.view_tag_value())
    return exp.experiment_id


def set_experiment_tag(client: MlflowClient, experiment_id: str, key: str, value: str) -> None:
    """Set an experiment tag that other clients may be setting at the same moment (the workers of one study set
    its view): MLflow's SQL store reads, then inserts a missing tag, so the slower of two first writers fails on
    the key's unique constraint; set again, it updates the row the other inserted. A password in a store URL
    in ``value`` (a sweep's view is named after its command line) is stored as ``***``."""
    value = redact(value)
    open_despite_races(
        lambda: retrying(client.set_experiment_tag, experiment_id, key, value), f"experiment tag {key}", budget_s=20
    )


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class RunLogger:
    """Writes one MLflow run. Metrics go at once to the local metrics.jsonl (:meth:`keep_local`), to the store
    in one ``log_batch`` per ``flush_every_s`` and at :meth:`end`; if refused, the run cannot end FINISHED."""

    def __init__(self, client: MlflowClient, run_id: str, flush_every_s: float = 1.0, experiment_id: str | None = None):
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.run_name = ""
        self.flush_every_s = flush_every_s
        self._pending: list[Metric] = []
        self._last_flush = time.monotonic()
        self.ended = False
        self.latest: dict[str, float] = {}  # the last value logged of each metric
        self.on_end: Callable[[run_logger.RunLogger, str], None] | None = None  # called once the run is closed
        self.local: MetricsFile | None = None
        self.broken: str | None = None  # why the store refused this run's writes

    def keep_local(self, path: Path) -> Path:
        """Append every metric to ``path`` (metrics.jsonl) as it is logged; the run's ``initsweep.metrics_file``
        tag, set when it was created, names the file."""
        self.local = MetricsFile(path, self.run_id, self.client.tracking_uri)
        return path

    def log_metrics(self, metrics: Mapping[str, float], step: int, ts: int | None = None) -> None:
        """Record metrics for ``step`` (at ``ts`` ms since the epoch, default now) locally and buffer them; flush
        if the last flush is older than flush_every_s."""
        ts = ts if ts is not None else int(time.time() * 1000)
        if self.local is not None:
            self.local.metrics(metrics, step, ts)
        self._pending.extend(Metric(k, float(v), ts, step) for k, v in metrics.items())
        self.latest.update({k: float(v) for k, v in metrics.items()})
        self.flush_if_due()

    def flush_if_due(self) -> None:
        """:meth:`flush` when metrics wait and the last flush is older than flush_every_s; a refusal is printed
        (training goes on, the local file keeps the metrics, :meth:`end` fails the run)."""
        if self._pending and time.monotonic() - self._last_flush > self.flush_every_s and not self.broken:
            try:
                self.flush()
            except TrackingError as e:
                print(f"initsweep: warning: {e}; training goes on", file=sys.stderr)

    def flush(self) -> None:
        """Send buffered metrics (as many per request as MLflow takes, with the heartbeat tag); TrackingError if
        refused."""
        if self.broken:  # the store already refused this run's metrics
            raise TrackingError(self.broken)
        pending = list(self._pending)  # dropped only once sent: an interrupt mid-send loses nothing
        heartbeat = [RunTag(Tag.HEARTBEAT, str(int(time.time())))]
        try:
            if (db := sqlite_path(self.client.tracking_uri)) and (gone := file_changed(db)):
                raise TrackingError(f"the MLflow store {db} was {gone}")
            size = min(MAX_METRICS_PER_BATCH, MAX_ENTITIES_PER_BATCH - len(heartbeat))
            for chunk in _chunks(pending, size):
                retrying(self.client.log_batch, self.run_id, metrics=chunk, tags=heartbeat)
        except Exception as e:  # noqa: BLE001 - disk full, store removed, server gone: the run cannot finish
            kept = f", kept in {self.local.path}" if self.local is not None and not self.local.error else ""
            self.broken = f"the store refused the metrics of run {self.run_id} ({one_line(e)}){kept}"
            raise TrackingError(self.broken) from None
        del self._pending[: len(pending)]
        if self.local is not None and pending:
            self.local.flushed(self.local.lines)
        self._last_flush = time.monotonic()

    def log_layers(self, metrics: Mapping[str, float], step: int) -> None:
        """Per-layer values (``diag/<layer>/<stat>``, ``init/<layer>/<stat>``) as one JSON table artifact
        ``layers/step_<step>.json`` ({"layers": [...], "columns": {stat: [value per layer]}}), plus a few scalar
        summaries as metrics (:func:`layer_summaries`); other keys are logged as metrics. A run so carries
        the same few metric keys whatever its depth."""
        scalars, table, artifact_file = layer_record(metrics, step)
        if table is not None:
            self.log_dict(table, artifact_file)
        self.log_metrics(scalars, step)

    def log_dict(self, obj: Mapping[str, Any], artifact_file: str) -> None:
        retrying(self.client.log_dict, self.run_id, obj, artifact_file)
        if artifact_file.startswith(f"{LAYERS_DIR}/"):
            _TABLES[(self.run_id, artifact_file)] = obj

    def log_params(self, params: Mapping[str, Any]) -> None:
        items = [Param(k, redact(str(v))[:MAX_PARAM_VAL_LENGTH]) for k, v in params.items()]
        for chunk in _chunks(items, MAX_PARAMS_TAGS_PER_BATCH):
            retrying(self.client.log_batch, self.run_id, params=chunk)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        items = [RunTag(k, redact(str(v))) for k, v in tags.items()]
        for chunk in _chunks(items, MAX_PARAMS_TAGS_PER_BATCH):
            retrying(self.client.log_batch, self.run_id, tags=chunk)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        retrying(self.client.log_artifact, self.run_id, str(path), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        """An artifact file holding ``text``, passwords of URLs redacted (the run's config.yaml, overrides)."""
        retrying(self.client.log_text, self.run_id, redact(text), artifact_file)

    def move_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """:meth:`log_artifact`, then remove the file, and its directory if that is left empty."""
        try:
            self.log_artifact(path, artifact_path)
        finally:
            with suppress(OSError):  # the directory stays unless it was made for this file alone
                os.unlink(path)
                os.rmdir(os.path.dirname(path))

    def end(self, status: str = "FINISHED") -> None:
        """Flush and close the run FINISHED, FAILED or KILLED (once); if the flush fails: :meth:`fail_tracking`."""
        if self.ended:
            return
        try:
            self.flush()
        except TrackingError as e:
            self.fail_tracking(str(e))
            raise
        retrying(self.client.set_terminated, self.run_id, status=status)
        self.ended = True
        if self.local is not None:
            self.local.end(status)
        if self.on_end is not None:
            self.on_end(self, status)

    def fail_tracking(self, reason: str) -> None:
        """Close the run FAILED, ``failure=tracking``, as far as the store allows (recovery reads the file)."""
        if self.ended:
            return
        self.ended = True
        if self.local is not None:
            self.local.end("FAILED", Failure.TRACKING.value, reason[:2000])
        try:
            tags = [RunTag(Tag.FAILURE, Failure.TRACKING.value), RunTag(Tag.FAILURE_REASON, reason[:5000])]
            self.client.log_batch(self.run_id, tags=tags)
            self.client.set_terminated(self.run_id, status="FAILED")
        except Exception:  # noqa: BLE001,S110 - the store is what failed; the local file has the verdict
            pass
        if self.on_end is not None:
            self.on_end(self, "FAILED")


# Per-layer tables this process logged or read, by (run id, artifact file): a logged table never changes; a
# sweep's report reads each run's three times, and the tracking writer that logged them reads none back.
_TABLES: dict[tuple[str, str], Mapping[str, Any]] = {}


def layer_table(client: MlflowClient, run_id: str, step: int = 0) -> Mapping[str, Any] | None:
    """The per-layer table a run logged for ``step`` (see :meth:`RunLogger.log_layers`), or None."""
    key = (run_id, table_file(step))
    if key not in _TABLES:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = client.download_artifacts(run_id, key[1], tmp)
            except Exception:  # noqa: BLE001 - no such artifact (yet)
                return None
            _TABLES[key] = json.loads(Path(path).read_text())
    return _TABLES[key]


def start_run(
    client: MlflowClient,
    exp_id: str,
    run_name: str,
    tags: Mapping[str, Any] | None = None,
    parent_run_id: str | None = None,
    who: Mapping[str, str] | None = None,
) -> RunLogger:
    """Create a RUNNING run (a child of ``parent_run_id`` when given) and return its logger. ``who`` is the
    process that trains it (:func:`initsweep.tracking.processes.identity`, default this one), for
    :mod:`initsweep.tracking.recovery`."""
    all_tags = {k: redact(str(v)) for k, v in (tags or {}).items()}
    run_name = redact(run_name)
    if parent_run_id:
        all_tags[Tag.PARENT] = parent_run_id
    me = who or identity()
    all_tags.update({Tag.HOST: me["host"], Tag.PID: me["pid"], Tag.PID_START: me["pid_start"]})
    all_tags[Tag.HEARTBEAT] = str(int(time.time()))
    run = retrying(client.create_run, exp_id, run_name=run_name, tags=all_tags)
    logger = RunLogger(client, run.info.run_id, experiment_id=exp_id)
    logger.run_name = run_name
    return logger


def reopen_run(
    client: MlflowClient, run_id: str, who: Mapping[str, str] | None = None, finished: bool = False
) -> RunLogger | None:
    """Set an ended run RUNNING again for the process ``who`` (default this one), without the ``failure`` and
    ``trial_state`` / ``trial_reason`` tags of its last end, and return its logger: a resumed sweep's parent, a
    job resumed from its checkpoint. None when the store has no such run, it was deleted, or it is FINISHED and
    ``finished`` is false (a job's finished run is a result: the job then starts a new run)."""
    run = find_run(client, run_id)
    if run is None or run.info.lifecycle_stage != "active" or (run.info.status == "FINISHED" and not finished):
        return None
    for key in (Tag.FAILURE, Tag.FAILURE_REASON, Tag.FAILURE_EPOCH, Tag.TRIAL_STATE, Tag.TRIAL_REASON):
        if key in run.data.tags:
            retrying(client.delete_tag, run_id, key)
    me = who or identity()
    owner = {Tag.HOST: me["host"], Tag.PID: me["pid"], Tag.PID_START: me["pid_start"], Tag.HEARTBEAT: int(time.time())}
    retrying(client.log_batch, run_id, tags=[RunTag(k, str(v)) for k, v in owner.items()])  # before RUNNING: recovery
    retrying(client.update_run, run_id, status="RUNNING")
    logger = RunLogger(client, run_id, experiment_id=run.info.experiment_id)
    logger.run_name = run.info.run_name or ""
    return logger


def filter_value(value: Any) -> str:
    """``value`` as a string literal of an MLflow filter: in single quotes, or in double quotes when it holds a
    single quote (MLflow's filter parser has no escape for a quote inside a literal). ValueError: both quotes."""
    text = str(value)
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    raise ValueError(f"an MLflow filter cannot match a value holding both ' and \": {text!r}")


def tagged_runs(client: MlflowClient, exp_id: str, tags: Mapping[str, Any]) -> list:
    """The runs of the experiment that carry all ``tags`` (key: value), oldest first. The store selects them
    (one SQL query), so the cost follows the runs found, not the runs the experiment holds."""
    where = " and ".join(f"tags.`{k}` = {filter_value(v)}" for k, v in tags.items())
    runs = client.search_runs([exp_id], filter_string=where, max_results=10000, order_by=["attributes.start_time ASC"])
    return list(runs)


def child_runs(client: MlflowClient, exp_id: str, parent_run_id: str, tags: Mapping[str, Any] | None = None) -> list:
    """All runs whose parent is ``parent_run_id`` (and that carry ``tags``, if given), oldest first."""
    return tagged_runs(client, exp_id, {Tag.PARENT: parent_run_id, **(tags or {})})


# ---------------------------------------------------------------------------------------------------
# Reading runs back (the comparison report)


def metric_history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) of every logged value of ``key``, by step (the last value logged wins per step)."""
    by_step = {m.step: m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.timestamp)}
    return sorted(by_step.items())


def sweep_parents(client: MlflowClient, experiment_id: str | None = None, max_results: int = 1000) -> list:
    """The sweep parent runs (tag ``initsweep.role=sweep``) of one experiment, or of every experiment when
    ``experiment_id`` is None, newest first."""
    exp_ids = [experiment_id] if experiment_id else [e.experiment_id for e in client.search_experiments()]
    if not exp_ids:
        return []
    runs = client.search_runs(
        exp_ids,
        filter_string=f"tags.`{Tag.ROLE}` = '{ROLE_SWEEP}'",
        max_results=max_results,
        order_by=["attributes.start_time DESC"],
    )
    return list(runs)


def latest_sweep(client: MlflowClient, experiment_id: str | None = None) -> Any | None:
    """The most recently started sweep parent run of the experiment (default: of any experiment), or None."""
    runs = sweep_parents(client, experiment_id, max_results=1)
    return runs[0] if runs else None


def find_experiment(client: MlflowClient, name: str) -> Any | None:
    """The experiment called ``name``, or None."""
    return client.get_experiment_by_name(name)


def experiment_names(client: MlflowClient) -> list[str]:
    """The names of the store's experiments, in alphabetical order."""
    return sorted(e.name for e in client.search_experiments())


def experiment_name(client: MlflowClient, experiment_id: str) -> str:
    """The name of the experiment with this id."""
    return client.get_experiment(experiment_id).name


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
    where = f"tags.`{Tag.ROLE}` IS NULL" + ("" if trials else f" and tags.`{Tag.TRIAL_NUMBER}` IS NULL")
    runs: list = []
    token = None
    while token != "":  # every page: a big experiment holds more runs than one search returns (10,000)
        page = client.search_runs(
            [exp.experiment_id], where, max_results=10000, order_by=["attributes.start_time ASC"], page_token=token
        )
        runs += page
        token = page.token or ""
    return runs


# ---------------------------------------------------------------------------------------------------
# A study's bookkeeping: the parent run is the study, each trial a child run


def log_study_start(logger: RunLogger, params: Mapping[str, Any], study_name: str) -> None:
    """The study's settings as params of its parent run, and the tags that mark it as a study."""
    logger.log_params(params)
    logger.set_tags({Tag.STUDY_NAME: study_name, Tag.SWEEPER: OPTUNA_SWEEPER_NAME})


def record_trials(client: MlflowClient, parent: Parent, study_name: str, outcomes: Sequence[TrialOutcome]) -> None:
    """Tag each trial's child run with its number and final state; a trial that failed before its job
    created a run gets a FAILED run of its own, so that every trial has one."""
    for o in outcomes:  # one search per trial: the parent's other runs are not read (a study grows)
        name = f"trial {o.number} {o.label}"
        tags: dict[str, Any] = {
            Tag.TRIAL_NUMBER: o.number,
            Tag.TRIAL_STATE: o.state.value,
            Tag.RUN_NAME: name,
            Tag.STUDY_NAME: study_name,
        }
        if o.reason:
            tags[Tag.TRIAL_REASON] = o.reason
        if o.run_id:  # recorded by the trial's job: no search (23 ms each on a store of 10,000 runs)
            RunLogger(client, o.run_id).set_tags(tags)
            continue
        runs = child_runs(client, parent.experiment_id, parent.run_id, {Tag.TRIAL_NUMBER: o.number})
        if runs:  # the latest, when a dead worker's trial ran again
            RunLogger(client, runs[-1].info.run_id).set_tags(tags)
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


def mark_best_runs(
    client: MlflowClient,
    parent: Parent,
    study_name: str,
    numbers: Sequence[int],
    run_ids: Mapping[int, str] | None = None,
) -> None:
    """Tag the runs of the study's best trials (one, or the Pareto front) ``optuna.best=true``, untag the runs of
    the study that no longer are, and list the numbers on the parent (``optuna.best_trials``). A best trial's run
    is taken from ``run_ids`` (trial number -> run id) when there, else searched for by tag. Safe when two
    workers of a shared study do it at once: log_batch retries a concurrent insert of a tag, set_tag would not."""
    RunLogger(client, parent.run_id).set_tags({Tag.BEST_TRIALS: ",".join(map(str, numbers))})

    def of_study(tag: str, value: str) -> list:  # by study, not parent: a resumed study's trials have other parents
        runs = tagged_runs(client, parent.experiment_id, {Tag.STUDY_NAME: study_name, tag: value})
        return [r for r in runs if Tag.ROLE not in r.data.tags]

    wanted, tagged = {str(n) for n in numbers}, set()
    for run in of_study(Tag.BEST, "true"):
        number = run.data.tags.get(Tag.TRIAL_NUMBER)
        if number in wanted:
            tagged.add(number)
            continue
        try:
            retrying(client.delete_tag, run.info.run_id, Tag.BEST)
        except MlflowException as e:  # the other worker deleted it first
            if e.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
    known = run_ids or {}
    for number in sorted(n for n in numbers if str(n) not in tagged):
        found = [known[number]] if number in known else [r.info.run_id for r in of_study(Tag.TRIAL_NUMBER, str(number))]
        for run_id in found:
            RunLogger(client, run_id).set_tags({Tag.BEST: "true"})
