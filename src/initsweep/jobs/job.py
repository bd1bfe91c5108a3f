"""One job: validate the config, build data and model, initialize, train, and track it all in MLflow.

:func:`execute` runs a job and returns its :class:`JobOutcome`; :func:`run_job` is the task of a plain
(non-trial) job and turns that outcome into a return value or an exit code. The job knows nothing of
Optuna: a study's job side (``initsweep.tuning.trial``) calls :func:`execute` with its per-epoch callback.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from initsweep.core import data as datasets
from initsweep.core import parametrization
from initsweep.core.cadence import logged_epochs
from initsweep.core.config import Config, ConfigError, DiagnosticsConfig, flatten, validate
from initsweep.core.initializers import InitError, LayerStats, gain_for, initialize
from initsweep.core.models import build_model, model_activation
from initsweep.core.overrides import varying  # shared overrides are recognised by value, not by text
from initsweep.core.trainer import (
    BestState,
    EpochMetrics,
    Preempted,
    TrainState,
    divergence,
    evaluate,
    fit,
    planned_epochs,
    resolve_device,
    summarize,
    summary_context,
)
from initsweep.diagnostics.isometry import hidden_isometry, isometry_metrics, spectrum_file, spectrum_table
from initsweep.diagnostics.meanfield import meanfield_metrics
from initsweep.diagnostics.signal import Diagnostics, diagnose, fixed_batch
from initsweep.jobs import resume
from initsweep.jobs.devices import job_device
from initsweep.jobs.resources import check_fits, check_streamable, use_deterministic_kernels
from initsweep.protocol import (
    Failure,
    JobStatus,
    Parent,
    Tag,
    TrackingError,
    objective_value,
    record_store_failure,
    resolve_uri,
    trial_number,
    worst_value,
)
from initsweep.report import console
from initsweep.report import drawing as figures
from initsweep.tracking import checkpoint, processes
from initsweep.tracking import metrics_file as ledger
from initsweep.tracking.run_logger import RunLogger
from initsweep.writer import client as writer


@dataclass(frozen=True)
class JobContext:
    """What Hydra knows about the job: where it writes, its overrides, and its sweep (if any)."""

    output_dir: Path | None = None
    overrides: tuple[str, ...] = ()
    init_choice: str | None = None  # the init group option, e.g. "zeros"
    sweep_dir: Path | None = None  # set in a multirun
    job_num: int | None = None
    choices: dict[str, str] = field(default_factory=dict)
    parallel_jobs: int = 1  # jobs running at once on this machine (the joblib launcher's n_jobs)
    resume_from: Path | None = None  # an earlier attempt's output dir to continue (a study's retried trial)

    @staticmethod
    def from_hydra() -> JobContext:
        """The running Hydra job's context; an empty one outside Hydra (e.g. in tests)."""
        if not HydraConfig.initialized():
            return JobContext()
        hc = HydraConfig.get()
        multirun = hc.mode == RunMode.MULTIRUN
        choices = {k: str(v) for k, v in hc.runtime.choices.items() if not k.startswith("hydra")}
        n_jobs = int(hc.launcher.get("n_jobs") or 1) if multirun else 1
        return JobContext(
            output_dir=Path(hc.runtime.output_dir),
            overrides=tuple(hc.overrides.task),
            init_choice=choices.get("init"),
            sweep_dir=Path(hc.sweep.dir) if multirun else None,
            job_num=hc.job.num if multirun else None,
            choices=choices,
            parallel_jobs=(os.cpu_count() or 1) if n_jobs < 0 else max(1, n_jobs),
        )


