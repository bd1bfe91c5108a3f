"""Real training on digits: learning, determinism, and the trainer's independence from MLflow."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose, train_history
from initsweep.core import data as datasets
from initsweep.core.config import validate
from initsweep.core.trainer import summarize


def test_digits_split_is_stratified_and_independent_of_the_training_seed():
    d = datasets.load(validate(OmegaConf.to_container(compose([]), resolve=True)).data)
    sizes = len(d.y_train), len(d.y_val), len(d.y_test)
    assert sum(sizes) == 1797 and abs(sizes[1] / 1797 - 0.15) < 0.01 and abs(sizes[2] / 1797 - 0.15) < 0.01
    # Each class is represented in every split in about the same proportion.
    for y in (d.y_val, d.y_test):
        counts = torch.bincount(y, minlength=10).float()
        assert counts.min() >= 0.8 * counts.mean()
    # Standardized with the training statistics.
    assert abs(d.x_train.mean().item()) < 1e-5
    d2 = datasets.load(validate(OmegaConf.to_container(compose(["seed=7"]), resolve=True)).data)
    assert torch.equal(d.y_test, d2.y_test)


def test_normal_init_learns_digits_and_zeros_does_not():
    learned = train_history(["init=normal", "trainer.epochs=5"])
    assert learned[-1].val_acc > 0.9
    assert learned[-1].train_loss < learned[0].train_loss
    stuck = train_history(["init=zeros", "trainer.epochs=5"])
    assert max(e.val_acc for e in stuck) < 0.2


def test_same_seed_gives_identical_metrics_and_another_seed_does_not():
    strip = lambda hist: [(e.train_loss, e.train_acc, e.val_loss, e.val_acc) for e in hist]  # noqa: E731
    a = strip(train_history(["init=uniform", "trainer.epochs=3", "seed=3"]))
    b = strip(train_history(["init=uniform", "trainer.epochs=3", "seed=3"]))
    c = strip(train_history(["init=uniform", "trainer.epochs=3", "seed=4"]))
    assert a == b
    assert a != c


def test_summary_metrics():
    hist = train_history(["init=normal", "trainer.epochs=4"])
    s = summarize(hist, test_loss=0.5, test_acc=0.75)
    assert s["val/acc_best"] == max(e.val_acc for e in hist)
    assert s["train/loss_final"] == hist[-1].train_loss
    first90 = next(e.epoch for e in hist if e.val_acc >= 0.9 * s["val/acc_best"])
    assert s["val/epochs_to_90pct"] == first90
    assert s["test/acc"] == 0.75


@pytest.mark.slow
def test_trainer_does_not_import_mlflow_or_optuna():
    code = (
        "import sys, initsweep.core.trainer; print(any(m.split('.')[0] in ('mlflow', 'optuna') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_digits_read_from_the_shipped_file_equal_load_digits():
    import numpy as np
    from sklearn.datasets import load_digits

    x, y = datasets._digits(None)  # type: ignore[arg-type]
    x = x.reshape(len(x), -1)
    bunch = load_digits()
    assert np.array_equal(x, bunch.data) and np.array_equal(y, bunch.target)


def test_intra_op_threads_share_the_cores_among_parallel_jobs(monkeypatch):
    from initsweep.jobs.job import intra_op_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert intra_op_threads(None, 1) == 8
    assert intra_op_threads(None, 2) == 4
    assert intra_op_threads(None, 16) == 1
    assert intra_op_threads(3, 2) == 3  # configured wins
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert intra_op_threads(None, 1) == 2


def _setup(epochs: int = 6):
    from initsweep.core.initializers import initialize
    from initsweep.core.models import build_model

    config = validate(OmegaConf.to_container(compose([f"trainer.epochs={epochs}"]), resolve=True))
    data = datasets.load(config.data)
    torch.manual_seed(0)
    model = build_model(config.model, data.input_shape, data.num_classes)
    initialize(model, config.init, config.model.activation, batch=data.x_train)
    return config, data, model


def test_an_overlapped_measure_gives_the_same_epochs_and_shows_each_epochs_weights():
    from initsweep.core.trainer import BestState, Measure, fit

    config, data, model = _setup()
    plain_best, plain = BestState(), []
    for e in fit(model, data, config.trainer, 0, plain_best):
        plain.append(e)
    final = {k: v.clone() for k, v in model.state_dict().items()}

    config, data, model = _setup()
    best, ahead = BestState(), []
    for e in fit(model, data, config.trainer, 0, best, overlap=True):
        ahead.append(e)
        assert Measure(data)(model) == (e.train_loss, e.train_acc, e.val_loss, e.val_acc)  # the model: this epoch's
    assert [e.epoch for e in ahead] == [e.epoch for e in plain] == list(range(1, 7))
    for a, p in zip(ahead, plain):
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "train_loss_running", "lr"):
            assert getattr(a, key) == getattr(p, key), key
    assert all(torch.equal(v, final[k]) for k, v in model.state_dict().items())  # training itself is unchanged
    assert best.epoch == plain_best.epoch


def test_stopping_an_overlapped_fit_leaves_the_stopping_epochs_weights():
    from initsweep.core.trainer import BestState, fit

    config, data, model = _setup()
    plain_best = BestState()
    for e in fit(model, data, config.trainer, 0, plain_best):
        if e.epoch == 3:
            break
    at_three = {k: v.clone() for k, v in model.state_dict().items()}

    config, data, model = _setup()
    best = BestState()
    run = fit(model, data, config.trainer, 0, best, overlap=True)
    for e in run:
        if e.epoch == 3:
            break
    run.close()  # the epoch trained ahead is dropped; its measuring thread ends
    assert all(torch.equal(v, at_three[k]) for k, v in model.state_dict().items())
    assert best.epoch == plain_best.epoch and all(torch.equal(v, plain_best.state[k]) for k, v in best.state.items())
