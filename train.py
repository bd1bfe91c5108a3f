"""Entry point: `python train.py [overrides]` trains one job; `python train.py -m ...` sweeps.

Kept thin and import-light so that `--help` and `--cfg job` answer quickly; see src/initsweep/job.py.
"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from initsweep.job import run

    return run(cfg)


if __name__ == "__main__":
    main()
