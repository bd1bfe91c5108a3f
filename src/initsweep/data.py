"""Datasets as in-memory tensors, split once into train / val / test.

Nothing is downloaded: every dataset is shipped inside a package or generated. Splits depend only on the
data config (``split_seed``), never on the training seed, so runs with different seeds see the same data.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from initsweep.config import DataConfig


@dataclass(frozen=True)
class Dataset:
    """Train/val/test tensors. Features are float32 of shape (n, *input_shape); labels int64 of shape (n,)."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def to(self, device: torch.device) -> "Dataset":
        """A copy with every tensor moved to ``device`` (done once per job, not per batch)."""
        moved = {k: getattr(self, k).to(device) for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}
        return Dataset(name=self.name, num_classes=self.num_classes, **moved)


def stratified_split(
    y: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of a stratified train/val/test split; each class is split in the same proportions."""
    rng = np.random.default_rng(seed)
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_val = int(round(val_fraction * len(idx)))
        n_test = int(round(test_fraction * len(idx)))
        parts[1].append(idx[:n_val])
        parts[2].append(idx[n_val : n_val + n_test])
        parts[0].append(idx[n_val + n_test :])
    return tuple(np.sort(np.concatenate(p)) for p in parts)  # type: ignore[return-value]


def standardized(x: np.ndarray, train_idx: np.ndarray) -> np.ndarray:
    """(x - mean) / std with mean and std of the training rows; constant features get std 1."""
    mean = x[train_idx].mean(axis=0)
    std = x[train_idx].std(axis=0)
    return (x - mean) / np.where(std > 0, std, 1.0)


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits, read straight from the CSV the package ships (importing sklearn costs
    about 1.5 s; load_digits reads this very file), falling back to load_digits if it has moved."""
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = Path(locations[0], "datasets", "data", "digits.csv.gz") if locations else None
    if path is not None and path.exists():
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",")
        return table[:, :-1].astype(np.float64), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.data.astype(np.float64), bunch.target.astype(np.int64)


def _as_dataset(name: str, x: np.ndarray, y: np.ndarray, cfg: DataConfig) -> Dataset:
    tr, va, te = stratified_split(y, cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
    x = standardized(x, tr).astype(np.float32)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    return Dataset(
        name=name,
        x_train=t(x[tr]),
        y_train=t(y[tr]),
        x_val=t(x[va]),
        y_val=t(y[va]),
        x_test=t(x[te]),
        y_test=t(y[te]),
        num_classes=int(y.max()) + 1,
    )


@lru_cache(maxsize=8)
def load(cfg: DataConfig) -> Dataset:
    """Load and split the dataset a config names (cached: a multirun loads it once per process)."""
    if cfg.name == "digits":
        x, y = _digits()
    else:  # pragma: no cover - the schema admits only known names
        raise ValueError(f"data.name = {cfg.name!r}: unknown dataset")
    return _as_dataset(cfg.name, x, y, cfg)
