"""File locks between processes: a sweep dir belongs to one live sweep, and an SQLite store is created once.

Locks are POSIX ``fcntl.flock`` locks on small files. The kernel drops a lock when its process exits, even by
SIGKILL, so a dead sweep never blocks the next one and no lock needs cleaning up.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from initsweep.protocol import LOCK_FILE

# Lock files held until the process exits (a sweep's claim on its dir), by dir.
_held: dict[Path, int] = {}
# The parents of a claimed dir that the claim created (multirun/<date>/), removed again if the sweep never starts.
_made_parents: dict[Path, list[Path]] = {}


def _missing_parents(path: Path) -> list[Path]:
    """The ancestors of ``path`` that do not exist yet, deepest first."""
    return [p for p in Path(path).absolute().parents if not p.exists()]


class SweepDirInUse(RuntimeError):
    """The sweep dir is held by another live sweep; the message names the dir and its holder."""


def _try_lock(path: Path) -> int | None:
    """An open descriptor holding an exclusive lock on ``path`` (created if absent); None if another holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _hold(directory: Path, fd: int) -> Path:
    """Keep the lock for the process's life and write who holds it."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}\n".encode(), 0)
    _held[directory] = fd
    return directory


def claim_sweep_dir(path: Path, unique: bool) -> Path:
    """Claim ``path`` for this process's sweep and return the dir claimed.

    ``unique`` (a timestamped default dir): the first of ``path``, ``path_2``, ``path_3``, ... that this process
    creates itself (``os.mkdir`` is atomic, so two sweeps started in the same second get different dirs).
    Otherwise (a dir the user chose): ``path`` itself, reused if no live sweep holds it; SweepDirInUse if one
    does.
    """
    path = Path(path)
    made = _missing_parents(path)
    if unique:
        path.parent.mkdir(parents=True, exist_ok=True)
        for n in range(1, 10_000):
            candidate = path if n == 1 else path.with_name(f"{path.name}_{n}")
            try:
                os.mkdir(candidate)
            except FileExistsError:
                continue
            fd = _try_lock(candidate / LOCK_FILE)
            if fd is not None:
                _made_parents[candidate] = made
                return _hold(candidate, fd)
        raise SweepDirInUse(f"no free sweep dir next to {path}")
    path.mkdir(parents=True, exist_ok=True)
    fd = _try_lock(path / LOCK_FILE)
    if fd is None:
        holder = (path / LOCK_FILE).read_text().strip() or "another process"
        raise SweepDirInUse(
            f"hydra.sweep.dir={path} is in use by a live sweep ({holder}); choose another dir, or leave "
            "hydra.sweep.dir unset for a new timestamped one"
        )
    _made_parents[path] = made
    return _hold(path, fd)


def abandon_sweep_dir(path: Path) -> None:
    """Give up a claim (the sweep did not start): release the lock, and remove the dir if nothing else is in it."""
    fd = _held.pop(Path(path), None)
    if fd is None:
        return
    (Path(path) / LOCK_FILE).unlink(missing_ok=True)
    os.close(fd)
    try:
        for directory in [Path(path), *_made_parents.pop(Path(path), [])]:
            directory.rmdir()
    except OSError:
        pass  # an earlier sweep's files (or another sweep's dir) are there


@contextmanager
def store_creation(db_file: Path) -> Iterator[None]:
    """Serialize the first creation of an SQLite store (MLflow's table creation races between processes).

    Opening a store that does not exist yet (or is empty) takes an exclusive lock on ``<db>.lock``; opening an
    existing one takes a shared lock, so it waits only while some process is still creating the store.
    """
    creating = not db_file.exists() or db_file.stat().st_size == 0
    fd = os.open(db_file.with_name(db_file.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if creating else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)
