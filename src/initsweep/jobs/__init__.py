"""One Hydra job: a config validated, trained and tracked (``job``), on the device and within the memory it
asks of the machine (``devices``, ``resources``).

May import: :mod:`initsweep.writer` and below.
"""
