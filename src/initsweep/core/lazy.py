"""Deferred imports: torch costs seconds to import, and validating a config never needs it.

``torch = LazyModule("torch")`` behaves like the module for attribute access (``torch.randn``) but imports
it on first use, so a module that only *may* touch torch (the initializer catalogue, which config validation
reads) stays cheap to import. :func:`no_grad` is ``@torch.no_grad()`` without importing torch at definition.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any, TypeVar

_F = TypeVar("_F", bound=Callable[..., Any])


class LazyModule:
    """A stand-in for the module ``name`` that imports it on the first attribute access."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


def no_grad(fn: _F) -> _F:
    """Run ``fn`` under ``torch.no_grad()``, importing torch only when ``fn`` is first called."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
