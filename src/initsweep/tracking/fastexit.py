"""Leave the process without the interpreter's teardown.

After its atexit handlers, a normal Python exit frees every module and object one by one. With torch, its
compiler stack (imported by the first optimizer step) and MLflow loaded, that costs about 1.2 s of CPU per
``train.py`` process and changes nothing: the process is ending. :func:`exit_now` does what matters of a
normal exit (joins non-daemon threads and runs the ``threading`` exit hooks, runs the atexit handlers:
sweep runs closed, background figures logged, multiprocessing children joined, logging flushed; flushes
stdout and stderr) and then ends the process with :func:`os._exit`. Files the project writes are closed
or flushed by then, and SQLite commits every transaction.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from initsweep._compat.stdlib import join_threads_as_exit_does, run_atexit_handlers


def exit_code(code: object) -> int:
    """The status ``sys.exit(code)`` would give: None -> 0, an int as is, anything else printed and 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def exit_now(code: object = 0) -> NoReturn:
    """End the process with ``sys.exit``'s status for ``code``, skipping only the interpreter's teardown."""
    status = exit_code(code)
    join_threads_as_exit_does()
    run_atexit_handlers()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)
