"""CPython internals (checked against CPython 3.10-3.13): the first steps of the interpreter's own exit.

``threading._shutdown`` joins non-daemon threads; ``atexit._run_exitfuncs`` runs the atexit handlers. A
process that ends with ``os._exit`` runs both first (:mod:`initsweep.tracking.fastexit`).
"""

from __future__ import annotations

import atexit
import threading


def join_threads_as_exit_does() -> None:
    """Wait for non-daemon threads, as Python's exit does first."""
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()


def run_atexit_handlers() -> None:
    """Run (and clear) the atexit handlers now."""
    atexit._run_exitfuncs()
