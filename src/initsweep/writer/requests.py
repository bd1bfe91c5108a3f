"""What a job's process asks its tracking writer: one frozen dataclass per request, sent as ``(id or None,
request, later)`` by :class:`initsweep.writer.client.TrackingWriter` and served by
:mod:`initsweep.writer.server`."""

from __future__ import annotations

import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# The signals the writer ignores (Ctrl-C and SIGTERM are the trainer's to handle); the client starts it with
# them blocked, so it is never interrupted before it ignores them.
IGNORED_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


@dataclass(frozen=True)
class Warm:
    """Connect to the store at ``uri`` now, if it exists."""

    uri: str


@dataclass(frozen=True)
class OpenStore:
    """Open a store (a ``LocalStore``), known from now on as ``sid``; replies the experiment id."""

    sid: int
    uri: str
    experiment: str
    experiment_id: str | None
    reap: bool


@dataclass(frozen=True)
class StartRun:
    """Create a run in store ``sid`` (or reopen ``resume_run_id`` when it can be); replies ``(run id, run name)``."""

    sid: int
    name: str
    tags: Mapping[str, str]
    parent_run_id: str | None
    who: Mapping[str, str]
    resume_run_id: str | None = None


@dataclass(frozen=True)
class CallStoreSide:
    """``function(*args)``, a function of :mod:`initsweep.writer.sweep_runs` (pickled by reference); replies its
    value, a run logger as a :class:`RunHandle`."""

    function: Callable[..., Any]
    args: tuple


@dataclass(frozen=True)
class StartMonitor:
    """Start sampling the system metrics of a run of store ``sid``."""

    sid: int
    run_id: str
    interval_s: float
    enabled: bool


@dataclass(frozen=True)
class StopMonitor:
    sid: int
    run_id: str


@dataclass(frozen=True)
class PrepareFigures:
    """Let the drawing process import matplotlib."""


@dataclass(frozen=True)
class DrawFigures:
    """Draw a run's figures (:func:`initsweep.report.drawing.draw`'s ``args``) and log them to the run."""

    run_id: str
    args: tuple


@dataclass(frozen=True)
class RunCall:
    """``RunLogger.<method>(*args)`` on a run the writer holds."""

    run_id: str
    method: str
    args: tuple


@dataclass(frozen=True)
class Adopt:
    """Hold run ``run_id``, which a writer that died held: first send the store what its job's local metrics
    file (``metrics_file``, its part for this run) holds, since the dead writer may not have sent all of it."""

    run_id: str
    run_name: str
    experiment_id: str | None
    tracking_uri: str
    metrics_file: str | None


@dataclass(frozen=True)
class Close:
    """The trainer's goodbye: serve what was sent, then exit."""


Request = (
    Warm
    | OpenStore
    | StartRun
    | CallStoreSide
    | StartMonitor
    | StopMonitor
    | PrepareFigures
    | DrawFigures
    | RunCall
    | Adopt
    | Close
)


@dataclass(frozen=True)
class RunHandle:
    """The reply for a run logger that a :class:`CallStoreSide` function returned: the writer keeps the run."""

    run_id: str
    run_name: str
    experiment_id: str | None
    tracking_uri: str
