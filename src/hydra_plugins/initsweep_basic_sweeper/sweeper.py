"""The sweeper class (selected by conf/hydra/sweeper/basic.yaml); see the package docstring."""

# No `from __future__ import annotations`: Hydra executes plugin modules without registering them in
# sys.modules, and dataclasses then cannot resolve string annotations.
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from initsweep._compat.hydra import BasicSweeper


class CachedBasicSweeper(BasicSweeper):
    """Hydra's BasicSweeper whose batch check and launcher compose through
    :class:`initsweep.sweep.composition.CachedSweepLoader`: about 0.02 s a job instead of 0.2 s, twice per job."""

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from initsweep.sweep.composition import cached_context  # Hydra imports this module on every start

        super().setup(hydra_context=cached_context(hydra_context), task_function=task_function, config=config)
