"""Models built from config. Layers carry stable names (conv1, ..., fc1, fc2, ..., out) used in every metric key."""

from __future__ import annotations

import math
from collections import OrderedDict

from torch import Tensor, nn

from initsweep.core.config import CNNConfig, ConfigError, MLPConfig, ModelConfig

ACTIVATION_MODULES: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "linear": nn.Identity,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "selu": nn.SELU,
}


def loss_fn(logits: Tensor, y: Tensor, reduction: str = "mean") -> Tensor:
    """The classification loss of a model's output: one output unit (sigmoid head) = binary cross-entropy
    -[y ln s(z) + (1 - y) ln(1 - s(z))] on the logit z; C > 1 units (softmax head) = cross-entropy."""
    if logits.shape[-1] == 1:
        return nn.functional.binary_cross_entropy_with_logits(logits[:, 0], y.to(logits.dtype), reduction=reduction)
    return nn.functional.cross_entropy(logits, y, reduction=reduction)


def predict(logits: Tensor) -> Tensor:
    """Predicted classes: z > 0 (sigmoid head, s(z) > 0.5) or argmax (softmax head)."""
    if logits.shape[-1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(-1)


def output_units(output: str, num_classes: int) -> int:
    """Units of the output layer: num_classes (softmax) or 1 (sigmoid, two classes only)."""
    if output == "sigmoid":
        if num_classes != 2:
            raise ConfigError(
                f"model.output = 'sigmoid': needs two classes, the data has {num_classes}; use model.output=softmax"
            )
        return 1
    return num_classes


class MLP(nn.Sequential):
    """input -> [fc{i}: Linear(w_i) -> act{i}] for each hidden width w_i -> out: Linear(outputs).
    The hidden widths are ``widths`` when given, else ``depth`` x ``width``."""

    def __init__(
        self,
        in_features: int,
        outputs: int,
        depth: int = 2,
        width: int = 256,
        activation: str = "relu",
        widths: tuple[int, ...] | None = None,
    ):
        layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
        fan_in = in_features
        for i, units in enumerate(widths if widths is not None else (width,) * depth, start=1):
            layers[f"fc{i}"] = nn.Linear(fan_in, units)
            layers[f"act{i}"] = ACTIVATION_MODULES[activation]()
            fan_in = units
        layers["out"] = nn.Linear(fan_in, outputs)
        super().__init__(layers)
        self.activation = activation


class CNN(nn.Sequential):
    """Small conv net for (C, H, W) images (Conv2d) or (C, L) signals (Conv1d):

    conv{i}: Conv(channels[i-1] -> channels[i], kernel k, padding k // 2) -> act{i} -> pool{i}: MaxPool(2)
    (skipped once the size is below 2), then flatten -> fc1: Linear(width) -> fc_act1 (when width > 0)
    -> out: Linear(num_classes). Conv weights have fan_in = in_channels * k^d, fan_out = out_channels * k^d.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        channels: tuple[int, ...],
        kernel_size: int,
        pool: bool,
        width: int,
        activation: str,
    ):
        if len(input_shape) not in (2, 3):
            raise ConfigError(
                f"model.name = 'cnn': needs (channels, length) or (channels, height, width) samples, the data "
                f"gives shape {tuple(input_shape)}; use model=mlp"
            )
        conv, maxpool = (nn.Conv1d, nn.MaxPool1d) if len(input_shape) == 2 else (nn.Conv2d, nn.MaxPool2d)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        in_ch, size = input_shape[0], list(input_shape[1:])
        for i, out_ch in enumerate(channels, start=1):
            layers[f"conv{i}"] = conv(in_ch, out_ch, kernel_size, padding=kernel_size // 2)
            layers[f"act{i}"] = ACTIVATION_MODULES[activation]()
            if pool and min(size) >= 2:
                layers[f"pool{i}"] = maxpool(2)
                size = [s // 2 for s in size]
            in_ch = out_ch
        layers["flatten"] = nn.Flatten()
        fan_in = in_ch * math.prod(size)
        if width > 0:
            layers["fc1"] = nn.Linear(fan_in, width)
            layers["fc_act1"] = ACTIVATION_MODULES[activation]()
            fan_in = width
        layers["out"] = nn.Linear(fan_in, num_classes)
        super().__init__(layers)
        self.activation = activation


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The network a model config describes, for inputs of ``input_shape`` (without the batch dim)."""
    outputs = output_units(cfg.output, num_classes)
    if isinstance(cfg, MLPConfig):
        return MLP(math.prod(input_shape), outputs, activation=cfg.activation, widths=cfg.hidden)
    if isinstance(cfg, CNNConfig):
        return CNN(input_shape, outputs, cfg.conv_channels, cfg.kernel_size, cfg.pool, cfg.width, cfg.activation)
    raise ValueError(f"model.name = {cfg.name!r}: unknown model")  # pragma: no cover
