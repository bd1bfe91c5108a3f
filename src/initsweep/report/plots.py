"""PNG figures. matplotlib is imported lazily (inside the functions), with the non-interactive Agg backend."""

from __future__ import annotations

import functools
import math
import textwrap
from collections.abc import Callable, Iterable, Sequence
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
    fig.text(0.01, 0.01, _marks_note("loss"), fontsize=7, color="0.4")
    # left: room for 7-digit tick labels (2.30252) beside the y label
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.15, top=0.84, wspace=0.25)
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


def distinct_digits(values: Sequence[float], least: int = 4, most: int = 8) -> int:
    """The fewest significant digits, from ``least`` to ``most``, that print every value of ``values``
    differently: tick labels of a flat curve read 2.30252, 2.30254, not 2.3025, 2.3025."""
    for digits in range(least, most):
        if len({f"{v:.{digits}g}" for v in values}) == len(set(values)):
            return digits
    return most


@functools.cache
def _distinct_formatter() -> type:
    """A matplotlib Formatter printing each tick with :func:`distinct_digits` of the ticks drawn with it."""
    from matplotlib.ticker import Formatter

    class Distinct(Formatter):
        digits = 4

        def set_locs(self, locs) -> None:
            self.digits = distinct_digits(list(locs))

        def __call__(self, x, pos=None) -> str:
            return f"{x:.{self.digits}g}"

    return Distinct


def _short_log_ticks(ax) -> None:
    """Log-axis labels that fit, as plain text: ``0.01``, not the mathtext ``10^-2`` (parsing mathtext was a
    sixth of a figure's drawing time). A range within one decade gets minor labels with just enough digits to
    differ (:func:`distinct_digits`); wider ranges draw no minor ticks (another sixth)."""
    from matplotlib.ticker import NullLocator

    ax.yaxis.set_major_formatter(_distinct_formatter()())
    low, high = ax.get_ylim()
    if low > 0 and high / low < 10:
        ax.yaxis.set_minor_formatter(_distinct_formatter()())
    else:
        ax.yaxis.set_minor_locator(NullLocator())


def readable_log_x(ax) -> None:
    """A log x axis labelled at 1, 2 and 5 of each decade in plain numbers (0.05, 0.1, 0.2), minor ticks unlabelled:
    matplotlib labels every minor tick of a range within a decade, and the labels overlap (Optuna's slice plot)."""
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    if ax.get_xscale() == "log":
        ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(NullFormatter())


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


# The documented edge markers (docs/figures.md): a value a log axis cannot show is never just left out.
ZERO_MARK, NAN_MARK = "x", "^"
MARK_NOTES = {ZERO_MARK: "x at the bottom edge: {} 0", NAN_MARK: "triangle at the top edge: {} NaN or inf"}


def _log_line(
    ax, xs: Sequence[float], values: Sequence[float], log: bool = True, mark_ms: float = 7.0, **style
) -> set[str]:
    """Plot ``values``; on a log axis a value <= 0 is marked with ZERO_MARK at the bottom edge, on any axis NaN or
    inf with NAN_MARK at the top edge (both in axes height, at their x; ``mark_ms`` points). Returns the marks
    drawn."""
    ax.plot(xs, _positive(values) if log else values, **style)
    drawn = set()
    for mark, y, hit in ((ZERO_MARK, 0.03, lambda v: log and v <= 0), (NAN_MARK, 0.97, lambda v: not v < math.inf)):
        at = [x for x, v in zip(xs, values) if hit(v)]
        if at:
            ax.plot(at, [y] * len(at), mark, color=style.get("color"), ms=mark_ms, transform=ax.get_xaxis_transform(),
                    clip_on=False)  # fmt: skip
            drawn.add(mark)
    return drawn


def _marks_note(quantity: str, marks: Sequence[str] = (ZERO_MARK, NAN_MARK)) -> str:
    """The legend of the edge markers ``marks``: ``x at the bottom edge: loss 0; triangle ...``."""
    return "; ".join(MARK_NOTES[m].format(quantity) for m in (ZERO_MARK, NAN_MARK) if m in marks)


