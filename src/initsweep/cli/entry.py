"""The Hydra task function: decides, in one place, whether a job is a trial of a study or a plain job.

The task function of :mod:`initsweep.cli.main` imports this module only when a job runs, so ``--help`` and
``--cfg job`` stay quick.
"""

from __future__ import annotations

from omegaconf import DictConfig

from initsweep import protocol
from initsweep.tracking import processes
from initsweep.writer import client as writer


def run(cfg: DictConfig) -> float | list[float]:
    """Run one Hydra job and return its optimized metric: a trial when the Optuna sweeper set
    ``$INITSWEEP_TRIAL`` (see :mod:`initsweep.tuning.trial`), else a plain job (:func:`initsweep.jobs.job.run_job`).
    A list of optimized metrics (a multi-objective study) gives a list of values."""
    processes.terminate_as_interrupt()  # a terminated job closes its runs, as on Ctrl-C
    writer.prestart()  # MLflow loads in the tracking writer while this process imports torch
    number = protocol.trial_number()
    if number is None:
        from initsweep.jobs.job import run_job  # lazy: torch

        return run_job(cfg)
    from initsweep.tuning.trial import run_trial  # lazy: plain jobs never import optuna

    return run_trial(cfg, number)
