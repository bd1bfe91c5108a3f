"""What the processes of a sweep must agree on: tag names, env vars, sweep-dir files, summary metrics.

A sweep involves several processes (Hydra's main process with its callback and sweeper, joblib or submitit
workers running jobs, later readers such as the report). Every name they exchange is defined here, once;
this module imports nothing from the project, so any module may import it.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, overload

Direction = Literal["minimize", "maximize"]

# --- environment variables -------------------------------------------------------------------------------

# A user's config dirs (os.pathsep-separated), searched before the package's own (``--config-dir`` sets it):
# hydra_plugins/initsweep_searchpath reads it in every process of a sweep.
CONFIG_DIRS_ENV = "INITSWEEP_CONFIG_DIRS"
TRIAL_ENV = "INITSWEEP_TRIAL"  # set by the Optuna sweeper on each job (hydra.job.env_set): the trial number

# --- Hydra plugins, by their _target_ ----------------------------------------------------------------------

# hydra/sweeper=basic (conf/hydra/sweeper/basic.yaml), and Hydra's own class it extends
BASIC_SWEEPER = "hydra_plugins.initsweep_basic_sweeper.sweeper.CachedBasicSweeper"
BASIC_SWEEPERS = (BASIC_SWEEPER, "hydra._internal.core_plugins.basic_sweeper.BasicSweeper")
BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"  # runs the jobs in the sweep's process
JOBLIB_LAUNCHER = "hydra_plugins.initsweep_joblib_launcher.launcher.ResilientJoblibLauncher"
OPTUNA_SWEEPER = "hydra_plugins.initsweep_optuna_sweeper.optuna_sweeper.InitsweepOptunaSweeper"
OPTUNA_SWEEPER_NAME = "initsweep_optuna"

# --- files in a multirun's sweep dir -------------------------------------------------------------------------

PARENT_FILE = "initsweep_parent.json"  # the parent run (SweepCallback -> jobs)
STUDY_FILE = "initsweep_study.json"  # the study (sweeper -> its jobs)
PROGRESS_FILE = "initsweep_progress.jsonl"  # one line per finished job (jobs -> their progress lines)
STATUS_FILE = "initsweep_status.json"  # the sweeper's verdict on the sweep (sweeper -> SweepCallback)
LOST_FILE = "initsweep_lost_jobs.txt"  # a line per job without a result when a worker died (launcher -> sweep)
STORE_FAILED_FILE = "initsweep_store_failed.txt"  # a line per job the store failed (jobs -> the sweep's end)
RESULTS_FILE = "optimization_results.yaml"  # a study's results, for people
PLOTS_DIR = "optuna_plots"
JOBS_FILE = "initsweep_jobs.json"  # a grid or list sweep's job list, to resume it (SweepCallback -> sweeper)
RESUME_FILE = "resume.pt"  # a job's resume point, in its output dir (initsweep.jobs.resume)
LOCK_FILE = "initsweep.lock"  # held (flock) by the live sweep that owns the dir; names its pid and host
# Files of the state above: a sweep that reuses a dir removes the ones an earlier sweep left there.
STATE_FILES = (PARENT_FILE, STUDY_FILE, PROGRESS_FILE, STATUS_FILE, LOST_FILE, STORE_FAILED_FILE, JOBS_FILE)


class Tag:
    """MLflow tag names written by one process and read by another (or by people in the UI)."""

    PARENT = "mlflow.parentRunId"
    SOURCE_NAME = "mlflow.source.name"
    GIT_COMMIT = "mlflow.source.git.commit"
    RUN_NAME = "mlflow.runName"
    INIT = "initsweep.init"  # the init group option (zeros, normal, ...)
    OVERRIDES = "initsweep.overrides"  # the job's command-line overrides, space-separated
    GROUP = "initsweep.group"  # the overrides without the seed: runs of one group differ only by seed
    SWEEP_ID = "initsweep.sweep_id"  # the parent run's id
    JOB_NUM = "initsweep.job_num"
    ROLE = "initsweep.role"  # "sweep" on parent runs; absent on job runs
    SWEEPER = "initsweep.sweeper"
    DIAG_WARNING = "diag/warning"
    FAILURE = "failure"  # why a run did not finish: a Failure value
    FAILURE_REASON = "failure.reason"
    FAILURE_EPOCH = "failure.epoch"
    TRIAL_NUMBER = "trial_number"
    TRIAL_STATE = "trial_state"
    TRIAL_REASON = "trial_reason"
    STUDY_NAME = "optuna.study_name"
    BEST_TRIAL = "optuna.best_trial"
    BEST_TRIALS = "optuna.best_trials"  # on a study's parent: the best trial numbers (the Pareto front), "0,3"
    BEST = "optuna.best"  # "true" on the run of the study's best trial (each Pareto-front trial)
    CHECKPOINT = "initsweep.checkpoint"  # the artifact path of a run's saved weights
    # Who writes the run (initsweep.tracking.recovery closes runs whose process is gone):
    HOST = "initsweep.host"
    PID = "initsweep.pid"
    PID_START = "initsweep.pid_start"  # the process's start time (s since the epoch; older runs: clock ticks after
    # boot): pids get reused
    HEARTBEAT = "initsweep.heartbeat"  # unix seconds of the last batch of metrics that reached the store
    METRICS_FILE = "initsweep.metrics_file"  # the job's local metrics.jsonl (initsweep.tracking.metrics_file)
    UPLOADED = "initsweep.uploaded"  # metric lines recovery sent to a FAILED failure=tracking run from its file


ROLE_SWEEP = "sweep"


class Failure(str, Enum):
    """Values of the ``failure`` tag."""

    EXCEPTION = "exception"  # the job raised: an error of the sweep
    DIVERGED = "diverged"  # the loss blew up: a (bad) result of the experiment
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM
    LOST = "lost"  # the process died without closing its run (SIGKILL, OOM killer, power)
    TRACKING = "tracking"  # the store stopped accepting the run's metrics (disk full, store removed)
    SWEEP_UNFINISHED = "sweep did not finish"


class JobStatus(str, Enum):
    """How a job ended; the MLflow run status is FINISHED for FINISHED, FAILED otherwise."""

    FINISHED = "FINISHED"
    DIVERGED = "DIVERGED"
    FAILED = "FAILED"


class TrialState(str, Enum):
    """What the sweeper tells Optuna about a trial (names of ``optuna.trial.TrialState``)."""

    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"
    FAIL = "FAIL"


@dataclass(frozen=True)
class TrialOutcome:
    """What became of one trial of a study (as the sweeper told Optuna)."""

    number: int
    params: dict[str, Any]
    state: TrialState
    value: float | None = None
    reason: str = ""
    epochs: int = 0
    run_id: str = ""  # the MLflow run of the trial's last attempt, as its job recorded it ("" if none did)

    @property
    def label(self) -> str:
        """The trial's values, e.g. ``init.std=0.0812 trainer.lr=0.1``."""
        return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.params.items())


