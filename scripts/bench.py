"""Benchmark initsweep against a plain PyTorch loop doing the same training.

    python scripts/bench.py                # full benchmark (a few minutes on 2 CPU cores)
    python scripts/bench.py --tiny         # seconds: a smoke test that the benchmark still runs
    python scripts/bench.py --width 4096 --depth 8 --batch-size 4096 --device cuda --only job

Cases (same data, model, optimizer, epochs and batch size everywhere):
  a. steps      the plain loop in this process vs initsweep's trainer in this process (training time only)
  b. job        `python train.py` (one tracked job) vs a plain-loop process, both including their imports
  c. sweep4     `python train.py -m init=zeros,ones,normal,uniform` vs one plain process doing 4 trainings
  d. parallel   an 8-job sweep on the basic launcher vs `hydra/launcher=joblib hydra.launcher.n_jobs=2`
  f. long       (only with --only long) `python train.py` for --long-epochs full-batch epochs of a 2-10-10-2
                MLP on 300 circles points vs a plain loop with a val loss/acc per epoch; wall and CPU seconds
Every figure is the median over --repeats. Subprocesses run against a store created beforehand (a
researcher's store usually exists), in a temporary directory.
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
INITS = ("zeros", "ones", "normal", "uniform")


# --------------------------------------------------------------------------------------------------
# The reference: a plain PyTorch loop, written here without any initsweep code.


def plain_data(device: str):
    """Digits, standardized, with the same 70/15/15 sizes as initsweep's split."""
    import numpy as np
    import torch
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    n_val = n_test = int(round(0.15 * len(x)))
    tr, va = order[n_val + n_test :], order[:n_val]
    x = (x - x[tr].mean(0)) / np.where(x[tr].std(0) > 0, x[tr].std(0), 1)
    t = lambda a, dt: torch.tensor(a, dtype=dt, device=device)  # noqa: E731
    return t(x[tr], torch.float32), t(y[tr], torch.long), t(x[va], torch.float32), t(y[va], torch.long)


def plain_train(data, init: str, args) -> float:
    """Train one MLP like initsweep's default job; returns the training wall time in seconds."""
    import torch
    from torch import nn

    x, y, xv, yv = data
    torch.manual_seed(0)
    layers, fan_in = [], x.shape[1]
    for _ in range(args.depth):
        layers += [nn.Linear(fan_in, args.width), nn.ReLU()]
        fan_in = args.width
    model = nn.Sequential(*layers, nn.Linear(fan_in, 10)).to(x.device)
    for m in model:
        if isinstance(m, nn.Linear):
            {
                "zeros": nn.init.zeros_,
                "ones": nn.init.ones_,
                "normal": nn.init.normal_,
                "uniform": lambda w: nn.init.uniform_(w, -1, 1),
            }[init](m.weight)
            nn.init.zeros_(m.bias)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for _ in range(args.epochs):
        model.train()
        perm = torch.randperm(len(x), generator=gen).to(x.device)
        for i in range(0, len(x), args.batch_size):
            idx = perm[i : i + args.batch_size]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            val_acc = (model(xv).argmax(1) == yv).float().mean().item()
    del val_acc
    return time.perf_counter() - t0


def plain_worker(args) -> None:
    """Entry of the plain-loop subprocess: imports, data, then one training per --plain init."""
    data = plain_data(args.device)
    for init in args.plain.split(","):
        plain_train(data, init, args)


# --------------------------------------------------------------------------------------------------
# Long runs of tiny epochs (issue 17): circles, 300 training points, MLP 2-10-10-2, full batch, SGD lr 0.01.

LONG_ARGS = [
    "data=circles",
    "data.n_samples=428",  # 300 train / 64 val / 64 test
    "model.widths=[10,10]",
    "init=kaiming_normal",
    "trainer.batch_size=300",
    "trainer.momentum=0",
    "trainer.lr=0.01",
]


