"""The MLflow layout of real train.py runs, read back from a real store in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import FAST, all_runs, client_for, run_train
from initsweep.protocol import Tag
from initsweep.tracking import client as tracking

pytestmark = pytest.mark.slow


def _artifact_paths(client, run_id: str) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id)}


def test_two_job_multirun_layout(tmp_path: Path):
    proc = run_train(["-m", "init=zeros,normal", *FAST], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    client = client_for(tmp_path)
    runs = all_runs(tmp_path)
    parents = [r for r in runs if Tag.PARENT not in r.data.tags]
    children = [r for r in runs if Tag.PARENT in r.data.tags]
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert "summary.md" in _artifact_paths(client, parent.info.run_id)

    by_init = {r.data.tags["initsweep.init"]: r for r in children}
    assert set(by_init) == {"zeros", "normal"}
    for name, run in by_init.items():
        assert run.info.status == "FINISHED"
        assert run.data.tags[Tag.PARENT] == parent.info.run_id
        assert run.data.tags["initsweep.sweep_id"] == parent.data.tags["initsweep.sweep_id"]
        assert run.data.tags["initsweep.overrides"] == f"init={name} trainer.epochs=3"
        assert run.info.run_name == f"init={name} seed=0"
        # Params: the resolved config, flattened.
        assert run.data.params["init.name"] == name
        assert run.data.params["trainer.epochs"] == "3"
        assert run.data.params["model.width"] == "256"
        # Per-epoch metrics, step = epoch; val also at step 0 (before training).
        for key in ("train/loss", "train/acc", "val/loss", "val/acc", "time/epoch_s"):
            steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
            assert steps == ([0, 1, 2, 3] if key.startswith("val/") else [1, 2, 3]), key
        assert 0.0 <= run.data.metrics["test/acc"] <= 1.0
        table = tracking.layer_table(client, run.info.run_id, 0)
        assert table["columns"]["init/weight_std_expected"][0] == (1.0 if name == "normal" else 0.0)
        assert {"config.yaml", "overrides.txt", "learning_curves.png"} <= _artifact_paths(client, run.info.run_id)
    # zeros cannot break symmetry; normal learns.
    assert by_init["zeros"].data.metrics["val/acc_best"] < 0.2
    assert by_init["normal"].data.metrics["val/acc_best"] > 0.8
    # The summary table is printed at the end of the sweep.
    assert "init=zeros seed=0" in proc.stdout and "best val acc" in proc.stdout


def test_single_run_is_a_plain_run(tmp_path: Path):
    proc = run_train(["init=uniform", "trainer.epochs=2", "experiment_name=solo"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run,) = all_runs(tmp_path)
    assert Tag.PARENT not in run.data.tags
    assert run.info.status == "FINISHED"
    assert client_for(tmp_path).get_experiment(run.info.experiment_id).name == "solo"
    assert run.data.tags["initsweep.init"] == "uniform"


def test_environment_uri_wins_over_the_default_store(tmp_path: Path):
    other = tmp_path / "elsewhere"
    proc = run_train(["trainer.epochs=1"], cwd=tmp_path, env={"MLFLOW_TRACKING_URI": f"sqlite:///{other / 'store.db'}"})
    assert proc.returncode == 0, proc.stderr
    assert (other / "store.db").exists()
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()


BAD_INPUTS = [
    (["init=bogus"], "init=bogus: no such option"),
    (["init.std=-1"], "init.std"),
    (["init=uniform", "init.low=1", "init.high=0"], "init.low"),
    (["model.depth=-1"], "model.depth"),
    (["model.width=0"], "model.width"),
    (["trainer.lr=0"], "trainer.lr"),
    (["trainer.batch_size=0"], "trainer.batch_size"),
    (["model.activation=swish"], "model.activation"),
]


@pytest.mark.parametrize("multirun", [False, True], ids=["run", "multirun"])
@pytest.mark.parametrize("args,needle", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_exits_nonzero_before_any_run(tmp_path: Path, args, needle, multirun):
    if multirun:  # the bad value in the second job of a sweep: caught before the first job starts
        args = ["-m", "seed=0,1", *args]
    proc = run_train(args, cwd=tmp_path)
    assert proc.returncode != 0
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()


def test_a_layer_table_is_read_from_the_store_once_and_never_if_this_process_logged_it(tmp_path: Path, tmp_store):
    """The sweep's report reads each run's init-time table three times; the writer that logged it none."""
    import shutil
    from urllib.parse import urlparse

    client = tracking.connect(tmp_store)
    logger = tracking.start_run(client, tracking.experiment_id(client, "tables"), "run")
    logger.log_layers({"diag/fc1/act_std": 1.0, "diag/out/act_std": 0.5, "val/loss": 2.3}, step=0)
    logged = tracking.layer_table(client, logger.run_id, 0)
    tracking._TABLES.clear()  # another process: only the store has it
    stored = tracking.layer_table(client, logger.run_id, 0)
    assert stored == logged and stored["layers"] == ["fc1", "out"] and stored["columns"]["diag/act_std"] == [1.0, 0.5]
    shutil.rmtree(urlparse(client.get_run(logger.run_id).info.artifact_uri).path)
    assert tracking.layer_table(client, logger.run_id, 0) == stored  # read once, then kept
    assert tracking.layer_table(client, logger.run_id, 1) is None  # never logged


def test_batches_keep_within_mlflows_limits_one_request_each(tmp_path: Path, tmp_store):
    """Metrics, params and tags go in chunks that MLflow takes in one request (its published limits)."""
    from mlflow.utils.validation import MAX_ENTITIES_PER_BATCH, MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

    client = tracking.connect(tmp_store)
    logger = tracking.start_run(client, tracking.experiment_id(client, "batches"), "run")
    sizes: list[tuple[int, int, int]] = []
    log_batch = logger.client.log_batch

    def counted(run_id, metrics=(), params=(), tags=()):
        sizes.append((len(metrics), len(params), len(tags)))
        return log_batch(run_id, metrics=metrics, params=params, tags=tags)

    logger.client.log_batch = counted  # type: ignore[method-assign]
    logger.flush_every_s = 1e9  # one flush, at the end
    logger.log_params({f"p{i}": "x" * (MAX_PARAM_VAL_LENGTH + 10) if i == 0 else i for i in range(150)})
    logger.set_tags({f"t{i}": i for i in range(150)})
    for step in range(2500):
        logger.log_metrics({"m": float(step)}, step=step)
    logger.flush()
    assert all(p <= MAX_PARAMS_TAGS_PER_BATCH and t <= MAX_PARAMS_TAGS_PER_BATCH for _, p, t in sizes)
    assert all(sum(size) <= MAX_ENTITIES_PER_BATCH for size in sizes)
    data = client.get_run(logger.run_id).data
    assert len(data.params) == 150 and len(data.params["p0"]) == MAX_PARAM_VAL_LENGTH
    assert len(client.get_metric_history(logger.run_id, "m")) == 2500
