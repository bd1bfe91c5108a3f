"""A sweep and a study run clean with deprecation and future warnings as errors (PYTHONWARNINGS): initsweep
filters only named warnings from named libraries, so a newly deprecated call fails here first."""

from __future__ import annotations

import os

import pytest

from conftest import run_train

STRICT = {"PYTHONWARNINGS": "error::DeprecationWarning,error::FutureWarning"}


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ["-m", "init=zeros,normal", "trainer.epochs=2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
        ["-m", "init=zeros,normal", "trainer.epochs=2"],
        ["-m", "hparams_search=normal_std", "hydra.sweeper.n_trials=3", "trainer.epochs=2"],
    ],
    ids=["joblib-sweep", "basic-sweep", "study"],
)
def test_runs_clean_with_deprecations_as_errors(tmp_path, args):
    r = run_train(args, tmp_path, env={**os.environ, **STRICT})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr and "DeprecationWarning" not in r.stderr, r.stderr[-3000:]
