"""System metrics of a run: MLflow's ``system/*`` metrics (CPU and memory use, disk, network; GPU use and
memory when ``nvidia-ml-py`` is installed and a GPU is present), sampled by MLflow's SystemMetricsMonitor in
a thread every ``tracking.system_metrics_interval_s`` seconds.

Runs are created with ``MlflowClient.create_run``, which starts no monitor, so a job starts one on its run id
(:func:`monitoring`). A run shorter than the interval gets one sample at its end (CPU use averaged over the run).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def monitoring(run_id: str, tracking_uri: str, interval_s: float, enabled: bool = True) -> Iterator[Any]:
    """Sample the system metrics of run ``run_id`` while the block runs (nothing when not ``enabled``)."""
    if not enabled:
        yield None
        return
    monitor = _start(run_id, tracking_uri, interval_s)
    try:
        yield monitor
    finally:
        if monitor is not None:
            _stop(monitor)


def _start(run_id: str, tracking_uri: str, interval_s: float) -> Any:
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # no start/stop lines per job
    monitor = SystemMetricsMonitor(run_id, sampling_interval=interval_s, tracking_uri=tracking_uri)
    monitor.start()
    return monitor


def _stop(monitor: Any) -> None:
    """Stop the thread; a run that ended before its first interval gets one sample now (MLflow's monitor
    would log none). ``_logging_step`` counts the samples logged."""
    monitor.finish()
    if getattr(monitor, "_logging_step", 1) == 0:
        monitor.collect_metrics()
        monitor.publish_metrics(monitor.aggregate_metrics())
        monitor.mlflow_logger.flush()