def intra_op_threads(configured: int | None, parallel_jobs: int, deterministic: bool = False) -> int:
    """PyTorch's intra-op threads for a job: the configured number, else 1 when ``deterministic`` (results then
    do not depend on the launcher or the core count), else the cores (or $OMP_NUM_THREADS) shared out among the
    jobs that run at once, so two joblib workers on 2 cores get 1 thread each."""
    if configured:
        return configured
    if deterministic:
        return 1
    available = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
    return max(1, available // parallel_jobs)


def group_name(overrides: tuple[str, ...], init_name: str) -> str:
    """The run's configuration without its seed (``init=zeros``): runs of one group differ only by seed."""
    shown = [o for o in overrides if not o.lstrip("+~").startswith(("hydra", "seed="))]
    return " ".join(shown) if shown else f"init={init_name}"


def run_name(overrides: tuple[str, ...], init_name: str, seed: int, fixed: tuple[str, ...] = ()) -> str:
    """A readable run name that says what varies: ``init=zeros seed=0``.

    ``fixed`` are overrides shared by every job of the sweep; they are left out.
    """

    return f"{group_name(varying(overrides, fixed), init_name)} seed={seed}"


def run_diagnostics(
    model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor], cfg: DiagnosticsConfig
) -> Diagnostics:
    """:func:`initsweep.diagnostics.signal.diagnose` with the config's settings; adds ``time/diag_s``."""
    t0 = time.perf_counter()
    diag = diagnose(model, *batch, cfg.warn_factor, cfg.duplicate_tol, cfg.saturation_tol)
    # diag/jacobian_sv_*, diag/weight_sv_*: the Jacobian costs a backward pass per output unit, hence fewer examples
    diag.metrics.update(isometry_metrics(model, batch[0][: cfg.jacobian_batch]))
    # diag/hidden_*: the hidden-to-hidden Jacobian at q* (MLPs of one hidden width, conv nets, residual streams)
    hidden, spectrum = hidden_isometry(model, batch[0][: cfg.hidden_jacobian_batch], model_activation(model))
    diag.metrics.update(hidden)
    diag.metrics["time/diag_s"] = time.perf_counter() - t0
    return dataclasses.replace(diag, spectrum=spectrum) if spectrum else diag


def diagnose_at_init(
    model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor], cfg: DiagnosticsConfig, background: bool
) -> Future[Diagnostics]:
    """:func:`run_diagnostics` of the initialized model: now, or (``background``) in a thread on a copy of the
    model while training starts. Diagnostics draw no random number, so when they run changes nothing."""
    if not background:
        done: Future[Diagnostics] = Future()
        done.set_result(run_diagnostics(model, batch, cfg))
        return done
    pool = ThreadPoolExecutor(1, thread_name_prefix="initsweep-diag")
    try:
        return pool.submit(run_diagnostics, copy.deepcopy(model), batch, cfg)
    finally:
        pool.shutdown(wait=False)  # the thread ends with its one task


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The project's git commit, when it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def init_metrics(stats: list[LayerStats]) -> dict[str, float]:
    """``init/<layer>/weight_std``, ``.../weight_mean``, ``.../weight_std_expected`` of every layer, and the same
    ``bias_*`` of every layer with a bias."""
    out: dict[str, float] = {}
    for s in stats:
        for part in ("weight", "bias"):
            for stat in ("std", "mean", "std_expected"):
                if (value := getattr(s, f"{part}_{stat}")) is not None:
                    out[f"init/{s.layer}/{part}_{stat}"] = value
    return out


@dataclass(frozen=True)
class JobOutcome:
    """How a job ended. ``value`` is its optimized metric (the worst value unless FINISHED); ``epochs`` the
    epochs trained; ``stopped_at`` the epoch after which the ``on_epoch`` callback stopped training."""

    value: float | list[float]  # a list when optimized_metric is a list (a multi-objective study)
    status: JobStatus
    run_id: str
    epochs: int = 0
    reason: str | None = None
    error: Exception | None = None
    stopped_at: int | None = None