def plain_long(epochs: int) -> None:
    """The reference for the long cases: the same data split sizes and net, one full-batch SGD step and a val
    loss / accuracy per epoch, in a plain loop."""
    import numpy as np
    import torch
    from sklearn.datasets import make_circles
    from torch import nn

    x, y = make_circles(n_samples=428, noise=0.1, factor=0.5, random_state=0)
    order = np.random.default_rng(0).permutation(len(x))
    tr, va = order[128:], order[:64]
    x = (x - x[tr].mean(0)) / x[tr].std(0)
    xt, yt = torch.tensor(x[tr], dtype=torch.float32), torch.tensor(y[tr])
    xv, yv = torch.tensor(x[va], dtype=torch.float32), torch.tensor(y[va])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 10), nn.ReLU(), nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 2))
    for m in model:
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight)
            nn.init.zeros_(m.bias)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(epochs):
        model.train()
        loss = nn.functional.cross_entropy(model(xt), yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.eval()
        with torch.no_grad():
            out = model(xv)
            nn.functional.cross_entropy(out, yv).item(), (out.argmax(1) == yv).float().mean().item()


def bench_long(args, epochs: int, cwd: Path) -> tuple[float, float, float, float]:
    """(ours wall s, plain wall s, ours CPU s, plain CPU s): `python train.py` against the plain-loop
    process, alternated, medians over --repeats. CPU seconds (user + sys of the child) are steadier than wall
    time on a shared machine."""
    train = [sys.executable, str(ROOT / "train.py"), *LONG_ARGS, f"trainer.epochs={epochs}", *args.override]
    plain = [sys.executable, __file__, "--plain-long", str(epochs)]
    ours, ref = [], []
    for _ in range(args.repeats):
        ours.append(timed_cpu(train, cwd))
        ref.append(timed_cpu(plain, cwd))
    med = lambda pairs, i: statistics.median(p[i] for p in pairs)  # noqa: E731
    return med(ours, 0), med(ref, 0), med(ours, 1), med(ref, 1)


def timed_cpu(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """(wall s, CPU s of the child) of one run of ``cmd``."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = timed(cmd, cwd)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


# --------------------------------------------------------------------------------------------------
# Measurements


def timed(cmd: list[str], cwd: Path) -> float:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return elapsed


def median_of(repeats: int, fn) -> float:
    return statistics.median(fn() for _ in range(repeats))


def model_args(args) -> list[str]:
    return [
        f"model.depth={args.depth}",
        f"model.width={args.width}",
        f"trainer.epochs={args.epochs}",
        f"trainer.batch_size={args.batch_size}",
        f"trainer.device={args.device}",
        *args.override,
    ]


def plain_cmd(args, inits: str) -> list[str]:
    return [
        sys.executable,
        __file__,
        "--plain",
        inits,
        "--epochs",
        str(args.epochs),
        "--width",
        str(args.width),
        "--depth",
        str(args.depth),
        "--batch-size",
        str(args.batch_size),
        "--device",
        args.device,
    ]


def bench_steps(args) -> tuple[float, float]:
    """(plain loop training seconds, initsweep trainer training seconds), in this process."""
    sys.path.insert(0, str(ROOT / "tests"))
    from omegaconf import OmegaConf

    from conftest import compose
    from initsweep import data as datasets
    from initsweep.config import validate
    from initsweep.initializers import initialize
    from initsweep.models import build_model
    from initsweep.trainer import fit

    plain = plain_data(args.device)
    config = validate(OmegaConf.to_container(compose(model_args(args)), resolve=True))
    data = datasets.load(config.data).to(plain[0].device)

    def ours() -> float:
        import torch

        torch.manual_seed(0)
        model = build_model(config.model, data.input_shape, data.num_classes).to(plain[0].device)
        initialize(model, config.init, config.model.activation, batch=data.x_train)
        t0 = time.perf_counter()
        for _ in fit(model, data, config.trainer, 0):
            pass
        return time.perf_counter() - t0

    plain_train(plain, "normal", args), ours()  # warm-up: first optimizer construction, allocator
    return median_of(args.repeats, lambda: plain_train(plain, "normal", args)), median_of(args.repeats, ours)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--only", default="steps,job,sweep4,parallel", help="comma-separated cases")
    p.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra train.py override for the initsweep side, e.g. tracking.log_plots=false",
    )
    p.add_argument("--tiny", action="store_true", help="1 repeat, 2 epochs, width 32, 2-job parallel case")
    p.add_argument("--plain", help=argparse.SUPPRESS)
    p.add_argument("--plain-long", type=int, help=argparse.SUPPRESS)
    p.add_argument("--long-epochs", default="2000,15000", help="epochs of the `long` cases (comma-separated)")
    args = p.parse_args()
    if args.plain:
        return plain_worker(args)
    if args.plain_long:
        return plain_long(args.plain_long)
    if args.tiny:
        args.repeats, args.epochs, args.width = 1, 2, 32
    cases = set(args.only.split(","))
    n_parallel = 2 if args.tiny else 8

    n_train = 1257  # digits' training split
    rows: list[tuple[str, float, float, float, str]] = []  # case, ours s, plain s, samples, target

    def add(case: str, ours: float, plain: float, trainings: int, target: str) -> None:
        rows.append((case, ours, plain, trainings * args.epochs * n_train, target))

    if "steps" in cases:
        plain_s, ours_s = bench_steps(args)
        add("a. training steps (in-process)", ours_s, plain_s, 1, "<= 1.11 x plain (samples/s >= 0.9 x)")
    with tempfile.TemporaryDirectory(prefix="initsweep-bench-") as tmp:
        cwd = Path(tmp)
        train = [sys.executable, str(ROOT / "train.py")]
        timed([*train, "trainer.epochs=1", "tracking.log_plots=false"], cwd)  # create the store once
        if "job" in cases:
            ours = median_of(args.repeats, lambda: timed([*train, *model_args(args)], cwd))
            plain = median_of(args.repeats, lambda: timed(plain_cmd(args, "normal"), cwd))
            add("b. one job, process wall time", ours, plain, 1, "<= 1.3 x plain")
        if "sweep4" in cases:
            ours = median_of(
                args.repeats, lambda: timed([*train, "-m", f"init={','.join(INITS)}", *model_args(args)], cwd)
            )
            plain = median_of(args.repeats, lambda: timed(plain_cmd(args, ",".join(INITS)), cwd))
            add("c. 4-initializer sweep", ours, plain, 4, "<= 1.3 x plain")
        if "parallel" in cases:
            seeds = "seed=" + ",".join(map(str, range(n_parallel)))
            basic = median_of(args.repeats, lambda: timed([*train, "-m", seeds, *model_args(args)], cwd))
            joblib = median_of(
                args.repeats,
                lambda: timed(
                    [*train, "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", seeds, *model_args(args)], cwd
                ),
            )
            rows.append(
                (
                    f"d. {n_parallel}-job sweep, joblib n_jobs=2 vs basic launcher",
                    joblib,
                    basic,
                    n_parallel * args.epochs * n_train,
                    "<= 0.7 x basic",
                )
            )
        if "long" in cases:
            for epochs in map(int, args.long_epochs.split(",")):
                ours, ref, ours_cpu, ref_cpu = bench_long(args, epochs, cwd)
                goal = "<= 1.2 x plain"
                rows.append((f"f. {epochs} tiny epochs, wall", ours, ref, epochs * 300, goal))
                rows.append((f"f. {epochs} tiny epochs, CPU s", ours_cpu, ref_cpu, epochs * 300, goal))
        if "startup" in cases or not args.tiny:
            for flag in ("--help", "--cfg job"):
                s = median_of(args.repeats, lambda flag=flag: timed([*train, *flag.split()], cwd))
                rows.append((f"e. train.py {flag}", s, float("nan"), 0, "< 2 s"))

    print(
        f"\nepochs={args.epochs} depth={args.depth} width={args.width} batch={args.batch_size} "
        f"device={args.device} repeats={args.repeats} overrides={args.override or 'none'} (medians)\n"
    )
    print("| case | initsweep s | reference s | samples/s (initsweep) | ratio | goal |")
    print("|---|---|---|---|---|---|")
    for case, ours, ref, samples, target in rows:
        ratio = ours / ref if ref == ref else float("nan")
        sps = f"{samples / ours:,.0f}" if samples else "-"
        ref_s = f"{ref:.2f}" if ref == ref else "-"
        print(
            f"| {case} | {ours:.2f} | {ref_s} | {sps} | {ratio:.2f} | {target} |"
            if ref == ref
            else f"| {case} | {ours:.2f} | - | - | - | {target} |"
        )


if __name__ == "__main__":
    main()
