"""The resilient launch loop, imported only when a sweep launches (Hydra's plugin scanner skips modules whose
name starts with ``_``, so joblib and numpy stay out of every start-up and ``--help``)."""

import logging
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from joblib import Parallel, delayed
from joblib.externals.loky.process_executor import TerminatedWorkerError

from hydra_plugins.hydra_joblib_launcher._core import execute_job
from initsweep.protocol import LOST_FILE
from initsweep.sweep.launchers import finish_warm_up, joblib_args, workers_close_their_runs_on_interrupt

log = logging.getLogger(__name__)
ATTEMPTS = 2  # a job whose worker died is run once more


def _indexed(idx: int, *args: Any) -> Any:
    return idx, execute_job(*args)


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], numbers: Sequence[int]) -> Sequence[JobReturn]:
    """The stock launch of the jobs numbered ``numbers``, but jobs without a result (their worker died) are
    launched once more."""
    setup_globals()
    assert launcher.config is not None and launcher.task_function is not None and launcher.hydra_context is not None
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    joblib_cfg = joblib_args(launcher.joblib)
    log.info(
        f"Joblib.Parallel({','.join(f'{k}={v}' for k, v in joblib_cfg.items())}) is launching {len(job_overrides)} jobs"
    )
    for idx, overrides in zip(numbers, job_overrides, strict=True):
        log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")

    if failed := finish_warm_up():  # the workers started early have imported what the first jobs need
        log.warning(f"initsweep: a worker failed to start ({failed}); the launch starts another")
    results: dict[int, JobReturn] = {}
    with workers_close_their_runs_on_interrupt(sweep_dir):
        todo = _launch(launcher, job_overrides, numbers, joblib_cfg, sweep_dir, results)
    for i in todo:
        if i not in results:  # lost twice: a failed job, reported at the sweep's end
            error = RuntimeError(f"job #{numbers[i]} lost its worker {ATTEMPTS} times")
            results[i] = JobReturn(overrides=list(job_overrides[i]), status=JobStatus.FAILED, _return_value=error)
    return [results[i] for i in range(len(job_overrides))]


def _launch(
    launcher: Any,
    job_overrides: Sequence[Sequence[str]],
    numbers: Sequence[int],
    joblib_cfg: dict[str, Any],
    sweep_dir: Path,
    results: dict[int, JobReturn],
) -> list[int]:
    """Run the jobs into ``results``, those whose worker died once more; returns the last attempt's jobs."""
    todo = list(range(len(job_overrides)))
    for attempt in range(1, ATTEMPTS + 1):
        try:
            jobs = Parallel(**joblib_cfg, return_as="generator_unordered")(
                delayed(_indexed)(
                    i,
                    numbers[i],
                    job_overrides[i],
                    launcher.hydra_context,
                    launcher.config,
                    launcher.task_function,
                    Singleton.get_state(),
                )
                for i in todo
            )
            for i, ret in jobs:
                results[i] = ret
            break
        except (TerminatedWorkerError, BrokenProcessPool) as e:
            todo = [i for i in todo if i not in results]
            with (sweep_dir / LOST_FILE).open("a") as f:  # the sweep exits 1 naming them (SweepCallback)
                f.writelines(f"#{numbers[i]} ({' '.join(job_overrides[i])})\n" for i in todo)
            again = "; running them once more" if attempt < ATTEMPTS else ""
            jobs_left = ", ".join(f"#{numbers[i]}" for i in todo)
            log.error(f"initsweep: a worker died ({type(e).__name__}); jobs without a result: {jobs_left}{again}")
    return todo
