"""Studies survive kills, resumes and concurrent invocations (initsweep.tuning.recovery, issue 11.5), and the
study's total budget (hydra.sweeper.max_trials). Real Optuna journal studies; the end-to-end tests kill the
main process of a real `train.py -m` study with SIGKILL and run the command again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import optuna
import pytest

from conftest import TRAIN, run_train
from initsweep.tuning import recovery as sr
from initsweep.tuning.plan import make_sampler, open_storage, study_plots
from initsweep.tuning.recovery import budget_left, budget_used
from initsweep.tuning.search_space import parse_search_space

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = parse_search_space({}, ["init.std=tag(log, interval(0.001, 3.0))"])
QUICK = ("trainer.epochs=1", "tracking.log_plots=false", "diagnostics.enabled=false")


def journal_study(path: Path, sampler=None) -> optuna.Study:
    storage = open_storage(str(path / "journal.log"))
    return optuna.create_study(study_name="s", storage=storage, sampler=sampler, load_if_exists=True)


def dead_process() -> dict:
    """The identity of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    identity = sr.process_identity(proc.pid)
    proc.kill()
    proc.wait()
    return identity


def own(study: optuna.Study, trial, identity: dict, heartbeat: float) -> None:
    for key, value in {**identity, sr.HEARTBEAT: heartbeat}.items():
        study._storage.set_trial_system_attr(trial._trial_id, key, value)


# --- stale trials -------------------------------------------------------------------------------------------


def test_a_trial_of_a_dead_process_is_failed_and_retried_once_with_the_same_params(tmp_path):
    study = journal_study(tmp_path)
    lost = study.ask(SPACE.distributions)
    own(study, lost, dead_process(), time.time())
    alive = study.ask(SPACE.distributions)  # owned by a live process of this host (the test's parent)
    own(study, alive, sr.process_identity(os.getppid()), time.time())

    messages = sr.recover_stale_trials(study, study._storage, grace_s=60)
    assert len(messages) == 1 and messages[0].startswith("trial 0: its process") and "retried as trial 2" in messages[0]
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "RUNNING", "WAITING"]
    assert trials[0].user_attrs["reason"].startswith("lost: its process")
    assert trials[2].params == trials[0].params and trials[2].system_attrs["retry_history"] == [0]
    assert not any(k.startswith(sr.PREFIX) for k in trials[2].system_attrs)  # the dead owner is not copied

    # The retry is asked next; when its process dies too, it is failed but not retried again.
    retry = study.ask(SPACE.distributions)
    assert retry.number == 2 and retry.params == trials[0].params
    own(study, retry, dead_process(), time.time())
    (message,) = sr.recover_stale_trials(study, study._storage, grace_s=60)
    assert "not retried" in message
    assert [t.state.name for t in study.get_trials()] == ["FAIL", "RUNNING", "FAIL"]


def test_a_trial_of_another_host_is_failed_only_once_its_heartbeat_is_stale(tmp_path):
    study = journal_study(tmp_path)
    fresh, old = study.ask(SPACE.distributions), study.ask(SPACE.distributions)
    other = {sr.HOST: "elsewhere", sr.PID: 1, sr.PID_START: 0.0}
    own(study, fresh, other, time.time() - 5)
    own(study, old, other, time.time() - 120)
    (message,) = sr.recover_stale_trials(study, study._storage, grace_s=60)
    assert message.startswith("trial 1: no heartbeat from elsewhere:1")
    assert [t.state.name for t in study.get_trials()] == ["RUNNING", "FAIL", "WAITING"]


