"""Initializers through the whole job: the init/ metrics a run logs, errors before any run exists, a
custom initializer from a user's module on the command line, and the all-schemes sweep."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest

from conftest import all_runs, client_for, compose, layer_values, run_train
from initsweep.core.config import ConfigError
from initsweep.core.initializers import SCHEMES
from initsweep.core.trainer import resolve_device
from initsweep.jobs.job import JobContext, execute

QUICK = ["trainer.epochs=1", "tracking.log_plots=false"]
# One intra-op thread: tiny matrices on a shared 2-core machine train several times faster so.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One MLflow store for the in-process jobs of this module (creating a store costs seconds)."""
    return tmp_path_factory.mktemp("store")


def _job(store: Path, overrides: list[str]) -> float:
    uri = f"sqlite:///{store / 'mlruns' / 'mlflow.db'}"
    return execute(compose([*QUICK, f"tracking.uri={uri}", *overrides]), ctx=JobContext()).value


def _metrics(store: Path) -> dict[str, float]:
    """Metrics of the store's newest run (the job just run), with its per-layer table at step 0 spelled out
    as ``init/<layer>/<stat>`` (the run logs per-layer values as a table artifact, see tracking.log_layers)."""
    newest = max(all_runs(store), key=lambda r: r.info.start_time)
    assert newest.info.status == "FINISHED"
    return {**newest.data.metrics, **layer_values(client_for(store), newest.info.run_id)}


def test_logged_init_metrics_match_the_formula_on_the_cnn(store: Path) -> None:
    _job(store, ["model=cnn", "init=kaiming_normal", "init.mode=fan_out", "init.output=zeros"])
    m = _metrics(store)
    # (layer, number of weights, formula std): fan_out = out_channels * k*k for convs, out for Linear
    layers = [
        ("conv1", 16 * 9, math.sqrt(2 / (16 * 9))),
        ("conv2", 32 * 16 * 9, math.sqrt(2 / (32 * 9))),
        ("fc1", 64 * 128, math.sqrt(2 / 64)),
        ("out", 10 * 64, 0.0),
    ]
    for layer, n, expected in layers:
        assert m[f"init/{layer}/weight_std_expected"] == pytest.approx(expected, rel=1e-6)
        tol = 6 / math.sqrt(2 * n) * expected + 1e-12  # 6 standard errors of a normal sample's std
        assert abs(m[f"init/{layer}/weight_std"] - expected) <= tol, layer
        assert abs(m[f"init/{layer}/weight_mean"]) <= 6 * expected / math.sqrt(n) + 1e-12, layer


def test_params_say_what_auto_stood_for(store: Path) -> None:
    _job(store, ["init=xavier_uniform", "init.gain=auto", "model.activation=tanh", "diagnostics.enabled=false"])
    params = max(all_runs(store), key=lambda r: r.info.start_time).data.params
    assert params["init.gain"] == "auto" and params["init.gain_used"] == "1.66667"  # tanh's 5/3
    assert params["trainer.device"] == "auto"
    assert params["trainer.device_used"].split(":")[0] == resolve_device("auto").type  # cpu, cuda:0, ...
    assert "init.nonlinearity_used" not in params and "tracking.checkpoint_used" not in params


def test_logged_init_metrics_for_lsuv_are_the_measured_values(store: Path) -> None:
    _job(store, ["init=lsuv", "model.depth=3", "model.width=64", "model.activation=tanh"])
    m = _metrics(store)
    for layer in ("fc1", "fc2", "fc3", "out"):
        assert m[f"init/{layer}/weight_std_expected"] == m[f"init/{layer}/weight_std"] > 0


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["init=identity", "init.fallback=null"], r"init\.fallback"),
        (["init=lsuv", "init.bias=constant", "init.bias_value=-100"], "init=lsuv cannot handle this model"),
        (["data=idx", "data.path=/no/such/dir"], r"data\.path = '/no/such/dir': directory does not exist"),
        (["init=normal", "init.std=-1"], r"init\.std = -1"),
        (["init=xavier_uniform", "init.gain=-2"], r"init\.gain = -2"),
        (["init=custom", "init._target_=torch.nn.init.nope_"], r"init\._target_ = 'torch\.nn\.init\.nope_'"),
    ],
)
def test_bad_input_fails_before_any_run(tmp_path: Path, overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _job(tmp_path, overrides)
    assert not (tmp_path / "mlruns").exists()  # failed before the store was even opened


def test_torch_function_as_custom_target(store: Path) -> None:
    _job(store, ["init=custom", "init._target_=torch.nn.init.orthogonal_", "+init.gain=2.0"])
    m = _metrics(store)
    # orthogonal with gain 2: mean square = 4 / max(rows, cols); fc2 is 256 x 256
    assert m["init/fc2/weight_std"] == pytest.approx(2 / 16, rel=1e-2)
    assert m["init/fc2/weight_std_expected"] == m["init/fc2/weight_std"]


@pytest.mark.slow
def test_custom_initializer_from_a_users_module_on_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "userinits").mkdir()
    (tmp_path / "userinits" / "__init__.py").write_text("")
    (tmp_path / "userinits" / "schemes.py").write_text(
        textwrap.dedent('''
        import torch

        def checkerboard_(tensor, scale=1.0):
            """+-scale in a checkerboard pattern over the flattened weight."""
            signs = torch.ones(tensor.numel())
            signs[1::2] = -1
            with torch.no_grad():
                return tensor.copy_(scale * signs.reshape(tensor.shape))
    ''')
    )
    result = run_train(
        ["init=custom", "init._target_=userinits.schemes.checkerboard_", "+init.scale=0.05", *QUICK],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), **ONE_THREAD},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (only,) = all_runs(tmp_path)
    m = {**only.data.metrics, **layer_values(client_for(tmp_path), only.info.run_id)}
    assert only.info.status == "FINISHED" and only.data.params["init._target_"] == "userinits.schemes.checkerboard_"
    for layer in ("fc1", "fc2", "out"):
        assert m[f"init/{layer}/weight_std"] == pytest.approx(0.05, rel=1e-3)
        assert m[f"init/{layer}/weight_std_expected"] == m[f"init/{layer}/weight_std"]


@pytest.mark.slow
def test_one_sweep_runs_every_built_in_scheme(tmp_path: Path) -> None:
    result = run_train(["-m", "init=glob(*,exclude=custom)", "model.width=32", *QUICK], cwd=tmp_path, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = all_runs(tmp_path)
    (parent,) = [r for r in runs if r.data.tags.get("initsweep.role") == "sweep"]  # glob expanded up front
    children = [r for r in runs if r is not parent]
    assert sorted(r.data.tags["initsweep.init"] for r in children) == sorted(set(SCHEMES) - {"custom"})
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children)
    assert all(r.info.status == "FINISHED" for r in runs)
    assert f"({len(SCHEMES) - 1} runs)" in result.stdout and "| init=lsuv " in result.stdout
    for r in children:
        layers = layer_values(client_for(tmp_path), r.info.run_id)
        assert "init/fc1/weight_std_expected" in layers and "val/acc_best" in r.data.metrics
