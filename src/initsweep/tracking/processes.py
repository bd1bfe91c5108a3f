"""This process's children and how a sweep's main process passes a SIGTERM on to them (Linux /proc).

Kept free of MLflow and torch: the sweep callback installs the handler before either is imported.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any


def children(pid: int) -> list[int]:
    """Pids of the direct children of ``pid`` (Linux /proc; none elsewhere)."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            out += [int(p) for p in task.read_text().split()]
        except OSError:
            continue
    return out


def terminate_as_interrupt() -> None:
    """In the sweep's main process: SIGTERM stops the sweep as Ctrl-C does (KeyboardInterrupt, so that
    launchers stop their workers and exit handlers close the runs), after passing it on to this process's
    children (joblib workers), whose jobs then close their own runs KILLED."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):
        return

    def _on_term(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once
        for pid in children(os.getpid()):
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _on_term)
