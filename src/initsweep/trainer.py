"""The training loop: in-memory tensors, shuffled index-slice batches, one validation pass per epoch.

It knows nothing of MLflow or Optuna. :func:`fit` yields one :class:`EpochMetrics` per epoch; the caller
logs it, reports it to a trial, or stops iterating to end training early.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from initsweep.config import ConfigError, TrainerConfig
from initsweep.data import Dataset


@dataclass(frozen=True)
class EpochMetrics:
    """One epoch. train_* are means over the epoch's batches (as trained); val_* are after the epoch."""

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    epoch_s: float

    def as_metrics(self) -> dict[str, float]:
        """MLflow-style names: train/loss, train/acc, val/loss, val/acc, time/epoch_s."""
        d = asdict(self)
        return {
            "train/loss": d["train_loss"],
            "train/acc": d["train_acc"],
            "val/loss": d["val_loss"],
            "val/acc": d["val_acc"],
            "time/epoch_s": d["epoch_s"],
        }


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an explicit device that is absent is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device = 'cuda' but no CUDA device is available (use auto or cpu)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("trainer.device = 'mps' but MPS is not available (use auto or cpu)")
    return torch.device(name)


def make_optimizer(params, cfg: TrainerConfig) -> torch.optim.Optimizer:
    """SGD (with momentum) or Adam, with the config's lr and weight decay."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for ``precision == "bf16"`` (matmuls in bfloat16, losses in float32); else a no-op."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 4096) -> tuple[float, float]:
    """(mean cross-entropy loss, accuracy) of ``model`` on (x, y), in eval mode."""
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(x), batch_size):
        logits = model(x[start : start + batch_size]).float()
        target = y[start : start + batch_size]
        loss_sum += nn.functional.cross_entropy(logits, target, reduction="sum").item()
        correct += (logits.argmax(1) == target).sum().item()
    model.train(was_training)
    return loss_sum / len(x), correct / len(x)


def fit(model: nn.Module, data: Dataset, cfg: TrainerConfig, seed: int) -> Iterator[EpochMetrics]:
    """Train ``model`` on ``data`` for cfg.epochs epochs, yielding each epoch's metrics.

    Batches are slices of a fresh permutation of the training indices each epoch, drawn from a generator
    seeded with ``seed``: the same seed gives the same batches and, on CPU, identical metrics.
    """
    optimizer = make_optimizer(model.parameters(), cfg)
    generator = torch.Generator().manual_seed(seed)
    x, y = data.x_train, data.y_train
    n = len(x)
    net = torch.compile(model) if cfg.compile else model
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=generator).to(x.device)
        # Running sums stay on the device (no .item() per step, which would synchronize a GPU).
        loss_sum = torch.zeros((), device=x.device)
        correct = torch.zeros((), device=x.device, dtype=torch.long)
        for start in range(0, n, cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            yb = y[idx]
            with autocast(x.device, cfg.precision):  # forward only; backward runs outside autocast
                logits = net(x[idx])
                loss = nn.functional.cross_entropy(logits.float(), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum.add_(loss.detach(), alpha=len(idx))
            correct.add_((logits.argmax(1) == yb).sum())
        train_loss, train_acc = loss_sum.item() / n, correct.item() / n
        with autocast(x.device, cfg.precision):
            val_loss, val_acc = evaluate(net, data.x_val, data.y_val)
        yield EpochMetrics(epoch, train_loss, train_acc, val_loss, val_acc, time.perf_counter() - t0)


def divergence(epoch: EpochMetrics, initial_loss: float, factor: float | None) -> str | None:
    """Why training has diverged after ``epoch``, or None: a non-finite train or val loss, or a train loss
    above ``factor`` x the loss at initialization. The one place that decides divergence."""
    for name, value in (("train loss", epoch.train_loss), ("val loss", epoch.val_loss)):
        if not math.isfinite(value):
            return f"{name} is {value}"
    if factor is not None and epoch.train_loss > factor * initial_loss:
        return f"train loss {epoch.train_loss:.4g} > {factor:g} x initial loss {initial_loss:.4g}"
    return None


def summarize(history: Sequence[EpochMetrics], test_loss: float, test_acc: float) -> dict[str, float]:
    """End-of-run metrics: best and final val, final train loss, test, and the learning speed.

    ``val/epochs_to_90pct`` is the first epoch whose val acc reaches 90% of the best val acc.
    Non-finite losses count as the worst value.
    """
    accs = [h.val_acc for h in history]
    losses = [h.val_loss if math.isfinite(h.val_loss) else math.inf for h in history]
    best = max(accs)
    return {
        "val/acc_best": best,
        "val/loss_best": min(losses),
        "val/acc_final": accs[-1],
        "val/epoch_best": float(accs.index(best) + 1),
        "val/epochs_to_90pct": float(next(h.epoch for h in history if h.val_acc >= 0.9 * best)),
        "train/loss_final": history[-1].train_loss,
        "test/loss": test_loss,
        "test/acc": test_acc,
        "time/train_s": sum(h.epoch_s for h in history),
    }
