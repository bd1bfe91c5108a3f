"""Objects named by a dotted path, a config's ``_target_`` (a custom initializer, a user's data callable).

Naming a ``_target_`` runs code, as with Hydra's ``instantiate``: importing the module it names runs that
module's top-level code (and its parent packages'). initsweep imports nothing else to find it.
:func:`locate` first finds the module on disk without importing anything (``importlib``'s finders only),
and for a module written in Python reads its source to check that it defines the name; a path that names no
module, or a name its module does not define, is refused before any import. Only then does
:func:`import_target` import that module (and its parent packages, as Python always does).
:func:`load_callable` does so for a config key and turns every way it can fail into one ``ValueError`` naming
the key.
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable, Iterator, Mapping
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import Any

# Source text that can define module attributes no static reading sees: such a module is imported to look.
_DYNAMIC = ("__getattr__", "globals(", "setattr(", "exec(", "sys.modules", "__path__")


class TargetNotFound(ImportError):
    """A dotted path that names no module, or a name its module does not define (found without importing)."""


def _child_spec(name: str, parent: ModuleSpec) -> ModuleSpec | None:
    """The spec of submodule ``name`` of the package ``parent``, found on disk without importing the package
    (``importlib.util.find_spec`` would import it)."""
    if parent.submodule_search_locations is None:
        return None  # a plain module has no submodules
    try:
        return importlib.machinery.PathFinder.find_spec(name, list(parent.submodule_search_locations))
    except (ImportError, ValueError):
        return None


def _top_level_names(body: list[ast.stmt]) -> Iterator[str]:
    """The names a module's top-level statements bind (inside ``if``/``try``/``with`` too, not in functions)."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node.name
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            yield from ((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            yield from (n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        for field in ("body", "orelse", "finalbody"):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                yield from _top_level_names(getattr(node, field, []))
        for handler in getattr(node, "handlers", []):
            yield from _top_level_names(handler.body)


def _may_define(spec: ModuleSpec, name: str) -> bool:
    """False only when ``spec``'s Python source plainly does not define ``name``; True when it does or when
    that cannot be told without importing it (an extension module, a star import, a ``__getattr__``, ...)."""
    origin = spec.origin
    if not origin or not origin.endswith(".py") or not Path(origin).is_file():
        return True
    try:
        source = Path(origin).read_text(encoding="utf-8")
        tree = ast.parse(source)
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return True  # the import will say what is wrong
    if any(marker in source for marker in _DYNAMIC) or "import *" in source:
        return True
    return name in set(_top_level_names(tree.body))


def _spec(name: str, parent: ModuleSpec | None) -> ModuleSpec | None:
    """The spec of module ``name`` (a top-level one when ``parent`` is None), importing nothing."""
    module = sys.modules.get(name)
    if module is not None and getattr(module, "__spec__", None) is not None:
        return module.__spec__
    if parent is not None:
        return _child_spec(name, parent)
    try:
        return importlib.util.find_spec(name)  # a top-level name: imports nothing
    except (ImportError, ValueError):
        return None


def locate(path: str) -> tuple[str, list[str]]:
    """Split ``path`` into the module to import and the attributes to read from it, importing nothing.
    TargetNotFound names what is missing."""
    parts = path.split(".")
    if not path or not all(p.isidentifier() for p in parts):
        raise TargetNotFound(f"{path!r} is not a dotted path of Python names")
    if len(parts) < 2:
        raise TargetNotFound(f"{path!r} names no attribute: write module.name")
    for i in range(len(parts) - 1, 0, -1):  # a module made in memory (no spec): taken as it is
        made = sys.modules.get(".".join(parts[:i]))
        if made is not None and getattr(made, "__spec__", None) is None:
            return ".".join(parts[:i]), parts[i:]
    spec = _spec(parts[0], None)
    if spec is None:
        raise TargetNotFound(f"no module named {parts[0]!r}")
    depth = 1
    while depth < len(parts) - 1 and (child := _spec(".".join(parts[: depth + 1]), spec)) is not None:
        spec, depth = child, depth + 1
    module, name = ".".join(parts[:depth]), parts[depth]
    imported = sys.modules.get(module)
    if not (hasattr(imported, name) if imported is not None else _may_define(spec, name)):
        kind = "package" if spec.submodule_search_locations is not None else "module"
        raise TargetNotFound(f"{kind} {module!r} has no submodule or name {name!r}")
    return module, parts[depth:]


def import_target(path: str) -> Callable[..., Any]:
    """The object a dotted path such as ``torch.nn.init.orthogonal_`` names: :func:`locate` finds its module
    without importing anything, then only that module (with its parent packages) is imported."""
    module, attrs = locate(path)
    obj: Any = importlib.import_module(module)
    for attr in attrs:
        obj = getattr(obj, attr)
    return obj


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


def check_nested_targets(node: Mapping[str, Any], key: str) -> None:
    """:func:`locate` every ``_target_`` of a config node and of the nodes inside it (lists too), importing
    nothing, before ``hydra.utils.instantiate`` imports them; ValueError naming the key
    (``key._target_``, ``key.wrapped_pruner._target_``, ...) of the first that names nothing."""

    def walk(value: Any, where: str) -> None:
        if isinstance(value, Mapping):
            target = value.get("_target_")
            if isinstance(target, str):
                try:
                    locate(target)
                except TargetNotFound as e:
                    raise ValueError(f"{where}._target_ = {target!r}: {e}") from None
            for k, v in value.items():
                if k != "_target_":
                    walk(v, f"{where}.{k}")
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(v, f"{where}[{i}]")

    walk(node, key)
