"""initsweep's Hydra sweeper on modern Optuna: ``python train.py -m hparams_search=normal_std``.

Hydra imports this module on every start, so it stays light: the study itself (optuna, MLflow, torch) lives in
``_study.py`` beside it, imported when a study runs. The sweeper is built from its typed settings
(:class:`initsweep.tuning.settings.SweeperSettings`, registered as ``hydra/sweeper=initsweep_optuna``).
"""

# No `from __future__ import annotations`: Hydra executes this module without registering it in
# sys.modules, and dataclasses then cannot resolve string annotations.
import sys
from typing import Any, Optional

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from initsweep.tuning.settings import SweeperSettings


class InitsweepOptunaSweeper(Sweeper):
    """Hydra sweeper on Optuna 5 with pruning, resume, parallel launchers and MLflow tracking, built from its
    typed settings (:class:`initsweep.tuning.settings.SweeperSettings`, ``hydra/sweeper=initsweep_optuna``)."""

    def __init__(self, **settings: Any) -> None:
        plain = {
            k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v for k, v in settings.items()
        }
        self.settings = SweeperSettings.from_values(plain)
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from initsweep.sweep.composition import cached_context  # a trial's config: a copy, not a new composition

        self.config = config
        self.hydra_context = hydra_context = cached_context(hydra_context)
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def sweep(self, arguments: list[str]) -> Any:
        # Lazy: Hydra imports this module on every start; the study needs optuna, MLflow and torch. (The
        # plugin scanner skips modules whose name starts with "_", so _study.py loads only here.)
        from hydra_plugins.initsweep_optuna_sweeper._study import Study
        from initsweep.core.config import ConfigError
        from initsweep.tuning.plan import plan_for

        assert self.config is not None and self.hydra_context is not None
        try:
            plan = plan_for(self.config, self.hydra_context.config_loader)
        except ConfigError as e:
            print(f"initsweep: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        return Study(self.launcher, self.config, plan).run()
