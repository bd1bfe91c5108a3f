"""Sweeps and studies started at the same moment on one store keep to themselves (real train.py processes)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import all_runs, run_train, spawn_with_default_signals, start_train
from initsweep.protocol import PARENT_FILE, STUDY_FILE, Tag
from initsweep.tracking import locks

SMALL = ("trainer.epochs=1", "model.width=16", "diagnostics.enabled=false", "tracking.log_plots=false")


def _start_together(commands: list[list[str]], cwd: Path) -> list[tuple[int, str, str]]:
    procs = [start_train(args, cwd) for args in commands]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        results.append((proc.returncode, out, err))
    return results


def _by_parent(directory: Path) -> dict[str, list]:
    """Children of each parent run, by parent run id (every parent listed, even with no children)."""
    runs = all_runs(directory)
    tree: dict[str, list] = {r.info.run_id: [] for r in runs if Tag.PARENT not in r.data.tags}
    for run in runs:
        if Tag.PARENT in run.data.tags:
            tree[run.data.tags[Tag.PARENT]].append(run)
    return tree


@pytest.mark.slow
def test_sweeps_started_together_each_get_their_own_dir_parent_and_jobs(tmp_path: Path):
    sweeps = [["-m", f"seed={s},{s + 1}", *SMALL] for s in (0, 10)]
    for round_ in ("new store", "existing store"):
        for rc, _, err in _start_together(sweeps, tmp_path):
            assert rc == 0, f"{round_}: {err}"
            assert "Traceback" not in err
    dirs = sorted(p.parent for p in tmp_path.glob(f"multirun/*/*/{PARENT_FILE}"))
    assert len(dirs) == 4 == len(set(dirs))  # 2 sweeps x 2 rounds, none shared
    tree = _by_parent(tmp_path)
    assert len(tree) == 4
    for parent_id, children in tree.items():
        assert len(children) == 2, "every parent has exactly its own two jobs"
        seeds = sorted(int(c.data.params["seed"]) for c in children)
        assert seeds[1] == seeds[0] + 1  # the two jobs of one command line
        assert all(c.info.status == "FINISHED" and c.data.tags[Tag.SWEEP_ID] == parent_id for c in children)
    recorded = sorted(int(c.data.params["seed"]) for cs in tree.values() for c in cs)
    assert recorded == sorted(2 * [0, 1, 10, 11])  # every job recorded once per round


@pytest.mark.slow
def test_two_studies_started_together_keep_their_own_state(tmp_path: Path):
    studies = [
        ["-m", "hparams_search=normal_std", "hydra.sweeper.n_trials=2", *SMALL],
        ["-m", "hparams_search=uniform_range", "hydra.sweeper.n_trials=2", *SMALL],
    ]
    for rc, _, err in _start_together(studies, tmp_path):
        assert rc == 0, err
    specs = [json.loads(p.read_text()) for p in tmp_path.glob(f"multirun/*/*/{STUDY_FILE}")]
    assert len({s["study_name"] for s in specs}) == 2
    tree = _by_parent(tmp_path)
    assert len(tree) == 2
    for children in tree.values():
        assert sorted(int(c.data.tags[Tag.TRIAL_NUMBER]) for c in children) == [0, 1]
        assert len({c.data.params["init.name"] for c in children}) == 1  # one study's trials only


@pytest.mark.slow
def test_a_sweep_dir_held_by_a_live_sweep_is_refused(tmp_path: Path):
    held = tmp_path / "sweep"
    locks.claim_sweep_dir(held, unique=False)  # this test process is the live sweep holding it
    try:
        proc = run_train(["-m", f"hydra.sweep.dir={held}", "seed=0,1", *SMALL], cwd=tmp_path)
    finally:
        locks.abandon_sweep_dir(held)
    assert proc.returncode == 2
    assert f"initsweep: hydra.sweep.dir={held} is in use by a live sweep (pid" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "mlruns").exists()  # refused before the store was touched
    assert not list(held.glob("*/"))  # no job dir


@pytest.mark.slow
def test_signal_tests_start_their_child_with_the_default_sigint_handler():
    # A background job of a non-interactive shell starts with SIGINT ignored, and its children inherit that.
    show = [sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGINT) == signal.SIG_IGN)"]
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        plain = subprocess.run(show, capture_output=True, text=True, check=True).stdout
        spawned = spawn_with_default_signals(show, stdout=subprocess.PIPE, text=True).communicate(timeout=60)[0]
    finally:
        signal.signal(signal.SIGINT, previous)
    assert plain.strip() == "True"  # what a plain Popen child gets: no KeyboardInterrupt on Ctrl-C
    assert spawned.strip() == "False"  # Python installed its KeyboardInterrupt handler


def _mark_best_in_step(uri: str, parent: dict, run_numbers: list[int], barrier, errors) -> None:
    from mlflow import MlflowClient

    from initsweep.protocol import Parent
    from initsweep.tracking import client as tracking

    client = MlflowClient(uri)
    for number in run_numbers:
        barrier.wait(timeout=60)
        try:
            tracking.mark_best_runs(client, Parent(**parent), "shared", [number])
        except Exception as e:  # noqa: BLE001
            errors.put(repr(e))


@pytest.mark.slow
def test_parallel_workers_marking_the_same_best_trial_at_once_both_succeed(tmp_path: Path, tmp_store: str):
    """Two workers of a shared study that finish together tag the same run ``optuna.best`` at the same moment;
    the second insert of the same (run, key) must become an update, not a UNIQUE constraint error."""
    import multiprocessing

    from mlflow import MlflowClient

    from initsweep.protocol import Parent
    from initsweep.tracking import client as tracking

    client = MlflowClient(tmp_store)
    exp = tracking.experiment_id(client, "race")
    parent = tracking.start_run(client, exp, "study", {Tag.STUDY_NAME: "shared"})
    numbers = list(range(25))
    for n in numbers:
        tags = {Tag.STUDY_NAME: "shared", Tag.TRIAL_NUMBER: n}
        tracking.start_run(client, exp, f"trial {n}", tags, parent.run_id)
    shared = Parent(parent.run_id, exp, tmp_store, "sweep").__dict__
    ctx = multiprocessing.get_context("spawn")
    barrier, errors = ctx.Barrier(2), ctx.Queue()
    workers = [ctx.Process(target=_mark_best_in_step, args=(tmp_store, shared, numbers, barrier, errors)) for _ in "ab"]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=300)
    assert [w.exitcode for w in workers] == [0, 0]
    assert errors.empty(), errors.get()
    best = client.search_runs([exp], filter_string=f"tags.`{Tag.BEST}` = 'true'")
    assert [r.data.tags[Tag.TRIAL_NUMBER] for r in best] == [str(numbers[-1])]
    assert client.get_run(parent.run_id).data.tags[Tag.BEST_TRIALS] == str(numbers[-1])
