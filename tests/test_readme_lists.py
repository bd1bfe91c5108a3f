"""The README's lists of a child run's metrics and artifacts are what a real run logs: every name it gives
is logged, and every logged name is given (by name, or by a family such as `diag/*`)."""

from __future__ import annotations

import re
from fnmatch import fnmatch
from pathlib import Path

import pytest

from conftest import ROOT, all_runs, client_for, run_train

# Artifacts a run logs only sometimes: named in the README, absent from a plain finished run.
CONDITIONAL = {"checkpoint/model_state_dict.pt", "traceback.txt"}


def _readme_lists() -> tuple[set[str], set[str]]:
    """(metric names and families, artifact paths) of the README's child-run bullets."""
    text = (ROOT / "README.md").read_text()
    section = text.split("**The MLflow store**")[1].split("A single run")[0]
    bullets = re.split(r"\n- ", section)
    metrics_text = " ".join(b for b in bullets if b.startswith(("metrics", "at the end")))
    artifacts_text = next(b for b in bullets if b.startswith("artifacts"))
    names = set(re.findall(r"`([^`\s]+)`", metrics_text))
    metrics = {n for n in names if "/" in n and not n.endswith(".json")}
    return metrics, set(re.findall(r"`([^`\s]+)`", artifacts_text))


def _artifacts(client, run_id: str, path: str | None = None) -> set[str]:
    out: set[str] = set()
    for item in client.list_artifacts(run_id, path):
        out |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return out


@pytest.mark.slow
def test_readme_metric_and_artifact_lists_match_a_real_run(tmp_path: Path):
    proc = run_train(["trainer.epochs=2"], cwd=tmp_path)  # the defaults: diagnostics, figures, system metrics
    assert proc.returncode == 0, proc.stderr
    (run,) = all_runs(tmp_path)
    logged = set(run.data.metrics)
    metrics, artifacts = _readme_lists()
    missing = {m for m in metrics if not any(fnmatch(k, m) for k in logged)}
    assert not missing, f"the README names metrics a run does not log: {sorted(missing)}"
    unnamed = {k for k in logged if not any(fnmatch(k, m) for m in metrics)}
    assert not unnamed, f"a run logs metrics the README does not name: {sorted(unnamed)}"
    assert CONDITIONAL <= artifacts
    assert _artifacts(client_for(tmp_path), run.info.run_id) == artifacts - CONDITIONAL
