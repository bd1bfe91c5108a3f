"""Is initsweep as fast on a big MLflow store as on an empty one? (issue 32, item 6)

    python scripts/bench_store.py                  # fill the big store (cached), then 3 alternated repeats
    python scripts/bench_store.py --repeats 5
    python scripts/bench_store.py --sweeps 10 --runs-per-sweep 20 --repeats 1   # a smoke test (seconds to fill)

The big store: ``--sweeps`` sweeps of ``--runs-per-sweep`` child runs each (default 100 x 100 = 10,000 runs) in
the experiment the measured sweeps use (``initsweep``), shaped as a real sweep writes them: a parent run per
sweep (tags ``initsweep.role``, ``initsweep.sweep_id``, ``initsweep.overrides``; params ``sweep_dir``,
``n_jobs``), each child with ``mlflow.parentRunId``, ``initsweep.sweep_id``, ``initsweep.group``,
``initsweep.job_num``, ... (15 tags), the 60 params of a resolved config, and 62 metric keys: 7 per epoch over
``--epochs`` epochs plus 55 logged once (summaries, ``diag/*``, ``system/*``). Every tenth sweep is a study
(trials tagged ``trial_number``, ``trial_state``, ``optuna.study_name``, one ``optuna.best=true``), and each sweep
has its UI view as an experiment tag (:func:`initsweep.tracking.ui_view.sweep_view`, as ``open_parent`` writes it).
It is written through :class:`mlflow.MlflowClient` (``create_run``, one ``log_batch``, ``set_terminated`` per
run) into a store on /dev/shm, then kept as ``/tmp/initsweep-bigstore-<sweeps>x<runs>x<epochs>.db`` (artifacts
in ``.artifacts`` beside it) and copied per measurement.

Each repeat copies an empty store (created beforehand) and the big store into a fresh directory and measures,
alternating which store goes first:

  sweep16   wall s of ``train.py -m init=zeros,ones,normal,uniform seed=0,1,2,3 trainer.epochs=2``
  summary   the sweep's end-of-sweep summary and comparison report, in-process on its parent run
            (:func:`initsweep.writer.sweep_runs.summarize` + ``write_report``, the functions the sweep calls)
  report    wall s of ``scripts/report.py <parent run id>`` of that sweep
  study     wall s of ``train.py -m hparams_search=normal_std hydra.sweeper.n_trials=8 trainer.epochs=2``
  trials    the study's per-trial bookkeeping, in-process: ``tag_trials`` of its 8 trials + ``mark_best_runs``

Goal of every case: big / empty <= 1.10 (median of the per-pair ratios).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = "initsweep"
SWEEP16 = ["init=zeros,ones,normal,uniform", "seed=0,1,2,3", "trainer.epochs=2"]
STUDY = ["hparams_search=normal_std", "hydra.sweeper.n_trials=8", "trainer.epochs=2"]
GOAL = 1.10
PER_EPOCH = ("train/loss", "train/acc", "train/loss_running", "train/lr", "val/loss", "val/acc", "time/epoch_s")
ONCE = tuple(
    [f"diag/{k}" for k in ("act_std_first", "act_std_last", "act_std_max", "act_std_min", "dead_frac_max")]
    + [f"diag/{k}" for k in ("duplicate_units_total", "grad_out_std_first", "grad_out_std_last", "hidden_q")]
    + [f"diag/hidden_{k}" for k in ("sq_sv_mean", "sv_max", "sv_mean", "sv_min", "sv_std")]
    + [f"diag/{k}" for k in ("initial_loss", "input_std", "jacobian_sq_norm", "jacobian_sv_max_min_ratio")]
    + [f"diag/{k}" for k in ("jacobian_sv_mean", "jacobian_sv_std", "ln_num_classes", "weight_sv_max_min_ratio")]
    + ["diag/weight_sv_mean", "diag/weight_sv_std", "init/weight_std_max", "init/weight_std_min"]
    + [f"system/{k}" for k in ("cpu_utilization_percentage", "disk_available_megabytes", "disk_usage_megabytes")]
    + [f"system/{k}" for k in ("disk_usage_percentage", "network_receive_megabytes", "network_transmit_megabytes")]
    + ["system/system_memory_usage_megabytes", "system/system_memory_usage_percentage"]
    + ["test/acc", "test/acc_at_best_val", "test/loss", "test/loss_at_best_val", "time/diag_s", "time/train_s"]
    + ["train/acc_final", "train/epochs_to_loss", "train/loss_final", "train/loss_threshold"]
    + [f"val/{k}" for k in ("acc_best", "acc_drop", "acc_final", "chance_acc", "collapsed", "epoch_best")]
    + [f"val/{k}" for k in ("epochs_to_90pct", "epochs_to_learn", "learn_target", "loss_best")]
)
INITS = ("zeros", "ones", "normal", "uniform", "xavier_uniform", "kaiming_normal", "orthogonal", "lecun_normal")


# ---------------------------------------------------------------------------------------------------
# The big store


def _config_params(init: str, seed: int, epochs: int) -> dict[str, str]:
    """60 params shaped as a job's resolved, flattened config."""
    params = {f"model.p{i}": str(i) for i in range(20)} | {f"trainer.p{i}": str(i) for i in range(20)}
    params |= {f"tracking.p{i}": "True" for i in range(15)}
    return params | {"init.name": init, "seed": str(seed), "trainer.epochs": str(epochs), "model.width": "256"}


