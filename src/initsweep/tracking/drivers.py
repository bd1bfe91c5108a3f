"""Database drivers of store URLs: a ``postgresql://`` URL without its driver -> one ConfigError naming the extra."""

from __future__ import annotations

import importlib.util

from initsweep.core.config import ConfigError

# SQLAlchemy 2.x URL scheme -> (importable driver module, the extra that installs it)
DRIVERS = {
    "postgresql": ("psycopg", "postgres"),
    "postgresql+psycopg": ("psycopg", "postgres"),
    "postgresql+psycopg2": ("psycopg2", "postgres (or pip install psycopg2-binary)"),
    "mysql": ("MySQLdb", "pip install mysqlclient"),
    "mysql+pymysql": ("pymysql", "pip install pymysql"),
}


def check_storage_driver(url: str | None, key: str) -> None:
    """ConfigError (naming ``key`` and the extra to install) when ``url`` needs a database driver that is
    not installed; nothing for journal files, sqlite and http."""
    if not url or "://" not in str(url):
        return
    scheme = str(url).split("://", 1)[0].lower()
    if scheme not in DRIVERS:
        return
    module, extra = DRIVERS[scheme]
    if importlib.util.find_spec(module) is None:
        how = f'pip install -e ".[{extra}]"' if " " not in extra else extra
        raise ConfigError(f"{key} = {scheme}://...: the database driver {module!r} is not installed; {how}")
