"""The cost of MLflow's system metrics (tracking.system_metrics) per job and per sweep.

    python scripts/bench_sysmetrics.py                   # in-process jobs, then two 4-job sweeps per setting
    python scripts/bench_sysmetrics.py --repeats 2 --no-sweep

In-process: ``initsweep.job.execute`` on digits (trainer.epochs=EPOCHS), alternating off / on at each interval,
median wall seconds per job. Sweep: ``python train.py -m init=zeros,ones,normal,uniform`` with and without,
alternating, median wall seconds. Stores live in a temporary directory created beforehand.
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--intervals", default="10,1")
    ap.add_argument("--no-sweep", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from hydra import compose, initialize_config_dir

    from initsweep.job import JobContext, execute

    tmp = Path(tempfile.mkdtemp(prefix="bench-sysmetrics-"))
    uri = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    base = [f"tracking.uri={uri}", f"trainer.epochs={args.epochs}", "tracking.log_plots=false"]
    settings = {"off": ["tracking.system_metrics=false"]}
    for interval in args.intervals.split(","):
        settings[f"on, {interval} s"] = [
            "tracking.system_metrics=true",
            f"tracking.system_metrics_interval_s={interval}",
        ]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfgs = {k: compose(config_name="config", overrides=[*base, *v]) for k, v in settings.items()}
    execute(cfgs["off"], JobContext())  # warm-up: imports, store creation, first optimizer
    times: dict[str, list[float]] = {k: [] for k in settings}
    for _ in range(args.repeats):
        for name, cfg in cfgs.items():
            t0 = time.perf_counter()
            execute(cfg, JobContext())
            times[name].append(time.perf_counter() - t0)
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
