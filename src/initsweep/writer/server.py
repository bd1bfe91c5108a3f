"""The tracking writer's own process (:mod:`initsweep.writer.client` starts it and talks to it): it serves the requests
of one trainer process (a run's writes in order, a new run ahead of them), batches their metrics by time,
draws their figures in a child process, and closes the runs of a trainer that died."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import deque
from contextlib import suppress
from multiprocessing.connection import Connection
from typing import Any

from initsweep.protocol import TrackingError

# Requests served as they arrive, even before the deferred ones: they do not depend on what was sent before.
_AT_ONCE = frozenset({"warm", "open", "start_run"})


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
            done.send((run_id, got))
        except Exception as e:  # noqa: BLE001 - an error that does not pickle: its text
            done.send((run_id, RuntimeError(f"{type(got).__name__}: {got} ({e})")))


def serve() -> None:
    """The writer's main: ``python -c ... REQUEST_FD REPLY_FD`` (see :class:`TrackingWriter`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the trainer, which closes its runs through us
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    requests = Connection(int(sys.argv[1]), writable=False)
    replies = Connection(int(sys.argv[2]), readable=False)
    from initsweep.report.console import quiet_libraries

    quiet_libraries()
    from initsweep.tracking import client as tracking
    from initsweep.tracking import local_store as stores
    from initsweep.tracking import recovery  # MLflow: imported here, while the trainer imports torch

    if "MLFLOW_TRACKING_URI" not in os.environ or os.environ["MLFLOW_TRACKING_URI"].startswith("sqlite"):
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401 - the local store's code, before it is needed

    opened: dict[int, Any] = {}
    runs: dict[str, tracking.RunLogger] = {}
    drawer: Drawer | None = None

    def log_drawn(wait: bool = False) -> None:
        for run_id, got in drawer.done(wait) if drawer is not None else ():
            try:
                if isinstance(got, Exception):
                    raise got
                for path in got:
                    runs[run_id].log_artifact(path)
            except Exception as e:  # noqa: BLE001 - a run without its figures is still a result
                print(f"initsweep: warning: the figures of run {run_id} were not logged: {e}", file=sys.stderr)

    def handle(name: str, args: tuple) -> Any:
        nonlocal drawer
        if name in ("prepare_figures", "figures"):
            drawer = drawer or Drawer()
            return drawer.prepare() if name == "prepare_figures" else drawer.draw(*args)
        if name == "warm":
            db = tracking.sqlite_path(args[0])
            if db.exists() if db is not None else args[0].startswith(("http://", "https://")):
                tracking.connect(args[0])
            return None
        if name == "open":
            sid, uri, experiment, experiment_id, reap = args
            opened[sid] = stores.LocalStore(uri, experiment, experiment_id, reap)
            return opened[sid].ready()
        if name == "start_run":
            sid, *rest = args
            logger = opened[sid].start_run(*rest)
            runs[logger.run_id] = logger
            return logger.run_id, logger.run_name
        if name == "function":
            import importlib

            (module_name, function), fargs = args[0].split(":"), args[1]
            module = importlib.import_module(module_name)
            if function in getattr(module, "DRAWING", ()):  # it draws too (the sweep's report): the figures first
                log_drawn(wait=True)
            got = getattr(module, function)(*fargs)
            if isinstance(got, tracking.RunLogger):  # the writer keeps it; the caller gets a RemoteRunLogger
                runs[got.run_id] = got
                return ("run logger", got.run_id, got.run_name, got.experiment_id, got.client.tracking_uri)
            return got
        if name == "move_artifact":
            run_id, path, artifact_path = args
            try:
                return runs[run_id].log_artifact(path, artifact_path)
            finally:
                with suppress(OSError):  # the directory stays unless it was made for this file alone
                    os.unlink(path)
                    os.rmdir(os.path.dirname(path))
        if name in ("start_monitor", "stop_monitor"):
            sid, *rest = args
            return getattr(opened[sid], name)(*rest)
        run_id, method, margs = args
        return getattr(runs[run_id], method)(*margs)  # an ended run still takes artifacts (the sweep's figures)

    def serve_one(rid: int | None, name: str, args: tuple) -> None:
        try:
            value, ok = handle(name, args), True
        except Exception as e:  # noqa: BLE001 - every failure goes back to the trainer as a message
            value, ok = (str(e) if isinstance(e, TrackingError) else f"{type(e).__name__}: {e}"), False
            if rid is None and name in ("run", "move_artifact") and args[0] in runs:  # a posted write failed:
                runs[args[0]].broken = runs[args[0]].broken or value  # the run cannot finish FINISHED
                print(f"initsweep: warning: {value}; training goes on", file=sys.stderr)
        if rid is not None:
            replies.send((rid, ok, value))

    # Requests nobody waits for yet are deferred, in order, and served while no other request is pending: a
    # job that creates its run (a sweep's next job) waits for one store call at most, not for the previous
    # job's tail. A request that reads or ends what was sent before first serves everything deferred.
    deferred: deque[tuple[int | None, str, tuple]] = deque()
    left = False  # the trainer said goodbye (else it died)
    while True:
        open_runs = [logger for logger in runs.values() if not logger.ended]
        busy = any(logger._pending for logger in open_runs)
        log_drawn()
        try:
            if deferred and not requests.poll(0):
                serve_one(*deferred.popleft())
                continue
            if not requests.poll(0.05 if drawer and drawer.pending else 0.2 if busy else None):
                for logger in open_runs:
                    logger.flush_if_due()
                continue
            rid, name, args, later = requests.recv()
        except (EOFError, OSError):
            break
        if name == "close":
            left = True
            break
        if name not in _AT_ONCE:
            if later:
                deferred.append((rid, name, args))
                continue
            while deferred:
                serve_one(*deferred.popleft())
        serve_one(rid, name, args)
    while deferred:
        serve_one(*deferred.popleft())
    log_drawn(wait=True)
    for store in opened.values():
        store.stop_monitors()
    for logger in (
        logger for logger in runs.values() if not logger.ended
    ):  # the trainer died: what it sent, then its metrics file, and KILLED, lost
        try:
            logger.flush()
            deadline = time.monotonic() + (0 if left else 10)  # a killed trainer's pid takes a moment to go
            while recovery.settle(logger.client, logger.client.get_run(logger.run_id)) is None:
                if time.monotonic() > deadline:
                    break  # alive: a later recovery closes the run
                time.sleep(0.1)
        except Exception as e:  # noqa: BLE001 - the store failed too: a later recovery closes the run
            print(f"initsweep: could not close run {logger.run_id}: {e}", file=sys.stderr)
    from initsweep.tracking.fastexit import exit_now

    exit_now(0)  # no interpreter teardown: the trainer waits for this process to end
