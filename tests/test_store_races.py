"""Opening a store that another client is creating at the same instant (initsweep.tracking.store_races).

The pure retry rule runs in-process; the races themselves run in real processes started at one instant on a
new SQLite file (MLflow) and, marked ``cluster``, a new PostgreSQL database (Optuna and MLflow), 3 rounds each.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

import pytest

from initsweep.tracking.store_races import StoreRaceError, is_creation_race, open_despite_races

ROUNDS = 3


def test_a_wrapped_creation_race_is_recognised():
    try:
        try:
            raise RuntimeError('duplicate key value violates unique constraint "alembic_version_pkc"')
        except RuntimeError as inner:
            raise ValueError("schema check failed") from inner
    except ValueError as e:
        assert is_creation_race(e)
    assert is_creation_race(RuntimeError("(sqlite3.OperationalError) table experiments already exists"))
    assert not is_creation_race(RuntimeError("connection refused"))


def test_open_retries_a_race_and_raises_anything_else_at_once():
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("relation studies already exists")
        return "store"

    assert open_despite_races(flaky, "the store") == "store" and len(calls) == 3

    def refused() -> str:
        calls.append(1)
        raise RuntimeError("connection refused")

    calls.clear()
    with pytest.raises(RuntimeError, match="connection refused"):
        open_despite_races(refused, "the store")
    assert len(calls) == 1


def test_a_race_that_never_ends_names_the_store_within_the_budget():
    def forever() -> None:
        raise RuntimeError("database is locked")

    start = time.monotonic()
    with pytest.raises(StoreRaceError, match=r"could not open the store at X: another client .* after 1 s"):
        open_despite_races(forever, "the store at X", budget_s=1.0)
    assert time.monotonic() - start < 10.0  # the budget bounds the wait (a hang guard on a loaded machine)


# ---------------------------------------------------------------------------------------------------
# Real races: processes released at one instant


def _rounds(targets: list[str], start: Any, race: Any) -> None:
    """One ``race(target)`` per round, every process released together by ``start`` (a barrier) once all have
    imported what they need: each process pays its imports once, however many rounds."""
    for target in targets:
        start.wait(60)
        race(target)


def _mlflow_plain_client(uris: list[str], start: Any) -> None:
    """Another MLflow client (a notebook, `mlflow ui`): MLflow's own code, no initsweep lock, opening the
    store the instant its file appears."""
    from mlflow import MlflowClient

    def race(uri: str) -> None:
        db = Path(uri[len("sqlite:///") :])
        while not db.exists():
            time.sleep(0.001)
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)

    _rounds(uris, start, race)


def _initsweep_connect(uris: list[str], start: Any) -> None:
    from initsweep.tracking.client import connect, experiment_id

    _rounds(uris, start, lambda uri: experiment_id(connect(uri), "race"))


def _optuna_open(urls: list[str], start: Any) -> None:
    import optuna

    from initsweep.tuning.plan import open_storage

    _rounds(
        urls, start, lambda url: optuna.create_study(storage=open_storage(url), study_name="race", load_if_exists=True)
    )


def _race(targets: list[tuple[object, list[str]]]) -> list[int | None]:
    """Start each ``(function, uris)`` in its own process; the processes race on each uri in turn, released
    together. Their exit codes (a failed round: its traceback on stderr, and a non-zero code)."""
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(len(targets))
    procs = [ctx.Process(target=f, args=(uris, start)) for f, uris in targets]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    return [p.exitcode for p in procs]


@pytest.mark.slow
def test_first_run_on_a_new_sqlite_store_survives_other_mlflow_clients(tmp_path):
    uris = []
    for round_ in range(ROUNDS):
        (tmp_path / f"r{round_}").mkdir()
        uris.append(f"sqlite:///{tmp_path}/r{round_}/mlflow.db")
    codes = _race([(_initsweep_connect, uris), (_mlflow_plain_client, uris), (_mlflow_plain_client, uris)])
    assert codes == [0, 0, 0], "a client failed on a new store (its traceback is above)"


@pytest.mark.cluster
@pytest.mark.slow
def test_three_processes_open_one_new_postgresql_database(new_pg_database):
    import optuna

    urls = [new_pg_database(f"race{round_}") for round_ in range(ROUNDS)]
    assert _race([(_optuna_open, urls)] * 3) == [0, 0, 0], "a process failed on a new database (traceback above)"
    for url in urls:
        assert [s.study_name for s in optuna.get_all_study_summaries(url)] == ["race"]
