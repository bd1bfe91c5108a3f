"""The ``initsweep`` command (also ``python -m initsweep`` and the clone's ``python train.py``): the startup
sequence around Hydra's entry point, in one place.

``initsweep [overrides]`` trains one job; ``initsweep -m ...`` sweeps. Before Hydra starts, the command line is
checked (:mod:`initsweep.cli.precheck`): a config error is one ``initsweep:`` line, exit 2, and leaves no
output directory behind. The config groups are the package's own (``initsweep/conf``); a user's directory
joins with ``--config-dir DIR`` (searched first: its options replace the package's of the same name) or
``hydra.searchpath=[file://DIR]`` (searched after them) (docs/projects.md).

Import-light: this module loads Hydra and OmegaConf only, so ``--help`` and ``--cfg job`` answer quickly;
torch and MLflow load inside the task function, when a job runs.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import hydra
from omegaconf import DictConfig

# The package's config groups (shipped as package data; conf/ at the top of the clone links here). An absolute
# path: Hydra reads it as a file:// source, whichever entry point or install layout runs this module.
CONFIG_DIR = Path(__file__).resolve().parents[1] / "conf"
CONFIG_NAME = "config"


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name=CONFIG_NAME)
def task(cfg: DictConfig) -> float | list[float]:
    """Hydra's task function: one job (see :func:`initsweep.cli.entry.run`); returns its optimized metric."""
    from initsweep.cli.entry import run  # lazy: torch and MLflow load only when a job runs

    return run(cfg)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run the command with ``argv`` (default: ``sys.argv[1:]``) and end the process with its exit status:
    0, 2 for a config error, 130 after Ctrl-C (or SIGTERM) at any moment, Hydra's own status otherwise."""
    from initsweep.cli import INTERRUPTED
    from initsweep.tracking.fastexit import exit_now

    try:
        _start(argv)
        task()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM of a sweep's main process: exit handlers close its runs
        print("initsweep: interrupted; the running runs are marked KILLED", file=sys.stderr)
        exit_now(INTERRUPTED)
    except SystemExit as e:
        exit_now(e.code)
    exit_now(0)  # no interpreter teardown: about 1.2 s saved per process (src/initsweep/tracking/fastexit.py)


def _start(argv: Sequence[str] | None) -> None:
    """Everything before Hydra's entry point: argv, warnings, config dirs and the command-line check."""
    import warnings

    if argv is not None:
        sys.argv[1:] = list(argv)  # hydra.main reads sys.argv itself
    # conf/hydra/launcher/joblib.yaml extends the joblib launcher's own config of the same name on purpose.
    warnings.filterwarnings("ignore", message=r"(?s).*automatic_schema_matching")
    from initsweep._compat.hydra import share_group_listings
    from initsweep.cli.precheck import check_command_line, take_config_dirs
    from initsweep.report.console import quiet_libraries

    quiet_libraries()
    share_group_listings()  # --help and the check below list every config group: one repository copy, not 100
    # A user's config dirs come first (hydra_plugins/initsweep_searchpath).
    sys.argv[1:] = take_config_dirs(sys.argv[1:])
    check_command_line(sys.argv[1:], CONFIG_DIR, CONFIG_NAME, task_module=task.__module__)
