"""The tracking writer (initsweep.writer.client): when it is used, and what a job's process then imports."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT, all_runs, client_for, run_train
from initsweep.protocol import Tag
from initsweep.tracking import processes
from initsweep.writer import client as writer
from initsweep.writer import server as writer_process


@pytest.mark.parametrize(
    ("mode", "mlflow_loaded", "expected"),
    [("0", False, False), ("1", True, True), ("auto", False, True), ("auto", True, False)],
)
def test_the_writer_serves_processes_without_mlflow_unless_told(monkeypatch, mode, mlflow_loaded, expected):
    monkeypatch.setenv(writer.MODE_ENV, mode)
    monkeypatch.setattr(writer, "_writer", None)
    modules = dict(sys.modules)
    if not mlflow_loaded:
        modules.pop("mlflow", None)
    else:
        modules.setdefault("mlflow", object())
    monkeypatch.setattr(sys, "modules", modules)
    assert writer.wanted() is expected


@pytest.mark.slow
def test_a_single_run_never_imports_mlflow_in_the_training_process(tmp_path):
    """The job's process trains; its writer imports MLflow and writes the run, which ends FINISHED."""
    probe = (
        "import runpy, sys, atexit\n"
        "atexit.register(lambda: print('MLFLOW_IN_TRAINER', 'mlflow' in sys.modules))\n"
        f"sys.argv = [{str(ROOT / 'train.py')!r}, 'trainer.epochs=2', 'tracking.log_plots=false']\n"
        f"runpy.run_path({str(ROOT / 'train.py')!r}, run_name='__main__')\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "MLFLOW_IN_TRAINER False" in proc.stdout
    (run,) = all_runs(tmp_path)
    assert run.info.status == "FINISHED" and "train/loss" in run.data.metrics


@pytest.mark.slow
def test_an_unusable_store_is_reported_through_the_writer_before_training(tmp_path):
    (tmp_path / "mlruns").write_text("not a directory")
    proc = run_train(["trainer.epochs=2"], cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("initsweep: ") and "Traceback" not in proc.stderr
    assert f"the MLflow store directory {tmp_path / 'mlruns'} is not a writable directory" in proc.stderr
    assert not list(tmp_path.glob("outputs/*/*/metrics.jsonl"))  # no run, nothing trained


@pytest.mark.slow
def test_a_zombie_is_not_alive():
    import psutil

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    start = processes.start_time(child.pid)
    while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:
        pass  # exited but not waited for: a zombie
    assert not processes.alive(child.pid, start)
    child.wait()
    assert not processes.alive(child.pid, start)


PROBE = """import atexit, sys
atexit.register(lambda: sys.stderr.write(
    f"PROBE {'writer' if sys.argv[0] == '-c' else 'job'} "
    f"torch={'torch' in sys.modules} matplotlib={'matplotlib' in sys.modules}\\n"))
"""


@pytest.mark.slow
@pytest.mark.parametrize("sweep", [False, True], ids=["single run", "sweep"])
def test_the_writer_draws_the_figures_and_never_imports_torch(tmp_path, sweep):
    """The job's process never imports matplotlib, the writer (and its drawing process) never imports torch;
    every run gets its three PNGs (the MLP has a hidden Jacobian's spectrum)."""
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    (probe_dir / "sitecustomize.py").write_text(PROBE)  # reports each process's imports at its exit
    args = ["-m", "init=zeros,normal"] if sweep else []
    path = os.pathsep.join(filter(None, [str(probe_dir), os.environ.get("PYTHONPATH")]))
    proc = run_train([*args, "trainer.epochs=2", "diagnostics.every=1"], cwd=tmp_path, env={"PYTHONPATH": path})
    assert proc.returncode == 0, proc.stderr
    probes = {line for line in proc.stderr.splitlines() if line.startswith("PROBE")}
    job = "PROBE job torch=True matplotlib=False"
    assert job in probes, probes
    assert probes - {job} and all(p.startswith("PROBE writer torch=False") for p in probes - {job}), probes
    runs = [r for r in all_runs(tmp_path) if Tag.INIT in r.data.tags]  # not the sweep's parent run
    assert len(runs) == (2 if sweep else 1)
    client = client_for(tmp_path)
    for run in runs:
        pngs = {a.path for a in client.list_artifacts(run.info.run_id) if a.path.endswith(".png")}
        assert pngs == {"learning_curves.png", "signal_propagation.png", "isometry_spectrum.png"}, run.info.run_name


@pytest.mark.slow
def test_the_writers_drawing_process_returns_paths_or_the_error_and_its_death(tmp_path):
    """The drawing process answers each run's PNG paths or the error,
    and once it is dead every figure still pending is answered with an error instead of waited for."""
    from initsweep.report.plots import Point

    drawer = writer_process.Drawer()
    points = [Point(e, 1.0 / e, 0.5, 1.2 / e, 0.5) for e in (1, 2, 3)]
    args = (points, (2.3, 0.1), [], tmp_path, "a title")
    drawer.draw("good", args)
    drawer.draw("bad", (points, (2.3, 0.1), [], tmp_path / "no such dir", "a title"))
    (good, paths), (bad, error) = drawer.done(wait=True)
    assert (good, bad) == ("good", "bad") and drawer.pending == 0 and drawer.done() == []
    assert paths == [tmp_path / "learning_curves.png"] and paths[0].stat().st_size > 0
    assert isinstance(error, FileNotFoundError)
    drawer._proc.kill()
    drawer._proc.join()
    drawer.draw("late", args)
    [(late, died)] = drawer.done(wait=True)
    assert late == "late" and "died" in str(died) and drawer.pending == 0


@pytest.mark.slow
def test_a_new_run_is_created_ahead_of_posted_writes_which_a_flush_waits_for(tmp_path, tmp_store):
    """The writer creates a run at once even while another run's posted writes wait; a flush of that other
    run returns only once every write posted before it is in the store, in order."""
    from mlflow import MlflowClient

    w = writer.TrackingWriter()
    try:
        store = writer.RemoteStore(w, tmp_store, "order", None, False)
        first = store.start_run("first", {})
        for i in range(300):
            first.log_metrics({"x": float(i)}, step=i)
            first.set_tags({f"t{i}": i})
        second = store.start_run("second", {})  # answered before the 600 writes above are all served
        client = MlflowClient(tmp_store)
        assert len(client.get_run(first.run_id).data.tags) < 300
        first.flush()
        run = client.get_run(first.run_id)
        assert {f"t{i}" for i in range(300)} <= set(run.data.tags)
        assert [m.value for m in client.get_metric_history(first.run_id, "x")] == [float(i) for i in range(300)]
        assert client.get_run(second.run_id).info.status == "RUNNING"
    finally:
        w.close()


@pytest.mark.slow
def test_a_moved_artifact_is_logged_then_removed_with_its_directory(tmp_path, tmp_store):
    """A job hands the writer a temporary file (a checkpoint) without waiting: the writer logs it, then removes
    it and the directory made for it; a directory that holds other files stays."""
    from mlflow import MlflowClient

    w = writer.TrackingWriter()
    try:
        run = writer.RemoteStore(w, tmp_store, "moved", None, False).start_run("run", {})
        alone, shared = tmp_path / "alone", tmp_path / "shared"
        for directory in (alone, shared):
            directory.mkdir()
            (directory / "weights.pt").write_bytes(b"w" * 1000)
        (shared / "other.txt").write_text("stays")
        run.move_artifact(alone / "weights.pt", "a")
        run.move_artifact(shared / "weights.pt", "b")
        run.flush()
        client = MlflowClient(tmp_store)
        assert [f.path for f in client.list_artifacts(run.run_id, "a")] == ["a/weights.pt"]
        assert [f.path for f in client.list_artifacts(run.run_id, "b")] == ["b/weights.pt"]
        assert not alone.exists()
        assert sorted(p.name for p in shared.iterdir()) == ["other.txt"]
    finally:
        w.close()


def test_a_reply_to_a_trainer_that_died_waiting_is_dropped_without_a_traceback(tmp_path):
    """The chaos soak's find: a joblib worker SIGKILLed while its writer served a request; the reply's
    BrokenPipeError ended the writer with a traceback instead of the usual shut-down (its runs KILLED, lost)."""
    from multiprocessing import Pipe

    from initsweep.writer.requests import Warm

    trainer_end, replies = Pipe(duplex=False)
    trainer_end.close()  # the trainer is gone
    server = writer_process.Server(replies)
    server.serve_one(1, Warm(f"sqlite:///{tmp_path / 'none.db'}"))  # no BrokenPipeError
    assert replies.closed is False
