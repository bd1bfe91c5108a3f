"""Everything Optuna: the sweeper's settings and search space, the checked plan of a study, samplers and
pruners (``plan``), a trial's job side (``trial``), stale-trial recovery and the trial budget (``recovery``),
objectives, and warm-start points.

May import: :mod:`initsweep.jobs` and below. The Hydra sweeper plugin itself lives in
``hydra_plugins.initsweep_optuna_sweeper``.
"""
