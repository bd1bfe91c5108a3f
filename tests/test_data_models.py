"""The extra datasets (circles, mnist1d, IDX files) and the CNN: shapes, splits, fans and clear errors."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose
from initsweep.core import data, idx
from initsweep.core.config import ConfigError, validate
from initsweep.core.initializers import fans, init_layers
from initsweep.core.models import build_model


def _config(overrides: list[str]):
    return validate(OmegaConf.to_container(compose(overrides), resolve=True))


def _load(overrides: list[str]):
    cfg = _config(overrides)
    return cfg, data.load(cfg.data)


def test_digits_are_1x8x8_images_and_the_mlp_is_unchanged() -> None:
    cfg, d = _load([])
    assert d.input_shape == (1, 8, 8) and d.num_classes == 10
    model = build_model(cfg.model, d.input_shape, d.num_classes)
    assert [tuple(m.weight.shape) for _, m in init_layers(model)] == [(256, 64), (256, 256), (10, 256)]
    assert model(d.x_val).shape == (len(d.x_val), 10)


def test_circles() -> None:
    _, d = _load(["data=circles", "data.n_samples=400"])
    assert d.input_shape == (2,) and d.num_classes == 2
    assert len(d.x_train) + len(d.x_val) + len(d.x_test) == 400
    assert set(d.y_test.tolist()) == {0, 1}


def test_mnist1d_offline_with_its_own_test_split_and_no_global_seed_side_effect() -> None:
    np.random.seed(123)
    random.seed(123)
    np_before, py_before = np.random.rand(), random.random()
    np.random.seed(123)
    random.seed(123)
    _, d = _load(["data=mnist1d", "data.num_samples=1000"])
    assert (np.random.rand(), random.random()) == (np_before, py_before)  # global generators untouched
    assert d.input_shape == (1, 40) and d.num_classes == 10
    assert len(d.x_test) == 200 and len(d.x_train) + len(d.x_val) == 800
    assert len(d.x_val) == pytest.approx(0.15 * 800, abs=10)


def test_cnn_conv_fans_and_forward_on_images_and_signals() -> None:
    cfg, d = _load(["model=cnn"])
    model = build_model(cfg.model, d.input_shape, d.num_classes)
    layers = dict(init_layers(model))
    assert list(layers) == ["conv1", "conv2", "fc1", "out"]
    assert tuple(layers["conv1"].weight.shape) == (16, 1, 3, 3) and fans((16, 1, 3, 3)) == (9, 144)
    assert fans(tuple(layers["conv2"].weight.shape)) == (16 * 9, 32 * 9)
    assert tuple(layers["fc1"].weight.shape) == (64, 32 * 2 * 2)  # 8 -> 4 -> 2 after two poolings
    assert model(d.x_val[:5]).shape == (5, 10)
    cnn1d = build_model(_config(["model=cnn", "model.channels=[4,8,8]", "model.width=0"]).model, (1, 40), 10)
    assert isinstance(dict(init_layers(cnn1d))["conv1"], torch.nn.Conv1d)
    assert fans(tuple(dict(init_layers(cnn1d))["conv3"].weight.shape)) == (8 * 3, 8 * 3)
    assert cnn1d(torch.randn(3, 1, 40)).shape == (3, 10)


def test_cnn_on_flat_data_is_refused_before_training() -> None:
    from initsweep.jobs.resources import check_buildable

    with pytest.raises(ConfigError, match=r"model=cnn: needs .* shape \(2,\) \(flat feature vectors"):
        check_buildable(_config(["model=cnn", "data=circles"]))
    cfg = _config(["model=cnn"])
    with pytest.raises(ConfigError, match="model=mlp"):
        build_model(cfg.model, (20,), 3)


@pytest.mark.parametrize(
    "bad,key", [(["model.kernel_size=4"], "model.kernel_size"), (["model.channels=[8,0]"], "model.channels")]
)
def test_cnn_bad_settings(bad: list[str], key: str) -> None:
    from initsweep.jobs.resources import check_buildable

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        check_buildable(_config(["model=cnn", *bad]))


def _write_idx_dir(directory: Path, n_train: int = 60, n_test: int = 20, gz: bool = False) -> Path:
    """A tiny MNIST-like IDX set: 6x6 uint8 images of 3 classes (the class sets the bright row)."""
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % 3).astype(np.uint8)
        images = rng.integers(0, 40, size=(n, 6, 6)).astype(np.uint8)
        images[np.arange(n), labels * 2, :] = 250
        idx.write(directory / f"{prefix}-images-idx3-ubyte{suffix}", images)
        idx.write(directory / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return directory


@pytest.mark.parametrize("gz", [False, True])
def test_idx_files_from_a_local_path(tmp_path: Path, gz: bool) -> None:
    folder = _write_idx_dir(tmp_path / "mnist", gz=gz)
    cfg, d = _load(["data=idx", f"data.path={folder}"])
    assert d.input_shape == (1, 6, 6) and d.num_classes == 3
    assert len(d.x_test) == 20 and len(d.x_train) + len(d.x_val) == 60
    model = build_model(_config(["model=cnn", "data=idx", f"data.path={folder}"]).model, d.input_shape, 3)
    assert model(d.x_test).shape == (20, 3)
    # without test files: test_fraction of the training files
    _, d2 = _load(
        ["data=idx", f"data.path={folder}", "data.test_images=null", "data.test_labels=null", "data.max_train=30"]
    )
    assert len(d2.x_train) + len(d2.x_val) + len(d2.x_test) == 30


def test_idx_roundtrip(tmp_path: Path) -> None:
    for arr in (np.arange(24, dtype=np.uint8).reshape(2, 3, 4), np.linspace(-1, 1, 10).astype(np.float32)):
        assert np.array_equal(idx.read(idx.write(tmp_path / "a.idx", arr)), arr)
    (tmp_path / "junk").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="not an IDX file"):
        idx.read(tmp_path / "junk")


def test_idx_missing_path_or_files_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.path = None: required"):
        _config(["data=idx"])
    with pytest.raises(ConfigError, match=r"data\.path = .*directory does not exist"):
        _config(["data=idx", f"data.path={tmp_path / 'nowhere'}"])
    folder = _write_idx_dir(tmp_path / "m")
    (folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(ConfigError, match=r"data\.test_labels = 't10k-labels-idx1-ubyte': file not found"):
        _config(["data=idx", f"data.path={folder}"])
    (folder / "train-images-idx3-ubyte").write_bytes(b"garbage!")
    with pytest.raises(ConfigError, match=r"data\.train_images: cannot read .*not an IDX file"):
        data.load(_config(["data=idx", f"data.path={folder}", "data.test_images=null", "data.test_labels=null"]).data)
