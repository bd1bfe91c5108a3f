"""Datasets as in-memory tensors, split once into train / val / test; data larger than ``data.max_memory_mb``
(image folders, a user's torch Datasets) as :class:`Rows` read on access instead.

Nothing is downloaded: every dataset is shipped inside a package, generated, read from a local path
(IDX, CIFAR-10, image folders) or returned by a user's callable (``data._target_``). Splits depend only on the
data config (``split_seed``), never on the training seed, so runs with different seeds see the same data.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from initsweep.core import idx
from initsweep.core.config import (
    CallableDataConfig,
    CIFAR10Config,
    CirclesConfig,
    ConfigError,
    DataConfig,
    DigitsConfig,
    IDXConfig,
    ImageFolderConfig,
    MNIST1DConfig,
)

MB = 2**20  # bytes in one data.max_memory_mb
EVAL_BATCH = 4096  # rows per evaluation batch at most


class Rows(torch.utils.data.Dataset):
    """Samples read on access, for data larger than ``data.max_memory_mb``: row i is ``read(indices[i])`` as
    float32 of ``sample_shape``, then (x - mean) / std when ``mean`` / ``std`` are given (the training rows'
    statistics, as the in-memory path standardizes). ``rows[i]`` (an int, on the CPU) is what a DataLoader's
    worker reads; :meth:`batches` and :meth:`take` give stacked rows on ``device``. ``eval_batch``: rows per
    evaluation batch; ``workers``: the DataLoader's worker processes."""

    def __init__(
        self,
        read: Callable[[int], Any],
        indices: np.ndarray,
        sample_shape: tuple[int, ...],
        workers: int = 0,
        eval_batch: int = EVAL_BATCH,
        mean: Tensor | None = None,
        std: Tensor | None = None,
    ):
        self.read, self.indices, self.sample_shape = read, indices, sample_shape
        self.workers, self.eval_batch, self.mean, self.std = workers, eval_batch, mean, std
        self.device = torch.device("cpu")

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def shape(self) -> torch.Size:
        """(rows, *sample_shape), as a tensor of these rows would have."""
        return torch.Size((len(self), *self.sample_shape))

    def __getitem__(self, i: int) -> Tensor:
        x = torch.as_tensor(np.asarray(self.read(int(self.indices[i])), dtype=np.float32)).reshape(self.sample_shape)
        return x if self.mean is None or self.std is None else (x - self.mean) / self.std

    def to(self, device: torch.device) -> Rows:
        """A copy whose batches come on ``device`` (samples are read on the CPU)."""
        moved = copy.copy(self)
        moved.device = device
        return moved

    def standardized(self, mean: Tensor, std: Tensor) -> Rows:
        """A copy whose rows are (x - mean) / std."""
        out = copy.copy(self)
        out.mean, out.std = mean, std
        return out

    def batches(self, index_batches: list[list[int]]) -> Iterator[Tensor]:
        """The stacked rows of each list of row numbers, in order, on ``device``, read by a DataLoader with
        ``workers`` worker processes. The loader draws its workers' seeds from a generator of its own: torch's
        global generator (the model's initialization, dropout) is left as the in-memory path leaves it."""
        loader = torch.utils.data.DataLoader(
            self,
            batch_sampler=index_batches,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator(),
        )
        for xb in loader:
            yield xb.to(self.device, non_blocking=True)

    def take(self, idx: Tensor) -> Tensor:
        """Rows ``idx`` stacked on ``device`` (read here, without workers)."""
        return torch.stack([self[i] for i in idx.tolist()]).to(self.device)

    def chunks(self, batch_size: int) -> list[list[int]]:
        """Row numbers 0..n-1 in consecutive lists of ``batch_size``."""
        return [list(range(s, min(s + batch_size, len(self)))) for s in range(0, len(self), batch_size)]


@dataclass(frozen=True)
class Dataset:
    """Train/val/test tensors. Features are float32 of shape (n, *input_shape), or :class:`Rows` read on access
    (``streamed``: data larger than data.max_memory_mb); labels are int64 tensors of shape (n,) either way.

    ``val_is_train``: there is no validation split (val_fraction = 0); x_val / y_val are the training tensors.
    """

    name: str
    x_train: Tensor | Rows
    y_train: Tensor
    x_val: Tensor | Rows
    y_val: Tensor
    x_test: Tensor | Rows
    y_test: Tensor
    num_classes: int
    val_is_train: bool = False

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def streamed(self) -> bool:
        """The features are :class:`Rows` read on access, not tensors."""
        return isinstance(self.x_train, Rows)

    @property
    def device(self) -> torch.device:
        """Where the tensors, and the batches of streamed rows, are."""
        return self.y_train.device

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


