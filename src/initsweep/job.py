"""One job: validate the config, build data and model, initialize, train, and track it all in MLflow.

:func:`run` is what ``train.py`` calls for every Hydra job. It returns the value of ``optimized_metric``
so that any Hydra sweeper can optimize it.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import torch
from omegaconf import DictConfig, OmegaConf

from initsweep import data as datasets
from initsweep import tracking
from initsweep.config import Config, validate
from initsweep.initializers import LayerStats, initialize
from initsweep.models import build_model
from initsweep.trainer import EpochMetrics, evaluate, fit, resolve_device, summarize


@dataclass(frozen=True)
class JobContext:
    """What Hydra knows about the job: where it writes, its overrides, and its sweep (if any)."""

    output_dir: Path | None = None
    overrides: tuple[str, ...] = ()
    init_choice: str | None = None  # the init group option, e.g. "zeros"
    sweep_dir: Path | None = None  # set in a multirun
    job_num: int | None = None
    choices: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def from_hydra() -> "JobContext":
        """The running Hydra job's context; an empty one outside Hydra (e.g. in tests)."""
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not HydraConfig.initialized():
            return JobContext()
        hc = HydraConfig.get()
        multirun = hc.mode == RunMode.MULTIRUN
        choices = {k: str(v) for k, v in hc.runtime.choices.items() if not k.startswith("hydra")}
        return JobContext(
            output_dir=Path(hc.runtime.output_dir),
            overrides=tuple(hc.overrides.task),
            init_choice=choices.get("init"),
            sweep_dir=Path(hc.sweep.dir) if multirun else None,
            job_num=hc.job.num if multirun else None,
            choices=choices,
        )


def run_name(overrides: tuple[str, ...], init_name: str, seed: int) -> str:
    """A readable run name that says what varies: ``init=zeros seed=0``."""
    shown = [o for o in overrides if not o.lstrip("+~").startswith(("hydra", "seed="))]
    if not shown:
        shown = [f"init={init_name}"]
    return " ".join([*shown, f"seed={seed}"])


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The project's git commit, when it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def init_metrics(stats: list[LayerStats]) -> dict[str, float]:
    """``init/<layer>/weight_std``, ``.../weight_mean`` and ``.../weight_std_expected`` of every layer."""
    out: dict[str, float] = {}
    for s in stats:
        out[f"init/{s.layer}/weight_std"] = s.weight_std
        out[f"init/{s.layer}/weight_mean"] = s.weight_mean
        out[f"init/{s.layer}/weight_std_expected"] = s.weight_std_expected
    return out


def run(
    cfg: DictConfig,
    ctx: JobContext | None = None,
    on_epoch: Callable[[EpochMetrics], bool] | None = None,
    extra_tags: dict[str, Any] | None = None,
) -> float:
    """Train and track one job; return its ``optimized_metric``.

    ``on_epoch`` (optional) sees every epoch's metrics and may return True to stop training early
    (used by the tuner for pruning). ``extra_tags`` are added to the run's tags (e.g. the trial number).
    Raises ConfigError on an invalid config, before any run exists.
    """
    ctx = ctx or JobContext.from_hydra()
    raw: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    config = validate(raw)

    # Build everything that can fail because of the config before a run is created.
    torch.manual_seed(config.seed)
    device = resolve_device(config.trainer.device)
    data = datasets.load(config.data).to(device)
    model = build_model(config.model, data.input_shape, data.num_classes).to(device)
    stats = initialize(
        model, config.init.name, config.init.params, config.model.activation, config.init.bias, config.init.bias_value
    )

    from initsweep import sweep  # the multirun's parent run, if any

    parent = sweep.current_parent(ctx.sweep_dir)
    uri = parent.tracking_uri if parent else tracking.resolve_uri(config.tracking.uri)
    client = tracking.get_client(uri)
    exp_id = parent.experiment_id if parent else tracking.experiment_id(client, config.experiment_name)
    tags = {
        "initsweep.init": ctx.init_choice or config.init.name,
        "initsweep.overrides": " ".join(ctx.overrides),
        "mlflow.source.name": "train.py",
    }
    if parent:
        tags["initsweep.sweep_id"] = parent.sweep_id
    if ctx.job_num is not None:
        tags["initsweep.job_num"] = ctx.job_num
    if commit := git_commit():
        tags["mlflow.source.git.commit"] = commit
    tags.update(extra_tags or {})
    logger = tracking.start_run(
        client,
        exp_id,
        run_name(ctx.overrides, ctx.init_choice or config.init.name, config.seed),
        tags,
        parent.run_id if parent else None,
    )
    try:
        value = _train_and_log(config, raw, ctx, data, model, stats, logger, on_epoch)
    except BaseException as e:
        status = "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED"
        logger.set_tags({"failure": "interrupted" if status == "KILLED" else "exception", "failure.reason": repr(e)[:500]})
        logger.end(status)
        raise
    logger.end("FINISHED")
    return value


def _train_and_log(
    config: Config,
    raw: dict[str, Any],
    ctx: JobContext,
    data: datasets.Dataset,
    model: torch.nn.Module,
    stats: list[LayerStats],
    logger: tracking.RunLogger,
    on_epoch: Callable[[EpochMetrics], bool] | None,
) -> float:
    logger.log_params(tracking.flatten(raw))
    val_loss, val_acc = evaluate(model, data.x_val, data.y_val)
    logger.log_metrics({**init_metrics(stats), "val/loss": val_loss, "val/acc": val_acc}, step=0)

    history: list[EpochMetrics] = []
    for epoch in fit(model, data, config.trainer, config.seed):
        history.append(epoch)
        logger.log_metrics(epoch.as_metrics(), step=epoch.epoch)
        if on_epoch is not None and on_epoch(epoch):
            break
    test_loss, test_acc = evaluate(model, data.x_test, data.y_test)
    summary = summarize(history, test_loss, test_acc)
    logger.log_metrics(summary, step=history[-1].epoch)

    logger.log_text(OmegaConf.to_yaml(OmegaConf.create(raw)), "config.yaml")
    logger.log_text("\n".join(ctx.overrides) + "\n", "overrides.txt")
    if config.tracking.log_plots:
        from initsweep.plots import learning_curves

        out_dir = ctx.output_dir or Path(tempfile.mkdtemp(prefix="initsweep-"))
        out_dir.mkdir(parents=True, exist_ok=True)
        path = learning_curves(history, (val_loss, val_acc), out_dir / "learning_curves.png")
        logger.log_artifact(path)
    return summary[config.optimized_metric]
