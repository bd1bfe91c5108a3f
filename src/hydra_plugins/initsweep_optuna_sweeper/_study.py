"""One invocation of the sweeper on one study: asks Optuna for trials, launches them as Hydra jobs in batches,
tells Optuna the outcomes.

Flow of :meth:`Study.run`: create or load the study -> write the StudySpec the jobs read -> per batch (the
launcher's n_jobs trials): ask, launch with the trials' values as overrides and
``hydra.job.env_set.INITSWEEP_TRIAL=<number>``, tell COMPLETE / PRUNED / FAIL, record the child runs ->
optimization_results.yaml, Optuna's plots, the parent run's results (``initsweep.writer.sweep_runs``) and the sweep's
verdict for SweepCallback.
"""

import contextlib
import io
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import optuna
from hydra.core.utils import JobReturn
from omegaconf import DictConfig, OmegaConf
from optuna.study import StudyDirection
from optuna.trial import TrialState as OptunaState

from initsweep.protocol import (
    PLOTS_DIR,
    RESULTS_FILE,
    TRIAL_ENV,
    Parent,
    StudySpec,
    SweepVerdict,
    TrialOutcome,
    TrialState,
    redact,
)
from initsweep.protocol import reason as error_reason
from initsweep.sweep.launchers import batch_size
from initsweep.tuning import objectives, pruning, warmstart
from initsweep.tuning import recovery as study_recovery
from initsweep.tuning.plan import FINITE_SAMPLERS, Plan, make_sampler, share_storage, study_plots
from initsweep.tuning.search_space import grid_points
from initsweep.writer import client as writer
from initsweep.writer import sweep_runs

log = logging.getLogger(__name__)


def classify(job_return: JobReturn, n_objectives: int = 1) -> tuple[TrialState, Any, str]:
    """(state, value, reason) of a Hydra JobReturn: a finite return value (a list of ``n_objectives`` for a
    multi-objective study) -> COMPLETE, TrialPruned -> PRUNED, a non-finite value or any other exception -> FAIL."""
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # return_value also prints "Error executing job ..."
            value = job_return.return_value  # re-raises the job's exception when it failed
    except optuna.TrialPruned as e:
        return TrialState.PRUNED, None, str(e) or "pruned"
    except Exception as e:  # noqa: BLE001 - any other failure of the job fails its trial
        return TrialState.FAIL, None, f"{type(e).__name__}: {e}"[:500]
    try:
        return TrialState.COMPLETE, objectives.objective_values(value, n_objectives), ""
    except ValueError as e:
        return TrialState.FAIL, None, str(e)


def consecutive_groups(numbers: Sequence[int]) -> list[list[int]]:
    """Split trial numbers into runs of consecutive numbers ([3,4,6] -> [[3,4],[6]]), so that a launch's
    job numbers (initial_job_idx, +1, ...) equal the trial numbers."""
    groups: list[list[int]] = []
    for n in numbers:
        if groups and n == groups[-1][-1] + 1:
            groups[-1].append(n)
        else:
            groups.append([n])
    return groups


