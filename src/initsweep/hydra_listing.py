"""One shared copy of Hydra's config repository for listing config groups.

Hydra 1.3's ``ConfigLoaderImpl.get_group_options`` deep-copies the whole config repository (its structured
config schemas included) on every call, about 20 ms each on an idle 2-core machine: ``--help`` lists every
group with about 100 such calls (most of its 1.9 s), and the command-line check (``initsweep.errors``) about 20.
:func:`share_group_listings` lets every call without overrides reuse one copy per config loader; the listing
itself (directory scans) is unchanged. ``train.py`` installs it before Hydra starts.
"""

from __future__ import annotations

from typing import Any


def share_group_listings() -> None:
    """Make ``get_group_options`` without overrides reuse one caching repository per loader (idempotent)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
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
