"""A run's two PNGs (learning curves, signal propagation), drawn off the training's critical path in sweeps.

Drawing them costs about 0.4 s of CPU per job with matplotlib, as much as a short job's training. In a sweep
whose jobs share one process (the basic launcher), a forked child draws a finished job's figures while the
next job trains on another core; the parent logs them as artifacts once the child is done (at the next job's
figures, at the sweep's end before the report, or at exit). Single runs, parallel workers (joblib), and
platforms without ``fork`` draw inline. The child touches neither torch nor MLflow: it writes two files.
"""

from __future__ import annotations

import atexit
import multiprocessing
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_JOIN_TIMEOUT_S = 300.0  # a child that hangs is killed and its figures drawn inline
_pending: list[tuple[Any, Any, list[Path], tuple]] = []  # (child process, run logger, PNG paths, draw args)


def _draw(history: Sequence[Any], initial_val: tuple[float, float], snapshots: list, out_dir: Path, title: str):
    from initsweep.plots import learning_curves, signal_propagation  # matplotlib: only when plotting

    paths = [learning_curves(history, initial_val, out_dir / "learning_curves.png", title)]
    if snapshots:
        profiles = [(f"epoch {e}", d.layers, d.act_std, d.grad_std) for e, d in snapshots]
        paths.append(signal_propagation(profiles, out_dir / "signal_propagation.png"))
    return paths


def _draw_in_child(*args: Any) -> None:
    """The forked child: Ctrl-C goes to the parent (which closes its runs and logs what is drawn), SIGTERM
    ends the child quietly instead of raising the parent's KeyboardInterrupt handler in it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _draw(*args)


def log_figures(
    logger: Any,
    history: Sequence[Any],
    initial_val: tuple[float, float],
    snapshots: list,
    out_dir: Path,
    background: bool = False,
) -> None:
    """Draw the run's PNGs into ``out_dir`` and log them to ``logger``'s run; ``background``: in a forked
    child, logged later by :func:`finish` (called here for earlier jobs, by the sweep's end and at exit)."""
    args = (history, initial_val, snapshots, out_dir, logger.run_name)
    finish()
    if background and "fork" in multiprocessing.get_all_start_methods():
        from initsweep.plots import pyplot

        pyplot()  # matplotlib imported here once, not in every child (about 1 CPU s each)
        child = multiprocessing.get_context("fork").Process(target=_draw_in_child, args=args, daemon=False)
        child.start()
        paths = [out_dir / "learning_curves.png"] + ([out_dir / "signal_propagation.png"] if snapshots else [])
        _pending.append((child, logger, paths, args))
        return
    for path in _draw(*args):
        logger.log_artifact(path)


def finish() -> None:
    """Wait for every figure drawn in the background and log it; a child that failed is redrawn inline."""
    while _pending:
        child, logger, paths, args = _pending.pop(0)
        child.join(timeout=_JOIN_TIMEOUT_S)
        if child.is_alive():
            child.kill()
        if child.exitcode != 0 or not all(p.exists() for p in paths):
            print(f"initsweep: drawing the figures of run {logger.run_id} in the background failed", file=sys.stderr)
            paths = _draw(*args)
        for path in paths:
            logger.log_artifact(path)


atexit.register(finish)
