"""Issue 31's secrets acceptance: a password given in a store URL appears in nothing initsweep writes.

Against the real PostgreSQL of scripts/services/postgres.sh (marked ``cluster``): a role of its own per case
(one holding ``/`` in the URL's userinfo, one in ``$PGPASSWORD`` only), a basic
2-init sweep tracking in a new PostgreSQL database (``tracking.uri``) and a 2-trial study whose Optuna
storage is another (``hydra.sweeper.storage``). Then every byte of the terminal output, of every file under the working
directory (sweep dirs, local metrics files, artifacts, temporary files) and every row of both databases
(MLflow's params, tags, metrics, run names, artifact locations; Optuna's study and trial attributes) is
searched for the password. Excepted, as docs/reliability.md#secrets says: Hydra's own record of the
command line (``.hydra/``, ``multirun.yaml``) and the sweep's state files ``initsweep_*.json``, which
jobs read to connect and which must be readable by their owner only.
"""

from __future__ import annotations

import os
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import run_train

PG_PORT = os.environ.get("INITSWEEP_PG_PORT", "5432")
PG_SOCKET_DIR = Path(os.environ.get("INITSWEEP_SERVICES_DIR", "/tmp/initsweep-services")) / "postgres"
QUICK = ("trainer.epochs=1", "diagnostics.enabled=false", "tracking.log_plots=false", "model.width=32")

# name -> (password, how the URL carries it)
# Every path a password can take goes through one redact(), so two cases cover the writers: the userinfo
# form (with a "/", the hard parse) and the documented way. A plain password and the `?password=` form differ
# only in redact's parse, which tests/test_secrets.py checks; they are not run here, to keep CI's time (each
# case is a sweep and a study on PostgreSQL, about 50 s).
CASES = {
    "slash": ("sl/ash7Secret4k", "userinfo"),
    "pgpassword": ("env/Pass7Secret4k", "env"),  # the documented way: no password on the command line
}


def _superuser_sql(sql: str) -> None:
    """Run ``sql`` as PostgreSQL's superuser over the service's socket (creating a role needs it: the
    initsweep role may only create databases). Fails the test when that is not possible."""
    cmd = ["runuser", "-u", "postgres", "--", "psql", "-h", str(PG_SOCKET_DIR), "-p", PG_PORT, "-U", "postgres"]
    r = subprocess.run([*cmd, "-qtA", "-v", "ON_ERROR_STOP=1", "-c", sql], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"cannot run SQL as postgres (start the services as root: `make services`): {r.stderr}")


@pytest.fixture
def pg_role() -> Iterator[Any]:
    """``make(password)``: a new login role with that password owning two new databases (MLflow's and
    Optuna's); returns (role, [databases]). Dropped afterwards."""
    made: list[tuple[str, list[str]]] = []

    def make(password: str) -> tuple[str, list[str]]:
        role = f"secret_{uuid.uuid4().hex[:8]}"
        dbs = [f"{role}_mlflow", f"{role}_optuna"]
        quoted = password.replace("'", "''")
        _superuser_sql(f"CREATE ROLE {role} LOGIN PASSWORD '{quoted}'")
        made.append((role, dbs))
        for db in dbs:
            _superuser_sql(f"CREATE DATABASE {db} OWNER {role}")
        return role, dbs

    yield make
    for role, dbs in made:
        for db in dbs:
            _superuser_sql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        _superuser_sql(f"DROP ROLE IF EXISTS {role}")


def _url(role: str, password: str, form: str, db: str) -> str:
    if form == "env":
        return f"postgresql://{role}@127.0.0.1:{PG_PORT}/{db}"
    return f"postgresql://{role}:{password}@127.0.0.1:{PG_PORT}/{db}"


def _database_rows(role: str, password: str, db: str) -> str:
    """Every row of every table of ``db`` as text (what MLflow or Optuna stored there)."""
    import psycopg

    texts = []
    with psycopg.connect(host="127.0.0.1", port=PG_PORT, user=role, password=password, dbname=db) as conn:
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
        assert tables, f"nothing was stored in {db}"
        for (table,) in tables:
            texts += [row[0] for row in conn.execute(f'SELECT t::text FROM "{table}" t').fetchall()]
    return "\n".join(texts)


