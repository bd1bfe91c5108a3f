"""Each diagnostic on networks whose answer is known in advance."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from initsweep.core.config import InitConfig
from initsweep.core.initializers import initialize
from initsweep.core.models import MLP
from initsweep.diagnostics.signal import diagnose, duplicate_units, fixed_batch, layer_activations


def batch(n: int, features: int, classes: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, features, generator=g), torch.randint(0, classes, (n,), generator=g)


def mlp(in_features: int, depth: int, width: int, activation: str = "relu", classes: int = 10) -> MLP:
    torch.manual_seed(0)
    return MLP((in_features,), classes, depth, width, activation=activation)


def hidden(model: MLP) -> list[nn.Linear]:
    return [m for n, m in model.named_children() if n.startswith("fc")]


def test_layers_and_their_activations_follow_the_init_metric_names():
    model = mlp(8, 2, 4, "tanh")
    named = [(n, type(a).__name__ if a is not None else None) for n, _, a in layer_activations(model)]
    assert named == [("fc1", "Tanh"), ("fc2", "Tanh"), ("out", None)]


@pytest.mark.parametrize("scheme", ["zeros", "ones"])
def test_constant_init_duplicates_every_hidden_unit_and_warns(scheme):
    model = mlp(64, 2, 32)
    initialize(model, InitConfig(name=scheme), "relu")
    x, y = batch(128, 64)
    d = diagnose(model, x, y)
    assert d.metrics["diag/fc1/duplicate_units"] == 32
    assert d.metrics["diag/fc2/duplicate_units"] == 32
    assert d.warning is not None and d.warning.startswith("symmetry not broken")
    assert "fc1 32/32" in d.warning and "fc2 32/32" in d.warning


def test_a_deep_constant_net_names_three_layers_and_counts_the_rest():
    model = mlp(16, 6, 8)  # 6 hidden layers, every unit of each a duplicate
    initialize(model, InitConfig(name="ones"), "relu")
    x, y = batch(32, 16)
    warning = diagnose(model, x, y).warning
    assert warning is not None
    symmetry = warning.split("; ")[0]
    assert symmetry == "symmetry not broken: duplicate units in fc1 8/8, fc2 8/8, fc3 8/8 and 3 more layers"


def test_random_init_has_no_duplicates_and_no_symmetry_warning():
    model = mlp(64, 2, 32)
    initialize(model, InitConfig(name="normal", std=0.1), "relu")
    d = diagnose(model, *batch(128, 64))
    assert all(d.metrics[f"diag/{layer}/duplicate_units"] == 0 for layer in ("fc1", "fc2", "out"))
    assert not any("symmetry" in w for w in d.warnings)


def test_duplicate_units_counts_rows_equal_within_tolerance_and_bias_counts():
    layer = nn.Linear(3, 5)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2, 3], [1, 2, 3], [1, 2, 3 + 1e-9], [3, 2, 1], [3, 2, 1]]))
        layer.bias.copy_(torch.tensor([0.0, 0, 0, 0, 0.5]))  # the last two differ by their bias only
    assert duplicate_units(layer) == 3
    assert duplicate_units(layer, tol=0.6) == 5


def test_duplicate_units_equals_the_all_pairs_count_on_planted_and_near_duplicates():
    def all_pairs(layer: nn.Module, tol: float = 1e-6) -> int:
        w = torch.cat([layer.weight.detach().flatten(1), layer.bias.detach().view(-1, 1)], 1).double()
        dist = torch.cdist(w, w, p=float("inf")).fill_diagonal_(float("inf"))
        return int((dist <= tol * max(1.0, w.abs().max().item())).any(1).sum())

    g = torch.Generator().manual_seed(0)
    for layer in (nn.Linear(40, 64), nn.Conv2d(3, 16, 3)):
        with torch.no_grad():
            rows = layer.weight.view(len(layer.weight), -1)
            rows.copy_(torch.randn(rows.shape, generator=g))
            rows[1], rows[2], rows[3] = rows[0], rows[0] + 1e-7, rows[0] + 1e-4  # equal, within tol, outside
            rows[4], rows[5] = rows[6], rows[6].flip(0)  # equal; then the same mean, other weights
            layer.bias.zero_()
        assert duplicate_units(layer) == all_pairs(layer) == 5
        with torch.no_grad():
            layer.weight.fill_(0.5)  # every unit the same: all are compared
        assert duplicate_units(layer) == all_pairs(layer) == len(layer.weight)


def test_linear_network_with_orthogonal_weights_keeps_activation_std():
    width = 128
    model = mlp(width, 4, width, "linear")
    with torch.no_grad():
        for layer in hidden(model):
            nn.init.orthogonal_(layer.weight)
            layer.bias.zero_()
    d = diagnose(model, *batch(2048, width))
    for layer in ("fc1", "fc2", "fc3", "fc4"):
        assert d.metrics[f"diag/{layer}/act_std_ratio"] == pytest.approx(1.0, abs=1e-3)
        # a linear network: the activation is the pre-activation
        assert d.metrics[f"diag/{layer}/act_std"] == d.metrics[f"diag/{layer}/preact_std"]
    assert not d.warnings


def _relu_net(fan_in: int, weight_std: float) -> MLP:
    model = mlp(fan_in, 3, fan_in, "relu")
    with torch.no_grad():
        for layer in hidden(model):
            layer.weight.normal_(0.0, weight_std)
            layer.bias.zero_()
    return model


def test_he_init_keeps_relu_activation_std_and_unit_normal_blows_it_up():
    fan_in = 1024
    x, y = batch(512, fan_in)
    he = diagnose(_relu_net(fan_in, math.sqrt(2.0 / fan_in)), x, y)  # He et al. 2015: std sqrt(2 / fan_in)
    unit = diagnose(_relu_net(fan_in, 1.0), x, y)
    # From fc2 on, each layer's input is a ReLU output, like its own activation.
    for layer in ("fc2", "fc3"):
        assert he.metrics[f"diag/{layer}/act_std_ratio"] == pytest.approx(1.0, abs=0.1)
        assert unit.metrics[f"diag/{layer}/act_std_ratio"] == pytest.approx(math.sqrt(fan_in / 2), rel=0.1)
    assert not he.warnings
    assert any("activation std changes" in w and "fc1" in w and "fc3" in w for w in unit.warnings)


def test_std_warning_factor_is_configurable():
    x, y = batch(256, 256)
    model = _relu_net(256, 1.0)  # grows about sqrt(128) = 11x per layer, 128x from fc1 to fc3
    assert any("activation std changes" in w for w in diagnose(model, x, y, warn_factor=100).warnings)
    assert not any("activation std changes" in w for w in diagnose(model, x, y, warn_factor=1000).warnings)


def test_dead_relu_units_are_counted():
    model = mlp(32, 2, 40)
    initialize(model, InitConfig(name="normal", std=0.2), "relu")
    with torch.no_grad():
        model.fc1.bias[:10] = -1e3  # 10 of 40 units can never be active
        model.fc2.bias[:] = -1e3  # the whole second layer is dead
    d = diagnose(model, *batch(512, 32))
    assert d.metrics["diag/fc1/dead_frac"] == pytest.approx(0.25)
    assert d.metrics["diag/fc2/dead_frac"] == 1.0
    assert d.metrics["diag/fc2/act_std"] == 0.0
    # no signal reaches fc1 through a dead fc2: its gradient vanishes
    assert d.metrics["diag/fc1/grad_out_std"] == 0.0 and d.metrics["diag/fc1/weight_grad_norm"] == 0.0
    assert "saturated_frac" not in " ".join(d.metrics)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_saturated_units_are_counted(activation):
    model = mlp(32, 1, 40, activation)
    initialize(model, InitConfig(name="normal", std=0.01), activation)
    x, y = batch(256, 32)
    calm = diagnose(model, x, y)
    assert calm.metrics["diag/fc1/saturated_frac"] == 0.0 and calm.metrics["diag/fc1/saturated_act_frac"] == 0.0
    with torch.no_grad():
        model.fc1.bias[:8] = 50.0  # pinned at the upper bound for every example
    d = diagnose(model, x, y)
    assert d.metrics["diag/fc1/saturated_frac"] == pytest.approx(0.2)
    assert d.metrics["diag/fc1/saturated_act_frac"] == pytest.approx(0.2)
    initialize(model, InitConfig(name="normal", std=10.0), activation)  # pre-activation std ~ 57: mostly saturated
    assert diagnose(model, x, y).metrics["diag/fc1/saturated_act_frac"] > 0.8


def test_initial_loss_of_a_zero_network_is_ln_num_classes():
    model = mlp(16, 2, 8, classes=7)
    initialize(model, InitConfig(name="zeros"), "relu")
    d = diagnose(model, *batch(64, 16, classes=7))
    assert d.metrics["diag/ln_num_classes"] == pytest.approx(math.log(7))
    assert d.metrics["diag/initial_loss"] == pytest.approx(math.log(7), rel=1e-6)


def test_backward_metrics_equal_a_plain_backward_pass():
    model = mlp(16, 2, 12, "tanh")
    x, y = batch(64, 16)
    d = diagnose(model, x, y)
    z1 = model.fc1(x)
    z1.retain_grad()
    z2 = model.fc2(model.act1(z1))
    z2.retain_grad()
    loss = nn.functional.cross_entropy(model.out(model.act2(z2)), y)
    loss.backward()
    assert d.metrics["diag/initial_loss"] == pytest.approx(loss.item())
    assert d.metrics["diag/fc1/grad_out_std"] == pytest.approx(z1.grad.std().item())
    assert d.metrics["diag/fc2/grad_out_std"] == pytest.approx(z2.grad.std().item())
    for name in ("fc1", "fc2", "out"):
        expected = getattr(model, name).weight.grad.norm().item()
        assert d.metrics[f"diag/{name}/weight_grad_norm"] == pytest.approx(expected, rel=1e-5)
    assert d.layers == ["fc1", "fc2", "out"]
    assert d.grad_std == [d.metrics[f"diag/{n}/grad_out_std"] for n in d.layers]


def test_diagnose_leaves_model_grads_mode_and_rng_untouched():
    model = mlp(16, 2, 12)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    diagnose(model, *batch(64, 16))
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())


def test_fixed_batch_ignores_the_training_seed():
    x, y = batch(100, 4)
    torch.manual_seed(1)
    a = fixed_batch(x, y, 10)
    torch.manual_seed(2)
    b = fixed_batch(x, y, 10)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert len(a[0]) == 10 and not torch.equal(a[0], x[:10])
    assert fixed_batch(x, y, 1000)[0] is x


def test_exploding_deep_network_gives_finite_statistics():
    # N(0, 1) in 30 ReLU layers of 64 units: activation std grows ~sqrt(32) per layer to ~1e22, whose
    # square overflows float32; the statistics are computed in float64.
    model = mlp(64, 30, 64)
    initialize(model, InitConfig(name="normal"), "relu")
    d = diagnose(model, *batch(256, 64))
    assert all(math.isfinite(v) for v in d.metrics.values())
    assert d.metrics["diag/fc30/act_std"] > 1e18
    assert d.metrics["diag/fc20/act_std_ratio"] == pytest.approx(math.sqrt(32), rel=0.25)
    assert any("activation std changes" in w for w in d.warnings)


def _residual(residual: str, blocks: int = 30):
    """The residual_inits overlay's un-normalized residual MLP (width 64) with a family of conf/residual/."""
    from omegaconf import OmegaConf

    from conftest import compose
    from initsweep.core.config import validate
    from initsweep.core.models import build_model

    overrides = ["experiment=residual_inits", f"residual={residual}", f"model.blocks={blocks}"]
    config = validate(OmegaConf.to_container(compose(overrides)))
    torch.manual_seed(0)
    model = build_model(config.model, (64,), 10)
    initialize(model, config.init, "relu")
    return model


