"""A study's trial preempted mid-training resumes, as a retry, from its checkpoint and in its MLflow run (issue 30,
item 4): one run, FINISHED, the history and the intermediate values of an uninterrupted trial.

In-process: real training, a real Optuna journal and a real MLflow store in tmp_path; the preemption is a real
SIGTERM to this process, sent at the end of epoch 5 (the job saves its state at the next step and stops). The
end-to-end test SIGTERMs a real ``train.py -m`` study and runs the command again.
"""

from __future__ import annotations

import os
import signal
import time
import warnings
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution

from conftest import all_runs, compose, run_train, start_train, val_loss_history, wait_for_epoch
from initsweep.jobs import resume
from initsweep.jobs.job import JobContext
from initsweep.protocol import StudySpec, Tag
from initsweep.tracking import metrics_file as ledger
from initsweep.tuning import recovery as sr
from initsweep.tuning import trial as trial_side
from initsweep.tuning.plan import open_storage
from test_study_recovery import dead_process, own

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = {"init.std": FloatDistribution(0.01, 1.0)}
JOB = [
    "init=normal",
    "init.std=0.1",
    "trainer.epochs=8",
    "trainer.checkpoint_every=3",
    "trainer.threads=1",
    "model.width=32",
    "diagnostics.enabled=false",
    "tracking.log_plots=false",
    "tracking.system_metrics=false",
]


