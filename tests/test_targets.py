"""A config's ``_target_`` runs only the code its user named, and reading runs back runs none.

Each test writes a module whose import leaves a marker file (its side effect) and puts it on the path: a
``_target_`` that names no such module or name is refused before anything is imported; one that does
imports that module only; reading runs whose params and config name it (``initsweep.results``, the
comparison report of scripts/report.py) never imports it.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conftest import ROOT, run_train, store_uri, train_env
from initsweep.core.targets import TargetNotFound, load_callable, locate


@pytest.fixture
def side_effect_module(tmp_path, monkeypatch) -> tuple[str, Path, Path]:
    """(name, the folder holding it, the marker file its import writes) of a new module on sys.path."""
    name = f"sidefx_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "pkgs"
    folder.mkdir()
    marker = tmp_path / "imported.marker"
    (folder / f"{name}.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n\n\n"
        "def fill_(tensor, scale=1.0):\n    tensor.data.fill_(0.01 * scale)\n\n\n"
        "class Net:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(folder))
    return name, folder, marker


def test_a_name_its_module_does_not_define_is_refused_without_importing_it(side_effect_module):
    name, _, marker = side_effect_module
    with pytest.raises(ValueError, match=rf"init\._target_ = '{name}\.nothing': .*has no submodule or name 'nothing'"):
        load_callable(f"{name}.nothing", "init._target_", "fn(tensor, **kwargs)")
    assert not marker.exists()
    assert name not in sys.modules


def test_a_missing_module_is_refused_before_anything_is_imported(side_effect_module):
    name, _, marker = side_effect_module
    before = set(sys.modules)
    with pytest.raises(
        ValueError, match=r"data\._target_ = 'no_such_pkg_x1\.sub\.fn': .*no module named 'no_such_pkg_x1'"
    ):
        load_callable("no_such_pkg_x1.sub.fn", "data._target_", "returning (x, y)")
    with pytest.raises(TargetNotFound, match=rf"module '{name}' has no submodule or name 'sub'"):
        locate(f"{name}.sub.fn")  # a plain module has no submodules: its source is read, not run
    assert set(sys.modules) == before and not marker.exists()


def test_a_named_existing_target_imports_its_module_and_only_it(side_effect_module):
    name, _, marker = side_effect_module
    assert locate(f"{name}.fill_") == (name, ["fill_"])
    assert not marker.exists()  # found on disk, not imported
    fn = load_callable(f"{name}.fill_", "init._target_", "fn(tensor, **kwargs)")
    assert fn.__name__ == "fill_" and marker.read_text() == "imported"  # naming it runs its import code


@pytest.mark.parametrize(
    "path, module",
    [
        ("torch.nn.init.orthogonal_", "torch.nn.init"),
        ("torch.nn.Linear", "torch.nn"),  # a package's name from a star import: imported to look
        ("initsweep.core.initializers.catalogue.SCHEMES", "initsweep.core.initializers.catalogue"),
        ("os.path.join", "os.path"),
    ],
)
def test_targets_in_packages_are_found_at_their_module(path: str, module: str):
    assert locate(path)[0] == module


@pytest.mark.slow
def test_the_command_line_refuses_a_target_that_names_nothing_before_importing_it(side_effect_module, tmp_path):
    name, folder, marker = side_effect_module
    proc = run_train(
        ["init=custom", f"init._target_={name}.nothing", "trainer.epochs=1"],
        cwd=tmp_path,
        env={"PYTHONPATH": f"{folder}:{ROOT / 'src'}"},
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"init._target_ = '{name}.nothing'" in proc.stderr and "has no submodule or name" in proc.stderr
    assert not marker.exists()


def _store_with_runs_naming(module: str, directory: Path) -> tuple[str, str]:
    """A sqlite store under ``directory`` with a finished sweep (parent + 2 child runs) whose params, tags and
    ``config.yaml`` name ``module`` in every ``_target_``; returns (uri, parent run id)."""
    from mlflow import MlflowClient

    uri = store_uri(directory)
    (directory / "mlruns").mkdir(exist_ok=True)
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("targets")
    parent = client.create_run(exp, run_name="sweep init=custom", tags={"initsweep.sweep_id": "s1"})
    for seed in (0, 1):
        run = client.create_run(
            exp,
            run_name=f"init=custom seed={seed}",
            tags={
                "mlflow.parentRunId": parent.info.run_id,
                "initsweep.init": "custom",
                "initsweep.sweep_id": "s1",
                "initsweep.group": f"model={module}.Net init._target_={module}.fill_",
                "initsweep.overrides": f"init._target_={module}.fill_ seed={seed}",
            },
        )
        rid = run.info.run_id
        params = {"model._target_": f"{module}.Net", "init._target_": f"{module}.fill_"}
        for key, value in {**params, "data._target_": f"{module}.Net", "seed": str(seed)}.items():
            client.log_param(rid, key, value)
        for step, acc in enumerate((0.5, 0.8)):
            client.log_metric(rid, "val/acc", acc, step=step)
        for key, value in {"val/acc_best": 0.8, "test/acc": 0.7 + seed / 100, "val/loss_best": 0.5}.items():
            client.log_metric(rid, key, value)
        client.log_text(rid, f"model:\n  _target_: {module}.Net\ninit:\n  _target_: {module}.fill_\n", "config.yaml")
        client.set_terminated(rid)
    client.set_terminated(parent.info.run_id)
    return uri, parent.info.run_id


@pytest.mark.slow
def test_reading_runs_back_never_imports_a_target_they_name(side_effect_module, tmp_path):
    import initsweep

    name, folder, marker = side_effect_module
    uri, parent = _store_with_runs_naming(name, tmp_path)
    frame = initsweep.results("targets", tracking_uri=uri)
    assert set(frame["model._target_"].dropna()) == {f"{name}.Net"}
    assert len(initsweep.curves("targets", tracking_uri=uri)) > 0
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "report.py"), parent, "--tracking-uri", uri, "--out", str(out)],
        cwd=tmp_path,
        env=train_env({"PYTHONPATH": f"{folder}:{ROOT / 'src'}"}),  # the module is importable there too
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "report.md").exists() and f"{name}" in (out / "report.md").read_text() + proc.stdout
    assert not marker.exists()
    assert name not in sys.modules


def test_load_model_imports_only_the_model_target(side_effect_module, tmp_path):
    """A stored run's ``config.yaml`` whose data and init ``_target_`` name a module with a side effect: its
    model is rebuilt from ``model._target_`` alone, and that module is never imported."""
    import torch

    from initsweep.core.models import MLP
    from initsweep.tracking import client as tracking
    from initsweep.tracking.checkpoint import ARTIFACT_DIR, FILE_NAME, load_model

    name, _, marker = side_effect_module
    uri = store_uri(tmp_path)
    client = tracking.connect(tracking.resolve_uri(uri))
    logger = tracking.start_run(client, tracking.experiment_id(client, "targets"), "run", {})
    config = (
        "model:\n  _target_: initsweep.core.models.MLP\n  depth: 1\n  width: 8\n"
        f"data:\n  _target_: {name}.Net\ninit:\n  name: custom\n  _target_: {name}.fill_\n"
    )
    logger.log_text(config, "config.yaml")
    weights = MLP((4,), 3, depth=1, width=8).state_dict()
    path = tmp_path / FILE_NAME
    torch.save({"state_dict": weights, "input_shape": [4], "num_classes": 3, "epoch": 0}, path)
    logger.log_artifact(path, ARTIFACT_DIR)
    logger.end()
    model = load_model(logger.run_id, uri)
    assert type(model).__name__ == "MLP" and torch.equal(model.state_dict()["out.weight"], weights["out.weight"])
    assert not marker.exists() and name not in sys.modules


def test_a_sampler_or_pruner_node_naming_nothing_is_refused_without_importing_it(side_effect_module):
    """Hydra's ``instantiate`` imports a node's ``_target_`` (and its nested nodes'); initsweep locates each one
    first, so a wrong name runs none of its module's code."""
    from initsweep.core.config import ConfigError
    from initsweep.tuning.plan import make_pruner, make_sampler

    name, _, marker = side_effect_module
    with pytest.raises(ConfigError, match=rf"hydra\.sweeper\.sampler\._target_ = '{name}\.Nothing': .*'Nothing'"):
        make_sampler({"_target_": f"{name}.Nothing"})
    nested = {"_target_": "optuna.pruners.PatientPruner", "patience": 1, "wrapped_pruner": {"_target_": f"{name}.X"}}
    with pytest.raises(ConfigError, match=rf"hydra\.sweeper\.pruner\.wrapped_pruner\._target_ = '{name}\.X'"):
        make_pruner(nested)
    assert not marker.exists() and name not in sys.modules
    ok = {
        "_target_": "optuna.pruners.PatientPruner",
        "patience": 1,
        "wrapped_pruner": {"_target_": "optuna.pruners.NopPruner"},
    }
    assert type(make_pruner(ok)).__name__ == "PatientPruner"
