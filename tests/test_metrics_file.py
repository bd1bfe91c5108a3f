"""A job's local metrics file read back: only a run's own part of a reused file applies to it, and damaged lines
are skipped, never a crash (initsweep.tracking.metrics_file.read, initsweep.tracking.recovery.settle)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from initsweep.tracking import metrics_file as ledger
from initsweep.tracking import processes


def _write_run(path: Path, run_id: str, epochs: range, end: str | None) -> None:
    f = ledger.MetricsFile(path, run_id, "sqlite:///x")
    for e in epochs:
        f.metrics({"train/loss": 1.0 / e, "val/acc": 0.1 * e}, e, 1000 + e)
    if end:
        f.end(end)
    else:
        f._f.close()  # killed: no end line


def test_a_reused_file_gives_each_run_only_its_own_part(tmp_path: Path):
    path = tmp_path / "metrics.jsonl"
    _write_run(path, "first", range(1, 4), "FINISHED")
    _write_run(path, "second", range(1, 12), None)
    second = ledger.read(path, "second")
    assert second.run_id == "second" and second.end is None
    assert [step for step, _, _ in second.metrics] == list(range(1, 12))
    first = ledger.read(path, "first")
    assert first.end["end"] == "FINISHED" and [s for s, _, _ in first.metrics] == [1, 2, 3]
    assert ledger.read(path).run_id == "second"  # no run named: the last one
    assert ledger.read(path, "third") == ledger.Record()


def test_damaged_lines_are_skipped_and_numbered_the_good_ones_kept(tmp_path: Path):
    path = tmp_path / "metrics.jsonl"
    _write_run(path, "run", range(1, 3), None)
    with path.open("ab") as f:
        f.write(b"123\n")  # JSON, not an event
        f.write(b"\xff\xfe not utf-8\n")
        f.write(b'{"s": "x", "t": 1, "m": {"a": 1}}\n')  # a wrong type
        f.write(b'{"run_id": 7}\n')  # a header of the wrong shape
        f.write(b'{"s": 3, "t": 3, "m": {"train/loss": 0.3}}\n')
        f.write(b'{"s": 4, "t": 4, "m": {"train/lo')  # torn by a kill
    rec = ledger.read(path, "run")
    assert rec.skipped == [4, 5, 6, 7, 9]
    assert [step for step, _, _ in rec.metrics] == [1, 2, 3]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.slow
def test_recovery_closes_a_killed_run_of_a_reused_dir_with_its_own_epochs(tmp_path: Path, tmp_store: str):
    """The reproduction of a killed run in a reused run dir: the earlier run's FINISHED end and epochs never
    reach the killed run; a damaged line is said once and does not stop recovery."""
    from mlflow import MlflowClient

    from initsweep.protocol import Tag
    from initsweep.tracking import client as tracking
    from initsweep.tracking import recovery

    client = tracking.connect(tmp_store)
    exp = tracking.experiment_id(client, "reused")
    path = tmp_path / "out" / "metrics.jsonl"
    _write_run(path, "earlier-run", range(1, 4), "FINISHED")
    run = client.create_run(exp, tags={Tag.METRICS_FILE: str(path), Tag.HOST: processes.identity()["host"]})
    client.set_tag(run.info.run_id, Tag.PID, str(_dead_pid()))
    _write_run(path, run.info.run_id, range(1, 12), None)
    with path.open("a") as f:
        f.write("123\n")
    assert recovery.settle(client, MlflowClient(tmp_store).get_run(run.info.run_id)) == "KILLED"
    closed = client.get_run(run.info.run_id)
    assert closed.info.status == "KILLED" and closed.data.tags[Tag.FAILURE] == "lost"
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert sorted(m.step for m in history) == list(range(1, 12))  # each epoch once, none of the earlier run's
    assert "test/acc" not in closed.data.metrics
    assert os.path.exists(path)
