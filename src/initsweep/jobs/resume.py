"""A job's resume point: ``resume.pt`` in its output dir, written every ``trainer.checkpoint_every`` epochs and
when the job is interrupted, read when the same job runs again in the same dir, or when a study's retried trial
runs in a dir of its own (:func:`adopt` brings the dead attempt's point there).

It holds the training state (:class:`initsweep.core.trainer.TrainState`), the run it belongs to, a digest of
the job's config (another config in the same dir starts afresh), the evaluated history (the summary needs
every epoch), the val loss and accuracy before training and the diagnostics snapshots (the figures). Written
atomically: a temporary file in the same dir, then renamed over the old one, so a kill at any moment leaves
the previous point or the new one. Loaded with ``weights_only`` (tensors, numbers, strings, lists, dicts).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from initsweep.core.trainer import EpochMetrics, TrainState
from initsweep.diagnostics.signal import Diagnostics
from initsweep.protocol import RESUME_FILE
from initsweep.tracking import metrics_file as ledger

FILE_NAME = RESUME_FILE


def config_digest(raw: Mapping[str, Any]) -> str:
    """SHA-256 of the resolved config (keys sorted): a resume point applies to this very config only."""
    return hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class ResumePoint:
    """Everything a job needs to go on where it stopped (see the module docstring)."""

    run_id: str
    digest: str
    train: TrainState
    history: list[EpochMetrics]
    initial_val: tuple[float, float]
    snapshots: list[tuple[int, Diagnostics]]

    def save(self, path: Path) -> str | None:
        """Write atomically to ``path`` (a temporary file beside it, then a rename). Returns None, or why the
        disk refused it (full: torch reports ENOSPC as a RuntimeError), leaving ``path`` as it was and no
        temporary file: a checkpoint that cannot be written never costs the training."""
        payload = {
            "run_id": self.run_id,
            "digest": self.digest,
            "train": dataclasses.asdict(self.train),
            "history": [dataclasses.asdict(e) for e in self.history],
            "initial_val": list(self.initial_val),
            "snapshots": [[epoch, dataclasses.asdict(d)] for epoch, d in self.snapshots],
        }
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            torch.save(payload, tmp)
            os.replace(tmp, path)
        except (OSError, RuntimeError) as e:
            tmp.unlink(missing_ok=True)
            return " ".join(str(e).split())[:200]
        return None


def load(path: Path, digest: str) -> ResumePoint | None:
    """The resume point at ``path`` when there is one for this config (``digest``), else None; a damaged file
    or another config's is set aside with one line on stderr and training starts afresh."""
    if not path.exists():
        return None
    try:
        p = torch.load(path, weights_only=True)
        point = ResumePoint(
            run_id=p["run_id"],
            digest=p["digest"],
            train=TrainState(**p["train"]),
            history=[EpochMetrics(**e) for e in p["history"]],
            initial_val=(float(p["initial_val"][0]), float(p["initial_val"][1])),
            snapshots=[(int(epoch), Diagnostics(**d)) for epoch, d in p["snapshots"]],
        )
    except Exception as e:  # noqa: BLE001 - any damage: a fresh start, never a crash
        print(f"initsweep: {path} cannot be read ({type(e).__name__}: {e}); starting afresh", file=sys.stderr)
        discard(path)
        return None
    if point.digest != digest:
        print(f"initsweep: {path} belongs to another config; starting a new run", file=sys.stderr)
        discard(path)
        return None
    return point


def discard(path: Path | None) -> None:
    """Remove a resume point (the run it belongs to ended, or it cannot be used)."""
    if path is not None:
        path.unlink(missing_ok=True)


def adopt(earlier: Path, here: Path) -> bool:
    """Bring an earlier attempt's resume point from its output dir ``earlier`` into ``here`` (a study's trial
    retried in a new job dir): its metrics file is copied (the epochs it logged are not logged again), then its
    ``resume.pt`` moved; each lands atomically. Nothing when ``here`` has a resume point of its own or
    ``earlier`` has none. Returns whether one was brought."""
    source = earlier / FILE_NAME
    if (here / FILE_NAME).exists() or not source.exists() or earlier.resolve() == here.resolve():
        return False
    here.mkdir(parents=True, exist_ok=True)
    for name in (ledger.FILE_NAME, FILE_NAME):  # the point last: wherever it is, its metrics file is there
        if (earlier / name).exists():
            tmp = here / f".{name}.{os.getpid()}.tmp"
            shutil.copyfile(earlier / name, tmp)
            os.replace(tmp, here / name)
    discard(source)
    return True
