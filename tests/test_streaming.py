"""Data larger than ``data.max_memory_mb`` streams through a DataLoader (:class:`initsweep.core.data.Rows`):
the same splits, batches and standardization as the in-memory tensors, so the same per-epoch history for the
same seed; exact resume inside an epoch; a user's torch Datasets; full-batch training refused."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose
from initsweep.core import data as datasets
from initsweep.core.config import ConfigError, validate
from initsweep.core.models import build_model
from initsweep.core.trainer import BestState, Preempted, TrainState, evaluate, fit
from initsweep.diagnostics.signal import fixed_batch
from initsweep.jobs.resources import check_streamable


def _image_folder(root: Path, per_class: int = 20) -> Path:
    """root/<class>/<i>.png: 3 classes of 5x4 RGB images, noisy, each brighter in its own channel."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for channel, name in enumerate(("a", "b", "c")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 160, size=(5, 4, 3), dtype=np.uint8)
            pixels[..., channel] += 90
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def _config(folder: Path, *overrides: str, **data_keys: Any) -> Any:
    raw: Any = OmegaConf.to_container(
        compose(["data=imagefolder", "model.width=16", "trainer.batch_size=16", *overrides]), resolve=True
    )
    raw["data"].update(path=str(folder), **data_keys)
    return validate(raw)


def _model(config: Any, data: datasets.Dataset) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(config.model, data.input_shape, data.num_classes)


def _history(epochs: Any) -> list[tuple]:
    return [(e.epoch, e.train_loss, e.train_acc, e.val_loss, e.val_acc, e.train_loss_running) for e in epochs]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _image_folder(tmp_path_factory.mktemp("images"))


def test_the_limit_decides_and_the_splits_and_standardization_agree(folder: Path) -> None:
    memory = datasets.load(_config(folder).data)
    streamed = datasets.load(_config(folder, max_memory_mb=0.002).data)  # 2097 bytes < 60 x 3x5x4 x 4 = 14400
    assert not memory.streamed and streamed.streamed
    assert datasets.load(_config(folder, max_memory_mb=14400 / 2**20).data).streamed is False  # the limit itself fits
    assert (streamed.input_shape, streamed.num_classes) == (memory.input_shape, memory.num_classes) == ((3, 5, 4), 3)
    assert streamed.x_train.eval_batch == 8  # rows of 240 bytes within the 2097-byte limit
    for split in ("train", "val", "test"):
        y_mem, y_str = getattr(memory, f"y_{split}"), getattr(streamed, f"y_{split}")
        x_str = getattr(streamed, f"x_{split}")
        assert torch.equal(y_mem, y_str)
        rows = x_str.take(torch.arange(len(x_str)))
        torch.testing.assert_close(rows, getattr(memory, f"x_{split}"), atol=1e-5, rtol=1e-5)
    assert abs(float(streamed.x_train.take(torch.arange(len(streamed.y_train))).mean())) < 1e-5  # standardized
    x_mem, y_mem = fixed_batch(memory.x_train, memory.y_train, 10)
    x_str, y_str = fixed_batch(streamed.x_train, streamed.y_train, 10)  # the diagnostics' batch: the same rows
    assert torch.equal(y_mem, y_str)
    torch.testing.assert_close(x_mem, x_str, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("workers", "overlap"), [(0, False), (2, True)], ids=["in-process", "workers-overlap-asked"])
def test_streamed_training_has_the_in_memory_history(folder: Path, workers: int, overlap: bool) -> None:
    torch.set_num_threads(1)
    epochs = 4 if workers == 0 else 2  # worker processes start for every pass: fewer passes
    config = _config(folder, f"trainer.epochs={epochs}")
    memory = datasets.load(config.data)
    want = _history(fit(_model(config, memory), memory, config.trainer, seed=3))
    streamed_config = _config(folder, max_memory_mb=0, workers=workers)
    streamed = datasets.load(streamed_config.data)
    model = _model(config, streamed)
    got = _history(fit(model, streamed, config.trainer, seed=3, overlap=overlap))  # overlap: ignored
    assert len(got) == len(want) == epochs
    for g, w in zip(got, want):
        assert g == pytest.approx(w, rel=1e-4, abs=1e-5)
    assert want[-1][2] > 0.5  # it learns (chance: 1/3): the history compared is not a constant
    assert evaluate(model, streamed.x_test, streamed.y_test)[1] == pytest.approx(
        evaluate(_trained(config, memory), memory.x_test, memory.y_test)[1]
    )


def _trained(config: Any, data: datasets.Dataset) -> torch.nn.Module:
    model = _model(config, data)
    for _ in fit(model, data, config.trainer, seed=3):
        pass
    return model


