"""How the sweep's jobs are launched beside Hydra's launchers: batch sizes, the joblib launcher's arguments and
early-started workers, and a SLURM job watcher for clusters without accounting.

* :func:`batch_size` - trials the Optuna sweeper launches at once, from the launcher's config;
* :func:`joblib_args`, :func:`warm_up_joblib_workers` - the joblib launcher's ``Parallel`` arguments, and its
  workers started while the sweep's process opens its parent run;
* :func:`install_slurm_watcher` - submitit's SLURM jobs watched through ``squeue`` when ``sacct`` is off.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from initsweep._compat.submitit import install_job_watcher, queue_watcher_class
from initsweep.tracking import metrics_file as ledger
from initsweep.tracking import processes


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
    """Start the joblib launcher's workers now, each running ``task`` (:func:`warm_worker`),
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


def install_slurm_watcher(launcher_cfg: Mapping[str, Any] | None) -> bool:
    """Give submitit's SLURM jobs the ``squeue`` watcher (:func:`initsweep._compat.submitit.queue_watcher_class`)
    when ``launcher_cfg`` is Hydra's submitit SLURM launcher (call in the sweep's main process, before jobs are
    submitted). Returns whether it did; idempotent."""
    target = str((launcher_cfg or {}).get("_target_", ""))
    if "submitit" not in target or not target.endswith("SlurmLauncher"):
        return False
    install_job_watcher(queue_watcher_class())
    return True


def warm_worker() -> None:
    """A joblib worker's start before its first job (:func:`initsweep.sweep.launchers.warm_up_joblib_workers`): the
    tracking writer starts (MLflow loads there) while this process imports torch and what the first optimizer
    step imports."""
    from initsweep.writer import client as writer

    writer.prestart()
    import torch._dynamo  # noqa: F401


@contextlib.contextmanager
def workers_close_their_runs_on_interrupt(sweep_dir: Path, grace_s: float = 15.0) -> Iterator[None]:
    """While a joblib batch runs in this (the sweep's main) process: Ctrl-C or SIGTERM (passed on to the
    workers; Ctrl-C reaches them from the terminal) interrupts this process only once the workers' jobs have
    closed their runs KILLED, ``failure=interrupted`` (each running job's ``metrics.jsonl`` in ``sweep_dir``
    records its end), or after ``grace_s`` seconds: joblib kills its workers as soon as the interrupt reaches
    it. A second signal interrupts at once. Main thread only; an ignored signal stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stops = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.getsignal(s) for s in stops}

    def on_stop(signum: int, frame: Any) -> None:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if signum == signal.SIGTERM:
            for pid in processes.children(os.getpid()):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGTERM)
        running = [f for f in sweep_dir.glob("**/" + ledger.FILE_NAME) if _open_part(f)]
        deadline = time.monotonic() + grace_s
        while running and time.monotonic() < deadline:
            time.sleep(0.1)
            running = [f for f in running if _open_part(f)]
        raise KeyboardInterrupt(f"signal {signum}")

    mine = [s for s, h in previous.items() if h is not signal.SIG_IGN]
    for s in mine:
        signal.signal(s, on_stop)
    try:
        yield
    finally:
        for s in mine:
            signal.signal(s, previous[s])


def _open_part(path: Path) -> bool:
    """Whether the last run of a job's metrics file has not recorded its end yet."""
    try:
        last = ledger.read(path)
    except OSError:
        return False
    return last.run_id is not None and last.end is None
