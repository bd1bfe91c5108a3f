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

from initsweep.core import idx
from initsweep.core.config import CirclesConfig, ConfigError, DataConfig, DigitsConfig, IDXConfig, MNIST1DConfig


@dataclass(frozen=True)
class Dataset:
    """Train/val/test tensors. Features are float32 of shape (n, *input_shape); labels int64 of shape (n,).

    ``val_is_train``: there is no validation split (val_fraction = 0); x_val / y_val are the training tensors.
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    val_is_train: bool = False

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def to(self, device: torch.device) -> Dataset:
        """A copy with every tensor moved to ``device`` (done once per job, not per batch)."""
        moved = {k: getattr(self, k).to(device) for k in ("x_train", "y_train", "x_test", "y_test")}
        if self.val_is_train:
            moved.update(x_val=moved["x_train"], y_val=moved["y_train"])
        else:
            moved.update(x_val=self.x_val.to(device), y_val=self.y_val.to(device))
        return Dataset(name=self.name, num_classes=self.num_classes, val_is_train=self.val_is_train, **moved)


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


def _digits(cfg: DigitsConfig) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits as (n, 1, 8, 8) images (an MLP flattens them, a CNN convolves them).

    Read straight from the CSV the package ships (importing sklearn costs about 1.5 s; load_digits reads
    this very file), falling back to load_digits if the file has moved.
    """
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = Path(locations[0], "datasets", "data", "digits.csv.gz") if locations else None
    if path is not None and path.exists():
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",")
        return table[:, :-1].reshape(-1, 1, 8, 8), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.data.astype(np.float64).reshape(-1, 1, 8, 8), bunch.target.astype(np.int64)


def _circles(cfg: CirclesConfig) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's make_circles: (n, 2) points on two noisy concentric circles, labels 0 (outer) / 1."""
    from sklearn.datasets import make_circles

    x, y = make_circles(n_samples=cfg.n_samples, noise=cfg.noise, factor=cfg.factor, random_state=cfg.seed)
    return x.astype(np.float64), y.astype(np.int64)


def _mnist1d(cfg: MNIST1DConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """mnist1d's make_dataset (procedural, offline) as (n, 1, 40) signals: (x_train, y_train, x_test, y_test).

    make_dataset seeds NumPy's and Python's global generators; their states are restored afterwards.
    """
    import random

    from mnist1d.data import get_dataset_args, make_dataset
    from mnist1d.utils import ObjectView

    args = get_dataset_args(as_dict=True)
    args.update(num_samples=cfg.num_samples, train_split=cfg.train_split, shuffle_seq=cfg.shuffle_seq, seed=cfg.seed)
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(ObjectView(args))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    as_x = lambda a: np.asarray(a, dtype=np.float64)[:, None, :]  # noqa: E731
    as_y = lambda a: np.asarray(a, dtype=np.int64)  # noqa: E731
    return as_x(d["x"]), as_y(d["y"]), as_x(d["x_test"]), as_y(d["y_test"])


def _idx_arrays(cfg: IDXConfig, images: str, labels: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, rows, cols) become (n, 1, rows, cols); (n, features) stay flat."""
    paths = {key: idx.find(cfg.path or "", getattr(cfg, key)) for key in (images, labels)}
    arrays = {}
    for key, path in paths.items():
        if path is None:
            raise ConfigError(f"data.{key} = {getattr(cfg, key)!r}: file not found in data.path = {cfg.path!r}")
        try:
            arrays[key] = idx.read(path)
        except (OSError, ValueError) as e:
            raise ConfigError(f"data.{key}: cannot read {path}: {e}") from None
    x, y = arrays[images], arrays[labels]
    if y.ndim != 1 or len(y) != len(x) or x.ndim not in (2, 3):
        raise ConfigError(
            f"data.{images} / data.{labels}: expected images (n, rows, cols) or features (n, d) and labels (n,), "
            f"got {x.shape} and {y.shape}"
        )
    if y.min() < 0:
        raise ConfigError(f"data.{labels}: labels must be 0, 1, ..., got a minimum of {y.min()}")
    x = x.astype(np.float64)
    return (x[:, None] if x.ndim == 3 else x), y.astype(np.int64)


def _idx(cfg: IDXConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    x, y = _idx_arrays(cfg, "train_images", "train_labels")
    if cfg.max_train is not None:
        x, y = x[: cfg.max_train], y[: cfg.max_train]
    if cfg.test_images is None:
        return x, y, None, None
    xt, yt = _idx_arrays(cfg, "test_images", "test_labels")
    if xt.shape[1:] != x.shape[1:]:
        raise ConfigError(
            f"data.test_images: sample shape {xt.shape[1:]} differs from data.train_images' {x.shape[1:]}"
        )
    return x, y, xt, yt


def _as_dataset(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    cfg: DataConfig,
    test: tuple[np.ndarray, np.ndarray] | None = None,
) -> Dataset:
    """Split (x, y) into train/val/test (or train/val when the dataset brings its own ``test``) and, when
    cfg.standardize, standardize every feature with the training rows' mean and std. Samples keep their
    shape. With val_fraction = 0 the validation tensors are the training tensors (``val_is_train``)."""
    if test is None:
        if isinstance(cfg, MNIST1DConfig):  # never: load() passes mnist1d's own test split
            raise ValueError("data.name = 'mnist1d' brings its own test set")
        tr, va, te = stratified_split(y, cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
        x_te, y_te = x[te], y[te]
    else:
        tr, va, _ = stratified_split(y, cfg.val_fraction, 0.0, cfg.split_seed)
        x_te, y_te = test
    shape = x.shape[1:]
    flat = lambda a: a.reshape(len(a), -1)  # noqa: E731
    both = np.concatenate([flat(x), flat(x_te)])
    if cfg.standardize:
        both = standardized(both, tr)
    x_all = both[: len(x)].reshape(len(x), *shape).astype(np.float32)
    x_te = both[len(x) :].reshape(len(x_te), *shape).astype(np.float32)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    x_train, y_train = t(x_all[tr]), t(y[tr])
    no_val = len(va) == 0
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=y_train,
        x_val=x_train if no_val else t(x_all[va]),
        y_val=y_train if no_val else t(y[va]),
        val_is_train=no_val,
        x_test=t(x_te),
        y_test=t(y_te),
        num_classes=int(max(y.max(), y_te.max() if len(y_te) else 0)) + 1,
    )


@lru_cache(maxsize=8)
def load(cfg: DataConfig) -> Dataset:
    """Load and split the dataset a config names (cached: a multirun loads it once per process)."""
    if isinstance(cfg, DigitsConfig):
        return _as_dataset(cfg.name, *_digits(cfg), cfg)
    if isinstance(cfg, CirclesConfig):
        return _as_dataset(cfg.name, *_circles(cfg), cfg)
    if isinstance(cfg, MNIST1DConfig):
        x, y, xt, yt = _mnist1d(cfg)
        return _as_dataset(cfg.name, x, y, cfg, test=(xt, yt))
    if isinstance(cfg, IDXConfig):
        x, y, test_x, test_y = _idx(cfg)  # both test arrays, or neither
        return _as_dataset(cfg.name, x, y, cfg, test=None if test_x is None or test_y is None else (test_x, test_y))
    raise ValueError(f"data.name = {cfg.name!r}: unknown dataset")  # pragma: no cover
