"""The hidden-to-hidden Jacobian d a_L / d a_1 at the mean-field fixed point q* (diagnostics.isometry): an
orthogonal linear net is an exact isometry at any width; at the edge of chaos a deep tanh net keeps its
spectrum near 1 with orthogonal weights and spreads it with Gaussian ones (Pennington et al. 2017)."""

from __future__ import annotations

import logging
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from initsweep.core.initializers import initialize, normal_, orthogonal_
from initsweep.core.models import CNN, MLP, ResidualMLP
from initsweep.diagnostics.isometry import (
    crop_side,
    fixed_point_q,
    hidden_chain,
    hidden_isometry,
    hidden_jacobian,
    isometry_metrics,
    spectrum_table,
)
from initsweep.diagnostics.meanfield import mean_field

# tanh at the edge of chaos with a tiny bias variance: sigma_b^2 = 1e-5 puts chi1 = 1 at sigma_w^2 = 1.03952
# and q* = 0.0203 (Pennington et al. 2017 use q* of that order, 1/64, for their orthogonal tanh nets).
TANH_SB2, TANH_SW2 = 1e-5, 1.0395211285


def _mlp(activation: str, depth: int, width: int, scheme: str, sigma_w2: float, sigma_b2: float) -> MLP:
    torch.manual_seed(0)
    model = MLP((64,), 10, depth=depth, width=width, activation=activation)
    for layer in model.children():
        if isinstance(layer, nn.Linear):
            if scheme == "orthogonal":
                orthogonal_(layer.weight, math.sqrt(sigma_w2))
            else:
                normal_(layer.weight, 0.0, math.sqrt(sigma_w2 / layer.in_features))
            with torch.no_grad():
                layer.bias.normal_(0.0, math.sqrt(sigma_b2)) if sigma_b2 > 0 else layer.bias.zero_()
    return model


def test_the_tanh_setting_is_at_the_edge_of_chaos():
    mf = mean_field("tanh", TANH_SW2, TANH_SB2)
    assert mf.chi1 == pytest.approx(1.0, abs=1e-6) and mf.q_star == pytest.approx(0.0203, abs=5e-4)


def test_orthogonal_deep_linear_net_of_width_256_is_an_isometry_between_hidden_layers():
    """Width 256 differs from the 64 inputs and 10 outputs: the end-to-end Jacobian (10 x 64) is not an
    isometry (its singular values are those of a 10 x 64 slice of an orthogonal product), the hidden one is."""
    model = _mlp("linear", 32, 256, "orthogonal", 1.0, 0.0)
    x = torch.randn(4, 64)
    metrics, spectrum = hidden_isometry(model, x, "linear")
    assert len(spectrum) == 4 * 256
    assert all(abs(v - 1) <= 1e-5 for v in spectrum)
    assert metrics["diag/hidden_sv_max"] <= 1 + 1e-5 and metrics["diag/hidden_sv_min"] >= 1 - 1e-5
    assert metrics["diag/hidden_sv_std"] < 1e-5 and metrics["diag/hidden_q"] == pytest.approx(1.0, abs=1e-5)
    end_to_end = isometry_metrics(model, x)
    assert end_to_end["diag/jacobian_sv_mean"] < 0.7  # the old measurement: about 0.5, not 1


@pytest.mark.parametrize(("scheme", "check"), [("orthogonal", lambda s: s <= 2.0), ("gaussian", lambda s: s >= 4.0)])
def test_tanh_at_criticality_depth_128_orthogonal_stays_near_1_gaussian_spreads(scheme, check):
    model = _mlp("tanh", 128, 256, scheme, TANH_SW2, TANH_SB2)
    metrics, _ = hidden_isometry(model, torch.randn(4, 64), "tanh")
    assert metrics["diag/hidden_q"] == pytest.approx(0.0203, rel=0.05)  # q* from the weights' own variances
    assert check(metrics["diag/hidden_sv_max"]), metrics


