"""A Hydra multirun: the callback that opens and closes a sweep's parent run and summarizes it (``callback``),
job configs composed once per group choice (``composition``), the launchers' helpers (``launchers``), and a
grid or list sweep resumed in its dir (``resume``).

May import: :mod:`initsweep.tuning` and below. A new launcher's helpers go in ``launchers``; the launcher
plugin itself in ``src/hydra_plugins/``.
"""
