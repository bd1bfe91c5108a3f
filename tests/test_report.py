"""The comparison report: statistics over seeds, grouping, and a real 2-initializer x 2-seed sweep."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import CONF, ROOT, all_runs, client_for, run_train, store_uri, train_env
from initsweep.report.comparison import (
    Estimate,
    comparison,
    comparison_table,
    estimate,
    group_of,
    mean_ci,
    short_labels,
)


def test_mean_ci_is_the_student_t_interval():
    est = mean_ci([1.0, 2.0, 3.0])
    # t_{0.975, 2} = 4.302652729911275; s = 1
    assert est.mean == 2.0 and est.n == 3
    assert est.half_width == pytest.approx(4.302652729911275 / math.sqrt(3))
    assert mean_ci([5.0]).n == 1 and math.isnan(mean_ci([5.0]).half_width)
    assert mean_ci([]).n == 0
    assert mean_ci([0.5, 0.5]).half_width == 0.0


def test_estimate_format():
    assert Estimate(0.91234, 0.0123, 3).format("{:.3f}") == "0.912 ± 0.012"
    assert Estimate(0.91234, math.nan, 1).format("{:.3f}") == "0.912"
    assert Estimate(math.nan, math.nan, 0).format("{:.3f}") == "-"
    assert Estimate(math.nan, math.nan, 0, never=3).format("{:.1f}") == "never (3)"
    assert Estimate(4.0, 1.0, 2, never=1).format("{:.1f}") == "4.0 ± 1.0 (never: 1)"
    diverged = [math.nan, math.nan, math.nan]  # a diverged group's final train loss is NaN, not "never"
    assert estimate("train/loss_final", diverged).format("{:.4g}") == "NaN (3)"
    assert estimate("train/loss_final", [0.5, math.nan]).format("{:.4g}") == "0.5 (NaN: 1)"


def _run(
    name: str,
    job: int,
    metrics: dict,
    group: str | None = None,
    status: str = "FINISHED",
    seed: int = 0,
    failure: str | None = None,
):
    tags = {"initsweep.job_num": str(job)}
    if failure is not None:
        tags["failure"] = failure
    if group is not None:
        tags["initsweep.group"] = group
    return SimpleNamespace(
        info=SimpleNamespace(run_name=name, run_id=f"id{job}", status=status, start_time=job),
        data=SimpleNamespace(tags=tags, metrics=metrics, params={"seed": str(seed)}),
    )


def test_groups_leave_out_the_seed_and_labels_drop_shared_overrides():
    assert group_of(_run("init=zeros lr=0.1 seed=3", 0, {})) == "init=zeros lr=0.1"
    assert group_of(_run("whatever seed=3", 0, {}, group="init=ones")) == "init=ones"
    labels = short_labels(["experiment=s init=zeros", "experiment=s init=ones"])
    assert labels == {"experiment=s init=zeros": "init=zeros", "experiment=s init=ones": "init=ones"}
    assert short_labels(["init=zeros"]) == {"init=zeros": "init=zeros"}


def test_comparison_uses_results_leaves_out_crashes_and_keeps_job_order():
    runs = [
        _run("b seed=0", 2, {"test/acc": 0.5}, "init=b", seed=0),
        _run("a seed=0", 0, {"test/acc": 0.2}, "init=a", seed=0),
        _run("a seed=1", 1, {"test/acc": 0.4}, "init=a", seed=1),
        _run("b seed=1", 3, {}, "init=b", status="FAILED", seed=1, failure="exception"),
        _run("c seed=0", 4, {"test/acc": 0.1}, "init=c", status="FAILED", seed=0, failure="diverged"),
    ]
    stats = comparison(runs, keys=["test/acc"])
    assert [g.label for g in stats] == ["init=a", "init=b", "init=c"]
    assert stats[0].estimates["test/acc"].mean == pytest.approx(0.3) and stats[0].seeds == ["0", "1"]
    assert stats[1].estimates["test/acc"].n == 1 and len(stats[1].runs) == 2
    assert stats[2].estimates["test/acc"].n == 1  # a diverged run is a result
    assert "| init=b | 1 (+1 crashed or killed) |" in comparison_table(comparison(runs))


def test_seed_study_overlay_sweeps_four_inits_times_three_seeds():
    from hydra import compose, initialize_config_dir

    from initsweep.sweep.callback import basic_jobs, job_configs

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["experiment=seed_study"], return_hydra_config=True)
        jobs = job_configs(cfg, basic_jobs(cfg))
    assert sorted((j["init"]["name"], j["seed"]) for j in jobs) == sorted(
        (i, s) for i in ("zeros", "ones", "normal", "uniform") for s in (0, 1, 2)
    )
    assert {j["experiment_name"] for j in jobs} == {"seed_study"}
    assert {j["data"]["name"] for j in jobs} == {"digits"}


def _table(markdown: str, first_header: str) -> list[list[str]]:
    """The rows (cells) of the Markdown table whose header starts with ``| first_header |``."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def _numbers(cell: str) -> tuple[float, float]:
    mean, half = (cell.split(" ± ") + ["nan"])[:2]
    return float(mean), float(half)


