"""Values that are wrong whatever the code does are config errors: exit 2, one message naming the key, nothing
trained or tracked (a real train.py process each)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_train


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["init=uniform", "init.low=nan"], "init.low = nan: Input should be a finite number"),
        (["trainer.lr=inf"], "trainer.lr = inf: Input should be a finite number"),
        (["experiment_name=" + "x" * 600], "(600 characters): String should have at most 500 characters"),
        (["model.width=100000"], "model.width = 100000 (model.depth = 2): the model has 10,007,600,010 parameters"),
    ],
    ids=["nan", "inf", "long_experiment_name", "huge_model"],
)
def test_bad_value_is_one_config_error_before_anything_is_built(tmp_path: Path, args, message):
    proc = run_train([*args, "trainer.epochs=1"], cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert proc.stderr.startswith("initsweep: ") and "Traceback" not in proc.stderr
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()  # no run was created