def _files_holding(root: Path, secret: bytes) -> tuple[list[str], list[Path]]:
    """(files under root whose bytes hold ``secret``, the state files excepted); the state files seen."""
    leaks, state_files = [], []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or ".hydra" in path.parts or path.name == "multirun.yaml":
            continue
        if path.name.startswith("initsweep_") and path.suffix == ".json":
            state_files.append(path)
            continue
        if secret in path.read_bytes():
            leaks.append(str(path.relative_to(root)))
    return leaks, state_files


def _around(text: str, secret: str) -> list[str]:
    """Each place ``secret`` occurs in ``text``, with 100 characters either side (what the failure shows)."""
    out, at = [], text.find(secret)
    while at >= 0:
        out.append(text[max(0, at - 100) : at + len(secret) + 20])
        at = text.find(secret, at + 1)
    return out


def _mlflow_texts(uri: str, download_to: Path) -> str:
    """Every run's name, params, tags, metric keys and artifact texts in the MLflow store at ``uri``, and
    its experiments' names and tags."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiments = client.search_experiments()
    texts = [f"{e.name} {e.tags} {e.artifact_location}" for e in experiments]
    runs = client.search_runs([e.experiment_id for e in experiments], max_results=1000)
    assert runs, f"no runs in {uri}"
    for run in runs:
        texts += [str(run.info), str(run.data.params), str(run.data.tags), " ".join(run.data.metrics)]
        local = Path(client.download_artifacts(run.info.run_id, "", str(download_to / run.info.run_id)))
        texts += [p.read_bytes().decode("utf-8", "replace") for p in local.rglob("*") if p.is_file()]
    return "\n".join(texts)


@pytest.mark.cluster
@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("case", sorted(CASES))
def test_no_password_in_anything_initsweep_writes(tmp_path, pg_role, case, monkeypatch):
    password, form = CASES[case]
    role, (mlflow_db, optuna_db) = pg_role(password)
    tracking_uri = _url(role, password, form, mlflow_db)
    storage = _url(role, password, form, optuna_db)
    work, tmp = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    tmp.mkdir()
    env = {"TMPDIR": str(tmp), **({"PGPASSWORD": password} if form == "env" else {})}

    sweep = run_train(
        ["-m", "init=zeros,normal", *QUICK, f"tracking.uri={tracking_uri}", "hydra.sweep.dir=multirun/sweep"],
        cwd=work,
        env=env,
        timeout=900,
    )
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    study = run_train(
        [
            "-m",
            "hparams_search=normal_std",
            "hydra.sweeper.n_trials=2",
            *QUICK,
            f"hydra.sweeper.storage={storage}",
            f"tracking.uri={tracking_uri}",
            "hydra.sweep.dir=multirun/study",
        ],
        cwd=work,
        env=env,
        timeout=900,
    )
    assert study.returncode == 0, study.stderr[-3000:]

    secret = password
    terminal = "\n".join([sweep.stdout, sweep.stderr, study.stdout, study.stderr])
    assert [line for line in terminal.splitlines() if secret in line] == []
    if form != "env":
        assert "***" in terminal  # the launch lines show the URLs, redacted

    leaks, state_files = _files_holding(tmp_path, secret.encode())
    assert leaks == []
    # The state files that jobs read to connect are the exception: owner-only.
    assert state_files, "no initsweep_*.json state file found"
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in state_files} == {p.name: 0o600 for p in state_files}

    if form == "env":
        monkeypatch.setenv("PGPASSWORD", password)  # this process reads the store as the jobs did
    stored = _mlflow_texts(tracking_uri, tmp_path / "artifacts")
    assert role in stored  # the URL is recorded (redacted), so the search below can fail
    assert _around(stored, secret) == []
    for db in (mlflow_db, optuna_db):
        rows = _database_rows(role, password, db)
        assert _around(rows, secret) == [], f"{db} holds the password"