class Study:
    """One invocation of the sweeper on one study."""

    def __init__(self, launcher: Any, config: DictConfig, plan: Plan):
        self.launcher = launcher
        self.plan = plan
        self.config = config
        self.sweep_dir = Path(str(self.config.hydra.sweep.dir))
        # OmegaConf types to_container() as any container; a DictConfig (the launcher's) gives a dict.
        self.batch = batch_size(OmegaConf.to_container(self.config.hydra.launcher, resolve=True))  # type: ignore[arg-type]
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        s = plan.settings
        self.storage = study_recovery.sweeper_storage(plan.storage, s.heartbeat_interval, s.heartbeat_grace)
        share_storage(plan.storage, self.storage)  # the trials it runs in this process: no journal replay each
        self.study = optuna.create_study(
            storage=self.storage,
            sampler=plan.sampler(),
            pruner=plan.pruner(),
            study_name=plan.study_name,
            directions=[StudyDirection[d.upper()] for d in plan.directions],  # as create_study converts them
            load_if_exists=True,  # make_plan refused an existing study when load_if_exists is false
        )
        objectives.name_objectives(self.study, plan.metrics)
        self.keeper = study_recovery.TrialKeeper(self.study, self.storage, s.heartbeat_interval)
        self.seeded = False
        self.sampler_seed: Optional[int] = None  # seed + the number of this invocation's first trial
        self.recovered: list[str] = []  # stale trials of dead processes this invocation failed and retried
        self.interfered: list[str] = []  # trials of this invocation that another process finished
        StudySpec(plan.storage, plan.study_name, s.pruner, plan.pruner_kwargs, plan.optimized_metric).write(
            self.sweep_dir
        )
        self.parent = Parent.read(self.sweep_dir)
        # The parent run's writes go through the tracking writer that opened it, when one did (this process
        # then never imports MLflow: 3 s), else to the store from here (initsweep.writer.sweep_runs).
        self.writer = writer.current()
        self.outcomes: list[TrialOutcome] = []
        self.returns: list[Any] = []

    # -- the loop --------------------------------------------------------------------------------------

    def run(self) -> list[Any]:
        s = self.plan.settings
        self._log_settings()
        log.info(
            f"Study {self.plan.study_name!r} ({self.plan.direction} {self.plan.metric}) "
            f"in {redact(self.plan.storage)}: "
            f"{len(self.study.trials)} earlier trials; running {s.n_trials} with sampler={s.sampler} "
            f"pruner={s.pruner}{pruning.describe(self.plan.pruner_kwargs)}, {self.batch} at a time"
        )
        warmstart.enqueue(self.study, self.plan.enqueue)  # after the counts above: queued trials are new ones
        stop_reason = ""
        failure_budget = float(s.max_failure_rate) * s.n_trials
        while len(self.outcomes) < s.n_trials:
            trials = self._ask(self._room(min(self.batch, s.n_trials - len(self.outcomes))))
            if not trials and self._room(1) == 0:
                log.info(f"Study budget reached: the study holds max_trials={s.max_trials} trials")
                break
            if not trials:
                log.info("Grid exhausted: every point of the search space has been tried")
                break
            self._launch(trials)
            failures = sum(o.state == TrialState.FAIL for o in self.outcomes)
            if failures > failure_budget:
                stop_reason = (
                    f"stopped: {failures} of {len(self.outcomes)} trials failed, more than max_failure_rate="
                    f"{s.max_failure_rate} x n_trials={s.n_trials}"
                )
                log.error(f"Study {self.plan.study_name!r} {stop_reason}")
                break
        self.keeper.stop()
        self._finish(stop_reason)
        return self.returns

    def _room(self, size: int) -> int:
        """``size``, or less when the study's total budget (max_trials) has less room left."""
        left = study_recovery.budget_left(self.study.get_trials(deepcopy=False), self.plan.settings.max_trials)
        return size if left is None else min(size, left)

    def _recover(self) -> None:
        """Fail and retry once the trials that dead processes left RUNNING (initsweep.tuning.recovery)."""
        for line in study_recovery.recover_stale_trials(self.study, self.storage, self.plan.settings.heartbeat_grace):
            log.warning(f"Study {self.plan.study_name!r}: {line}")
            self.recovered.append(line)

    def _ask(self, size: int) -> list[Any]:
        """Up to ``size`` trials, retries of lost trials first; for a grid, no more than the points nobody has
        started yet plus the waiting retries. Each is claimed (owner attrs, heartbeat)."""
        self._recover()
        s = self.plan.settings
        if s.sampler in FINITE_SAMPLERS:
            names = [p.name for p in self.plan.space.params]
            trials = self.study.get_trials(deepcopy=False)
            started = {tuple(t.params.get(n) for n in names) for t in trials if t.state != OptunaState.WAITING}
            waiting = sum(t.state == OptunaState.WAITING for t in trials)
            size = min(size, len(set(grid_points(self.plan.space)) - started) + waiting)
        asked = []
        for _ in range(size):
            # grid, bruteforce and qmc read their position from the study (a grid's point order is its seed's)
            if not self.seeded and s.sampler not in (*FINITE_SAMPLERS, "qmc"):
                trial, self.sampler_seed = study_recovery.ask_first(
                    self.study,
                    self.plan.space.distributions,
                    s.seed,
                    lambda seed: make_sampler(s.sampler, s.sampler_kwargs, seed, self.plan.space),
                )
                self.seeded = True
                log.info(f"Sampler seed {self.sampler_seed} (seed {s.seed} + first trial number {trial.number})")
            else:
                trial = study_recovery.ask(self.study, self.plan.space.distributions)
            self.keeper.claim(trial)
            asked.append(trial)
        return asked

    def _launch(self, trials: list[Any]) -> None:
        """Launch the trials' jobs (job number = trial number), tell Optuna, record the MLflow runs."""
        by_number = {t.number: t for t in trials}
        pending = set(by_number)
        try:
            for group in consecutive_groups(sorted(by_number)):
                overrides = [
                    [*self.plan.space.overrides(by_number[n].params), f"++hydra.job.env_set.{TRIAL_ENV}={n}"]
                    for n in group
                ]
                try:
                    results = self.launcher.launch(overrides, initial_job_idx=group[0])
                except Exception as e:
                    if type(e).__name__ != "UncompletedJobError":  # submitit: a job died without a result
                        raise
                    for n in group:
                        self._tell(by_number[n], TrialState.FAIL, None, f"{type(e).__name__}: {e}"[:500])
                        pending.discard(n)
                    continue
                self.returns.append(results)
                for n, ret in zip(group, results, strict=True):
                    self._tell(by_number[n], *classify(ret, len(self.plan.metrics)))
                    pending.discard(n)
        finally:
            for n in pending:  # interrupted or the launcher failed: never leave a trial RUNNING
                self._retry_interrupted(by_number[n])
            if self.parent is not None:  # not waited for: the writer tags the runs while the next trials train
                done = [o for o in self.outcomes if o.number in by_number]
                writer.store_side(
                    self.writer, sweep_runs.tag_trials, self.parent, self.plan.study_name, done, wait=False
                )

    def _retry_interrupted(self, trial: Any) -> None:
        """Tell FAIL a trial whose job did not return (the study stops) and queue its retry, which the study's
        next run continues from the trial's resume point (initsweep.tuning.recovery.retry_once)."""
        frozen = self._tell(trial, TrialState.FAIL, None, "the sweep stopped before the trial's job returned")
        if frozen.state != OptunaState.FAIL:  # another process finished it
            return
        if (retry := study_recovery.retry_once(self.study, frozen, interrupted=True)) is not None:
            log.warning(f"Trial {trial.number} interrupted: the study's next run continues it as trial {retry}")

    def _tell(self, trial: Any, state: TrialState, value: Any, reason: str) -> optuna.trial.FrozenTrial:
        if reason:
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):  # finished by another process
                trial.set_user_attr("reason", reason)
        frozen = self.study.tell(
            trial,
            value if state == TrialState.COMPLETE else None,
            state=OptunaState[state.value],
            skip_if_finished=True,
        )
        self.keeper.release(trial)
        if by := frozen.system_attrs.get(study_recovery.FAILED_BY):  # another process took it for lost
            state, value = TrialState.FAIL, None
            reason = f"marked FAIL by process {by} while this invocation ran it"
            self.interfered.append(f"trial {trial.number}: {reason}")
        epochs, run_id = int(frozen.user_attrs.get("epochs", 0)), str(frozen.user_attrs.get("run_id", ""))
        outcome = TrialOutcome(trial.number, dict(trial.params), state, value, reason, epochs, run_id)
        self.outcomes.append(outcome)
        result = objectives.describe(self.plan.metrics, value) if value is not None else reason
        log.info(f"Trial {trial.number} {state.value} after {epochs} epochs: {outcome.label}: {result}")
        return frozen

    # -- MLflow ----------------------------------------------------------------------------------------

    def _log_settings(self) -> None:
        if self.parent is None:
            return
        s = self.plan.settings
        params: dict[str, Any] = {
            "optuna.study_name": self.plan.study_name,
            "optuna.storage": redact(self.plan.storage),
            "optuna.direction": self.plan.direction,
            "optuna.metric": self.plan.metric,
            "optuna.sampler": s.sampler,
            "optuna.sampler_kwargs": s.sampler_kwargs,
            "optuna.pruner": s.pruner,
            "optuna.pruner_kwargs": self.plan.pruner_kwargs,
            "optuna.n_trials": s.n_trials,
            "optuna.seed": s.seed,
            "optuna.max_failure_rate": s.max_failure_rate,
            "optuna.first_trial": len(self.study.trials),
            "optuna.enqueue": self.plan.enqueue,
        }
        params.update({f"search.{p.name}": p.expression for p in self.plan.space.params})
        # one parent for every worker: what differs per invocation goes to tags
        per_invocation = ("optuna.n_trials", "optuna.seed", "optuna.first_trial", "optuna.max_failure_rate")
        args = (self.parent, params, self.plan.study_name, s.shared_parent, per_invocation)
        if clash := writer.store_side(self.writer, sweep_runs.log_study_settings, *args, wait=s.shared_parent):
            log.warning(f"Study parent run {self.parent.run_id} has other values for {clash}: kept")

    # -- the end ---------------------------------------------------------------------------------------

    def _epochs_budget(self, o: TrialOutcome) -> int:
        return int(o.params.get("trainer.epochs", self.plan.base["trainer"]["epochs"]))

    def _finish(self, stop_reason: str) -> None:
        """Best params and value, optimization_results.yaml, plots, counts; the sweep's verdict."""
        counts = {state: sum(o.state == state for o in self.outcomes) for state in TrialState}
        epochs = sum(o.epochs for o in self.outcomes)
        budget = sum(self._epochs_budget(o) for o in self.outcomes)
        best = objectives.best_results(self.study, self.plan.metrics)
        if self.interfered:
            lost = "; ".join(self.interfered)
            stop_reason = f"{stop_reason}; {lost}" if stop_reason else f"another process failed trials: {lost}"
            log.error(f"Study {self.plan.study_name!r}: {lost}")
        results: dict[str, Any] = {"name": "initsweep_optuna", **best}
        this_run = {state.value.lower(): n for state, n in counts.items()}
        results.update(
            study_name=self.plan.study_name,
            storage=redact(self.plan.storage),
            direction=self.plan.direction,
            metric=self.plan.metric,
            trials_in_study=len(self.study.trials),
            this_run={**this_run, "epochs_trained": epochs, "epochs_budget": budget},
        )
        results.update(sampler_seed=self.sampler_seed, max_trials=self.plan.settings.max_trials)
        if self.recovered:
            results["recovered"] = self.recovered
        if stop_reason:
            results["stopped"] = stop_reason
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        results_path = self.sweep_dir / RESULTS_FILE
        OmegaConf.save(OmegaConf.create(results), results_path)
        names = [p.name for p in self.plan.space.params]
        plots = study_plots(self.study, names, self.sweep_dir / PLOTS_DIR, self.plan.metrics)

        if "best_trial" in best:
            best_text = f"best {self.plan.metric} = {best['best_value']:.4f} at trial {best['best_trial']}: "
            best_text += str(best["best_params"])
        elif best:
            best_text = f"Pareto front of {self.plan.metric}: trials {objectives.best_numbers(best)}"
        else:
            best_text = "no trial completed"
        log.info(
            f"Study {self.plan.study_name!r}: this run {len(self.outcomes)} trials "
            f"({counts[TrialState.COMPLETE]} complete, {counts[TrialState.PRUNED]} pruned, "
            f"{counts[TrialState.FAIL]} failed), {epochs} of {budget} epochs trained; "
            f"study total {len(self.study.trials)} trials; {best_text}. Results: {results_path}"
        )
        # Failed trials within the budget do not fail the study: SweepCallback ends the parent with this status.
        others = self.plan.settings.shared_parent and any(
            t.state == OptunaState.RUNNING for t in self.study.get_trials(deepcopy=False)
        )  # a shared parent is ended by the last worker
        SweepVerdict("FAILED" if stop_reason else "FINISHED", stop_reason, keep_open=others).write(self.sweep_dir)
        if self.parent is None:
            return
        metrics = {
            "study/n_complete": counts[TrialState.COMPLETE],
            "study/n_pruned": counts[TrialState.PRUNED],
            "study/n_fail": counts[TrialState.FAIL],
            "study/epochs_trained": epochs,
            "study/epochs_budget": budget,
            "study/n_trials_total": len(self.study.trials),
        }
        if "best_value" in best:
            metrics["best_value"] = best["best_value"]
        best_params = (best["best_trial"], best["best_params"]) if "best_trial" in best else None
        shared, numbers = self.plan.settings.shared_parent, objectives.best_numbers(best)
        runs = {o.number: o.run_id for o in self.outcomes if o.run_id}
        args = (self.plan.study_name, metrics, best_params, numbers, runs, results_path, plots, shared)
        try:
            writer.store_side(self.writer, sweep_runs.log_study_results, self.parent, *args)
        except Exception as e:  # noqa: BLE001 - the store failed: the results are on disk, one line says where
            why = error_reason(e)
            print(f"initsweep: the study's results were not logged to its parent run ({why}); see {results_path}",
                  file=sys.stderr)  # fmt: skip
