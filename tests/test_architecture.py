"""The shape of the code: the import graph's contracts (pyproject.toml [tool.importlinter]) and function
complexity."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT


@pytest.mark.slow
def test_import_contracts_hold():
    """No cycles; the training core imports nothing from tracking/tuning/sweeps/plugins; the plugin imports
    the package and never the reverse; a study's job side calls the job, never the reverse."""
    lint_imports = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run([str(lint_imports)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


@pytest.mark.slow
def test_no_function_is_above_complexity_12():
    """McCabe complexity (ruff C901, configured in pyproject.toml) at most 12 in src/."""
    ruff = Path(sys.executable).parent / "ruff"
    out = subprocess.run(
        [str(ruff), "check", "--select", "C901", "--quiet", "src"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and "C901" not in out.stdout, out.stdout


PRIVATE_USE = re.compile(
    r"^\s*(from|import) (hydra|optuna|mlflow|submitit)\.\S*\._[a-z]"  # a private module of those libraries
    r"|\b(hydra|optuna|mlflow|submitit)\.\S*\._[a-z]\w* import"
    r"|\.(_storage|_trial_id|_contains|_apply_overrides_to_config|_run_exitfuncs|_shutdown|_registered|_info_dict)\b"
    r"|\b(threading|atexit|sys|os|signal)\._(?!exit\b)[a-z]",
)


def test_no_private_name_of_another_library_outside_compat():
    """Only initsweep._compat uses private names of hydra, optuna, mlflow, submitit and the standard library."""
    found = [
        f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
        for p in (ROOT / "src").rglob("*.py")
        if "_compat" not in p.parts
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if PRIVATE_USE.search(line)
    ]
    assert found == []


def test_readme_layout_lists_every_package_in_layer_order():
    """The README's layout names each package of src/initsweep/ once, top layer first, as pyproject's
    layers contract orders them."""
    import tomllib

    text = (ROOT / "README.md").read_text()
    block = text[text.index("src/initsweep/ ") : text.index("src/hydra_plugins/")]
    listed = [m.group(1).rstrip("/").removesuffix(".py") for m in re.finditer(r"^  (\S+)", block, re.M)]
    src = ROOT / "src" / "initsweep"
    present = {p.name for p in src.iterdir() if (p / "__init__.py").exists()}
    present |= {p.stem for p in src.glob("*.py") if p.name not in ("__init__.py", "__main__.py")}  # no layers
    assert sorted(listed) == sorted(present)
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (layers,) = [c["layers"] for c in contracts if c["type"] == "layers"]
    assert listed == layers


def test_every_package_says_what_it_owns_and_may_import():
    src = ROOT / "src" / "initsweep"
    for init in src.glob("*/__init__.py"):
        doc = init.read_text()
        assert doc.startswith('"""'), init
        if init.parent.name not in ("cli", "_compat"):
            assert "May import" in doc, init
