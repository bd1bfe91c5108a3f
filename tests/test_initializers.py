"""The catalogue, measured: every scheme's empirical statistics against its formula, on Linear and Conv
layers of several fan sizes, plus the structural promises (orthogonal, identity, sparse, LSUV) and the
errors for bad parameters."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import yaml
from torch import nn

from conftest import CONF
from initsweep.core.initializers import SCHEMES, InitError, Site, check_init, check_params, init_layers, initialize
from initsweep.core.initializers.fills import is_square, truncated_mean_shift

# Layers of several fan sizes (fan_in, fan_out): Linear (64, 512), (1024, 32), (300, 300);
# Conv2d 32->64 3x3 (288, 576); Conv1d 8->256 k=9 (72, 2304); Conv2d 64->16 5x5 (1600, 400).
LAYERS = {
    "linear_64_512": lambda: nn.Linear(64, 512),
    "linear_1024_32": lambda: nn.Linear(1024, 32),
    "linear_300_300": lambda: nn.Linear(300, 300),
    "conv2d_32_64_k3": lambda: nn.Conv2d(32, 64, 3),
    "conv1d_8_256_k9": lambda: nn.Conv1d(8, 256, 9),
    "conv2d_64_16_k5": lambda: nn.Conv2d(64, 16, 5),
}

# (scheme, params): the defaults of every random scheme, and non-default settings of the parametrized ones.
CASES: list[tuple[str, dict[str, Any]]] = [
    ("normal", {}),
    ("normal", {"mean": 0.5, "std": 0.02}),
    ("uniform", {}),
    ("uniform", {"low": 0.0, "high": 0.3}),
    ("truncated_normal", {}),
    ("truncated_normal", {"mean": 0.1, "std": 0.05, "lower_sd": -1.0, "upper_sd": 3.0}),
    ("xavier_uniform", {}),
    ("xavier_normal", {"gain": 2.0}),
    ("xavier_normal", {"gain": "auto"}),
    ("kaiming_uniform", {}),
    ("kaiming_normal", {}),
    ("kaiming_normal", {"mode": "fan_out", "nonlinearity": "tanh"}),
    ("kaiming_uniform", {"nonlinearity": "leaky_relu", "a": 0.2}),
    ("kaiming_normal", {"nonlinearity": "auto"}),
    ("lecun_uniform", {}),
    ("lecun_normal", {}),
    ("variance_scaling", {}),
    ("variance_scaling", {"scale": 2.0, "mode": "fan_avg", "distribution": "normal"}),
    ("variance_scaling", {"scale": 0.5, "mode": "fan_out", "distribution": "uniform"}),
    ("orthogonal", {}),
    ("orthogonal", {"gain": "auto"}),
    ("identity", {"gain": 0.5}),
    ("identity", {"fallback": "xavier_normal"}),
    ("sparse", {}),
    ("sparse", {"sparsity": 0.7, "std": 0.1}),
    ("pytorch_default", {}),
]


def _expected_mean(name: str, p: dict[str, Any]) -> float | None:
    """The mean a scheme promises (None: structured, checked elsewhere)."""
    if name == "normal":
        return p.get("mean", 0.0)
    if name == "uniform":
        return (p.get("low", -1.0) + p.get("high", 1.0)) / 2
    if name == "truncated_normal":
        m, s = p.get("mean", 0.0), p.get("std", 1.0)
        return m + s * truncated_mean_shift(p.get("lower_sd", -2.0), p.get("upper_sd", 2.0))
    if name in ("identity", "orthogonal"):
        return None
    return 0.0


def _init_weight(layer: nn.Module, name: str, params: dict[str, Any], activation: str = "tanh"):
    p = check_params(name, params)
    site = Site(tuple(layer.weight.shape), activation)
    SCHEMES[name].fill(layer.weight, p, site)
    return layer.weight.detach().double().flatten(), SCHEMES[name].expected_std(p, site)


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("name,params", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_empirical_std_matches_formula(name: str, params: dict[str, Any], layer: str) -> None:
    torch.manual_seed(0)
    shape = tuple(LAYERS[layer]().weight.shape)
    if name == "identity" and "fallback" not in params and len(shape) > 2 and shape[0] > shape[1]:
        with pytest.raises(InitError, match="init.fallback=delta_orthogonal"):  # no identity: refused
            _init_weight(LAYERS[layer](), name, params)
        return
    w, expected = _init_weight(LAYERS[layer](), name, params)
    n = w.numel()
    std, mean = w.std().item(), w.mean().item()
    assert expected is not None and expected > 0
    if name == "identity" and (is_square(tuple(LAYERS[layer]().weight.shape)) or "fallback" not in params):
        assert std == pytest.approx(expected, rel=1e-5)  # deterministic: exact
        return
    # Standard error of a sample std: std * sqrt((kurtosis - 1) / (4n)); allow 5 of them.
    centred = w - w.mean()
    kurtosis = (centred**4).mean().item() / max((centred**2).mean().item() ** 2, 1e-300)
    tol = 5 * math.sqrt(max(kurtosis - 1, 0.0) / (4 * n)) + 1e-9
    assert abs(std / expected - 1) < max(tol, 1e-6), (std, expected, tol)
    assert tol < 0.06  # "tight": at most a few percent for these sizes
    exp_mean = _expected_mean(name, params)
    if exp_mean is not None:
        assert abs(mean - exp_mean) < 5 * expected / math.sqrt(n) + 1e-9


def test_formulas_for_known_values() -> None:
    """Spot checks against the textbook numbers (not against our own code paths)."""
    lin = Site((512, 64), "relu")  # fan_in 64, fan_out 512
    conv = Site((64, 32, 3, 3), "relu")  # fan_in 288, fan_out 576
    std = lambda name, shape_site, **p: SCHEMES[name].expected_std(check_params(name, p), shape_site)  # noqa: E731
    assert std("kaiming_normal", lin) == pytest.approx(math.sqrt(2 / 64))
    assert std("kaiming_normal", conv, mode="fan_out") == pytest.approx(math.sqrt(2 / 576))
    assert std("kaiming_normal", conv, nonlinearity="linear") == pytest.approx(1 / math.sqrt(288))
    assert std("xavier_uniform", conv) == pytest.approx(math.sqrt(2 / (288 + 576)))
    assert std("xavier_normal", lin, gain="auto") == pytest.approx(math.sqrt(2) * math.sqrt(2 / 576))
    assert std("lecun_normal", conv) == pytest.approx(1 / math.sqrt(288))
    assert std("pytorch_default", conv) == pytest.approx(1 / math.sqrt(3 * 288))
    assert std("truncated_normal", lin) == pytest.approx(0.8796256610342398)
    assert std("uniform", lin) == pytest.approx(2 / math.sqrt(12))
    assert std("sparse", Site((10, 7), "relu"), sparsity=0.25) == pytest.approx(0.01 * math.sqrt(7 / 10))


@pytest.mark.parametrize("name", ["zeros", "ones", "constant"])
def test_constant_schemes(name: str) -> None:
    value = {"zeros": 0.0, "ones": 1.0, "constant": 0.3}[name]
    w, expected = _init_weight(nn.Conv2d(3, 5, 3), name, {"value": 0.3} if name == "constant" else {})
    assert torch.all(w == torch.tensor(value, dtype=torch.float32).double()) and expected == 0.0


def test_truncated_normal_cutoffs_are_in_std_units() -> None:
    torch.manual_seed(0)
    w, _ = _init_weight(
        nn.Linear(500, 400), "truncated_normal", {"mean": 1.0, "std": 0.1, "lower_sd": -1, "upper_sd": 0.5}
    )
    assert w.min() >= 1.0 - 0.1 - 1e-6 and w.max() <= 1.0 + 0.05 + 1e-6
    assert w.min() < 0.91 and w.max() > 1.04  # it does fill the whole interval


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("gain", [1.0, 0.5])
def test_orthogonal_gives_orthogonal_matrices(layer: str, gain: float) -> None:
    torch.manual_seed(0)
    module = LAYERS[layer]()
    _init_weight(module, "orthogonal", {"gain": gain})
    m = module.weight.detach().double().reshape(module.weight.shape[0], -1)
    gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    assert torch.allclose(gram, gain**2 * torch.eye(len(gram), dtype=torch.float64), atol=1e-5)


def test_identity_on_square_layers_is_the_identity_map() -> None:
    lin, conv = nn.Linear(20, 20), nn.Conv2d(6, 6, 3, padding=1)
    for layer in (lin, conv):
        _init_weight(layer, "identity", {"gain": 2.0, "fallback": None})
        nn.init.zeros_(layer.bias)
    x = torch.randn(4, 20)
    assert torch.allclose(lin(x), 2 * x)
    img = torch.randn(2, 6, 7, 7)
    assert torch.allclose(conv(img), 2 * img, atol=1e-6)


def test_identity_on_non_square_without_fallback_is_an_error_naming_the_key() -> None:
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32))
    spec = _spec("identity", {"fallback": None})
    with pytest.raises(InitError, match=r"init\.fallback.*(64|32)|not square.*init\.fallback"):
        initialize(model, spec, "relu")
    # with a fallback, the square layer gets the identity and the other one the fallback scheme
    stats = initialize(model, _spec("identity", {"fallback": "kaiming_normal"}), "relu")
    assert torch.equal(model[2].weight, torch.eye(32))
    assert stats[0].weight_std_expected == pytest.approx(math.sqrt(2 / 64))


def test_sparse_zeros_per_column() -> None:
    torch.manual_seed(0)
    layer = nn.Conv1d(8, 50, 3)
    _init_weight(layer, "sparse", {"sparsity": 0.3, "std": 1.0})
    m = layer.weight.detach().reshape(50, -1)
    assert torch.all((m == 0).sum(0) == math.ceil(0.3 * 50))


def test_pytorch_default_is_exactly_pytorchs_own_layer_init() -> None:
    """Same seed, same numbers as nn.Linear/nn.Conv2d's reset_parameters, bias included (bias=weight)."""
    for make in (lambda: nn.Linear(37, 11), lambda: nn.Conv2d(3, 8, 5)):
        ours, theirs = make(), make()
        torch.manual_seed(7)
        initialize(nn.Sequential(ours), _spec("pytorch_default", {}, bias="weight"), "relu")
        torch.manual_seed(7)
        theirs.reset_parameters()
        assert torch.equal(ours.weight, theirs.weight) and torch.equal(ours.bias, theirs.bias)


