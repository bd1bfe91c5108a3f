"""Every config error on the command line, Hydra's own included, is one `initsweep:` line with exit 2,
and a rejected command leaves no outputs/ or multirun/ directory behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_train
from initsweep.core.config import did_you_mean
from initsweep.report.comparison import round_numbers
from initsweep.report.console import job_line, progress_prefix, quiet_libraries, start_progress


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, expected",
    [
        (["trainer.lrr=0.1"], "unknown key trainer.lrr (in trainer.lrr=0.1); did you mean trainer.lr?"),
        (["+trainer.lrr=0.1"], "trainer.lrr: unknown key; did you mean trainer.lr?"),
        (["init=custom", "init.factor=2"], "unknown key init.factor (in init.factor=2); add it with +init.factor=2\n"),
        (["init=xavier"], "init=xavier: no such option; did you mean xavier_normal or xavier_uniform?"),
        (["-m", "init=zeros,xavier"], "init=xavier: no such option"),
        (["trainer.lr=[0.1"], "bad override syntax"),
        (["trainer.lr=-1"], "trainer.lr = -1"),
        (["-m", "trainer.lr=-1,0.1"], "trainer.lr = -1"),
        (["init=zeros,ones"], "is a sweep: add -m"),
    ],
)
def test_config_errors_are_one_line_exit_2_and_leave_no_output_dir(args, expected, tmp_path: Path):
    proc = run_train(args, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("initsweep: ") and expected in proc.stderr
    assert "Traceback" not in proc.stderr and "search path" not in proc.stderr.lower()
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()


def test_did_you_mean_and_rounded_labels():
    assert did_you_mean("lrr", ["lr", "momentum", "epochs"]) == "; did you mean lr?"
    assert did_you_mean("zzz", ["lr", "momentum"]) == ""
    assert did_you_mean("xavier", ["zeros", "xavier_normal", "xavier_uniform"]) == (
        "; did you mean xavier_normal or xavier_uniform?"
    )
    assert did_you_mean("lrr", ["lr", "momentum"], "trainer") == "; did you mean trainer.lr?"
    assert round_numbers("init.std=0.08096384026619578 seed=0") == "init.std=0.081 seed=0"
    assert round_numbers("trainer.lr=0.1 width=256") == "trainer.lr=0.1 width=256"


def test_job_line_and_sweep_progress(tmp_path: Path):
    metrics = {"val/acc_best": 0.97412, "test/acc": 0.981, "val/loss_best": 0.09123}
    line = job_line("init=normal seed=0", "FINISHED", metrics, "abc", "1")
    assert line == (
        "init=normal seed=0: best val acc 0.974, test acc 0.981, best val loss 0.09123 | run abc"
        " | http://127.0.0.1:5000/#/experiments/1/runs/abc?workflowType=machine_learning"
    )
    assert progress_prefix(None) == ""
    start_progress(tmp_path, 3)
    assert progress_prefix(tmp_path).startswith("[1/3, ETA ")
    assert progress_prefix(tmp_path).startswith("[2/3, ETA ")


def test_launch_lines_are_short(caplog: pytest.LogCaptureFixture):
    """Hydra's launchers log a line per job and joblib's a line per batch: without Hydra plumbing, with short
    numbers, and without joblib's eleven settings."""
    import logging

    quiet_libraries()
    basic, joblib = (
        logging.getLogger(n)
        for n in ("hydra._internal.core_plugins.basic_launcher", "hydra_plugins.hydra_joblib_launcher._core")
    )
    with caplog.at_level(logging.INFO):
        basic.info(
            "\t#3 : hparams_search=normal_std init.std=0.08096384026619578 ++hydra.job.env_set.INITSWEEP_TRIAL=3"
        )
        joblib.info(
            "Joblib.Parallel({}) is launching {} jobs".format(
                "n_jobs=2,backend=loky,prefer=processes,require=None,verbose=0,timeout=None,pre_dispatch=2*n_jobs", 4
            )
        )
        joblib.info("\t#{} : {}".format(0, "init=zeros seed=0"))
    assert [r.getMessage() for r in caplog.records] == [
        "\t#3 : hparams_search=normal_std init.std=0.081",
        "joblib: launching 4 jobs, n_jobs=2",
        "\t#0 : init=zeros seed=0",
    ]
    line = job_line("init.std=0.08096384026619578 seed=0", "FINISHED", {}, "abc", "1")
    assert line.startswith("init.std=0.081 seed=0: best val acc -")
