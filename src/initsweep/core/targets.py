"""Objects named by a dotted path, a config's ``_target_`` (a custom initializer, a user's data callable).

:func:`import_target` imports the object; :func:`load_callable` does so for a config key and turns every way
it can fail into one ``ValueError`` naming the key.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def import_target(path: str) -> Callable[..., Any]:
    """The object a dotted path such as ``torch.nn.init.orthogonal_`` names (module, then attributes)."""
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError as e:
            if e.name and not ".".join(parts[:i]).startswith(e.name):
                raise  # the module exists but an import inside it failed
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(f"no module in {path!r} can be imported")


def load_callable(path: str, key: str, expected: str) -> Callable[..., Any]:
    """The callable ``path`` names; ValueError naming ``key`` (e.g. ``init._target_``) when it cannot be
    imported, its module fails to import, or it is not callable. ``expected`` shows the call, e.g.
    ``fn(tensor, **kwargs)``."""
    try:
        fn = import_target(path)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"{key} = {path!r}: cannot be imported ({e}); is its module on PYTHONPATH?") from None
    except Exception as e:  # noqa: BLE001 - the user's module itself fails to import (syntax error, ...)
        raise ValueError(f"{key} = {path!r}: importing it failed: {type(e).__name__}: {e}") from None
    if not callable(fn):
        raise ValueError(f"{key} = {path!r}: is a {type(fn).__name__}, not a callable {expected}")
    return fn
