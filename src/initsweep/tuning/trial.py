"""The job side of a study: a job of the Optuna sweeper rebuilds its trial, reports every epoch, gets pruned.

The sweeper (main process) hands a job its trial through ``$INITSWEEP_TRIAL`` and the sweep dir's
:class:`~initsweep.protocol.StudySpec`; :func:`run_trial` (in the job's process, which may be a joblib
worker) loads the trial from the shared storage and runs the job with :func:`initsweep.jobs.job.execute`, whose
per-epoch callback is an :class:`EpochReporter`. This module calls the job; the job never calls it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig
from optuna.trial import FrozenTrial

from initsweep._compat import optuna as compat
from initsweep.core.config import ConfigError
from initsweep.core.trainer import EpochMetrics, summarize
from initsweep.jobs.job import JobContext, execute
from initsweep.protocol import STUDY_FILE, TRIAL_ENV, JobStatus, Parent, StudySpec, Tag, objective_value
from initsweep.tuning.plan import make_pruner, trial_storage
from initsweep.tuning.pruning import may_prune
from initsweep.tuning.recovery import JOB_DIR, RESUME_FROM
from initsweep.writer import client as writer
from initsweep.writer import sweep_runs

ATTEMPTS = "initsweep:attempts"  # trial system attr: how many jobs started the trial (2: relaunched, its worker died)


def intermediate_value(metric: str, history: Sequence[EpochMetrics]) -> float:
    """What ``metric`` would be if training stopped after the last epoch of ``history``: the end-of-run
    summary (:func:`initsweep.core.trainer.summarize`) of the epochs so far. Test metrics are not measured during
    training: test/acc and test/loss report the last val acc and val loss instead."""
    last = history[-1]
    return float(summarize(history, test_loss=last.val_loss, test_acc=last.val_acc)[metric])


class EpochReporter:
    """``on_epoch`` callback of a trial's job: report the optimized metric, ask the pruner. The job calls it
    at every logged epoch (every epoch of an ordinary run; ``tracking.max_points`` of a long one), so a
    15000-epoch trial makes at most that many reports, each summarizing the epochs it has seen.

    Returns True (stop training) when the trial should be pruned; never at ``last_epoch``
    (:func:`initsweep.tuning.pruning.may_prune`). An epoch with a non-finite loss is not reported (the job
    then stops on divergence, decided by :func:`initsweep.core.trainer.divergence`). A list of metrics (a
    multi-objective study, which Optuna cannot prune) reports nothing. A step in ``reported`` (an earlier
    attempt of this trial reported it) is neither reported again nor asked to prune: that attempt went on. A
    resumed job shows the reporter its restored epochs first, so each value summarizes the same epochs as in
    an uninterrupted trial.
    """

    def __init__(
        self,
        trial: optuna.Trial,
        metric: str | list[str],
        reported: Collection[int] = (),
        last_epoch: int | None = None,
    ):
        self.trial = trial
        self.metric = metric
        self.last_epoch = last_epoch
        self.reported = set(reported)  # steps an earlier attempt of the trial (its worker died) reported
        self.history: list[EpochMetrics] = []
        self.last_value: float | None = None

    def __call__(self, epoch: EpochMetrics) -> bool:
        self.history.append(epoch)
        if not isinstance(self.metric, str):
            return False
        value = intermediate_value(self.metric, self.history)
        if not all(map(math.isfinite, (value, epoch.train_loss, epoch.val_loss))):
            return False
        self.last_value = value
        if epoch.epoch in self.reported:  # Optuna keeps the first value of a step and warns at a second;
            return False  # and the earlier attempt was not pruned there
        self.trial.report(value, epoch.epoch)
        return may_prune(epoch.epoch, self.last_epoch) and bool(self.trial.should_prune())


def load_trial(spec: StudySpec, number: int) -> tuple[optuna.Trial, FrozenTrial, int]:
    """Rebuild trial ``number`` of the study from the shared storage, with the study's pruner; its stored state
    (the steps an attempt whose worker died reported, the system attrs); and which attempt this is (1, or 2 for
    a relaunch), as recorded in its :data:`ATTEMPTS` attr.

    The sampler is a RandomSampler: the job never samples (its values come as overrides), and a
    GridSampler here would re-register the grid point.
    """
    storage = trial_storage(spec.storage)
    study = optuna.load_study(
        study_name=spec.study_name,
        storage=storage,
        sampler=optuna.samplers.RandomSampler(),
        pruner=make_pruner(spec.pruner, spec.pruner_kwargs),
    )
    study_id = storage.get_study_id_from_name(spec.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
    frozen = storage.get_trial(trial_id)
    attempt = int(frozen.system_attrs.get(ATTEMPTS, 0)) + 1
    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):  # another process failed it meanwhile
        storage.set_trial_system_attr(trial_id, ATTEMPTS, attempt)
    return optuna.trial.Trial(study, trial_id), frozen, attempt


def earlier_result(
    trial: optuna.Trial,
    metric: str | list[str],
    run: tuple[str, dict[str, float]],
    reported: Collection[int],
    last: int,
) -> float | list[float]:
    """The outcome of an earlier attempt of the trial whose ``run`` (id, metrics) ended FINISHED before its worker
    died: its value(s) of ``metric``, or ``optuna.TrialPruned`` when its reports stop before epoch ``last``."""
    run_id, metrics = run
    trial.set_user_attr("run_id", run_id)
    print(
        f"initsweep: trial {trial.number}: its run {run_id} finished before its worker died; not trained again",
        file=sys.stderr,
    )
    if isinstance(metric, str) and reported and max(reported) < last:
        trial.set_user_attr("epochs", max(reported))
        raise optuna.TrialPruned(f"pruned at epoch {max(reported)} (run {run_id})")
    trial.set_user_attr("epochs", last)
    return objective_value(metrics, metric)


class TrialConfigError(RuntimeError):
    """A trial's config is invalid: the trial fails, the study goes on."""


