"""Models built from config: any ``torch.nn.Module`` named by ``model._target_``, plus the built-ins.

A model config is ``_target_`` (a dotted path to an ``nn.Module`` class or a function returning one) and its
keyword arguments; the dataset's ``input_shape`` (a sample's shape, without the batch dim) and
``num_classes`` are passed when the callable has parameters of those names. :func:`build_model` checks all
of it and turns every problem into one :class:`ConfigError` naming the key.

Built-ins (``conf/model/*.yaml``): :class:`MLP`, :class:`CNN`, :class:`ResidualMLP` (pre-LN) and
:class:`ResNet` (CIFAR-style, ResNet-20 by default). Layers carry stable module paths (``fc1``, ``out``,
``blocks.0.fc2``, ``layer1.0.conv2``) used in every per-layer statistic. A model's ``activation`` attribute
(a name of ``ACTIVATIONS``) tells the initializers which gain ``auto`` means; without one, relu is assumed.
"""

from __future__ import annotations

import inspect
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import torch
from pydantic import ConfigDict, Field, ValidationError, validate_call
from torch import Tensor, nn

from initsweep.core.config import ACTIVATIONS, OUTPUTS, ConfigError, ModelConfig, describe_errors
from initsweep.core.targets import load_callable

ACTIVATION_MODULES: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "linear": nn.Identity,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "selu": nn.SELU,
}
DEFAULT_ACTIVATION = "relu"  # what gain=auto assumes of a model without an ``activation`` attribute
Activation = Literal[ACTIVATIONS]  # type: ignore[valid-type]
Output = Literal[OUTPUTS]  # type: ignore[valid-type]
_checked = validate_call(config=ConfigDict(strict=False, allow_inf_nan=False))  # built-ins' arguments, by key


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
            raise ValueError(f"model.output = 'sigmoid': needs two classes, the data has {num_classes}; use softmax")
        return 1
    return num_classes


def model_activation(model: nn.Module) -> str:
    """The activation the initializers assume for ``model``: its ``activation`` attribute, else relu."""
    activation = getattr(model, "activation", None)
    return activation if isinstance(activation, str) and activation in ACTIVATIONS else DEFAULT_ACTIVATION


class MLP(nn.Sequential):
    """input -> flatten -> [fc{i}: Linear(w_i) -> act{i}] for each hidden width w_i -> out: Linear(outputs).
    The hidden widths are ``widths`` when given (e.g. [10, 5]), else ``depth`` x ``width``. ``output``:
    softmax (C units, cross-entropy) or sigmoid (1 unit, binary cross-entropy; two classes only)."""

    @_checked
    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        depth: Annotated[int, Field(ge=0)] = 2,
        width: Annotated[int, Field(ge=1)] = 256,
        widths: tuple[Annotated[int, Field(ge=1)], ...] | None = None,
        activation: Activation = "relu",
        output: Output = "softmax",
    ):
        layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
        fan_in = math.prod(input_shape)
        for i, units in enumerate(widths if widths is not None else (width,) * depth, start=1):
            layers[f"fc{i}"] = nn.Linear(fan_in, units)
            layers[f"act{i}"] = ACTIVATION_MODULES[activation]()
            fan_in = units
        layers["out"] = nn.Linear(fan_in, output_units(output, num_classes))
        super().__init__(layers)
        self.activation = activation


class CNN(nn.Sequential):
    """Small conv net for (C, H, W) images (Conv2d) or (C, L) signals (Conv1d):

    conv{i}: Conv(channels[i-1] -> channels[i], kernel k, padding k // 2) -> act{i} -> pool{i}: MaxPool(2)
    (skipped once the size is below 2), then flatten -> fc1: Linear(width) -> fc_act1 (when width > 0)
    -> out: Linear(num_classes). ``depth`` conv blocks (``channels``' last entry repeats to fill them; None:
    one per entry). Conv weights have fan_in = in_channels * k^d, fan_out = out_channels * k^d.
    """

    @_checked
    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        channels: Annotated[tuple[Annotated[int, Field(ge=1)], ...], Field(min_length=1)] = (16, 32),
        depth: Annotated[int, Field(ge=1)] | None = None,
        kernel_size: Annotated[int, Field(ge=1)] = 3,
        pool: bool = True,
        width: Annotated[int, Field(ge=0)] = 64,
        activation: Activation = "relu",
        output: Output = "softmax",
    ):
        if kernel_size % 2 == 0:
            raise ValueError(f"model.kernel_size = {kernel_size}: must be odd (same padding keeps the size)")
        if len(input_shape) not in (2, 3):
            raise ValueError(
                f"model=cnn: needs (channels, length) or (channels, height, width) samples, the data "
                f"gives shape {tuple(input_shape)} (flat feature vectors, nothing to convolve); use model=mlp"
            )
        if depth is not None:
            channels = (channels + (channels[-1],) * depth)[:depth]
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
        layers["out"] = nn.Linear(fan_in, output_units(output, num_classes))
        super().__init__(layers)
        self.activation = activation