def test_streamed_training_stopped_inside_an_epoch_resumes_exactly(folder: Path) -> None:
    torch.set_num_threads(1)
    config = _config(folder, "trainer.epochs=3", "trainer.checkpoint_every=0", max_memory_mb=0)
    data = datasets.load(config.data)  # 42 training images: 3 batches per epoch, the last of 10
    whole = _history(fit(_model(config, data), data, config.trainer, seed=1))
    saved: list[TrainState] = []
    steps = itertools.count(1)
    first: list = []
    with pytest.raises(Preempted):
        for epoch in fit(
            _model(config, data), data, config.trainer, 1, BestState(), False, None, saved.append,
            lambda: next(steps) >= 5,
        ):  # fmt: skip
            first.append(epoch)
    assert (saved[0].epoch, saved[0].position) == (1, 32)  # stopped after the second batch of epoch 2
    rest = _history(fit(_model(config, data), data, config.trainer, 1, resume=saved[0]))
    assert _history(first) + rest == whole


USER_CODE = '''
import torch


class Squares(torch.utils.data.Dataset):
    """n samples of shape (2, 3): class k is k + noise; item i is (x, y)."""

    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.y = torch.arange(n) % 3
        self.x = self.y[:, None, None].float() + torch.randn(n, 2, 3, generator=g)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


def squares(n=90):
    return {"train": Squares(n, 0), "test": Squares(30, 1)}


def all_squares(n=90):
    return Squares(n, 0)
'''


@pytest.fixture
def user_module(tmp_path: Path) -> Any:
    (tmp_path / "stream_user_data.py").write_text(USER_CODE)
    sys.path.insert(0, str(tmp_path))
    yield __import__("stream_user_data")
    sys.path.remove(str(tmp_path))
    sys.modules.pop("stream_user_data", None)


@pytest.mark.parametrize("function", ["squares", "all_squares"])
def test_a_users_torch_datasets_are_read_in_memory_or_streamed(user_module: Any, function: str) -> None:
    raw: Any = OmegaConf.to_container(compose(), resolve=True)
    node = {"_target_": f"stream_user_data.{function}", "split_seed": 0, "val_fraction": 0.2, "test_fraction": 0.2}
    memory = datasets.load(validate({**raw, "data": node}).data)
    streamed = datasets.load(validate({**raw, "data": {**node, "max_memory_mb": 0}}).data)
    assert not memory.streamed and streamed.streamed
    assert (streamed.input_shape, streamed.num_classes) == (memory.input_shape, memory.num_classes) == ((2, 3), 3)
    assert len(memory.y_train) == len(streamed.y_train) == (72 if function == "squares" else 54)
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(memory, f"y_{split}"), getattr(streamed, f"y_{split}"))
        x = getattr(streamed, f"x_{split}")
        torch.testing.assert_close(x.take(torch.arange(len(x))), getattr(memory, f"x_{split}"))


def test_bad_streaming_keys_and_full_batch_are_config_errors(folder: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.max_memory_mb"):
        _config(folder, max_memory_mb=-1)
    with pytest.raises(ConfigError, match=r"data\.workers"):
        _config(folder, workers=-1)
    config = _config(folder, "trainer.batch_size=full", max_memory_mb=0)
    with pytest.raises(ConfigError, match=r"trainer\.batch_size = full: .* exceeds data\.max_memory_mb"):
        check_streamable(config.trainer, datasets.load(config.data))
    check_streamable(config.trainer, datasets.load(_config(folder).data))  # in memory: full batch is fine


def test_a_streamed_job_logs_the_in_memory_jobs_metrics(folder: Path, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from initsweep.jobs.job import JobContext, execute

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    job = [
        "data=imagefolder",
        f"data.path={folder}",
        "model.width=16",
        "trainer.batch_size=16",
        "trainer.epochs=2",
        "diagnostics.batch_size=8",
        "tracking.log_plots=false",
        f"tracking.uri={uri}",
    ]
    runs = [execute(compose([*job, f"data.max_memory_mb={mb}"]), ctx=JobContext()).run_id for mb in (1024, 0)]
    memory, streamed = (MlflowClient(tracking_uri=uri).get_run(r).data.metrics for r in runs)
    for key in ("train/loss_final", "val/acc_best", "val/loss_best", "test/loss", "test/acc", "test/acc_at_best_val"):
        assert streamed[key] == pytest.approx(memory[key], rel=1e-4, abs=1e-5), key
    signal = [k for k in memory if k.startswith("diag/")]  # the diagnostics ran on the same fixed batch
    assert signal and all(streamed[k] == pytest.approx(memory[k], rel=1e-4, abs=1e-6) for k in signal)
