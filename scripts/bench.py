"""Benchmark initsweep against a plain PyTorch loop plus Hydra's own cost, each figure printed with its goal.

    python scripts/bench.py                          # every case (long: tens of minutes on 2 CPU cores)
    python scripts/bench.py --only sweep4,reject     # a few cases
    python scripts/bench.py --tiny                   # seconds: a smoke test that the benchmark still runs

The reference of a sweep is a plain PyTorch loop doing the same trainings in one process plus a no-op
``@hydra.main`` app on the same ``conf/`` (returns 0.0, the sweep callback removed) running the same multirun
with Hydra's stock basic sweeper: the floor Hydra's launcher costs as Hydra ships it (initsweep's own sweeper,
conf/hydra/sweeper/basic.yaml, composes each job once per combination of group choices: that saving is
initsweep's). Every timed case runs ``--repeats`` alternated pairs (initsweep first, then the reference, then
the other way round) and reports the medians and the median of the per-pair ratios, so a
machine whose load drifts still gives usable ratios. Subprocesses run in a temporary directory against a store
created beforehand (a researcher's store usually exists). Cases (``--only``):

  steps     training steps in-process: initsweep's trainer vs the plain loop            <= 1.11 x
  single    one tracked run vs plain single training + no-op Hydra single run              <= 1.15 x
  sweep4    4-initializer sweep vs plain 4 trainings + no-op 4-job multirun               <= 1.15 x
  sweep16   16-job sweep (seed=0..15) vs plain 16 trainings + no-op 16-job multirun        <= 1.15 x
  slope     marginal seconds per job, slope from 4 to 64 jobs: initsweep vs plain + no-op + 0.05 s
  reject    a rejected config (init.std=abc), wall and CPU seconds                          <= 1.0 s
  startup   train.py --help and --cfg job                                                    < 1 s
  parallel  joblib n_jobs=2 vs the basic launcher, 16 jobs of --parallel-epochs (100)        <= 0.6 x
  memory    the main process's peak RSS, 256 jobs minus 16 jobs (1 epoch each)              < 50 MB
  optuna    a 30-trial normal_std study, median pruner vs no pruner, same best value        <= 0.5 x
  long      (only with --only long) --long-epochs full-batch epochs of a 2-10-10-2 MLP on 300
            circles points vs a plain loop with a val loss/acc per epoch, wall and CPU          <= 1.2 x
  resnet    one epoch of ResNet-20 on generated CIFAR-10 batches (--cifar-train images, --cifar-test) vs a
            plain loop over the same data with the same per-epoch measurements (the architecture is
            initsweep.core.models.ResNet on both sides: the pipeline is what is measured)       <= 1.15 x
  checkpoint  a --checkpoint-epochs run with trainer.checkpoint_every at its default (10) vs never  <= 1.03 x
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INITS = ("zeros", "ones", "normal", "uniform")
ALL_CASES = "steps,single,sweep4,sweep16,slope,reject,startup,parallel,memory,optuna,resnet,checkpoint"
TINY_CASES = "steps,sweep4,reject,startup"
STOCK_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"  # Hydra's, for the no-op reference
NOOP_APP = """import hydra


@hydra.main(version_base="1.3", config_path={conf!r}, config_name="config")
def main(cfg) -> float:
    return 0.0


if __name__ == "__main__":
    main()