def signal_propagation(
    profiles: Sequence[tuple[str, Sequence[str], Sequence[float], Sequence[float]]], path: Path, title: str = ""
) -> Path:
    """Activation std and gradient std per layer (log scale), one line per (label, layers, act, grad); the
    figure's title is ``title`` (the run).

    Zero values cannot be drawn on a log axis: they are marked with an x at the bottom edge.
    """
    layers = list(profiles[0][1])
    xs = list(range(len(layers)))
    many = len(layers) > 8
    fig, axes, suptitle = _canvas(("signal_propagation", many), lambda: _signal_canvas(many))
    for ax, index in ((axes[0], 2), (axes[1], 3)):
        for i, (label, _, act, grad) in enumerate(profiles):
            _log_line(ax, xs, list(act if index == 2 else grad), color=f"C{i % 10}", marker="o", label=label)
        ax.set_yscale("log")
        _layer_ticks(ax, layers)
        _finish_axes(ax, 7)
        _short_log_ticks(ax)
    suptitle.set_text(title)
    fig.savefig(path, **PNG)
    return path


def _signal_canvas(many_layers: bool) -> tuple:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.2), dpi=80)
    axes = fig.subplots(1, 2)
    for ax, title in zip(axes, ("activation std", "grad std (dLoss/d output)")):
        ax.set(xlabel="layer", ylabel=title, yscale="log")
        ax.grid(alpha=0.3)
    suptitle = fig.suptitle("", fontsize=10)
    fig.text(0.99, 0.01, _marks_note("std"), fontsize=7, color="0.4", ha="right")
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.34 if many_layers else 0.2, top=0.88, wspace=0.3)
    return fig, axes, suptitle


def coinciding(bands: dict[str, Band], log: bool, tolerance: float = 0.005) -> dict[str, str]:
    """Labels whose mean curve lies on an earlier label's, mapped to the first label of that curve: both are
    finite at the same x values (on a log axis: positive), and there |a - b| <= ``tolerance`` x the span of all
    means (of log10 of the means on a log axis)."""

    def scaled(v: float) -> float:
        return (math.log10(v) if v > 0 else math.nan) if log else v

    curves = {label: {x: scaled(m) for x, m in zip(b[0], b[1])} for label, b in bands.items()}
    finite = [v for c in curves.values() for v in c.values() if math.isfinite(v)]
    span = (max(finite) - min(finite)) or 1.0 if finite else 1.0
    out: dict[str, str] = {}
    for i, (label, a) in enumerate(curves.items()):
        for earlier in list(curves)[:i]:
            b = curves[earlier]
            shared = {x for x in a if math.isfinite(a[x])}
            if (
                shared
                and shared == {x for x in b if math.isfinite(b[x])}
                and all(abs(a[x] - b[x]) <= tolerance * span for x in shared)
            ):
                out[label] = out.get(earlier, earlier)
                break
    return out