# --- summary metrics --------------------------------------------------------------------------------------

# Logged by every job at its end; any of them can be a sweep's optimized_metric.
SUMMARY_METRICS: dict[str, Direction] = {
    "val/acc_best": "maximize",
    "val/loss_best": "minimize",
    "val/acc_final": "maximize",
    "test/acc": "maximize",
    "test/loss": "minimize",
    "train/loss_final": "minimize",
}


def direction(metric: str) -> Direction:
    """Which way ``metric`` improves: losses are minimized, everything else (accuracies) maximized."""
    if metric in SUMMARY_METRICS:
        return SUMMARY_METRICS[metric]
    return "minimize" if "loss" in metric.rsplit("/", 1)[-1] else "maximize"


@overload
def worst_value(metric: str) -> float: ...
@overload
def worst_value(metric: list[str]) -> list[float]: ...
@overload
def worst_value(metric: str | list[str]) -> float | list[float]: ...
def worst_value(metric: str | list[str]) -> float | list[float]:
    """The worst possible value of ``metric``: +inf for a loss, -inf otherwise (one per metric of a list)."""
    if isinstance(metric, list):
        return [float(worst_value(m)) for m in metric]
    return math.inf if direction(metric) == "minimize" else -math.inf


def metric_names(optimized_metric: str | list[str]) -> list[str]:
    """The metrics a job optimizes: ``optimized_metric`` is one name or (a multi-objective study) a list."""
    return [str(m) for m in optimized_metric] if isinstance(optimized_metric, (list, tuple)) else [optimized_metric]