def _spec(
    name: str,
    params: dict[str, Any],
    bias: str = "zeros",
    bias_value: float = 0.0,
    output: str | None = None,
    output_params: dict[str, Any] | None = None,
) -> SimpleNamespace:
    return SimpleNamespace(
        name=name,
        params=params,
        bias=bias,
        bias_value=bias_value,
        output=output,
        output_params=output_params or {},
        rules=(),
    )


def test_bias_options_and_output_layer() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(100, 400), nn.ReLU(), nn.Linear(400, 400), nn.ReLU(), nn.Linear(400, 10))
    initialize(model, _spec("normal", {"std": 0.5}, bias="constant", bias_value=0.25), "relu")
    assert all(torch.all(m.bias == 0.25) for m in (model[0], model[2], model[4]))
    initialize(model, _spec("normal", {"std": 0.5}, bias="weight"), "relu")
    assert model[2].bias.std().item() == pytest.approx(0.5, rel=0.25)
    stats = initialize(model, _spec("kaiming_normal", {}, output="zeros"), "relu")
    assert torch.all(model[4].weight == 0) and model[2].weight.std().item() > 0.05
    assert [s.weight_std_expected for s in stats] == pytest.approx([math.sqrt(2 / 100), math.sqrt(2 / 400), 0.0])
    stats = initialize(model, _spec("xavier_normal", {}, output="normal", output_params={"std": 0.01}), "relu")
    assert stats[-1].weight_std_expected == 0.01 and stats[-1].weight_std == pytest.approx(0.01, rel=0.2)