def execute(
    cfg: DictConfig,
    ctx: JobContext | None = None,
    on_epoch: Callable[[EpochMetrics], bool] | None = None,
    extra_tags: dict[str, Any] | None = None,
) -> JobOutcome:
    """Train and track one job and return its outcome; its value is the ``optimized_metric``.

    ``on_epoch`` (optional) sees every logged epoch's metrics (``tracking.log_every`` / ``max_points``: every
    epoch of an ordinary run), before any stopping decision, and may return True to stop training early (a
    study's pruning); a resumed run shows it first the logged epochs its earlier attempts trained, in order, and
    ignores its answers to those. ``extra_tags`` go on the run (e.g. the trial number). An invalid config raises
    ConfigError, an unusable store TrackingError, both before any run exists. A
    diverged or crashed job ends its run FAILED (tag ``failure``) and returns the worst value for the
    metric's direction; Ctrl-C or SIGTERM ends it KILLED and propagates KeyboardInterrupt. A store that
    refuses the run's metrics ends it FAILED (``failure=tracking``, error TrackingError); every metric is
    also appended at once to ``metrics.jsonl`` in the job's output dir (:mod:`initsweep.tracking.metrics_file`).
    """
    ctx = ctx or JobContext.from_hydra()
    raw: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    config = validate(raw)
    resumable = _Resumable.of(config, raw, ctx)
    parent = Parent.read(ctx.sweep_dir)  # the multirun's parent run, if any
    uri = parent.tracking_uri if parent else resolve_uri(config.tracking.uri)
    writer.warm(uri)  # an existing store opens in the tracking writer while this process builds the job
    data, model, stats, used, lr_mults = _build(config, raw, ctx)  # all that can fail because of the config

    # The config is valid: open the store (in the tracking writer, while the diagnostics run here); a single
    # run first closes what dead processes left RUNNING in it.
    store = writer.open_store(uri, config.experiment_name, parent.experiment_id if parent else None, not parent)

    init_label = ctx.init_choice or config.init.name
    name = run_name(ctx.overrides, init_label, config.seed, parent.fixed_overrides if parent else ())
    # Work moved off the critical path goes to a second thread when a CPU core is spare: the init diagnostics
    # run while training starts, and each epoch is measured while the next one trains, unless something may
    # stop training early (a trial's pruning would pay the epoch trained ahead).
    spare_core = data.device.type == "cpu" and torch.get_num_threads() * ctx.parallel_jobs < (os.cpu_count() or 1)
    overlap = spare_core and on_epoch is None
    diag_batch = diag = None
    if config.diagnostics.enabled:
        diag_batch = fixed_batch(data.x_train, data.y_train, config.diagnostics.batch_size)
        if resumable.point is None:  # a resumed run has its diagnostics at init
            diag = diagnose_at_init(model, diag_batch, config.diagnostics, background=spare_core)

    local = ctx.output_dir / ledger.FILE_NAME if ctx.output_dir is not None else None
    tags = _run_tags(ctx, parent, init_label, local, extra_tags)
    resuming = resumable.point.run_id if resumable.point else None
    worst = worst_value(config.optimized_metric)
    # A signal while the run is created (the store has it, this job not yet) ends it once it is here: it was
    # left to be closed as lost when the sweep killed the worker (issue 31 re-run, scenario 38).
    with processes.deferred_interrupts() as stopped:
        logger = store.start_run(name, tags, parent.run_id if parent else None, resume_run_id=resuming)  # TrackingError
    try:
        if stopped():
            raise KeyboardInterrupt("interrupted while its run was created")
        if resumable.reopened(logger.run_id):  # this attempt's dir, metrics file, trial number and parent (a retry's)
            logger.set_tags({**tags, Tag.PARENT: parent.run_id} if parent else tags)
        elif diag_batch is not None and diag is None:  # a new run after all
            diag = diagnose_at_init(model, diag_batch, config.diagnostics, background=False)
        logger.on_end = console.job_reporter(name, ctx.sweep_dir)  # the job's closing line (and sweep progress)
        if local is not None:  # every epoch at once, locally: nothing measured is lost (tracking.metrics_file)
            logger.keep_local(local)
    except KeyboardInterrupt:
        _end_interrupted(logger, worst)
        raise

    def train() -> _Trained:
        return _train_and_log(
            config, raw, ctx, data, model, stats, logger, on_epoch, overlap, diag, diag_batch, resumable, used, lr_mults
        )

    try:
        trained = _train_recording_crashes(store, logger, config.tracking, train, worst)
        if isinstance(trained, JobOutcome):
            return trained
        resume.discard(resumable.path)  # a result (FINISHED or diverged): nothing to resume
        return _close_trained(logger, trained, worst)
    except TrackingError as e:  # the store refused the run's metrics: FAILED, never FINISHED
        return _tracking_failed(logger, e, worst)
    except Exception as e:  # noqa: BLE001 - the store failed while recording another failure
        return _tracking_failed(logger, TrackingError(f"{type(e).__name__}: {e}"), worst)


