"""Figures fit for a paper (issue 32): titles, the four learning-curve panels, coinciding curves, log-axis bands,
the loss-0 and NaN markers, run titles, tick labels of flat curves, and vector files at a column width."""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

import pytest

from conftest import ROOT, client_for, store_uri, train_history
from initsweep.report import plots
from initsweep.report.comparison import CURVE_PANELS, _bands_over
from initsweep.report.plots import Panel, band_figure, coinciding, distinct_digits


def _panels(series: dict[str, list[dict[int, dict[str, float]]]]) -> list[Panel]:
    """The report's learning-curve panels from per-label, per-seed histories ``{epoch: {metric: value}}``."""
    panels = []
    for key, name in CURVE_PANELS.items():
        log = key.endswith("loss")
        bands = {
            label: _bands_over([{e: m[key] for e, m in h.items()} for h in seeds], range(1, 5), log)
            for label, seeds in series.items()
        }
        panels.append(Panel(name, bands, "log" if log else "linear"))
    return panels


def _history(loss: list[float], acc: float, val_loss: list[float] | None = None) -> dict[int, dict[str, float]]:
    val = val_loss or loss
    return {
        e: {"train/loss": lo, "val/loss": v, "train/acc": acc, "val/acc": acc}
        for e, lo, v in zip(range(1, 5), loss, val)
    }


def test_log_bands_are_geometric_intervals_that_stay_positive_where_seeds_differ():
    """Two seeds a decade and more apart: the arithmetic interval went below 0 and its band vanished on the
    log axis; the geometric one is exp(mean ln v ± t s / sqrt n), positive, around the geometric mean."""
    seeds = [{1: 1.0, 2: 1e-3}, {1: 2.0, 2: 10.0}]
    xs, mean, lo, hi = _bands_over(seeds, [1, 2], log=True)
    assert xs == [1, 2] and mean[1] == pytest.approx(0.1)  # sqrt(1e-3 * 10)
    assert all(0 < lo_ < m < hi_ for lo_, m, hi_ in zip(lo, mean, hi))
    assert math.log(hi[1] / mean[1]) == pytest.approx(math.log(mean[1] / lo[1]))  # symmetric on the log axis
    assert _bands_over(seeds, [2])[2][0] < 0  # the arithmetic interval: no band on a log axis
    # every seed at loss 0: 0 (the bottom-edge marker); every seed NaN: NaN (the top-edge marker)
    _, mean, _, _ = _bands_over([{1: 0.0}, {1: 0.0}, {2: math.nan}], [1, 2], log=True)
    assert mean[0] == 0 and math.isnan(mean[1])


def test_coinciding_curves_are_found_on_linear_and_log_axes():
    flat = ([1, 2, 3], [2.30258, 2.30259, 2.30258], [], [])
    bands = {
        "zeros": flat,
        "ones": ([1, 2, 3], [2.30259, 2.30258, 2.30259], [], []),
        "normal": ([1, 2, 3], [1.0, 0.1, 0.01], [], []),
        "also": flat,
    }
    assert coinciding(bands, log=True) == {"ones": "zeros", "also": "zeros"}
    # a curve with a value where the other has none (a loss of 0 on a log axis) does not lie on it
    assert coinciding({"a": ([1, 2], [0.0, 1.0], [], []), "b": ([1, 2], [2.0, 1.0], [], [])}, log=True) == {}


def test_distinct_digits_keep_the_tick_labels_of_a_flat_curve_apart():
    assert distinct_digits([0.1, 1.0, 10.0]) == 4
    assert distinct_digits([2.3025, 2.30252, 2.30254, 2.30256]) == 6
    assert {f"{v:.{distinct_digits([2.302552, 2.302554])}g}" for v in (2.302552, 2.302554)} == {"2.302552", "2.302554"}


def test_the_comparison_figure_has_a_title_four_panels_distinct_coinciding_curves_and_its_markers_explained(
    tmp_path: Path,
):
    flat = _history([2.3026] * 4, 0.1)
    series = {
        "init=zeros": [flat, flat],
        "init=ones": [flat, flat],
        "init=normal": [_history([1.0, 0.1, 1e-3, 0.0], 0.9), _history([2.0, 10.0, 1e-2, 0.0], 0.8)],
        "init=huge": [_history([5.0, math.nan, math.nan, math.nan], 0.1)] * 2,
    }
    fig = band_figure(_panels(series), title="sweep init=zeros,ones: learning curves", quantity="loss")
    assert fig.get_suptitle() == "sweep init=zeros,ones: learning curves"
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_ylabel() for ax in axes] == ["train loss", "val loss", "train accuracy", "val accuracy"]
    assert [ax.get_yscale() for ax in axes] == ["log", "log", "linear", "linear"]
    zeros, ones = (
        next(line for line in axes[0].lines if line.get_label() == lab) for lab in ("init=zeros", "init=ones")
    )
    assert zeros.get_linestyle() != ones.get_linestyle() and zeros.get_marker() != ones.get_marker()
    assert ones.get_markerfacecolor() == "none" and ones.get_markersize() > zeros.get_markersize()
    note = fig.legends[0].get_title().get_text()
    assert "x at the bottom edge: loss 0" in note and "triangle at the top edge: loss NaN or inf" in note
    assert "init=ones lies on init=zeros (train loss, val loss, train accuracy, val accuracy)" in note
    assert "init=normal" not in note  # it lies on nothing
    # the only band with a width: init=normal's, whose seeds differ by a decade, on the log axis at every epoch
    (collection,) = axes[0].collections
    band = collection.get_paths()[0].vertices
    assert band.shape[0] >= 8 and (band[:, 1] > 0).all() and math.isfinite(band[:, 1].max())
    # at a double column's width as SVG: 7 in = 504 pt
    path = plots.band_panels(_panels(series), tmp_path / "curves.svg", width_in=7.0)
    assert _width_pt(path) == 504.0