def _report_cli(directory: Path, *args: str, store: str | None = None) -> subprocess.CompletedProcess:
    """``scripts/report.py ARGS`` on the store under ``directory``."""
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "report.py"), *args, "--tracking-uri", store or store_uri(directory)],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
        env=train_env(),  # this checkout's initsweep, whatever the cwd
    )


@pytest.mark.slow
def test_report_of_an_experiment_of_several_architectures_has_a_section_each(tmp_path):
    quick = ["trainer.epochs=1", "model.width=8", "tracking.log_plots=false", "tracking.system_metrics=false"]
    result = run_train(["-m", "model=mlp,cnn,resmlp", "init=zeros,normal", *quick], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = _report_cli(tmp_path, "initsweep", "--out", "by_experiment")
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "by_experiment" / "report.md").read_text()
    sections = re.findall(r"^## Architecture: (\S+)$", text, re.MULTILINE)
    assert sections == ["mlp", "cnn", "resmlp"]
    for name, section in zip(sections, text.split("## Architecture: ")[1:]):
        # each its own configurations and figures; the layer profile names the architecture's own layers
        assert [r[0] for r in _table(section, "configuration")] == ["init=zeros", "init=normal"], name
        profile = _table(section.split("### Signal propagation")[1], "configuration")[1][2]
        assert ("conv1" in profile) == (name == "cnn") and profile.count("→") >= 2, (name, profile)
        for png in ("learning_curves.png", "init_signal.png"):
            assert f"]({name}_{png})" in section and (tmp_path / "by_experiment" / f"{name}_{png}").stat().st_size
    page = (tmp_path / "by_experiment" / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 6 and page.count("<h2>Architecture: ") == 3
    # requests that cannot be met: one line each, exit 2
    for args, store in ((["nosuch"], None), (["0" * 32], None), (["initsweep"], store_uri(tmp_path / "none"))):
        out = _report_cli(tmp_path, *args, store=store)
        assert out.returncode == 2 and out.stderr.startswith("initsweep: "), (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "none").exists()


@pytest.mark.slow
def test_report_of_a_two_by_two_sweep_matches_mlflow(tmp_path):
    from scipy.stats import t

    result = run_train(["-m", "init=zeros,normal", "seed=0,1", "trainer.epochs=2"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (report_md,) = tmp_path.glob("multirun/*/*/report/report.md")
    assert f"Report: {report_md.relative_to(tmp_path)}" in result.stdout
    text = report_md.read_text()
    for png in ("learning_curves.png", "init_signal.png"):
        assert (report_md.parent / png).stat().st_size > 1000 and f"]({png})" in text

    runs = all_runs(tmp_path)
    (parent,) = [r for r in runs if r.data.tags.get("initsweep.role") == "sweep"]
    jobs = [r for r in runs if r is not parent]
    assert (
        sorted(r.data.tags["initsweep.group"] for r in jobs)
        == ["init=normal trainer.epochs=2"] * 2 + ["init=zeros trainer.epochs=2"] * 2
    )

    rows = _table(text, "configuration")
    assert [(r[0], r[1]) for r in rows] == [("init=zeros", "2"), ("init=normal", "2")]
    columns = ["val/acc_best", "test/acc", "val/epochs_to_90pct", "train/loss_final"]
    for row in rows:
        members = [r for r in jobs if r.data.tags["initsweep.group"] == f"{row[0]} trainer.epochs=2"]
        assert sorted(r.data.params["seed"] for r in members) == ["0", "1"]
        for cell, key in zip(row[2:], columns):
            values = [r.data.metrics[key] for r in members]
            if all(math.isnan(v) for v in values):  # zeros never leaves chance: no learning speed
                assert cell == "never (2/2)", (row[0], key)
                continue
            if "epochs_to" in key:  # a speed: the median over seeds
                assert float(cell.split()[0]) == pytest.approx(sorted(values)[0] / 2 + sorted(values)[1] / 2), key
                continue
            mean = sum(values) / 2
            half = t.ppf(0.975, 1) * math.sqrt(sum((v - mean) ** 2 for v in values)) / math.sqrt(2)
            got_mean, got_half = _numbers(cell)
            assert got_mean == pytest.approx(mean, rel=5e-3, abs=5e-4), (row[0], key)
            assert got_half == pytest.approx(half, rel=5e-3, abs=5e-4), (row[0], key)

    # the init-time table: mean initial loss per configuration, read back from MLflow
    init_rows = _table(text.split("## Signal propagation")[1], "configuration")
    assert [r[0] for r in init_rows] == ["init=zeros", "init=normal"]
    for row in init_rows:
        members = [r for r in jobs if r.data.tags["initsweep.group"] == f"{row[0]} trainer.epochs=2"]
        loss = sum(r.data.metrics["diag/initial_loss"] for r in members) / 2
        assert _numbers(row[1])[0] == pytest.approx(loss, rel=5e-3)
    assert "symmetry not broken" in init_rows[0][3] and init_rows[1][3] == "-"

    client = client_for(tmp_path)
    logged = {Path(a.path).name for a in client.list_artifacts(parent.info.run_id, "report")}
    assert logged == {"report.md", "report.html", "learning_curves.png", "init_signal.png"}

    # the command line: by default the latest sweep, into its sweep dir; by experiment name, every job run
    def report_cli(*args: str) -> subprocess.CompletedProcess:
        return _report_cli(tmp_path, *args)

    report_md.unlink()
    out = report_cli()
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(report_md.relative_to(tmp_path)) and report_md.read_text() == text
    out = report_cli("initsweep", "--out", "by_experiment")
    assert out.returncode == 0, out.stderr
    assert _table((tmp_path / "by_experiment" / "report.md").read_text(), "configuration") == _table(
        text, "configuration"
    )
    assert re.search(
        r"Every job run of MLflow experiment `initsweep`", (tmp_path / "by_experiment" / "report.md").read_text()
    )


def test_the_edge_of_chaos_line_is_where_the_paper_puts_it():
    from initsweep.report.heatmap import critical_sigma_w2

    # Schoenholz et al. 2017, tanh: critical sigma_w2 1.00, 1.76, 2.29 for sigma_b2 0, 0.05, 0.2
    assert [round(critical_sigma_w2("tanh", b), 2) for b in (0.0, 0.05, 0.2)] == pytest.approx(
        [1.0, 1.76, 2.29], abs=0.01
    )


@pytest.mark.slow
def test_report_draws_a_metric_as_a_heatmap_over_two_swept_keys(tmp_path: Path):
    sweep = ["-m", "init=mean_field", "init.sigma_w2=0.5,2.0", "init.sigma_b2=0.0,0.05", "model.activation=tanh"]
    small = ["model.depth=3", "model.width=8", "trainer.epochs=1", "tracking.log_plots=false"]
    assert run_train([*sweep, *small], cwd=tmp_path, timeout=300).returncode == 0
    from initsweep.report.heatmap import grid

    runs = [r for r in all_runs(tmp_path) if "init.sigma_w2" in r.data.params]  # the jobs, not the parent
    g = grid(runs, "val/acc_best", "init.sigma_w2", "init.sigma_b2")
    assert (g.xs, g.ys, g.counts) == ([0.5, 2.0], [0.0, 0.05], [[1, 1], [1, 1]])
    by_cell = {(float(r.data.params["init.sigma_w2"]), float(r.data.params["init.sigma_b2"])): r for r in runs}
    assert g.values[1][0] == by_cell[(0.5, 0.05)].data.metrics["val/acc_best"]
    proc = _report_cli(tmp_path, "--heatmap", "val/acc_best", "--over", "init.sigma_w2", "init.sigma_b2", "--no-log")
    assert proc.returncode == 0, proc.stderr
    (path,) = [tmp_path / line for line in proc.stdout.splitlines() if "heatmap_val_acc_best" in line]
    assert path.is_file() and path.stat().st_size > 10_000 and path.parent.name == "report"  # the sweep's
    bad = _report_cli(tmp_path, "--heatmap", "val/acc_best", "--over", "model.nothing", "init.sigma_b2", "--no-log")
    assert bad.returncode == 2 and bad.stderr.startswith("initsweep: no run has numeric params model.nothing")


def test_a_loss_panel_of_runs_that_all_diverged_is_drawn_linear_and_says_so(tmp_path: Path):
    """Every loss NaN (a diverged run): a log axis has nothing to scale to (matplotlib raised)."""
    from initsweep.report.plots import Panel, band_panels

    nan = [math.nan, math.nan]
    panels = [
        Panel("val accuracy", {"init=normal": ([0, 1], [0.2, 0.1], [0.2, 0.1], [0.2, 0.1])}),
        Panel("train loss", {"init=normal": ([0, 1], nan, nan, nan)}, yscale="log"),
    ]
    path = band_panels(panels, tmp_path / "curves.png")
    assert path.is_file() and path.stat().st_size > 5_000
