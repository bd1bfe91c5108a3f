"""The tracking store: every MLflow call (``client``), a job's store in its process (``local_store``), the local
metrics file each job appends to (``metrics_file``), recovery of runs whose process died, checkpoints, locks
and process identity, and opening stores that other clients may be creating (``store_races``).

May import: :mod:`initsweep.diagnostics`, :mod:`initsweep.core` and below. A new kind of store (URI scheme,
driver, creation rule) goes here.
"""