def test_an_rdb_storage_uses_optunas_heartbeat_and_retries_the_stale_trial(tmp_path):
    storage = sr.sweeper_storage(f"sqlite:///{tmp_path / 'optuna.db'}", heartbeat_interval=1, grace_s=2)
    assert isinstance(storage, optuna.storages.RDBStorage) and storage.get_heartbeat_interval() == 1
    study = optuna.create_study(study_name="s", storage=storage)
    with pytest.warns(UserWarning, match="Heartbeat"):  # Optuna means its heartbeat for study.optimize
        trial = study.ask(SPACE.distributions)
    own(study, trial, {sr.HOST: "elsewhere", sr.PID: 1, sr.PID_START: 0.0}, time.time())
    storage.record_heartbeat(trial._trial_id)  # then its owner on another host goes silent
    assert sr.recover_stale_trials(study, storage, grace_s=2) == []
    time.sleep(3)  # past the grace period
    (message,) = sr.recover_stale_trials(study, storage, grace_s=2)
    assert message.startswith("trial 0: no heartbeat")
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "WAITING"] and trials[1].params == trials[0].params


def test_asking_on_an_rdb_storage_prints_no_heartbeat_warning(tmp_path):
    """Every trial the sweeper asks for (the first and the later ones) goes through ``recovery.ask``: Optuna's
    "Heartbeat of storage is supposed to be used with Study.optimize" reached stderr on PostgreSQL studies."""
    storage = sr.sweeper_storage(f"sqlite:///{tmp_path / 'optuna.db'}", heartbeat_interval=60, grace_s=120)
    study = optuna.create_study(study_name="s", storage=storage)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trials = [sr.ask(study, SPACE.distributions), sr.ask(study)]
    assert [t.number for t in trials] == [0, 1] and "init.std" in study.trials[0].params


@pytest.mark.parametrize("storage", ["journal", "rdb"])
def test_a_trial_never_claimed_is_failed_and_retried_on_any_storage(tmp_path, monkeypatch, storage):
    """The asker was killed between creating the trial and recording itself as its owner."""
    if storage == "journal":
        study = journal_study(tmp_path)
    else:
        rdb = sr.sweeper_storage(f"sqlite:///{tmp_path / 'optuna.db'}", heartbeat_interval=60, grace_s=120)
        study = optuna.create_study(study_name="s", storage=rdb)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Optuna's "Heartbeat ... study.optimize" on the RDB
        study.ask(SPACE.distributions)  # and no claim
    assert sr.recover_stale_trials(study, study._storage, grace_s=600) == []  # just asked: maybe being claimed
    monkeypatch.setattr(sr, "UNCLAIMED_S", 0.2)
    time.sleep(0.3)
    (message,) = sr.recover_stale_trials(study, study._storage, grace_s=600)  # long before the heartbeat grace
    assert message.startswith("trial 0: never claimed")
    assert [t.state.name for t in study.get_trials()] == ["FAIL", "WAITING"]


def test_the_keeper_claims_trials_and_renews_their_heartbeat(tmp_path):
    study = journal_study(tmp_path)
    keeper = sr.TrialKeeper(study, study._storage, interval=0.2)
    trial = study.ask(SPACE.distributions)
    keeper.claim(trial)
    first = study.get_trials()[0].system_attrs
    assert (first[sr.HOST], first[sr.PID]) == (sr.process_identity()[sr.HOST], os.getpid())
    deadline = time.time() + 30
    while study.get_trials()[0].system_attrs[sr.HEARTBEAT] == first[sr.HEARTBEAT] and time.time() < deadline:
        time.sleep(0.1)
    assert study.get_trials()[0].system_attrs[sr.HEARTBEAT] > first[sr.HEARTBEAT]
    keeper.stop()
    assert sr.recover_stale_trials(study, study._storage, grace_s=60) == []  # our own trial is never stale


# --- seeds ----------------------------------------------------------------------------------------------------


def ask_values(study: optuna.Study, n: int, seed: int = 0) -> list[float]:
    """What one invocation with sampler seed ``seed`` asks: n trials, the first through ask_first."""
    trial, _ = sr.ask_first(study, SPACE.distributions, seed, lambda s: make_sampler("tpe", seed=s, space=SPACE))
    trials = [trial, *(study.ask(SPACE.distributions) for _ in range(n - 1))]
    for t in trials:
        study.tell(t, 1.0)
    return [t.params["init.std"] for t in trials]


