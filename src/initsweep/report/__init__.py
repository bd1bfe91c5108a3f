"""What a researcher reads: the comparison report of a sweep or an experiment (``comparison``), its figures
(``plots``, drawn in a background process by ``drawing``), the console lines of jobs and sweeps, and the runs as
pandas DataFrames for notebooks (``results``: ``initsweep.results()``, ``initsweep.curves()``).

May import: :mod:`initsweep.tracking` and below.
"""
