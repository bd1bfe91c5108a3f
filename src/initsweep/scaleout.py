"""Scale-out helpers: launcher batch sizes, one device per worker, storage drivers, one study-level parent run.

Pure functions where possible, so the sweeper, the job and the tests share one definition:

* :func:`batch_size` - trials the Optuna sweeper launches at once, from the launcher's config;
* :func:`joblib_args`, :func:`warm_up_joblib_workers` - the joblib launcher's ``Parallel`` arguments, and its
  workers started while the sweep's process opens its parent run;
* :func:`device_for_worker` - the GPU a parallel worker trains on, from its rank;
* :func:`check_storage_driver` - a ``postgresql://`` URL without its driver -> one ConfigError naming the extra;
* :func:`study_parent_run` - the ONE MLflow parent run of a study shared by many worker processes.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from initsweep.config import ConfigError

STUDY_PARENT_TAG = "initsweep.study_parent"  # value: the study name; marks the study-level parent run
# SQLAlchemy 2.x URL scheme -> (importable driver module, the extra that installs it)
DRIVERS = {
    "postgresql": ("psycopg", "postgres"),
    "postgresql+psycopg": ("psycopg", "postgres"),
    "postgresql+psycopg2": ("psycopg2", "postgres (or pip install psycopg2-binary)"),
    "mysql": ("MySQLdb", "pip install mysqlclient"),
    "mysql+pymysql": ("pymysql", "pip install pymysql"),
}


def batch_size(launcher_cfg: Mapping[str, Any] | None, cpu_count: int | None = None) -> int:
    """Trials to run at once under this launcher: joblib ``n_jobs`` (-1 -> the CPU count, -k -> cpus+1-k),
    submitit ``array_parallelism``, else 1 (the basic launcher runs one job at a time)."""
    cfg = dict(launcher_cfg or {})
    cpus = cpu_count or os.cpu_count() or 1
    if cfg.get("n_jobs") is not None:
        n = int(cfg["n_jobs"])
        return max(1, cpus + 1 + n if n < 0 else n)
    if cfg.get("array_parallelism") is not None:
        return max(1, int(cfg["array_parallelism"]))
    return 1


def joblib_args(launcher_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``joblib.Parallel``'s arguments from the joblib launcher's config (``hydra.launcher``): the loky
    backend (Hydra's jobs cannot share a process) and counts written as text made ints, as Hydra does."""
    args = {k: v for k, v in launcher_cfg.items() if k != "_target_"}
    args["backend"] = "loky"
    for key in ("pre_dispatch", "batch_size", "max_nbytes"):
        if isinstance(args.get(key), str) and args[key].strip().isdigit():
            args[key] = int(args[key])
    return args


_warming: Iterator[Any] | None = None  # the warm-up tasks' results, until the launch reads them


def warm_up_joblib_workers(launcher_cfg: Mapping[str, Any], task: Callable[[], None]) -> None:
    """Start the joblib launcher's workers now, each running ``task`` (:func:`initsweep.entry.warm_worker`),
    while the sweep's process opens its parent run. The launch reuses them: loky keeps one executor per set
    of ``Parallel`` arguments (:func:`joblib_args` for both)."""
    global _warming
    from joblib import Parallel, delayed, effective_n_jobs

    args = joblib_args(launcher_cfg)
    n = effective_n_jobs(args.get("n_jobs"))
    _warming = Parallel(**args, return_as="generator_unordered")(delayed(task)() for _ in range(n))


def finish_warm_up() -> str | None:
    """Wait for the warm-up's tasks (none: nothing to wait for); why one failed, else None."""
    global _warming
    warming, _warming = _warming, None
    try:
        for _ in warming or ():
            pass
    except Exception as e:  # noqa: BLE001 - a worker that died starting: the launch starts another
        return f"{type(e).__name__}: {e}"
    return None


def stop_warm_workers() -> None:
    """Stop the workers started early at once: the sweep ends before it launches."""
    global _warming
    if _warming is not None:
        from joblib.externals.loky import get_reusable_executor

        _warming = None
        get_reusable_executor().shutdown(wait=False, kill_workers=True)


def worker_rank(env: Mapping[str, str] | None = None, job_num: int | None = None, n_workers: int = 1) -> int:
    """This worker's rank among those sharing a machine: $SLURM_LOCALID (a SLURM task), else
    ``job_num mod n_workers`` (joblib: job k of a batch of n_workers runs in worker k), else 0."""
    env = os.environ if env is None else env
    if env.get("SLURM_LOCALID", "").isdigit():
        return int(env["SLURM_LOCALID"])
    if job_num is not None and n_workers > 1:
        return job_num % n_workers
    return 0


