"""`mlflow ui` on the project's store serves the sweep's runs (a real server on a loopback port)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import run_train, store_uri

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"{}")


def test_mlflow_ui_serves_the_sweep(tmp_path: Path):
    assert run_train(["-m", "init=zeros,normal", "trainer.epochs=1"], cwd=tmp_path).returncode == 0
    port = _free_port()
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    server = subprocess.Popen(
        [str(mlflow_cli), "ui", "--backend-store-uri", store_uri(tmp_path), "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if urllib.request.urlopen(f"{base}/health", timeout=2).status == 200:
                    break
            except OSError:
                pass
            assert server.poll() is None, "mlflow ui exited"
            assert time.monotonic() < deadline, "mlflow ui did not answer in time"
            time.sleep(0.5)
        exp = _get(f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=initsweep")["experiment"]
        runs = _get(f"{base}/api/2.0/mlflow/runs/search", {"experiment_ids": [exp["experiment_id"]]})["runs"]
        assert len(runs) == 3
        tags = [{t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs]
        children = [t for t in tags if "mlflow.parentRunId" in t]
        assert sorted(t["initsweep.init"] for t in children) == ["normal", "zeros"]
        child_id = next(r["info"]["run_id"] for r, t in zip(runs, tags) if "mlflow.parentRunId" in t)
        files = _get(f"{base}/api/2.0/mlflow/artifacts/list?run_id={child_id}").get("files", [])
        assert "learning_curves.png" in {f["path"] for f in files}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
