"""The shape of the code: the import graph's contracts (pyproject.toml [tool.importlinter]) and module size."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def test_import_contracts_hold():
    """No cycles; the training core imports nothing from tracking/tuning/sweeps/plugins; the plugin imports
    the package and never the reverse; a study's job side calls the job, never the reverse."""
    lint_imports = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run([str(lint_imports)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_no_module_is_over_about_400_lines():
    sizes = {p.relative_to(ROOT): len(p.read_text().splitlines()) for p in (ROOT / "src").rglob("*.py")}
    assert {str(p): n for p, n in sizes.items() if n > 450} == {}
