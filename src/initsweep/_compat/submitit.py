"""submitit internals (checked against submitit 1.5.x): its SLURM job watcher's private state.

submitit asks ``sacct`` for job states; without SLURM accounting every job looks pending forever. The
watcher below answers from ``squeue`` instead, which needs the watcher's private fields (``_registered``,
``_finished``, ``_info_dict``, ``_num_calls``, ``_last_status_check``) and the class attribute
``SlurmJob.watcher``. ``tests/test_compat.py`` fails when any of them moves.
"""

from __future__ import annotations

import time
from typing import Any

WATCHER_FIELDS = ("_registered", "_finished", "_info_dict", "_num_calls", "_last_status_check")


def queue_watcher_class() -> type:
    """submitit's SlurmInfoWatcher, answering from ``squeue`` when ``sacct`` does not (no slurmdbd).

    ``squeue --states=all`` lists pending, running and recently ended jobs with their state (FAILED, TIMEOUT,
    CANCELLED, OUT_OF_MEMORY ... for a job killed by SIGKILL or its time limit); a job that is no longer listed
    at all gets the state ``GONE``. submitit counts any such state as done, and a done job without a result
    file raises ``UncompletedJobError`` naming it: the job is recorded as failed, not waited on forever.
    """
    import subprocess

    from submitit.slurm.slurm import SlurmInfoWatcher

    class QueueWatcher(SlurmInfoWatcher):
        sacct_works: bool | None = None  # decided by the first call

        def update(self) -> None:
            if QueueWatcher.sacct_works is None:
                try:
                    probe = subprocess.run(["sacct", "-n", "-j", "1"], capture_output=True, timeout=60).returncode
                except (OSError, subprocess.TimeoutExpired):
                    probe = -1
                QueueWatcher.sacct_works = probe == 0  # rc 1: "accounting storage is disabled"
            if QueueWatcher.sacct_works:
                return super().update()
            pending = self._registered - self._finished
            if not pending:
                return
            self._num_calls += 1
            self._last_status_check = time.time()
            try:
                out = subprocess.run(
                    ["squeue", "-h", "--states=all", "-o", "%i|%T|%N"], capture_output=True, text=True, timeout=60
                )
            except (OSError, subprocess.TimeoutExpired):
                return
            if out.returncode != 0:
                return
            self._info_dict.update(self.read_info("JobID|State|NodeList\n" + out.stdout))
            for job_id in pending - set(self._info_dict):
                self._info_dict[job_id] = {"JobID": job_id, "State": "GONE"}
            for job_id in self._registered - self._finished:
                if self.is_done(job_id, mode="cache"):
                    self._finished.add(job_id)

    return QueueWatcher


def install_job_watcher(watcher_class: type) -> None:
    """Make ``watcher_class`` (a SlurmInfoWatcher subclass) watch every SLURM job submitit submits; idempotent."""
    from submitit.slurm.slurm import SlurmJob

    if type(SlurmJob.watcher).__name__ != watcher_class.__name__:
        SlurmJob.watcher = watcher_class(delay_s=60)


def job_watcher() -> Any:
    """The watcher submitit's SLURM jobs use now."""
    from submitit.slurm.slurm import SlurmJob

    return SlurmJob.watcher