def test_gain_auto_uses_the_models_activation() -> None:
    site = lambda act: Site((100, 100), act)  # noqa: E731
    p = check_params("xavier_normal", {"gain": "auto"})
    base = math.sqrt(2 / 200)
    assert SCHEMES["xavier_normal"].expected_std(p, site("tanh")) == pytest.approx(5 / 3 * base)
    assert SCHEMES["xavier_normal"].expected_std(p, site("relu")) == pytest.approx(math.sqrt(2) * base)
    assert SCHEMES["xavier_normal"].expected_std(p, site("selu")) == pytest.approx(0.75 * base)
    assert SCHEMES["xavier_normal"].expected_std(p, site("gelu")) == pytest.approx(math.sqrt(2) * base)
    assert SCHEMES["orthogonal"].expected_std(check_params("orthogonal", {"gain": "auto"}), site("sigmoid")) == (
        pytest.approx(0.1)
    )


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_lsuv_reaches_unit_output_variance(activation: str) -> None:
    torch.manual_seed(0)
    from initsweep.core.models import CNN, MLP

    x = torch.randn(512, 1, 8, 8) * 3 + 1
    for model in (
        MLP((64,), 10, depth=4, width=128, activation=activation),
        CNN((1, 8, 8), 10, (8, 16), None, 3, True, 32, activation),
    ):
        p = {"tol": 0.05, "max_iter": 20, "batch_size": 512}
        stats = initialize(model, _spec("lsuv", p), activation, batch=x)
        outputs = {}
        hooks = [
            m.register_forward_hook(lambda mod, i, o, n=n, out=outputs: out.__setitem__(n, o))
            for n, m in init_layers(model)
        ]
        with torch.no_grad():
            model(x)
        for h in hooks:
            h.remove()
        assert set(outputs) == {s.layer for s in stats}
        for name, out in outputs.items():
            assert abs(out.var().item() - 1) < 0.05, name
        assert all(s.weight_std_expected == s.weight_std for s in stats)  # expected = measured


