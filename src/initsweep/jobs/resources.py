"""What a job asks of the machine: will its model fit in memory, and may its kernels be nondeterministic?

Memory: a parameter-memory estimate checked before the model is built.
The estimate counts the model's parameters without allocating them (the model is built on PyTorch's ``meta``
device) and multiplies by the float32 copies training keeps: the weights, their gradients, the best-state copy
(``trainer.BestState``) and the optimizer's state (SGD momentum: 1, Adam: 2). Activations are not counted,
so a model that passes can still run out of memory with a huge batch; one that fails cannot train.
"""

from __future__ import annotations

import os

import psutil
import torch

from initsweep.core.config import CNNConfig, ConfigError, ModelConfig, TrainerConfig
from initsweep.core.models import build_model

BYTES_PER_VALUE = 4  # float32


def parameter_count(model: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> int:
    """Number of parameters of the model ``model`` describes, counted on the meta device (nothing allocated)."""
    with torch.device("meta"):
        return sum(p.numel() for p in build_model(model, input_shape, num_classes).parameters())


def training_bytes(params: int, trainer: TrainerConfig) -> int:
    """params x 4 bytes x (weights + gradients + best-state copy + optimizer states)."""
    optimizer_states = 2 if trainer.optimizer == "adam" else int(trainer.momentum > 0)
    return params * BYTES_PER_VALUE * (3 + optimizer_states)


def available_bytes(device: torch.device) -> int:
    """Free memory of ``device``: CUDA's free memory, else the host's available memory (psutil)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return psutil.virtual_memory().available


def check_fits(
    model: ModelConfig, trainer: TrainerConfig, input_shape: tuple[int, ...], num_classes: int, device: torch.device
) -> None:
    """ConfigError naming the model's size keys when its parameters alone need more memory than is free."""
    params = parameter_count(model, input_shape, num_classes)
    need, free = training_bytes(params, trainer), available_bytes(device)
    if need <= free:
        return
    if isinstance(model, CNNConfig):
        key = f"model.channels = {list(model.conv_channels)} / model.width = {model.width}"
    elif model.widths is not None:
        key = f"model.widths = {list(model.widths)}"
    else:
        key = f"model.width = {model.width} (model.depth = {model.depth})"
    raise ConfigError(
        f"Invalid configuration:\n  {key}: the model has {params:,} parameters; training them needs about "
        f"{need / 2**30:.1f} GiB (weights, gradients, optimizer state, best-state copy in float32) but only "
        f"{free / 2**30:.1f} GiB of {device.type} memory is free; choose a smaller model"
    )


def use_deterministic_kernels(on: bool) -> None:
    """``trainer.deterministic``: PyTorch's deterministic algorithms (an error for an op that has none), and on
    CUDA the cuBLAS workspace setting they need ($CUBLAS_WORKSPACE_CONFIG, unless set). Off again for the
    next job of the same process when false."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on)
