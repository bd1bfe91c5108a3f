"""initsweep as an installed tool: a wheel built from this clone, installed into a bare directory, runs its
``initsweep`` command from a directory of the user's own, with the user's own config group option."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import ROOT, build_wheel, install_into, store_uri


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
    env = install_into(target, wheel)
    work = tmp_path / "project"  # the user's own directory: neither the clone nor a parent of it
    (work / "conf" / "trainer").mkdir(parents=True)
    (work / "conf" / "trainer" / "quick.yaml").write_text("defaults:\n  - default\nepochs: 2\n")

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
    assert by_provider["initsweep-user"] == (work / "conf").resolve()  # --config-dir: searched first

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=store_uri(work))
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert [r.info.status for r in children] == ["FINISHED", "FINISHED"]
    assert sorted(r.data.params["trainer.epochs"] for r in children) == ["2", "2"]  # the user's trainer=quick
