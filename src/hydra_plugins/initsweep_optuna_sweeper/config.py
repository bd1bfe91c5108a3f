"""Registers the sweeper's typed settings (``initsweep.tuning.settings``) as ``hydra/sweeper=initsweep_optuna``."""

from hydra.core.config_store import ConfigStore

from initsweep.tuning.settings import SweeperSettings

ConfigStore.instance().store(group="hydra/sweeper", name="initsweep_optuna", node=SweeperSettings, provider="initsweep")
