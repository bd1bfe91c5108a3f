"""A run's PNGs (learning curves, signal propagation, the hidden Jacobian's spectrum where measured), drawn off
the training's critical path.

Drawing them costs about 0.2 s of CPU per job with matplotlib (whose import costs another 0.5-1 s once), as
much as a short job's training. A job that tracks through the tracking writer (:mod:`initsweep.writer.client`: single
runs, basic and parallel sweeps) sends the figures' data to the writer, whose drawing process (at a lower
priority) imports matplotlib while the job trains and draws while the next job trains; the writer logs the
PNGs to the run. A job with its own MLflow client (a shared study's trial, ``$INITSWEEP_TRACKING_WRITER=0``)
draws them in a forked child when it shares its process with later jobs (the parent logs them once the child
is done: at the next job's figures, at the sweep's end before the report, or at exit), else inline. Neither
the writer nor the children touch torch: :func:`figure_args` turns the history into plain tuples.
"""

from __future__ import annotations

import atexit
import multiprocessing
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from initsweep.report.plots import (  # matplotlib: imported when drawing
    SPECTRUM_PNG,
    Point,
    drawn,
    isometry_spectrum,
    learning_curves,
    signal_propagation,
)
from initsweep.tracking.run_logger import DrawsFigures, RunLogger

_JOIN_TIMEOUT_S = 300.0  # a child that hangs is killed and its figures drawn inline
_pending: list[tuple[Any, RunLogger, list[Path], tuple]] = []  # (child process, run logger, PNG paths, draw args)


def figure_args(
    history: Sequence[Any], initial_val: tuple[float, float], snapshots: list, out_dir: Path, title: str
) -> tuple:
    """What :func:`draw` needs, picklable without torch: the drawn epochs of ``history`` as :class:`Point`s,
    the initial val (loss, acc), per-snapshot layer profiles ``(label, layers, act_std, grad_std)``, the
    output dir, the title, and the hidden-Jacobian singular values at initialization (empty where not measured)."""
    points = [Point(h.epoch, h.train_loss, h.train_acc, h.val_loss, h.val_acc) for h in drawn(history)]
    profiles = [(f"epoch {e}", list(d.layers), list(d.act_std), list(d.grad_std)) for e, d in snapshots]
    spectrum = next((list(getattr(d, "spectrum", [])) for e, d in snapshots if e == 0), [])
    return points, tuple(initial_val), profiles, Path(out_dir), title, spectrum


def draw(
    points: Sequence[Point],
    initial_val: tuple[float, float],
    profiles: list,
    out_dir: Path,
    title: str,
    spectrum: Sequence[float] = (),
):
    """Write the PNGs of :func:`figure_args`' values into ``out_dir``; returns their paths."""
    paths = [learning_curves(points, initial_val, out_dir / "learning_curves.png", title)]
    if profiles:
        paths.append(signal_propagation(profiles, out_dir / "signal_propagation.png", title))
    if spectrum:
        paths.append(isometry_spectrum(spectrum, out_dir / SPECTRUM_PNG, title=title))
    return paths


def prepare(logger: RunLogger) -> None:
    """Figures will follow: a logger that draws them (the tracking writer's) imports matplotlib now, while the
    job trains."""
    if isinstance(logger, DrawsFigures):
        logger.prepare_figures()


def _draw_in_child(*args: Any) -> None:
    """The forked child: Ctrl-C goes to the parent (which closes its runs and logs what is drawn), SIGTERM
    ends the child quietly instead of raising the parent's KeyboardInterrupt handler in it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    draw(*args)


def log_figures(
    logger: RunLogger,
    history: Sequence[Any],
    initial_val: tuple[float, float],
    snapshots: list,
    out_dir: Path,
    background: bool = False,
) -> None:
    """Draw the run's PNGs into ``out_dir`` and log them to ``logger``'s run: by the logger when it can (the
    tracking writer's); else with ``background`` in a forked child, logged later by :func:`finish` (called
    here for earlier jobs, by the sweep's end and at exit); else here."""
    args = figure_args(history, initial_val, snapshots, out_dir, logger.run_name)
    if isinstance(logger, DrawsFigures):  # the tracking writer's (initsweep.writer.client.RemoteRunLogger)
        logger.draw_figures(args)
        return
    finish()
    if background and "fork" in multiprocessing.get_all_start_methods():
        from initsweep.report.plots import pyplot

        pyplot()  # matplotlib imported here once, not in every child (about 1 CPU s each)
        child = multiprocessing.get_context("fork").Process(target=_draw_in_child, args=args, daemon=False)
        child.start()
        paths = [out_dir / "learning_curves.png"] + ([out_dir / "signal_propagation.png"] if snapshots else [])
        paths += [out_dir / SPECTRUM_PNG] if args[5] else []
        _pending.append((child, logger, paths, args))
        return
    for path in draw(*args):
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
            paths = draw(*args)
        for path in paths:
            logger.log_artifact(path)


atexit.register(finish)