def run_trial(cfg: DictConfig, number: int, ctx: JobContext | None = None) -> float | list[float]:
    """Run one trial's job: train and track it, reporting to the trial every epoch.

    Outcomes, as the sweeper sees them through the job's return:
    * the metric value -> COMPLETE;
    * ``optuna.TrialPruned`` -> PRUNED, raised after the MLflow run ended: when the pruner said so, and
      also when training diverged. A diverged trial is a valid, bad result: pruned, TPE counts it as worse
      than every finished trial and avoids its region, whereas a FAIL trial would be ignored by the sampler
      and count toward max_failure_rate;
    * any other exception -> FAIL (the MLflow run ends FAILED with the reason).
    """
    ctx = ctx or JobContext.from_hydra()
    spec = StudySpec.read(ctx.sweep_dir)
    if spec is None:
        raise RuntimeError(f"{TRIAL_ENV}={number} but no {STUDY_FILE} in the sweep dir {ctx.sweep_dir}")
    trial, stored, attempt = load_trial(spec, number)
    reported = list(stored.intermediate_values)
    parent = Parent.read(ctx.sweep_dir) if attempt > 1 else None
    if parent is not None:  # a relaunch: its worker may have died after the trial's run ended FINISHED
        w = writer.writer() if writer.wanted() else None
        if run := writer.store_side(w, sweep_runs.finished_trial_run, parent, number):
            return earlier_result(trial, spec.optimized_metric, run, reported, int(cfg.trainer.epochs))
    reporter = EpochReporter(trial, spec.optimized_metric, reported, last_epoch=int(cfg.trainer.epochs))
    tags: dict[str, Any] = {Tag.TRIAL_NUMBER: number, Tag.STUDY_NAME: spec.study_name}
    if ctx.output_dir is not None:  # where its resume point is, for a retry should this attempt die
        trial.storage.set_trial_system_attr(compat.trial_id(trial), JOB_DIR, str(ctx.output_dir.resolve()))
    if earlier := stored.system_attrs.get(RESUME_FROM):  # a retry: it goes on from the dead attempt's point
        ctx = dataclasses.replace(ctx, resume_from=Path(earlier))
    try:
        outcome = execute(cfg, ctx, on_epoch=reporter, extra_tags=tags)
    except ConfigError as e:
        raise TrialConfigError(str(e)) from None
    trial.set_user_attr("epochs", outcome.epochs)
    trial.set_user_attr("run_id", outcome.run_id)  # the sweeper tags this run without searching the store
    if outcome.error is not None:
        raise outcome.error
    if outcome.status == JobStatus.DIVERGED:
        raise optuna.TrialPruned(f"diverged at epoch {outcome.epochs}: {outcome.reason}")
    if outcome.stopped_at is not None:
        value = f"{spec.optimized_metric}={reporter.last_value:.4g}"
        raise optuna.TrialPruned(f"pruned at epoch {outcome.stopped_at}: {value}")
    return outcome.value
