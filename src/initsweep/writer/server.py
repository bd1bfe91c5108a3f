"""The tracking writer's own process (:mod:`initsweep.writer.client` starts it and talks to it): it serves the requests
of one trainer process (a run's writes in order, a new run ahead of them), batches their metrics by time,
draws their figures in a child process, and closes the runs of a trainer that died."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, ClassVar

from initsweep.core.lazy import LazyModule
from initsweep.protocol import reason
from initsweep.writer.requests import (
    IGNORED_SIGNALS,
    Adopt,
    CallStoreSide,
    Close,
    DrawFigures,
    OpenStore,
    PrepareFigures,
    Request,
    RunCall,
    RunHandle,
    StartMonitor,
    StartRun,
    StopMonitor,
    Warm,
)

if TYPE_CHECKING:
    from initsweep.tracking import client as tracking
    from initsweep.tracking import local_store as stores
    from initsweep.tracking import recovery
else:  # MLflow: imported by serve(), once the signals are set and the libraries' logging quieted
    tracking = LazyModule("initsweep.tracking.client")
    stores = LazyModule("initsweep.tracking.local_store")
    recovery = LazyModule("initsweep.tracking.recovery")

# Requests served as they arrive, even before the deferred ones: they do not depend on what was sent before.
_AT_ONCE = (Warm, OpenStore, StartRun, Adopt)


class Drawer:
    """Draws runs' figures in a child process of the writer (:func:`_draw_loop`), which the writer's store
    requests never wait for: in a thread, drawing held the writer's GIL (most of a short trial's figures' 0.2 s
    is Python), and each request waited for its turn. The child runs at a lower priority (nice 10), so it
    draws on what the trainer and the writer leave of the CPU. The writer logs the PNGs (:meth:`done`)."""

    def __init__(self) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")  # not a fork of a process with MLflow's threads
        todo_r, self._todo = ctx.Pipe(duplex=False)
        self._done, done_w = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=_draw_loop, args=(todo_r, done_w), name="initsweep-figures", daemon=True)
        self._proc.start()
        todo_r.close()  # the child's ends: the child sees EOF when the writer exits, the writer when it dies
        done_w.close()
        self._queued: deque[str] = deque()  # run ids sent and not yet drawn, in order

    @property
    def pending(self) -> int:
        return len(self._queued)

    def prepare(self) -> None:
        """Import matplotlib in the child, before the first figure."""
        self._send(None)

    def draw(self, run_id: str, args: tuple) -> None:
        self._queued.append(run_id)
        self._send((run_id, args))

    def _send(self, item: Any) -> None:
        with suppress(OSError):  # the child died: done() reports what it did not draw
            self._todo.send(item)

    def done(self, wait: bool = False) -> list[tuple[str, list | Exception]]:
        """The drawings finished since the last call ``(run id, PNG paths or the error)``; all of them
        with ``wait``."""
        out: list[tuple[str, list | Exception]] = []
        while self._queued and (wait or self._done.poll()):
            try:
                out.append(self._done.recv())
            except (EOFError, OSError):
                error = RuntimeError(f"the figure-drawing process died (exit status {self._proc.exitcode})")
                out += [(run_id, error) for run_id in self._queued]
                self._queued.clear()
                break
            self._queued.popleft()
        return out


def _draw_loop(todo: Connection, done: Connection) -> None:
    """The drawing process: ``None`` imports matplotlib, ``(run id, draw args)`` draws and answers
    ``(run id, PNG paths or the error)``; it ends when the writer does (its end of the pipe closes)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to handle, as for the writer
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the writer's SIG_IGN: the writer's exit terminates it
    os.nice(10)
    from initsweep.report import drawing as figures

    while True:
        try:
            item = todo.recv()
        except (EOFError, OSError):
            return
        if item is None:
            from initsweep.report.plots import pyplot

            pyplot()
            continue
        run_id, args = item
        try:
            got: list | Exception = figures.draw(*args)
        except Exception as e:  # noqa: BLE001 - reported by the writer, which goes on
            got = e
        try:
            try:
                done.send((run_id, got))
            except OSError:
                raise
            except Exception as e:  # noqa: BLE001 - an error that does not pickle: its text
                done.send((run_id, RuntimeError(f"{type(got).__name__}: {got} ({e})")))
        except OSError:  # the writer died (a new one draws what is left): no traceback
            return


