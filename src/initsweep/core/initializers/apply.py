"""Applying a scheme to a model: which layers, the output layer and biases, LSUV, and the statistics of each
weight right after initialization (measured next to the std its formula promises)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from initsweep.core.initializers.catalogue import SCHEMES, InitError, LSUVParams, OrthogonalParams, Scheme, Site
from initsweep.core.initializers.fills import constant_
from initsweep.core.initializers.validation import check_params


@dataclass(frozen=True)
class LayerStats:
    """Statistics of one layer's weight (and bias, None without one) right after initialization."""

    layer: str
    weight_mean: float
    weight_std: float
    weight_std_expected: float
    bias_mean: float | None = None
    bias_std: float | None = None
    bias_std_expected: float | None = None


class RuleSpec(Protocol):
    """One per-module rule (``config.InitRule`` is one): glob ``modules`` and what to do to the matches."""

    modules: str
    name: str | None
    params: dict[str, Any]
    weight: float | None
    bias: float | None
    scale: float | None


class InitSpec(Protocol):
    """What :func:`initialize` needs of an init config (``config.InitConfig`` is one)."""

    name: str
    bias_value: float
    output: str | None

    @property
    def bias(self) -> str: ...  # read-only, so that InitConfig's Literal of the three choices fits

    @property
    def params(self) -> dict[str, Any]: ...

    @property
    def output_params(self) -> dict[str, Any]: ...

    @property
    def rules(self) -> Sequence[RuleSpec]: ...


LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
Layer = nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d  # a module of LAYER_TYPES


