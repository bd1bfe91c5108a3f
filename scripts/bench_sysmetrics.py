"""The cost of MLflow's system metrics (tracking.system_metrics) per job and per sweep.

    python scripts/bench_sysmetrics.py                   # in-process jobs, then two 4-job sweeps per setting
    python scripts/bench_sysmetrics.py --repeats 2 --no-sweep

Per sample: the CPU time (``time.process_time``, little affected by other processes' load) and wall time of
the monitor's start + stop with its one end-of-run sample, and of one periodic sample (collect, log, the
monitor's run-status read). In-process: ``initsweep.jobs.job.execute`` on digits (trainer.epochs=EPOCHS),
alternating off / on at each interval, median wall seconds per job. Sweep: ``python train.py -m
init=zeros,ones,normal,uniform`` with and without, alternating, median wall seconds. Stores live in a
temporary directory created beforehand.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def per_sample(uri: str) -> None:
    from mlflow import MlflowClient
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    from initsweep.tracking import client as tracking
    from initsweep.tracking import sysmetrics

    client = tracking.connect(uri)
    exp = tracking.experiment_id(client, "bench-sysmetrics")

    def measure(label: str, n: int, step) -> None:
        cpu, wall = [], []
        for _ in range(n):
            c0, w0 = time.process_time(), time.perf_counter()
            step()
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
        print(
            f"{label}: CPU median {statistics.median(cpu) * 1000:.1f} ms, wall {statistics.median(wall) * 1000:.1f} ms"
        )

    def start_stop() -> None:
        run_id = tracking.start_run(client, exp, "start-stop").run_id
        with sysmetrics.monitoring(run_id, uri, 10.0):
            pass

    measure("monitor start + stop + one end-of-run sample", 10, start_stop)
    run_id = tracking.start_run(client, exp, "periodic").run_id
    monitor = SystemMetricsMonitor(run_id, sampling_interval=1, tracking_uri=uri)

    def sample() -> None:
        monitor.collect_metrics()
        monitor.publish_metrics(monitor.aggregate_metrics())
        monitor.mlflow_logger.flush()
        MlflowClient(uri).get_run(run_id)

    measure("one periodic sample", 20, sample)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--intervals", default="10,1")
    ap.add_argument("--no-sweep", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from hydra import compose, initialize_config_dir

    from initsweep.jobs.job import JobContext, execute

    tmp = Path(tempfile.mkdtemp(prefix="bench-sysmetrics-"))
    uri = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    base = [f"tracking.uri={uri}", f"trainer.epochs={args.epochs}", "tracking.log_plots=false", "trainer.threads=1"]
    settings = {"off": ["tracking.system_metrics=false"]}
    for interval in args.intervals.split(","):
        settings[f"on, {interval} s"] = [
            "tracking.system_metrics=true",
            f"tracking.system_metrics_interval_s={interval}",
        ]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfgs = {k: compose(config_name="config", overrides=[*base, *v]) for k, v in settings.items()}
    per_sample(uri)
    execute(cfgs["off"], JobContext())  # warm-up: imports, store creation, first optimizer
    times: dict[str, list[float]] = {k: [] for k in settings}
    cpu: dict[str, list[float]] = {k: [] for k in settings}
    for _ in range(args.repeats):
        for name, cfg in cfgs.items():
            t0, c0 = time.perf_counter(), time.process_time()
            execute(cfg, JobContext())
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    for name, ts in cpu.items():
        print(f"job CPU time, system metrics {name}: median {statistics.median(ts):.3f} s")
    for name, ts in times.items():
        print(
            f"job ({args.epochs} epochs, in-process), system metrics {name}: median {statistics.median(ts):.3f} s "
            f"(min {min(ts):.3f}, max {max(ts):.3f}, n={len(ts)})"
        )
    if args.no_sweep:
        return
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    sweep = [sys.executable, str(ROOT / "train.py"), "-m", "init=zeros,ones,normal,uniform", *base]
    walls: dict[str, list[float]] = {"off": [], "on, 10 s": []}
    for _ in range(2):
        for name, flag in (("off", "false"), ("on, 10 s", "true")):
            t0 = time.perf_counter()
            subprocess.run(
                [*sweep, f"tracking.system_metrics={flag}"], cwd=tmp, env=env, capture_output=True, check=True
            )
            walls[name].append(time.perf_counter() - t0)
    for name, ts in walls.items():
        print(
            f"4-job sweep, system metrics {name}: median {statistics.median(ts):.2f} s "
            f"({', '.join(f'{t:.2f}' for t in ts)})"
        )


if __name__ == "__main__":
    main()
