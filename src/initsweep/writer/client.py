"""The tracking writer: a process that owns MLflow for the jobs of the process that starts it.

Importing MLflow and opening a store costs about 3 s of CPU, as much as importing torch. A job process that
has not imported MLflow yet (a single run, a joblib or SLURM worker; ``$INITSWEEP_TRACKING_WRITER``: ``auto``,
the default; ``1`` always; ``0`` never) starts the writer before it imports torch (:func:`prestart`), so the
two imports run on two cores at once, and then talks to it through a pipe:

* :func:`open_store` returns a :class:`RemoteStore` (the same calls as
  :class:`initsweep.tracking.local_store.LocalStore`, which serves them in the writer); the job waits for the
  store only when it creates its run, so an unusable store is still reported before training starts;
* a :class:`RemoteRunLogger` writes each epoch to the job's local ``metrics.jsonl`` at once, as the in-process
  logger does, and posts it to the writer without waiting; the writer sends a batch to the store at most
  ``flush_every_s`` (1 s) after a metric arrived, so the trainer never waits on a store transaction. Params,
  tags and artifacts are posted too, and served in order while no other request waits; creating a run
  is served at once, ahead of them (a sweep's next job does not wait for the previous one's tail);
  :meth:`RemoteRunLogger.flush` and :meth:`RemoteRunLogger.end` wait for everything sent before: an ended
  run is in the store (a sweep's job, whose writer also serves the sweep's summary, reads the end's reply
  later);
* the run's figures (:mod:`initsweep.report.drawing`) are drawn by a child process of the writer at a lower priority,
  which imports matplotlib while the job trains; the writer logs the PNGs once drawn (the job, and the next
  one, go on meanwhile);
* the writer (:mod:`initsweep.writer.server`) ignores SIGINT and SIGTERM (the trainer closes its runs
  KILLED, through the writer) and exits when the trainer closes the pipe; a trainer that dies first (SIGKILL)
  leaves its runs to the writer, which sends every metric it received and those of the job's
  ``metrics.jsonl`` and closes them ``KILLED``, ``failure=lost`` (:func:`initsweep.tracking.recovery.settle`, as any
  later process would).
"""

from __future__ import annotations

import atexit
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from initsweep.diagnostics.layer_table import layer_record
from initsweep.protocol import Failure, TrackingError
from initsweep.tracking.metrics_file import MetricsFile
from initsweep.tracking.processes import cpu_seconds, identity
from initsweep.tracking.run_logger import RunLogger
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

MODE_ENV = "INITSWEEP_TRACKING_WRITER"
_CLOSE_TIMEOUT_S = 120.0
TIMEOUT_ENV = "INITSWEEP_WRITER_TIMEOUT_S"
_TIMEOUT_S = float(os.environ.get(TIMEOUT_ENV, "60"))  # see TrackingWriter
_TAKEOVERS = 3
_writer: TrackingWriter | None = None
_store_ids = itertools.count(1)  # names this process's stores in its writer


def wanted() -> bool:
    """Whether this process's jobs use the writer: ``$INITSWEEP_TRACKING_WRITER`` 1/0, or (``auto``) when it
    already runs or MLflow is not imported here yet (a shared study's process opens its parent run itself, with
    its own client)."""
    mode = os.environ.get(MODE_ENV, "auto").strip().lower()
    if mode in ("0", "false", "no", "off"):
        return False
    return mode in ("1", "true", "yes", "on") or _writer is not None or "mlflow" not in sys.modules


def prestart() -> None:
    """Start the writer now, before torch is imported, when this process's jobs will use it."""
    if wanted():
        writer()


def writer() -> TrackingWriter:
    """This process's writer, started on first use (a writer that dies is replaced by the next request)."""
    global _writer
    if _writer is None or _writer.closed:
        _writer = TrackingWriter()
        atexit.register(_writer.close)
    return _writer


