"""The tracking writer: a separate process that owns MLflow for a job or a sweep (``server``), the job's side of
its pipe (``client``), and the store-side steps of a sweep's and a study's life cycle (``sweep_runs``).

May import: :mod:`initsweep.report`, :mod:`initsweep.tracking` and below.
"""
