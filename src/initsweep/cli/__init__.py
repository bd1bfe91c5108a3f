"""The command line: the Hydra task function (``entry``) and the check of the command line that runs before
Hydra starts (``precheck``). The top of the package: nothing in initsweep imports it.
"""
