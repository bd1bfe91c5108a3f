"""What a user sees in the terminal: one line per finished job, sweep progress with ETA, MLflow UI links.

Lines go through the ``initsweep`` logger, so Hydra's job logging sends them both to the console and to
the job's ``train.log``. Third-party first-run messages (MLflow's table creation, matplotlib's font
cache) are silenced by :func:`quiet_libraries`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from initsweep.protocol import PROGRESS_FILE, redact
from initsweep.tracking.run_logger import RunLogger
from initsweep.tracking.ui_view import VIEW_ID

log = logging.getLogger("initsweep")
UI_BASE = os.environ.get("INITSWEEP_UI_URL", "http://127.0.0.1:5000")
_MODEL_TRAINING = "workflowType=machine_learning"  # MLflow's UI mode for model training runs
_QUIET = {
    "mlflow.store.db.utils": logging.WARNING,  # "Creating initial MLflow database tables..."
    "alembic": logging.WARNING,
    "alembic.runtime.migration": logging.WARNING,
    "matplotlib": logging.ERROR,  # "Matplotlib is building the font cache"
    "matplotlib.font_manager": logging.ERROR,
}


# MLflow's own records of store errors it then raises or gives up on (each a traceback or a multi-line SQL
# dump), by logger and message start: initsweep reports each such failure itself, in one ``initsweep:`` line.
_STORE_ERRORS = {
    "mlflow.store.db.utils": ("SQLAlchemy database error",),
    "mlflow.system_metrics.system_metrics_monitor": (
        "Failed to log system metrics",
        "Failed to get mlflow run",
        "Error terminating system metrics",
    ),
}


_LONG_FLOAT = re.compile(r"(?<![\w.])-?\d+\.\d{4,}(?:e[-+]?\d+)?")


def round_numbers(text: str) -> str:
    """Floats with many digits shown with 3 significant digits: ``init.std=0.08096384`` -> ``init.std=0.081``."""
    return _LONG_FLOAT.sub(lambda m: f"{float(m.group()):.3g}", text)


# The loggers of Hydra's launchers (basic, joblib, initsweep's joblib, submitit): a line per job
# (``#0 : overrides``), and joblib's
# ``Joblib.Parallel(n_jobs=2,backend=loky,prefer=processes,...11 settings) is launching 4 jobs`` per batch.
_LAUNCHERS = (
    "hydra._internal.core_plugins.basic_launcher",
    "hydra_plugins.hydra_joblib_launcher._core",
    "hydra_plugins.initsweep_joblib_launcher._resilient",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher",
)
_JOBLIB_LINE = re.compile(r"^Joblib\.Parallel\((?P<settings>.*)\) is launching (?P<n>\d+) jobs$")


class _LaunchLines(logging.Filter):
    """Launch lines a person reads: a job's overrides without Hydra plumbing (the Optuna sweeper's
    ``++hydra.job.env_set.INITSWEEP_TRIAL=3``) and with short numbers (``init.std=0.081``, not 17 digits);
    joblib's batch line as ``joblib: launching 4 jobs, n_jobs=2``; a password in a store URL among the
    overrides (``tracking.uri=postgresql\\://u\\:pw@h/db``) shown as ``***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if (shown := redact(text)) != text:
            record.msg, record.args, text = shown, (), shown
        if m := _JOBLIB_LINE.match(text):
            n_jobs = re.search(r"\bn_jobs=([^,]+)", m["settings"])
            record.msg, record.args = f"joblib: launching {m['n']} jobs, n_jobs={n_jobs[1] if n_jobs else '?'}", ()
        elif text.lstrip().startswith("#") and " : " in text:
            head, overrides = text.split(" : ", 1)
            kept = [o for o in overrides.split() if not o.lstrip("+~").startswith("hydra.")]
            record.msg, record.args = f"{head} : {round_numbers(' '.join(kept))}", ()
        return True


class _StoreErrorRecords(logging.Filter):
    """Drops a named MLflow logger's records of store errors (:data:`_STORE_ERRORS`; ``SQLAlchemy database
    error`` comes with a traceback of some 80 lines, and MLflow raises the same error right after)."""

    def __init__(self, starts: tuple[str, ...]) -> None:
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno >= logging.WARNING and str(record.msg).startswith(self.starts))