@pytest.mark.parametrize("residual", ["fixup", "rezero", "zero_branch"])
def test_residual_families_raise_no_false_alarm(residual):
    """Fixup's and zero-gamma's zero branch output layers duplicate every unit (still counted), but get distinct
    gradients through the skip path; ReZero's stream keeps its std although each branch's output is unscaled."""
    model = _residual(residual)
    d = diagnose(model, *batch(64, 64))
    assert d.warnings == [], d.warnings
    zero_branch = residual != "rezero"
    assert (d.metrics["diag/blocks.0.fc2/duplicate_units"] == 64) is zero_branch
    if zero_branch:
        assert d.metrics["diag/blocks.29.fc2/act_std"] == 0  # what the old check compared with fc1: "changes 0x"


def test_an_exploding_residual_stream_still_warns_with_the_stream_named():
    d = diagnose(_residual("he"), *batch(64, 64))  # He alone: each block adds its full branch, x1.4 a block
    (warning,) = d.warnings
    assert warning.startswith("activation std changes") and "from the residual stream x_0" in warning


def test_a_constant_input_layer_of_a_residual_model_still_warns():
    """Only a layer whose output is added to the stream is exempt: the input layer of a constant resmlp is not."""
    model = _residual("fixup")
    nn.init.constant_(model.inp.weight, 0.1)
    assert any(
        w.startswith("symmetry not broken: duplicate units in inp 64/64")
        for w in diagnose(model, *batch(64, 64)).warnings
    )
