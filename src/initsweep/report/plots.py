"""PNG figures. matplotlib is imported lazily (inside the functions), with the non-interactive Agg backend."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from initsweep.core.cadence import logged_epochs

if TYPE_CHECKING:  # torch: not for drawing a report
    from initsweep.core.trainer import EpochMetrics

# zlib level 1: about a third of the encoding time of the default level 6; files about 1.1 x larger.
PNG = {"pil_kwargs": {"compress_level": 1}}


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# The two per-run figures are kept per process and drawn again for each run (:func:`_canvas`): building a
# figure's axes, ticks and labels is about 40 % of drawing it (learning curves: 180 ms fresh, 110 ms again).
_CANVASES: dict[tuple, tuple] = {}


def _canvas(key: tuple, build: Callable[[], tuple]) -> tuple:
    """``(figure, axes, ...)`` as ``build`` makes it, made once per ``key`` in this process; the lines and
    legends of the run drawn before are removed. A plain Figure, not pyplot's: nothing global is kept open."""
    if key not in _CANVASES:
        pyplot()  # the Agg backend
        _CANVASES[key] = build()
    canvas = _CANVASES[key]
    for ax in canvas[1]:
        for artist in [*ax.lines, *([ax.legend_] if ax.legend_ else [])]:
            artist.remove()
    return canvas


def _finish_axes(ax, legend_size: float) -> None:
    """Axis limits from the lines drawn now (not those of an earlier run on the same canvas), and the legend."""
    ax.relim()
    ax.autoscale_view()
    ax.legend(fontsize=legend_size)


DRAWN_POINTS = 2000  # most epochs drawn per curve: a 1000-pixel-wide figure shows no more


class Point(NamedTuple):
    """One evaluated epoch as the learning curves draw it: what a process without torch receives instead of an
    :class:`~initsweep.core.trainer.EpochMetrics` (which has these fields too)."""

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float


def drawn(history: Sequence[EpochMetrics | Point]) -> Sequence[EpochMetrics | Point]:
    """The epochs of ``history`` a figure draws: all of them up to DRAWN_POINTS, else the DRAWN_POINTS that
    :func:`initsweep.core.cadence.logged_epochs` picks (an even grid, the log-spaced early epochs, the last)."""
    if len(history) <= DRAWN_POINTS:
        return history
    keep = logged_epochs(len(history), max_points=DRAWN_POINTS)
    return [h for i, h in enumerate(history, 1) if i in keep]


def learning_curves(
    history: Sequence[EpochMetrics | Point], initial_val: tuple[float, float], path: Path, title: str = ""
) -> Path:
    """Loss (log scale) and accuracy per epoch (train and val; val also at epoch 0, before training), at most
    DRAWN_POINTS epochs of ``history`` (:func:`drawn`); runs of LOG_X_EPOCHS epochs or more get a log-scale
    epoch axis.

    A loss of 0 or NaN cannot sit on a log axis: it is marked with an x at the bottom edge (0) or a
    triangle at the top edge (NaN or inf), so a curve never just stops.
    """
    history = drawn(history)
    epochs = [h.epoch for h in history]
    scale = epoch_scale(epochs[-1] if epochs else 0)
    fig, (ax_loss, ax_acc), suptitle = _canvas(("learning_curves", scale), _curves_canvas)
    for i, (label, xs, ys) in enumerate(
        (
            ("train", epochs, [h.train_loss for h in history]),
            ("val", [0, *epochs], [initial_val[0], *(h.val_loss for h in history)]),
        )
    ):
        _log_line(ax_loss, xs, ys, color=f"C{i}", label=label)
        bad = [x for x, v in zip(xs, ys) if v != v or v == float("inf")]
        if bad:
            ax_loss.plot(bad, [0.97] * len(bad), "^", color=f"C{i}", ms=7, transform=ax_loss.get_xaxis_transform())
    ax_acc.plot(epochs, [h.train_acc for h in history], color="C0", label="train")  # colors: a reused axes'
    ax_acc.plot([0, *epochs], [initial_val[1], *(h.val_acc for h in history)], color="C1", label="val")  # cycle goes on
    ax_loss.set_yscale("log")  # the log scale's own tick locators, which _short_log_ticks then adapts
    for ax in (ax_loss, ax_acc):
        _finish_axes(ax, 8)
        _epoch_axis(ax, epochs[-1] if epochs else 0)
    _short_log_ticks(ax_loss)
    suptitle.set_text(title)
    fig.savefig(path, **PNG)
    return path


