"""The README's lists of a child run's metrics and artifacts are what a real run logs: every name it gives
is logged, and every logged name is given (by name, or by a family such as `diag/*`). The same run checks the
metric names of every page in docs/: each is logged, a column of the per-layer table, or logged only by some
runs (CONDITIONAL_METRICS); and each logged metric is named somewhere in docs/."""

from __future__ import annotations

import json
import re
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, all_runs, client_for, run_train

# Artifacts a run logs only sometimes: named in the README, absent from a plain finished run.
CONDITIONAL = {"checkpoint/model_state_dict.pt", "traceback.txt"}
# Metric-like names the docs give that a default run does not log, and where they are logged.
CONDITIONAL_METRICS = {
    "diag/saturated_frac": "a table column of tanh and sigmoid nets",
    "diag/hidden_crop": "conv nets whose hidden Jacobian is measured on a crop",
    "diag/meanfield_q_star": "init=mean_field",
    "diag/chi1": "init=mean_field",
    "diag/xi_c": "init=mean_field",
    "diag/warning": "a tag, on runs whose initialization looks broken",
    "system/gpu_*": "runs on a GPU with nvidia-ml-py",
}
# A metric name in a Markdown code span: `val/acc_best`, `diag/hidden_sv_*`, `diag/<stat>`.
METRIC_NAME = re.compile(r"^(?:train|val|test|time|diag|init|system)/[\w*<>./]+$")
FILE_NAME = re.compile(r"\.(?:ya?ml|json|png|py|md|txt|pt)$")


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


def doc_metric_names(text: str) -> set[str]:
    """The metric names in the code spans of a Markdown text (fenced blocks left out), as fnmatch patterns:
    a placeholder such as `<layer>` becomes `*`."""
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    words = (w for span in re.findall(r"`([^`\n]+)`", prose) for w in re.split(r"[\s,]+", span))
    return {re.sub(r"<[^>]+>", "*", w) for w in words if METRIC_NAME.match(w) and not FILE_NAME.search(w)}


def _artifacts(client, run_id: str, path: str | None = None) -> set[str]:
    out: set[str] = set()
    for item in client.list_artifacts(run_id, path):
        out |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return out


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Path]:
    """(client, run, store dir) of one default single run: diagnostics, figures, system metrics."""
    directory = tmp_path_factory.mktemp("readme_run")
    proc = run_train(["trainer.epochs=2"], cwd=directory)
    assert proc.returncode == 0, proc.stderr
    (run,) = all_runs(directory)
    return client_for(directory), run, directory


def test_doc_metric_names_reads_code_spans_only():
    text = "`val/acc_best`, `diag/<layer>/x`, `init/n.yaml` and `a/b`\n```\n`train/loss`\n```\ntrain/acc in prose"
    assert doc_metric_names(text) == {"val/acc_best", "diag/*/x"}


@pytest.mark.slow
def test_readme_metric_and_artifact_lists_match_a_real_run(default_run):
    client, run, _ = default_run
    logged = set(run.data.metrics)
    metrics, artifacts = _readme_lists()
    missing = {m for m in metrics if not any(fnmatch(k, m) for k in logged)}
    assert not missing, f"the README names metrics a run does not log: {sorted(missing)}"
    unnamed = {k for k in logged if not any(fnmatch(k, m) for m in metrics)}
    assert not unnamed, f"a run logs metrics the README does not name: {sorted(unnamed)}"
    assert CONDITIONAL <= artifacts
    assert _artifacts(client, run.info.run_id) == artifacts - CONDITIONAL


@pytest.mark.slow
def test_every_metric_name_in_the_docs_is_logged_and_every_logged_metric_is_named(default_run):
    client, run, directory = default_run
    table = json.loads(
        Path(client.download_artifacts(run.info.run_id, "layers/step_0000.json", str(directory))).read_text()
    )
    known = set(run.data.metrics) | set(table["columns"]) | set(CONDITIONAL_METRICS)
    named: set[str] = set()
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        names = doc_metric_names(page.read_text())
        unknown = {n for n in names if not any(fnmatch(k, n) for k in known)}
        assert not unknown, f"{page.name} names metrics a run neither logs nor has as a layer-table column: {unknown}"
        named |= names if page.parent.name == "docs" else set()
    unnamed = {k for k in run.data.metrics if not any(fnmatch(k, n) for n in named)}
    assert not unnamed, f"docs/ names none of these logged metrics: {sorted(unnamed)}"