class Server:
    """The writer's stores, runs and drawing process; one method serves each type of request (``HANDLERS``)."""

    def __init__(self, replies: Connection) -> None:
        self.replies = replies
        self.opened: dict[int, stores.LocalStore] = {}
        self.runs: dict[str, tracking.RunLogger] = {}
        self.drawer: Drawer | None = None
        self.deferred: deque[tuple[int | None, Request]] = deque()  # see loop

    def loop(self, requests: Connection) -> bool:
        """Serve ``requests`` until the trainer says goodbye (True) or its end of the pipe closes (False: it died).

        Requests nobody waits for yet are deferred, in order, and served while no other request is pending: a
        job that creates its run (a sweep's next job) waits for one store call at most, not for the previous
        job's tail. A request that reads or ends what was sent before first serves everything deferred."""
        while True:
            open_runs = [logger for logger in self.runs.values() if not logger.ended]
            busy = any(logger._pending for logger in open_runs)
            self.log_drawn()
            try:
                if self.deferred and not requests.poll(0):
                    self.serve_one(*self.deferred.popleft())
                    continue
                if not requests.poll(0.05 if self.drawer and self.drawer.pending else 0.2 if busy else None):
                    for logger in open_runs:
                        logger.flush_if_due()
                    continue
                rid, request, later = requests.recv()
            except (EOFError, OSError):
                return False
            if isinstance(request, Close):
                return True
            if not isinstance(request, _AT_ONCE):
                if later:
                    self.deferred.append((rid, request))
                    continue
                self.serve_deferred()
            self.serve_one(rid, request)

    def serve_deferred(self) -> None:
        while self.deferred:
            self.serve_one(*self.deferred.popleft())

    def serve_one(self, rid: int | None, request: Request) -> None:
        """Serve ``request``; reply when it has an id, else a failed write of a run marks the run broken."""
        try:
            value, ok = self.HANDLERS[type(request)](self, request), True
        except Exception as e:  # noqa: BLE001 - every failure goes back to the trainer as a message
            value, ok = reason(e), False
            if rid is None and isinstance(request, RunCall) and request.run_id in self.runs:  # a posted write failed:
                run = self.runs[request.run_id]
                run.broken = run.broken or value  # the run cannot finish FINISHED
                print(f"initsweep: warning: {value}; training goes on", file=sys.stderr)
        if rid is not None:
            with suppress(OSError):  # the trainer died waiting (BrokenPipeError): the next recv says so, no traceback
                self.replies.send((rid, ok, value))

    def log_drawn(self, wait: bool = False) -> None:
        """Log the figures drawn since the last call to their runs; all of them with ``wait``."""
        for run_id, got in self.drawer.done(wait) if self.drawer is not None else ():
            try:
                if isinstance(got, Exception):
                    raise got
                for path in got:
                    self.runs[run_id].log_artifact(path)
            except Exception as e:  # noqa: BLE001 - a run without its figures is still a result
                print(f"initsweep: warning: the figures of run {run_id} were not logged: {e}", file=sys.stderr)

    def warm(self, r: Warm) -> None:
        db = tracking.sqlite_path(r.uri)
        if db.exists() if db is not None else r.uri.startswith(("http://", "https://")):
            tracking.connect(r.uri)

    def open_store(self, r: OpenStore) -> str:
        self.opened[r.sid] = stores.LocalStore(r.uri, r.experiment, r.experiment_id, r.reap)
        return self.opened[r.sid].ready()

    def start_run(self, r: StartRun) -> tuple[str, str]:
        logger = self.opened[r.sid].start_run(r.name, r.tags, r.parent_run_id, r.who, r.resume_run_id)
        self.runs[logger.run_id] = logger
        return logger.run_id, logger.run_name

    def call_store_side(self, r: CallStoreSide) -> Any:
        if r.function in getattr(sys.modules[r.function.__module__], "DRAWING", ()):  # it draws too (the sweep's
            self.log_drawn(wait=True)  # report): the figures first
        got = r.function(*r.args)
        if isinstance(got, tracking.RunLogger):  # the writer keeps it; the caller gets a RemoteRunLogger
            self.runs[got.run_id] = got
            return RunHandle(got.run_id, got.run_name, got.experiment_id, got.client.tracking_uri)
        return got

    def start_monitor(self, r: StartMonitor) -> None:
        self.opened[r.sid].start_monitor(r.run_id, r.interval_s, r.enabled)

    def stop_monitor(self, r: StopMonitor) -> None:
        self.opened[r.sid].stop_monitor(r.run_id)

    def prepare_figures(self, r: PrepareFigures) -> None:
        self._drawing().prepare()

    def draw_figures(self, r: DrawFigures) -> None:
        self._drawing().draw(r.run_id, r.args)

    def _drawing(self) -> Drawer:
        self.drawer = self.drawer or Drawer()
        return self.drawer

    def run_call(self, r: RunCall) -> Any:
        """An ended run still takes artifacts (the sweep's figures)."""
        return getattr(self.runs[r.run_id], r.method)(*r.args)

    def adopt(self, r: Adopt) -> None:
        """Hold a run a writer that died held, after sending what its job's metrics file has for it."""
        logger = tracking.RunLogger(tracking.connect(r.tracking_uri), r.run_id, experiment_id=r.experiment_id)
        logger.run_name = r.run_name
        self.runs[r.run_id] = logger
        if r.metrics_file is not None and (rec := recovery.local_record(r.metrics_file, r.run_id)) is not None:
            recovery.upload(logger.client, r.run_id, rec)

    HANDLERS: ClassVar[dict[type, Callable[[Server, Any], Any]]] = {
        Warm: warm,
        OpenStore: open_store,
        StartRun: start_run,
        CallStoreSide: call_store_side,
        StartMonitor: start_monitor,
        StopMonitor: stop_monitor,
        PrepareFigures: prepare_figures,
        DrawFigures: draw_figures,
        RunCall: run_call,
        Adopt: adopt,
    }

    def shut_down(self, left: bool) -> None:
        """Serve what is deferred, log the figures, stop the monitors. A trainer that did not say goodbye
        (``left``) died: its open runs get what it sent, then its metrics file, and KILLED, lost."""
        self.serve_deferred()
        self.log_drawn(wait=True)
        for store in self.opened.values():
            store.stop_monitors()
        for logger in [logger for logger in self.runs.values() if not logger.ended]:
            try:
                logger.flush()
                deadline = time.monotonic() + (0 if left else 10)  # a killed trainer's pid takes a moment to go
                while recovery.settle(logger.client, logger.client.get_run(logger.run_id)) is None:
                    if time.monotonic() > deadline:
                        break  # alive: a later recovery closes the run
                    time.sleep(0.1)
            except Exception as e:  # noqa: BLE001 - the store failed too: a later recovery closes the run
                print(f"initsweep: could not close run {logger.run_id}: {e}", file=sys.stderr)


def serve() -> None:
    """The writer's main: ``python -c ... REQUEST_FD REPLY_FD`` (see :class:`TrackingWriter`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the trainer, which closes its runs through us
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, IGNORED_SIGNALS)  # blocked by the client from the start: now ignored
    requests = Connection(int(sys.argv[1]), writable=False)
    replies = Connection(int(sys.argv[2]), readable=False)
    from initsweep.report.console import quiet_libraries

    quiet_libraries()
    from initsweep.tracking import client, local_store, recovery  # noqa: F401 - MLflow: now, while the trainer imports torch

    if "MLFLOW_TRACKING_URI" not in os.environ or os.environ["MLFLOW_TRACKING_URI"].startswith("sqlite"):
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401 - the local store's code, before it is needed

    server = Server(replies)
    server.shut_down(left=server.loop(requests))
    from initsweep.tracking.fastexit import exit_now

    exit_now(0)  # no interpreter teardown: the trainer waits for this process to end
