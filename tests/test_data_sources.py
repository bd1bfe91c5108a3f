"""Data from a user's callable (``data._target_``), CIFAR-10's python batches and image class folders: shapes,
labels, splits, and one clear ConfigError naming the key for every kind of bad data."""

from __future__ import annotations

import os
import pickle
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from conftest import all_runs, compose, run_train, write_cifar_dir
from initsweep.core import data
from initsweep.core.config import ConfigError, validate

# A user's data module, written into a temporary folder on sys.path (and on PYTHONPATH for train.py).
USER_MODULE = "initsweep_test_userdata"
USER_CODE = '''
import numpy as np
import torch

NOT_CALLABLE = 3


def blobs(n=600, seed=0):
    """Three Gaussian blobs in 2-D, labels 0, 1, 2."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(size=(n, 2)) + 4.0 * np.stack([y == 1, y == 2], axis=1)
    return x, y


def tensors(n=90):
    x, y = blobs(n)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y)


def splits(with_val=True):
    x, y = blobs(120)
    out = {"train": (x[:60], y[:60]), "test": (torch.tensor(x[90:]), torch.tensor(y[90:]))}
    if with_val:
        out["val"] = (x[60:90], y[60:90])
    return out


def needs_k(k):
    return blobs(30)


def broken(kind):
    x, y = blobs(30)
    if kind == "boom":
        raise RuntimeError("boom")
    bad_x = x.copy()
    bad_x[3, 1] = np.inf
    return {
        "scalar": 3,
        "triple": (x, y, y),
        "lengths": (x, y[:-1]),
        "not_finite": (bad_x, y),
        "float_labels": (x, y.astype(float)),
        "negative": (x, y - 1),
        "flat": (x[:, 0], y),
        "shapes": {"train": (x, y), "test": (x[:, :1], y)},
        "no_test": {"train": (x, y)},
        "no_pair": {"train": (x, y), "test": x},
    }[kind]
'''


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder holding the user's data module, on sys.path while this module's tests run."""
    folder = tmp_path_factory.mktemp("user")
    (folder / f"{USER_MODULE}.py").write_text(USER_CODE)
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))
    sys.modules.pop(USER_MODULE, None)


def _config(node: dict[str, Any]) -> Any:
    """The validated data config of the default job with ``data`` replaced by ``node``."""
    raw = OmegaConf.to_container(compose(), resolve=True)
    return validate({**raw, "data": node}).data  # type: ignore[dict-item]


def _user(function: str, **keys: Any) -> dict[str, Any]:
    return {"_target_": f"{USER_MODULE}.{function}", **keys}


# --------------------------------------------------------------------------------------------------
# A user's callable


def test_x_y_are_split_stratified_like_digits(user_dir: Path) -> None:
    cfg = _config(_user("blobs", n=300, seed=1))
    assert cfg.name == "blobs" and cfg.kwargs == {"n": 300, "seed": 1}
    d = data.load(cfg)
    assert (d.name, d.input_shape, d.num_classes) == ("blobs", (2,), 3)
    assert (len(d.x_train), len(d.x_val), len(d.x_test)) == (210, 45, 45)  # 70/15/15 of every class
    assert [int((d.y_val == c).sum()) for c in range(3)] == [15, 15, 15]
    x, y = __import__(USER_MODULE).blobs(300, 1)
    tr, _, te = data.stratified_split(y, 0.15, 0.15, 0)  # digits' split: split_seed 0
    mean, std = x[tr].mean(axis=0), x[tr].std(axis=0)
    np.testing.assert_allclose(d.x_test.numpy(), (x[te] - mean) / std, rtol=1e-5, atol=1e-5)
    assert d.y_test.tolist() == y[te].tolist()
    assert float(d.x_train.mean()) == pytest.approx(0.0, abs=1e-6)  # standardized with the training rows


def test_torch_tensors_a_label_and_no_standardization(user_dir: Path) -> None:
    d = data.load(_config(_user("tensors", name="three blobs", standardize=False, val_fraction=0)))
    assert d.name == "three blobs" and d.val_is_train and d.x_val is d.x_train
    assert len(d.x_train) + len(d.x_test) == 90 and d.x_train.dtype == d.x_test.dtype


def test_explicit_splits_are_kept_and_val_is_split_off_train_when_absent(user_dir: Path) -> None:
    d = data.load(_config(_user("splits")))
    assert (len(d.x_train), len(d.x_val), len(d.x_test)) == (60, 30, 30)
    x, y = __import__(USER_MODULE).blobs(120)
    assert d.y_val.tolist() == y[60:90].tolist() and d.y_test.tolist() == y[90:].tolist()
    np.testing.assert_allclose(d.x_val.numpy(), (x[60:90] - x[:60].mean(0)) / x[:60].std(0), rtol=1e-5, atol=1e-5)
    d = data.load(_config(_user("splits", with_val=False, val_fraction=0.2)))
    assert (len(d.x_train), len(d.x_val), len(d.x_test)) == (48, 12, 30)  # test_fraction unused


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ({"_target_": "no_such_module_xyz.blobs"}, r"data\._target_ = 'no_such_module_xyz.blobs': cannot be imported"),
        (_user("NOT_CALLABLE"), r"data\._target_ = .*: is a int, not a callable"),
        (_user("blobs", nn=5), r"data\.nn: not a parameter of .*blobs\(n=600, seed=0\); did you mean data\.n\?"),
        (_user("needs_k"), r"data\.k: required by .*needs_k\(k\); add it with \+data\.k=VALUE"),
        (_user("broken", kind="boom"), r"data\._target_ = .*broken': failed: RuntimeError: boom"),
        (_user("broken", kind="scalar"), r"returned a int; expected \(x, y\) or \{'train'"),
        (_user("broken", kind="triple"), r"returned a tuple; expected \(x, y\)"),
        (_user("broken", kind="lengths"), r"x and y must hold the same number .* got \(30, 2\), \(29,\)"),
        (_user("broken", kind="not_finite"), r"x has 1 NaN or infinite values"),
        (
            _user("broken", kind="float_labels"),
            r"integer class labels 0\.\.C-1 \(C = max \+ 1 classes\), got dtype float64",
        ),
        (_user("broken", kind="negative"), r"class labels 0\.\.C-1 .*got a minimum of -1"),
        (_user("broken", kind="flat"), r"x has shape \(30,\): .*at least 2 dims"),
        (_user("broken", kind="shapes"), r"the splits' samples differ in shape: \{'train': \(2,\), 'test': \(1,\)\}"),
        (_user("broken", kind="no_test"), r"keys \['train'\]; expected train, test, val \(optional\)"),
        (_user("broken", kind="no_pair"), r"\['test'\] is a ndarray; expected a pair \(x, y\)"),
    ],
    ids=[
        "not_importable",
        "not_callable",
        "unknown_key",
        "missing_key",
        "raises",
        "scalar",
        "triple",
        "lengths",
        "not_finite",
        "float_labels",
        "negative_labels",
        "flat_x",
        "split_shapes",
        "no_test_split",
        "no_pair",
    ],
)
def test_bad_user_data_is_one_config_error_naming_the_key(user_dir: Path, node: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        data.load(_config(node))


def test_a_target_selects_the_callable_and_the_built_ins_keep_their_messages(user_dir: Path) -> None:
    cfg = _config({"name": "digits", "_target_": f"{USER_MODULE}.blobs"})  # +data._target_ on the default digits
    assert type(cfg).__name__ == "CallableDataConfig" and cfg.name == "digits"
    with pytest.raises(ConfigError, match=r"data\.name = 'foo': Input tag 'foo' found using 'name'"):
        _config({"name": "foo"})
    with pytest.raises(ConfigError, match=r"data\.nosuch: unknown key"):
        _config({"name": "digits", "nosuch": 1})
    with pytest.raises(ConfigError, match=r"data\.val_fraction = 2: Input should be less than 0\.9"):
        _config(_user("blobs", val_fraction=2))


# --------------------------------------------------------------------------------------------------
# CIFAR-10's python batches


def _cifar(folder: Path, **keys: Any) -> Any:
    return _config({**OmegaConf.to_container(compose(["data=cifar10"]).data), "path": str(folder), **keys})


def test_cifar10_batches_become_3x32x32_images_with_their_own_test_set(tmp_path: Path) -> None:
    folder = write_cifar_dir(tmp_path / "cifar")
    d = data.load(_cifar(folder))
    assert (d.input_shape, d.num_classes, len(d.x_test)) == ((3, 32, 32), 10, 10)
    assert len(d.x_train) + len(d.x_val) == 60
    raw = pickle.loads((folder / "data_batch_1").read_bytes())
    d = data.load(_cifar(folder, standardize=False, val_fraction=0, train_batches=["data_batch_1"]))
    assert len(d.x_train) == 12 and d.val_is_train and 0 <= float(d.x_train.min()) <= float(d.x_train.max()) <= 1
    np.testing.assert_allclose(d.x_train[0].numpy(), raw[b"data"][0].reshape(3, 32, 32) / 255, rtol=1e-6)
    assert d.y_train.tolist() == raw[b"labels"]
    d = data.load(_cifar(folder, max_train=20, val_fraction=0))
    assert len(d.x_train) == 20


def test_cifar10_missing_or_damaged_files_name_data_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.path = None: required"):
        _config(OmegaConf.to_container(compose(["data=cifar10"]).data))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"data\.path = .*nowhere': directory does not exist"):
        _cifar(tmp_path / "nowhere")
    folder = write_cifar_dir(tmp_path / "cifar")
    (folder / "data_batch_3").unlink()
    with pytest.raises(ConfigError, match=r"data\.train_batches = .*: file not found in data\.path: .*data_batch_3"):
        _cifar(folder)
    (folder / "data_batch_4").write_bytes(b"not a pickle")
    with pytest.raises(ConfigError, match=r"data\.path: .*data_batch_4 is not a CIFAR-10 python batch"):
        data.load(_cifar(folder, train_batches=["data_batch_4"]))


# --------------------------------------------------------------------------------------------------
# Image class folders


def write_image_folder(root: Path, per_class: int = 8, size: tuple[int, int] = (6, 5)) -> Path:
    """root/<class>/<image>: classes blue, green, red (sorted: labels 0, 1, 2), each image bright in its
    colour's channel; mixed suffixes and case, plus a file that is no image."""
    from PIL import Image

    for channel, name in ((2, "blue"), (1, "green"), (0, "red")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.full((*size, 3), 20 + i, dtype=np.uint8)
            pixels[..., channel] = 230
            Image.fromarray(pixels).save(root / name / f"{i}{('.png', '.PNG', '.bmp')[i % 3]}")
        (root / name / "notes.txt").write_text("not an image")
    return root


def _images(folder: Path, **keys: Any) -> Any:
    return _config({**OmegaConf.to_container(compose(["data=imagefolder"]).data), "path": str(folder), **keys})


def test_imagefolder_classes_by_sorted_folder_name(tmp_path: Path) -> None:
    folder = write_image_folder(tmp_path / "images")
    d = data.load(_images(folder, standardize=False))
    assert (d.input_shape, d.num_classes) == ((3, 6, 5), 3)
    assert len(d.x_train) + len(d.x_val) + len(d.x_test) == 24
    x, y = torch.cat([d.x_train, d.x_val, d.x_test]), torch.cat([d.y_train, d.y_val, d.y_test])
    channel_of_label = {0: 2, 1: 1, 2: 0}  # blue, green, red
    assert [channel_of_label[int(c)] for c in y] == x.mean(dim=(2, 3)).argmax(dim=1).tolist()
    assert float(x.max()) == pytest.approx(230 / 255)
    gray = data.load(_images(folder, grayscale=True, size=4))
    assert gray.input_shape == (1, 4, 4)
    assert data.load(_images(folder, size=[3, 7])).input_shape == (3, 3, 7)


def test_imagefolder_errors(tmp_path: Path) -> None:
    from PIL import Image

    folder = write_image_folder(tmp_path / "images")
    Image.new("RGB", (9, 9)).save(folder / "green" / "big.png")
    with pytest.raises(ConfigError, match=r"data\.size = null: .*green/big\.png is 9x9 pixels .*data\.size=\[H, W\]"):
        data.load(_images(folder))
    assert data.load(_images(folder, size=6)).input_shape == (3, 6, 6)
    (folder / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"data\.path = .*: class folder 'empty' holds no images \(\.png, \.jpg"):
        data.load(_images(folder))
    (tmp_path / "no_classes").mkdir()
    with pytest.raises(ConfigError, match=r"data\.path = .*no_classes': no class folders"):
        data.load(_images(tmp_path / "no_classes"))
    with pytest.raises(ConfigError, match=r"data\.size = 0: must be \[H, W\] or one int"):
        _images(folder, size=0)


# --------------------------------------------------------------------------------------------------
# End to end: train.py


def _env(user_dir: Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(user_dir), os.environ.get("PYTHONPATH")) if p)}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([f"+data._target_={USER_MODULE}.blobs", "+data.nn=5"], "data.nn: not a parameter of"),  # the precheck
        (
            [f"+data._target_={USER_MODULE}.broken", "+data.kind=not_finite"],
            "x has 1 NaN or infinite values",
        ),  # the job
    ],
    ids=["refused_keys", "not_finite"],
)
def test_bad_user_data_exits_2_before_any_run(tmp_path: Path, user_dir: Path, args: list, message: str) -> None:
    proc = run_train([*args, "data.name=mine", "trainer.epochs=1"], cwd=tmp_path, env=_env(user_dir))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith("initsweep: ") and message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()  # no run was created


@pytest.mark.slow
def test_a_user_callable_from_a_users_config_dir_trains(tmp_path: Path, user_dir: Path) -> None:
    """conf/data/blobs.yaml in the user's own config dir, joined through Hydra's search path."""
    conf = tmp_path / "myconf"
    (conf / "data").mkdir(parents=True)
    (conf / "data" / "blobs.yaml").write_text(
        textwrap.dedent(f"""\
            _target_: {USER_MODULE}.blobs
            n: 300
            split_seed: 0
            val_fraction: 0.15
            test_fraction: 0.15
            standardize: true
        """)
    )
    args = [f"hydra.searchpath=[file://{conf}]", "data=blobs", "data.n=240", "trainer.epochs=2"]
    proc = run_train([*args, "tracking.log_plots=false"], cwd=tmp_path, env=_env(user_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = all_runs(tmp_path)
    assert run.info.status == "FINISHED"
    assert run.data.params["data._target_"] == f"{USER_MODULE}.blobs" and run.data.params["data.n"] == "240"
    assert run.data.metrics["val/acc_best"] > 0.6  # three well-separated blobs