@dataclass(frozen=True)
class ResidualStream:
    """What a residual model tells the diagnostics about its stream (any model may return one from a method
    ``residual_stream()``): ``entry`` maps the model's input to the stream x_0 (flatten and input layer),
    ``blocks`` map it on, x_L = blocks(x_0), each block adding a branch, x + branch(x); ``branch_outputs`` are the
    layers whose outputs are added to the stream (a branch's last layer: its gradient comes through the skip path)."""

    entry: nn.Module
    blocks: nn.Module
    branch_outputs: tuple[nn.Module, ...]


def residual_stream(model: nn.Module) -> ResidualStream | None:
    """The model's :class:`ResidualStream` when it has a ``residual_stream()`` method that returns one, else None."""
    method = getattr(model, "residual_stream", None)
    stream = method() if callable(method) else None
    return stream if isinstance(stream, ResidualStream) else None


class ResidualBlock(nn.Module):
    """Pre-LN residual block: x + fc2(act(fc1(norm(x)))), norm = LayerNorm (or nothing). ``rezero``: the branch
    is multiplied by a learnable scalar ``alpha`` that starts at 0, x + alpha * fc2(...) (Bachlechner et al. 2020)."""

    def __init__(self, width: int, hidden: int, activation: str, layer_norm: bool, rezero: bool = False):
        super().__init__()
        self.norm = nn.LayerNorm(width) if layer_norm else nn.Identity()
        self.fc1 = nn.Linear(width, hidden)
        self.act = ACTIVATION_MODULES[activation]()
        self.fc2 = nn.Linear(hidden, width)
        self.alpha = nn.Parameter(torch.zeros(())) if rezero else None

    def forward(self, x: Tensor) -> Tensor:
        branch = self.fc2(self.act(self.fc1(self.norm(x))))
        return x + (branch if self.alpha is None else self.alpha * branch)


class ResidualMLP(nn.Module):
    """Pre-LN residual MLP: flatten -> inp: Linear(width) -> blocks.{i}: ``blocks`` x :class:`ResidualBlock`
    (hidden units ``hidden``, default ``width``) -> norm: LayerNorm -> act -> out: Linear(outputs).
    ``layer_norm=false`` drops every LayerNorm (a plain residual MLP, e.g. for SkipInit/Fixup studies);
    ``rezero=true`` gives each block a learnable branch scalar ``blocks.{i}.alpha`` = 0 (ReZero, SkipInit)."""

    @_checked
    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        width: Annotated[int, Field(ge=1)] = 128,
        blocks: Annotated[int, Field(ge=0)] = 4,
        hidden: Annotated[int, Field(ge=1)] | None = None,
        layer_norm: bool = True,
        rezero: bool = False,
        activation: Activation = "relu",
        output: Output = "softmax",
    ):
        super().__init__()
        self.flatten = nn.Flatten()
        self.inp = nn.Linear(math.prod(input_shape), width)
        self.blocks = nn.Sequential(
            *(ResidualBlock(width, hidden or width, activation, layer_norm, rezero) for _ in range(blocks))
        )
        self.norm = nn.LayerNorm(width) if layer_norm else nn.Identity()
        self.act = ACTIVATION_MODULES[activation]()
        self.out = nn.Linear(width, output_units(output, num_classes))
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.act(self.norm(self.blocks(self.inp(self.flatten(x))))))

    def residual_stream(self) -> ResidualStream:
        """The stream from ``inp``'s output to the last block's output (before the final norm and act); each
        block adds ``fc2``'s output (times ``alpha`` with ReZero)."""
        branch_outputs = tuple(block.fc2 for block in self.blocks if isinstance(block, ResidualBlock))
        return ResidualStream(nn.Sequential(self.flatten, self.inp), self.blocks, branch_outputs)


