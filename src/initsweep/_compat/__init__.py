"""Every private name of another library that initsweep uses, in one place.

One module per library (``hydra``, ``optuna``, ``submitit``, ``stdlib``), each naming the versions it was
checked against; ``tests/test_compat.py`` fails loudly when one of these internals moves. No other module of
initsweep may import a private name of hydra, optuna, mlflow, submitit or the standard library
(``tests/test_architecture.py`` greps for it). Imports nothing from initsweep.
"""