def _build(
    config: Config, raw: dict[str, Any], ctx: JobContext
) -> tuple[datasets.Dataset, torch.nn.Module, list, dict[str, str], dict[str, float]]:
    """Threads, seed, device, data, the model, its initialization and parametrization: ConfigError when the
    config cannot run. Records the effective thread count in ``raw`` (logged as the param and in config.yaml,
    never null); returns the params beside the config's (what its ``auto`` settings stood for,
    :func:`resolved_autos`, and the parametrization's multipliers) and each parameter's lr multiplier last."""
    threads = intra_op_threads(config.trainer.threads, ctx.parallel_jobs, config.trainer.deterministic)
    torch.set_num_threads(threads)
    raw["trainer"]["threads"] = threads
    use_deterministic_kernels(config.trainer.deterministic)
    torch.manual_seed(config.seed)
    device = resolve_device(config.trainer.device)
    if device.type == "cuda":  # several GPUs: one per parallel worker (docs/scale-out.md)
        device = torch.device(job_device("cuda", ctx.job_num, ctx.parallel_jobs, torch.cuda.device_count()))
    data = datasets.load(config.data).to(device)
    check_streamable(config.trainer, data)
    check_fits(config.model, config.trainer, data.input_shape, data.num_classes, device)  # before allocating
    model = build_model(config.model, data.input_shape, data.num_classes).to(device)
    try:
        stats = initialize(model, config.init, model_activation(model), batch=_init_batch(data, config.init.name))
    except InitError as e:
        raise ConfigError(f"Invalid configuration:\n  {e}") from None
    plan = parametrization.plan(model, config.parametrization)
    stats = parametrization.scale_init(model, plan, stats)
    optimizer = config.trainer.optimizer
    used = {**resolved_autos(flatten(raw), model_activation(model), str(device)), **plan.params(optimizer)}
    return data, model, stats, used, plan.lr_multipliers(optimizer)


def _init_batch(data: datasets.Dataset, init: str) -> torch.Tensor | None:
    """Training inputs for the data-dependent initializer (``lsuv``): all of them in memory; of streamed data,
    a fixed sample of ``eval_batch`` rows (:func:`fixed_batch`), read only for lsuv."""
    x = data.x_train
    if isinstance(x, torch.Tensor):
        return x
    return fixed_batch(x, data.y_train, x.eval_batch)[0] if init == "lsuv" else None


def resolved_autos(params: dict[str, str], activation: str, device: str) -> dict[str, str]:
    """What each ``auto`` setting stood for in this job, as params ``<key>_used`` beside ``<key>=auto``:
    ``init.gain_used`` (PyTorch's gain for the model's activation), ``init.nonlinearity_used``,
    ``trainer.device_used``."""
    meaning = {
        "init.gain": lambda: f"{gain_for(activation):.6g}",
        "init.nonlinearity": lambda: activation,
        "trainer.device": lambda: device,
    }
    return {f"{key}_used": meaning[key]() for key, value in params.items() if value == "auto" and key in meaning}


def _run_tags(
    ctx: JobContext, parent: Parent | None, init_label: str, local: Path | None, extra: dict[str, Any] | None
) -> dict[str, Any]:
    """The job run's tags: initializer, overrides, group, sweep, job number, git commit, metrics file."""
    tags: dict[str, Any] = {
        Tag.INIT: init_label,
        Tag.OVERRIDES: " ".join(ctx.overrides),
        Tag.GROUP: group_name(ctx.overrides, init_label),
        Tag.SOURCE_NAME: "train.py",
    }
    if parent:
        tags[Tag.SWEEP_ID] = parent.sweep_id
    if ctx.job_num is not None:
        tags[Tag.JOB_NUM] = ctx.job_num
    if commit := git_commit():
        tags[Tag.GIT_COMMIT] = commit
    if local is not None:  # named by the run from its creation: recovery finds the file of a run killed at once
        tags[Tag.METRICS_FILE] = str(local.resolve())
    return {**tags, **(extra or {})}