def _curves_canvas() -> tuple:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=100)
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss (log)", yscale="log", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1), title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    suptitle = fig.suptitle("", fontsize=11)
    fig.text(0.01, 0.01, "x at the bottom: loss 0; triangle at the top: NaN/inf", fontsize=7, color="0.4")
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.15, top=0.84, wspace=0.25)
    return fig, (ax_loss, ax_acc), suptitle


_LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (3, 1, 1, 1, 1, 1)))
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")

# A curve with a band: (x values, mean, lower edge, upper edge); lower/upper may equal the mean.
Band = tuple[Sequence, Sequence[float], Sequence[float], Sequence[float]]


@dataclass(frozen=True)
class Panel:
    """One subplot of :func:`band_panels`: a mean line and shaded band per label."""

    ylabel: str
    bands: dict[str, Band]
    yscale: str = "linear"
    ylim: tuple[float, float] | None = None


def _short_log_ticks(ax) -> None:
    """Log-axis labels that fit, as plain text: ``0.01``, not the mathtext ``10^-2`` (parsing mathtext was a
    sixth of a figure's drawing time). A range within one decade gets short minor labels (2.3029, not
    2.3029x10^0); wider ranges draw no minor ticks (another sixth)."""
    from matplotlib.ticker import FormatStrFormatter, NullLocator

    ax.yaxis.set_major_formatter(FormatStrFormatter("%.4g"))
    low, high = ax.get_ylim()
    if low > 0 and high / low < 10:
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%.5g"))
    else:
        ax.yaxis.set_minor_locator(NullLocator())