def device_for_worker(rank: int, n_devices: int, visible: str | None = None) -> str:
    """The device for worker ``rank``: ``cuda:<rank mod n_devices>``, or ``cpu`` without devices.

    ``visible`` is $CUDA_VISIBLE_DEVICES: when SLURM (``--gpus-per-task``) or the user already gave the worker
    exactly one device, that one is ``cuda:0`` whatever the rank."""
    if n_devices <= 0:
        return "cpu"
    if visible is not None and visible.strip() and len(visible.split(",")) == 1:
        return "cuda:0"
    return f"cuda:{rank % n_devices}"


def job_device(
    device: str, job_num: int | None, parallel_jobs: int, n_devices: int, env: Mapping[str, str] | None = None
) -> str:
    """The device a job trains on: ``device`` (the resolved ``trainer.device``) as is, unless it is a bare
    ``cuda`` on a machine with several GPUs; then this worker's own :func:`device_for_worker`, its rank from
    :func:`worker_rank` (SLURM task, or joblib job number mod ``parallel_jobs``)."""
    if device != "cuda" or n_devices <= 1:
        return device
    env = os.environ if env is None else env
    rank = worker_rank(env, job_num, parallel_jobs)
    return device_for_worker(rank, n_devices, env.get("CUDA_VISIBLE_DEVICES"))


def check_storage_driver(url: str | None, key: str) -> None:
    """ConfigError (naming ``key`` and the extra to install) when ``url`` needs a database driver that is
    not installed; nothing for journal files, sqlite and http."""
    if not url or "://" not in str(url):
        return
    scheme = str(url).split("://", 1)[0].lower()
    if scheme not in DRIVERS:
        return
    module, extra = DRIVERS[scheme]
    if importlib.util.find_spec(module) is None:
        how = f'pip install -e ".[{extra}]"' if " " not in extra else extra
        raise ConfigError(f"{key} = {scheme}://...: the database driver {module!r} is not installed; {how}")


def study_parent_run(client: Any, exp_id: str, study_name: str, run_name: str, tags: Mapping[str, Any]) -> str:
    """Id of the study's one MLflow parent run, found or created by study name, safe when workers race.

    Each worker looks for runs tagged ``initsweep.study_parent=<study_name>``; none -> it creates one, then
    searches again: the oldest (start time, then run id) wins, and a worker whose own run lost deletes it.
    A finished parent is set RUNNING again while this worker adds trials.
    """
    from initsweep import tracking

    def candidates() -> list:
        runs = client.search_runs(
            [exp_id],
            filter_string=f"tags.`{STUDY_PARENT_TAG}` = '{study_name.replace(chr(39), chr(92) + chr(39))}'",
            max_results=100,
        )
        return sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))

    found = candidates()
    if found:
        run_id = found[0].info.run_id
        if found[0].info.status != "RUNNING":
            client.update_run(run_id, status="RUNNING")
        return run_id
    mine = tracking.start_run(client, exp_id, run_name, {**tags, STUDY_PARENT_TAG: study_name}).run_id
    winner = candidates()[0].info.run_id
    if winner != mine:
        client.delete_run(mine)
    return winner


def budget_used(trials: Sequence[Any]) -> int:
    """Trials of a study that count toward ``max_trials``: complete, pruned and running ones, and failed
    ones that were not retried (a retry, WAITING until asked, takes the failed trial's place)."""
    retried = {t.system_attrs.get("failed_trial") for t in trials}
    counted = ("COMPLETE", "PRUNED", "RUNNING")
    return sum(t.state.name in counted or (t.state.name == "FAIL" and t.number not in retried) for t in trials)


def budget_left(trials: Sequence[Any], max_trials: int | None) -> int | None:
    """Trials this invocation may still start under the study's total budget (None: no total budget)."""
    return None if max_trials is None else max(0, max_trials - budget_used(trials))


# ---------------------------------------------------------------------------------------------------
# SLURM without accounting: jobs that died hard


def _queue_watcher_class() -> type:
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


def install_slurm_watcher(launcher_cfg: Mapping[str, Any] | None) -> bool:
    """Give submitit's SLURM jobs the :func:`_queue_watcher_class` watcher when ``launcher_cfg`` is Hydra's
    submitit SLURM launcher (call in the sweep's main process, before jobs are submitted). Returns whether
    it did; idempotent."""
    target = str((launcher_cfg or {}).get("_target_", ""))
    if "submitit" not in target or not target.endswith("SlurmLauncher"):
        return False
    from submitit.slurm.slurm import SlurmJob

    cls = _queue_watcher_class()
    if type(SlurmJob.watcher).__name__ != cls.__name__:
        SlurmJob.watcher = cls(delay_s=60)
    return True
