"""A metric drawn as a heatmap over two swept keys (``scripts/report.py --heatmap METRIC --over X Y``).

Each cell is the mean of ``METRIC`` over the runs with that pair of values of the params ``X`` and ``Y`` (its
seeds); a cell whose runs have no value (a diverged run logs no summary) is grey. When the keys are
``init.sigma_w2`` and ``init.sigma_b2`` (``init=mean_field``), mean-field theory for the runs' activation is drawn
over it (:mod:`initsweep.diagnostics.meanfield`): the edge of chaos χ1 = 1 as a line, and the cells where
6 ξ_c ≥ depth outlined (Schoenholz et al. 2017: nets deeper than about 6 ξ_c do not train), ξ_c as the runs logged
it (``diag/xi_c``) or computed for the cell.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from initsweep.report.plots import PNG, pyplot

MEAN_FIELD_KEYS = ("init.sigma_w2", "init.sigma_b2")
DEPTH_FACTOR = 6.0  # trainable depth ≈ 6 ξ_c (Schoenholz et al. 2017)


class HeatmapError(ValueError):
    """The runs cannot give the requested heatmap; the message says why."""


@dataclass(frozen=True)
class Grid:
    """``values[i][j]``: the mean of the metric at ``ys[i]``, ``xs[j]`` (NaN: no run has a value there);
    ``counts[i][j]``: how many runs it averages."""

    metric: str
    x_key: str
    y_key: str
    xs: list[float]
    ys: list[float]
    values: list[list[float]]
    counts: list[list[int]]


def _number(run: Any, key: str) -> float | None:
    try:
        return float(run.data.params[key])
    except (KeyError, ValueError):
        return None


def grid(runs: Sequence[Any], metric: str, x_key: str, y_key: str) -> Grid:
    """The mean of ``metric`` per (``x_key``, ``y_key``) pair of param values over ``runs`` (MLflow runs)."""
    cells: dict[tuple[float, float], list[float]] = {}
    for run in runs:
        x, y = _number(run, x_key), _number(run, y_key)
        if x is None or y is None:
            continue
        value = run.data.metrics.get(metric)
        cells.setdefault((x, y), [])
        if value is not None and math.isfinite(value):
            cells[(x, y)].append(value)
    if not cells:
        raise HeatmapError(f"no run has numeric params {x_key} and {y_key}: sweep both to draw {metric} over them")
    if not any(cells.values()):
        raise HeatmapError(f"no run has a finite {metric}")
    xs, ys = sorted({x for x, _ in cells}), sorted({y for _, y in cells})
    values = [[statistics.fmean(cells[(x, y)]) if cells.get((x, y)) else math.nan for x in xs] for y in ys]
    counts = [[len(cells.get((x, y), [])) for x in xs] for y in ys]
    return Grid(metric, x_key, y_key, xs, ys, values, counts)


def _at(values: Sequence[float], v: Any) -> Any:
    """Where ``v`` (a value of a swept key, or an array of them) lies on the heatmap's axis, whose cells are
    equal and centred on 0, 1, ... (piecewise linear between the swept values, so a curve keeps its side of
    every cell); NaN outside the swept range."""
    import numpy as np

    if len(values) == 1:
        return np.where(np.isclose(v, values[0]), 0.0, np.nan)
    out = np.interp(v, values, np.arange(len(values)))
    return np.where((np.asarray(v) < values[0]) | (np.asarray(v) > values[-1]), np.nan, out)


def critical_sigma_w2(activation: str, sigma_b2: float, lo: float = 0.05, hi: float = 20.0) -> float:
    """The σw² of the edge of chaos (χ1 = 1) at ``sigma_b2``, by Brent's method (NaN outside [lo, hi])."""
    from scipy.optimize import brentq

    from initsweep.diagnostics.meanfield import chi1

    gap = lambda w: chi1(activation, w, sigma_b2) - 1.0  # noqa: E731
    if gap(lo) * gap(hi) > 0:
        return math.nan
    return float(brentq(gap, lo, hi, xtol=1e-6))


