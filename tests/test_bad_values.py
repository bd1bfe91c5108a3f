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
        (["model.width=100000"], "model.depth = 2, model.width = 100000: the model has 10,007,600,010 parameters"),
    ],
    ids=["nan", "inf", "long_experiment_name", "huge_model"],
)
def test_bad_value_is_one_config_error_before_anything_is_built(tmp_path: Path, args, message):
    proc = run_train([*args, "trainer.epochs=1"], cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert proc.stderr.startswith("initsweep: ") and "Traceback" not in proc.stderr
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()  # no run was created


@pytest.mark.slow
def test_a_multirun_over_max_jobs_is_refused_at_once_and_leaves_nothing(tmp_path: Path):
    proc = run_train(["-m", "seed=range(1001)", "trainer.epochs=1"], cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "this multirun has 1001 jobs, more than max_jobs = 1000" in proc.stderr
    assert "add max_jobs=1001" in proc.stderr
    assert not list(tmp_path.glob("multirun/*/*")) and not (tmp_path / "mlruns" / "mlflow.db").exists()


def test_job_count_limit_and_progress_of_a_large_check(capsys):
    from initsweep.core.config import ConfigError
    from initsweep.sweep.callback import _checking_progress, check_job_count

    check_job_count(1000, 1000)
    with pytest.raises(ConfigError, match="1001 jobs, more than max_jobs = 1000"):
        check_job_count(1001, 1000)
    assert _checking_progress(100) is None
    say = _checking_progress(5000, every_s=0.0)
    assert say is not None
    say(2000)
    assert "initsweep: checking job configs: 2000/5000" in capsys.readouterr().err
