"""The README's Quick start table is what `make sweep` prints with the current code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_train, store_uri

pytestmark = pytest.mark.slow
QUICKSTART = ROOT / "scripts" / "quickstart_table.py"


def test_readme_quickstart_table_matches_a_fresh_sweep(tmp_path: Path):
    # `make sweep` as a reader runs it: torch's default of a thread per core (conftest sets one thread), since the
    # metrics' last digits depend on the thread count.
    cores = {"OMP_NUM_THREADS": str(os.cpu_count() or 1)}
    proc = run_train(["-m", "init=zeros,ones,normal,uniform"], cwd=tmp_path, env=cores, timeout=900)
    assert proc.returncode == 0, proc.stderr
    printed = subprocess.run(
        [sys.executable, str(QUICKSTART), "--tracking-uri", store_uri(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert printed in proc.stdout  # the script prints the table the sweep printed
    check_cmd = "python scripts/quickstart_table.py --readme README.md"
    from importlib import util

    spec = util.spec_from_file_location("quickstart_table", QUICKSTART)
    module = util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    readme = module.between_markers((ROOT / "README.md").read_text())
    assert readme == printed, f"README's Quick start table is stale; after `make sweep`, run `{check_cmd}`"
