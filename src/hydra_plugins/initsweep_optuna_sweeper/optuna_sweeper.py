"""The sweeper: asks Optuna for trials, launches them as Hydra jobs in batches, tells Optuna the outcomes,
and records the study in MLflow (the multirun's parent run is the study, each trial a child run).

Flow of ``sweep()``:
  check everything (settings, search space, study) -> create or load the study -> write the StudySpec the
  jobs read -> per batch (the launcher's n_jobs trials): ask, launch with the trials' values as overrides
  and ``hydra.job.env_set.INITSWEEP_TRIAL=<number>``, tell COMPLETE / PRUNED / FAIL, tag the child runs ->
  best params and value, optimization_results.yaml and Optuna's plots -> SweepCallback ends the parent.

Heavy imports (optuna, mlflow, torch) stay inside the functions: Hydra imports this module on every start.
"""

# No `from __future__ import annotations`: Hydra executes this module without registering it in
# sys.modules, and dataclasses then cannot resolve string annotations.
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
RESULTS_FILE = "optimization_results.yaml"
PLOTS_DIR = "optuna_plots"


# ---------------------------------------------------------------------------------------------------
# The plan: everything checked before the first trial


@dataclass
class Plan:
    """A checked study: settings, search space, direction, storage and the job config it starts from."""

    settings: dict[str, Any]
    space: Any  # initsweep.tuning.SearchSpace
    direction: str
    storage: str
    study_name: str
    pruner_kwargs: dict[str, Any]
    base: dict[str, Any]  # the job config without sweep values
    checked_configs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def metric(self) -> str:
        return str(self.base.get("optimized_metric"))


def _job_config(cfg: DictConfig) -> dict[str, Any]:
    """A composed config without its hydra node, resolved, as plain containers."""
    d = OmegaConf.to_container(cfg, resolve=False)
    d.pop("hydra", None)  # type: ignore[union-attr]
    return OmegaConf.to_container(OmegaConf.create(d), resolve=True)  # type: ignore[return-value]


def _settings(node: DictConfig) -> dict[str, Any]:
    s = OmegaConf.to_container(node, resolve=True)
    assert isinstance(s, dict)
    for key in ("sampler_kwargs", "pruner_kwargs", "params"):
        s[key] = dict(s.get(key) or {})
    return s


def make_plan(config: DictConfig, config_loader: Any = None, check_configs: bool = True) -> Plan:
    """Check the sweeper settings, the search space and the study against ``config`` (the multirun's
    master config) and return the plan; ConfigError (naming the key) on the first problem.

    With ``check_configs``, the job configs at the search space's corners (each interval's bounds, each
    choice) are composed and validated, so that e.g. ``init.std=interval(-1,1)`` fails here, not in a trial.
    """
    from initsweep import scaleout, tuning
    from initsweep.config import ConfigError, validate

    s = _settings(config.hydra.sweeper)
    key = tuning.SETTINGS_KEY
    if not isinstance(s["n_trials"], int) or s["n_trials"] < 1:
        raise ConfigError(f"{key}.n_trials = {s['n_trials']!r}: must be a whole number >= 1")
    if not 0.0 <= float(s["max_failure_rate"]) <= 1.0:
        raise ConfigError(f"{key}.max_failure_rate = {s['max_failure_rate']!r}: must lie in [0, 1]")
    if s["direction"] not in tuning.DIRECTIONS:
        raise ConfigError(f"{key}.direction = {s['direction']!r}: allowed: {', '.join(tuning.DIRECTIONS)}")
    space = tuning.parse_search_space(s["params"], list(config.hydra.overrides.task))
    base = _job_config(config)
    tuning.check_paths(space, base)
    metric = str(base.get("optimized_metric"))
    direction = tuning.metric_direction(metric) if s["direction"] == "auto" else s["direction"]

    tuning.make_sampler(s["sampler"], s["sampler_kwargs"], s["seed"], space)
    pruner_kwargs = dict(s["pruner_kwargs"])
    searched = {p.name for p in space.params}
    if s["pruner"] == "hyperband" and "max_resource" not in pruner_kwargs and "trainer.epochs" not in searched:
        pruner_kwargs["max_resource"] = int(base["trainer"]["epochs"])  # one resource unit = one epoch
    tuning.make_pruner(s["pruner"], pruner_kwargs)

    storage = tuning.resolve_storage(s["storage"])
    scaleout.check_storage_driver(storage, f"{key}.storage")
    study_name = s["study_name"] or tuning.default_study_name(str(base.get("experiment_name")), space)
    fresh = "://" not in storage and not Path(storage).exists()  # no journal file yet: no study, create nothing
    existing = None if fresh else tuning.existing_study_direction(tuning.open_storage(storage), study_name)
    if existing is not None and not s["load_if_exists"]:
        raise ConfigError(
            f"{key}.study_name = {study_name!r} already exists in {storage}; set {key}.load_if_exists=true "
            "to continue it, or choose another study_name"
        )
    if existing is not None and existing != direction:
        raise ConfigError(
            f"{key}.direction: study {study_name!r} in {storage} was created to {existing}, but this run would "
            f"{direction} {metric}; use another study_name or {key}.direction={existing}"
        )
    plan = Plan(s, space, direction, storage, study_name, pruner_kwargs, base)

    if check_configs:
        from hydra.core.global_hydra import GlobalHydra

        loader = config_loader or GlobalHydra.instance().config_loader()
        for p in space.params:
            for value in p.corners():
                override = tuning.format_override(p.name, value, add=p.add)
                job_cfg = _job_config(loader.load_sweep_config(config, [*space.fixed, override]))
                try:
                    validate(job_cfg)
                except ConfigError as e:
                    raise ConfigError(
                        f"{key}.params.{p.name} = {p.expression!r} reaches an invalid config at {override}:\n"
                        f"  {str(e).replace(chr(10), chr(10) + '  ')}"
                    ) from None
                plan.checked_configs.append(job_cfg)
    return plan


