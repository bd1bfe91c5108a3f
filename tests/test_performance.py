"""Structural guarantees behind the performance goals (docs/performance.md); no timed assertions here."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import open_dict

from conftest import CONF, ROOT
from initsweep.protocol import job_config_dict
from initsweep.sweep import job_configs


def test_validating_a_config_imports_neither_torch_nor_mlflow():
    """A rejected config is answered before the seconds-long imports of torch and MLflow."""
    code = (
        "import sys\n"
        "from initsweep.config import validate\n"
        "from conftest import compose\n"
        "from omegaconf import OmegaConf\n"
        "validate(OmegaConf.to_container(compose(['init=uniform']), resolve=True))\n"
        "print(sorted(m for m in ('torch', 'mlflow', 'numpy', 'matplotlib') if m in sys.modules))\n"
    )
    env = {"PYTHONPATH": f"{ROOT / 'src'}:{ROOT / 'tests'}", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "overrides",
    [
        ["init=zeros,normal", "seed=0,1", "trainer.epochs=2"],
        ["model.width=8,16", "init=normal", "init.std=0.1,0.5", "+init.output=zeros"],
    ],
)
def test_job_configs_equal_one_composition_per_job(overrides: list[str]):
    """The sweep callback composes once per combination of group choices and applies the other overrides
    itself; the result must equal Hydra composing every job."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        fixed = [o for o in overrides if "," not in o]
        cfg = compose(config_name="config", overrides=fixed, return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.overrides.task = overrides
        fast = job_configs(cfg)
        loader = GlobalHydra.instance().config_loader()
        parsed = OverridesParser.create(config_loader=loader).parse_overrides(overrides)
        jobs = [list(job) for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
        slow = [job_config_dict(loader.load_sweep_config(cfg, job)) for job in jobs]
    assert len(fast) == 4 and fast == slow


def test_figures_drawn_in_the_background_are_logged_to_their_runs(tmp_path):
    """A sweep job's PNGs are drawn by a forked child; finish() logs them to the right runs."""
    from initsweep import figures, tracking
    from initsweep.trainer import EpochMetrics

    client = tracking.connect(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp_id = tracking.experiment_id(client, "figures")
    history = [EpochMetrics(e, 1.0 / e, 0.5, 1.1 / e, 0.5, 0.01) for e in (1, 2, 3)]
    loggers = []
    for seed in (0, 1):
        logger = tracking.start_run(client, exp_id, f"seed={seed}")
        out_dir = tmp_path / str(seed)
        out_dir.mkdir()
        figures.log_figures(logger, history, (2.3, 0.1), [], out_dir, background=True)
        logger.end()
        loggers.append(logger)
    figures.finish()
    for logger in loggers:
        assert {a.path for a in client.list_artifacts(logger.run_id)} == {"learning_curves.png"}


def test_t_quantile_matches_scipy_without_importing_it():
    """The report's confidence intervals no longer import scipy.stats (seconds at the end of every sweep)."""
    from scipy.stats import t

    from initsweep.report import t_quantile

    for df in (1, 2, 3, 4, 7, 10, 29, 30, 120):
        for confidence in (0.9, 0.95, 0.99):
            assert t_quantile(confidence, df) == pytest.approx(t.ppf((1 + confidence) / 2, df), rel=1e-9)
