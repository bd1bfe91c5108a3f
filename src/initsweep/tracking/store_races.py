"""Opening a store that another client may be creating at the same moment.

MLflow (SQLite, PostgreSQL) and Optuna (RDB) create their tables and version rows on first open, without
coordination between processes: two clients opening a new database at once can fail with "table ... already
exists", "duplicate key value violates unique constraint" or "database is locked". The other client then
finishes creating the schema, so opening again succeeds. Any client counts, not only initsweep's processes
(a user's ``mlflow ui``, a notebook, another study worker).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import TypeVar

_T = TypeVar("_T")

# Lower-cased fragments of the errors a concurrent schema creation produces (SQLite, PostgreSQL, MySQL):
# tables or version rows created twice, a database locked by the creator, a half-made schema read too early,
# and alembic finding the version row already moved by another client's migration.
RACE_SIGNS = (
    "already exists",
    "duplicate key",
    "duplicate entry",
    "unique constraint",
    "database is locked",
    "no such table",
    "alembic_version",
)


class StoreRaceError(RuntimeError):
    """Another client kept creating the store for longer than the retry budget."""


def is_creation_race(error: BaseException) -> bool:
    """Whether ``error`` (or the error it wraps) says another client was creating the same schema."""
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if any(sign in str(e).lower() for sign in RACE_SIGNS):
            return True
        e = e.__cause__ or e.__context__
    return False


def open_despite_races(open_store: Callable[[], _T], what: str, budget_s: float = 60.0) -> _T:
    """``open_store()``, called again after a jittered pause (0.1 s doubling, at most 2 s) while it fails
    because another client is creating the same schema (:func:`is_creation_race`), for at most ``budget_s``
    seconds; then :class:`StoreRaceError` naming ``what``. Any other error is raised at once."""
    deadline = time.monotonic() + budget_s
    pause = 0.1
    while True:
        try:
            return open_store()
        except Exception as e:  # noqa: BLE001 - only a creation race is retried; the rest re-raised
            if not is_creation_race(e):
                raise
            if time.monotonic() + pause > deadline:
                raise StoreRaceError(
                    f"could not open {what}: another client was still creating it after {budget_s:.0f} s "
                    f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
                ) from e
        time.sleep(pause * (0.5 + random.random()))
        pause = min(2.0, pause * 2)


def create_sqlite_atomically(db: Path, create: Callable[[Path], object]) -> None:
    """Let ``create(path)`` build a new SQLite database in a private file beside ``db``, then publish it under
    ``db``'s name in one step (a hard link, which never replaces a file): a client opening ``db`` meanwhile
    finds no file or a complete schema, never a half-made one (MLflow's migrations break when two clients run
    them at once). Nothing to do when ``db`` exists and is not empty; when another client publishes first, its
    file wins."""
    if db.exists() and db.stat().st_size > 0:
        return
    private = db.with_name(f".{db.name}.{os.getpid()}.creating")
    try:
        create(private)
        with suppress(FileExistsError):
            os.link(private, db)
    finally:
        private.unlink(missing_ok=True)
