"""The private names of other libraries that initsweep uses (initsweep._compat): each still exists where the
compat module expects it. A failure here means a library moved an internal: update initsweep._compat."""

from __future__ import annotations

import atexit
import threading

import optuna
import pytest


def test_hydra_internals_are_where_compat_expects_them():
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    from initsweep._compat import hydra as compat

    assert callable(ConfigLoaderImpl._apply_overrides_to_config)
    assert callable(ConfigLoaderImpl._parse_overrides_and_create_caching_repo)
    assert callable(compat.BasicSweeper.split_arguments)
    args, _ = compat.get_args_parser().parse_known_args(["-m", "init=zeros"])
    assert args.multirun and args.overrides == ["init=zeros"]
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(["b=2", "a=1"])
    assert compat.get_overrides_dirname(parsed, [], ",", "=") == "a=1,b=2"


def test_apply_overrides_sets_a_value_on_a_composed_config():
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from initsweep._compat.hydra import apply_overrides

    cfg = OmegaConf.create({"init": {"std": 1.0}})
    apply_overrides(OverridesParser.create().parse_overrides(["init.std=0.5"]), cfg)
    assert cfg.init.std == 0.5


def test_optuna_internals_are_where_compat_expects_them():
    from initsweep._compat import optuna as compat

    study = optuna.create_study()
    trial = study.ask()
    assert compat.trial_id(trial) == study.trials[0]._trial_id
    storage = compat.study_storage(study)
    assert storage.get_trial(compat.trial_id(trial)).number == trial.number
    d = optuna.distributions.FloatDistribution(0.0, 1.0)
    assert compat.distribution_contains(d, 0.5) and not compat.distribution_contains(d, 2.0)


def test_stdlib_exit_steps_exist():
    assert callable(getattr(threading, "_shutdown", None))
    assert callable(atexit._run_exitfuncs)


def test_submitit_watcher_fields_exist():
    pytest.importorskip("submitit", reason="the slurm extra")  # installed by `make setup` (.[slurm])
    from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob

    from initsweep._compat.submitit import WATCHER_FIELDS, queue_watcher_class

    watcher = SlurmInfoWatcher(delay_s=60)
    assert all(hasattr(watcher, name) for name in WATCHER_FIELDS)
    assert isinstance(SlurmJob.watcher, SlurmInfoWatcher)
    assert issubclass(queue_watcher_class(), SlurmInfoWatcher)


@pytest.mark.slow
def test_importing_compat_hydra_leaves_hydras_core_plugins_to_its_plugin_scan():
    """train.py imports initsweep._compat.hydra before Hydra scans its plugins, and the scan executes the core
    plugin modules again: a BasicSweeper imported before it would be a stale class."""
    import subprocess
    import sys

    code = "import sys, initsweep._compat.hydra; print('hydra._internal.core_plugins.basic_sweeper' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
