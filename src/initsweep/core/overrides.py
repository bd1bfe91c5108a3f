"""Hydra command-line overrides compared by meaning, not by text.

Hydra re-renders a sweep job's overrides (``tracking.log_plots=false`` becomes ``tracking.log_plots=False``),
so the overrides shared by a whole sweep must be recognised by key and parsed value to be left out of run
names. Pure functions: the job, the sweep callback and the report can all call them.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=4096)
def _identity(line: str) -> tuple[str, str, Any] | None:
    """(prefix, key, parsed value) of one override; None when Hydra's grammar cannot parse it. Cached: Hydra's
    parser takes about 2 ms an override, and a sweep's jobs compare the same fixed overrides again and again."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        o = OverridesParser.create().parse_override(line)
    except HydraException:
        return None
    prefix = {"ADD": "+", "FORCE_ADD": "++", "DEL": "~"}.get(o.type.name, "")
    value = o.value()
    return prefix, o.get_key_element(), _canonical(value)


def _canonical(value: Any) -> Any:
    """A hashable form in which equal values compare equal (1 == 1.0, lists as tuples, dicts sorted)."""
    if isinstance(value, dict):
        return tuple(sorted((str(k), _canonical(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_canonical(v) for v in value)
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    return str(value)  # sweeps and other objects: their text


def same_override(a: str, b: str) -> bool:
    """True when two overrides set the same key the same way to the same value
    (``a=false`` and ``a=False``; ``x=1`` and ``x=1.0``); unparsable ones are compared as text."""
    if a.strip() == b.strip():
        return True
    ia, ib = _identity(a), _identity(b)
    return ia is not None and ib is not None and ia == ib


def varying(overrides: Sequence[str], fixed: Sequence[str]) -> tuple[str, ...]:
    """The overrides of ``overrides`` that are not among ``fixed`` (compared with :func:`same_override`)."""
    return tuple(o for o in overrides if not any(same_override(o, f) for f in fixed))
