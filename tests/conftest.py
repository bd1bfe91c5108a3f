"""Shared test helpers: compose configs with Hydra's compose API, run train.py in a subprocess against a
throw-away MLflow store, and read that store back."""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Two pytest workers share the machine's cores: every test's trainer (in-process or a train.py child) gets one
# intra-op thread unless the caller set $OMP_NUM_THREADS. With torch's default of a thread per core, the
# oversubscribed OpenMP threads wait for each other: the same tests took 20% more CPU and wall time.
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
TRAIN = ROOT / "train.py"
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]
# Small and quick: a few epochs are enough to tell learning from not learning on digits.
FAST = ("trainer.epochs=3",)


def compose(overrides: Iterable[str] = ()):
    """The job config train.py would get for these overrides (without the hydra node)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))


def store_uri(directory: Path) -> str:
    return f"sqlite:///{directory / 'mlruns' / 'mlflow.db'}"


def run_train(
    args: Iterable[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run `python train.py ARGS` with cwd as its working directory, so its default store, outputs/ and
    multirun/ all live under cwd. MLFLOW_TRACKING_URI from the test's environment is removed."""
    return subprocess.run(
        [sys.executable, str(TRAIN), *args],
        cwd=cwd,
        env=train_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def train_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The test's environment without MLFLOW_TRACKING_URI (a child's store is its cwd's), plus ``env``; the
    entries of PYTHONPATH made absolute (``PYTHONPATH=src pytest``: a child in another cwd imports the same)."""
    out = {**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}, **(env or {})}
    if out.get("PYTHONPATH"):
        out["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in out["PYTHONPATH"].split(os.pathsep) if p)
    return out


def _default_signal_handlers() -> None:
    """In the forked child, before exec: SIGINT/SIGTERM/SIGQUIT back to their defaults. A background job of a
    non-interactive shell (``(pytest ... &)``) starts with SIGINT ignored, an ignored signal stays ignored
    across exec, and Python then never raises KeyboardInterrupt."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)


def spawn_with_default_signals(args: Iterable[str], **popen_kwargs: Any) -> subprocess.Popen:
    """``subprocess.Popen(args, **popen_kwargs)`` whose child starts with the default signal handlers, whatever
    the test runner inherited: use it for every child a test sends a signal to."""
    return subprocess.Popen(list(args), preexec_fn=_default_signal_handlers, **popen_kwargs)


def start_train(
    args: Iterable[str], cwd: Path, env: dict[str, str] | None = None, **popen_kwargs: Any
) -> subprocess.Popen:
    """Start ``python train.py ARGS`` in the background like :func:`run_train` (same cwd and env rules), with
    default signal handlers and text stdout/stderr pipes; read it with ``proc.communicate(timeout=...)``."""
    return spawn_with_default_signals(
        [sys.executable, str(TRAIN), *args],
        cwd=cwd,
        env=train_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen_kwargs,
    )


def reap(cwd: Path) -> subprocess.CompletedProcess:
    """``python -m initsweep.tracking.recovery`` on cwd's store: a later process that opens the store."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-m", "initsweep.tracking.recovery", store_uri(cwd)], capture_output=True, text=True, env=env
    )


def group_gone(pgid: int, timeout: float = 60) -> bool:
    """Whether every process of the process group has exited (no orphaned workers)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def writers_of(pid: int) -> list:
    """The tracking writers (``initsweep.writer.server``) among the descendants of process ``pid``, as
    ``psutil.Process`` objects."""
    import psutil

    kids = psutil.Process(pid).children(recursive=True)
    return [p for p in kids if "initsweep.writer.server" in " ".join(p.cmdline())]


def client_for(directory: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=store_uri(directory))


def all_runs(directory: Path) -> list:
    """Every run of every experiment in the store under directory/mlruns."""
    client = client_for(directory)
    exp_ids = [e.experiment_id for e in client.search_experiments()]
    return list(client.search_runs(exp_ids, max_results=10000)) if exp_ids else []


@pytest.fixture
def tmp_store(tmp_path: Path) -> str:
    """A fresh sqlite store URI under tmp_path (for in-process jobs: pass it as tracking.uri)."""
    return store_uri(tmp_path)


# MLflow's server also starts a job runner and seven huey consumers (for its GenAI jobs, unused here): about
# 26 CPU s at start and a quarter of a core while idle, on the 2 cores the tests share.
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


@pytest.fixture
def mlflow_ui() -> Iterator[Callable[[Path], str]]:
    """Start ``mlflow ui`` on the store under a directory (a real server on a free loopback port); returns
    its base URL once /health answers. Stopped, with its process group, when the test ends."""
    servers: list[subprocess.Popen] = []

    def start(directory: Path, timeout_s: float = 300) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cli = Path(sys.executable).with_name("mlflow")
        server = subprocess.Popen(
            [str(cli), "ui", "--backend-store-uri", store_uri(directory), "--host", "127.0.0.1", "--port", str(port)]
            + ["--workers", "1"],  # MLflow's default of 4 server processes only slows a 2-core machine
            cwd=directory,
            env={**os.environ, **SERVER_ENV},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        servers.append(server)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if urllib.request.urlopen(f"{base}/health", timeout=2).status == 200:
                    return base
            except OSError:
                pass
            assert server.poll() is None, "mlflow ui exited"
            assert time.monotonic() < deadline, "mlflow ui did not answer in time"
            time.sleep(0.5)

    yield start
    for server in servers:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def train_history(overrides: Iterable[str] = ()) -> list:
    """Train in-process, without tracking, as a job with these overrides would; the epochs' metrics."""
    import torch
    from omegaconf import OmegaConf

    from initsweep.core import data as datasets
    from initsweep.core.config import validate
    from initsweep.core.initializers import initialize
    from initsweep.core.models import build_model
    from initsweep.core.trainer import fit

    config = validate(OmegaConf.to_container(compose(overrides), resolve=True))
    torch.manual_seed(config.seed)
    data = datasets.load(config.data)
    model = build_model(config.model, data.input_shape, data.num_classes)
    initialize(model, config.init, config.model.activation, batch=data.x_train)
    return list(fit(model, data, config.trainer, config.seed))


def layer_values(client, run_id: str, step: int = 0) -> dict[str, float]:
    """A run's per-layer table (``layers/step_NNNN.json``) as flat keys: ``init/fc1/weight_std``, ..."""
    from initsweep.tracking import client as tracking

    table = tracking.layer_table(client, run_id, step) or {"layers": [], "columns": {}}
    flat = {}
    for stat, values in table["columns"].items():
        kind, name = stat.split("/", 1)
        flat.update({f"{kind}/{layer}/{name}": v for layer, v in zip(table["layers"], values, strict=True)})
    return flat


PG = f"postgresql://initsweep:initsweep@127.0.0.1:{os.environ.get('INITSWEEP_PG_PORT', '5432')}"


@pytest.fixture
def new_pg_database() -> Iterator[Callable[[str], str]]:
    """``make(stem)``: a new, empty database on the test PostgreSQL (scripts/services/postgres.sh), named
    ``stem`` plus a random suffix; returns its URL. Dropped afterwards. Fails when PostgreSQL is not up."""
    import uuid

    import psycopg

    made: list[str] = []

    def admin() -> Any:
        try:
            return psycopg.connect(f"{PG}/postgres", autocommit=True, connect_timeout=3)
        except psycopg.OperationalError as e:
            pytest.fail(f"PostgreSQL is not running ({e}): start it with `make services`")

    def make(stem: str) -> str:
        name = f"{stem}_{uuid.uuid4().hex[:8]}"
        with admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return f"{PG}/{name}"

    yield make
    with admin() as conn:
        for name in made:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def build_wheel(out: Path, work: Path) -> Path:
    """A wheel of this clone, built offline from a copy of its sources (no build/ or egg-info left in the
    clone); returns its path."""
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run(
        [*PIP, "wheel", "--no-deps", "--no-index", "--no-build-isolation", "-w", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob("initsweep-*.whl")
    return wheel


def install_into(target: Path, *sources: Path) -> dict[str, str]:
    """``pip install --no-deps --target TARGET SOURCES`` offline: a bare directory holding only these packages
    (wheels, or project directories: build those from a copy, pip builds in their tree). Returns the
    environment that runs them: the test's, without $MLFLOW_TRACKING_URI, with PYTHONPATH = TARGET only
    (ahead of the clone's editable install in site-packages)."""
    subprocess.run(
        [
            *PIP,
            "install",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--target",
            str(target),
            *map(str, sources),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PYTHONPATH")}
    return {**env, "PYTHONPATH": str(target)}


def write_cifar_dir(directory: Path, per_batch: int = 12, n_test: int = 10) -> Path:
    """Tiny CIFAR-10 python batches (data_batch_1..5, test_batch): rows of 3072 uint8, channel-major 3x32x32;
    label c brightens channel c % 3."""
    import numpy as np

    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    for name, n in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", n_test)]:
        labels = [int(c) for c in rng.integers(0, 10, n)]
        images = rng.integers(0, 60, size=(n, 3, 32, 32)).astype(np.uint8)
        images[np.arange(n), np.array(labels) % 3] += 150
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": images.reshape(n, 3072)}
        (directory / name).write_bytes(pickle.dumps(batch, protocol=2))
    return directory


@pytest.fixture(autouse=True)
def _no_user_config_dirs(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--config-dir`` puts its dirs in $INITSWEEP_CONFIG_DIRS of the process that reads the command line (a
    test, for in-process prechecks): each test starts without any, and what it set goes with it."""
    from initsweep.protocol import CONFIG_DIRS_ENV

    monkeypatch.setenv(CONFIG_DIRS_ENV, "")


def wait_for_epoch(proc: subprocess.Popen, metrics: Path, epoch: int, timeout_s: float = 120) -> None:
    """Until the job's ``metrics`` file (metrics.jsonl) holds ``epoch`` for its latest run; AssertionError when
    ``proc`` exits first or ``timeout_s`` passes."""
    from initsweep.tracking import metrics_file as ledger

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.exists() and ledger.last_step(metrics, ledger.read(metrics).run_id or "") >= epoch:
            return
        time.sleep(0.05)
    raise AssertionError(f"epoch {epoch} never reached (rc {proc.poll()})")


def val_loss_history(where: Path, run_id: str) -> list[tuple[int, float]]:
    """(step, value) of the run's ``val/loss`` in the store under ``where``; AssertionError when a step was
    logged twice."""
    history = client_for(where).get_metric_history(run_id, "val/loss")
    steps = [m.step for m in history]
    assert len(steps) == len(set(steps)), f"an epoch was logged twice: {sorted(steps)}"
    return sorted((m.step, m.value) for m in history)
