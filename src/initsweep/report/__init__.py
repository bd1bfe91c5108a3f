"""What a researcher reads: the comparison report of a sweep or an experiment (``comparison``), its figures
(``plots``, drawn in a background process by ``drawing``), and the console lines of jobs and sweeps.

May import: :mod:`initsweep.tracking` and below.
"""
