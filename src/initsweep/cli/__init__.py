"""The command line: the ``initsweep`` command and its startup sequence (``main``: also ``python -m initsweep``
and the clone's ``train.py``), the Hydra task function (``entry``) and the check of the command line that runs
before Hydra starts (``precheck``). The top of the package: nothing in initsweep imports it.
"""
