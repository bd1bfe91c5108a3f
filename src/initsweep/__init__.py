"""initsweep: tracked hyperparameter sweeps for studying weight initialization.

``initsweep.results()`` and ``initsweep.curves()`` read the runs of an experiment or a sweep back as pandas
DataFrames (:mod:`initsweep.report.results`). They are imported on first use (PEP 562): ``import initsweep``
alone loads neither MLflow nor pandas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "curves", "results"]

if TYPE_CHECKING:
    from initsweep.report.results import curves, results

_LAZY = {"results", "curves"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from initsweep.report import results as module

        value = getattr(module, name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
