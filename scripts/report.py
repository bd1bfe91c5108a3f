"""Write the comparison report of a sweep (or of a whole experiment) from the MLflow store.

    python scripts/report.py                  # the latest sweep of the store
    python scripts/report.py PARENT_RUN_ID    # that sweep
    python scripts/report.py EXPERIMENT_NAME  # every job run of that experiment, across sweeps
    python scripts/report.py --heatmap val/acc_best --over init.sigma_w2 init.sigma_b2   # also a heatmap
    python scripts/report.py mup_transfer --lr-transfer      # also the loss against lr per width
    python scripts/report.py --format pdf --column single   # also vector figures, 3.5 in wide

A sweep's report goes to <sweep dir>/report/ (or reports/<run id>/ when the sweep dir is not here) and is
logged to the parent run under report/; an experiment's goes to reports/<experiment>/. --out overrides
the directory. The store: $MLFLOW_TRACKING_URI, else --tracking-uri, else sqlite:///mlruns/mlflow.db.
Runs of several architectures (param model.name) get a section each. --heatmap METRIC --over X Y also draws
METRIC as a heatmap over the params X and Y (initsweep.report.heatmap: the mean over seeds; with the
mean-field χ1 = 1 and 6 ξ_c = depth when they are init.sigma_w2 and init.sigma_b2). --lr-transfer [METRIC]
(default train/loss_final) draws METRIC against trainer.lr, a line per model.width, a panel per
parametrization, and prints each width's best lr (initsweep.report.lr_transfer). --format pdf|svg also
writes each comparison figure as a vector file at a paper's column width (--column single: 3.5 in, double: 7 in;
docs/figures.md); the report pages keep their PNGs. A request that cannot be met (no
store, no such run or experiment, nothing to report) is one `initsweep:` line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

COLUMN_IN = {"single": 3.5, "double": 7.0}  # a paper's column widths, inches (two-column journals and proceedings)


class Impossible(Exception):
    """A request the store cannot answer: its message is the one line printed."""


def main(argv: list[str] | None = None) -> int:
    try:
        return report(argv)
    except Impossible as e:
        print(f"initsweep: {e}", file=sys.stderr)
        return 2


def report(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", nargs="?", help="parent run id or experiment name (default: the latest sweep)")
    parser.add_argument("--out", type=Path, help="directory to write report.md and its PNGs into")
    parser.add_argument("--tracking-uri", help="MLflow store (default: sqlite:///mlruns/mlflow.db)")
    parser.add_argument("--trials", action="store_true", help="with an experiment name: include Optuna trials")
    parser.add_argument("--no-log", action="store_true", help="do not log the report to the parent run")
    parser.add_argument("--heatmap", metavar="METRIC", help="also draw METRIC as a heatmap over the --over keys")
    parser.add_argument("--over", nargs=2, metavar=("X", "Y"), help="the two swept params of the heatmap")
    parser.add_argument(
        "--lr-transfer", nargs="?", const="train/loss_final", metavar="METRIC", help="also METRIC against lr per width"
    )
    parser.add_argument("--format", choices=("png", "pdf", "svg"), default="png", help="pdf, svg: also vector figures")
    parser.add_argument("--column", choices=tuple(COLUMN_IN), default="double", help="vector figure width: 3.5 or 7 in")
    args = parser.parse_args(argv)
    if bool(args.heatmap) != bool(args.over):
        raise Impossible("--heatmap METRIC and --over X Y go together")

    from initsweep.report import comparison as report
    from initsweep.tracking import client as tracking

    uri = tracking.resolve_uri(args.tracking_uri)
    db = tracking.sqlite_path(uri)
    if db is not None and not db.exists():  # reading must not create an empty store
        raise Impossible(f"no MLflow store at {db.absolute()}: pass --tracking-uri, or run where train.py ran")
    try:
        client = tracking.connect(uri)
    except tracking.TrackingError as e:
        raise Impossible(str(e)) from None
    parent = None
    if args.target is None:
        parent = tracking.latest_sweep(client)
        if parent is None:
            raise Impossible(f"no sweep in {uri}; run `python train.py -m ...` first")
    elif re.fullmatch(r"[0-9a-f]{32}", args.target):
        parent = tracking.find_run(client, args.target)
        if parent is None:
            raise Impossible(f"no run {args.target} in {uri}")

    if parent is not None:
        runs = tracking.child_runs(client, parent.info.experiment_id, parent.info.run_id)
        if not runs:
            raise Impossible(f"run {parent.info.run_id} has no child runs (is it a sweep's parent run?)")
        sweep_dir = parent.data.params.get("sweep_dir")
        local = sweep_dir if sweep_dir and Path(sweep_dir).is_dir() else None
        out = args.out or (Path(local) / "report" if local else Path("reports") / parent.info.run_id)
        experiment = client.get_experiment(parent.info.experiment_id).name
        title, source = report.sweep_heading(parent.info.run_name, parent.info.run_id, experiment, sweep_dir)
    else:
        runs = tracking.job_runs(client, args.target, trials=args.trials)
        if runs is None:
            names = ", ".join(map(repr, tracking.experiment_names(client))) or "none"
            raise Impossible(
                f"{args.target!r} is neither a run id nor an experiment name in {uri}; experiments: {names}"
            )
        if not runs:
            raise Impossible(
                f"experiment {args.target!r} has no job runs" + ("" if args.trials else " (--trials: its trials)")
            )
        out = args.out or Path("reports") / args.target
        title, source = f"Report: experiment {args.target}", f"Every job run of MLflow experiment `{args.target}`."

    vector = None if args.format == "png" else args.format
    figures = report.Figures(vector=vector, width_in=COLUMN_IN[args.column])
    written = report.write_report(client, runs, out, title, source, figures)
    if args.heatmap:
        written.append(_heatmap(runs, args.heatmap, *args.over, out, title))
    if args.lr_transfer:
        written.append(_lr_transfer(runs, args.lr_transfer, out, title))
    if parent is not None and not args.no_log:
        logger = tracking.RunLogger(client, parent.info.run_id)
        for path in written:
            logger.log_artifact(path, "report")
    print(written[0])
    return 0


def _heatmap(runs: list, metric: str, x_key: str, y_key: str, out: Path, title: str) -> Path:
    from initsweep.report import heatmap

    try:
        g = heatmap.grid(runs, metric, x_key, y_key)
    except heatmap.HeatmapError as e:
        raise Impossible(str(e)) from None
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"heatmap_{metric}_{x_key}_{y_key}")
    path = heatmap.draw(g, out / f"{name}.png", f"{title}: {metric}", runs)
    print(path)
    return path


def _lr_transfer(runs: list, metric: str, out: Path, title: str) -> Path:
    from initsweep.report import heatmap, lr_transfer

    try:
        ts = lr_transfer.transfers(runs, metric)
    except heatmap.HeatmapError as e:
        raise Impossible(str(e)) from None
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"lr_transfer_{metric}")
    path = lr_transfer.draw(ts, out / f"{name}.png", f"{title}: {metric}")
    print(lr_transfer.table(ts))
    print(path)
    return path


if __name__ == "__main__":
    raise SystemExit(main())