def test_first_hidden_preactivations_are_rescaled_to_q_star():
    """The Jacobian depends on the inputs' length: the same tanh net at q* and at a 100 x larger length."""
    model = _mlp("tanh", 8, 64, "gaussian", 1.76, 0.05)
    chain = hidden_chain(model)
    assert chain is not None
    q = fixed_point_q(chain, "tanh")
    assert q == pytest.approx(mean_field("tanh", 1.76, 0.05).q_star, rel=0.2)
    x = torch.randn(3, 64, dtype=torch.float64)  # 7 * x exact
    at_q = hidden_jacobian(model, x, q)
    assert at_q is not None and at_q.shape == (3, 64, 64) and at_q.dtype == torch.float64
    assert not torch.allclose(at_q, hidden_jacobian(model, x, 100 * q))
    with torch.no_grad():
        model.fc1.bias.zero_()  # h_1 = W_1 x: each sample is rescaled, so the scale of x no longer matters
    assert torch.allclose(hidden_jacobian(model, x, q), hidden_jacobian(model, 7 * x, q), rtol=1e-9, atol=1e-12)


class NormedNet(nn.Sequential):
    """A LayerNorm between the hidden layers: weights outside the layers, no hidden map defined."""

    def __init__(self) -> None:
        super().__init__(nn.Flatten(), nn.Linear(64, 16), nn.LayerNorm(16), nn.Linear(16, 16), nn.Linear(16, 10))


def test_models_without_a_hidden_map_are_skipped_and_said_so_once(caplog):
    assert hidden_isometry(MLP((64,), 10, widths=(32, 16)), torch.randn(2, 64), "relu") == ({}, [])
    assert hidden_isometry(MLP((64,), 10, depth=1), torch.randn(2, 64), "relu") == ({}, [])
    assert hidden_chain(CNN((1, 8, 8), 10, channels=[4], width=8)) is None  # one conv layer: no conv-to-conv map
    with caplog.at_level(logging.INFO, logger="initsweep.diagnostics.isometry"):
        for _ in range(3):
            assert hidden_isometry(NormedNet(), torch.randn(2, 64), "relu") == ({}, [])
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "no hidden-to-hidden Jacobian for NormedNet" in said[0], said


def _residual(rezero: bool, zero_branch: bool, layer_norm: bool = False) -> ResidualMLP:
    torch.manual_seed(0)
    model = ResidualMLP((64,), 10, width=32, blocks=6, layer_norm=layer_norm, rezero=rezero)
    if zero_branch:  # Fixup's and zero-gamma's branch output layers
        for block in model.blocks:
            nn.init.zeros_(block.fc2.weight)
    return model


@pytest.mark.parametrize(("rezero", "zero_branch"), [(True, False), (False, True)])
def test_a_residual_stream_with_zero_branches_is_an_exact_isometry(rezero, zero_branch):
    """ReZero/SkipInit (alpha = 0) and Fixup/zero-gamma (fc2 = 0): every block is x + 0, so d x_L / d x_0 = I."""
    model = _residual(rezero, zero_branch)
    x = torch.randn(4, 64)
    metrics, spectrum = hidden_isometry(model, x, "relu")
    assert len(spectrum) == 4 * 32 and all(v == 1.0 for v in spectrum)
    with torch.no_grad():  # the stream is the input layer's output, at its measured length (no q* for a stream)
        assert metrics["diag/hidden_q"] == pytest.approx(model.inp(x).double().pow(2).mean().item(), rel=1e-6)


def test_a_residual_stream_with_live_branches_is_measured_through_the_blocks():
    """With the branches on, d x_L / d x_0 = prod (I + d branch / d x): not the identity; pre-LN blocks too."""
    for layer_norm in (False, True):
        metrics, spectrum = hidden_isometry(_residual(False, False, layer_norm), torch.randn(4, 64), "relu")
        assert len(spectrum) == 4 * 32 and metrics["diag/hidden_sv_max"] > 1.01 and metrics["diag/hidden_sv_std"] > 0.01


def _cnn(scheme: str, input_shape: tuple[int, ...], depth: int) -> CNN:
    torch.manual_seed(0)
    model = CNN(input_shape, 10, channels=(8,), depth=depth, pool=False, activation="linear")
    spec = SimpleNamespace(
        name=scheme, params={}, bias="zeros", bias_value=0.0, output=None, output_params={}, rules=()
    )
    initialize(model, spec, "linear")
    return model