def _end_interrupted(logger: RunLogger, worst: float | list[float]) -> None:
    """End the run ``KILLED``, ``failure=interrupted`` (Ctrl-C, SIGTERM); a store that refuses it too is recorded
    as a tracking failure."""
    try:
        logger.set_tags({Tag.FAILURE: Failure.INTERRUPTED.value})
        logger.end("KILLED")
    except Exception as failed:  # noqa: BLE001 - the store failed too
        _tracking_failed(logger, TrackingError(f"{type(failed).__name__}: {failed}"), worst)


def _train_recording_crashes(
    store: Any, logger: RunLogger, t: Any, train: Callable[[], _Trained], worst: float | list[float]
) -> _Trained | JobOutcome:
    """``train()`` under the run's system-metrics monitor. A crash (any exception but TrackingError) ends the
    run FAILED with its traceback and returns the outcome; Ctrl-C ends it KILLED and propagates."""
    try:
        store.start_monitor(logger.run_id, t.system_metrics_interval_s, t.system_metrics)
        try:
            return train()
        finally:
            store.stop_monitor(logger.run_id)
    except (KeyboardInterrupt, Preempted) as e:
        _end_interrupted(logger, worst)
        if isinstance(e, Preempted):  # its state is saved: the job ends as interrupted, resumable
            raise KeyboardInterrupt(str(e)) from None
        raise
    except TrackingError:
        raise
    except Exception as e:  # noqa: BLE001 - a crashed job is recorded, not lost
        reason = f"{type(e).__name__}: {e}"
        logger.set_tags({Tag.FAILURE: Failure.EXCEPTION.value, Tag.FAILURE_REASON: reason[:5000]})
        logger.log_text(traceback.format_exc(), "traceback.txt")
        logger.end("FAILED")
        return JobOutcome(worst, JobStatus.FAILED, logger.run_id, reason=reason, error=e)


def _close_trained(logger: RunLogger, trained: _Trained, worst: float | list[float]) -> JobOutcome:
    """End the run of a job that trained: FAILED with ``failure=diverged`` when it diverged, else FINISHED."""
    if trained.diverged:
        epoch, reason = trained.diverged
        logger.set_tags({Tag.FAILURE: Failure.DIVERGED.value, Tag.FAILURE_EPOCH: epoch, Tag.FAILURE_REASON: reason})
        logger.end("FAILED")
        print(f"initsweep: run {logger.run_id} diverged at epoch {epoch} ({reason})", file=sys.stderr)
        return JobOutcome(worst, JobStatus.DIVERGED, logger.run_id, trained.epochs, reason)
    logger.end("FINISHED")
    return JobOutcome(trained.value, JobStatus.FINISHED, logger.run_id, trained.epochs, stopped_at=trained.stopped_at)


def _tracking_failed(logger: RunLogger, error: TrackingError, worst: float | list[float]) -> JobOutcome:
    """Close the run FAILED, ``failure=tracking`` (as far as the store allows), and say where the metrics are."""
    logger.fail_tracking(str(error))
    kept = f"; its metrics are in {logger.local.path}" if logger.local is not None and not logger.broken else ""
    print(f"initsweep: run {logger.run_id} FAILED: {error}{kept}", file=sys.stderr)
    return JobOutcome(worst, JobStatus.FAILED, logger.run_id, reason=str(error), error=error)


@dataclass(frozen=True)
class _Trained:
    value: float | list[float]  # the optimized metric(s)
    epochs: int
    diverged: tuple[int, str] | None = None  # (epoch, reason)
    stopped_at: int | None = None


