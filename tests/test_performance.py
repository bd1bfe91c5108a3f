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
from initsweep.sweep.callback import basic_jobs, job_configs


@pytest.mark.slow
def test_validating_a_config_imports_neither_torch_nor_mlflow():
    """A rejected config is answered before the seconds-long imports of torch and MLflow."""
    code = (
        "import sys\n"
        "from initsweep.core.config import validate\n"
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
        fast = job_configs(cfg, basic_jobs(cfg))
        loader = GlobalHydra.instance().config_loader()
        parsed = OverridesParser.create(config_loader=loader).parse_overrides(overrides)
        jobs = [list(job) for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
        slow = [job_config_dict(loader.load_sweep_config(cfg, job)) for job in jobs]
    assert len(fast) == 4 and fast == slow


class _Counting:
    """Hydra's real config loader, counting the full compositions asked of it."""

    def __init__(self, loader):
        self.loader, self.composed = loader, 0

    def load_sweep_config(self, master_config, sweep_overrides):
        self.composed += 1
        return self.loader.load_sweep_config(master_config, sweep_overrides)

    def get_group_options(self, *args, **kwargs):
        return self.loader.get_group_options(*args, **kwargs)


@pytest.mark.parametrize(
    ("fixed", "swept", "compositions"),
    [
        ([], ["init=zeros,normal", "seed=0,1", "trainer.epochs=2"], 2),
        (["init=normal", "init.std=0.5"], ["model.width=8,16", "+init.output_params.std=0.01,0.02"], 1),
        (
            ["hydra.job.config.override_dirname.exclude_keys=[seed]"],
            ["seed=0,1", "~metrics.collapse_drop", "init=uniform,normal"],
            2,
        ),
        ([], ["init=zeros,normal", "seed=0,1", "++hydra.job.env_set.INITSWEEP_TRIAL=3"], 2),  # as a study's trial
        ([], ["seed=0,1", "hydra.job.name=a,b"], 4),  # another hydra.* value: every job composed in full
    ],
)
def test_cached_sweep_loader_returns_what_hydra_composes(fixed, swept, compositions):
    """The loader the sweepers hand their launchers composes once per combination of group choices and copies
    for the other jobs: each job's whole config (``hydra`` node included: task overrides, override_dirname)
    must equal Hydra composing that job, also after pickling (joblib and submitit ship it to workers)."""
    import pickle

    from omegaconf import OmegaConf

    from initsweep.sweep.composition import CachedSweepLoader

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        master = compose(config_name="config", overrides=fixed, return_hydra_config=True)
        loader = GlobalHydra.instance().config_loader()
        parsed = OverridesParser.create(config_loader=loader).parse_overrides(swept)
        jobs = [
            [o for o in fixed if not o.startswith("hydra.")] + list(job)
            for batch in BasicSweeper.split_arguments(parsed, None)
            for job in batch
        ]
        counting = _Counting(loader)
        cached = CachedSweepLoader(counting)
        fast = [cached.load_sweep_config(master, job) for job in jobs]
        again = [pickle.loads(pickle.dumps(cached)).load_sweep_config(master, job) for job in jobs]
        slow = [loader.load_sweep_config(master, job) for job in jobs]
    assert len(jobs) == 4 and counting.composed == compositions
    for f, a, s in zip(fast, again, slow):
        assert OmegaConf.to_container(f) == OmegaConf.to_container(a) == OmegaConf.to_container(s)
        assert OmegaConf.is_struct(f) and OmegaConf.is_struct(s)


def test_cached_sweep_loader_refuses_what_hydra_refuses():
    """An override Hydra cannot apply fails with Hydra's own error, naming the key, through the cache too."""
    from hydra.errors import ConfigCompositionException

    from initsweep.sweep.composition import CachedSweepLoader

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        master = compose(config_name="config", return_hydra_config=True)
        loader = GlobalHydra.instance().config_loader()
        cached = CachedSweepLoader(loader)
        cached.load_sweep_config(master, ["seed=1"])
        with pytest.raises(ConfigCompositionException) as slow:
            loader.load_sweep_config(master, ["seed=2", "trainer.epochz=3"])
        with pytest.raises(ConfigCompositionException) as fast:
            cached.load_sweep_config(master, ["seed=2", "trainer.epochz=3"])
    assert "trainer.epochz" in str(fast.value) and str(fast.value) == str(slow.value)


@pytest.mark.slow
def test_figures_drawn_in_the_background_are_logged_to_their_runs(tmp_path):
    """A sweep job's PNGs are drawn by a forked child; finish() logs them to the right runs."""
    from initsweep.core.trainer import EpochMetrics
    from initsweep.report import drawing as figures
    from initsweep.tracking import client as tracking

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


def test_t_quantile_matches_scipy():
    """The report's confidence intervals use scipy's Student-t quantile."""
    from scipy.stats import t

    from initsweep.report.comparison import t_quantile

    for df in (1, 2, 3, 4, 7, 10, 29, 30, 120):
        for confidence in (0.9, 0.95, 0.99):
            assert t_quantile(confidence, df) == pytest.approx(t.ppf((1 + confidence) / 2, df), rel=1e-9)


def test_a_run_figure_drawn_on_a_reused_canvas_equals_one_drawn_fresh(tmp_path):
    """The per-run figures keep their canvas between runs: what an earlier run drew (lines, legends, log
    tick settings, the colour cycle's position) must not show in the next one, pixel for pixel."""
    from PIL import Image, ImageChops

    from initsweep.report import plots

    P = plots.Point
    curves = [  # (history, initial val, title): a wide loss range, a narrow one, zeros and NaNs, a long run
        ([P(e, 1 / e, 0.5, 1.2 / e, 0.55) for e in range(1, 4)], (2.3, 0.1), "trial 0"),
        ([P(e, 2.3 - 0.001 * e, 0.1, 2.3 - 0.0005 * e, 0.1) for e in range(1, 21)], (2.302, 0.1), "narrow"),
        (
            [P(e, 0.0 if e > 5 else 1 / e, 1.0, float("nan") if e == 7 else 1 / e, 0.9) for e in range(1, 11)],
            (2.3, 0.1),
            "",
        ),
        ([P(e, 1 / e, 0.5, 1.2 / e, 0.55) for e in range(1, 1500, 7)], (2.3, 0.1), "long"),
    ]
    profiles = [  # (label, layers, act std, grad std) per snapshot: few layers, many, a zero
        [
            ("epoch 0", ["l1", "l2", "l3"], [1.0, 0.5, 0.2], [0.1, 0.2, 0.3]),
            ("epoch 2", ["l1", "l2", "l3"], [1.0, 0.4, 0.1], [0.1, 0.3, 0.4]),
        ],
        [
            (
                "epoch 0",
                [f"layer{i}" for i in range(12)],
                [0.9**i for i in range(12)],
                [0.0] + [1.1**i for i in range(11)],
            )
        ],
        [("epoch 0", ["a", "b"], [1.0, 0.0], [0.5, 0.6])],
    ]
    draws = [lambda p, c=c: plots.learning_curves(*c[:2], p, c[2]) for c in curves]
    draws += [lambda p, s=s: plots.signal_propagation(s, p) for s in profiles]
    for i, draw in enumerate(draws):
        plots._CANVASES.clear()
        fresh = draw(tmp_path / f"fresh{i}.png")
        for j, other in enumerate(draws):  # every other figure first, on the same canvases
            if j != i:
                other(tmp_path / "other.png")
        reused = draw(tmp_path / f"reused{i}.png")
        a, b = (Image.open(path).convert("RGB") for path in (fresh, reused))
        assert a.size == b.size and ImageChops.difference(a, b).getbbox() is None, f"figure {i} differs"