# ---------------------------------------------------------------------------------------------------
# Outcomes


@dataclass
class Outcome:
    """What became of one trial."""

    number: int
    params: dict[str, Any]
    state: str  # COMPLETE | PRUNED | FAIL
    value: float | None = None
    reason: str = ""
    epochs: int = 0


def classify(job_return: Any) -> tuple[str, float | None, str]:
    """(state, value, reason) of a Hydra JobReturn: a finite return value -> COMPLETE, TrialPruned ->
    PRUNED, a non-finite value or any other exception -> FAIL."""
    import optuna
    from hydra.core.utils import JobStatus

    if job_return.status == JobStatus.COMPLETED:
        value = job_return.return_value
        try:
            value = float(value)
        except (TypeError, ValueError):
            return "FAIL", None, f"the job returned {value!r}, not a number"
        if not math.isfinite(value):
            return "FAIL", None, f"the job returned {value}"
        return "COMPLETE", value, ""
    error = job_return._return_value  # the exception (reading .return_value would raise it)
    if isinstance(error, optuna.TrialPruned):
        return "PRUNED", None, str(error) or "pruned"
    return "FAIL", None, f"{type(error).__name__}: {error}"[:500]


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


class InitsweepOptunaSweeper(Sweeper):
    """Hydra sweeper on Optuna 5 with pruning, resume, parallel launchers and MLflow tracking."""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    @staticmethod
    def initsweep_job_configs(config: DictConfig) -> list[dict[str, Any]]:
        """Hook for initsweep.sweep.SweepCallback: check the study before the parent run exists and return
        the job configs at the search space's corners for it to validate."""
        plan = make_plan(config)
        return [plan.base, *plan.checked_configs]

    def _batch_size(self) -> int:
        from initsweep.scaleout import batch_size

        return batch_size(self.config.hydra.launcher if self.config is not None else None)

    def sweep(self, arguments: list[str]) -> Any:
        from initsweep.config import ConfigError

        assert self.config is not None and self.hydra_context is not None
        try:
            plan = make_plan(self.config, self.hydra_context.config_loader)
        except ConfigError as e:
            print(f"initsweep: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        return _Study(self, plan).run()


class _Study:
    """One invocation of the sweeper on one study."""

    def __init__(self, sweeper: InitsweepOptunaSweeper, plan: Plan):
        import optuna

        from initsweep import sweep, tracking, tuning

        self.sweeper = sweeper
        self.plan = plan
        self.config: DictConfig = sweeper.config  # type: ignore[assignment]
        self.sweep_dir = Path(str(self.config.hydra.sweep.dir))
        s = plan.settings
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.study = optuna.create_study(
            storage=tuning.open_storage(plan.storage),
            sampler=tuning.make_sampler(s["sampler"], s["sampler_kwargs"], s["seed"], plan.space),
            pruner=tuning.make_pruner(s["pruner"], plan.pruner_kwargs),
            study_name=plan.study_name,
            direction=plan.direction,
            load_if_exists=True,  # make_plan refused an existing study when load_if_exists is false
        )
        tuning.StudySpec(plan.storage, plan.study_name, s["pruner"], plan.pruner_kwargs, plan.metric).write(
            self.sweep_dir
        )
        self.parent = sweep.current_parent(self.sweep_dir)
        self.client = tracking.connect(self.parent.tracking_uri) if self.parent else None
        self.parent_log = tracking.RunLogger(self.client, self.parent.run_id) if self.parent else None
        self.outcomes: list[Outcome] = []
        self.returns: list[Any] = []

    # -- the loop --------------------------------------------------------------------------------------

    def run(self) -> list[Any]:
        s = self.plan.settings
        self._log_settings()
        n_before = len(self.study.trials)
        log.info(
            f"Study {self.plan.study_name!r} ({self.plan.direction} {self.plan.metric}) in {self.plan.storage}: "
            f"{n_before} earlier trials; running {s['n_trials']} with sampler={s['sampler']} pruner={s['pruner']}, "
            f"{self.sweeper._batch_size()} at a time"
        )
        stop_reason = ""
        failure_budget = float(s["max_failure_rate"]) * s["n_trials"]
        while len(self.outcomes) < s["n_trials"]:
            size = min(self.sweeper._batch_size(), s["n_trials"] - len(self.outcomes))
            trials = self._ask(size)
            if not trials:
                log.info("Grid exhausted: every point of the search space has been tried")
                break
            self._launch(trials)
            failures = sum(o.state == "FAIL" for o in self.outcomes)
            if failures > failure_budget:
                stop_reason = (
                    f"stopped: {failures} of {len(self.outcomes)} trials failed, more than max_failure_rate="
                    f"{s['max_failure_rate']} x n_trials={s['n_trials']}"
                )
                log.error(f"Study {self.plan.study_name!r} {stop_reason}")
                break
        self._finish(stop_reason)
        return self.returns

    def _ask(self, size: int) -> list[Any]:
        """Up to ``size`` new trials; for a grid, no more than the points nobody has started yet."""
        from optuna.trial import TrialState

        from initsweep import tuning

        if self.plan.settings["sampler"] in ("grid", "bruteforce"):
            names = [p.name for p in self.plan.space.params]
            started = {
                tuple(t.params.get(n) for n in names)
                for t in self.study.get_trials(deepcopy=False)
                if t.state != TrialState.WAITING
            }
            size = min(size, len(set(tuning.grid_points(self.plan.space)) - started))
        return [self.study.ask(self.plan.space.distributions) for _ in range(size)]

    def _launch(self, trials: list[Any]) -> None:
        """Launch the trials' jobs (job number = trial number), tell Optuna, tag the MLflow runs."""
        from initsweep import tuning

        by_number = {t.number: t for t in trials}
        pending = set(by_number)
        try:
            for group in consecutive_groups(sorted(by_number)):
                overrides = [
                    [*self.plan.space.overrides(by_number[n].params), f"++hydra.job.env_set.{tuning.TRIAL_ENV}={n}"]
                    for n in group
                ]
                results = self.sweeper.launcher.launch(overrides, initial_job_idx=group[0])
                self.returns.append(results)
                for n, ret in zip(group, results, strict=True):
                    self._tell(by_number[n], *classify(ret))
                    pending.discard(n)
        finally:
            for n in pending:  # interrupted or the launcher failed: never leave a trial RUNNING
                self._tell(by_number[n], "FAIL", None, "the sweep stopped before the trial's job returned")
            self._tag_runs([o for o in self.outcomes if o.number in by_number])

    def _tell(self, trial: Any, state: str, value: float | None, reason: str) -> None:
        from optuna.trial import TrialState

        if reason:
            trial.set_user_attr("reason", reason)
        frozen = self.study.tell(
            trial, value if state == "COMPLETE" else None, state=TrialState[state], skip_if_finished=True
        )
        outcome = Outcome(
            trial.number, dict(trial.params), state, value, reason, int(frozen.user_attrs.get("epochs", 0))
        )
        self.outcomes.append(outcome)
        shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in outcome.params.items())
        result = f"{self.plan.metric}={value:.4f}" if value is not None else reason
        log.info(f"Trial {trial.number} {state} after {outcome.epochs} epochs: {shown}: {result}")

    # -- MLflow ----------------------------------------------------------------------------------------

    def _log_settings(self) -> None:
        if self.parent_log is None:
            return
        s = self.plan.settings
        params = {
            "optuna.study_name": self.plan.study_name,
            "optuna.storage": self.plan.storage,
            "optuna.direction": self.plan.direction,
            "optuna.metric": self.plan.metric,
            "optuna.sampler": s["sampler"],
            "optuna.sampler_kwargs": s["sampler_kwargs"],
            "optuna.pruner": s["pruner"],
            "optuna.pruner_kwargs": self.plan.pruner_kwargs,
            "optuna.n_trials": s["n_trials"],
            "optuna.seed": s["seed"],
            "optuna.max_failure_rate": s["max_failure_rate"],
            "optuna.first_trial": len(self.study.trials),
        }
        params.update({f"search.{p.name}": p.expression for p in self.plan.space.params})
        self.parent_log.log_params(params)
        self.parent_log.set_tags({"optuna.study_name": self.plan.study_name, "initsweep.sweeper": "initsweep_optuna"})

    def _tag_runs(self, outcomes: list[Outcome]) -> None:
        """Tag each trial's child run with its number and final state; a trial that failed before its job
        created a run gets a FAILED run of its own, so that every trial has one."""
        if self.client is None or self.parent is None or not outcomes:
            return
        from initsweep import tracking

        runs = {
            r.data.tags.get("trial_number"): r
            for r in tracking.child_runs(self.client, self.parent.experiment_id, self.parent.run_id)
        }
        for o in outcomes:
            shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in o.params.items())
            tags = {
                "trial_number": o.number,
                "trial_state": o.state,
                "mlflow.runName": f"trial {o.number} {shown}",
                "optuna.study_name": self.plan.study_name,
            }
            if o.reason:
                tags["trial_reason"] = o.reason
            run = runs.get(str(o.number))
            if run is None:
                logger = tracking.start_run(
                    self.client,
                    self.parent.experiment_id,
                    f"trial {o.number} {shown}",
                    {
                        **tags,
                        "initsweep.job_num": o.number,
                        "initsweep.sweep_id": self.parent.sweep_id,
                        "failure": "exception",
                        "failure.reason": o.reason,
                    },
                    self.parent.run_id,
                )
                logger.log_params({k: str(v) for k, v in o.params.items()})
                logger.end("FAILED")
            else:
                tracking.RunLogger(self.client, run.info.run_id).set_tags(tags)

    # -- the end ---------------------------------------------------------------------------------------

    def _epochs_budget(self, o: Outcome) -> int:
        epochs = o.params.get("trainer.epochs", self.plan.base["trainer"]["epochs"])
        return int(epochs)

    def _finish(self, stop_reason: str) -> None:
        """Best params and value, optimization_results.yaml, plots, counts; parent status on a stop."""
        from initsweep import tuning

        counts = {state: sum(o.state == state for o in self.outcomes) for state in ("COMPLETE", "PRUNED", "FAIL")}
        epochs = sum(o.epochs for o in self.outcomes)
        budget = sum(self._epochs_budget(o) for o in self.outcomes)
        try:
            best = self.study.best_trial
        except ValueError:
            best = None
        results: dict[str, Any] = {"name": "initsweep_optuna"}
        if best is not None:
            results.update(best_params=dict(best.params), best_value=best.value, best_trial=best.number)
        results.update(
            study_name=self.plan.study_name,
            storage=self.plan.storage,
            direction=self.plan.direction,
            metric=self.plan.metric,
            trials_in_study=len(self.study.trials),
            this_run={**{k.lower(): v for k, v in counts.items()}, "epochs_trained": epochs, "epochs_budget": budget},
        )
        if stop_reason:
            results["stopped"] = stop_reason
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        results_path = self.sweep_dir / RESULTS_FILE
        OmegaConf.save(OmegaConf.create(results), results_path)
        plots = tuning.study_plots(self.study, [p.name for p in self.plan.space.params], self.sweep_dir / PLOTS_DIR)

        best_text = (
            f"best {self.plan.metric} = {best.value:.4f} at trial {best.number}: {best.params}"
            if best is not None
            else "no trial completed"
        )
        log.info(
            f"Study {self.plan.study_name!r}: this run {len(self.outcomes)} trials ({counts['COMPLETE']} complete, "
            f"{counts['PRUNED']} pruned, {counts['FAIL']} failed), {epochs} of {budget} epochs trained; "
            f"study total {len(self.study.trials)} trials; {best_text}. Results: {results_path}"
        )
        if self.parent_log is None:
            return
        metrics = {
            "study/n_complete": counts["COMPLETE"],
            "study/n_pruned": counts["PRUNED"],
            "study/n_fail": counts["FAIL"],
            "study/epochs_trained": epochs,
            "study/epochs_budget": budget,
            "study/n_trials_total": len(self.study.trials),
        }
        if best is not None:
            metrics["best_value"] = best.value
            self.parent_log.log_params({f"best_params.{k}": v for k, v in best.params.items()})
            self.parent_log.set_tags({"optuna.best_trial": best.number})
        self.parent_log.log_metrics(metrics, step=0)
        self.parent_log.flush()
        self.parent_log.log_artifact(results_path)
        for path in plots:
            self.parent_log.log_artifact(path, "optuna")
        # Failed trials within the budget do not fail the study: SweepCallback ends the parent with this status.
        if stop_reason:
            self.parent_log.set_tags({"initsweep.sweep_status": "FAILED", "failure": stop_reason})
        else:
            self.parent_log.set_tags({"initsweep.sweep_status": "FINISHED"})