def _train_and_log(
    config: Config,
    raw: dict[str, Any],
    ctx: JobContext,
    data: datasets.Dataset,
    model: torch.nn.Module,
    stats: list[LayerStats],
    logger: RunLogger,
    on_epoch: Callable[[EpochMetrics], bool] | None,
    overlap: bool = False,
    diag_at_init: Future[Diagnostics] | None = None,
    diag_batch: tuple[torch.Tensor, torch.Tensor] | None = None,
    resumable: _Resumable | None = None,
    used: dict[str, str] | None = None,
    lr_multipliers: dict[str, float] | None = None,
) -> _Trained:
    """Train with logging. Every evaluated epoch enters the history (the summary) and the divergence check;
    the logged ones (:func:`initsweep.core.cadence.logged_epochs`, and a diverged one) go to MLflow and to
    ``on_epoch``. Step 0 (the init's weights and diagnostics, the val set) is logged once the diagnostics
    are done, at the first epoch at the latest; ``overlap`` measures each epoch in a second thread.
    ``resumable``: the state is saved as :mod:`initsweep.jobs.resume` says, and a resumed run goes on from
    its point, logging only the epochs its earlier attempts did not. ``used``: params beside the config's;
    ``lr_multipliers``: each parameter's lr multiplier (the parametrization's)."""
    resumable = resumable or _Resumable(None, "", None)
    point = resumable.point
    if config.tracking.log_plots:
        figures.prepare(logger)
    if point is None:
        logger.log_params({**flatten(raw), **(used or {})})
        logger.log_text(OmegaConf.to_yaml(OmegaConf.create(raw)), "config.yaml")
        logger.log_text("\n".join(ctx.overrides) + "\n", "overrides.txt")
    val_0 = evaluate(model, data.x_val, data.y_val) if point is None else point.initial_val
    step_0 = _StepZero(logger, stats, val_0, diag_at_init)
    step_0.extra = meanfield_metrics(config.init.name, config.init.params, model_activation(model))
    if point is not None:  # logged by the first attempt
        step_0.logged, step_0.snapshots = True, list(point.snapshots)
    elif diag_at_init is None or diag_at_init.done():
        step_0.log()

    every = config.diagnostics.every
    tc = config.tracking
    epochs = planned_epochs(config.trainer, len(data.y_train))
    logged = logged_epochs(epochs, config.trainer.eval_every, tc.log_every, tc.max_points)
    # every evaluated epoch: the summary is exact whatever is logged
    history: list[EpochMetrics] = list(point.history) if point else []
    done = resumable.logged_through(logger, history)  # the epochs an earlier attempt logged
    for earlier in history:  # restored: on_epoch sees them as in an uninterrupted run (its answers were given)
        _seen_before(earlier, logged, on_epoch)
    diverged = stopped_at = None
    best = BestState()  # the weights at the best val acc, for test/acc_at_best_val
    save = resumable.saver(logger.run_id, history, step_0)
    with processes.deferred_interrupts() if save else contextlib.nullcontext(None) as stop_requested:
        for epoch in fit(
            model,
            data,
            config.trainer,
            config.seed,
            best,
            overlap,
            point.train if point else None,
            save,
            stop_requested,
            lr_multipliers,
        ):
            step_0.log()  # the diagnostics at init ran while the first epoch trained
            history.append(epoch)
            reason = divergence(epoch, step_0.val[0], config.trainer.divergence_factor)
            if epoch.epoch <= done:  # measured again after a resume, logged by the earlier attempt
                _seen_before(epoch, logged, on_epoch)
                continue
            stop = False
            if epoch.epoch in logged or reason:  # the tracking cadence; a diverged epoch is always logged
                logger.log_metrics(epoch.as_metrics(), step=epoch.epoch)
                stop = on_epoch is not None and on_epoch(epoch)
            if diag_batch is not None and every and epoch.epoch % every == 0:
                step_0.snapshots.append((epoch.epoch, run_diagnostics(model, diag_batch, config.diagnostics)))
                logger.log_layers(step_0.snapshots[-1][1].metrics, step=epoch.epoch)
            if reason:
                diverged = (epoch.epoch, reason)
                break
            if stop:
                stopped_at = epoch.epoch
                break
    step_0.log()  # when no epoch was trained
    value = _finish(config, ctx, data, model, logger, history, step_0, best, diverged is None)
    return _Trained(value, len(history), diverged, stopped_at)


def _seen_before(epoch: EpochMetrics, logged: set[int], on_epoch: Callable[[EpochMetrics], bool] | None) -> None:
    """Show ``on_epoch`` an epoch an earlier attempt of the run logged; its answer (stop?) is ignored: the
    earlier attempt went on after it."""
    if on_epoch is not None and epoch.epoch in logged:
        on_epoch(epoch)


