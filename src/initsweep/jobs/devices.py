"""The device a job trains on when several workers share a machine: one GPU per worker, from its rank."""

from __future__ import annotations

import os
from collections.abc import Mapping


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