def _grid(count: int) -> tuple[int, int]:
    """(rows, columns) of ``count`` panels: two columns (one for a single panel)."""
    columns = min(2, count)
    return -(-count // columns), columns


def band_panels(
    panels: Sequence[Panel],
    path: Path,
    xlabel: str = "epoch",
    dpi: int = 80,
    title: str = "",
    width_in: float | None = None,
    quantity: str = "value",
) -> Path:
    """:func:`band_figure` saved to ``path``, in the format of its suffix (png, pdf, svg)."""
    plt = pyplot()
    font = _font(width_in)
    rc = {"font.size": font, "axes.labelsize": font, "xtick.labelsize": font - 1, "ytick.labelsize": font - 1}
    with plt.rc_context(rc):  # tick labels take their size when drawn: save inside the context
        band_figure(panels, xlabel, dpi, title, width_in, quantity).savefig(
            path, **(PNG if path.suffix == ".png" else {})
        )
    return path


def _font(width_in: float | None) -> float:
    """Font size (pt) of a band figure: 10 on screen; 8 at a paper's double-column width, 7 at a single one."""
    return 10.0 if width_in is None else 8.0 if width_in >= 5 else 7.0


def band_figure(
    panels: Sequence[Panel],
    xlabel: str = "epoch",
    dpi: int = 80,
    title: str = "",
    width_in: float | None = None,
    quantity: str = "value",
):
    """A Figure of panels in two columns, each with every label's mean line and shaded band; one legend below,
    whose title explains the edge markers drawn (a ``quantity`` of 0, NaN) and names coinciding curves;
    ``title`` above.

    Used by the comparison report for learning curves (x = epochs) and per-layer profiles (x = layer
    names, drawn as categories). On log axes, values <= 0 are marked with an x at the bottom edge; NaN or inf
    means with a triangle at the top edge. Every label has its own colour, line style and marker; a curve
    that coincides with an earlier one (:func:`coinciding`) gets larger hollow markers, so both stay visible.
    ``width_in`` (inches) sets a paper's column width (fonts of :func:`_font`, lines and markers thinner in
    proportion); without it the figure is 1000 px wide at ``dpi``.
    """
    from matplotlib.figure import Figure

    pyplot()  # the Agg backend
    rows, columns = _grid(len(panels))
    font = _font(width_in)
    width = 1000 / dpi if width_in is None else width_in
    panel_h, scale = (3.2, 1.0) if width_in is None else (width_in / columns * 0.7, font / 12)
    fig = Figure(figsize=(width, 1.0), dpi=dpi)
    axes = list(fig.subplots(rows, columns, squeeze=False).flat)
    marks: set[str] = set()
    on: dict[tuple[str, str], list[str]] = {}  # (label, the label it lies on) -> panels
    for ax, panel in zip(axes, panels):
        marks |= _band_panel(ax, panel, xlabel, on, scale)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    notes = [_marks_note(quantity, sorted(marks))] if marks else []
    notes += [f"{a} lies on {b} ({', '.join(where)})" for (a, b), where in on.items()]
    handles, labels = axes[0].get_legend_handles_labels()
    ncol = min(2 if font < 8 else 4, max(1, len(labels)))
    title = textwrap.fill(title, int(width * 72 / (0.6 * (font + 1))))
    layer_names = [_categories([b[0] for b in p.bands.values()]) for p in panels]
    rotated = max((max(map(len, n)) for n in layer_names if len(n) > 8), default=0)  # _layer_ticks turns them
    fits = int(panel_h * 72 / (0.6 * font))  # characters of a y label along its panel
    long = [ax for ax in axes if len(ax.get_ylabel()) > fits]
    for ax in long:
        ax.set_ylabel(textwrap.fill(ax.get_ylabel(), fits))
    lines = (title.count("\n") + 1 if title else 0, len(notes) + -(-len(labels) // ncol), 2 if long else 1)
    margins = _fixed_layout(fig, font, panel_h, (rows, columns), lines, 0.6 * (font - 1) * rotated)
    fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, margins[1]), ncol=ncol, fontsize=font - 1,
               frameon=False, title="\n".join(notes) or None, title_fontsize=font - 1)  # fmt: skip
    if title:
        fig.suptitle(title, fontsize=font + 1, y=margins[0], va="top")
    return fig


def _fixed_layout(
    fig, font: float, panel_h: float, grid: tuple[int, int], lines: tuple[int, int, int], rotated_pt: float
) -> tuple[float, float]:
    """Set the figure's height (``panel_h`` inches per row of panels) and its margins and gaps, in points from
    the font size (pt); ``lines``: of the title, the legend, the y labels. Left of each panel 7 characters of tick
    label and the y label; below each its tick labels (``rotated_pt`` more for turned layer names) and x label;
    the title above; the legend below.
    No layout engine: constrained layout took 40 % of a report figure's drawing time. Returns the figure
    fractions (title top, legend bottom)."""
    rows, columns = grid
    title_lines, legend_lines, ylabel_lines = lines
    line = 1.4 * font
    left, right = 0.6 * (font - 1) * 7 + ylabel_lines * line + 0.6 * font, font
    below = 3 * font + 12 + rotated_pt  # ticks and paddings 11 pt, tick labels and x label, the next row's top label
    top = title_lines * line + 0.6 * font if title_lines else font
    bottom = below + legend_lines * line + 0.6 * font
    width, height = fig.get_figwidth() * 72, top + rows * panel_h * 72 + (rows - 1) * below + bottom
    fig.set_figheight(height / 72)
    panel_w = (width - columns * left - right) / columns
    fig.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height,
                        wspace=left / panel_w, hspace=below / (panel_h * 72))  # fmt: skip
    return 1 - 0.3 * font / height, 0.3 * font / height


