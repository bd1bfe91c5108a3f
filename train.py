"""Entry point: `python train.py [overrides]` trains one job; `python train.py -m ...` sweeps.

Kept thin and import-light so that `--help` and `--cfg job` answer quickly; see src/initsweep/cli/entry.py.
The command line is checked before Hydra starts (src/initsweep/cli/precheck.py): a config error is one
`initsweep:` line, exit 2, and leaves no output directory behind.
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

CONFIG_DIR = Path(__file__).resolve().parent / "conf"


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from initsweep.cli.entry import run  # lazy: torch and MLflow load only when a job runs

    return run(cfg)


if __name__ == "__main__":
    import warnings

    # conf/hydra/launcher/joblib.yaml extends the joblib launcher's own config of the same name on purpose.
    warnings.filterwarnings("ignore", message=r"(?s).*automatic_schema_matching")
    from initsweep._compat.hydra import share_group_listings
    from initsweep.cli.precheck import check_command_line
    from initsweep.report.console import quiet_libraries

    quiet_libraries()
    share_group_listings()  # --help and the check below list every config group: one repository copy, not 100
    check_command_line(sys.argv[1:], CONFIG_DIR)
    from initsweep.tracking.fastexit import exit_now

    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM of a sweep's main process: exit handlers close its runs
        print("initsweep: interrupted; the running runs are marked KILLED", file=sys.stderr)
        exit_now(130)
    except SystemExit as e:
        exit_now(e.code)
    exit_now(0)  # no interpreter teardown: about 1.2 s saved per process (src/initsweep/tracking/fastexit.py)
