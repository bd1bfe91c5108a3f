"""Entry point: `python train.py [overrides]` trains one job; `python train.py -m ...` sweeps.

Kept thin and import-light so that `--help` and `--cfg job` answer quickly; see src/initsweep/job.py.
"""

import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from initsweep.config import ConfigError
    from initsweep.job import run
    from initsweep.tuning import run_trial, trial_number_from_env

    trial = trial_number_from_env()  # set by the Optuna sweeper for each of its jobs
    if trial is not None:
        return run_trial(cfg, trial)
    try:
        return run(cfg)
    except ConfigError as e:
        print(f"initsweep: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
