"""The benchmark script still runs (tiny mode); its figures are read by people, not asserted."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow


def test_bench_tiny_prints_every_case():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--tiny"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "case" not in line]
    assert [r.split("|")[1].strip()[:2] for r in rows] == ["a.", "c.", "f.", "g.", "g."]
    for row in rows:
        cells = [c.strip() for c in row.split("|")[1:-1]]
        assert cells[4] and cells[5] in ("yes", "no")  # every figure is printed with its goal
        if cells[3] != "-":
            assert float(cells[3]) > 0  # a ratio, not nan
