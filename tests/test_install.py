"""initsweep as an installed tool: a wheel built from this clone, installed into a bare directory, runs its
``initsweep`` command from a directory of the user's own, with the user's own config group option."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import ROOT, store_uri

PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]


def build_wheel(out: Path, work: Path) -> Path:
    """A wheel of this clone, built offline from a copy of its sources (no build/ or egg-info left in the
    clone); returns its path."""
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run(
        [*PIP, "wheel", "--no-deps", "--no-index", "--no-build-isolation", "-w", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob("initsweep-*.whl")
    return wheel


@pytest.mark.slow
def test_installed_wheel_runs_a_sweep_with_a_user_group_outside_the_clone(tmp_path: Path):
    wheel = build_wheel(tmp_path / "dist", tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {
        f"initsweep/conf/{p.relative_to(ROOT / 'src/initsweep/conf')}"
        for p in ROOT.glob("src/initsweep/conf/**/*.yaml")
    }
    assert "initsweep/conf/config.yaml" in shipped and shipped <= names, sorted(shipped - names)
    assert "hydra_plugins/initsweep_basic_sweeper/sweeper.py" in names

    target = tmp_path / "installed"
    subprocess.run(
        [*PIP, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)], check=True, timeout=300
    )
    work = tmp_path / "project"  # the user's own directory: neither the clone nor a parent of it
    (work / "conf" / "trainer").mkdir(parents=True)
    (work / "conf" / "trainer" / "quick.yaml").write_text("defaults:\n  - default\nepochs: 2\n")
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PYTHONPATH")}
    env["PYTHONPATH"] = str(target)  # ahead of the clone's editable install in site-packages

    where = subprocess.run(
        [sys.executable, "-c", "import initsweep; print(initsweep.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).resolve().is_relative_to(target.resolve()), where.stdout

    command = [str(target / "bin" / "initsweep"), "--config-dir", "conf", "-m", "trainer=quick"]
    proc = subprocess.run(
        [*command, "init=zeros,normal", "data=circles", "diagnostics.enabled=false"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    assert (work / "mlruns" / "mlflow.db").is_file()  # the default store: ./mlruns of the working directory
    (job,) = work.glob("multirun/*/*/0")
    assert (job / "train.log").is_file()  # the job log keeps its name under the installed command
    sources = OmegaConf.load(job / ".hydra" / "hydra.yaml").hydra.runtime.config_sources
    by_provider = {s.provider: Path(s.path) for s in sources}  # the groups the job was composed from
    assert by_provider["main"] == target.resolve() / "initsweep" / "conf"
    assert by_provider["command-line"] == (work / "conf").resolve()

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=store_uri(work))
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert [r.info.status for r in children] == ["FINISHED", "FINISHED"]
    assert sorted(r.data.params["trainer.epochs"] for r in children) == ["2", "2"]  # the user's trainer=quick
