"""The mean-field toolkit: q*, χ1 and ξ_c by quadrature against independent Monte Carlo estimates and a wide random
net, the mean_field scheme's weights and biases, and the metrics a real run logs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import all_runs, client_for, compose, layer_values, store_uri
from initsweep.core.config import ConfigError, validate
from initsweep.core.initializers import initialize
from initsweep.core.models import MLP
from initsweep.diagnostics.meanfield import mean_field
from initsweep.jobs.job import JobContext, execute

RNG = np.random.default_rng(0)
_Z = RNG.standard_normal((2, 400_000))
# Common random numbers for every map, antithetic in z2 (odd powers of sqrt(1 - c^2) z2 cancel exactly).
Z1, Z2 = np.concatenate([_Z[0], _Z[0]]), np.concatenate([_Z[1], -_Z[1]])


def _mc_q_star(sigma_w2: float, sigma_b2: float) -> float:
    q = 1.0
    for _ in range(60):
        q = sigma_w2 * np.mean(np.tanh(math.sqrt(q) * Z1) ** 2) + sigma_b2
    return float(q)


def _mc_c_map(sigma_w2: float, sigma_b2: float, q: float, c: float) -> float:
    u1, u2 = math.sqrt(q) * Z1, math.sqrt(q) * (c * Z1 + math.sqrt(1 - c * c) * Z2)
    return float((sigma_w2 * np.mean(np.tanh(u1) * np.tanh(u2)) + sigma_b2) / q)


def _mc_xi_c(sigma_w2: float, sigma_b2: float) -> float:
    """ξ_c = -1 / ln(slope of the Monte Carlo correlation map at its stable fixed point), by finite differences."""
    q = _mc_q_star(sigma_w2, sigma_b2)
    lo, hi = -1.0 + 1e-9, 1.0 - 1e-4  # bisection on c_map(c) - c; c* = 1 when the gap stays positive
    if _mc_c_map(sigma_w2, sigma_b2, q, hi) - hi >= 0:
        h = 1e-3  # second-order one-sided difference at c = 1
        slope = (3.0 - 4 * _mc_c_map(sigma_w2, sigma_b2, q, 1 - h) + _mc_c_map(sigma_w2, sigma_b2, q, 1 - 2 * h)) / (
            2 * h
        )
    else:
        for _ in range(25):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if _mc_c_map(sigma_w2, sigma_b2, q, mid) > mid else (lo, mid)
        c, h = (lo + hi) / 2, 1e-3
        slope = (_mc_c_map(sigma_w2, sigma_b2, q, c + h) - _mc_c_map(sigma_w2, sigma_b2, q, c - h)) / (2 * h)
    return -1.0 / math.log(slope)


def test_tanh_at_the_critical_point_has_chi1_one() -> None:
    mf = mean_field("tanh", 1.76, 0.05)
    assert mf.chi1 == pytest.approx(1.0, abs=0.01)
    assert mf.xi_c > 100  # the depth scale diverges at the edge of chaos


@pytest.mark.parametrize(("sigma_w2", "sigma_b2"), [(1.0, 0.05), (1.3, 0.3), (4.0, 0.05), (3.0, 0.0)])
def test_q_star_and_xi_c_match_monte_carlo(sigma_w2: float, sigma_b2: float) -> None:
    mf = mean_field("tanh", sigma_w2, sigma_b2)
    assert mf.q_star == pytest.approx(_mc_q_star(sigma_w2, sigma_b2), rel=0.005)
    assert mf.xi_c == pytest.approx(_mc_xi_c(sigma_w2, sigma_b2), rel=0.03)
    assert (mf.chi1 > 1) == (mf.c_star < 1)  # chaotic phase: the correlations settle below 1


def test_relu_has_its_closed_forms() -> None:
    """ReLU: χ1 = σw²/2 at any q; q* = σb² / (1 - σw²/2) for σw² < 2, infinite above."""
    mf = mean_field("relu", 1.5, 0.1)
    assert mf.chi1 == pytest.approx(0.75, rel=1e-9)
    assert mf.q_star == pytest.approx(0.1 / (1 - 0.75), rel=1e-6)
    assert mf.xi_c == pytest.approx(-1 / math.log(0.75), rel=1e-6)
    assert math.isinf(mean_field("relu", 3.0, 0.1).q_star)


def test_a_wide_random_net_settles_at_q_star() -> None:
    """The scheme's draws through a 20-layer tanh net of 1500 units: the last pre-activations' mean square is q*."""
    torch.manual_seed(0)
    model = MLP(input_shape=(64,), num_classes=10, depth=20, width=1500, activation="tanh")
    init = validate(_cfg(["init=mean_field", "init.sigma_w2=2.0", "init.sigma_b2=0.1"])).init
    stats = initialize(model, init, "tanh")
    x = torch.randn(200, 64)
    with torch.no_grad():
        h = torch.nn.Sequential(*list(model)[:-2])(x)  # up to the last hidden layer's Linear (fc20), before its tanh
    assert h.pow(2).mean().item() == pytest.approx(mean_field("tanh", 2.0, 0.1).q_star, rel=0.03)
    fc1 = next(s for s in stats if s.layer == "fc1")
    assert fc1.weight_std_expected == pytest.approx(math.sqrt(2.0 / 64))
    assert fc1.bias_std_expected == pytest.approx(math.sqrt(0.1))
    assert fc1.bias_std == pytest.approx(math.sqrt(0.1), rel=6 / math.sqrt(2 * 1500))


def _cfg(overrides: list[str]) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(compose(overrides), resolve=True)  # type: ignore[return-value]


def test_mean_field_refuses_another_bias_rule() -> None:
    with pytest.raises(ConfigError, match=r"init.bias = 'constant': init=mean_field draws the biases itself"):
        validate(_cfg(["init=mean_field", "init.bias=constant"]))


def test_a_run_logs_the_mean_field_quantities_and_bias_statistics(tmp_path: Path) -> None:
    uri = store_uri(tmp_path)
    overrides = ["init=mean_field", "model.activation=tanh", "model.depth=3", "model.width=32", "trainer.epochs=1"]
    execute(compose([*overrides, "tracking.log_plots=false", f"tracking.uri={uri}"]), ctx=JobContext())
    (run,) = all_runs(tmp_path)
    m = run.data.metrics
    assert m["diag/chi1"] == pytest.approx(1.0, abs=0.01)
    assert m["diag/meanfield_q_star"] == pytest.approx(mean_field("tanh", 1.76, 0.05).q_star)
    assert m["diag/xi_c"] > 100
    table = layer_values(client_for(tmp_path), run.info.run_id)
    assert table["init/fc2/bias_std_expected"] == pytest.approx(math.sqrt(0.05))
    assert 0.1 < table["init/fc2/bias_std"] < 0.35  # 32 draws of N(0, 0.05)
