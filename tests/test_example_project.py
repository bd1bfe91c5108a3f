"""examples/initsweep-example, a user's own project (a model, a dataset, an initializer and two config files),
plugged into initsweep: in-process, and as a user runs it, with the installed wheel from a directory of its own."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import ROOT, all_runs, build_wheel, client_for, compose, install_into, layer_values
from initsweep.core import data
from initsweep.core.config import validate
from initsweep.core.initializers import init_layers, initialize
from initsweep.core.models import build_model, model_activation

EXAMPLE = ROOT / "examples" / "initsweep-example"
# The example's ResMLP at blocks=2: its 6 Linear layers by module path, and their fan-in (10 features of blobs).
LAYERS = ["inp", "blocks.0.fc1", "blocks.0.fc2", "blocks.1.fc1", "blocks.1.fc2", "out"]
FAN_IN = dict.fromkeys(LAYERS, 32) | {"inp": 10}
SWEEP = ["model=resmlp", "data=blobs", "init=zeros,kaiming_normal", "trainer.epochs=4"]


@pytest.fixture
def example_on_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The example's package importable in this process, as a user's PYTHONPATH would make it."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    yield
    for name in [m for m in sys.modules if m.split(".")[0] == "initsweep_example"]:
        del sys.modules[name]


def test_the_examples_model_data_and_initializer_plug_into_initsweep(
    example_on_path: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from initsweep.protocol import CONFIG_DIRS_ENV

    monkeypatch.setenv(CONFIG_DIRS_ENV, str(EXAMPLE / "conf"))  # what --config-dir sets: searched first
    overrides = ["model=resmlp", "data=blobs"]
    custom = ["init=custom", "init._target_=initsweep_example.inits.rademacher_"]
    config = validate(OmegaConf.to_container(compose([*overrides, *custom]), resolve=True))
    d = data.load(config.data)
    assert (d.name, d.input_shape, d.num_classes) == ("blobs", (10,), 3)
    assert len(d.x_train) + len(d.x_val) + len(d.x_test) == 600
    torch.manual_seed(0)
    model = build_model(config.model, d.input_shape, d.num_classes)
    assert type(model).__module__ == "initsweep_example.models"  # the user's file, not the built-in resmlp
    assert [n for n, _ in init_layers(model)] == LAYERS and model_activation(model) == "relu"
    stats = initialize(model, config.init, model_activation(model))
    modules = dict(model.named_modules())
    for s in stats:  # rademacher_: every entry +-sqrt(2 / fan_in), the signs random
        magnitude = math.sqrt(2 / FAN_IN[s.layer])
        assert modules[s.layer].weight.abs().allclose(torch.tensor(magnitude)), s.layer
        assert s.weight_std == pytest.approx(magnitude, rel=0.05) and abs(s.weight_mean) < magnitude / 2
    with torch.no_grad():
        assert float(model(d.x_train[:4]).std()) > 0.1  # a live network: the signal reaches the output


@pytest.mark.slow
def test_the_example_project_sweeps_with_the_installed_wheel_from_its_own_directory(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "dist", tmp_path)
    source = shutil.copytree(EXAMPLE, tmp_path / "example", ignore=shutil.ignore_patterns("__pycache__", "*.egg*"))
    target = tmp_path / "installed"
    env = install_into(target, wheel, source)  # initsweep and initsweep_example only, nothing from the clone
    work = tmp_path / "project"  # an empty directory with the example's conf/ only
    shutil.copytree(EXAMPLE / "conf", work / "conf")

    command = [str(target / "bin" / "initsweep"), "--config-dir", "conf", "-m", *SWEEP]
    proc = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (work / "mlruns" / "mlflow.db").is_file()

    runs = all_runs(work)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 3 and sorted(r.info.status for r in children) == ["FINISHED", "FINISHED"]
    client = client_for(work)
    for run in children:
        params = run.data.params
        assert params["model._target_"] == "initsweep_example.models.ResMLP"
        assert params["data._target_"] == "initsweep_example.data.blobs"
        table = layer_values(client, run.info.run_id)  # layers/step_0000.json: the weights at initialization
        for layer in LAYERS:
            std, expected = table[f"init/{layer}/weight_std"], table[f"init/{layer}/weight_std_expected"]
            if params["init.name"] == "zeros":
                assert std == 0.0 == expected, layer
            else:  # kaiming_normal: He's sqrt(2 / fan_in)
                assert expected == pytest.approx(math.sqrt(2 / FAN_IN[layer])), layer
                assert std == pytest.approx(expected, rel=0.15), layer
        assert {key.split("/")[1] for key in table if key.startswith("init/")} == set(LAYERS)

    read = (
        "import json, initsweep, initsweep_example; rows = initsweep.results('initsweep')[['init', 'val/acc_best']];"
        "print(json.dumps([initsweep.__file__, initsweep_example.__file__, rows.to_dict(orient='records')]))"
    )
    proc = subprocess.run([sys.executable, "-c", read], cwd=work, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    *files, records = json.loads(proc.stdout)
    assert all(Path(f).resolve().is_relative_to(target.resolve()) for f in files), files  # the installed copies
    rows = {row["init"]: row for row in records}
    assert sorted(rows) == ["kaiming_normal", "zeros"]
    assert rows["zeros"]["val/acc_best"] < 0.5  # all units of a layer alike, nothing passes the zero weights
    assert rows["kaiming_normal"]["val/acc_best"] > 0.9  # well-separated blobs