def test_a_linear_delta_orthogonal_conv_net_is_an_isometry_between_its_first_and_last_feature_maps():
    """Xiao et al. 2018: only the kernel centre is set, an orthogonal matrix over channels, so each conv maps the
    flattened feature map by an orthogonal matrix (zero padding plays no part); a Gaussian conv net spreads."""
    x = torch.randn(3, 1, 8, 8)
    metrics, spectrum = hidden_isometry(_cnn("delta_orthogonal", (1, 8, 8), 6), x, "linear")
    assert len(spectrum) == 3 * 8 * 8 * 8 and all(abs(v - 1) <= 1e-5 for v in spectrum)
    assert "diag/hidden_crop" not in metrics
    jac = hidden_jacobian(_cnn("delta_orthogonal", (1, 8, 8), 6), x)
    assert jac is not None and jac.shape == (3, 512, 512)
    gaussian, _ = hidden_isometry(_cnn("kaiming_normal", (1, 8, 8), 6), x, "linear")
    assert gaussian["diag/hidden_sv_max"] > 2 and gaussian["diag/hidden_sv_min"] < 0.2


def test_a_conv_jacobian_beyond_the_budget_is_measured_on_a_centred_crop():
    """32 x 32 maps of 8 channels: 8192 x 8192 entries per example; the 8 x 8 crop has 512 x 512 = 2^18."""
    model = _cnn("delta_orthogonal", (1, 32, 32), 3)
    metrics, spectrum = hidden_isometry(model, torch.randn(2, 1, 32, 32), "linear")
    assert metrics["diag/hidden_crop"] == 8 and len(spectrum) == 2 * 512
    assert all(abs(v - 1) <= 1e-5 for v in spectrum)
    chain = hidden_chain(model)
    assert chain is not None
    a1 = torch.zeros(1, 8, 32, 32, dtype=torch.float64)
    assert crop_side(chain.rest.double(), a1) == 8 and crop_side(chain.rest, a1, budget=8192**2) is None


def test_the_spectrum_table_holds_a_histogram_of_all_values():
    metrics, spectrum = hidden_isometry(_mlp("relu", 4, 32, "gaussian", 2.0, 0.0), torch.randn(5, 64), "relu")
    table = spectrum_table(spectrum, {**metrics, "val/acc": 0.1}, bins=10)
    assert sum(table["histogram"]["counts"]) == len(spectrum) == 5 * 32
    assert len(table["histogram"]["edges"]) == 11 and table["histogram"]["edges"][-1] == pytest.approx(max(spectrum))
    assert set(table["summary"]) == set(metrics) and table["singular_values"] == sorted(table["singular_values"])


def test_the_spectrum_figure_is_a_png_and_figure_args_carry_the_step_0_spectrum(tmp_path):
    from initsweep.diagnostics.signal import Diagnostics
    from initsweep.report.drawing import figure_args
    from initsweep.report.plots import isometry_spectrum

    path = isometry_spectrum([0.5, 1.0, 1.0, 1.5, float("nan")], tmp_path / "s.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    snapshots = [(0, Diagnostics({}, spectrum=[1.0, 2.0])), (3, Diagnostics({}, spectrum=[9.0]))]
    assert figure_args([], (2.3, 0.1), snapshots, tmp_path, "run")[5] == [1.0, 2.0]
    assert figure_args([], (2.3, 0.1), [], tmp_path, "run")[5] == []


def test_the_spectrum_figure_title_of_a_long_run_name_stays_inside_the_figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from initsweep.report.plots import spectrum_figure

    fig = spectrum_figure([1.0, 2.0], title="init=mean_field init.sigma_w2=1.0395 init.sigma_b2=0 seed=0")
    renderer = FigureCanvasAgg(fig).get_renderer()
    box, title = fig.bbox, fig.axes[0].title.get_window_extent(renderer)
    assert box.x0 <= title.x0 and title.x1 <= box.x1 and title.y1 <= box.y1


def test_without_a_settled_fixed_point_the_measured_length_is_used():
    """relu with sigma_w^2 = 2.2 > 2: the length map grows without bound, so there is no q* to rescale to; the
    inputs keep the batch's own mean square of h_1 (logged as diag/hidden_q)."""
    model = _mlp("relu", 6, 128, "gaussian", 2.2, 0.0)
    chain = hidden_chain(model)
    assert chain is not None and fixed_point_q(chain, "relu") is None
    x = torch.randn(4, 64)
    metrics, _ = hidden_isometry(model, x, "relu")
    measured = model.fc1(x).double().pow(2).mean().item()
    assert metrics["diag/hidden_q"] == pytest.approx(measured, rel=1e-5)
    at_two = _mlp("relu", 6, 128, "orthogonal", 2.0, 0.0)  # sigma_w^2 = 2, no bias: every length is a fixed point
    chain = hidden_chain(at_two)
    assert chain is not None and fixed_point_q(chain, "relu") == pytest.approx(1.0, rel=1e-4)
