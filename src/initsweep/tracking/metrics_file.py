"""A job's local, append-only record of its metrics (``metrics.jsonl`` in the job's output dir).

The store gets a job's metrics in batches (about once a second, see :class:`initsweep.tracking.client.RunLogger`);
this file gets every epoch at once, so a process killed at any moment loses at most the epoch in progress,
and a store that stops accepting writes loses nothing measured. One line per event, JSON:

* ``{"run_id": ..., "tracking_uri": ...}`` first;
* ``{"s": step, "t": ms since epoch, "m": {key: value}}`` per ``log_metrics`` call;
* ``{"flushed": n}`` after the first ``n`` metric lines reached the store;
* ``{"end": status, "failure": why}`` when the job closed its run (or could not).

Cost per epoch: one ``json.dumps`` and one ``write`` + ``flush`` to the page cache (no ``fsync``): it
survives the death of the process, not of the machine. This module imports nothing from the project's
tracking side; :mod:`initsweep.tracking.recovery` reads the file back.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from initsweep.protocol import redact

FILE_NAME = "metrics.jsonl"


_WATCHED: dict[Path, int] = {}  # file -> its inode when first seen


def watch_file(path: Path) -> None:
    """Remember which file ``path`` is now (its inode), for :func:`file_changed`."""
    if path.exists():
        _WATCHED.setdefault(path, path.stat().st_ino)


def file_changed(path: Path) -> str | None:
    """ "removed" or "replaced" when ``path`` is no longer the file :func:`watch_file` saw, else None."""
    if path not in _WATCHED:
        return None
    try:
        return None if path.stat().st_ino == _WATCHED[path] else "replaced"
    except OSError:
        return "removed"


def _finite(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)  # JSON has no NaN/inf: "nan", "inf", "-inf"


class MetricsFile:
    """Appends a run's events to ``path`` (see the module docstring). Write errors are remembered, not raised:
    the store is the primary record and the file the fallback."""

    def __init__(self, path: Path, run_id: str, tracking_uri: str):
        self.path = Path(path)
        self.lines = 0  # metric lines written
        self.error: str | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f: Any = self.path.open("a", encoding="utf-8")
        except OSError as e:
            self._f, self.error = None, str(e)
        self._write({"run_id": run_id, "tracking_uri": redact(tracking_uri)})  # for people: never read back

    def _write(self, event: Mapping[str, Any]) -> None:
        if self._f is None:
            return
        try:
            self._f.write(json.dumps(event, separators=(",", ":")) + "\n")
            self._f.flush()
        except (OSError, ValueError) as e:
            self.error = str(e)

    def metrics(self, metrics: Mapping[str, float], step: int, ts_ms: int) -> None:
        self._write({"s": step, "t": ts_ms, "m": {k: _finite(float(v)) for k, v in metrics.items()}})
        self.lines += 1

    def flushed(self, lines: int) -> None:
        self._write({"flushed": lines})

    def end(self, status: str, failure: str | None = None, reason: str | None = None) -> None:
        self._write({"end": status, "failure": failure, "reason": reason})
        if self._f is not None:
            try:
                self._f.close()
            except OSError:
                pass
            self._f = None


@dataclass
class Record:
    """One run's part of a ``metrics.jsonl``: metric lines, how many reached the store, the end (if any), and
    the numbers of the damaged lines that were skipped (the whole file's)."""

    run_id: str | None = None
    tracking_uri: str | None = None
    metrics: list[tuple[int, int, dict[str, float]]] = field(default_factory=list)  # (step, ts ms, values)
    flushed: int = 0
    end: dict[str, Any] | None = None
    skipped: list[int] = field(default_factory=list)  # 1-based line numbers


def _apply(rec: Record, event: Any) -> Record:
    """``rec`` with one event applied, a new Record at a header; ValueError/TypeError/KeyError for an event
    that is not one of the module docstring's."""
    if not isinstance(event, dict):
        raise TypeError("not an event")
    if "run_id" in event:
        if not isinstance(event["run_id"], str):
            raise TypeError("run_id")
        return Record(event["run_id"], event.get("tracking_uri"), skipped=rec.skipped)
    if "m" in event:
        values = {str(k): float(v) for k, v in event["m"].items()}
        rec.metrics.append((int(event["s"]), int(event["t"]), values))
    elif "flushed" in event:
        rec.flushed = int(event["flushed"])
    elif "end" in event and isinstance(event["end"], str):
        rec.end = event
    else:
        raise KeyError("unknown event")
    return rec


def _parts(path: Path) -> tuple[list[Record], list[int]]:
    """Every run's part of a ``metrics.jsonl`` in file order, and the numbers of its damaged lines."""
    parts: list[Record] = []
    rec = Record()
    for number, raw in enumerate(Path(path).read_bytes().splitlines(), 1):
        try:
            event = json.loads(raw.decode("utf-8"))
            new = _apply(rec, event)
        except (ValueError, TypeError, KeyError, AttributeError):
            rec.skipped.append(number)
            continue
        if new is not rec:
            parts.append(new)
            rec = new
    return parts, rec.skipped


def last_step(path: Path, run_id: str) -> int:
    """The highest step (epoch) any part of run ``run_id`` in ``path`` logged metrics for; 0 when none (or no
    file): a resumed run skips the epochs its earlier attempts logged."""
    try:
        parts, _ = _parts(path)
    except OSError:
        return 0
    return max((step for p in parts if p.run_id == run_id for step, _, _ in p.metrics), default=0)


def read(path: Path, run_id: str | None = None) -> Record:
    """The part of a ``metrics.jsonl`` that belongs to run ``run_id`` (its last header's; the file's last run
    when None): a reused output dir holds one part per run, and only a run's own lines ever apply to it.
    Damaged lines (torn by a kill, not JSON or not UTF-8, a record of the wrong shape) are skipped and
    numbered in ``skipped``; the good ones are kept. An empty Record when no part is ``run_id``'s."""
    parts, skipped = _parts(path)
    mine = [p for p in parts if run_id is None or p.run_id == run_id]
    found = mine[-1] if mine else Record()
    found.skipped = skipped
    return found