def objective_value(summary: dict[str, float], optimized_metric: str | list[str]) -> float | list[float]:
    """A job's return value: the optimized metric's summary value, or a list of values for a list of metrics."""
    if isinstance(optimized_metric, (list, tuple)):
        return [summary[m] for m in optimized_metric]
    return summary[optimized_metric]


# --- secrets ------------------------------------------------------------------------------------------------

# A URL's user:password@ (the password may hold "/", as SQLAlchemy reads it up to the "@"), also in Hydra's
# escaped form (postgresql\://u\:pw@h/db; any run of backslashes, as JSON text such as a saved view's name
# doubles them), and a password given as a query parameter (?password=...), which ends at a quote or backslash
# so that redacted JSON text stays JSON.
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*\\*://[^/@\s:\\]*\\*:)[^@\s]+@")
_QUERY_PASSWORD = re.compile(r"(?i)(?P<head>[?&](?:password|passwd|pwd)=)[^&\s'\"\\]+")


DEFAULT_STORE_DIR = "mlruns"


class TrackingError(RuntimeError):
    """The tracking store cannot be reached or written; the message says which and what to do."""


# MLflow's HTTP failure: "API request to URL failed with exception <urllib3's retry error ... (Caused by
# NewConnectionError("<connection object>: Failed to establish a new connection: [Errno 111] ..."))>".
_HTTP_CAUSE = re.compile(r"^(API request to \S+ failed) with exception .*\(Caused by \w+\((['\"])(.*)\2\)\)\s*$")


def one_line(error: BaseException) -> str:
    """``Type: first line of the message``: MLflow's SQLAlchemy errors carry the SQL, its parameters and a link
    on further lines, which a console line (and a ``failure.reason`` tag) does without; an HTTP request that
    could not connect keeps the request and the cause (``API request to URL failed: ... Connection
    refused``), not urllib3's retry wrapper."""
    text = str(error).strip()
    if not text:
        return type(error).__name__
    first = text.splitlines()[0]
    if m := _HTTP_CAUSE.match(first):
        cause = re.sub(r"^(<[^>]*>|\w+\([^)]*\)): ", "", m.group(3))  # the connection object's repr
        first = f"{m.group(1)}: {cause}"
    return f"{type(error).__name__}: {first}"


def reason(error: BaseException) -> str:
    """What a console line says of ``error``: a TrackingError's own message (it says what failed and what to do),
    else :func:`one_line`."""
    return str(error) if isinstance(error, TrackingError) else one_line(error)


def record_store_failure(sweep_dir: Path, job_num: int | None, overrides: Sequence[str], reason: str) -> None:
    """Append ``#N (overrides): reason`` (one line, one short append: jobs of parallel workers share the file) to
    the sweep's :data:`STORE_FAILED_FILE`, which the sweep's end lists with the command that re-runs them."""
    with (sweep_dir / STORE_FAILED_FILE).open("a") as f:
        f.write(f"#{job_num} ({' '.join(overrides)}): {' '.join(reason.split())}\n")


def store_failures(sweep_dir: Path) -> list[str]:
    """The lines :func:`record_store_failure` wrote for this sweep, each job once, in order."""
    path = sweep_dir / STORE_FAILED_FILE
    return list(dict.fromkeys(path.read_text().splitlines())) if path.exists() else []


