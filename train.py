"""Entry point: `python train.py [overrides]` trains one job; `python train.py -m ...` sweeps.

Kept thin and import-light so that `--help` and `--cfg job` answer quickly; see src/initsweep/entry.py.
"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from initsweep.entry import run  # lazy: torch and MLflow load only when a job runs

    return run(cfg)


if __name__ == "__main__":
    main()
