"""A job's tracking store, opened in this process: the experiment, the runs started in it, their monitors.

A job reaches its store through a ``LocalStore`` (this module: MLflow in the job's own process) or a
:class:`initsweep.writer.client.RemoteStore` (the same calls, served by a ``LocalStore`` in the tracking writer
process). Both open lazily: :meth:`LocalStore.ready` connects, closes the runs of dead processes (a single
run's store) and finds the experiment, and raises TrackingError for an unusable store.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from initsweep.protocol import TrackingError, one_line, redact
from initsweep.tracking import client as tracking
from initsweep.tracking import recovery, sysmetrics
from initsweep.tracking.metrics_file import file_changed


class LocalStore:
    """The store at ``uri``; the runs go to ``experiment_id`` when given (a sweep's), else to the experiment
    called ``experiment`` (created when absent). ``reap``: close the RUNNING runs of dead processes first."""

    def __init__(self, uri: str, experiment: str, experiment_id: str | None = None, reap: bool = False) -> None:
        self.tracking_uri = uri
        self._experiment, self._experiment_id, self._reap = experiment, experiment_id, reap
        self.client: Any = None
        self._monitors: dict[str, Any] = {}

    def ready(self) -> str:
        """Open the store (once) and return the experiment id; TrackingError when the store is unusable."""
        if self.client is None:
            client = tracking.connect(self.tracking_uri)
            if self._reap:
                recovery.reap(client)
            if self._experiment_id is None:
                self._experiment_id = tracking.experiment_id(client, self._experiment)
            self.client = client
        assert self._experiment_id is not None
        return self._experiment_id

    def start_run(
        self,
        name: str,
        tags: Mapping[str, Any],
        parent_run_id: str | None = None,
        who: Mapping[str, str] | None = None,
        resume_run_id: str | None = None,
    ) -> tracking.RunLogger:
        """A RUNNING run of the experiment (see :func:`initsweep.tracking.client.start_run`): ``resume_run_id``
        reopened when it can be (:func:`initsweep.tracking.client.reopen_run`), else a new one; TrackingError if
        refused."""
        exp_id = self.ready()
        if (db := tracking.sqlite_path(self.tracking_uri)) and (gone := file_changed(db)):
            # Not reconnected: nothing tells whether the new file is this sweep's store (a restored copy, another
            # sweep's); the job fails in one line, and the same command run again opens the file there now.
            raise TrackingError(f"cannot create a run: the MLflow store {db} was {gone} after it was opened")
        try:
            if resume_run_id and (reopened := tracking.reopen_run(self.client, resume_run_id, who)) is not None:
                return reopened
            return tracking.start_run(self.client, exp_id, name, tags, parent_run_id, who)
        except Exception as e:  # noqa: BLE001 - e.g. a full disk: one message, no traceback
            raise TrackingError(redact(f"cannot create a run in {self.tracking_uri}: {one_line(e)}")) from None

    def start_monitor(self, run_id: str, interval_s: float, enabled: bool) -> None:
        """Start sampling the system metrics of ``run_id`` (:mod:`initsweep.tracking.sysmetrics`)."""
        monitor = sysmetrics.monitoring(run_id, self.tracking_uri, interval_s, enabled)
        monitor.__enter__()
        self._monitors[run_id] = monitor

    def stop_monitor(self, run_id: str) -> None:
        if (monitor := self._monitors.pop(run_id, None)) is not None:
            monitor.__exit__(None, None, None)

    def stop_monitors(self) -> None:
        for run_id in list(self._monitors):
            self.stop_monitor(run_id)
