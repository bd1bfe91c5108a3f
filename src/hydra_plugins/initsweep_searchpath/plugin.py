"""The search-path plugin; see the package docstring."""

from __future__ import annotations

import os

from hydra.core.config_search_path import ConfigSearchPath, SearchPathQuery
from hydra.plugins.search_path_plugin import SearchPathPlugin

from initsweep.protocol import CONFIG_DIRS_ENV


def user_config_dirs() -> list[str]:
    """The directories of ``$INITSWEEP_CONFIG_DIRS``, in order (first wins)."""
    return [d for d in os.environ.get(CONFIG_DIRS_ENV, "").split(os.pathsep) if d]


class UserConfigFirst(SearchPathPlugin):
    """Puts every user config dir before the primary (``main``) config dir, the first in front."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        for directory in user_config_dirs():
            search_path.prepend("initsweep-user", f"file://{directory}", anchor=SearchPathQuery(provider="main"))