def current() -> TrackingWriter | None:
    """This process's writer, if it was started and not closed."""
    return _writer if _writer is not None and not _writer.closed else None


def store_side(w: TrackingWriter | None, function: Callable[..., Any], *args: Any, wait: bool = True) -> Any:
    """``function(*args)``, a function of :mod:`initsweep.writer.sweep_runs`: in the writer ``w``, which has MLflow
    imported and the store open, or in this process when ``w`` is None. Without ``wait``, the writer serves it
    after what was sent before while this process goes on; a failure is then printed as a warning once its
    reply is read."""
    if w is None:
        return function(*args)
    if wait:
        return w.value(w.run_function(function, *args))

    def warn(ok: bool, value: Any) -> None:
        if not ok:
            print(f"initsweep: warning: {function.__name__} failed in the tracking writer: {value}", file=sys.stderr)

    w.request_later(warn, CallStoreSide(function, args))
    return None


def warm(uri: str) -> None:
    """Let the writer connect to an existing store now (a new one is created only by :func:`open_store`, once
    the job's config is known to be valid)."""
    if wanted():
        writer().post(Warm(uri))


def open_store(uri: str, experiment: str, experiment_id: str | None = None, reap: bool = False) -> Any:
    """The job's store: a :class:`RemoteStore` when the writer is :func:`wanted`, else a ``LocalStore``."""
    if wanted():
        return RemoteStore(writer(), uri, experiment, experiment_id, reap)
    from initsweep.tracking.local_store import LocalStore

    return LocalStore(uri, experiment, experiment_id, reap)