def test_run_figures_name_their_run_and_label_the_ticks_of_a_flat_curve_apart(tmp_path: Path):
    points = [plots.Point(e, 2.30255 - 1e-5 * e, 0.1, 2.30258 + 1e-5 * (e % 2), 0.1) for e in range(1, 7)]
    plots.learning_curves(points, (2.30259, 0.1), tmp_path / "curves.png", "init=zeros seed=0")
    fig, (ax_loss, _), suptitle = plots._CANVASES[("learning_curves", "linear")]
    assert suptitle.get_text() == "init=zeros seed=0"
    fig.draw_without_rendering()
    shown = [t.get_text() for t in ax_loss.get_yticklabels(which="both") if t.get_text()]
    assert len(shown) >= 3 and len(set(shown)) == len(shown), shown
    assert ax_loss.yaxis.label.get_window_extent().x0 >= 0  # the y label is inside the figure, not cut
    plots.signal_propagation([("epoch 0", ["fc1", "out"], [1.0, 0.0], [0.1, 0.2])], tmp_path / "s.png", "init=ones")
    assert plots._CANVASES[("signal_propagation", False)][2].get_text() == "init=ones"


def test_log_x_labels_of_a_range_within_a_decade_do_not_overlap():
    """Optuna's slice plot of a log-scale parameter labelled every minor tick (3x10^-2, 4x10^-2, ...)."""
    from matplotlib.figure import Figure

    ax = Figure(figsize=(5.5, 4.5), dpi=100).subplots()
    ax.scatter([0.0297, 0.08, 0.125, 0.176, 0.307], [1.6, 0.25, 0.18, 0.25, 1.2])
    ax.set_xscale("log")
    plots.readable_log_x(ax)
    ax.figure.draw_without_rendering()
    low, high = ax.get_xlim()
    labels = [t for t in ax.get_xticklabels(which="both") if t.get_text() and low <= t.get_position()[0] <= high]
    boxes = sorted((t.get_window_extent().x0, t.get_window_extent().x1) for t in labels)
    assert [t.get_text() for t in labels] == ["0.05", "0.1", "0.2"]
    assert all(a[1] < b[0] for a, b in zip(boxes, boxes[1:]))


def _report_script():
    spec = importlib.util.spec_from_file_location("report_script", ROOT / "scripts" / "report.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_report_format_writes_vector_figures_at_a_column_width(tmp_path: Path):
    """Real trainings (zeros, normal; 2 seeds) logged to a real store; ``--format pdf --column single`` writes
    each comparison figure as a 3.5 in wide PDF beside the report's PNGs."""
    from mlflow.entities import Metric, Param

    client = client_for(tmp_path)
    exp = client.create_experiment("figures")
    parent = client.create_run(exp, run_name="sweep init=zeros,normal").info.run_id
    for init in ("zeros", "normal"):
        for seed in (0, 1):
            run = client.create_run(exp, run_name=f"init={init} seed={seed}", tags={"mlflow.parentRunId": parent})
            history = train_history(
                [f"init={init}", f"seed={seed}", "trainer.epochs=2", "model.width=16", "trainer.threads=1"]
            )
            values = [(k, getattr(h, f)) for h in history for k, f in (("train/loss", "train_loss"),
                      ("val/loss", "val_loss"), ("train/acc", "train_acc"), ("val/acc", "val_acc"))]  # fmt: skip
            steps = [h.epoch for h in history for _ in range(4)]
            metrics = [Metric(k, v, 0, step) for (k, v), step in zip(values, steps)]
            client.log_batch(run.info.run_id, metrics=metrics, params=[Param("seed", str(seed))])
            client.set_terminated(run.info.run_id)
    out = tmp_path / "report"
    args = [
        "--tracking-uri",
        store_uri(tmp_path),
        "--out",
        str(out),
        "--no-log",
        "--format",
        "pdf",
        "--column",
        "single",
    ]
    assert _report_script().main([parent, *args]) == 0
    assert "](learning_curves.png)" in (out / "report.md").read_text() and (out / "learning_curves.png").is_file()
    assert _width_pt(out / "learning_curves.pdf") == 252.0  # 3.5 in


def _width_pt(path: Path) -> float:
    """The page width of a PDF or SVG file, in points (1/72 in)."""
    text = path.read_bytes().decode("latin-1")
    found = re.search(r'<svg[^>]* width="([\d.]+)pt"', text) or re.search(r"/MediaBox \[ *0 0 ([\d.]+)", text)
    assert found, path
    return float(found[1])
