"""Who runs a process (host, pid, start time), whether it still runs, its children (all through psutil),
and SIGTERM as Ctrl-C, passed on to the children by a sweep's main process.

Kept free of MLflow and torch: the sweep callback installs the handler before either is imported.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import psutil


def start_time(pid: int) -> float:
    """When process ``pid`` started, s since the epoch to 0.01 s (psutil.NoSuchProcess when there is none)."""
    return round(psutil.Process(pid).create_time(), 2)


def identity() -> dict[str, str]:
    """This process as MLflow tags hold it: host name, pid and start time (so that a reused pid is not
    taken for it)."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": str(pid), "pid_start": f"{start_time(pid):.2f}"}


def _seconds(start: float | str) -> float:
    """A stored start time in s since the epoch. An integer string is what runs tagged before psutil was
    used hold: clock ticks after boot (/proc/<pid>/stat field 22)."""
    if isinstance(start, str) and start.isdigit():
        return psutil.boot_time() + int(start) / os.sysconf("SC_CLK_TCK")
    return float(start)


def alive(pid: int | str, start: float | str | None = None) -> bool:
    """Whether process ``pid`` of this host still runs (a zombie does not) and is the one that started at
    ``start`` (within 1 s, the wall clock may be adjusted; None or "": unknown, not compared)."""
    try:
        proc = psutil.Process(int(pid))
        if proc.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return False
        return start is None or start == "" or abs(proc.create_time() - _seconds(start)) < 1.0
    except (psutil.NoSuchProcess, ValueError):
        return False
    except psutil.AccessDenied:
        return True  # exists, and cannot be looked at


def children(pid: int) -> list[int]:
    """Pids of the direct children of ``pid`` (none when it is gone)."""
    try:
        return [child.pid for child in psutil.Process(pid).children()]
    except psutil.NoSuchProcess:
        return []


def terminate_as_interrupt(pass_on: bool = False) -> None:
    """SIGTERM stops this process as Ctrl-C does (KeyboardInterrupt, so that a job, or a sweep's launchers and
    exit handlers, close the runs). With ``pass_on`` (a sweep's main process) it is first passed on, once, to
    this process's children (joblib workers), whose jobs then close their own runs KILLED. Only from the
    main thread, and only over SIGTERM's default handler."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):
        return

    def _on_term(signum: int, frame: Any) -> None:
        if pass_on:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once
            for pid in children(os.getpid()):
                try:
                    os.kill(pid, signal.SIGTERM)
                except OSError:
                    pass
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _on_term)


# What a resumable job's training takes as "stop and checkpoint": Ctrl-C, SIGTERM, and SIGUSR2 (SLURM's and
# submitit's warning before a time limit or preemption).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)


@contextlib.contextmanager
def deferred_interrupts(signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> Iterator[Callable[[], bool]]:
    """While active, the first of ``signals`` only sets a flag, whose reader this yields (training checks it
    after each step, saves its state and stops); a second one interrupts at once (KeyboardInterrupt). Main
    thread only; a signal that is ignored (SIG_IGN) or handled by someone else (SIGUSR2 under submitit) is
    left alone. The previous handlers come back on exit."""
    hit = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield hit.is_set
        return

    def on_signal(signum: int, frame: Any) -> None:
        if hit.is_set():
            raise KeyboardInterrupt(f"signal {signum}")
        hit.set()

    previous = {s: signal.getsignal(s) for s in signals}
    mine = [
        s for s, h in previous.items() if h is not signal.SIG_IGN and not (s == signal.SIGUSR2 and h != signal.SIG_DFL)
    ]
    for s in mine:
        signal.signal(s, on_signal)
    try:
        yield hit.is_set
    finally:
        for s in mine:
            signal.signal(s, previous[s])


def import_uninterrupted(module: str) -> ModuleType:
    """``importlib.import_module(module)`` with the first Ctrl-C or SIGTERM deferred until it is done, then
    raised as KeyboardInterrupt. For torch: an interrupt inside its C++ initialization aborts the process
    (pybind11's terminate, exit -6) or leaves numpy half-imported (torch catches the error of its own import)."""
    with deferred_interrupts() as stopped:
        imported = importlib.import_module(module)
    if stopped():
        raise KeyboardInterrupt(f"interrupted while importing {module}")
    return imported


def cpu_seconds(pid: int) -> float | None:
    """The CPU time process ``pid`` has used so far (user + system, its own threads), None when it is gone."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return times.user + times.system