class TrackingWriter:
    """The writer process and the two pipes to it: requests ``(id or None, request, later)``
    (:mod:`initsweep.writer.requests`), replies ``(id, ok, value or error message)``. A request without id
    (:meth:`post`) gets no reply; see :meth:`initsweep.writer.server.Server.loop` for the order the writer
    serves them in.

    A writer that dies (SIGKILL, the OOM killer) or stalls (stopped, hung: this process waits on it for
    ``$INITSWEEP_WRITER_TIMEOUT_S`` seconds, default 60, while it uses no CPU; it is then killed) is replaced
    (:meth:`_take_over`): a new writer reopens the stores, adopts the runs whose end was not confirmed (their
    job's ``metrics.jsonl`` gives it every epoch the dead one did not store) and gets again the requests whose
    reply did not come. Training goes on; one ``initsweep:`` line says so. After 3 replacements the next
    request fails with TrackingError (the run then ends FAILED, ``failure=tracking``, its metrics kept locally)."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._replies: dict[int, tuple[bool, Any]] = {}
        self._later: dict[int, Callable[[bool, Any], None]] = {}  # request id -> what to do with its reply
        self._waiting: dict[int, tuple[Request, bool]] = {}  # sent, reply not read: sent again to a new writer
        self._stores: dict[int, OpenStore] = {}  # reopened by a new writer
        self.runs: dict[str, RemoteRunLogger] = {}  # runs whose end is not confirmed: a new writer adopts them
        self.sweep_run_id: str | None = None  # the parent run of the sweep this writer serves to its end
        self.refused: list[str] = []  # names of runs whose end the store refused, learnt from later replies
        self.takeovers = 0
        self._waiting_since = 0.0  # monotonic time this process began to wait on the writer (0: not waiting)
        self._stalled = False
        self._start()
        threading.Thread(target=self._watch, name="initsweep-writer-watch", daemon=True).start()

    def _start(self) -> None:
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH")])
        )
        code = "from initsweep.writer.server import serve; serve()"
        argv = [sys.executable, "-c", code, str(req_r), str(rep_w)]
        # Started with Ctrl-C and SIGTERM blocked (the mask survives exec), so a Ctrl-C of the process group
        # while it imports cannot interrupt it before serve() ignores both; here they stay pending, not lost.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, IGNORED_SIGNALS)
        try:
            self.proc = subprocess.Popen(argv, pass_fds=(req_r, rep_w), stdin=subprocess.DEVNULL, env=env)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(req_r)
        os.close(rep_w)
        self._out, self._in = Connection(req_w, readable=False), Connection(rep_r, writable=False)
        self._stalled = False

    @property
    def closed(self) -> bool:
        return self._out.closed

    def _watch(self) -> None:
        """Kill the writer when this process has waited on it for the timeout while it used no CPU."""
        last: tuple[float, float | None, float] | None = None  # (waiting since, writer's CPU s, seen at)
        while not self.closed:
            time.sleep(min(1.0, _TIMEOUT_S / 4))
            since = self._waiting_since
            if not since:
                last = None
                continue
            cpu = cpu_seconds(self.proc.pid)
            if last is None or last[:2] != (since, cpu):
                last = (since, cpu, time.monotonic())
            elif time.monotonic() - last[2] >= _TIMEOUT_S:
                self._stalled = True
                self.proc.kill()  # the wait fails at once; a new writer takes over

    def _take_over(self) -> None:
        """Replace a writer that died or stalled (see the class docstring); TrackingError after 3 times."""
        while True:
            old = self.proc
            old.kill()
            old.wait()
            what = f"answered nothing for {_TIMEOUT_S:g} s" if self._stalled else f"died (exit status {old.returncode})"
            for end in (self._out, self._in):
                end.close()
            self.takeovers += 1
            if self.takeovers > _TAKEOVERS:
                raise TrackingError(f"the tracking writer process {old.pid} {what}, the {_TAKEOVERS + 1}th to fail")
            self._start()
            print(
                f"initsweep: the tracking writer process {old.pid} {what}; process {self.proc.pid} took over its "
                f"{len(self.runs)} open run(s), training goes on",
                file=sys.stderr,
            )
            again: list[tuple[int | None, Request, bool]] = [
                (None, replace(store, reap=False), False) for store in self._stores.values()
            ]
            again += [(None, run.adoption(), False) for run in self.runs.values()]
            again += [(rid, request, later) for rid, (request, later) in self._waiting.items()]
            try:
                for message in again:
                    self._out.send(message)
                return
            except OSError:
                continue

    def post(self, request: Request) -> None:
        """Send a request and go on."""
        self._send((None, request, True))

    def request(self, request: Request, later: bool = False) -> int:
        """Send a request whose reply :meth:`result` waits for; returns its id."""
        rid = next(self._ids)
        self._send((rid, request, later))
        self._waiting[rid] = (request, later)
        if isinstance(request, OpenStore):
            self._stores[request.sid] = request
        return rid

    def request_later(self, then: Callable[[bool, Any], None], request: Request) -> None:
        """Send a request and go on; ``then(ok, value)`` handles its reply when a later wait reads it, at the
        latest in :meth:`close`."""
        self._later[self.request(request, later=True)] = then

    def result(self, rid: int) -> Any:
        """The reply to request ``rid``: its value, or TrackingError with the writer's message."""
        while rid not in self._replies:
            self._receive()
        ok, value = self._replies.pop(rid)
        if not ok:
            raise TrackingError(value)
        return value

    def _receive(self) -> None:
        while True:
            self._waiting_since = time.monotonic()
            try:
                got, ok, value = self._in.recv()
                break
            except (EOFError, OSError):
                self._take_over()
            finally:
                self._waiting_since = 0.0
        self._waiting.pop(got, None)
        if got in self._later:
            self._later.pop(got)(ok, value)
        else:
            self._replies[got] = (ok, value)

    def call(self, request: Request) -> Any:
        return self.result(self.request(request))

    def run_function(self, function: Callable[..., Any], *args: Any) -> int:
        """Start ``function(*args)`` of the store side in the writer; :meth:`value` gets its result."""
        return self.request(CallStoreSide(function, args))

    def value(self, rid: int) -> Any:
        """:meth:`result`, with a run logger the function returned as a :class:`RemoteRunLogger`."""
        got = self.result(rid)
        if isinstance(got, RunHandle):
            return RemoteRunLogger(self, got.run_id, got.run_name, got.experiment_id, got.tracking_uri)
        return got

    def _send(self, message: tuple[int | None, Request, bool]) -> None:
        while True:
            self._waiting_since = time.monotonic()  # a full pipe to a stopped writer blocks
            try:
                self._out.send(message)
                return
            except OSError:  # BrokenPipeError: it died
                self._take_over()
            finally:
                self._waiting_since = 0.0

    def close(self) -> None:
        """Let the writer finish what it was sent and exit (killed once it stalls, or after 120 s)."""
        if self._out.closed:
            return
        try:
            while self._later:
                self._receive()
        except TrackingError as e:
            print(f"initsweep: {e}", file=sys.stderr)
        try:
            self._out.send((None, Close(), False))
        except OSError:
            pass
        self._waiting_since = time.monotonic()
        try:
            self.proc.wait(timeout=_CLOSE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._waiting_since = 0.0
        self._out.close()
        self._in.close()


class RemoteStore:
    """:class:`initsweep.tracking.local_store.LocalStore`'s calls, served by the writer; opening starts at once."""

    def __init__(self, w: TrackingWriter, uri: str, experiment: str, experiment_id: str | None, reap: bool) -> None:
        self.writer, self.tracking_uri = w, uri
        self.id = next(_store_ids)
        self._opening: int | None = w.request(OpenStore(self.id, uri, experiment, experiment_id, reap))
        self._experiment_id: str | None = None

    def ready(self) -> str:
        if self._opening is not None:
            self._experiment_id, self._opening = self.writer.result(self._opening), None
        assert self._experiment_id is not None
        return self._experiment_id

    def start_run(
        self,
        name: str,
        tags: Mapping[str, Any],
        parent_run_id: str | None = None,
        who: Mapping[str, str] | None = None,
        resume_run_id: str | None = None,
    ) -> RemoteRunLogger:
        exp_id = self.ready()
        tags = {k: str(v) for k, v in tags.items()}
        request = StartRun(self.id, name, tags, parent_run_id, dict(who or identity()), resume_run_id)
        run_id, run_name = self.writer.call(request)
        logger = RemoteRunLogger(self.writer, run_id, run_name, exp_id, self.tracking_uri)
        logger.end_later = parent_run_id is not None and parent_run_id == self.writer.sweep_run_id
        return logger

    def start_monitor(self, run_id: str, interval_s: float, enabled: bool) -> None:
        if enabled:
            self.writer.post(StartMonitor(self.id, run_id, interval_s, enabled))

    def stop_monitor(self, run_id: str) -> None:
        self.writer.post(StopMonitor(self.id, run_id))


class RemoteRunLogger:
    """The :class:`~initsweep.tracking.run_logger.RunLogger` of a run the writer holds (see the module docstring)."""

    def __init__(
        self, w: TrackingWriter, run_id: str, run_name: str, experiment_id: str | None, tracking_uri: str
    ) -> None:
        self.writer, self.run_id, self.run_name, self.experiment_id = w, run_id, run_name, experiment_id
        self.tracking_uri = tracking_uri
        self.latest: dict[str, float] = {}
        self.local: MetricsFile | None = None
        self.broken: str | None = None
        self.ended = False
        self.end_later = False  # see end
        self.on_end: Callable[[RunLogger, str], None] | None = None  # called once the run is closed
        w.runs[run_id] = self  # until its end is confirmed

    def adoption(self) -> Adopt:
        """What a new writer needs to hold this run (see :class:`TrackingWriter`)."""
        local = str(self.local.path) if self.local is not None else None
        return Adopt(self.run_id, self.run_name, self.experiment_id, self.tracking_uri, local)

    def _post(self, method: str, *args: Any) -> None:
        self.writer.post(RunCall(self.run_id, method, args))

    def _call(self, method: str, *args: Any) -> Any:
        return self.writer.call(RunCall(self.run_id, method, args))

    def keep_local(self, path: Path) -> Path:
        self.local = MetricsFile(path, self.run_id, self.tracking_uri)
        return path

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        ts = int(time.time() * 1000)
        values = {k: float(v) for k, v in metrics.items()}
        if self.local is not None:
            self.local.metrics(values, step, ts)
        self.latest.update(values)
        self._post("log_metrics", values, step, ts)

    def log_layers(self, metrics: Mapping[str, float], step: int) -> None:
        scalars, table, artifact_file = layer_record(metrics, step)
        if table is not None:
            self._post("log_dict", table, artifact_file)
        self.log_metrics(scalars, step)

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._post("log_params", {k: str(v) for k, v in params.items()})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._post("set_tags", {k: str(v) for k, v in tags.items()})

    def log_text(self, text: str, artifact_file: str) -> None:
        self._post("log_text", text, artifact_file)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Posted: a caller that deletes the file afterwards calls :meth:`flush` first."""
        self._post("log_artifact", str(path), artifact_path)

    def move_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Posted: the writer logs the file, then removes it and its directory if that is left empty."""
        self._post("move_artifact", str(path), artifact_path)

    def prepare_figures(self) -> None:
        """Posted: the writer's drawing process imports matplotlib for the figures to come."""
        self.writer.post(PrepareFigures())

    def draw_figures(self, args: tuple) -> None:
        """Posted: the writer's drawing process draws :func:`initsweep.report.drawing.draw`'s PNGs, the writer logs them
        to the run (after it ended, when the job ends first; before the report and before it exits)."""
        self.writer.post(DrawFigures(self.run_id, args))

    def flush(self) -> None:
        self._call("flush")

    def end(self, status: str = "FINISHED") -> None:
        """Close the run once everything sent is in the store; TrackingError (the run FAILED) if refused.

        A job of the sweep whose parent run this writer holds (``end_later``) does not wait: the next job
        starts while the writer closes the run, and the reply is handled when a later wait reads it, before the
        sweep's summary at the latest (the writer serves requests in order). The job's closing line is said
        now; the local file gets the verdict with the reply. A refusal closes the run FAILED as here, is said,
        and joins the writer's ``refused`` runs, which fail the sweep."""
        if self.ended:
            return
        if self.end_later:
            self.ended = True
            self.writer.request_later(
                lambda ok, value: self._end_replied(status, ok, value), RunCall(self.run_id, "end", (status,))
            )
            self._announce(status)
            return
        try:
            self._call("end", status)
        except TrackingError as e:
            self._record_end("FAILED", self._kept(e))
            self._announce("FAILED")
            raise TrackingError(self.broken) from None
        self._record_end(status)
        self._announce(status)

    def _end_replied(self, status: str, ok: bool, value: Any) -> None:
        if ok:
            self._record_end(status)
            return
        self._record_end("FAILED", self._kept(value))
        self.writer.refused.append(self.run_name)
        print(f"initsweep: run {self.run_id} FAILED: {self.broken}", file=sys.stderr)

    def fail_tracking(self, reason: str) -> None:
        if self.ended:
            return
        try:
            self._call("fail_tracking", reason)
        except TrackingError:
            pass  # the local file has the verdict
        self._record_end("FAILED", reason)
        self._announce("FAILED")

    def _kept(self, error: Any) -> str:
        return f"{error}, kept in {self.local.path}" if self.local is not None and not self.local.error else str(error)

    def _record_end(self, status: str, failure: str | None = None) -> None:
        self.ended, self.broken = True, failure
        self.writer.runs.pop(self.run_id, None)
        if self.local is not None:
            self.local.end(status, *((Failure.TRACKING.value, failure[:2000]) if failure else ()))

    def _announce(self, status: str) -> None:
        if self.on_end is not None:
            self.on_end(self, status)
