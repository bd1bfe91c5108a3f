"""Parametrizations (``parametrization=sp|ntk|mup``): how a weight's init scale and learning rate change with
the width of the network (Yang & Hu 2021, Tensor Programs IV; Yang et al. 2022, Tensor Programs V).

Each is applied in its equivalent *SP form*: a forward multiplier c on a weight can be moved into its init
(std x c) and its lr (SGD: x c^2, Adam: x c; exact up to Adam's eps and weight decay), so the model keeps its
plain modules and weights, and only two things change: the init std of some weights (after the ``init``
scheme) and one lr multiplier per optimizer parameter group. Every multiplier is relative to ``base_width``
(at which ntk and mup equal sp): ``m = width / base_width``, with ``m_in`` the fan-in and ``m_out`` the fan-out
multiplier of a layer. The table (docs/parametrizations.md):

=========  =========================  ==============  ============  ==============
parametr.  role                       init std        SGD lr        Adam lr
=========  =========================  ==============  ============  ==============
ntk        hidden, output W           1               1 / m_in      1 / sqrt(m_in)
mup        input W                    1               m_out         1
mup        hidden W                   1               m_out / m_in  1 / m_in
mup        output W                   1 / sqrt(m_in)  1 / m_in      1 / m_in
mup        vector (bias, norm param)  1               m             1
=========  =========================  ==============  ============  ==============

Everything not listed is 1 (all of sp; ntk's input weights and vectors; the output layer's bias, whose size
does not grow with width). Roles: the first Linear is the input layer, the output layer (``out``, else the
last Linear) the output layer, every other Linear a hidden layer; a Linear layer's bias and a norm layer's
parameters are vectors. ntk and mup need a model of Linear (and norm) layers with at least one hidden width.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

from torch import nn

from initsweep.core.config import ConfigError, ParametrizationConfig
from initsweep.core.initializers import LayerStats, init_layers, output_layer

Role = Literal["input", "hidden", "output", "vector", "output_bias"]
ROLES: tuple[Role, ...] = ("input", "hidden", "output", "vector", "output_bias")
NORMS = (nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm)


@dataclass(frozen=True)
class Rule:
    """Multipliers of one parameter: of its init std (after the scheme), and of the lr under SGD and Adam."""

    init: float = 1.0
    sgd_lr: float = 1.0
    adam_lr: float = 1.0

    def lr(self, optimizer: str) -> float:
        """The lr multiplier under ``optimizer`` (sgd or adam)."""
        return self.sgd_lr if optimizer == "sgd" else self.adam_lr


def rule(name: str, role: Role, m_in: float = 1.0, m_out: float = 1.0) -> Rule:
    """The table above: the multipliers of a ``role`` parameter under parametrization ``name``, with fan-in
    multiplier ``m_in`` and fan-out multiplier ``m_out`` (a vector's length / base_width is its ``m_out``)."""
    if name == "ntk" and role in ("hidden", "output"):
        return Rule(1.0, 1 / m_in, 1 / math.sqrt(m_in))
    if name == "mup":
        table = {
            "input": Rule(1.0, m_out, 1.0),
            "hidden": Rule(1.0, m_out / m_in, 1 / m_in),
            "output": Rule(1 / math.sqrt(m_in), 1 / m_in, 1 / m_in),
            "vector": Rule(1.0, m_out, 1.0),
        }
        return table.get(role, Rule())
    return Rule()


@dataclass(frozen=True)
class Plan:
    """A model's parametrization: each parameter's (by name) role and rule, and the width multiplier of the
    output layer's fan-in (the model's width / base_width). Empty for sp."""

    name: str
    width_mult: float
    roles: Mapping[str, Role]
    rules: Mapping[str, Rule]

    def lr_multipliers(self, optimizer: str) -> dict[str, float]:
        """Each parameter's lr multiplier under ``optimizer``; empty for sp (one optimizer group, as before)."""
        return {key: r.lr(optimizer) for key, r in self.rules.items()}

    def params(self, optimizer: str) -> dict[str, str]:
        """MLflow params: ``parametrization.width_mult`` and ``parametrization.lr_mult.<role>`` (the distinct
        multipliers of the role's parameters, comma-separated); nothing for sp."""
        if not self.rules:
            return {}
        out = {"parametrization.width_mult": f"{self.width_mult:.6g}"}
        for role in ROLES:
            values = dict.fromkeys(f"{self.rules[k].lr(optimizer):.6g}" for k, r in self.roles.items() if r == role)
            if values:
                out[f"parametrization.lr_mult.{role}"] = ",".join(values)
        return out


def _refuse(name: str, why: str) -> ConfigError:
    return ConfigError(f"Invalid configuration:\n  parametrization.name = {name!r}: {why}; use parametrization=sp")


def roles(model: nn.Module, name: str = "mup") -> tuple[dict[str, Role], dict[str, tuple[int, int]]]:
    """Each parameter's role and its (fan-in, fan-out) in units (a vector: (its length, its length)).
    ConfigError (naming parametrization ``name``) for a parameter outside Linear and norm layers, or a model
    without a hidden width (fewer than two Linear layers)."""
    linears = [(n, m) for n, m in init_layers(model) if isinstance(m, nn.Linear)]
    if len(linears) < 2:
        raise _refuse(name, "needs a model with at least one hidden layer of Linear layers (a width to scale)")
    first, out = linears[0][0], output_layer(linears)
    kinds: dict[str, Role] = {}
    sizes: dict[str, tuple[int, int]] = {}
    for path, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            key = f"{path}.{pname}" if path else pname
            if isinstance(module, nn.Linear) and pname == "weight":
                kinds[key] = "input" if path == first else "output" if path == out else "hidden"
                sizes[key] = (module.in_features, module.out_features)
            elif (isinstance(module, nn.Linear) and pname == "bias") or isinstance(module, NORMS):
                kinds[key] = "output_bias" if path == out else "vector"
                sizes[key] = (p.numel(), p.numel())
            else:
                kind = type(module).__name__
                raise _refuse(name, f"parameter {key!r} of a {kind} is neither a Linear nor a norm layer's")
    return kinds, sizes


def plan(model: nn.Module, cfg: ParametrizationConfig) -> Plan:
    """The parametrization of ``model``: every parameter's role and rule (nothing for sp). ConfigError when
    ntk or mup cannot classify the model (:func:`roles`)."""
    if cfg.name == "sp":
        return Plan("sp", 1.0, {}, {})
    kinds, sizes = roles(model, cfg.name)
    b = cfg.base_width
    rules = {key: rule(cfg.name, kinds[key], sizes[key][0] / b, sizes[key][1] / b) for key in kinds}
    out_weight = next(k for k, r in kinds.items() if r == "output")
    return Plan(cfg.name, sizes[out_weight][0] / b, kinds, rules)


def scale_init(model: nn.Module, p: Plan, stats: list[LayerStats]) -> list[LayerStats]:
    """Multiply each parameter by its rule's init multiplier (in place, after the init scheme); returns
    ``stats`` with the weights' measured and expected statistics scaled alike."""
    factors = {key: r.init for key, r in p.rules.items() if r.init != 1.0}
    params = dict(model.named_parameters())
    for key, factor in factors.items():
        params[key].data.mul_(factor)
    out = []
    for s in stats:
        f = factors.get(f"{s.layer}.weight", 1.0)
        w = (s.weight_mean * f, s.weight_std * f, s.weight_std_expected * f)
        out.append(replace(s, weight_mean=w[0], weight_std=w[1], weight_std_expected=w[2]) if f != 1.0 else s)
    return out
