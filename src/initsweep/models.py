"""Models built from config. Layers carry stable names (fc1, fc2, ..., out) used in every metric key."""

from __future__ import annotations

import math
from collections import OrderedDict

from torch import nn

from initsweep.config import MLPConfig

ACTIVATION_MODULES: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "linear": nn.Identity,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "selu": nn.SELU,
}


class MLP(nn.Sequential):
    """input -> depth x [fc{i}: Linear(width) -> act{i}] -> out: Linear(num_classes)."""

    def __init__(self, in_features: int, num_classes: int, depth: int, width: int, activation: str):
        layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
        fan_in = in_features
        for i in range(1, depth + 1):
            layers[f"fc{i}"] = nn.Linear(fan_in, width)
            layers[f"act{i}"] = ACTIVATION_MODULES[activation]()
            fan_in = width
        layers["out"] = nn.Linear(fan_in, num_classes)
        super().__init__(layers)
        self.activation = activation


def build_model(cfg: MLPConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The network a model config describes, for inputs of ``input_shape`` (without the batch dim)."""
    if cfg.name == "mlp":
        return MLP(math.prod(input_shape), num_classes, cfg.depth, cfg.width, cfg.activation)
    raise ValueError(f"model.name = {cfg.name!r}: unknown model")  # pragma: no cover
