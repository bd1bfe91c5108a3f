"""Models and data by ``_target_`` through ``train.py``: ResNet-20 on CIFAR-format batches with the zero-init
residual rule, and every kind of bad model or data config: exit 2, one ``initsweep:`` line, no run created."""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from torch import nn

from conftest import all_runs, client_for, layer_values, run_train, write_cifar_dir
from initsweep.core.models import ResNet

ZERO_INIT_RESIDUAL = "init.rules=[{modules: 'layer*.*.bn2', weight: 0}]"


@pytest.mark.slow
def test_resnet20_on_cifar_batches_zero_init_residual_and_he_stds_in_the_logged_table(tmp_path: Path) -> None:
    cifar = write_cifar_dir(tmp_path / "cifar")  # 60 training and 10 test images of 3 x 32 x 32
    args = ["model=resnet", "data=cifar10", f"data.path={cifar}", "init=kaiming_normal", ZERO_INIT_RESIDUAL]
    proc = run_train([*args, "trainer.epochs=1", "diagnostics.enabled=false", "tracking.log_plots=false"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = all_runs(tmp_path)
    assert run.info.status == "FINISHED" and run.data.params["model.depth"] == "20"
    table = layer_values(client_for(tmp_path), run.info.run_id)  # layers/step_0000.json

    resnet = ResNet((3, 32, 32), 10)  # the layout the run built: each conv's fan_in = in_channels x 3 x 3
    modules = dict(resnet.named_modules())
    bn2 = [n for n in modules if n.startswith("layer") and n.endswith(".bn2")]
    convs = [n for n, m in modules.items() if isinstance(m, nn.Conv2d)]
    assert (len(bn2), len(convs)) == (9, 19)
    for name in bn2:  # the rule's modules: gamma exactly 0, so each residual branch starts as nothing
        assert table[f"init/{name}/weight_std"] == 0.0 == table[f"init/{name}/weight_std_expected"], name
        assert table[f"init/{name}/weight_mean"] == 0.0, name
    for name in convs:
        he = math.sqrt(2 / modules[name].weight[0].numel())
        assert table[f"init/{name}/weight_std_expected"] == pytest.approx(he, rel=1e-6), name
        assert table[f"init/{name}/weight_std"] == pytest.approx(he, rel=0.1), name
    assert "init/layer1.0.bn1/weight_std" not in table  # norm layers no rule names keep their gamma 1, unlogged


USER_MODULE = "initsweep_e2e_user"
USER_CODE = '''
import numpy as np
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes, input_shape, width=8):
        super().__init__()
        self.fc = nn.Linear(input_shape[0], num_classes)

    def forward(self, x):
        return self.fc(x)


def not_a_model(num_classes):
    return "a string"


def points(n=60, fault=None):
    """Three shifted Gaussian clouds in 4-D, or the data with one fault."""
    rng = np.random.default_rng(0)
    y = np.arange(n) % 3
    x = rng.normal(size=(n, 4)) + y[:, None]
    if fault == "lengths":
        return x, y[:-1]
    if fault == "nans":
        x[5, 2] = np.nan
    if fault == "negative":
        y = y - 1
    if fault == "one_hot":
        y = np.eye(3, dtype=int)[y]
    return x, y
'''


@pytest.fixture(scope="module")
def user_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """PYTHONPATH with a folder holding the user's module (models and a data function) in front."""
    folder = tmp_path_factory.mktemp("user")
    (folder / f"{USER_MODULE}.py").write_text(textwrap.dedent(USER_CODE))
    yield {"PYTHONPATH": os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH")) if p)}


def _model(node: str) -> list[str]:
    return ["~model", f"+model={{{node}}}"]


def _data(fault: str) -> list[str]:
    return [f"+data._target_={USER_MODULE}.points", "data.name=points", f"+data.fault={fault}"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (_model("_target_: nowhere_xyz.Net"), "model._target_ = 'nowhere_xyz.Net': cannot be imported"),
        (_model(f"_target_: {USER_MODULE}.not_a_model"), "returned a str, not a torch.nn.Module"),
        (_model(f"_target_: {USER_MODULE}.Net, depth: 3"), f"model.depth: unknown key ({USER_MODULE}.Net accepts"),
        (_data("lengths"), "data._target_ = 'initsweep_e2e_user.points': x and y must hold the same number"),
        (_data("nans"), "data._target_ = 'initsweep_e2e_user.points': x has 1 NaN or infinite values"),
        (_data("negative"), "data._target_ = 'initsweep_e2e_user.points': y must hold integer class labels"),
        (_data("one_hot"), "data._target_ = 'initsweep_e2e_user.points': y has shape (60, 3): need 1-D"),
        (["data=cifar10", "data.path={tmp}/nowhere"], "data.path = '{tmp}/nowhere': directory does not exist"),
        (["data=cifar10", "data.path={tmp}/cifar"], "file not found in data.path: {tmp}/cifar/data_batch_3"),
        (["-m", "init=zeros,normal", *_model(f"_target_: {USER_MODULE}.Net, depth: 3")], "model.depth: unknown key"),
    ],
    ids=[
        "model_not_importable",
        "model_not_a_module",
        "model_refuses_key",
        "data_lengths",
        "data_nans",
        "data_negative_labels",
        "data_one_hot_labels",
        "cifar_no_directory",
        "cifar_missing_file",
        "multirun_model_refuses_key",
    ],
)
def test_bad_model_or_data_exits_2_naming_the_key_before_any_run(
    tmp_path: Path, user_env: dict[str, str], args: list[str], message: str
) -> None:
    (write_cifar_dir(tmp_path / "cifar") / "data_batch_3").unlink()
    args, message = [a.replace("{tmp}", str(tmp_path)) for a in args], message.replace("{tmp}", str(tmp_path))
    proc = run_train([*args, "trainer.epochs=1"], cwd=tmp_path, env=user_env)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.startswith("initsweep: ") and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert message in proc.stderr, proc.stderr
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()  # no run, no parent run: no store at all
