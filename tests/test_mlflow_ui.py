"""`mlflow ui` on the project's store serves the sweep's runs (a real server on a loopback port)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from conftest import run_train

pytestmark = pytest.mark.slow


def _get(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"{}")


def test_mlflow_ui_serves_the_sweep(tmp_path: Path, mlflow_ui):
    assert run_train(["-m", "init=zeros,normal", "trainer.epochs=1"], cwd=tmp_path).returncode == 0
    base = mlflow_ui(tmp_path)
    exp = _get(f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=initsweep")["experiment"]
    runs = _get(f"{base}/api/2.0/mlflow/runs/search", {"experiment_ids": [exp["experiment_id"]]})["runs"]
    assert len(runs) == 3
    tags = [{t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs]
    children = [t for t in tags if "mlflow.parentRunId" in t]
    assert sorted(t["initsweep.init"] for t in children) == ["normal", "zeros"]
    child_id = next(r["info"]["run_id"] for r, t in zip(runs, tags) if "mlflow.parentRunId" in t)
    files = _get(f"{base}/api/2.0/mlflow/artifacts/list?run_id={child_id}").get("files", [])
    assert "learning_curves.png" in {f["path"] for f in files}