def _single(runs: Sequence[Any], key: str) -> str | None:
    values = {run.data.params.get(key) for run in runs} - {None}
    return values.pop() if len(values) == 1 else None


def draw(g: Grid, path: Path, title: str, runs: Sequence[Any] = ()) -> Path:
    """The heatmap of ``g`` as a PNG at ``path``, each cell labelled with its value (and its number of runs
    when they differ); the mean-field overlay when the keys are σw² and σb² and ``runs`` share one activation."""
    import textwrap

    import numpy as np

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
    data = np.ma.masked_invalid(np.array(g.values, dtype=float))
    cmap = plt.get_cmap("viridis").copy()
    cmap.set_bad("0.85")
    # Equal cells, one per swept value (the values are rarely evenly spaced: 1.5, 1.76, 2.0)
    mesh = ax.pcolormesh(np.arange(len(g.xs) + 1) - 0.5, np.arange(len(g.ys) + 1) - 0.5, data, cmap=cmap)
    fig.colorbar(mesh, ax=ax, label=g.metric)
    ax.set_xticks(range(len(g.xs)), [f"{x:g}" for x in g.xs])
    ax.set_yticks(range(len(g.ys)), [f"{y:g}" for y in g.ys])
    uneven = len({c for row in g.counts for c in row}) > 1
    for i in range(len(g.ys)):
        for j in range(len(g.xs)):
            v = g.values[i][j]
            text = "–" if math.isnan(v) else f"{v:.2f}" + (f"\n(n={g.counts[i][j]})" if uneven else "")
            light = not math.isnan(v) and mesh.norm(v) > 0.6  # dark text on viridis' light end
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="k" if light else "w")
    activation = _single(runs, "model.activation")
    if (g.x_key, g.y_key) == MEAN_FIELD_KEYS and activation:
        _mean_field_overlay(ax, g, activation, _single(runs, "model.depth"), runs)
    ax.set(xlabel=g.x_key, ylabel=g.y_key)
    ax.set_title(f"{g.metric} over {g.x_key} x {g.y_key}\n" + textwrap.shorten(title, 90), fontsize=9)
    fig.savefig(path, dpi=150, **PNG)
    plt.close(fig)
    return path


def _xi_c(runs: Sequence[Any], g: Grid, x: float, y: float, activation: str) -> float:
    """ξ_c of the cell (x, y): as its runs logged it, else computed."""
    logged = [
        r.data.metrics["diag/xi_c"]
        for r in runs
        if "diag/xi_c" in r.data.metrics and (_number(r, g.x_key), _number(r, g.y_key)) == (x, y)
    ]
    if logged:
        return logged[0]
    from initsweep.diagnostics.meanfield import mean_field

    return mean_field(activation, x, y).xi_c


def _mean_field_overlay(ax: Any, g: Grid, activation: str, depth: str | None, runs: Sequence[Any]) -> None:
    """χ1 = 1 over the grid's σb² range, and for a known depth an outline on each cell with 6 ξ_c ≥ depth."""
    import numpy as np
    from matplotlib.patches import Rectangle

    b2 = np.linspace(g.ys[0], g.ys[-1], 12) if len(g.ys) > 1 else np.array(g.ys)  # ~0.3 s each near χ1 = 1
    w2 = np.array([critical_sigma_w2(activation, float(b)) for b in b2])
    ax.plot(_at(g.xs, w2), _at(g.ys, b2), color="red", lw=1.5, label="χ1 = 1")
    if depth is not None and depth.isdigit():
        label = f"6 ξ_c ≥ depth {depth}"
        for i, y in enumerate(g.ys):
            for j, x in enumerate(g.xs):
                if DEPTH_FACTOR * _xi_c(runs, g, x, y, activation) >= float(depth):
                    box = Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="white", lw=2, ls="--", label=label)
                    ax.add_patch(box)
                    label = "_"  # one legend entry
    ax.set_xlim(-0.5, len(g.xs) - 0.5)
    ax.set_ylim(-0.5, len(g.ys) - 0.5)
    ax.legend(loc="upper left", fontsize=7, framealpha=0.6)