@dataclass
class _Resumable:
    """A job's resume point: its file (None: this job does not checkpoint: no output dir, or
    ``trainer.checkpoint_every=null``), the config's digest, and the point found there (brought from
    ``ctx.resume_from`` first, :func:`initsweep.jobs.resume.adopt`), if any."""

    path: Path | None
    digest: str
    point: resume.ResumePoint | None

    @staticmethod
    def of(config: Config, raw: dict[str, Any], ctx: JobContext) -> _Resumable:
        if ctx.output_dir is None or config.trainer.checkpoint_every is None:
            return _Resumable(None, "", None)
        if ctx.resume_from is not None:
            resume.adopt(ctx.resume_from, ctx.output_dir)
        path, digest = ctx.output_dir / resume.FILE_NAME, resume.config_digest(raw)
        return _Resumable(path, digest, resume.load(path, digest))

    def reopened(self, run_id: str) -> bool:
        """Whether the store reopened the point's run; when it could not (gone, finished), the job starts over."""
        if self.point is not None and self.point.run_id != run_id:
            print(f"initsweep: run {self.point.run_id} of {self.path} is gone or finished; a new run", file=sys.stderr)
            self.point = None
        if self.point is not None:
            print(
                f"initsweep: resuming run {run_id} after epoch {self.point.train.epoch} ({self.path})", file=sys.stderr
            )
        return self.point is not None

    def logged_through(self, logger: RunLogger, history: list[EpochMetrics]) -> int:
        """The last epoch an earlier attempt of this run logged (its history's, or its metrics file's)."""
        if self.point is None:
            return 0
        local = logger.local.path if logger.local is not None else None
        logged = ledger.last_step(local, logger.run_id) if local is not None else 0
        return max(logged, history[-1].epoch if history else 0)

    def saver(self, run_id: str, history: list[EpochMetrics], step_0: _StepZero) -> Callable[[TrainState], None] | None:
        """What :func:`~initsweep.core.trainer.fit` calls with each state to save (None: no checkpoints)."""
        if self.path is None:
            return None
        path = self.path
        refused: list[str] = []

        def save(state: TrainState) -> None:
            point = resume.ResumePoint(run_id, self.digest, state, list(history), step_0.val, list(step_0.snapshots))
            if (why := point.save(path)) is not None and not refused:  # said once per job
                refused.append(why)
                print(f"initsweep: warning: cannot write {path} ({why}); training goes on without it", file=sys.stderr)

        return save


class _StepZero:
    """Step 0 of a run: the init's weight statistics and diagnostics and the val set before training, logged
    once (:meth:`log`), when the diagnostics at init are done. Keeps the diagnostics snapshots for the figures."""

    def __init__(
        self, logger: RunLogger, stats: list[LayerStats], val: tuple[float, float], diag: Future[Diagnostics] | None
    ) -> None:
        self.logger, self.stats, self.val, self.diag = logger, stats, val, diag
        self.snapshots: list[tuple[int, Diagnostics]] = []
        self.logged = False
        self.extra: dict[str, float] = {}  # more step-0 metrics (the mean-field quantities)

    def log(self) -> None:
        if self.logged:
            return
        self.logged = True
        diag = self.diag.result() if self.diag is not None else None
        metrics = {**init_metrics(self.stats), **self.extra, **(diag.metrics if diag else {})}
        self.logger.log_layers({**metrics, "val/loss": self.val[0], "val/acc": self.val[1]}, 0)
        if diag is not None:
            self.snapshots.append((0, diag))
            if diag.spectrum:
                table = spectrum_table(diag.spectrum, diag.metrics)
                self.logger.log_text(json.dumps(table), spectrum_file(0))
            if diag.warning:
                print(f"initsweep: warning: {self.logger.run_name}: {diag.warning}", file=sys.stderr)
                self.logger.set_tags({Tag.DIAG_WARNING: diag.warning})


