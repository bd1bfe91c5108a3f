"""The command line: the ``initsweep`` command and its startup sequence (``main``: also ``python -m initsweep``
and the clone's ``train.py``), the Hydra task function (``entry``) and the check of the command line that runs
before Hydra starts (``precheck``). The top of the package: nothing in initsweep imports it.

:func:`command` is the entry point of all three: it loads the command's modules (Hydra, OmegaConf: about half a
second) under the same Ctrl-C handling as the rest of the start-up, so an early Ctrl-C is one line, exit 130.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NoReturn

INTERRUPTED = 130  # the shell's status for a process ended by SIGINT (128 + 2)


def command(argv: Sequence[str] | None = None) -> NoReturn:
    """Run the ``initsweep`` command (:func:`initsweep.cli.main.main`) with ``argv`` (default ``sys.argv[1:]``)."""
    try:
        from initsweep.cli.main import main
    except KeyboardInterrupt:
        print("initsweep: interrupted", file=sys.stderr)
        raise SystemExit(INTERRUPTED) from None
    main(argv)
