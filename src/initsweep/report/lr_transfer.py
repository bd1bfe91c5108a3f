"""Learning-rate transfer across width (``scripts/report.py EXPERIMENT --lr-transfer``): a metric against
the lr, one line per width, one panel per parametrization, each width's best lr marked.

The values are those of :func:`initsweep.report.heatmap.grid` over (``trainer.lr``, ``model.width``): the mean
over seeds; a cell whose runs have no finite value (diverged) is drawn as a cross at the panel's top. Under
muP the best lr should stay put as the width grows (Yang et al. 2022); under SP it moves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from initsweep.protocol import direction
from initsweep.report.heatmap import Grid, HeatmapError, grid
from initsweep.report.plots import PNG, pyplot

LR_KEY, WIDTH_KEY, BY_KEY = "trainer.lr", "model.width", "parametrization.name"


@dataclass(frozen=True)
class Transfer:
    """One parametrization's grid (x: lr, y: width) and each width's best lr (NaN: no finite value)."""

    name: str
    grid: Grid
    best_lr: dict[float, float]


def best_lrs(g: Grid) -> dict[float, float]:
    """Each width's (``g.ys``) lr (``g.xs``) of the best finite value of ``g.metric`` (lowest for a loss)."""
    sign = -1.0 if direction(g.metric) == "maximize" else 1.0
    out = {}
    for width, row in zip(g.ys, g.values):
        finite = [(sign * v, lr) for lr, v in zip(g.xs, row) if math.isfinite(v)]
        out[width] = min(finite)[1] if finite else math.nan
    return out


def transfers(runs: Sequence[Any], metric: str) -> list[Transfer]:
    """One :class:`Transfer` per value of ``parametrization.name`` among ``runs`` (runs without it: sp), in the
    order sp, ntk, mup. HeatmapError when no run has numeric ``trainer.lr`` and ``model.width``."""
    by: dict[str, list[Any]] = {}
    for run in runs:
        by.setdefault(run.data.params.get(BY_KEY, "sp"), []).append(run)
    if not by:
        raise HeatmapError(f"no runs: sweep {LR_KEY} and {WIDTH_KEY} to draw {metric} over them")
    order = sorted(by, key=lambda n: ("sp", "ntk", "mup").index(n) if n in ("sp", "ntk", "mup") else 3)
    out = []
    for name in order:
        g = grid(by[name], metric, LR_KEY, WIDTH_KEY)
        out.append(Transfer(name, g, best_lrs(g)))
    return out


def shift(t: Transfer) -> float:
    """How far the best lr moves over the widths: max / min of the best lrs (NaN when a width has none)."""
    lrs = list(t.best_lr.values())
    return max(lrs) / min(lrs) if lrs and all(math.isfinite(v) for v in lrs) else math.nan


def table(ts: Sequence[Transfer]) -> str:
    """A Markdown table: the best lr per width for each parametrization, and the shift (max / min)."""
    widths = sorted({w for t in ts for w in t.best_lr})
    lines = ["| parametrization | " + " | ".join(f"width {w:g}" for w in widths) + " | shift |"]
    lines.append("|---" * (len(widths) + 2) + "|")
    for t in ts:
        cells = [f"{t.best_lr[w]:g}" if w in t.best_lr else "" for w in widths]
        lines.append(f"| {t.name} | " + " | ".join(cells) + f" | {shift(t):.3g} x |")
    return "\n".join(lines)


def draw(ts: Sequence[Transfer], path: Path, title: str) -> Path:
    """The figure as a PNG at ``path``: a panel per parametrization (shared y axis), x = lr (log), a line per
    width (lighter = narrower), the best lr a star, a cross for an lr whose runs all diverged."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(ts), figsize=(4.2 * len(ts), 3.6), sharey=True, layout="constrained", squeeze=False)
    cmap = plt.get_cmap("viridis")
    finite = [v for t in ts for row in t.grid.values for v in row if math.isfinite(v)]
    log = bool(finite) and min(finite) > 0
    top = max(finite) if finite else 1.0
    for ax, t in zip(axes[0], ts):
        g = t.grid
        for i, (width, row) in enumerate(zip(g.ys, g.values)):
            color = cmap(0.85 * i / max(1, len(g.ys) - 1))
            ax.plot(g.xs, row, marker="o", ms=3, color=color, label=f"width {width:g}")
            best = t.best_lr[width]
            if math.isfinite(best):
                ax.plot([best], [row[g.xs.index(best)]], marker="*", ms=13, color=color, mec="k", ls="none")
            bad = [lr for lr, v in zip(g.xs, row) if not math.isfinite(v)]
            ax.plot(bad, [top] * len(bad), marker="x", ms=7, color=color, ls="none")
        ax.set_xscale("log")
        if log:
            ax.set_yscale("log")
        ax.set_title(f"{t.name}: best lr moves {shift(t):.3g} x", fontsize=9)
        ax.set_xlabel(LR_KEY)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ts[0].grid.metric)
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=100, **PNG)
    plt.close(fig)
    return path
