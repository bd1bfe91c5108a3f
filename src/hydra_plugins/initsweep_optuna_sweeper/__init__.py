"""initsweep's Hydra sweeper on modern Optuna: ``python train.py -m hparams_search=normal_std``.

Hydra finds the plugin by scanning the ``hydra_plugins`` namespace package; the sweeper's config is
registered in Hydra's ConfigStore as ``hydra/sweeper=initsweep_optuna`` (see ``config.py``).
"""
