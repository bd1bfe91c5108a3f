"""Print the summary table of the latest sweep in the MLflow store: the README's Quick start table.

    python train.py -m init=zeros,ones,normal,uniform   # (make sweep)
    python scripts/quickstart_table.py                  # the table, as the sweep printed it

The store: $MLFLOW_TRACKING_URI, else --tracking-uri, else sqlite:///mlruns/mlflow.db. With --readme FILE,
the table between the lines ``<!-- quickstart-table:begin -->`` and ``<!-- quickstart-table:end -->`` of
FILE is replaced by it (``--check``: exit 1 when they differ, write nothing).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

BEGIN, END = "<!-- quickstart-table:begin -->", "<!-- quickstart-table:end -->"


def between_markers(text: str) -> str:
    """The text between the Quick start markers, stripped (ValueError when the markers are missing)."""
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[start:end].strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", help="MLflow store (default: sqlite:///mlruns/mlflow.db)")
    parser.add_argument("--readme", type=Path, help="file whose marked table to update (or --check)")
    parser.add_argument("--check", action="store_true", help="with --readme: exit 1 when the table differs")
    args = parser.parse_args(argv)

    from initsweep.report import comparison as report
    from initsweep.tracking import client as tracking

    uri = tracking.resolve_uri(args.tracking_uri)
    client = tracking.connect(uri)
    parent = tracking.latest_sweep(client)
    if parent is None:
        print(f"quickstart_table: no sweep in {uri}; run `make sweep` first", file=sys.stderr)
        return 1
    table = report.summary_table(tracking.child_runs(client, parent.info.experiment_id, parent.info.run_id))
    if args.readme is None:
        print(table)
        return 0
    text = args.readme.read_text()
    current = between_markers(text)
    if args.check:
        if current != table:
            print(f"quickstart_table: {args.readme} differs from the latest sweep:\n{table}", file=sys.stderr)
            return 1
        return 0
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    args.readme.write_text(text[:start] + "\n" + table + "\n" + text[end:])
    print(f"updated {args.readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
