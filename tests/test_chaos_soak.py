"""Chaos soak (issue 30, item 7): a study of 24 short trials on 2 joblib workers while a seeded schedule SIGKILLs,
every few seconds, a loky worker, a tracking writer, or the main process with its whole process group; the same
command (same ``hydra.sweep.dir``, same study storage) is run again until the study holds all its trials.
Afterwards nothing is RUNNING in Optuna or MLflow, no trial number has two FINISHED runs, and every COMPLETE
trial's value is its run's optimized metric. On the Optuna journal file and on PostgreSQL.

The kill schedule comes from ``$INITSWEEP_SOAK_SEED`` (a new seed each run when unset); the seed, the schedule
and what happened are printed, and pytest shows them when the test fails: run again with that seed to replay the
schedule (the processes' timing still varies).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
import psutil
import pytest

from conftest import TRAIN, all_runs, group_gone, reap, spawn_with_default_signals, train_env, writers_of
from initsweep.protocol import Tag
from initsweep.tuning.plan import open_storage
from initsweep.tuning.recovery import budget_used

TRIALS = 24
STUDY = [
    "-m", "hparams_search=normal_std", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
    f"hydra.sweeper.n_trials={TRIALS}", f"hydra.sweeper.max_trials={TRIALS}", "hydra.sweeper.study_name=soak",
    "trainer.epochs=3", "model.width=16", "diagnostics.enabled=false", "tracking.log_plots=false",
    "tracking.system_metrics=false", "hydra.sweep.dir=sweep",
]  # fmt: skip
METRIC = "val/loss_best"  # the overlay's optimized_metric
KINDS = ("worker", "writer", "main")
MAX_RUNS = 8  # invocations of the command, the first included
MAX_MAIN_KILLS = 1  # each costs a start-up of the command (about 10 s alone): the test stays near a minute


@dataclass(frozen=True)
class Kill:
    """SIGKILL one process of ``kind``, ``after_s`` seconds after the previous kill or, in a new run of the
    command, after its first trial started."""

    after_s: float
    kind: str
    pick: float  # which of the candidates, as a fraction of their number (sorted by pid)


def kill_schedule(seed: int) -> list[Kill]:
    """4 to 6 kills, 1.5 to 4 s apart, each of a random kind (at most MAX_MAIN_KILLS of the main process)."""
    rng = random.Random(seed)
    kills: list[Kill] = []
    for _ in range(rng.randint(4, 6)):
        mains = sum(k.kind == "main" for k in kills)
        kind = rng.choice(KINDS if mains < MAX_MAIN_KILLS else KINDS[:2])
        kills.append(Kill(round(rng.uniform(1.5, 4), 1), kind, rng.random()))
    return kills


def candidates(main: int, kind: str) -> list[int]:
    """The pids a kill of ``kind`` may hit now: the command's process, its tracking writers (its own and its
    workers'), or its loky workers."""
    if kind == "main":
        return [main]
    try:
        if kind == "writer":
            return sorted(p.pid for p in writers_of(main))
        kids = psutil.Process(main).children()
        return sorted(p.pid for p in kids if "popen_loky_posix" in " ".join(p.cmdline()))
    except psutil.Error:  # a process exited while we looked
        return []


def first_trial_started(sweep: Path, after: float) -> bool:
    """Whether a job of the sweep dir has written its metrics.jsonl since ``after`` (s since the epoch)."""
    return any(p.stat().st_mtime >= after for p in sweep.glob("*/metrics.jsonl"))


def run_with_kills(cwd: Path, args: list[str], kills: list[Kill], output: Path) -> int:
    """Run the command once, its output into ``output``, carrying out the kills due while it runs (those left
    wait for the next run); returns its exit status. The clock starts at its first trial: a start-up takes
    10 s alone, 30 s on a loaded machine, and kills timed from the start would rarely meet a trial."""
    started = time.time()
    with output.open("w") as out:  # its own process group, default signal handlers
        proc = spawn_with_default_signals(
            [sys.executable, str(TRAIN), *args], cwd=cwd, env=train_env(), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    since = None
    while proc.poll() is None:
        if since is None and first_trial_started(cwd / "sweep", started):
            since = time.monotonic()
        if kills and since is not None and time.monotonic() - since >= kills[0].after_s:
            kill = kills[0]
            pids = candidates(proc.pid, kill.kind)
            if pids:  # none yet (e.g. workers not started): wait for one
                pid = pids[int(kill.pick * len(pids))]
                try:
                    os.killpg(pid, signal.SIGKILL) if kill.kind == "main" else os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                print(f"  +{time.monotonic() - since:.1f} s after the first trial or kill: SIGKILL {kill.kind} {pid}")
                kills.pop(0)
                since = time.monotonic()
        time.sleep(0.05)
    assert group_gone(proc.pid), "processes of a finished command outlived it"
    return proc.returncode


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("storage", ["journal", pytest.param("postgresql", marks=pytest.mark.cluster)])
def test_chaos_soak_a_study_killed_at_random_and_run_again_keeps_optuna_and_mlflow_in_agreement(
    tmp_path: Path, storage: str, request: pytest.FixtureRequest
) -> None:
    seed = int(os.environ.get("INITSWEEP_SOAK_SEED") or random.SystemRandom().randrange(2**32))
    kills = kill_schedule(seed)
    print(f"INITSWEEP_SOAK_SEED={seed} ({storage}): {kills}")
    url = request.getfixturevalue("new_pg_database")("soak") if storage == "postgresql" else None
    spec = url or str(tmp_path / "mlruns" / "optuna" / "journal.log")
    args = [*STUDY, f"hydra.sweeper.storage={spec}"]

    rc, output, started = -1, tmp_path, time.monotonic()
    for n in range(1, MAX_RUNS + 1):  # pytest shows what this prints when the test fails
        print(f"run {n}:")
        output = tmp_path / f"run{n}.log"
        rc = run_with_kills(tmp_path, args, kills, output)
        print(f"  exit {rc} at {time.monotonic() - started:.1f} s (output: {output})")
        text = output.read_text()
        assert "Traceback" not in text, text[max(0, text.find("Traceback") - 1000) :][:5000]
        if rc == 0:
            break
    assert rc == 0, f"still exit {rc} after {MAX_RUNS} runs:\n{output.read_text()[-4000:]}"
    if kills:
        print(f"not carried out (the study was complete): {kills}")
    assert reap(tmp_path).returncode == 0  # a final initsweep process: closes the runs of dead processes

    trials = optuna.load_study(study_name="soak", storage=open_storage(spec)).trials
    states = [(t.number, t.state.name) for t in trials]
    assert budget_used(trials) == TRIALS, states  # the study holds all its trials
    assert not [s for s in states if s[1] in ("RUNNING", "WAITING")], states

    runs = all_runs(tmp_path)
    assert not [(r.info.run_name, r.data.tags) for r in runs if r.info.status == "RUNNING"]
    finished: dict[int, list] = {}
    for r in runs:
        if Tag.TRIAL_NUMBER in r.data.tags and r.info.status == "FINISHED":
            finished.setdefault(int(r.data.tags[Tag.TRIAL_NUMBER]), []).append(r)
    assert not {n: [r.info.run_id for r in rs] for n, rs in finished.items() if len(rs) > 1}
    for t in trials:
        if t.state.name == "COMPLETE":
            assert t.number in finished, f"COMPLETE trial {t.number} has no FINISHED run"
            assert finished[t.number][0].data.metrics[METRIC] == t.value, t.number
