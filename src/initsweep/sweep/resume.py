"""Resuming a grid or list sweep: the same command into the same ``hydra.sweep.dir`` continues that sweep.

A basic sweep records itself in its sweep dir (:class:`initsweep.protocol.SweepJobs`, ``initsweep_jobs.json``):
its parent run, its store, its command's overrides and each job's, in job-number order. Run again into that
dir, :func:`continued` compares: the same job list continues the sweep under the same parent run; another one
is refused with :class:`SweepChanged`, naming the overrides added and removed (``resume=false`` starts a new
sweep there instead). Under one parent and one job list a job number names one job, so the jobs that have a
result are found by their ``initsweep.job_num`` tag (:func:`initsweep.writer.sweep_runs.finished_jobs`) and
recorded as ``done``; :func:`launch_remaining`, which the basic sweeper launches through whatever the
launcher, leaves them out and keeps every other job's number (its output dir and run tags stay the same).
"""

from __future__ import annotations

import errno
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher

from initsweep.protocol import SweepJobs, redact

# Overrides that change no job's result: a sweep run again with or without them is the same sweep.
CONTROL_KEYS = frozenset({"resume", "max_jobs"})


class SweepChanged(RuntimeError):
    """The sweep dir holds a sweep of another command; the message says what differs and what to do."""


def rerun_command(argv: Sequence[str], sweep_dir: Path) -> str:
    """The command that continues this sweep: ``argv`` (``sys.argv``; a script run as ``python SCRIPT``) with
    ``hydra.sweep.dir`` set to ``sweep_dir``, so a timestamped sweep is resumed, not started anew."""
    script = Path(argv[0])
    head = ["python", "-m", script.parent.name] if script.name == "__main__.py" else [argv[0]]
    head = ["python", *head] if script.suffix == ".py" and len(head) == 1 else head
    rest = [a for a in argv[1:] if not a.lstrip("+").startswith("hydra.sweep.dir=")]
    return shlex.join([*head, *rest, f"hydra.sweep.dir={sweep_dir}"])


def store_failure_lines(failed: Sequence[str], command: str, parent_note: str) -> list[str]:
    """What a sweep whose store failed some jobs says at its end: how many, each job (``#N (overrides):
    reason``), the parent run's state (``parent_note``) and the command that runs them again."""
    return [
        f"initsweep: {len(failed)} job(s) failed on the tracking store (each trained job's metrics stay in its "
        "metrics.jsonl):",
        *(f"  {line}" for line in failed),
        f"initsweep: {parent_note}; once the store takes writes again, run the jobs without a FINISHED run "
        f"with: {command}",
    ]


def identity(overrides: Sequence[str]) -> tuple[str, ...]:
    """``overrides`` without those of :data:`CONTROL_KEYS`: what makes a command or a job the same."""
    return tuple(o for o in overrides if o.lstrip("+~").split("=", 1)[0] not in CONTROL_KEYS)


def continued(sweep_dir: Path, uri: str, command: Sequence[str], jobs: Sequence[Sequence[str]]) -> SweepJobs | None:
    """The sweep recorded in ``sweep_dir`` that this command continues, or None when none is recorded;
    SweepChanged when the recorded sweep has other jobs or another store."""
    before = SweepJobs.read(sweep_dir)
    if before is None:
        return None
    if before.jobs == tuple(identity(job) for job in jobs):
        if before.tracking_uri == uri:
            return before
        what = f"it was tracked in {redact(before.tracking_uri)}, this command tracks in {redact(uri)}"
    else:
        now = identity(command)
        added = " ".join(o for o in now if o not in before.command)
        removed = " ".join(o for o in before.command if o not in now)
        changes = [f"added: {added}" if added else "", f"removed: {removed}" if removed else ""]
        what = "; ".join(filter(None, changes)) or f"{len(before.jobs)} jobs then, {len(jobs)} now: the config changed"
    raise SweepChanged(
        f"hydra.sweep.dir={sweep_dir} holds a sweep of another command ({what}); run the same command to resume "
        "it, add resume=false to start a new sweep in that dir (the old runs stay), or choose another dir"
    )


def record(
    run_id: str, uri: str, command: Sequence[str], jobs: Sequence[Sequence[str]], done: Sequence[int]
) -> SweepJobs:
    """The record of a basic sweep with ``done`` jobs left out of this invocation."""
    return SweepJobs(run_id, uri, identity(command), tuple(identity(job) for job in jobs), tuple(done))


def remaining(sweep_dir: Path, job_numbers: range) -> list[int]:
    """The numbers in ``job_numbers`` that the sweep recorded in ``sweep_dir`` has not done yet."""
    recorded = SweepJobs.read(sweep_dir)
    done = set(recorded.done) if recorded is not None else set()
    return [n for n in job_numbers if n not in done]


def launch_remaining(launcher: Any, sweep_dir: Path, batch: Sequence[Sequence[str]], initial_job_idx: int) -> list[Any]:
    """``launcher.launch(batch, initial_job_idx)`` without the jobs already done, each job keeping its number: a
    launcher with ``launch_numbered(overrides, numbers)`` (the joblib launcher) gets them in one call, any
    other one launch per run of consecutive numbers. Returns the launched jobs' results."""
    numbers = remaining(sweep_dir, range(initial_job_idx, initial_job_idx + len(batch)))
    if len(numbers) == len(batch):
        return list(launcher.launch(batch, initial_job_idx))
    if not numbers:
        return []
    if hasattr(launcher, "launch_numbered"):
        return list(launcher.launch_numbered([batch[n - initial_job_idx] for n in numbers], numbers))
    results: list[Any] = []
    start = 0
    for i in range(1, len(numbers) + 1):
        if i == len(numbers) or numbers[i] != numbers[i - 1] + 1:
            run = numbers[start:i]
            results += launcher.launch([batch[n - initial_job_idx] for n in run], run[0])
            start = i
    return results


class RemainingJobsLauncher(Launcher):
    """The basic sweeper's launcher, launching through :func:`launch_remaining` (set up already)."""

    def __init__(self, launcher: Launcher, sweep_dir: Path) -> None:
        self.launcher, self.sweep_dir = launcher, sweep_dir

    def setup(self, **kwargs: Any) -> None:
        self.launcher.setup(**kwargs)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """:func:`launch_remaining`; a full disk or quota where Hydra writes a job's files (its ``.hydra/``
        config, before the job runs) stops the sweep in one line with the command that resumes it, exit 1: the
        jobs that finished keep their results, and every later job would fail the same way."""
        try:
            return launch_remaining(self.launcher, self.sweep_dir, job_overrides, initial_job_idx)
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            where = f" writing {e.filename}" if e.filename else ""
            command = rerun_command(sys.argv, self.sweep_dir)
            print(f"initsweep: the sweep stopped: {e.strerror}{where}; once there is space: {command}", file=sys.stderr)
            raise SystemExit(1) from None
