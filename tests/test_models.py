"""Models by ``_target_``: the built-ins (MLP, CNN, residual MLP, ResNet), a user's module, per-module init
rules by module path, and every way a model config can be wrong (one ConfigError naming the key)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from conftest import compose
from initsweep.core.config import ConfigError, validate
from initsweep.core.initializers import init_layers, initialize
from initsweep.core.models import ResidualMLP, ResNet, build_model, model_activation
from initsweep.jobs.resources import check_buildable


def _config(overrides: list[str]):
    return validate(OmegaConf.to_container(compose(overrides), resolve=True))


def _built(overrides: list[str], shape: tuple[int, ...] = (1, 8, 8), classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return build_model(_config(overrides).model, shape, classes)


def test_resnet20_has_the_papers_layout_and_parameter_count() -> None:
    model = _built(["model=resnet"], (3, 32, 32))
    assert isinstance(model, ResNet)
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 19 and len(init_layers(model)) == 20  # 19 convs + the output layer: 20 weight layers
    assert "layer3.2.conv2" in convs and "layer1.0.bn2" in dict(model.named_modules())
    assert sum(p.numel() for p in model.parameters()) == 269_722  # He et al. 2016: 0.27 M
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert model_activation(model) == "relu"


def test_resnet_depth_must_be_6n_plus_2_and_images_only() -> None:
    with pytest.raises(ConfigError, match=r"model\.depth = 21: must be 6n \+ 2"):
        _built(["model=resnet", "model.depth=21"])
    with pytest.raises(ConfigError, match=r"model=resnet: needs \(channels, height, width\)"):
        _built(["model=resnet"], (64,))


def test_residual_mlp_is_pre_ln_and_layer_norm_can_be_turned_off() -> None:
    model = _built(["model=resmlp", "model.width=16", "model.blocks=3", "model.hidden=8"], (20,), 3)
    assert isinstance(model, ResidualMLP)
    assert [n for n, _ in init_layers(model)] == [
        "inp",
        *[f"blocks.{i}.fc{j}" for i in range(3) for j in (1, 2)],
        "out",
    ]
    assert sum(isinstance(m, nn.LayerNorm) for m in model.modules()) == 4  # one per block + the final one
    plain = _built(["model=resmlp", "model.layer_norm=false", "model.blocks=2"], (20,), 3)
    assert not any(isinstance(m, nn.LayerNorm) for m in plain.modules())
    # a zero residual branch makes each block the identity: the stream passes through unchanged
    for block in model.blocks:
        nn.init.zeros_(block.fc2.weight), nn.init.zeros_(block.fc2.bias)
    x = torch.randn(4, 16)
    assert torch.equal(model.blocks(x), x)


def test_zero_init_residual_rule_gives_exactly_zero_std_and_the_others_their_formula() -> None:
    cfg = _config(["model=resnet", "init=kaiming_normal", "init.rules=[{modules: 'layer*.*.bn2', weight: 0}]"])
    torch.manual_seed(0)
    model = build_model(cfg.model, (1, 8, 8), 10)
    stats = {s.layer: s for s in initialize(model, cfg.init, model_activation(model))}
    bn2 = [n for n in stats if n.endswith(".bn2")]
    assert len(bn2) == 9 and all(stats[n].weight_std == 0.0 == stats[n].weight_std_expected for n in bn2)
    assert all(torch.count_nonzero(dict(model.named_modules())[n].weight) == 0 for n in bn2)
    for name in ("conv1", "layer2.0.conv1", "layer3.2.conv2"):
        w = dict(model.named_modules())[name].weight
        fan_in = w[0].numel()
        assert stats[name].weight_std_expected == pytest.approx((2 / fan_in) ** 0.5)  # He: sqrt(2 / fan_in)
        assert stats[name].weight_std == pytest.approx(stats[name].weight_std_expected, rel=0.1)
    assert dict(model.named_modules())["layer1.0.bn1"].weight.eq(1).all()  # other norm layers keep gamma 1


def test_rules_apply_in_order_a_scheme_a_scale_and_a_bias() -> None:
    rules = (
        "init.rules=[{modules: 'blocks.*.fc2', name: normal, params: {std: 0.5}},"
        " {modules: 'blocks.1.fc2', scale: 0.1, bias: 0.25}]"
    )
    cfg = _config(["model=resmlp", "model.width=64", "model.blocks=2", "init=xavier_uniform", rules])
    torch.manual_seed(0)
    model = build_model(cfg.model, (20,), 3)
    stats = {s.layer: s for s in initialize(model, cfg.init, model_activation(model))}
    assert stats["blocks.0.fc2"].weight_std_expected == 0.5
    assert stats["blocks.1.fc2"].weight_std_expected == pytest.approx(0.05)
    assert stats["blocks.1.fc2"].weight_std == pytest.approx(0.05, rel=0.1)
    assert model.blocks[1].fc2.bias.eq(0.25).all() and model.blocks[0].fc2.bias.eq(0).all()
    assert stats["blocks.0.fc1"].weight_std_expected == pytest.approx((2 / 128) ** 0.5)  # xavier: the scheme


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("{modules: 'layer9.*', weight: 0}", r"init\.rules\[0\]\.modules = 'layer9\.\*': matches no module"),
        (
            "{modules: '*.bn2', name: zeros}",
            r"init\.rules\[0\]\.modules = '\*\.bn2': name=zeros applies to Linear/Conv",
        ),
        ("{modules: 'layer1.*.bn2', name: gaussian}", r"init\.rules\[0\]\.name = 'gaussian': unknown initializer"),
        ("{modules: 'layer1.*.bn2'}", r"init\.rules\.0: a rule needs at least one of name, weight, bias, scale"),
    ],
)
def test_a_bad_rule_names_itself(rule: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_buildable(_config(["model=resnet", f"init.rules=[{rule}]"]))


@pytest.fixture
def user_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A user's module with a model class, a function returning one, and things that are not models."""
    (tmp_path / "usernets.py").write_text(
        textwrap.dedent(
            """
            from torch import nn

            class Tiny(nn.Module):
                def __init__(self, num_classes, input_shape, width=8):
                    super().__init__()
                    if width > 1000:
                        raise ValueError("width must be at most 1000")
                    self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.Tanh())
                    self.head = nn.Linear(width, num_classes)
                    self.activation = "tanh"

                def forward(self, x):
                    return self.head(self.body(x))

            def make(width=4, **kwargs):
                return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))

            def not_a_model(num_classes):
                return [num_classes]
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "usernets"
    sys.modules.pop("usernets", None)


def test_a_users_module_is_a_model_and_gets_the_data_shape(user_package: str) -> None:
    model = _built([f"+model={{_target_: {user_package}.Tiny, width: 5}}", "~model"])
    assert [n for n, _ in init_layers(model)] == ["body.1", "head"] and model.head.out_features == 10
    assert model_activation(model) == "tanh"
    made = _built([f"+model={{_target_: {user_package}.make, width: 6}}", "~model"])
    assert made[1].out_features == 6


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ("{_target_: usernets.Nope}", r"model\._target_ = 'usernets\.Nope': cannot be imported"),
        ("{_target_: nowhere_pkg.Net}", r"model\._target_ = 'nowhere_pkg\.Net': cannot be imported"),
        ("{_target_: usernets.not_a_model}", r"returned a list, not a torch\.nn\.Module"),
        ("{_target_: usernets.Tiny, depth: 3}", r"model\.depth: unknown key \(usernets\.Tiny accepts: width\)"),
        ("{_target_: usernets.Tiny, width: 2000}", r"'usernets\.Tiny': width must be at most 1000"),
        ("{_target_: 'not a path'}", r"model\._target_"),
    ],
)
def test_a_bad_model_target_is_one_config_error_naming_the_key(user_package: str, node: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_buildable(_config([f"+model={node}", "~model"]))
