"""PNG figures. matplotlib is imported lazily (inside the functions), with the non-interactive Agg backend."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from initsweep.trainer import EpochMetrics


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curves(history: Sequence[EpochMetrics], initial_val: tuple[float, float], path: Path) -> Path:
    """Loss and accuracy per epoch (train and val; val also at epoch 0, before training)."""
    plt = _pyplot()
    epochs = [h.epoch for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(8, 3.2), dpi=100)
    ax_loss.plot(epochs, [h.train_loss for h in history], label="train")
    ax_loss.plot([0, *epochs], [initial_val[0], *(h.val_loss for h in history)], label="val")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", yscale="log")
    ax_acc.plot(epochs, [h.train_acc for h in history], label="train")
    ax_acc.plot([0, *epochs], [initial_val[1], *(h.val_acc for h in history)], label="val")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
