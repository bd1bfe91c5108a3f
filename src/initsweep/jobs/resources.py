"""What a job asks of the machine: will its model fit in memory, and may its kernels be nondeterministic?

Memory: a parameter-memory estimate checked before the model is built.
The estimate counts the model's parameters without allocating them (the model is built on PyTorch's ``meta``
device) and multiplies by the float32 copies training keeps: the weights, their gradients, the best-state copy
(``trainer.BestState``) and the optimizer's state (SGD momentum: 1, Adam: 2). Activations are not counted,
so a model that passes can still run out of memory with a huge batch; one that fails cannot train.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import psutil
import torch

from initsweep.core.config import Config, ConfigError, ModelConfig, TrainerConfig
from initsweep.core.data import Dataset
from initsweep.core.models import check_model

BYTES_PER_VALUE = 4  # float32


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
    """ConfigError when the config cannot build a model (:func:`initsweep.core.models.check_model`), or when its
    parameters alone need more memory than is free (naming the model's integer and list keys)."""
    params = sum(p.numel() for p in check_model(model, input_shape, num_classes).parameters())
    need, free = training_bytes(params, trainer), available_bytes(device)
    if need <= free:
        return
    sizes = [
        f"model.{k} = {v}" for k, v in model.kwargs.items() if isinstance(v, int | list) and not isinstance(v, bool)
    ]
    key = ", ".join(sizes) or f"model._target_ = {model.target!r}"
    raise ConfigError(
        f"Invalid configuration:\n  {key}: the model has {params:,} parameters; training them needs about "
        f"{need / 2**30:.1f} GiB (weights, gradients, optimizer state, best-state copy in float32) but only "
        f"{free / 2**30:.1f} GiB of {device.type} memory is free; choose a smaller model"
    )


def check_streamable(trainer: TrainerConfig, data: Dataset) -> None:
    """ConfigError when streamed data (larger than data.max_memory_mb) meets ``trainer.batch_size = full``: one
    batch of every training example would hold it all in memory."""
    if data.streamed and trainer.batch_size == "full":
        raise ConfigError(
            f"Invalid configuration:\n  trainer.batch_size = full: the training data ({len(data.y_train)} x "
            f"{'x'.join(map(str, data.input_shape))} samples) exceeds data.max_memory_mb and streams in batches; "
            "choose an integer batch size or raise data.max_memory_mb"
        )


def check_buildable(config: Config) -> None:
    """ConfigError when a valid config still cannot run: its data cannot be loaded (:func:`initsweep.core.data.load`,
    cached), its model cannot be built for that data, an ``init.rules`` glob matches nothing it can set, or the
    parametrization cannot classify the model's parameters. Run before anything is tracked (the command line of a
    single job, every distinct job of a multirun)."""
    from initsweep.core import data as datasets
    from initsweep.core import parametrization
    from initsweep.core.initializers import InitError, check_rules

    data = datasets.load(config.data)
    check_streamable(config.trainer, data)
    model = check_model(config.model, data.input_shape, data.num_classes)
    try:
        check_rules(model, config.init.rules)
    except InitError as e:
        raise ConfigError(f"Invalid configuration:\n  {e}") from None
    parametrization.plan(model, config.parametrization)


def check_all_buildable(configs: Sequence[Config]) -> None:
    """:func:`check_buildable` for each distinct (model, data, init.rules, parametrization) of a multirun's job
    configs."""
    seen: set[str] = set()
    for config in configs:
        key = repr((config.model, config.data, config.init.rules, config.parametrization))
        if key not in seen:
            seen.add(key)
            check_buildable(config)


def use_deterministic_kernels(on: bool) -> None:
    """``trainer.deterministic``: PyTorch's deterministic algorithms (an error for an op that has none), and on
    CUDA the cuBLAS workspace setting they need ($CUBLAS_WORKSPACE_CONFIG, unless set). Off again for the
    next job of the same process when false."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on)