def _child(sweep_id: str, job: int, init: str, seed: int, study: str | None) -> dict[str, str]:
    """The 15 tags of a job's run (as a real sweep writes them); a study's trial tags when ``study``."""
    group = f"init={init} trainer.epochs=20"
    tags = {
        "mlflow.parentRunId": sweep_id,
        "mlflow.runName": f"init={init} seed={seed}",
        "mlflow.source.name": "train.py",
        "mlflow.source.git.commit": "0" * 40,
        "initsweep.init": init,
        "initsweep.sweep_id": sweep_id,
        "initsweep.group": group,
        "initsweep.overrides": f"{group} seed={seed}",
        "initsweep.job_num": str(job),
        "initsweep.metrics_file": f"/tmp/multirun/{sweep_id}/{job}/metrics.jsonl",
        "initsweep.host": "vm",
        "initsweep.pid": "1",
        "initsweep.pid_start": "0",
        "initsweep.heartbeat": "0",
    }
    if study:
        tags |= {"trial_number": str(job), "trial_state": "COMPLETE", "optuna.study_name": study}
        tags |= {"optuna.best": "true"} if job == 0 else {}
    return tags


def add_views(uri: str) -> None:
    """Each sweep parent's UI view as an experiment tag, as :func:`initsweep.writer.sweep_runs.open_parent` sets it."""
    from initsweep.tracking import client as tracking
    from initsweep.tracking import ui_view

    client = tracking.connect(uri)
    exp = tracking.experiment_id(client, EXPERIMENT)
    for parent in tracking.sweep_parents(client, exp, max_results=50_000):
        client.set_experiment_tag(exp, *ui_view.sweep_view(parent.info.run_id, parent.info.run_name))


