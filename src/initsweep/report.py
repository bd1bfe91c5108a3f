"""Comparison tables built from MLflow runs."""

from __future__ import annotations

from typing import Any, Sequence

# (column title, metric key, format)
SUMMARY_COLUMNS = (
    ("best val acc", "val/acc_best", "{:.3f}"),
    ("test acc", "test/acc", "{:.3f}"),
    ("epochs to 90% of best", "val/epochs_to_90pct", "{:.0f}"),
    ("final train loss", "train/loss_final", "{:.4g}"),
)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _job_order(run: Any) -> tuple[int, int]:
    num = run.data.tags.get("initsweep.job_num")
    return (int(num) if num is not None else 1 << 30, run.info.start_time or 0)


def summary_table(runs: Sequence[Any]) -> str:
    """One row per run (in job order): its name, the summary metrics, and its status."""
    rows = []
    for run in sorted(runs, key=_job_order):
        metrics = run.data.metrics
        cells = [run.info.run_name or run.info.run_id]
        cells += [fmt.format(metrics[key]) if key in metrics else "-" for _, key, fmt in SUMMARY_COLUMNS]
        failure = run.data.tags.get("failure")
        cells.append(f"{run.info.status} ({failure})" if failure else run.info.status)
        rows.append(cells)
    return markdown_table(["run", *(title for title, _, _ in SUMMARY_COLUMNS), "status"], rows)