def test_a_resumed_study_never_repeats_its_draws(tmp_path):
    first = ask_values(journal_study(tmp_path, make_sampler("tpe", seed=0, space=SPACE)), 3)
    second = ask_values(journal_study(tmp_path, make_sampler("tpe", seed=0, space=SPACE)), 3)
    assert len(set(first + second)) == 6
    # The first invocation of a fresh study is what the plain seeded sampler draws: seed + 0.
    plain = optuna.create_study(sampler=make_sampler("tpe", seed=0, space=SPACE))
    assert first[0] == plain.ask(SPACE.distributions).params["init.std"]


def test_two_invocations_at_once_draw_different_points(tmp_path):
    a = journal_study(tmp_path, make_sampler("tpe", seed=0, space=SPACE))
    b = journal_study(tmp_path, make_sampler("tpe", seed=0, space=SPACE))
    ta, seed_a = sr.ask_first(a, SPACE.distributions, 0, lambda s: make_sampler("tpe", seed=s, space=SPACE))
    tb, seed_b = sr.ask_first(b, SPACE.distributions, 0, lambda s: make_sampler("tpe", seed=s, space=SPACE))
    assert (seed_a, seed_b) == (0, 1)
    assert ta.params["init.std"] != tb.params["init.std"]


# --- total budget ------------------------------------------------------------------------------------------------


def test_budget_counts_finished_and_running_trials_but_not_retried_failures(tmp_path):
    study = journal_study(tmp_path)
    for value in (1.0, 2.0):
        study.tell(study.ask(SPACE.distributions), value)
    lost = study.ask(SPACE.distributions)
    own(study, lost, dead_process(), time.time())
    study.ask(SPACE.distributions)  # running
    assert budget_used(study.get_trials()) == 4
    sr.recover_stale_trials(study, study._storage, grace_s=60)  # FAIL + a WAITING retry in its place
    assert budget_used(study.get_trials()) == 3
    assert budget_left(study.get_trials(), 5) == 2 and budget_left(study.get_trials(), 2) == 0
    assert budget_left(study.get_trials(), None) is None


# --- end to end: kill -9, re-run -------------------------------------------------------------------------------


