"""Grid and list sweeps resume (issue 30, item 1): the same command into the same ``hydra.sweep.dir`` continues
the sweep under its parent run, launching only the jobs without a result; a changed command is refused.

Real train.py processes on a real store: a sweep SIGKILLed with its process group after its third job, then
run again; a completed sweep run again; a changed command; ``resume=false``.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from conftest import all_runs, run_train, start_train
from initsweep.protocol import Tag
from initsweep.tracking import metrics_file as ledger

pytestmark = pytest.mark.slow

GRID = ["init=zeros,normal", "seed=0,1,2,3", "diagnostics.enabled=false", "tracking.log_plots=false", "model.width=32"]
JOBLIB = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]


def sweep_args(sweep_dir: Path, epochs: int, *extra: str) -> list[str]:
    return ["-m", *GRID, f"trainer.epochs={epochs}", *extra, f"hydra.sweep.dir={sweep_dir}"]


def parents(directory: Path) -> list:
    return [r for r in all_runs(directory) if Tag.PARENT not in r.data.tags]


def children(directory: Path, parent_id: str) -> list:
    return [r for r in all_runs(directory) if r.data.tags.get(Tag.PARENT) == parent_id]


def job_states(sweep_dir: Path) -> tuple[int, int]:
    """(jobs ended, jobs training with an epoch done), as the jobs' metrics.jsonl files in the sweep dir say."""
    records = [ledger.read(path) for path in sweep_dir.glob("*/metrics.jsonl")]
    return sum(r.end is not None for r in records), sum(r.end is None and bool(r.metrics) for r in records)


def assert_complete(directory: Path, parent_id: str) -> None:
    """8 FINISHED runs under the one parent, one per (init, seed); the parent FINISHED; nothing RUNNING."""
    (parent,) = parents(directory)
    assert parent.info.run_id == parent_id and parent.info.status == "FINISHED", parent.info
    assert Tag.FAILURE not in parent.data.tags
    finished = [r for r in children(directory, parent_id) if r.info.status == "FINISHED"]
    configs = sorted((r.data.params["init.name"], r.data.params["seed"]) for r in finished)
    assert configs == sorted((i, str(s)) for i in ("zeros", "normal") for s in range(4))
    assert not [r for r in all_runs(directory) if r.info.status == "RUNNING"]