def init_layers(model: nn.Module) -> list[tuple[str, Layer]]:
    """The layers an initializer touches, with their stable names: every Linear and Conv."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, LAYER_TYPES)]


def output_layer(layers: Sequence[tuple[str, nn.Module]]) -> str | None:
    """Name of the output layer: the layer called ``out``, else the last one."""
    names = [n for n, _ in layers]
    return "out" if "out" in names else (names[-1] if names else None)


def _mean_std(t: Tensor) -> tuple[float, float]:
    return t.mean().item(), t.std().item() if t.numel() > 1 else 0.0


def _stats(layer: str, module: nn.Module, expected: float | None, bias_expected: float | None) -> LayerStats:
    """Measured mean and std of the weight and bias next to the std their formulas promise (None: measured)."""
    w = _tensor(module, "weight")
    assert w is not None  # a Linear/Conv, or a module a rule set the weight of
    mean, std = _mean_std(w)
    b = _tensor(module, "bias")
    if b is None:
        return LayerStats(layer, mean, std, std if expected is None else float(expected))
    b_mean, b_std = _mean_std(b)
    return LayerStats(
        layer, mean, std, std if expected is None else float(expected),
        b_mean, b_std, b_std if bias_expected is None else float(bias_expected),
    )  # fmt: skip


@torch.no_grad()
def _fill_bias(module: nn.Module, scheme: Scheme, p: Any, site: Site, bias: str, value: float) -> float | None:
    """Fill the layer's bias (the scheme's own rule, else ``init.bias``); returns the std its rule promises
    (None: only a measurement can tell)."""
    b = _tensor(module, "bias")
    if b is None:  # a layer without bias
        return None
    if scheme.bias_std is not None:
        std = scheme.bias_std(p)
        b.normal_(0.0, std)
        return std
    if bias == "weight":
        scheme.fill(b, p, site)  # iid: the weight's distribution (custom: fn(bias, **kwargs))
        return scheme.expected_std(p, site)
    constant_(b, value if bias == "constant" else 0.0)
    return 0.0


def initialize(model: nn.Module, init: InitSpec, activation: str, batch: Tensor | None = None) -> list[LayerStats]:
    """Initialize every Linear/Conv layer of ``model`` in place and return each weight's statistics.

    The output layer gets ``init.output`` (with ``init.output_params``) when set. Biases follow
    ``init.bias``: ``zeros``, ``constant`` (= bias_value) or ``weight`` (drawn from the layer's weight
    distribution). ``lsuv`` needs ``batch`` (training inputs). Raises InitError where the scheme cannot be
    applied (identity on a non-square weight without fallback, lsuv on a model it cannot rescale).
    """
    p = check_params(init.name, init.params)
    layers = init_layers(model)
    out_name = output_layer(layers)
    plan: dict[str, tuple[Scheme, Any]] = {}
    for layer_name, _ in layers:
        if layer_name == out_name and init.output is not None:
            plan[layer_name] = (
                SCHEMES[init.output],
                check_params(init.output, init.output_params, "init.output_params"),
            )
        elif init.name == "lsuv":
            plan[layer_name] = (SCHEMES["orthogonal"], OrthogonalParams(gain=1.0))  # LSUV's pre-init
        else:
            plan[layer_name] = (SCHEMES[init.name], p)

    expected: dict[str, float | None] = {}
    bias_expected: dict[str, float | None] = {}
    for layer_name, module in layers:
        scheme, sp = plan[layer_name]
        site = Site(tuple(module.weight.shape), activation)
        try:
            scheme.fill(module.weight, sp, site)
        except InitError as e:
            raise InitError(f"layer {layer_name}: {e}") from None
        bias_expected[layer_name] = _fill_bias(module, scheme, sp, site, init.bias, init.bias_value)
        expected[layer_name] = scheme.expected_std(sp, site)

    if init.name == "lsuv":
        rescaled = [(n, m) for n, m in layers if not (n == out_name and init.output is not None)]
        lsuv_(model, rescaled, batch, p)
        for n, _ in rescaled:
            expected[n] = None  # data-dependent: the measured value
    expected.update(apply_rules(model, init.rules, activation, expected))
    for index, rule in enumerate(init.rules):  # a constant bias
        if rule.bias is not None:
            bias_expected.update((n, 0.0) for n, _ in _rule_targets(model, rule, index))
    modules = dict(model.named_modules())
    return [_stats(n, modules[n], expected[n], bias_expected.get(n)) for n in expected]


def _rule_targets(model: nn.Module, rule: RuleSpec, index: int) -> list[tuple[str, nn.Module]]:
    """The modules a rule acts on: those whose path matches its glob and that hold what it sets."""
    key = f"init.rules[{index}]"
    matched = [(n, m) for n, m in model.named_modules() if n and fnmatchcase(n, rule.modules)]
    if not matched:
        paths = [n for n, m in model.named_modules() if n and isinstance(getattr(m, "weight", None), Tensor)]
        shown = ", ".join(paths[:8]) + (", ..." if len(paths) > 8 else "")
        raise InitError(f"{key}.modules = {rule.modules!r}: matches no module of the model (modules: {shown})")
    if rule.name is not None:
        matched = [(n, m) for n, m in matched if isinstance(m, LAYER_TYPES)]
        what = f"name={rule.name} applies to Linear/Conv layers only"
    elif rule.weight is not None or rule.scale is not None:
        matched = [(n, m) for n, m in matched if isinstance(getattr(m, "weight", None), Tensor)]
        what = "no matching module has a weight"
    else:
        matched = [(n, m) for n, m in matched if isinstance(getattr(m, "bias", None), Tensor)]
        what = "no matching module has a bias"
    if not matched:
        raise InitError(f"{key}.modules = {rule.modules!r}: {what}")
    return matched


def check_rules(model: nn.Module, rules: Sequence[RuleSpec]) -> None:
    """InitError naming the first rule whose glob matches no module of ``model`` holding what it sets."""
    for index, rule in enumerate(rules):
        _rule_targets(model, rule, index)


def _tensor(module: nn.Module, name: str) -> Tensor | None:
    value = getattr(module, name, None)
    return value if isinstance(value, Tensor) else None


def _apply_rule(module: nn.Module, rule: RuleSpec, activation: str, key: str, std: float | None) -> float | None:
    """Apply one rule to one module; returns the std its weight should have now."""
    w, b = _tensor(module, "weight"), _tensor(module, "bias")
    if rule.name is not None and w is not None:
        scheme, p = SCHEMES[rule.name], check_params(rule.name, rule.params, key)
        site = Site(tuple(w.shape), activation)
        scheme.fill(w, p, site)
        std = scheme.expected_std(p, site)
    if rule.weight is not None and w is not None:
        constant_(w, rule.weight)
        std = 0.0
    if rule.bias is not None and b is not None:
        constant_(b, rule.bias)
    if rule.scale is not None and w is not None:
        w.mul_(rule.scale)
        std = None if std is None else std * abs(rule.scale)
    return std


@torch.no_grad()
def apply_rules(
    model: nn.Module, rules: Sequence[RuleSpec], activation: str, expected: dict[str, float | None]
) -> dict[str, float | None]:
    """Apply ``init.rules`` in order and return the std each touched weight should have: a scheme's formula
    (``name``), 0 (a constant ``weight``), the previous value x ``scale`` (None: the measured one). A rule's
    glob must match a module that holds what it sets (InitError otherwise, naming the rule)."""
    out: dict[str, float | None] = {}
    for index, rule in enumerate(rules):
        key = f"init.rules[{index}]"
        for name, module in _rule_targets(model, rule, index):
            try:
                std = _apply_rule(module, rule, activation, key, out.get(name, expected.get(name)))
            except InitError as e:
                raise InitError(f"{key}, module {name}: {e}") from None
            if _tensor(module, "weight") is not None:
                out[name] = std
    return out


@torch.no_grad()
def lsuv_(model: nn.Module, layers: list[tuple[str, Layer]], batch: Tensor | None, p: LSUVParams) -> dict[str, float]:
    """Layer-sequential unit variance (Mishkin & Matas 2016, "All you need is a good init"): after an
    orthogonal pre-init, for each layer in forward order, W <- W / sqrt(Var(output)) on a batch of training
    inputs until |Var(output) - 1| < tol or max_iter rounds. torch has no counterpart.

    Returns each layer's final output variance. Raises InitError for what it cannot handle: no data, a
    layer the forward pass never reaches or reaches more than once (shared weights), or an output with
    zero or non-finite variance (nothing to rescale).
    """
    if batch is None or len(batch) < 2:
        raise InitError("init=lsuv needs a batch of training data (2 or more samples)")
    if len(batch) > p.batch_size:
        batch = batch[torch.randperm(len(batch))[: p.batch_size].to(batch.device)]
    captured: dict[str, list[Tensor]] = {n: [] for n, _ in layers}
    handles = [m.register_forward_hook(lambda mod, inp, out, n=n: captured[n].append(out)) for n, m in layers]
    was_training = model.training
    model.eval()
    variances: dict[str, float] = {}
    try:
        for name, module in layers:
            for rounds in range(p.max_iter + 1):
                for v in captured.values():
                    v.clear()
                model(batch)
                outs = captured[name]
                if len(outs) != 1:
                    raise InitError(
                        f"init=lsuv cannot handle this model: layer {name} runs {len(outs)} times in one forward "
                        f"pass (it needs each Linear/Conv layer exactly once, in sequence); use another init"
                    )
                var = outs[0].double().var().item()
                if not math.isfinite(var) or var <= 1e-12:
                    raise InitError(
                        f"init=lsuv cannot handle this model: layer {name}'s output has variance {var:.3g} on the "
                        f"data batch, so no rescaling can make it 1 (dead units or constant input?); use another "
                        f"init, or check init.bias / init.bias_value"
                    )
                variances[name] = var
                if abs(var - 1.0) < p.tol or rounds == p.max_iter:
                    break
                module.weight.mul_(1.0 / math.sqrt(var))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return variances