def fill(uri: str, artifacts: Path, sweeps: int, runs_per_sweep: int, epochs: int) -> None:
    """Write the big store through MlflowClient (see the module docstring); its runs' artifacts go to ``artifacts``."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    client = MlflowClient(uri)
    exp = client.create_experiment(EXPERIMENT, artifact_location=artifacts.as_uri())
    t0 = int(time.time() * 1000) - sweeps * runs_per_sweep * 1000  # older than any measured sweep
    for s in range(sweeps):
        study = f"study-{s}" if s % 10 == 9 else None
        tags = {"initsweep.role": "sweep", "initsweep.overrides": f"init=a,b seed=0,1 #{s}"}
        tags |= {"initsweep.study_parent": study} if study else {}
        parent = client.create_run(exp, start_time=t0, tags=tags, run_name=f"sweep #{s}").info.run_id
        client.log_batch(parent, params=[Param("sweep_dir", f"/tmp/multirun/{s}"), Param("n_jobs", "100")])
        client.set_tag(parent, "initsweep.sweep_id", parent)
        for job in range(runs_per_sweep):
            t0 += 1000
            init, seed = INITS[job % len(INITS)], job // len(INITS)
            run = client.create_run(exp, start_time=t0, tags=_child(parent, job, init, seed, study))
            run_id = run.info.run_id
            metrics = [Metric(k, 0.1 * e, t0 + e, e) for e in range(1, epochs + 1) for k in PER_EPOCH]
            metrics += [Metric(k, 0.5, t0, 0) for k in ONCE]
            client.log_batch(
                run_id, metrics=metrics, params=[Param(k, v) for k, v in _config_params(init, seed, epochs).items()]
            )
            client.set_terminated(run_id, end_time=t0 + 900)
        client.set_terminated(parent, end_time=t0)
        print(f"  sweep {s + 1}/{sweeps}", end="\r", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    add_views(uri)


def big_store(sweeps: int, runs_per_sweep: int, epochs: int) -> Path:
    """The cached big store's file, written first when absent."""
    cached = Path(tempfile.gettempdir()) / f"initsweep-bigstore-{sweeps}x{runs_per_sweep}x{epochs}.db"
    if cached.exists():
        return cached
    work = Path("/dev/shm" if Path("/dev/shm").is_dir() else tempfile.gettempdir()) / f"fill-{uuid.uuid4().hex}.db"
    t = time.perf_counter()
    fill(f"sqlite:///{work}", cached.with_suffix(".artifacts"), sweeps, runs_per_sweep, epochs)
    print(f"filled {sweeps * (runs_per_sweep + 1)} runs in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    shutil.move(work, cached)
    return cached


# ---------------------------------------------------------------------------------------------------
# Measurements


def run(cmd: list[str], cwd: Path) -> tuple[float, str]:
    """(wall s, stdout + stderr) of a subprocess that must succeed, with this worktree's ``src`` first."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return wall, p.stdout + p.stderr


def timed(call: Callable[[], object]) -> float:
    t = time.perf_counter()
    call()
    return time.perf_counter() - t


def parent_of(output: str) -> str:
    """The parent run id a sweep prints (``Parent run: .../runs/<id>...``)."""
    line = next(x for x in output.splitlines() if x.startswith("Parent run:"))
    return line.split("/runs/")[1][:32]


def measure(store: Path, cwd: Path) -> dict[str, float]:
    """Every case's seconds on a copy of ``store`` in ``cwd`` (see the module docstring)."""
    from initsweep.protocol import Parent, Tag, TrialOutcome, TrialState
    from initsweep.tracking import client as tracking
    from initsweep.writer import sweep_runs

    cwd.mkdir(parents=True)
    shutil.copyfile(store, cwd / "mlflow.db")
    with open(cwd / "mlflow.db", "rb+") as copy:  # on disk before timing: else the first commit's fsync writes it
        os.fsync(copy.fileno())
    uri = f"sqlite:///{cwd / 'mlflow.db'}"
    train = [sys.executable, str(ROOT / "train.py"), "-m", f"tracking.uri={uri}"]
    got: dict[str, float] = {}
    got["sweep16"], out = run([*train, *SWEEP16, f"hydra.sweep.dir={cwd / 'sweep'}"], cwd)
    run_id = parent_of(out)
    client = tracking.connect(uri)
    exp_id = client.get_run(run_id).info.experiment_id
    summary_dir = cwd / "summary"
    summary_dir.mkdir()
    got["summary"] = timed(
        lambda: (
            sweep_runs.summarize(uri, exp_id, run_id, str(summary_dir)),
            sweep_runs.write_report(uri, exp_id, run_id, str(summary_dir), "sweep", EXPERIMENT),
        )
    )
    report = [sys.executable, str(ROOT / "scripts" / "report.py"), run_id, "--tracking-uri", uri]
    got["report"] = run([*report, "--out", str(cwd / "report")], cwd)[0]
    got["study"], out = run([*train, *STUDY, f"hydra.sweep.dir={cwd / 'study'}"], cwd)
    study_id = parent_of(out)
    trials = tracking.child_runs(client, exp_id, study_id)
    study = trials[0].data.tags[Tag.STUDY_NAME]
    parent = Parent(study_id, exp_id, uri, study_id)
    outcomes = [  # as the sweeper holds them: each with the run id its trial's job recorded
        TrialOutcome(int(t[Tag.TRIAL_NUMBER]), {}, TrialState(t[Tag.TRIAL_STATE]), run_id=r.info.run_id)
        for r in trials
        for t in [r.data.tags]
    ]
    best = [int(r.data.tags[Tag.TRIAL_NUMBER]) for r in trials if r.data.tags.get(Tag.BEST) == "true"]
    runs = {o.number: o.run_id for o in outcomes}
    got["trials"] = timed(
        lambda: (
            sweep_runs.tag_trials(parent, study, outcomes),
            tracking.mark_best_runs(client, parent, study, best, runs),
        )
    )
    return got


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sweeps", type=int, default=100, help="sweeps in the big store")
    p.add_argument("--runs-per-sweep", type=int, default=100, help="child runs per sweep of the big store")
    p.add_argument("--epochs", type=int, default=20, help="epochs of each big-store run's per-epoch metrics")
    p.add_argument("--repeats", type=int, default=3, help="alternated (empty, big) pairs")
    args = p.parse_args()

    big = big_store(args.sweeps, args.runs_per_sweep, args.epochs)
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        os.chdir(tmp)  # the empty store's artifacts (./mlruns) go there
        empty = Path(tmp) / "empty.db"
        from initsweep.tracking import client as tracking

        tracking.experiment_id(tracking.connect(f"sqlite:///{empty}"), EXPERIMENT)  # a store exists already
        import scipy.special  # noqa: F401 - what the report imports on first use: not timed in the first pair
        import scipy.stats  # noqa: F401

        from initsweep.report import html, plots  # noqa: F401

        pairs: list[tuple[dict[str, float], dict[str, float]]] = []
        for i in range(args.repeats):
            order = [("empty", empty), ("big", big)][:: 1 if i % 2 == 0 else -1]
            got = {name: measure(store, Path(tmp) / f"{i}-{name}") for name, store in order}
            pairs.append((got["empty"], got["big"]))
            print(
                f"repeat {i + 1}: " + ", ".join(f"{k} {got['empty'][k]:.2f}/{got['big'][k]:.2f} s" for k in got["big"])
            )
    print(
        f"\nbig store: {args.sweeps} sweeps x {args.runs_per_sweep} runs ({big.stat().st_size / 1e6:.0f} MB); "
        f"{args.repeats} alternated pairs; load: {os.getloadavg()[0]:.1f}"
    )
    print(f"{'case':<8} {'empty s':>8} {'big s':>8} {'ratio':>6}  goal <= {GOAL}")
    for case in pairs[0][0]:
        e = statistics.median(p[0][case] for p in pairs)
        b = statistics.median(p[1][case] for p in pairs)
        ratio = statistics.median(p[1][case] / p[0][case] for p in pairs)
        print(f"{case:<8} {e:8.2f} {b:8.2f} {ratio:6.2f}  {'met' if ratio <= GOAL else 'NOT met'}")


if __name__ == "__main__":
    main()