@pytest.mark.parametrize("launcher", [[], JOBLIB], ids=["basic", "joblib"])
def test_a_killed_sweep_run_again_trains_only_the_missing_jobs(tmp_path: Path, launcher: list[str]):
    sweep_dir = tmp_path / "multirun" / "grid"
    args = sweep_args(sweep_dir, 40, *launcher)
    proc = start_train(args, tmp_path, start_new_session=True)
    deadline = time.monotonic() + 300
    while (states := job_states(sweep_dir))[0] < 3 or not states[1]:  # 3 jobs ended, another one training
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep, its tracking writer and its workers: no exit hook runs
    proc.communicate(timeout=60)
    before = {r.info.run_id: r.info.status for r in all_runs(tmp_path)}
    (parent,) = parents(tmp_path)

    again = run_train(args, tmp_path, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert_complete(tmp_path, parent.info.run_id)
    after = children(tmp_path, parent.info.run_id)
    # A job in progress with a checkpoint (trainer.checkpoint_every) resumes its own run (one line says so);
    # jobs whose run the dead sweep had closed, or whose metrics.jsonl recorded the end (the re-run's recovery
    # closes such a run as recorded), were done; the re-run trained exactly the others, once each, in new runs.
    resumed = {r.data.tags[Tag.JOB_NUM] for r in after if f"initsweep: resuming run {r.info.run_id}" in again.stderr}
    old = [r for r in after if r.info.run_id in before]
    done = {r.data.tags[Tag.JOB_NUM] for r in old if r.info.status == "FINISHED"} - resumed
    assert 3 <= len(done) < 8, done
    line = f"initsweep: resuming {sweep_dir}: {len(done)} of 8 jobs already finished; running {8 - len(done)}"
    assert line in again.stderr.splitlines()
    trained = sorted(r.data.tags[Tag.JOB_NUM] for r in after if r.info.run_id not in before)
    assert trained == sorted({str(n) for n in range(8)} - done - resumed)
    killed = [r for r in old if r.info.status != "FINISHED"]
    assert killed or resumed, "no job was in progress when the sweep was killed"
    for run in killed:  # what the dead sweep left RUNNING without a checkpoint: closed KILLED, trained again
        assert run.info.status == "KILLED" and run.data.tags[Tag.FAILURE] == "lost"
        assert run.data.tags[Tag.JOB_NUM] in trained
    # The summary and the report count each job once, the killed twin left out.
    assert f"({8} runs) in MLflow experiment" in again.stdout
    assert len((sweep_dir / "summary.md").read_text().strip().splitlines()) == 2 + 8
    assert "8 runs in 2 configurations" in (sweep_dir / "report" / "report.md").read_text()


def test_a_completed_sweep_run_again_trains_nothing_and_a_changed_command_is_refused(tmp_path: Path):
    sweep_dir = tmp_path / "multirun" / "grid"
    first = run_train(sweep_args(sweep_dir, 2), tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    (parent,) = parents(tmp_path)
    runs = {r.info.run_id: r.info.status for r in all_runs(tmp_path)}

    again = run_train(sweep_args(sweep_dir, 2), tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"initsweep: resuming {sweep_dir}: 8 of 8 jobs already finished; running 0" in again.stderr
    assert {r.info.run_id: r.info.status for r in all_runs(tmp_path)} == runs  # nothing trained
    assert_complete(tmp_path, parent.info.run_id)
    report = (sweep_dir / "report" / "report.md").read_text()
    assert "8 runs in 2 configurations" in report and parent.info.run_id in report

    changed = run_train(
        ["-m", "init=zeros,normal", "seed=0,1", *GRID[2:], "trainer.epochs=2", f"hydra.sweep.dir={sweep_dir}"], tmp_path
    )
    assert changed.returncode == 2
    assert changed.stderr.count("initsweep:") == 1 and "Traceback" not in changed.stderr
    assert (
        f"hydra.sweep.dir={sweep_dir} holds a sweep of another command (added: seed=0,1; removed: seed=0,1,2,3)"
        in changed.stderr
    )
    assert {r.info.run_id: r.info.status for r in all_runs(tmp_path)} == runs  # nothing ran

    restarted = run_train(
        [
            "-m",
            "init=zeros,normal",
            "seed=0,1",
            *GRID[2:],
            "trainer.epochs=2",
            "resume=false",
            f"hydra.sweep.dir={sweep_dir}",
        ],
        tmp_path,
    )
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    assert "resuming" not in restarted.stderr
    new_parent = [r for r in parents(tmp_path) if r.info.run_id != parent.info.run_id]
    assert [r.info.status for r in new_parent] == ["FINISHED"]
    assert len(children(tmp_path, new_parent[0].info.run_id)) == 4
    old = {r.info.run_id: r.info.status for r in all_runs(tmp_path) if r.info.run_id in runs}
    assert old == runs  # the old sweep untouched


def test_a_recorded_sweep_is_continued_by_the_same_jobs_only(tmp_path: Path):
    """The comparison alone, on a real record file: control keys (resume, max_jobs) are no difference; another
    job list names what was added and removed; another store is named too."""
    from initsweep.sweep import resume

    command = ["init=zeros,normal", "seed=0,1", "max_jobs=10"]
    jobs = [[f"init={i}", f"seed={s}", "max_jobs=10"] for i in ("zeros", "normal") for s in (0, 1)]
    resume.record("run1", "sqlite:///a.db", command, jobs, [0, 2]).write(tmp_path)
    same = resume.continued(tmp_path, "sqlite:///a.db", [*command[:2], "resume=false"], [j[:2] for j in jobs])
    assert same is not None and same.run_id == "run1" and same.done == (0, 2)
    with pytest.raises(resume.SweepChanged, match=r"\(added: seed=0,1,2; removed: seed=0,1\)"):
        resume.continued(tmp_path, "sqlite:///a.db", ["init=zeros,normal", "seed=0,1,2"], [*jobs, ["seed=2"]])
    with pytest.raises(resume.SweepChanged, match=r"tracked in sqlite:///a.db, this command tracks in sqlite:///b"):
        resume.continued(tmp_path, "sqlite:///b.db", command, jobs)
    assert resume.continued(tmp_path / "new", "sqlite:///a.db", command, jobs) is None
    assert resume.remaining(tmp_path, range(4)) == [1, 3]