def resolve_uri(configured: str | None = None) -> str:
    """Tracking URI: $MLFLOW_TRACKING_URI, else ``configured``, else sqlite:///<cwd>/mlruns/mlflow.db."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured
    if uri:
        return uri
    return f"sqlite:///{Path.cwd() / DEFAULT_STORE_DIR / 'mlflow.db'}"


def redact(text: str) -> str:
    """``text`` with the password of every URL in it shown as ``***``: ``postgresql://u:pw@h/db`` ->
    ``postgresql://u:***@h/db``, ``...?password=pw`` -> ``...?password=***``, Hydra's escaped
    ``postgresql\\://u\\:pw@h/db`` alike. Used for everything initsweep shows or records (params, tags,
    results, logs)."""
    return _QUERY_PASSWORD.sub(r"\g<head>***", _URL_PASSWORD.sub(r"\g<head>***@", text))


# --- sweep-dir state files ----------------------------------------------------------------------------------


_Record = TypeVar("_Record", bound="_StateFile")


@dataclass(frozen=True)
class _StateFile:
    """A record kept as the JSON file ``FILE`` of a sweep dir."""

    FILE: ClassVar[str]

    def write(self, sweep_dir: Path) -> Path:
        """Write the file, readable by its owner only: jobs read the store URIs in it, passwords included."""
        path = Path(sweep_dir) / self.FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(asdict(self), indent=1))
        return path

    @classmethod
    def read(cls: type[_Record], sweep_dir: Path | None) -> _Record | None:
        """The record in ``sweep_dir``, or None when it has none."""
        if sweep_dir is None or not (Path(sweep_dir) / cls.FILE).exists():
            return None
        return cls(**json.loads((Path(sweep_dir) / cls.FILE).read_text()))


@dataclass(frozen=True)
class Parent(_StateFile):
    """Where a sweep's jobs log: the parent run and its store."""

    FILE: ClassVar[str] = PARENT_FILE
    run_id: str
    experiment_id: str
    tracking_uri: str
    sweep_id: str
    fixed_overrides: tuple[str, ...] = ()  # the same in every job: left out of run names

    def __post_init__(self) -> None:
        object.__setattr__(self, "fixed_overrides", tuple(self.fixed_overrides))  # a JSON list when read


@dataclass(frozen=True)
class StudySpec(_StateFile):
    """What a job needs to find its trial: written by the sweeper into the sweep dir."""

    FILE: ClassVar[str] = STUDY_FILE
    storage: str
    study_name: str
    pruner: str = "median"
    pruner_kwargs: dict[str, Any] = field(default_factory=dict)
    optimized_metric: str | list[str] = "val/acc_best"  # a list: a multi-objective study (never pruned)


@dataclass(frozen=True)
class SweepVerdict(_StateFile):
    """A sweeper's decision on its sweep's final status (FINISHED or FAILED, with the reason)."""

    FILE: ClassVar[str] = STATUS_FILE
    status: Literal["FINISHED", "FAILED"]
    reason: str = ""
    keep_open: bool = False  # a shared study parent that other workers still use: leave it RUNNING


@dataclass(frozen=True)
class SweepJobs(_StateFile):
    """A grid or list sweep, recorded to be resumed (:mod:`initsweep.sweep.resume`): its parent run and store, the
    command's overrides and each job's, in job-number order (``resume`` and ``max_jobs`` left out); ``done``: the
    jobs that had a result under the parent when this invocation started, which it does not launch again."""

    FILE: ClassVar[str] = JOBS_FILE
    run_id: str
    tracking_uri: str
    command: tuple[str, ...]
    jobs: tuple[tuple[str, ...], ...]
    done: tuple[int, ...] = ()

    def __post_init__(self) -> None:  # JSON lists when read
        object.__setattr__(self, "command", tuple(self.command))
        object.__setattr__(self, "jobs", tuple(tuple(job) for job in self.jobs))
        object.__setattr__(self, "done", tuple(self.done))


def job_config_dict(cfg: Any, resolve: bool = True) -> dict[str, Any]:
    """A composed Hydra config (DictConfig) as the plain, resolved dict every job validates: no ``hydra`` node
    (``resolve=False``: interpolations left as written)."""
    from omegaconf import OmegaConf  # keeps this module free of third-party imports for its other users

    d = OmegaConf.to_container(cfg, resolve=False)
    if not isinstance(d, dict):
        raise TypeError(f"a job config is a mapping, not {type(d).__name__}")
    d.pop("hydra", None)
    # OmegaConf types to_container() as any container with any key type; a DictConfig gives a dict of str keys.
    return OmegaConf.to_container(OmegaConf.create(d), resolve=True) if resolve else d  # type: ignore[return-value]


def trial_number() -> int | None:
    """The trial number the Optuna sweeper gave this job ($INITSWEEP_TRIAL), or None outside a study."""
    raw = os.environ.get(TRIAL_ENV)
    return int(raw) if raw not in (None, "") else None
