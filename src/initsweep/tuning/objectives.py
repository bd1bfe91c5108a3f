"""A study's objectives: one optimized metric or several (a multi-objective study, whose result is a Pareto front).

``optimized_metric: [val/loss_best, val/acc_best]`` with ``hydra.sweeper.direction: [minimize, maximize]`` (or
``auto``, per metric) makes Optuna keep every trial that no other trial beats on all metrics at once: the
study's ``best_trials``. The sweeper (``hydra_plugins.initsweep_optuna_sweeper``) asks this module how to
read a job's return value, what to record at the end, and which plots to draw.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna

from initsweep.core.config import ConfigError
from initsweep.protocol import direction as metric_direction
from initsweep.tuning.settings import DIRECTIONS, SETTINGS_KEY


def resolve_directions(metrics: Sequence[str], direction: str | Sequence[str]) -> list[str]:
    """One direction per metric: ``auto`` (minimize a loss, maximize the rest), one direction for every
    metric, or a list as long as ``metrics`` whose ``auto`` entries follow their metric. ConfigError otherwise."""
    key = f"{SETTINGS_KEY}.direction"
    given = [direction] * len(metrics) if isinstance(direction, str) else list(direction)
    if len(given) != len(metrics):
        raise ConfigError(
            f"{key} = {list(given)!r}: {len(given)} directions for {len(metrics)} optimized metrics "
            f"{list(metrics)!r}; give one per metric, or auto"
        )
    for d in given:
        if d not in DIRECTIONS:
            raise ConfigError(f"{key} = {direction!r}: {d!r} is not a direction; allowed: {', '.join(DIRECTIONS)}")
    return [metric_direction(m) if d == "auto" else d for m, d in zip(metrics, given)]


def check_pruner(pruner: Any, metrics: Sequence[str]) -> None:
    """Optuna cannot prune a multi-objective trial (``Trial.report`` takes one value): refuse any pruner."""
    if len(metrics) > 1 and pruner != "none":
        raise ConfigError(
            f"{SETTINGS_KEY}.pruner = {pruner!r}: Optuna cannot prune a multi-objective study "
            f"(optimized_metric = {list(metrics)!r}); set {SETTINGS_KEY}.pruner=none"
        )


def objective_values(value: Any, n: int) -> float | list[float]:
    """A job's return value as what Optuna is told: a finite float (one objective) or a list of ``n`` finite
    floats. ValueError with the reason for anything else (the trial then fails)."""
    items = list(value) if isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig" else [value]
    if len(items) != n:
        raise ValueError(f"the job returned {value!r}, not {n} value{'s' if n > 1 else ''}")
    try:
        floats = [float(v) for v in items]
    except (TypeError, ValueError):
        raise ValueError(f"the job returned {value!r}, not a number") from None
    if not all(map(math.isfinite, floats)):
        raise ValueError(f"the job returned {value}")
    return floats[0] if n == 1 else floats


def describe(metrics: Sequence[str], value: float | Sequence[float]) -> str:
    """``val/loss_best=0.1234`` or ``val/loss_best=0.1234 val/acc_best=0.9500``."""
    values = [value] if isinstance(value, (int, float)) else list(value)
    return " ".join(f"{m}={v:.4f}" for m, v in zip(metrics, values))


def name_objectives(study: optuna.Study, metrics: Sequence[str]) -> None:
    """Label the study's objectives with the metric names (optuna-dashboard, Optuna's plots)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # set_metric_names
        study.set_metric_names(list(metrics))


def best_results(study: optuna.Study, metrics: Sequence[str]) -> dict[str, Any]:
    """What optimization_results.yaml says of the best: ``best_params``, ``best_value``, ``best_trial`` for one
    objective; ``best_trials`` (the Pareto front: number, params, values by metric) for several. Empty when no
    trial completed."""
    if len(metrics) == 1:
        try:
            best = study.best_trial
        except ValueError:
            return {}
        return {"best_params": dict(best.params), "best_value": best.value, "best_trial": best.number}
    front = sorted(study.best_trials, key=lambda t: t.number)
    if not front:
        return {}
    return {
        "best_trials": [
            {"number": t.number, "params": dict(t.params), "values": dict(zip(metrics, t.values))} for t in front
        ]
    }


def best_numbers(results: dict[str, Any]) -> list[int]:
    """The trial numbers of :func:`best_results`: the best trial, or the Pareto front."""
    if "best_trial" in results:
        return [int(results["best_trial"])]
    return [int(t["number"]) for t in results.get("best_trials", [])]


def pareto_plot(study: optuna.Study, metrics: Sequence[str], out_dir: Path) -> list[Path]:
    """``pareto_front.png`` (Optuna's Pareto-front plot, axes named by metric) of a study of 2 or 3 objectives
    with a completed trial; nothing otherwise."""
    if not 2 <= len(metrics) <= 3 or not study.best_trials:
        return []
    import matplotlib  # lazy: only at the end of a study

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        ax = ovm.plot_pareto_front(study, target_names=list(metrics))
    fig = ax.get_figure(root=True)
    if fig is None:  # never: Optuna draws the plot in a new figure
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "pareto_front.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return [path]