def _integer_x(ax) -> None:
    """Epochs are whole numbers."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


# From this many epochs on, learning curves get a log-scale epoch axis: the first hundred epochs of a
# 15000-epoch run, where initializations differ most, would otherwise be squeezed into a few pixels.
LOG_X_EPOCHS = 1000


def epoch_scale(last_epoch: float) -> str:
    """``symlog`` (linear from 0 to 1, so epoch 0 is drawn, logarithmic beyond) for runs of at least
    LOG_X_EPOCHS epochs, else ``linear``."""
    return "symlog" if last_epoch >= LOG_X_EPOCHS else "linear"


def _epoch_axis(ax, last_epoch: float) -> None:
    """An epoch x axis: integer ticks, or a log scale for long runs (see :func:`epoch_scale`)."""
    if epoch_scale(last_epoch) == "symlog":
        ax.set_xscale("symlog", linthresh=1, linscale=0.5)
        ax.set_xlim(0, last_epoch * 1.1)
        ax.set_xlabel("epoch (log scale)")
    else:
        _integer_x(ax)


def _positive(values: Sequence[float]) -> list[float]:
    """Values for a log axis: zero, negative, infinite or NaN values become NaN (not drawn)."""
    return [v if 0 < v < float("inf") else float("nan") for v in values]


def _categories(series: Sequence[Sequence[Any]]) -> list:
    """The x categories of a panel (layer names): the longest series' in its order, then any others' (a group
    whose model has layers the others lack); none when the x values are numbers."""
    if not any(x and isinstance(x[0], str) for x in series):
        return []
    names: list = []
    for x in sorted(series, key=len, reverse=True):  # stable: the first of the longest leads
        names += [v for v in x if v not in names]
    return names


def _layer_ticks(ax, names: Sequence[str]) -> None:
    """Layer names as x ticks at 0, 1, ...; with many layers, only every k-th name and the last."""
    step = max(1, -(-len(names) // 16))
    shown = [i for i in range(len(names)) if i % step == 0 or i == len(names) - 1]
    ax.set_xticks(shown, [names[i] for i in shown], rotation=90 if len(shown) > 8 else 0)
    ax.set_xlim(-0.5, len(names) - 0.5)


def _log_line(ax, xs: Sequence[float], values: Sequence[float], **style) -> None:
    """Plot ``values`` on a log axis; values <= 0 are marked with an x at the bottom edge of the axis."""
    ax.plot(xs, _positive(values), **style)
    zeros = [x for x, v in zip(xs, values) if v <= 0]
    if zeros:
        ax.plot(
            zeros,
            [0.03] * len(zeros),
            "x",
            color=style.get("color"),
            ms=7,
            transform=ax.get_xaxis_transform(),
            clip_on=False,
        )


def signal_propagation(
    profiles: Sequence[tuple[str, Sequence[str], Sequence[float], Sequence[float]]], path: Path
) -> Path:
    """Activation std and gradient std per layer (log scale), one line per (label, layers, act, grad).

    Zero values cannot be drawn on a log axis: they are marked with an x at the bottom edge.
    """
    layers = list(profiles[0][1])
    xs = list(range(len(layers)))
    many = len(layers) > 8
    fig, axes = _canvas(("signal_propagation", many), lambda: _signal_canvas(many))
    for ax, index in ((axes[0], 2), (axes[1], 3)):
        for i, (label, _, act, grad) in enumerate(profiles):
            _log_line(ax, xs, list(act if index == 2 else grad), color=f"C{i % 10}", marker="o", label=label)
        ax.set_yscale("log")
        _layer_ticks(ax, layers)
        _finish_axes(ax, 7)
        _short_log_ticks(ax)
    fig.savefig(path, **PNG)
    return path


def _signal_canvas(many_layers: bool) -> tuple:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.2), dpi=80)
    axes = fig.subplots(1, 2)
    for ax, title in zip(axes, ("activation std", "grad std (dLoss/d output)")):
        ax.set(xlabel="layer", ylabel=title, yscale="log")
        ax.grid(alpha=0.3)
    fig.suptitle("x at the bottom: std = 0", fontsize=8, x=0.99, ha="right")
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.3 if many_layers else 0.16, top=0.92, wspace=0.3)
    return fig, axes


def band_panels(panels: Sequence[Panel], path: Path, xlabel: str = "epoch", dpi: int = 80) -> Path:
    """Side-by-side panels, each with every label's mean line and shaded band, one legend below.

    Used by the comparison report for learning curves (x = epochs) and per-layer profiles (x = layer
    names, drawn as categories). On log axes, values <= 0 are marked with an x at the bottom edge.
    """
    plt = pyplot()
    # At least 1000 px wide; every label gets its own colour, line style and marker, so curves that overlap
    # (zeros under ones) stay distinguishable.
    width = max(1000 / dpi, 6.0 * len(panels))
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 4.4), dpi=dpi, squeeze=False)
    for ax, panel in zip(axes[0], panels):
        names = _categories([b[0] for b in panel.bands.values()])
        finite = [v for b in panel.bands.values() for v in b[1] if math.isfinite(v)]
        # A log axis needs a positive value (every run diverged: all NaN): linear then, saying so.
        log = panel.yscale == "log" and any(v > 0 for v in finite)
        if not finite:
            ax.text(0.5, 0.5, "no finite values", transform=ax.transAxes, ha="center", va="center", color="0.4")
        for i, (label, (x, mean, lo, hi)) in enumerate(panel.bands.items()):
            categorical = bool(x) and isinstance(x[0], str)
            if categorical:
                xs = [names.index(v) for v in x]
            else:
                xs = list(x)
            color = f"C{i % 10}"
            long_x = not categorical and epoch_scale(max(xs, default=0)) == "symlog"
            style = dict(
                color=color,
                linestyle=_LINESTYLES[i % len(_LINESTYLES)],
                marker=_MARKERS[i % len(_MARKERS)],
                markevery=0.08 if long_x else max(1, len(xs) // 15),  # log x: evenly spaced on screen
                ms=5,
                lw=1.6,
                alpha=0.9,
                label=label,
            )
            if log:
                _log_line(ax, xs, mean, **style)
                lo = _positive(lo)
            else:
                ax.plot(xs, mean, **style)
            ax.fill_between(xs, lo, hi, color=color, alpha=0.2, linewidth=0)
        if names:
            _layer_ticks(ax, names)
        ax.set(xlabel=xlabel, ylabel=panel.ylabel, yscale="log" if log else "linear")
        if not names:
            _epoch_axis(ax, max((max(b[0], default=0) for b in panel.bands.values()), default=0))
        if log:
            _short_log_ticks(ax)
        if panel.ylim:
            ax.set_ylim(*panel.ylim)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, max(1, len(labels))), fontsize=9, frameon=False)
    rows = (len(labels) + 3) // 4
    fig.tight_layout(rect=(0, 0.06 * rows + 0.02, 1, 1))
    fig.savefig(path)
    plt.close(fig)
    return path


SPECTRUM_PNG = "isometry_spectrum.png"


def isometry_spectrum(values: Sequence[float], path: Path, bins: int = 40) -> Path:
    """Histogram of the hidden-to-hidden Jacobian's singular values at initialization (pooled over the
    samples), with a dashed line at 1, where all of them sit for an isometry."""
    from matplotlib.figure import Figure

    pyplot()  # the Agg backend
    fig: Any = Figure(figsize=(5, 3.2), dpi=80)
    ax = fig.subplots()
    finite = [v for v in values if v == v and abs(v) != float("inf")]
    ax.hist(finite, bins=bins, color="C0")
    ax.axvline(1.0, color="k", linestyle="--", linewidth=1, label="isometry (1)")
    ax.set(xlabel="singular value of d a_L / d a_1 (at q*)", ylabel="count", title="hidden Jacobian spectrum")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, **PNG)
    return path
