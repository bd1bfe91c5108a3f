"""Device selection, bf16 autocast and torch.compile, checked for correctness on CPU."""

from __future__ import annotations

import pytest
import torch

from conftest import train_history
from initsweep.core.config import ConfigError
from initsweep.core.trainer import resolve_device


def test_auto_device_is_cuda_when_present_else_cpu():
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_asking_for_an_absent_cuda_is_a_config_error():
    with pytest.raises(ConfigError, match="trainer.device"):
        resolve_device("cuda")


def test_bf16_autocast_trains_to_about_the_same_accuracy():
    fp32 = train_history(["init=uniform", "init.low=-0.1", "init.high=0.1", "trainer.epochs=4"])
    bf16 = train_history(
        ["init=uniform", "init.low=-0.1", "init.high=0.1", "trainer.epochs=4", "trainer.precision=bf16"]
    )
    assert bf16[-1].val_acc > 0.85
    assert abs(bf16[-1].val_acc - fp32[-1].val_acc) < 0.05
    assert bf16[-1].train_loss != fp32[-1].train_loss  # bf16 really ran


@pytest.mark.slow
def test_compiled_model_matches_eager():
    eager = train_history(["init=uniform", "init.low=-0.1", "init.high=0.1", "trainer.epochs=2", "model.width=32"])
    compiled = train_history(
        ["init=uniform", "init.low=-0.1", "init.high=0.1", "trainer.epochs=2", "model.width=32", "trainer.compile=true"]
    )
    for a, b in zip(eager, compiled):
        assert b.train_loss == pytest.approx(a.train_loss, rel=1e-3)
        assert b.val_acc == pytest.approx(a.val_acc, abs=0.01)
