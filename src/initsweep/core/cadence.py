"""Which evaluated epochs a run logs: all of them on ordinary runs, a capped, chart-friendly subset on long ones.

Training evaluates every ``trainer.eval_every``-th epoch and the last; the end-of-run summary uses all of
them. Tracking logs a subset (MLflow writes one database row per value): every k-th epoch, the last one, and
about ten log-spaced epochs per decade (1, 2, 3, 4, 6, 7, 8, 10, 13, 16, 20, 26, ...), so that a chart with a
log-scale x axis still shows the first epochs of a 15000-epoch run.
"""

from __future__ import annotations

import math

PER_DECADE = 10  # log-spaced epochs per factor of 10


def _evaluated(epoch: int, epochs: int, eval_every: int) -> int:
    """The first evaluated epoch at or after ``epoch`` (evaluated: multiples of eval_every, and the last)."""
    return min(epochs, math.ceil(epoch / eval_every) * eval_every)


def log_spaced(epochs: int, eval_every: int = 1) -> set[int]:
    """Evaluated epochs near 10^(j / PER_DECADE), j = 0, 1, ...: about PER_DECADE per decade up to ``epochs``."""
    top = int(PER_DECADE * math.log10(epochs)) + 1 if epochs > 0 else 0
    return {_evaluated(math.ceil(10 ** (j / PER_DECADE)), epochs, eval_every) for j in range(top)}


def grid(epochs: int, every: int) -> set[int]:
    """Every ``every``-th epoch and the last one."""
    return {*range(every, epochs + 1, every), epochs} if epochs > 0 else set()


def logged_epochs(epochs: int, eval_every: int = 1, log_every: int | None = None, max_points: int = 500) -> set[int]:
    """The epochs (1-based) whose metrics a run of ``epochs`` epochs logs.

    ``log_every`` = k: every k-th epoch (k a multiple of eval_every), the last, and the log-spaced epochs.
    ``log_every`` None: the same with the smallest such k that keeps the set within ``max_points`` epochs:
    every evaluated epoch when they fit (20 epochs: all 20; 15000 epochs, max_points 500: every 33rd and
    the log-spaced ones, 494 in all).
    """
    spaced = log_spaced(epochs, eval_every)
    if log_every is not None:
        return grid(epochs, log_every) | spaced
    every = eval_every * max(1, epochs // (eval_every * max_points))
    while True:
        chosen = grid(epochs, every) | spaced
        if len(chosen) <= max_points or every >= epochs:
            return chosen
        every += eval_every
