"""initsweep: tracked hyperparameter sweeps for studying weight initialization."""

__version__ = "0.1.0"
