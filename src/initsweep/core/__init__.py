"""The training core: the config schema and its validation, datasets, models, the initializer catalogue and
the training loop. Plain PyTorch: knows nothing of MLflow, Optuna, Hydra's launchers or sweeps.

May import: :mod:`initsweep.protocol`, :mod:`initsweep._compat`. A new initializer goes in
``core/initializers/`` (``catalogue.py`` and its ``conf/init/*.yaml``); a new per-epoch metric in
``core/trainer.py``.
"""