def test_a_preempted_trial_resumes_relaunched_and_retried_in_one_run(
    tmp_path: Path, tmp_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trial 1 is preempted after epoch 3, relaunched in its dir (as the joblib launcher relaunches a job whose
    worker died) and preempted again after epoch 6; its process then counts as dead, and the study's retry,
    trial 2, finishes it from dir 1."""
    journal = str(tmp_path / "journal.log")
    study = optuna.create_study(storage=open_storage(journal), study_name="s", direction="minimize")
    sweep = tmp_path / "sweep"
    StudySpec(journal, "s", "median", {}, "val/loss_best").write(sweep)
    cfg = compose([*JOB, f"tracking.uri={tmp_store}"])

    def job(number: int, directory: int) -> float | list[float]:
        ctx = JobContext(output_dir=sweep / str(directory), sweep_dir=sweep, job_num=number)
        return trial_side.run_trial(cfg, number, ctx)

    whole = study.ask(SPACE)  # the reference: never interrupted
    value = job(whole.number, 0)
    study.tell(whole, value)

    report, stops = trial_side.EpochReporter.__call__, [3, 6]

    def preempted(self: trial_side.EpochReporter, epoch) -> bool:
        if stops and epoch.epoch == stops[0]:
            stops.pop(0)
            os.kill(os.getpid(), signal.SIGTERM)  # a real signal: the job's handler defers it to the next step
        return report(self, epoch)

    monkeypatch.setattr(trial_side.EpochReporter, "__call__", preempted)
    first = study.ask(SPACE)
    for _ in range(2):
        with pytest.raises(KeyboardInterrupt), warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*is already reported")  # Optuna's, at a step reported twice
            job(first.number, 1)
        assert (sweep / "1" / resume.FILE_NAME).exists()
    monkeypatch.undo()
    assert sorted(study.trials[1].intermediate_values) == list(range(1, 7))  # each step once, no warning
    own(study, first, dead_process(), time.time())  # its process is gone, as after a SIGKILL: the study's
    (recovered,) = sr.recover_stale_trials(study, study._storage, grace_s=60)  # next run retries it
    assert "retried as trial 2" in recovered
    retry = study.ask(SPACE)
    assert retry.number == 2
    assert study.trials[2].system_attrs[sr.RESUME_FROM] == str((sweep / "1").resolve())

    assert job(retry.number, 2) == value
    study.tell(retry, value)
    runs = {r.data.tags[Tag.TRIAL_NUMBER]: r for r in all_runs(tmp_path)}
    assert sorted(runs) == ["0", "2"]  # the interrupted attempts' run is the retry's, renumbered
    resumed = runs["2"]
    assert resumed.info.status == "FINISHED" and "failure" not in resumed.data.tags
    assert resumed.data.tags[Tag.METRICS_FILE] == str((sweep / "2" / ledger.FILE_NAME).resolve())
    assert val_loss_history(tmp_path, resumed.info.run_id) == val_loss_history(tmp_path, runs["0"].info.run_id)
    # Optuna: the retry reported every step, once, with the uninterrupted trial's values
    assert study.trials[2].intermediate_values == study.trials[0].intermediate_values
    assert sorted(study.trials[2].intermediate_values) == list(range(1, 9))
    assert not list(sweep.glob(f"*/{resume.FILE_NAME}"))  # finished: nothing left to resume


def test_a_retry_preempted_again_is_retried_again_a_lost_one_is_not(tmp_path: Path) -> None:
    """A retry is not retried when it is lost (its process died: it may die the same way again), but is when its
    study was interrupted and it left a resume point: each retry then goes on where the last one stopped."""
    study = optuna.create_study(storage=open_storage(str(tmp_path / "journal.log")), study_name="s")
    retry = optuna.trial.create_trial(
        state=optuna.trial.TrialState.FAIL,
        params={"init.std": 0.1},
        distributions=SPACE,
        system_attrs={sr.RETRY_HISTORY: [7], sr.JOB_DIR: str(tmp_path / "8")},
    )
    study.add_trial(retry)
    frozen = study.trials[0]
    assert sr.retry_once(study, frozen, interrupted=True) is None  # no resume point: nothing to go on from
    (tmp_path / "8").mkdir()
    (tmp_path / "8" / resume.FILE_NAME).write_bytes(b"a point")
    assert sr.retry_once(study, frozen) is None  # lost: retried once only
    assert sr.retry_once(study, frozen, interrupted=True) == 1
    again = study.trials[1]
    assert again.state.name == "WAITING" and again.params == {"init.std": 0.1}
    assert again.system_attrs[sr.RETRY_HISTORY] == [7, 0] and again.system_attrs[sr.RESUME_FROM] == str(tmp_path / "8")


# ---------------------------------------------------------------------------------------------------------------
# End to end: a real `train.py -m` study SIGTERMed while its second trial trains, then run again.

STUDY = [
    "-m",
    "hparams_search=normal_std",
    "init.std=choice(0.1)",  # every trial the same point: trial 0 is the uninterrupted reference
    "hydra.sweeper.sampler=random",
    "hydra.sweeper.pruner=none",
    "hydra.sweeper.study_name=preempted",
    "hydra.sweep.dir=study",
    *JOB[2:],
]


@pytest.mark.slow
def test_a_study_sigtermed_mid_trial_run_again_resumes_the_trials_run(tmp_path: Path) -> None:
    proc = start_train([*STUDY, "hydra.sweeper.n_trials=2"], cwd=tmp_path)
    wait_for_epoch(proc, tmp_path / "study" / "1" / ledger.FILE_NAME, 4)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err[-3000:]
    assert "Trial 1 interrupted: the study's next run continues it as trial 2" in out + err, out[-3000:]

    again = run_train([*STUDY, "hydra.sweeper.n_trials=1"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "initsweep: resuming run" in again.stderr
    trials = [r for r in all_runs(tmp_path) if Tag.TRIAL_NUMBER in r.data.tags]
    assert sorted((r.data.tags[Tag.TRIAL_NUMBER], r.info.status) for r in trials) == [
        ("0", "FINISHED"),
        ("2", "FINISHED"),  # trial 1's run, resumed by its retry: no second run, nothing KILLED
    ]
    reference, resumed = sorted(trials, key=lambda r: r.data.tags[Tag.TRIAL_NUMBER])
    assert resumed.data.tags[Tag.TRIAL_STATE] == "COMPLETE" and "failure" not in resumed.data.tags
    assert val_loss_history(tmp_path, resumed.info.run_id) == val_loss_history(tmp_path, reference.info.run_id)
    assert resumed.data.metrics["val/loss_best"] == reference.data.metrics["val/loss_best"]