def running_trial(journal: Path, timeout: float = 900) -> None:
    """Wait until the study in ``journal`` has a RUNNING trial claimed by its process."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if journal.exists():
            storage = open_storage(str(journal))
            for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
                study = optuna.load_study(study_name=summary.study_name, storage=storage)
                if any(sr.PID in t.system_attrs for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,))):
                    return
        time.sleep(0.5)
    raise AssertionError("no trial started")


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a hang guard sized for a loaded 2-core CI machine
def test_kill_9_of_a_grid_study_then_a_rerun_evaluates_every_point(tmp_path):
    grid = (
        "hparams_search=normal_std",
        "init.std=choice(0.05,0.2)",
        "hydra.sweeper.sampler=grid",
        "hydra.sweeper.seed=3",
    )
    study_args = (*grid, "hydra.sweeper.study_name=grid", "hydra.sweeper.pruner=none")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    # Long first trial, killed while it trains.
    long_run = [sys.executable, str(TRAIN), "-m", *study_args, "trainer.epochs=500", *QUICK[1:]]
    proc = subprocess.Popen(long_run, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        running_trial(tmp_path / "mlruns" / "optuna" / "journal.log")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    rerun = run_train(["-m", *study_args, *QUICK], cwd=tmp_path, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    study = optuna.load_study(study_name="grid", storage=open_storage(str(tmp_path / "mlruns/optuna/journal.log")))
    states = [(t.number, t.state.name) for t in study.trials]
    assert states == [(0, "FAIL"), (1, "COMPLETE"), (2, "COMPLETE")], states
    assert study.trials[1].params == study.trials[0].params  # the lost point, retried with the same params
    assert {t.params["init.std"] for t in study.trials if t.state.name == "COMPLETE"} == {0.05, 0.2}
    assert study.trials[0].user_attrs["reason"].startswith("lost: its process")
    assert "trial 0: its process" in rerun.stdout + rerun.stderr


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_max_trials_is_a_total_budget_over_invocations(tmp_path):
    args = ["-m", "hparams_search=normal_std", *QUICK, "hydra.sweeper.max_trials=2"]
    first = run_train([*args, "hydra.sweeper.n_trials=1"], cwd=tmp_path, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_train([*args, "hydra.sweeper.n_trials=5"], cwd=tmp_path, timeout=900)  # 1 trial left of 2
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Study budget reached: the study holds max_trials=2 trials" in second.stdout + second.stderr
    storage = open_storage(str(tmp_path / "mlruns/optuna/journal.log"))
    (name,) = optuna.get_all_study_names(storage)
    assert len(optuna.load_study(study_name=name, storage=storage).trials) == 2


@pytest.mark.slow
def test_workers_started_at_once_share_one_study_and_one_parent_run_without_duplicate_points(tmp_path):
    from conftest import all_runs, store_uri
    from initsweep.tracking import client as tracking

    tracking.connect(store_uri(tmp_path))  # the store exists before the workers start (SQLite creation race)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    args = [sys.executable, str(TRAIN), "-m", "hparams_search=normal_std", *QUICK, "hydra.sweeper.n_trials=1"]
    args += ["hydra.sweeper.study_name=shared", "hydra.sweeper.shared_parent=true", "hydra.sweeper.pruner=none"]
    # The same command and the same sampler seed in both workers; a sweep dir of their own.
    procs = [
        subprocess.Popen([*args, f"hydra.sweep.dir=multirun/w{i}"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
        for i in range(2)
    ]  # fmt: skip
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-3000:] + outs[1][-3000:]
    storage = open_storage(str(tmp_path / "mlruns/optuna/journal.log"))
    trials = optuna.load_study(study_name="shared", storage=storage).trials
    assert sorted(t.number for t in trials) == [0, 1] and all(t.state.name == "COMPLETE" for t in trials)
    assert trials[0].params != trials[1].params  # sampler seeds 0 + 0 and 0 + 1

    runs = all_runs(tmp_path)
    (parent,) = [r for r in runs if r.data.tags.get("initsweep.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["trial_number"] for r in children) == ["0", "1"]
    assert parent.data.tags["initsweep.study_parent"] == "shared" and parent.info.status == "FINISHED"
    assert parent.data.params["optuna.study_name"] == "shared"


@pytest.mark.slow
def test_an_invocation_whose_trial_another_process_failed_exits_1_naming_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    args = [sys.executable, str(TRAIN), "-m", "hparams_search=normal_std", "trainer.epochs=500", *QUICK[1:]]
    args += ["hydra.sweeper.n_trials=1", "hydra.sweeper.study_name=taken"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        journal = tmp_path / "mlruns" / "optuna" / "journal.log"
        running_trial(journal)
        # Another invocation takes the trial for lost (as recover_stale_trials does) while this one runs it.
        study = optuna.load_study(study_name="taken", storage=open_storage(str(journal)))
        (trial,) = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
        study._storage.set_trial_system_attr(trial._trial_id, sr.FAILED_BY, "otherhost:123")
        study._storage.set_trial_state_values(trial._trial_id, state=optuna.trial.TrialState.FAIL)
        out = proc.communicate(timeout=600)[0]
    finally:
        proc.kill()
    assert proc.returncode == 1, out[-3000:]
    assert "trial 0: marked FAIL by process otherhost:123 while this invocation ran it" in out


def test_the_plots_of_a_one_trial_study_print_no_warning(tmp_path):
    """A study of one trial: matplotlib's "identical low and high xlims" reached stderr from its slice plot."""
    study = journal_study(tmp_path)
    trial = study.ask(SPACE.distributions)
    study.tell(trial, 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        paths = study_plots(study, ["init.std"], tmp_path / "plots", ["val/loss_best"])
    assert "slice_init.std.png" in [p.name for p in paths]