def _finish(
    config: Config,
    ctx: JobContext,
    data: datasets.Dataset,
    model: torch.nn.Module,
    logger: RunLogger,
    history: list[EpochMetrics],
    step_0: _StepZero,
    best: BestState,
    save: bool,
) -> float | list[float]:
    """After training: the figures (drawn by the writer while the test set is measured), the summary metrics,
    the checkpoint when wanted and ``save``; returns the optimized metric(s)."""
    if config.tracking.log_plots:
        out_dir = ctx.output_dir or Path(tempfile.mkdtemp(prefix="initsweep-"))
        out_dir.mkdir(parents=True, exist_ok=True)
        in_process_sweep = ctx.sweep_dir is not None and ctx.parallel_jobs == 1  # the next job can start now
        figures.log_figures(logger, history, step_0.val, step_0.snapshots, out_dir, background=in_process_sweep)
    test_loss, test_acc = evaluate(model, data.x_test, data.y_test)
    last = history[-1].epoch if history else None
    at_best = (test_loss, test_acc) if best.epoch is not None and best.epoch == last else None  # the same weights
    context = summary_context(model, data, best, config.metrics, at_best)
    summary = summarize(history, test_loss, test_acc, **context)
    logger.log_metrics(summary, step=0)  # step 0: the UI shows one-value metrics as bars, not one-point lines
    if save and checkpoint.wanted(config.tracking.checkpoint, in_study=trial_number() is not None):
        checkpoint.save(logger, model, best.state, best.epoch, data.input_shape, data.num_classes)
    return objective_value(summary, config.optimized_metric)


class _Worker:
    """Whether a job of this process (a joblib worker) was interrupted: the sweep is stopping, and loky hands a
    worker the next queued job while the sweep's process waits for the running ones to close their runs."""

    interrupted = False


def run_job(cfg: DictConfig) -> float | list[float]:
    """The task of a plain (non-trial) job: execute it and turn its outcome into a return value or an exit.

    Bad config: one message, exit 2; so is an unusable store for a single run, while a multirun's job that the
    store fails (its run not created, its writes refused) fails alone in one line, recorded in the sweep dir
    (:func:`initsweep.protocol.record_store_failure`) for the sweep's closing list, and the sweep goes on.
    Interrupted: exit 130 (a multirun stops there). A crashed
    single run re-raises; in a multirun the crash is recorded and the sweep goes on (the sweep exits 1 at
    its end). A diverged job is a result: it returns the worst value.
    """
    if _Worker.interrupted:  # no run is created for a job the stopping sweep would only kill (failure=lost)
        raise SystemExit(130)
    ctx = JobContext.from_hydra()
    try:
        outcome = execute(cfg, ctx)
    except TrackingError as e:
        if ctx.sweep_dir is None:
            print(f"initsweep: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        # Fails fast, untrained: a run the store did not create has no id for recovery to upload a local
        # metrics file to, so its training would be spent and run again anyway.
        print(f"initsweep: job {ctx.job_num} not run: {e}", file=sys.stderr)
        record_store_failure(ctx.sweep_dir, ctx.job_num, ctx.overrides, str(e))
        metric = cfg.optimized_metric
        return worst_value([str(m) for m in metric] if OmegaConf.is_list(metric) else str(metric))
    except ConfigError as e:
        print(f"initsweep: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        saved = ctx.output_dir / resume.FILE_NAME if ctx.output_dir is not None else None
        again = f"; the same command resumes it from {saved}" if saved is not None and saved.exists() else ""
        if multiprocessing.parent_process() is None:  # a joblib worker's job: the sweep's process says it
            print(f"initsweep: interrupted; the run was marked KILLED{again}", file=sys.stderr)
        else:
            _Worker.interrupted = True
        raise SystemExit(130) from None
    if isinstance(outcome.error, TrackingError):  # already reported; the sweep exits 1 at its end
        if ctx.sweep_dir is None:
            raise SystemExit(1)
        record_store_failure(ctx.sweep_dir, ctx.job_num, ctx.overrides, str(outcome.error))
        return outcome.value
    if outcome.error is not None:
        if ctx.sweep_dir is None:
            raise outcome.error
        print(
            f"initsweep: job {ctx.job_num} failed ({outcome.reason}); traceback in run {outcome.run_id}",
            file=sys.stderr,
        )
    return outcome.value