def _band_panel(ax, panel: Panel, xlabel: str, on: dict[tuple[str, str], list[str]], scale: float = 1.0) -> set[str]:
    """Draw ``panel`` into ``ax``, lines and markers ``scale`` x their screen size; adds each coinciding pair's
    panel to ``on``; returns the edge marks drawn."""
    names = _categories([b[0] for b in panel.bands.values()])
    finite = [v for b in panel.bands.values() for v in b[1] if math.isfinite(v)]
    # A log axis needs a positive value (every run diverged: all NaN): linear then, saying so.
    log = panel.yscale == "log" and any(v > 0 for v in finite)
    if not finite:
        ax.text(0.5, 0.5, "no finite values", transform=ax.transAxes, ha="center", va="center", color="0.4")
    lies_on = coinciding(panel.bands, log)
    marks: set[str] = set()
    for i, (label, (x, mean, lo, hi)) in enumerate(panel.bands.items()):
        categorical = bool(x) and isinstance(x[0], str)
        xs = [names.index(v) for v in x] if categorical else list(x)
        color = f"C{i % 10}"
        long_x = not categorical and epoch_scale(max(xs, default=0)) == "symlog"
        style: dict[str, Any] = dict(
            color=color,
            linestyle=_LINESTYLES[i % len(_LINESTYLES)],
            marker=_MARKERS[i % len(_MARKERS)],
            markevery=0.08 if long_x else max(1, len(xs) // 15),  # log x: evenly spaced on screen
            ms=5 * scale,
            lw=1.6 * scale,
            alpha=0.9,
            label=label,
        )
        if label in lies_on:  # hollow and larger by the place in its bundle: the marker beneath shows through
            depth = [k for k, v in lies_on.items() if v == lies_on[label]].index(label) + 1
            style.update(mfc="none", ms=(5 + 3 * depth) * scale, mew=1.2 * scale)
            on.setdefault((label, lies_on[label]), []).append(panel.ylabel)
        marks |= _log_line(ax, xs, mean, log=log, mark_ms=7 * scale, **style)
        if list(lo) != list(hi):  # a band of no width (one seed, or seeds that agree) is not drawn
            ax.fill_between(xs, _positive(lo) if log else lo, hi, color=color, alpha=0.2, linewidth=0)
    if names:
        _layer_ticks(ax, names)
    ax.set(xlabel=xlabel, ylabel=panel.ylabel, yscale="log" if log else "linear")
    if not names:
        _epoch_axis(ax, max((max(b[0], default=0) for b in panel.bands.values()), default=0))
    if log:
        _short_log_ticks(ax)
    if panel.ylim:
        ax.set_ylim(*panel.ylim)
    elif log:
        ax.set_ylim(*_log_limits(panel.bands.values()))
    ax.grid(alpha=0.3)
    return marks


def _log_limits(bands: Iterable[Band], reach: float = 10.0) -> tuple[float, float]:
    """y limits of a log panel: the positive means and bands, the bands reaching at most ``reach`` x beyond the
    means (a 95% interval over 2 seeds can span 16 decades; its band is then cut at the edge), 5% margins."""
    means = [v for b in bands for v in b[1] if 0 < v < math.inf]
    edges = [v for b in bands for v in (*b[2], *b[3]) if 0 < v < math.inf]
    low = max(min(means + edges), min(means) / reach)
    high = min(max(means + edges), max(means) * reach)
    margin = (high / low) ** 0.05
    return low / margin, high * margin


SPECTRUM_PNG = "isometry_spectrum.png"


def isometry_spectrum(values: Sequence[float], path: Path, bins: int = 40, title: str = "") -> Path:
    """Histogram of the hidden-to-hidden Jacobian's singular values at initialization (pooled over the
    samples), with a dashed line at 1, where all of them sit for an isometry; ``title`` names the run (wrapped
    to the figure's width, so a long run name is not cut off)."""
    spectrum_figure(values, bins, title).savefig(path, **PNG)
    return path


def spectrum_figure(values: Sequence[float], bins: int = 40, title: str = "") -> Any:
    """The figure of :func:`isometry_spectrum`."""
    from matplotlib.figure import Figure

    pyplot()  # the Agg backend
    width, font = 5.0, 9
    fig: Any = Figure(figsize=(width, 3.2), dpi=80)
    ax = fig.subplots()
    finite = [v for v in values if v == v and abs(v) != float("inf")]
    ax.hist(finite, bins=bins, color="C0")
    ax.axvline(1.0, color="k", linestyle="--", linewidth=1, label="isometry (1)")
    heading = f"{title}: hidden Jacobian spectrum" if title else "hidden Jacobian spectrum"
    ax.set_title(textwrap.fill(heading, int(0.9 * width * 72 / (0.6 * font))), fontsize=font)
    ax.set(xlabel="singular value of the hidden Jacobian d a_L / d a_1", ylabel="count")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