"""


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


def plain_train(data, init: str, args, epochs: int | None = None) -> float:
    """Train one MLP like initsweep's default job for ``epochs`` (default --epochs); returns the training wall
    time in seconds."""
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
    for _ in range(args.epochs if epochs is None else epochs):
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
    """Entry of the plain-loop subprocess: imports, data, then one training per --plain item, ``init`` or
    ``init:epochs``."""
    data = plain_data(args.device)
    for item in args.plain.split(","):
        init, _, epochs = item.partition(":")
        plain_train(data, init, args, int(epochs) if epochs else None)


# --------------------------------------------------------------------------------------------------
# ResNet-20 on CIFAR-10-format batches (generated: nothing is downloaded).


def write_cifar(directory: Path, n_train: int, n_test: int) -> Path:
    """CIFAR-10 python batches of random images: data_batch_1 (all training images) and test_batch."""
    import pickle

    import numpy as np

    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    for name, n in (("data_batch_1", n_train), ("test_batch", n_test)):
        labels = [int(c) for c in rng.integers(0, 10, n)]
        batch = {b"labels": labels, b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)}
        (directory / name).write_bytes(pickle.dumps(batch, protocol=2))
    return directory


def plain_resnet(path: str, batch_size: int) -> None:
    """One epoch of ResNet-20 on the batches at ``path``: the same 85/15 train/val split sizes, per-feature
    standardization, SGD (lr 0.01, momentum 0.9), and after the epoch the train and val loss and accuracy in
    eval mode (what initsweep records per epoch), then the test set's."""
    import pickle

    import numpy as np
    import torch
    from torch import nn

    from initsweep.core.models import ResNet  # the architecture, not the pipeline

    def batch(name: str):
        d = pickle.loads((Path(path) / name).read_bytes())
        return np.asarray(d[b"data"], np.float32).reshape(-1, 3, 32, 32) / 255, np.asarray(d[b"labels"])

    (x, y), (xt, yt) = batch("data_batch_1"), batch("test_batch")
    order = np.random.default_rng(0).permutation(len(x))
    n_val = int(round(0.15 * len(x)))
    tr, va = order[n_val:], order[:n_val]
    mean, std = x[tr].mean(0), x[tr].std(0) + 1e-12
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    xs = {k: t((v - mean) / std) for k, v in (("train", x[tr]), ("val", x[va]), ("test", xt))}
    ys = {"train": t(y[tr]), "val": t(y[va]), "test": t(yt)}
    torch.manual_seed(0)
    model = ResNet((3, 32, 32), 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    perm = torch.randperm(len(xs["train"]))
    model.train()
    for i in range(0, len(perm), batch_size):
        idx = perm[i : i + batch_size]
        loss = nn.functional.cross_entropy(model(xs["train"][idx]), ys["train"][idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        for part in ("train", "val", "test"):
            logits = torch.cat([model(xs[part][i : i + 1024]) for i in range(0, len(xs[part]), 1024)])
            nn.functional.cross_entropy(logits, ys[part]).item(), (logits.argmax(1) == ys[part]).float().mean().item()


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
    """(ours wall s, plain wall s, ours CPU s, plain CPU s): `python train.py` against the plain-loop process,
    alternated, medians over --repeats. CPU seconds are steadier than wall time on a shared machine."""
    train = [sys.executable, str(ROOT / "train.py"), *LONG_ARGS, f"trainer.epochs={epochs}", *args.override]
    plain = [sys.executable, __file__, "--plain-long", str(epochs)]
    ours, ref = [], []
    for _ in range(args.repeats):
        ours.append(Proc(train, cwd))
        ref.append(Proc(plain, cwd))
    return tuple(statistics.median(getattr(p, k) for p in runs) for k in ("wall", "cpu") for runs in (ours, ref))


# --------------------------------------------------------------------------------------------------
# Measurements


class Proc:
    """One finished subprocess: wall seconds, CPU seconds (user + system, its children included) and peak RSS
    in MB. CPU seconds barely change with machine load, wall seconds do."""

    def __init__(self, cmd: list[str], cwd: Path, check: bool = True) -> None:
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            t0 = time.perf_counter()
            p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err, text=True)
            _, status, usage = os.wait4(p.pid, 0)  # this child's own rusage (Popen.wait would discard it)
            self.wall = time.perf_counter() - t0
            p.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            self.stdout, self.stderr = out.read(), err.read()
        self.returncode = p.returncode
        self.cpu = usage.ru_utime + usage.ru_stime
        self.rss_mb = usage.ru_maxrss / 1024
        if check and p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{self.stderr[-3000:]}")


def wall(cmd: list[str], cwd: Path) -> float:
    return Proc(cmd, cwd).wall


def alternated(repeats: int, ours: Callable[[], float], ref: Callable[[], float]) -> tuple[float, float, float]:
    """(median ours, median reference, median of the per-pair ratios) over ``repeats`` alternated pairs."""
    pairs = []
    for i in range(repeats):
        if i % 2 == 0:
            o = ours()
            r = ref()
        else:
            r = ref()
            o = ours()
        pairs.append((o, r))
    return (
        statistics.median(o for o, _ in pairs),
        statistics.median(r for _, r in pairs),
        statistics.median(o / r for o, r in pairs),
    )


def model_args(args) -> list[str]:
    return [
        f"model.depth={args.depth}",
        f"model.width={args.width}",
        f"trainer.epochs={args.epochs}",
        f"trainer.batch_size={args.batch_size}",
        f"trainer.device={args.device}",
        *args.override,
    ]


def plain_cmd(args, inits: str, epochs: int | None = None) -> list[str]:
    return [
        sys.executable,
        __file__,
        "--plain",
        inits,
        "--epochs",
        str(epochs or args.epochs),
        "--width",
        str(args.width),
        "--depth",
        str(args.depth),
        "--batch-size",
        str(args.batch_size),
        "--device",
        args.device,
    ]


def bench_steps(args) -> tuple[float, float, float]:
    """(initsweep trainer s, plain loop s, ratio) of training time only, in this process."""
    sys.path.insert(0, str(ROOT / "tests"))
    from omegaconf import OmegaConf

    from conftest import compose
    from initsweep.core import data as datasets
    from initsweep.core.config import validate
    from initsweep.core.initializers import initialize
    from initsweep.core.models import build_model, model_activation
    from initsweep.core.trainer import fit

    plain = plain_data(args.device)
    config = validate(OmegaConf.to_container(compose(model_args(args)), resolve=True))
    data = datasets.load(config.data).to(plain[0].device)

    def ours() -> float:
        import torch

        torch.manual_seed(0)
        model = build_model(config.model, data.input_shape, data.num_classes).to(plain[0].device)
        initialize(model, config.init, model_activation(model), batch=data.x_train)
        t0 = time.perf_counter()
        for _ in fit(model, data, config.trainer, 0):
            pass
        return time.perf_counter() - t0

    plain_train(plain, "normal", args), ours()  # warm-up: first optimizer construction, allocator
    return alternated(args.repeats, ours, lambda: plain_train(plain, "normal", args))


class Bench:
    """The subprocess cases, run in one temporary directory with an existing store."""

    def __init__(self, args, cwd: Path) -> None:
        self.args, self.cwd = args, cwd
        self.train = [sys.executable, str(ROOT / "train.py")]
        (cwd / "noop.py").write_text(NOOP_APP.format(conf=str(ROOT / "conf")))
        self.noop = [sys.executable, str(cwd / "noop.py")]
        self.n = 0
        self.studies: dict[str, str] = {}  # the optuna case's last study name per pruner
        if not args.tiny:  # create the store once (in a smoke test, the first sweep creates it)
            wall([*self.train, "trainer.epochs=1", "tracking.log_plots=false"], cwd)

    def sweep_dir(self) -> str:
        self.n += 1
        return f"hydra.sweep.dir={self.cwd / 'multirun' / str(self.n)}"

    def sweep(self, sweep: list[str], extra: list[str] = ()) -> float:
        return wall([*self.train, "-m", *sweep, *model_args(self.args), *extra, self.sweep_dir()], self.cwd)

    def reference(self, sweep: list[str], inits: str, epochs: int | None = None) -> float:
        """The plain loop doing the same trainings plus the no-op Hydra multirun of the same jobs."""
        multirun = ["-m", *sweep, f"hydra.sweeper._target_={STOCK_SWEEPER}"] if sweep else []
        noop = [*self.noop, *multirun, *model_args(self.args), "~hydra.callbacks.sweep", self.sweep_dir()]
        noop = wall(noop, self.cwd)
        return wall(plain_cmd(self.args, inits, epochs), self.cwd) + noop

    def sweep_case(self, n_jobs: int) -> tuple[float, float, float]:
        seeds = ["seed=" + ",".join(map(str, range(n_jobs)))]
        return alternated(
            self.args.repeats,
            lambda: self.sweep(seeds),
            lambda: self.reference(seeds, ",".join(["normal"] * n_jobs)),
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3, help="alternated pairs per case (the median is reported)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--only", default=None, help=f"comma-separated cases (default: {ALL_CASES})")
    p.add_argument("--jobs", type=int, nargs=2, default=(4, 64), metavar=("FEW", "MANY"), help="slope: job counts")
    p.add_argument("--memory-jobs", type=int, nargs=2, default=(16, 256), metavar=("FEW", "MANY"))
    p.add_argument("--parallel-jobs", type=int, default=16)
    p.add_argument("--parallel-epochs", type=int, default=100)
    p.add_argument("--trials", type=int, default=30, help="optuna: trials per study")
    p.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra train.py override for the initsweep side, e.g. tracking.log_plots=false",
    )
    p.add_argument("--tiny", action="store_true", help=f"1 repeat, 2 epochs, width 32, cases {TINY_CASES}")
    p.add_argument("--plain", help=argparse.SUPPRESS)
    p.add_argument("--plain-long", type=int, help=argparse.SUPPRESS)
    p.add_argument("--long-epochs", default="2000,15000", help="epochs of the `long` cases (comma-separated)")
    p.add_argument("--cifar-train", type=int, default=5000, help="resnet: generated training images")
    p.add_argument("--cifar-test", type=int, default=1000, help="resnet: generated test images")
    p.add_argument("--checkpoint-epochs", type=int, default=60, help="checkpoint: epochs of each run")
    p.add_argument("--plain-resnet", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.plain:
        return plain_worker(args)
    if args.plain_resnet:
        return plain_resnet(args.plain_resnet, args.batch_size)
    if args.plain_long:
        return plain_long(args.plain_long)
    if args.tiny:
        args.repeats, args.epochs, args.width = 1, 2, 32
        args.jobs, args.memory_jobs, args.parallel_jobs, args.parallel_epochs, args.trials = (2, 4), (2, 4), 2, 2, 4
    cases = (args.only or (TINY_CASES if args.tiny else ALL_CASES)).split(",")
    rows: list[tuple[str, str, str, str, str, bool]] = []  # case, initsweep, reference, ratio, goal, met

    def add(case: str, ours: str, ref: str, ratio: float | str, goal: str, met: bool) -> None:
        rows.append((case, ours, ref, f"{ratio:.2f}" if isinstance(ratio, float) else ratio, goal, met))
        print(f"# {case}: {ours} vs {ref} -> {rows[-1][3]} (goal {goal})", file=sys.stderr, flush=True)

    if "steps" in cases:
        o, r, ratio = bench_steps(args)
        add("a. training steps (in-process)", f"{o:.2f} s", f"{r:.2f} s plain", ratio, "<= 1.11 x", ratio <= 1.11)
    with tempfile.TemporaryDirectory(prefix="initsweep-bench-") as tmp:
        b = Bench(args, Path(tmp))
        if "single" in cases:
            o, r, ratio = alternated(
                args.repeats, lambda: wall([*b.train, *model_args(args)], b.cwd), lambda: b.reference([], "normal")
            )
            add("b. single run", f"{o:.2f} s", f"{r:.2f} s plain + no-op", ratio, "<= 1.15 x", ratio <= 1.15)
        if "sweep4" in cases:
            sweep = [f"init={','.join(INITS)}"]
            o, r, ratio = alternated(args.repeats, lambda: b.sweep(sweep), lambda: b.reference(sweep, ",".join(INITS)))
            add("c. 4-init sweep", f"{o:.2f} s", f"{r:.2f} s plain + no-op", ratio, "<= 1.15 x", ratio <= 1.15)
        if "sweep16" in cases:
            o, r, ratio = b.sweep_case(16)
            add("d. 16-job sweep", f"{o:.2f} s", f"{r:.2f} s plain + no-op", ratio, "<= 1.15 x", ratio <= 1.15)
        if "slope" in cases:
            few, many = args.jobs
            (o1, r1, _), (o2, r2, _) = b.sweep_case(few), b.sweep_case(many)
            so, sr = (o2 - o1) / (many - few), (r2 - r1) / (many - few)
            add(
                f"e. marginal s per job ({few} -> {many} jobs)",
                f"{so:.3f} s",
                f"{sr:.3f} s plain + no-op",
                so / (sr + 0.05),
                "<= plain + no-op + 0.05 s",
                so <= sr + 0.05,
            )
        if "reject" in cases:
            runs = [Proc([*b.train, "init.std=abc"], b.cwd, check=False) for _ in range(args.repeats)]
            assert all(r.returncode == 2 for r in runs), runs[0].stderr
            w, c = statistics.median(r.wall for r in runs), statistics.median(r.cpu for r in runs)
            add("f. rejected config (init.std=abc)", f"{w:.2f} s wall, {c:.2f} s CPU", "-", "-", "<= 1.0 s", c <= 1.0)
        if "startup" in cases:
            for flag in ("--help", "--cfg job"):
                runs = [Proc([*b.train, *flag.split()], b.cwd) for _ in range(args.repeats)]
                w, c = statistics.median(r.wall for r in runs), statistics.median(r.cpu for r in runs)
                add(f"g. train.py {flag}", f"{w:.2f} s wall, {c:.2f} s CPU", "-", "-", "< 1 s", c < 1.0)
        if "parallel" in cases:
            seeds = ["seed=" + ",".join(map(str, range(args.parallel_jobs)))]
            epochs = [f"trainer.epochs={args.parallel_epochs}"]
            joblib = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
            o, r, ratio = alternated(
                args.repeats, lambda: b.sweep(seeds, [*epochs, *joblib]), lambda: b.sweep(seeds, epochs)
            )
            add(
                f"h. joblib n_jobs=2 vs basic ({args.parallel_jobs} jobs x {args.parallel_epochs} epochs)",
                f"{o:.2f} s",
                f"{r:.2f} s basic",
                ratio,
                "<= 0.6 x",
                ratio <= 0.6,
            )
        if "memory" in cases:
            rss = []
            for n_jobs in args.memory_jobs:
                seeds = "seed=" + ",".join(map(str, range(n_jobs)))
                cmd = [*b.train, "-m", seeds, *model_args(args), "trainer.epochs=1", b.sweep_dir()]
                rss.append(Proc(cmd, b.cwd).rss_mb)
            few, many = args.memory_jobs
            growth = rss[1] - rss[0]
            add(
                f"i. main-process peak RSS, {many} minus {few} jobs",
                f"{growth:+.0f} MB ({rss[0]:.0f} -> {rss[1]:.0f} MB)",
                "-",
                "-",
                "< 50 MB",
                growth < 50,
            )
        if "optuna" in cases:
            add(*optuna_case(b))
            add(*optuna_floor(b))
        if "resnet" in cases:
            add(*resnet_case(b))
        if "checkpoint" in cases:
            add(*checkpoint_case(b))
        if "long" in cases:  # issue 17: many tiny full-batch epochs
            for epochs in map(int, args.long_epochs.split(",")):
                ow, rw, oc, rc = bench_long(args, epochs, b.cwd)
                add(
                    f"j. {epochs} tiny epochs, wall",
                    f"{ow:.2f} s",
                    f"{rw:.2f} s plain",
                    ow / rw,
                    "<= 1.2 x",
                    ow <= 1.2 * rw,
                )
                add(
                    f"j. {epochs} tiny epochs, CPU",
                    f"{oc:.2f} s",
                    f"{rc:.2f} s plain",
                    oc / rc,
                    "<= 1.2 x",
                    oc <= 1.2 * rc,
                )
    print(
        f"\nepochs={args.epochs} depth={args.depth} width={args.width} batch={args.batch_size} "
        f"device={args.device} repeats={args.repeats} overrides={args.override or 'none'} "
        f"load average at the end={os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (medians)\n"
    )
    print("| case | initsweep | reference | ratio | goal | met |")
    print("|---|---|---|---|---|---|")
    for case, ours, ref, ratio, goal, met in rows:
        print(f"| {case} | {ours} | {ref} | {ratio} | {goal} | {'yes' if met else 'no'} |")


def resnet_case(b: Bench) -> tuple[str, str, str, float, str, bool]:
    """One tracked ResNet-20 epoch on generated CIFAR-10 batches vs the plain loop on the same files."""
    args = b.args
    data = write_cifar(b.cwd / "cifar", args.cifar_train, args.cifar_test)
    ours = [
        *b.train,
        "model=resnet",
        "data=cifar10",
        f"data.path={data}",
        "data.train_batches=[data_batch_1]",
        "trainer.epochs=1",
        f"trainer.batch_size={args.batch_size}",
        *args.override,
    ]
    plain = [sys.executable, __file__, "--plain-resnet", str(data), "--batch-size", str(args.batch_size)]
    noop = [*b.noop, "model=resnet", "data=cifar10", f"data.path={data}", "~hydra.callbacks.sweep"]
    o, r, ratio = alternated(args.repeats, lambda: wall(ours, b.cwd), lambda: wall(plain, b.cwd) + wall(noop, b.cwd))
    n = f"{args.cifar_train} images"
    return f"k. ResNet-20, 1 epoch, {n}", f"{o:.2f} s", f"{r:.2f} s plain + no-op", ratio, "<= 1.15 x", ratio <= 1.15


def checkpoint_case(b: Bench) -> tuple[str, str, str, float, str, bool]:
    """The default model for --checkpoint-epochs epochs, checkpointing every 10 epochs vs never."""
    epochs = [f"trainer.epochs={b.args.checkpoint_epochs}"]
    run = [*b.train, *model_args(b.args), *epochs]
    o, r, ratio = alternated(
        b.args.repeats,
        lambda: wall([*run, "trainer.checkpoint_every=10"], b.cwd),
        lambda: wall([*run, "trainer.checkpoint_every=null"], b.cwd),
    )
    case = f"l. checkpoints every 10 of {b.args.checkpoint_epochs} epochs"
    return case, f"{o:.2f} s", f"{r:.2f} s without", ratio, "<= 1.03 x", ratio <= 1.03


def optuna_case(b: Bench) -> tuple[str, str, str, float, str, bool]:
    """A normal_std study of --trials trials with the median pruner vs the same study without pruning."""
    import yaml

    args = b.args
    best: dict[str, list[float]] = {"median": [], "none": []}

    def study(pruner: str) -> float:
        b.n += 1
        sweep_dir = b.cwd / "multirun" / str(b.n)
        cmd = [*b.train, "-m", "hparams_search=normal_std", f"hydra.sweeper.pruner={pruner}"]
        b.studies[pruner] = f"bench-{b.n}"
        cmd += [f"hydra.sweeper.n_trials={args.trials}", f"hydra.sweeper.study_name=bench-{b.n}", *model_args(args)]
        seconds = wall([*cmd, f"hydra.sweep.dir={sweep_dir}"], b.cwd)
        results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
        best[pruner].append(float(results["best_value"]))
        return seconds

    o, r, ratio = alternated(args.repeats, lambda: study("median"), lambda: study("none"))
    bm, bn = statistics.median(best["median"]), statistics.median(best["none"])
    return (
        f"j. optuna {args.trials} trials, median pruner vs none",
        f"{o:.1f} s (best {bm:.4g})",
        f"{r:.1f} s (best {bn:.4g})",
        ratio,
        "<= 0.5 x, equal best",
        ratio <= 0.5,
    )


def optuna_floor(b: Bench) -> tuple[str, str, str, float, str, bool]:
    """What the optuna case's ratio would be for a tool that adds nothing to Hydra and the training: the no-op
    Hydra multirun of --trials jobs plus a plain loop training the epochs each trial of the last pruned study
    trained, against the same multirun plus the plain loop training every epoch (the last unpruned study)."""
    import optuna

    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(b.cwd / "mlruns" / "optuna" / "journal.log"))
    )
    pruned, full = (
        [int(t.user_attrs.get("epochs", 0)) for t in optuna.load_study(study_name=name, storage=storage).trials]
        for name in (b.studies["median"], b.studies["none"])  # the last study of each kind
    )
    seeds = ["seed=range(" + str(b.args.trials) + ")"]

    def reference(epochs: list[int]) -> float:
        return b.reference(seeds, ",".join(f"normal:{e}" for e in epochs if e > 0))

    o, r, ratio = alternated(b.args.repeats, lambda: reference(pruned), lambda: reference(full))
    return (
        "j. floor: no-op Hydra multirun + plain loop, the same epochs",
        f"{o:.1f} s ({sum(pruned)} epochs)",
        f"{r:.1f} s ({sum(full)} epochs)",
        ratio,
        "what a tool adding nothing would get",
        ratio <= 0.5,
    )


if __name__ == "__main__":
    main()