class BasicBlock(nn.Module):
    """ResNet basic block: act(bn2(conv2(act(bn1(conv1(x))))) + shortcut(x)), 3x3 convs without bias.

    The shortcut of a block that halves the size and doubles the channels is parameter-free (He et al.
    2016's option A for CIFAR): every second pixel, the new channels zero."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, activation: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.act1 = ACTIVATION_MODULES[activation]()
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.act2 = ACTIVATION_MODULES[activation]()
        self.stride, self.extra = stride, out_ch - in_ch

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x[..., :: self.stride, :: self.stride]
        if self.extra:
            shortcut = nn.functional.pad(shortcut, (0, 0, 0, 0, 0, self.extra))
        return self.act2(self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x))))) + shortcut)


class ResNet(nn.Module):
    """CIFAR-style ResNet (He et al. 2016, section 4.2) for (C, H, W) images: conv1: 3x3 conv(width) -> bn1
    -> act, then three stages layer1..layer3 of n = (depth - 2) / 6 :class:`BasicBlock` each (width, 2 width,
    4 width channels; the second and third stages start with stride 2), global average pooling and
    out: Linear(num_classes). depth 20 (default) = ResNet-20, 0.27 M parameters at width 16."""

    @_checked
    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        depth: Annotated[int, Field(ge=8)] = 20,
        width: Annotated[int, Field(ge=1)] = 16,
        activation: Activation = "relu",
        output: Output = "softmax",
    ):
        if (depth - 2) % 6:
            raise ValueError(f"model.depth = {depth}: must be 6n + 2 (8, 14, 20, 32, 44, 56, 110, ...)")
        if len(input_shape) != 3:
            raise ValueError(
                f"model=resnet: needs (channels, height, width) images, the data gives shape {tuple(input_shape)}"
            )
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(input_shape[0], width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = ACTIVATION_MODULES[activation]()
        stages, in_ch = [], width
        for stage in range(3):
            out_ch = width * 2**stage
            stages.append(
                nn.Sequential(
                    *(
                        BasicBlock(in_ch if i == 0 else out_ch, out_ch, 2 if stage and i == 0 else 1, activation)
                        for i in range(n)
                    )
                )
            )
            in_ch = out_ch
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.out = nn.Linear(in_ch, output_units(output, num_classes))
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer3(self.layer2(self.layer1(self.act1(self.bn1(self.conv1(x))))))
        return self.out(self.flatten(self.pool(x)))


def _builder(cfg: ModelConfig) -> Callable[..., Any]:
    """The callable ``model._target_`` names; ConfigError when it cannot be imported or called."""
    try:
        return load_callable(cfg.target, "model._target_", "class or function returning a torch.nn.Module")
    except ValueError as e:
        raise ConfigError(f"Invalid configuration:\n  {e}") from None


def model_arguments(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> dict[str, Any]:
    """The keyword arguments the model is built with: the config's, plus ``input_shape`` / ``num_classes``
    where the callable takes them. ConfigError naming the key the callable does not accept."""
    target = _builder(cfg)
    kwargs = dict(cfg.kwargs)
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # a builtin without a signature: pass the config's keys as they are
        return kwargs
    params = signature.parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for key, value in (("input_shape", tuple(input_shape)), ("num_classes", num_classes)):
        if key in params or takes_any:
            kwargs.setdefault(key, value)
    try:
        signature.bind(**kwargs)
    except TypeError as e:
        accepted = [p for p in params if p not in ("self", "input_shape", "num_classes")]
        unknown = [k for k in kwargs if k not in params and not takes_any]
        key = f"model.{unknown[0]}: unknown key" if unknown else f"model._target_ = {cfg.target!r}: {e}"
        raise ConfigError(f"Invalid configuration:\n  {key} ({cfg.target} accepts: {', '.join(accepted)})") from None
    return kwargs


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The network a model config describes, for inputs of ``input_shape`` (a sample's shape).

    Raises ConfigError naming the key for a target that cannot be imported, a key it does not accept, an
    argument it refuses (the built-ins check each one: ``model.depth = -1: ...``; a user's ValueError or
    TypeError is shown as it is) or a result that is not an ``nn.Module``.
    """
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    kwargs = model_arguments(cfg, input_shape, num_classes)
    data = {k: kwargs.pop(k) for k in ("input_shape", "num_classes") if k in kwargs}  # passed as they are
    try:
        try:  # nested ``_target_`` nodes among the arguments are built first, as Hydra users expect
            make = instantiate({"_target_": cfg.target, "_partial_": True, "_convert_": "all", **kwargs})
        except InstantiationException as e:  # Hydra wraps the constructor's own error: show that one
            raise (e.__cause__ or e) from None
        model = make(**data)
    except ValidationError as e:
        raise ConfigError("Invalid configuration:\n  " + "\n  ".join(describe_errors(e, "model"))) from None
    except (ValueError, TypeError) as e:
        message = str(e) if str(e).startswith(("model.", "model=")) else f"model._target_ = {cfg.target!r}: {e}"
        raise ConfigError(f"Invalid configuration:\n  {message}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"Invalid configuration:\n  model._target_ = {cfg.target!r}: returned a {type(model).__name__}, "
            f"not a torch.nn.Module"
        )
    return model


def check_model(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The model built on the meta device (nothing allocated, no random number drawn): checks its config,
    counts its parameters. ConfigError as :func:`build_model`."""
    with torch.device("meta"):
        return build_model(cfg, input_shape, num_classes)
