"""The catalogue of weight-initialization schemes.

Each scheme fills a weight tensor in place, like the ``torch.nn.init`` functions, and states the
standard deviation its formula promises for a given shape, so that every run can compare the measured
statistics with the theory. Shapes follow PyTorch: Linear ``(out, in)``, Conv ``(out, in, *kernel)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from torch import Tensor, nn

# ---------------------------------------------------------------------------------------------------
# Parameter schemas


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(_Params):
    pass


class NormalParams(_Params):
    mean: float = 0.0
    std: float = Field(1.0, ge=0)


class UniformParams(_Params):
    low: float = -1.0
    high: float = 1.0

    @model_validator(mode="after")
    def _ordered(self) -> "UniformParams":
        if self.low > self.high:
            raise ValueError(f"init.low = {self.low} must not exceed init.high = {self.high}")
        return self


# ---------------------------------------------------------------------------------------------------
# Fill functions: pure in-place operations on one tensor, no model knowledge.


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight: fan_in = in * prod(kernel), fan_out = out * prod(kernel)."""
    if len(shape) < 2:
        raise ValueError(f"fans need a weight of 2 or more dimensions, got shape {tuple(shape)}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


@torch.no_grad()
def constant_(w: Tensor, value: float) -> Tensor:
    """W = value."""
    return w.fill_(value)


@torch.no_grad()
def normal_(w: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    """W ~ N(mean, std^2)."""
    return w.normal_(mean, std)


@torch.no_grad()
def uniform_(w: Tensor, low: float = -1.0, high: float = 1.0) -> Tensor:
    """W ~ U(low, high); std = (high - low) / sqrt(12)."""
    return w.uniform_(low, high)


# ---------------------------------------------------------------------------------------------------
# The catalogue


@dataclass(frozen=True)
class Scheme:
    """One initializer: its parameters, how it fills a weight, and the std its formula promises."""

    name: str
    formula: str
    params: type[_Params]
    fill: Callable[[Tensor, Any, str], None]  # (weight, params, activation)
    expected_std: Callable[[tuple[int, ...], Any, str], float]  # (shape, params, activation)


SCHEMES: dict[str, Scheme] = {
    s.name: s
    for s in (
        Scheme("zeros", "W = 0", NoParams, lambda w, p, a: constant_(w, 0.0), lambda s, p, a: 0.0),
        Scheme("ones", "W = 1", NoParams, lambda w, p, a: constant_(w, 1.0), lambda s, p, a: 0.0),
        Scheme(
            "normal",
            "W ~ N(mean, std^2)",
            NormalParams,
            lambda w, p, a: normal_(w, p.mean, p.std),
            lambda s, p, a: p.std,
        ),
        Scheme(
            "uniform",
            "W ~ U(low, high), std = (high - low) / sqrt(12)",
            UniformParams,
            lambda w, p, a: uniform_(w, p.low, p.high),
            lambda s, p, a: (p.high - p.low) / math.sqrt(12),
        ),
    )
}


def _pydantic_message(name: str, error: ValidationError) -> str:
    parts = []
    for err in error.errors(include_url=False):
        key = ".".join(["init", *map(str, err["loc"])])
        if not err["loc"]:  # a check across parameters: its message names the keys
            parts.append(err["msg"].removeprefix("Value error, "))
        elif err["type"] == "extra_forbidden":
            allowed = ", ".join(SCHEMES[name].params.model_fields) or "none"
            parts.append(f"{key}: unknown parameter of init={name} (its parameters: {allowed})")
        else:
            parts.append(f"{key} = {err.get('input')!r}: {err['msg']}")
    return "\n  ".join(parts)


def check_params(name: str, params: dict[str, Any]) -> _Params:
    """Validate a scheme's parameters; ValueError names the key and what is allowed."""
    if name not in SCHEMES:
        raise ValueError(f"init.name = {name!r}: unknown initializer; available: {', '.join(SCHEMES)}")
    try:
        return SCHEMES[name].params.model_validate(params)
    except ValidationError as e:
        raise ValueError(_pydantic_message(name, e)) from None


# ---------------------------------------------------------------------------------------------------
# Applying a scheme to a model


@dataclass(frozen=True)
class LayerStats:
    """Statistics of one layer's weight right after initialization."""

    layer: str
    weight_mean: float
    weight_std: float
    weight_std_expected: float


def init_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers an initializer touches, with their stable names: every Linear and Conv."""
    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    return [(name, m) for name, m in model.named_modules() if isinstance(m, kinds)]


def initialize(
    model: nn.Module,
    name: str,
    params: dict[str, Any],
    activation: str,
    bias: str = "zeros",
    bias_value: float = 0.0,
) -> list[LayerStats]:
    """Initialize every Linear/Conv layer of ``model`` in place and return each weight's statistics.

    Biases are set by ``bias``: ``zeros``, ``constant`` (= bias_value) or ``weight`` (the weight scheme,
    applied to the bias viewed as a (1, n) matrix).
    """
    scheme = SCHEMES[name]
    p = check_params(name, params)
    stats = []
    for layer_name, module in init_layers(model):
        w = module.weight
        scheme.fill(w, p, activation)
        if module.bias is not None:
            if bias == "weight":
                scheme.fill(module.bias.view(1, -1), p, activation)
            else:
                constant_(module.bias, bias_value if bias == "constant" else 0.0)
        stats.append(
            LayerStats(
                layer=layer_name,
                weight_mean=w.mean().item(),
                weight_std=w.std().item() if w.numel() > 1 else 0.0,
                weight_std_expected=float(scheme.expected_std(tuple(w.shape), p, activation)),
            )
        )
    return stats