class _Shared(nn.Module):
    """Applies the same Linear twice: LSUV cannot rescale it layer by layer."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        return self.out(torch.relu(self.fc(torch.relu(self.fc(x)))))


def test_lsuv_refuses_models_it_cannot_handle() -> None:
    x = torch.randn(64, 8)
    with pytest.raises(InitError, match="init=lsuv cannot handle this model: layer fc runs 2 times"):
        initialize(_Shared(), _spec("lsuv", {}), "relu", batch=x)
    with pytest.raises(InitError, match="variance 0"):  # all-zero input: nothing to rescale
        initialize(nn.Sequential(nn.Linear(8, 4)), _spec("lsuv", {}), "relu", batch=torch.zeros(64, 8))
    with pytest.raises(InitError, match="needs a batch"):
        initialize(nn.Sequential(nn.Linear(8, 4)), _spec("lsuv", {}), "relu")


@pytest.mark.parametrize(
    "name,params,key,hint",
    [
        ("normal", {"std": -0.1}, "init.std", "greater than or equal to 0"),
        ("truncated_normal", {"std": -1}, "init.std", "greater than or equal to 0"),
        ("sparse", {"std": -1}, "init.std", "greater than or equal to 0"),
        ("xavier_normal", {"gain": -1}, "init.gain", ">= 0"),
        ("orthogonal", {"gain": "big"}, "init.gain", "'auto'"),
        ("kaiming_normal", {"mode": "fan_avg"}, "init.mode", "'fan_in' or 'fan_out'"),
        ("variance_scaling", {"mode": "fan_max"}, "init.mode", "'fan_avg'"),
        ("kaiming_uniform", {"nonlinearity": "swish"}, "init.nonlinearity", "'leaky_relu'"),
        ("variance_scaling", {"distribution": "cauchy"}, "init.distribution", "'truncated_normal'"),
        ("sparse", {"sparsity": 1.0}, "init.sparsity", "less than 1"),
        ("sparse", {"sparsity": -0.1}, "init.sparsity", "greater than or equal to 0"),
        ("identity", {"fallback": "nope"}, "init.fallback", "eye"),
        ("uniform", {"low": 1, "high": 0}, "low", "high"),
        ("normal", {"sd": 1}, "init.sd", "mean, std"),
        ("lsuv", {"tol": 0}, "init.tol", "greater than 0"),
        ("custom", {}, "init._target_", "required"),
        ("custom", {"_target_": "no_such_module.fn"}, "init._target_", "cannot be imported"),
        ("custom", {"_target_": "torch.nn.init.no_such_fn"}, "init._target_", "cannot be imported"),
        ("custom", {"_target_": "math.pi"}, "init._target_", "not a callable"),
        ("custom", {"_target_": "torch.nn.init.orthogonal_", "gian": 2}, "init._target_", "gian"),
        ("nope", {}, "init.name", "xavier_normal"),
    ],
)
def test_bad_parameters_name_the_key(name: str, params: dict[str, Any], key: str, hint: str) -> None:
    with pytest.raises(ValueError) as e:
        check_params(name, params)
    assert key in str(e.value) and hint in str(e.value)


def test_bad_bias_and_output_settings() -> None:
    with pytest.raises(ValueError, match=r"init\.bias = 'weight': init=orthogonal"):
        check_init("orthogonal", {}, "weight", None, {})
    with pytest.raises(ValueError, match=r"init\.output = 'lsuv'"):
        check_init("normal", {}, "zeros", "lsuv", {})
    with pytest.raises(ValueError, match=r"init\.output_params\.std"):
        check_init("normal", {}, "zeros", "normal", {"std": -1})
    with pytest.raises(ValueError, match=r"init\.output_params: given but init\.output is null"):
        check_init("normal", {}, "zeros", None, {"std": 1})
    check_init("normal", {}, "weight", "zeros", {})  # fine


def test_custom_initializer_and_torch_functions() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(30, 60), nn.Tanh(), nn.Linear(60, 5))
    stats = initialize(model, _spec("custom", {"_target_": "torch.nn.init.orthogonal_", "gain": 3.0}), "tanh")
    w = model[0].weight.detach()
    assert torch.allclose(w.T @ w, 9 * torch.eye(30), atol=1e-4)
    assert [s.weight_std_expected for s in stats] == [s.weight_std for s in stats]  # measured
    # a function that fails on a tensor: a clear message naming the target and the layer
    with pytest.raises(InitError, match=r"layer 0: init\._target_ = 'torch\.nn\.init\.eye_' failed"):
        initialize(nn.Sequential(nn.Conv2d(2, 2, 3)), _spec("custom", {"_target_": "torch.nn.init.eye_"}), "relu")


def test_every_scheme_has_one_config_file_with_the_schema_defaults() -> None:
    files = {p.stem: yaml.safe_load(p.read_text()) for p in (CONF / "init").glob("*.yaml")}
    assert set(files) == set(SCHEMES), "conf/init/ must hold exactly one file per scheme"
    for name, content in files.items():
        assert content.pop("name") == name
        if name == "custom":
            assert content == {"_target_": None}
            continue
        parsed = check_params(name, content)
        assert parsed == SCHEMES[name].params(), f"conf/init/{name}.yaml differs from the schema defaults"
        assert set(content) == set(SCHEMES[name].params.model_fields), f"conf/init/{name}.yaml lists every parameter"


def test_catalogue_listing_covers_every_scheme_and_is_in_the_readme() -> None:
    import importlib.util

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location("inits_script", ROOT / "scripts" / "inits.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = module.catalogue_table()
    rows = [line for line in table.splitlines()[2:]]
    assert [r.split("|")[1].strip(" `") for r in rows] == list(SCHEMES)
    assert "`lower_sd=-2.0`" in table and "`fallback=eye`" in table and "`_target_` (required)" in table
    doc = ROOT / "docs" / "initializers.md"
    assert table in doc.read_text(), "docs/initializers.md is out of date: paste `python scripts/inits.py`"


def test_custom_target_whose_module_fails_to_import(tmp_path, monkeypatch) -> None:
    (tmp_path / "broken_inits.py").write_text("def fill_(tensor:\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match=r"init\._target_ = 'broken_inits\.fill_': importing it failed: SyntaxError"):
        check_params("custom", {"_target_": "broken_inits.fill_"})


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("gain", [1.0, 1.5])
def test_delta_orthogonal_centre_tap_is_orthogonal_and_the_other_taps_zero(layer: str, gain: float) -> None:
    torch.manual_seed(0)
    module = LAYERS[layer]()
    _, expected = _init_weight(module, "delta_orthogonal", {"gain": gain})
    w = module.weight.detach().double()
    if w.dim() == 2:  # Linear: orthogonal
        centre = w
    else:
        index = (slice(None), slice(None), *(k // 2 for k in w.shape[2:]))
        centre = w[index].clone()
        w[index] = 0
        assert torch.count_nonzero(w) == 0  # every other tap
    gram = centre @ centre.T if centre.shape[0] <= centre.shape[1] else centre.T @ centre
    assert torch.allclose(gram, gain**2 * torch.eye(len(gram), dtype=torch.float64), atol=1e-5)
    rms = module.weight.detach().double().pow(2).mean().sqrt().item()
    assert expected == pytest.approx(rms, rel=1e-5)


def test_a_delta_orthogonal_conv_net_preserves_norms() -> None:
    """Six 3x3 convs 3 -> 16 -> 16 -> ... -> 32 (out >= in, same padding), no nonlinearity: |f(x)| = |x| for
    every input, circular padding included; the flattened orthogonal init of the same net does not."""
    torch.manual_seed(0)
    channels = [3, 16, 16, 16, 32, 32, 32]
    for mode in ("zeros", "circular"):
        net = nn.Sequential(
            *(nn.Conv2d(a, b, 3, padding=1, bias=False, padding_mode=mode) for a, b in zip(channels, channels[1:]))
        )
        initialize(net, _spec("delta_orthogonal", {}), "linear")
        x = torch.randn(5, 3, 9, 9, dtype=torch.float64)
        y = net.double()(x)
        assert torch.allclose(y.flatten(1).norm(dim=1), x.flatten(1).norm(dim=1), rtol=1e-6)
    initialize(net, _spec("orthogonal", {}), "linear")
    ratios = net.double()(x).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)
    assert (ratios - 1).abs().max() > 0.1


def test_identity_on_convs_is_a_dirac_without_duplicate_units_or_a_refusal_naming_the_layer() -> None:
    from initsweep.diagnostics.signal import duplicate_units

    fewer = nn.Conv2d(8, 4, 3, padding=1)  # out < in: output channel i copies input channel i
    _init_weight(fewer, "identity", {})
    nn.init.zeros_(fewer.bias)
    img = torch.randn(2, 8, 5, 5)
    assert torch.allclose(fewer(img), img[:, :4], atol=1e-6) and duplicate_units(fewer) == 0
    model = nn.Sequential(nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Conv2d(4, 12, 3), nn.Flatten(), nn.Linear(12, 2))
    with pytest.raises(InitError, match=r"^layer 2: .*4 -> 12.*8 of its 12 filters all zero"):
        initialize(model, _spec("identity", {}), "relu")
    initialize(model, _spec("identity", {"fallback": "delta_orthogonal"}), "relu")
    assert duplicate_units(model[2]) == 0 and torch.equal(model[0].weight[:, :, 1, 1], torch.eye(4))
