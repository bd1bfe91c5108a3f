"""Hydra internals (checked against hydra-core 1.3.2-1.3.8).

* ``get_args_parser`` (``hydra._internal.utils``): ``train.py``'s argument parser, for the command-line check
  that runs before ``hydra.main``;
* ``ConfigLoaderImpl._apply_overrides_to_config``: applies parsed overrides to a composed config, used to
  derive a job's config from a cached composition (:mod:`initsweep.sweep.composition`);
* ``get_overrides_dirname``: the ``hydra.job.override_dirname`` Hydra derives from a job's overrides;
* ``BasicSweeper`` (``hydra._internal.core_plugins``): its ``split_arguments`` expands a sweep, and the cached
  basic sweeper subclasses it;
* ``ConfigLoaderImpl.get_group_options`` / ``_parse_overrides_and_create_caching_repo``: see
  :func:`share_group_listings`;
* ``create_automatic_config_search_path`` (``hydra._internal.utils``) and ``Hydra.create_main_hydra2``
  (``hydra._internal.hydra``): the search path ``hydra.main`` builds and the global state it initializes,
  for the command-line check (:func:`main_search_path`, :func:`initialize_as_main`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra._internal.utils import create_automatic_config_search_path, get_args_parser
from hydra.core.config_search_path import ConfigSearchPath

__all__ = [
    "ConfigLoaderImpl",
    "apply_overrides",
    "get_args_parser",
    "get_overrides_dirname",
    "initialize_as_main",
    "main_search_path",
]


def __getattr__(name: str) -> Any:
    """``BasicSweeper``, imported on first use: Hydra's plugin scan executes its core plugin modules again, and
    a BasicSweeper imported before the scan (``train.py`` imports this module first) would be a stale class
    that the module's own ``super(BasicSweeper, self)`` no longer accepts."""
    if name == "BasicSweeper":
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        return BasicSweeper
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def apply_overrides(overrides: list[Any], cfg: Any) -> None:
    """Apply parsed ``overrides`` (Hydra ``Override`` objects) to the composed config ``cfg`` in place."""
    ConfigLoaderImpl._apply_overrides_to_config(overrides, cfg)


def share_group_listings() -> None:
    """Make ``get_group_options`` without overrides reuse one caching repository per loader (idempotent).

    Hydra 1.3 deep-copies its whole config repository on every such call (about 20 ms): ``--help`` lists
    every group with about 100 calls, the command-line check about 20."""
    from hydra.core.object_type import ObjectType

    original = ConfigLoaderImpl.get_group_options
    if getattr(original, "shared_listing", False):
        return

    def get_group_options(
        self: Any,
        group_name: str,
        results_filter: ObjectType | None = ObjectType.CONFIG,
        config_name: str | None = None,
        overrides: list[str] | None = None,
    ) -> list[str]:
        if overrides:
            return original(self, group_name, results_filter, config_name, overrides)
        repos = self.__dict__.setdefault("_shared_listing_repos", {})
        if config_name not in repos:
            repos[config_name] = self._parse_overrides_and_create_caching_repo(config_name, [])[1]
        return repos[config_name].get_group_options(group_name, results_filter)

    get_group_options.shared_listing = True  # type: ignore[attr-defined]
    ConfigLoaderImpl.get_group_options = get_group_options  # type: ignore[method-assign]


def main_search_path(task_module: str, config_path: str) -> ConfigSearchPath:
    """The config search path ``hydra.main`` builds for a task function defined in module ``task_module`` with
    ``config_path`` (Hydra's ``pkg://hydra.conf``, the primary dir, every SearchPathPlugin's, the schema;
    initsweep's own plugin puts a user's ``--config-dir`` first). ``hydra.searchpath`` is not in it: Hydra's
    config loader adds it at each composition."""
    return create_automatic_config_search_path(None, task_module, config_path)


@contextmanager
def initialize_as_main(search_path: ConfigSearchPath, task_name: str) -> Iterator[None]:
    """Hydra's global state initialized as ``hydra.main`` initializes it for ``search_path`` (what
    ``hydra.initialize_config_dir`` does for a single dir), so that ``hydra.compose`` and
    ``GlobalHydra.instance().config_loader()`` use that search path; cleared on exit."""
    from hydra._internal.hydra import Hydra
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    Hydra.create_main_hydra2(task_name=task_name, config_search_path=search_path)
    try:
        yield
    finally:
        GlobalHydra.instance().clear()
