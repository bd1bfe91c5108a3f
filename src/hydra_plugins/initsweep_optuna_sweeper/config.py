"""The sweeper's settings (``hydra.sweeper.*``), registered as ``hydra/sweeper=initsweep_optuna``."""

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class InitsweepOptunaSweeperConf:
    _target_: str = "hydra_plugins.initsweep_optuna_sweeper.optuna_sweeper.InitsweepOptunaSweeper"

    # tpe | random | grid | qmc | gp | nsga2 | bruteforce | cmaes (cmaes needs `pip install cmaes`)
    sampler: str = "tpe"
    # Passed to the sampler's constructor, e.g. {n_startup_trials: 5} for tpe.
    sampler_kwargs: dict[str, Any] = field(default_factory=dict)
    # auto = minimize when optimized_metric is a loss, else maximize
    direction: str = "auto"
    # Trials this invocation runs (a resumed study goes on numbering).
    n_trials: int = 20
    # Sampler seed; the training seed stays the config's `seed`.
    seed: Optional[int] = None
    # median | percentile | successive_halving | hyperband | threshold | none
    pruner: str = "median"
    # Passed to the pruner's constructor, e.g. {n_startup_trials: 5, n_warmup_steps: 2} for median.
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


ConfigStore.instance().store(
    group="hydra/sweeper",
    name="initsweep_optuna",
    node=InitsweepOptunaSweeperConf,
    provider="initsweep",
)