def quiet_libraries() -> None:
    """Lower the first-run chatter of MLflow (database creation) and matplotlib (font cache); drop MLflow's
    records of the store errors initsweep reports itself (:class:`_StoreErrorRecords`); shorten the launch lines of
    Hydra's launchers (:class:`_LaunchLines`)."""
    for name, level in _QUIET.items():
        logging.getLogger(name).setLevel(level)
    for name, starts in _STORE_ERRORS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _StoreErrorRecords) for f in logger.filters):
            logger.addFilter(_StoreErrorRecords(starts))
    for name in _LAUNCHERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _LaunchLines) for f in logger.filters):
            logger.addFilter(_LaunchLines())


def run_url(experiment_id: str, run_id: str) -> str:
    """The run's page in ``mlflow ui`` (``make ui``; base URL from $INITSWEEP_UI_URL). MLflow 3.17's UI opens
    a fresh browser in GenAI mode whatever the experiment's tag says; ``workflowType`` selects Model training."""
    return f"{UI_BASE}/#/experiments/{experiment_id}/runs/{run_id}?{_MODEL_TRAINING}"


def runs_url(experiment_id: str, charts: bool = False, view: str = VIEW_ID) -> str:
    """The experiment's runs page in Model training mode, opened on one of initsweep's saved views (learning
    curves first, summary metrics as columns; see :mod:`initsweep.tracking.ui_view`): the experiment's, or a
    sweep's (``sweep_view_id(parent run id)``); the table, or the chart view."""
    mode = "&compareRunsMode=CHART" if charts else ""
    return f"{UI_BASE}/#/experiments/{experiment_id}/runs?viewStateShareKey={view}&{_MODEL_TRAINING}{mode}"


def _fmt(metrics: Mapping[str, float], key: str, spec: str) -> str:
    value = metrics.get(key)
    return "-" if value is None else format(value, spec)


def job_line(name: str, status: str, metrics: Mapping[str, float], run_id: str, experiment_id: str) -> str:
    """``init=normal seed=0: best val acc 0.974, test acc 0.981, best val loss 0.0912 | run ID | URL``."""
    state = "" if status == "FINISHED" else f" [{status}]"
    return (
        f"{round_numbers(name)}{state}: best val acc {_fmt(metrics, 'val/acc_best', '.3f')}"
        f", test acc {_fmt(metrics, 'test/acc', '.3f')}"
        f", best val loss {_fmt(metrics, 'val/loss_best', '.4g')} | run {run_id} | {run_url(experiment_id, run_id)}"
    )


def start_progress(sweep_dir: str | Path, total: int | None) -> None:
    """Record a sweep's start time and job count (None: unknown) for :func:`progress_prefix`."""
    path = Path(sweep_dir) / PROGRESS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"start": time.time(), "total": total}) + "\n")


def progress_prefix(sweep_dir: str | Path | None) -> str:
    """Count one more finished job and return ``[done/total, ETA m:ss] `` ('' outside a sweep).

    ETA = elapsed / done x (total - done), the mean time per finished job so far. Jobs in parallel
    workers append to the same file (one short line per append), so the count holds across processes.
    """
    if sweep_dir is None:
        return ""
    path = Path(sweep_dir) / PROGRESS_FILE
    if not path.exists():
        return ""
    with path.open("a") as f:
        f.write("{}\n")
    lines = path.read_text().splitlines()
    head: dict[str, Any] = json.loads(lines[0])
    done, total = len(lines) - 1, head.get("total")
    elapsed = time.time() - head["start"]
    if not total:
        return f"[{done} done, {elapsed:.0f} s] "
    left = max(0, total - done)
    eta = elapsed / done * left if done else math.nan
    return f"[{done}/{total}, ETA {int(eta // 60)}:{int(eta % 60):02d}] "


def job_reporter(name: str, sweep_dir: str | Path | None):
    """A :class:`~initsweep.tracking.run_logger.RunLogger` ``on_end`` hook that logs the job's closing line."""

    def report(logger: RunLogger, status: str) -> None:
        line = job_line(name, status, logger.latest, logger.run_id, logger.experiment_id or "0")
        log.info(progress_prefix(sweep_dir) + line)

    return report


class JobLogFile(logging.FileHandler):
    """Hydra's job log file (``train.log``, conf/hydra/job_logging/initsweep.yaml). A record it cannot write (a
    full disk) is said once, in one line, and the file is then left alone: logging's own handler prints a
    traceback for every record."""

    failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.failed:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        self._say(sys.exc_info()[1])

    def close(self) -> None:
        try:  # closing flushes what is buffered
            super().close()
        except OSError as e:
            self._say(e)

    def _say(self, error: BaseException | None) -> None:
        if not self.failed:
            self.failed = True
            print(f"initsweep: warning: cannot write {self.baseFilename} ({error}); the job goes on", file=sys.stderr)
