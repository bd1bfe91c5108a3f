"""The Optuna sweeper's typed settings (``hydra.sweeper.*``), registered in Hydra's ConfigStore as
``hydra/sweeper=initsweep_optuna`` by the plugin. Hydra imports this on every start: standard library only."""

from dataclasses import dataclass, field, fields
from typing import Any, Dict, Optional  # noqa: UP035 - OmegaConf's structured configs need typing's names

SETTINGS_KEY = "hydra.sweeper"
DIRECTIONS = ("auto", "maximize", "minimize")


@dataclass
class SweeperSettings:
    """What ``hydra.sweeper.*`` may say. Samplers and pruners are a short name (see ``initsweep.tuning.plan``)
    or a node ``{_target_: optuna.samplers.X, ...}`` that ``hydra.utils.instantiate`` builds."""

    _target_: str = "hydra_plugins.initsweep_optuna_sweeper.optuna_sweeper.InitsweepOptunaSweeper"
    # tpe | random | grid | qmc | gp | nsga2 | bruteforce | cmaes (cmaes needs `pip install cmaes`),
    # or a {_target_: ...} node.
    sampler: Any = "tpe"
    # Passed to the sampler's constructor, e.g. {n_startup_trials: 5} for tpe.
    sampler_kwargs: dict[str, Any] = field(default_factory=dict)
    # auto = minimize when optimized_metric is a loss, else maximize; a list of optimized metrics (a
    # multi-objective study) takes one direction for all or a list of them, e.g. [minimize, auto].
    direction: Any = "auto"
    # Trials this invocation runs (a resumed study goes on numbering).
    n_trials: int = 20
    # Sampler seed; the training seed stays the config's `seed`.
    seed: Optional[int] = None
    # median | percentile | successive_halving | hyperband | threshold | none, or a {_target_: ...} node.
    pruner: Any = "median"
    # Passed to the pruner's constructor, e.g. {n_warmup_steps: 2} for median; keys left out get warm-up
    # defaults derived from trainer.epochs (initsweep.tuning.pruning).
    pruner_kwargs: dict[str, Any] = field(default_factory=dict)
    # null = Optuna journal file <cwd>/mlruns/optuna/journal.log (safe for several processes on one
    # machine); any other path = a journal file there; an RDB URL (sqlite:///x.db, postgresql://...).
    storage: Optional[str] = None
    # null = "<experiment_name> <the command's plain overrides> <key=search expression>...": the same
    # command finds the same study again; another model, range or overlay gets a study of its own.
    study_name: Optional[str] = None
    # Re-running the same command continues the study; false refuses to touch an existing one.
    load_if_exists: bool = True
    # Stop (cleanly) once more than max_failure_rate * n_trials trials of this invocation have failed.
    max_failure_rate: float = 0.25
    # The search space in Hydra's sweep syntax: {config.key: "interval(a,b)" | "tag(log, interval(a,b))"
    # | "tag(int, interval(a,b))" | "choice(a,b,...)" | "range(start,stop,step)" | plain value}.
    params: dict[str, Any] = field(default_factory=dict)
    # --- kills, resumes, many workers (initsweep.tuning.recovery, initsweep.sweep.launchers; docs/scale-out.md) ---
    # Seconds between heartbeats of this invocation's running trials. A running trial whose process on this
    # host is gone is failed and retried once at the next invocation's start; on another host, once its
    # heartbeat is older than heartbeat_grace seconds.
    heartbeat_interval: int = 10
    heartbeat_grace: int = 60
    # The study's total budget over all invocations and workers: no trial is started once the study holds
    # this many (complete, pruned, running, or failed and not retried); null = only n_trials per invocation.
    max_trials: Optional[int] = None
    # true: every invocation and worker of this study logs under ONE study-level MLflow parent run, found or
    # created by study name; false: one parent run per invocation.
    shared_parent: bool = False
    # Points evaluated first (a warm start): [{init.std: 0.088}, ...] (keys left out are sampled), or
    # variance_preserving: the He, LeCun and Xavier scales of the model (initsweep.tuning.warmstart).
    enqueue: Any = field(default_factory=list)

    @staticmethod
    def from_values(values: Dict[str, Any]) -> "SweeperSettings":  # noqa: UP006
        """Settings from plain values (e.g. the resolved ``hydra.sweeper`` node); unknown keys are ignored."""
        known = {f.name for f in fields(SweeperSettings)}
        settings = SweeperSettings(**{k: v for k, v in values.items() if k in known})
        for name in ("sampler_kwargs", "pruner_kwargs", "params"):
            setattr(settings, name, dict(getattr(settings, name) or {}))
        return settings

    def problems(self) -> list[str]:
        """What is wrong with the scalar settings, one message per key (empty when all is well)."""
        out = []
        if not isinstance(self.n_trials, int) or isinstance(self.n_trials, bool) or self.n_trials < 1:
            out.append(f"{SETTINGS_KEY}.n_trials = {self.n_trials!r}: must be a whole number >= 1")
        if not 0.0 <= float(self.max_failure_rate) <= 1.0:
            out.append(f"{SETTINGS_KEY}.max_failure_rate = {self.max_failure_rate!r}: must lie in [0, 1]")
        if isinstance(self.direction, str) and self.direction not in DIRECTIONS:
            out.append(f"{SETTINGS_KEY}.direction = {self.direction!r}: allowed: {', '.join(DIRECTIONS)}")
        for key in ("heartbeat_interval", "heartbeat_grace"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                out.append(f"{SETTINGS_KEY}.{key} = {getattr(self, key)!r}: must be a whole number of seconds >= 1")
        if isinstance(self.heartbeat_grace, int) and self.heartbeat_grace <= self.heartbeat_interval:
            out.append(f"{SETTINGS_KEY}.heartbeat_grace = {self.heartbeat_grace!r}: must exceed heartbeat_interval")
        if self.max_trials is not None and (not isinstance(self.max_trials, int) or self.max_trials < 1):
            out.append(f"{SETTINGS_KEY}.max_trials = {self.max_trials!r}: must be null or a whole number >= 1")
        return out