def checked_arrays(x: Any, y: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` (numpy arrays or torch tensors) as x float (float32 unless x needs float64) of shape
    (n, *sample_shape) and y int64 labels 0..C-1 (C = max + 1 classes); ConfigError starting with ``where``
    when x has fewer than 2 dims or non-finite values, y is not 1-D integers >= 0, or their lengths differ."""
    x, y = (np.asarray(a.detach().cpu()) if isinstance(a, Tensor) else np.asarray(a) for a in (x, y))
    if x.dtype.kind not in "biuf":
        raise ConfigError(f"{where} x must be numeric, got dtype {x.dtype}")
    if x.ndim < 2:
        raise ConfigError(
            f"{where} x has shape {x.shape}: need (n, features) or (n, channels, ...), at least 2 dims "
            f"(one feature: x[:, None])"
        )
    if y.ndim != 1:
        raise ConfigError(
            f"{where} y has shape {y.shape}: need 1-D integer class labels, shape (n,) (one-hot labels: y.argmax(1))"
        )
    if len(y) != len(x) or len(x) == 0:
        raise ConfigError(f"{where} x and y must hold the same number (>= 1) of samples: got {x.shape}, {y.shape}")
    if y.dtype.kind not in "iu" or y.min() < 0:
        got = f"dtype {y.dtype}" if y.dtype.kind not in "iu" else f"a minimum of {y.min()}"
        raise ConfigError(f"{where} y must hold integer class labels 0..C-1 (C = max + 1 classes), got {got}")
    x = x.astype(np.result_type(x.dtype, np.float32), copy=False)
    if bad := int(np.size(x) - np.count_nonzero(np.isfinite(x))):
        raise ConfigError(f"{where} x has {bad} NaN or infinite values")
    return x, y.astype(np.int64, copy=False)


_SPLITS = ("train", "val", "test")


def _split_keys(out: Mapping[Any, Any], where: str) -> list[str]:
    """The splits of a mapping, in the order train, val, test; ConfigError unless train and test (and
    optionally val) are its keys."""
    keys = set(out)
    if not {"train", "test"} <= keys <= set(_SPLITS):
        raise ConfigError(
            f"{where} returned a mapping with keys {sorted(map(str, keys))}; expected train, test, val (optional)"
        )
    return [s for s in _SPLITS if s in out]


def _checked_pair(pair: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    """A split's (x, y), checked (:func:`checked_arrays`)."""
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
        raise ConfigError(f"{where} is a {type(pair).__name__}; expected a pair (x, y)")
    return checked_arrays(pair[0], pair[1], f"{where}:")


def _one_sample_shape(shapes: Mapping[str, tuple[int, ...]], where: str) -> None:
    """ConfigError when the splits' samples differ in shape."""
    if len(set(shapes.values())) > 1:
        raise ConfigError(f"{where} the splits' samples differ in shape: {dict(shapes)}")


def _explicit_splits(out: Mapping[Any, Any], where: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (x, y), "val": (x, y), "test": (x, y)}`` (val optional), each checked; the samples of every
    split must have one shape."""
    splits = {split: _checked_pair(out[split], f"{where} [{split!r}]") for split in _split_keys(out, where)}
    _one_sample_shape({split: x.shape[1:] for split, (x, _) in splits.items()}, where)
    return splits


def _user_data(cfg: CallableDataConfig) -> Dataset:
    """Call ``cfg.target(**cfg.kwargs)`` and split what it returns: ``(x, y)`` like digits (val_fraction,
    test_fraction, split_seed); a mapping of explicit splits as given, val_fraction of train when val is absent."""
    where = f"data._target_ = {cfg.target!r}:"
    try:
        fn = cfg.resolve()
    except ValueError as e:
        raise ConfigError(str(e)) from None
    try:
        out = fn(**cfg.kwargs)
    except Exception as e:  # noqa: BLE001 - any failure of user code becomes one message naming the key
        raise ConfigError(f"{where} failed: {type(e).__name__}: {e}") from e
    if _has_torch_datasets(out):
        return _user_torch_data(out, cfg, where)
    if isinstance(out, Mapping):
        splits = _explicit_splits(out, where)
        return _as_dataset(cfg.name, *splits["train"], cfg, test=splits["test"], val=splits.get("val"))
    if isinstance(out, (tuple, list)) and len(out) == 2:
        return _as_dataset(cfg.name, *checked_arrays(out[0], out[1], where), cfg)
    raise ConfigError(
        f"{where} returned a {type(out).__name__}; expected (x, y) or "
        "{'train': (x, y), 'val': (x, y), 'test': (x, y)} (val optional)"
    )


def _has_torch_datasets(out: Any) -> bool:
    """``out`` is a torch Dataset, or a mapping of splits holding one."""
    values = out.values() if isinstance(out, Mapping) else [out]
    return any(isinstance(v, torch.utils.data.Dataset) for v in values)


class _ItemReader:
    """x of item ``i`` of a map-style torch Dataset of (x, y) pairs, as a NumPy array (picklable)."""

    def __init__(self, source: torch.utils.data.Dataset):
        self.source = source

    def __call__(self, i: int) -> np.ndarray:
        x = self.source[i][0]
        return np.asarray(x.detach().cpu() if isinstance(x, Tensor) else x)


def _labels(source: torch.utils.data.Dataset, where: str) -> np.ndarray:
    """The y of every item: the Dataset's ``targets`` when it has them (torchvision's convention), else one
    pass over its items."""
    targets = getattr(source, "targets", None)
    if targets is None:
        targets = [source[i][1] for i in range(len(source))]  # type: ignore[arg-type]
    y = np.asarray(torch.as_tensor(targets))
    return checked_arrays(np.zeros((len(y), 1), np.float32), y, where)[1]


def _user_torch_data(out: Any, cfg: CallableDataConfig, where: str) -> Dataset:
    """A user's torch Dataset(s) of (x, y) pairs (all the data, or in a mapping of splits beside (x, y) pairs):
    read into tensors when they fit in data.max_memory_mb (n x prod(x.shape) x 4 bytes, the shape of the first
    item), else streamed as :class:`Rows`."""
    parts = {k: out[k] for k in _split_keys(out, where)} if isinstance(out, Mapping) else {"train": out}
    sources = {}
    for split, part in parts.items():
        at = f"{where} [{split!r}]"
        if not isinstance(part, torch.utils.data.Dataset):
            part = torch.utils.data.TensorDataset(*map(torch.from_numpy, _checked_pair(part, at)))
        first = part[0] if len(part) else None
        if not (isinstance(first, (tuple, list)) and len(first) == 2):
            raise ConfigError(f"{at}: a torch Dataset must hold (x, y) pairs, got {type(first).__name__}")
        sources[split] = part
    shapes = {split: tuple(np.shape(p[0][0])) for split, p in sources.items()}
    _one_sample_shape(shapes, where)
    shape = shapes["train"]
    if fits_in_memory(sum(len(p) for p in sources.values()), shape, cfg):
        arrays = {split: _read_all(p, f"{where} [{split!r}]:") for split, p in sources.items()}
        return _as_dataset(cfg.name, *arrays["train"], cfg, test=arrays.get("test"), val=arrays.get("val"))
    read = {split: (_ItemReader(p), _labels(p, f"{where} [{split!r}]:")) for split, p in sources.items()}
    return _streamed(cfg.name, read["train"], shape, cfg, test=read.get("test"), val=read.get("val"))


def _read_all(source: torch.utils.data.Dataset, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Every (x, y) item of a torch Dataset, stacked and checked (:func:`checked_arrays`)."""
    items = [source[i] for i in range(len(source))]  # type: ignore[arg-type]
    x = np.stack([np.asarray(torch.as_tensor(x)) for x, _ in items])
    return checked_arrays(x, np.asarray([int(y) for _, y in items]), where)


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch (a pickled dict: b"data" (n, 3072) uint8, channel-major; b"labels") as
    (n, 3, 32, 32) float32 images in [0, 1] (pixel / 255) and labels. Pickle runs code: read trusted files only."""
    import pickle

    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")  # the batches were pickled by Python 2
        data, labels = batch[b"data"], batch[b"labels"]
    except Exception as e:  # noqa: BLE001 - a damaged or foreign file fails in many ways
        raise ConfigError(
            f"data.path: {path} is not a CIFAR-10 python batch (a pickled dict with b'data' and b'labels'): "
            f"{type(e).__name__}: {e}"
        ) from None
    x, y = checked_arrays(np.asarray(data), np.asarray(labels), f"data.path: {path}:")
    if x.shape[1:] != (3 * 32 * 32,):
        raise ConfigError(f"data.path: {path}: b'data' has shape {x.shape}; CIFAR-10 rows hold 3072 = 3x32x32 bytes")
    return x.reshape(-1, 3, 32, 32) / np.float32(255), y


def _cifar10(cfg: CIFAR10Config) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test): the training batches in order (the first max_train samples), then
    the test batch."""
    directory = Path(cfg.path or "").expanduser()
    parts = [_cifar_batch(directory / name) for name in cfg.train_batches]
    x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    if cfg.max_train is not None:
        x, y = x[: cfg.max_train], y[: cfg.max_train]
    return x, y, *_cifar_batch(directory / cfg.test_batch)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def image_files(root: Path) -> list[tuple[Path, int]]:
    """(image, label) of ``root/<class>/.../<image>``: class folders sorted by name are labels 0..C-1; images
    by suffix (IMAGE_SUFFIXES, any case), sorted; hidden entries skipped. ConfigError naming data.path when
    there are no class folders or one holds no images."""
    classes = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise ConfigError(f"data.path = {str(root)!r}: no class folders; expected {root}/<class>/<image>")
    found = []
    for label, folder in enumerate(classes):
        images = sorted(
            p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )
        if not images:
            raise ConfigError(
                f"data.path = {str(root)!r}: class folder {folder.name!r} holds no images ({', '.join(IMAGE_SUFFIXES)})"
            )
        found += [(p, label) for p in images]
    return found


def _image(path: Path, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    """One image as (H, W) or (H, W, 3) float32 in [0, 1], in Pillow ``mode`` (L or RGB), resized to ``size``
    (H, W) bilinearly when given."""
    from PIL import Image

    try:
        with Image.open(path) as opened:
            image = opened.convert(mode)
    except (OSError, ValueError) as e:
        raise ConfigError(f"data.path: cannot read image {path}: {e}") from None
    if size is not None:
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.float32) / np.float32(255)


class _ImageReader:
    """Image ``i`` of ``files`` as a (1, H, W) (grayscale) or (3, H, W) float32 sample in [0, 1], resized to
    ``size`` (H, W) when given; picklable, for a DataLoader's workers."""

    def __init__(self, files: Sequence[Path], grayscale: bool, size: tuple[int, int] | None):
        self.files, self.grayscale, self.size = files, grayscale, size

    def __call__(self, i: int) -> np.ndarray:
        image = _image(self.files[i], "L" if self.grayscale else "RGB", self.size)
        return image[None] if self.grayscale else image.transpose(2, 0, 1)

    def sample_shape(self) -> tuple[int, ...]:
        """(C, H, W) from ``size``, else from every file's header (no pixel is decoded); ConfigError naming
        data.size when the images differ in size."""
        from PIL import Image

        channels = 1 if self.grayscale else 3
        if self.size is not None:
            return (channels, *self.size)
        sizes: dict[tuple[int, int], Path] = {}
        for path in self.files:
            try:
                with Image.open(path) as opened:
                    sizes.setdefault(opened.size[::-1], path)
            except (OSError, ValueError) as e:
                raise ConfigError(f"data.path: cannot read image {path}: {e}") from None
            if len(sizes) > 1:
                (a, first), (b, other) = sizes.items()
                raise ConfigError(
                    f"data.size = null: {other} is {b[0]}x{b[1]} pixels (H x W), {first} {a[0]}x{a[1]}; "
                    "set data.size=[H, W] (or one int) to resize every image"
                )
        return (channels, *next(iter(sizes)))


def _imagefolder(cfg: ImageFolderConfig) -> Dataset:
    """Images as (3, H, W) (RGB) or (1, H, W) (grayscale) samples and their class labels: tensors when they
    fit in data.max_memory_mb (n x C x H x W x 4 bytes, known from the file list and data.size or the file
    headers before any pixel is read), else :class:`Rows`."""
    size = cfg.size if isinstance(cfg.size, tuple) else None  # validation made an int [H, W]
    files = image_files(Path(cfg.path or "").expanduser())
    read = _ImageReader([p for p, _ in files], cfg.grayscale, size)
    shape = read.sample_shape()
    y = np.array([label for _, label in files], dtype=np.int64)
    if not fits_in_memory(len(files), shape, cfg):
        return _streamed(cfg.name, (read, y), shape, cfg)
    return _as_dataset(cfg.name, np.stack([read(i) for i in range(len(files))]), y, cfg)


def fits_in_memory(n: int, sample_shape: tuple[int, ...], cfg: DataConfig) -> bool:
    """n x prod(sample_shape) x 4 bytes (float32) <= data.max_memory_mb x 2**20 (always, for data that cannot
    stream)."""
    limit = getattr(cfg, "max_memory_mb", None)
    return limit is None or n * math.prod(sample_shape) * 4 <= limit * MB


_Source = tuple[Callable[[int], Any], np.ndarray]  # read(i) -> sample i; the labels


def _row_stats(rows: Rows) -> tuple[Tensor, Tensor]:
    """Per-feature mean and std (population, ddof 0; a constant feature gets std 1) of ``rows`` in one pass:
    sums of d = x - x_0 and d^2 in float64 (x_0 the first row keeps the sums small); mean = x_0 + E[d],
    var = E[d^2] - E[d]^2."""
    shift = rows[0].double()
    total, squares = torch.zeros_like(shift), torch.zeros_like(shift)
    for xb in rows.batches(rows.chunks(rows.eval_batch)):
        d = xb.double() - shift
        total += d.sum(0)
        squares += (d * d).sum(0)
    mean_d = total / len(rows)
    std = (squares / len(rows) - mean_d**2).clamp_min(0).sqrt()
    return (shift + mean_d).float(), torch.where(std > 0, std, 1.0).float()


def _streamed(
    name: str,
    train: _Source,
    shape: tuple[int, ...],
    cfg: ImageFolderConfig | CallableDataConfig,
    test: _Source | None = None,
    val: _Source | None = None,
) -> Dataset:
    """:func:`_as_dataset` for data read on access: the same splits (stratified by split_seed on the labels)
    as :class:`Rows`; standardized with the training rows' mean and std (:func:`_row_stats`, one pass)."""
    read, y = train
    if test is None:
        tr, va, te = stratified_split(y, cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
        parts = [(read, y, tr), (read, y, va), (read, y, te)]
    elif val is None:
        tr, va, _ = stratified_split(y, cfg.val_fraction, 0.0, cfg.split_seed)
        parts = [(read, y, tr), (read, y, va), (*test, np.arange(len(test[1])))]
    else:
        parts = [(read, y, np.arange(len(y))), (*val, np.arange(len(val[1]))), (*test, np.arange(len(test[1])))]
    eval_batch = max(1, min(EVAL_BATCH, int(cfg.max_memory_mb * MB) // (4 * math.prod(shape))))
    rows = [Rows(r, idx, shape, cfg.workers, eval_batch) for r, _, idx in parts]
    if cfg.standardize:
        mean, std = _row_stats(rows[0])
        rows = [r.standardized(mean, std) for r in rows]
    labels = [torch.from_numpy(np.ascontiguousarray(lab[idx])) for _, lab, idx in parts]
    no_val = len(labels[1]) == 0
    return Dataset(
        name=name,
        x_train=rows[0],
        y_train=labels[0],
        x_val=rows[0] if no_val else rows[1],
        y_val=labels[0] if no_val else labels[1],
        val_is_train=no_val,
        x_test=rows[2],
        y_test=labels[2],
        num_classes=int(max(int(lab.max()) for lab in labels if len(lab))) + 1,
    )


def _as_dataset(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    cfg: DataConfig,
    test: tuple[np.ndarray, np.ndarray] | None = None,
    val: tuple[np.ndarray, np.ndarray] | None = None,
) -> Dataset:
    """Split (x, y) into train/val/test (train/val when the dataset brings its own ``test``; none when it
    brings ``val`` too) and, when cfg.standardize, standardize every feature with the training rows' mean and
    std. Samples keep their shape. With no validation rows the validation tensors are the training tensors
    (``val_is_train``)."""
    if test is None:
        if isinstance(cfg, (MNIST1DConfig, CIFAR10Config)):  # never: load() passes their own test split
            raise ValueError(f"data.name = {cfg.name!r} brings its own test set")
        tr, va, te = stratified_split(y, cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
        x_te, y_te = x[te], y[te]
    elif val is None:
        tr, va, _ = stratified_split(y, cfg.val_fraction, 0.0, cfg.split_seed)
        x_te, y_te = test
    else:  # explicit splits: train rows, then val rows
        tr, va = np.arange(len(x)), np.arange(len(x), len(x) + len(val[0]))
        x, y = np.concatenate([x, val[0]]), np.concatenate([y, val[1]])
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
    if isinstance(cfg, CIFAR10Config):
        x, y, xt, yt = _cifar10(cfg)
        return _as_dataset(cfg.name, x, y, cfg, test=(xt, yt))
    if isinstance(cfg, ImageFolderConfig):
        return _imagefolder(cfg)
    if isinstance(cfg, CallableDataConfig):
        return _user_data(cfg)
    raise ValueError(f"data.name = {cfg.name!r}: unknown dataset")  # pragma: no cover
