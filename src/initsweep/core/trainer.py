"""The training loop: in-memory tensors, shuffled index-slice batches, a train and a validation pass per
evaluated epoch; streamed data (:class:`initsweep.core.data.Rows`) gives the same batches through a DataLoader.

It knows nothing of MLflow or Optuna. :func:`fit` yields one :class:`EpochMetrics` per epoch; the caller
logs it, reports it to a trial, or stops iterating to end training early.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor, nn

from initsweep.core.config import ConfigError, MetricsConfig, TrainerConfig
from initsweep.core.data import Dataset, Rows
from initsweep.core.models import loss_fn, predict


@dataclass(frozen=True)
class EpochMetrics:
    """One evaluated epoch. train_loss / train_acc: one full pass over the training set at the epoch's end
    (eval mode, the weights as they are then); train_loss_running: mean over the epoch's batches as trained;
    val_* after the epoch. epoch_s: seconds per epoch since the previous evaluation (training + evaluation);
    interval_s: those seconds in total; lr: the learning rate of the epoch's last step."""

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    epoch_s: float
    train_loss_running: float = math.nan
    lr: float = math.nan
    interval_s: float = math.nan

    @property
    def worst_train_loss(self) -> float:
        """The larger of the full-pass and the running train loss (NaN if either is): what a divergence
        check should see, since the running loss catches blow-ups within the epoch that the end misses."""
        values = (self.train_loss, self.train_loss_running)
        return math.nan if any(math.isnan(v) for v in values) else max(values)

    def as_metrics(self) -> dict[str, float]:
        """MLflow-style names: train/loss, train/acc, train/loss_running, train/lr, val/loss, val/acc,
        time/epoch_s."""
        return {
            "train/loss": self.train_loss,
            "train/acc": self.train_acc,
            "train/loss_running": self.train_loss_running,
            "train/lr": self.lr,
            "val/loss": self.val_loss,
            "val/acc": self.val_acc,
            "time/epoch_s": self.epoch_s,
        }


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an explicit device that is absent is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device = 'cuda' but no CUDA device is available (use auto or cpu)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("trainer.device = 'mps' but MPS is not available (use auto or cpu)")
    return torch.device(name)


def param_groups(model: nn.Module, lr: float, multipliers: Mapping[str, float] | None = None) -> Iterable[Any]:
    """The optimizer's parameters: ``model.parameters()`` (one group) without ``multipliers``; else one group
    per distinct multiplier (parameters by name; a missing name: 1), each with ``lr_mult`` and its lr = lr x
    lr_mult (:mod:`initsweep.core.parametrization`)."""
    if not multipliers:
        return model.parameters()
    groups: dict[float, list[Tensor]] = {}
    for name, p in model.named_parameters():
        groups.setdefault(multipliers.get(name, 1.0), []).append(p)
    return [{"params": ps, "lr": lr * mult, "lr_mult": mult} for mult, ps in groups.items()]


def base_lr(optimizer: torch.optim.Optimizer) -> float:
    """trainer.lr x the schedule's factor now: the first group's lr over its ``lr_mult``."""
    group = optimizer.param_groups[0]
    return group["lr"] / group.get("lr_mult", 1.0)


def make_optimizer(params, cfg: TrainerConfig) -> torch.optim.Optimizer:
    """SGD (with momentum) or Adam, with the config's lr and weight decay (``params``: tensors or groups)."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for ``precision == "bf16"`` (matmuls in bfloat16, losses in float32); else a no-op."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor | Rows, y: Tensor, batch_size: int = 4096) -> tuple[float, float]:
    """(mean loss, accuracy) of ``model`` on (x, y), in eval mode: the sums over batches of the per-example
    losses and hits, / n; (nan, nan) on an empty set. Streamed rows come in batches of at most ``eval_batch``.
    The loss is the model's: cross-entropy (softmax head) or binary cross-entropy (sigmoid head)."""
    if len(x) == 0:
        return math.nan, math.nan
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for xb, target in _batches(x, y, None, 0, batch_size if isinstance(x, Tensor) else min(batch_size, x.eval_batch)):
        logits = model(xb).float()
        loss_sum += loss_fn(logits, target, reduction="sum").item()
        correct += int((predict(logits) == target).sum().item())  # a count: item() of an integer tensor
    model.train(was_training)
    return loss_sum / len(x), correct / len(x)


# Train and val sets with this many examples in all are measured in one forward pass (see Measure).
FUSED_EVAL_MAX = 4096


class Measure:
    """The end-of-epoch measurement: (train loss, train acc, val loss, val acc) of a model, in eval mode.

    Small sets (train + val <= FUSED_EVAL_MAX examples) go through the model in one forward pass over their
    concatenation (made once); the per-example losses and hits are summed per set in one op and read with
    one host sync; a val set that is the training set is measured once. Larger sets are measured in batches
    by :func:`evaluate`. The values are those of :func:`evaluate` either way."""

    def __init__(self, data: Dataset):
        self.data = data
        parts = [(data.x_train, data.y_train)] + ([] if data.val_is_train else [(data.x_val, data.y_val)])
        sizes = [len(y) for _, y in parts]
        self.fused = not data.streamed and 0 not in sizes and sum(sizes) <= FUSED_EVAL_MAX
        if self.fused:
            device = data.y_train.device
            self.sizes = sizes
            self.x = torch.cat([cast(Tensor, x) for x, _ in parts])
            self.y = torch.cat([y for _, y in parts])
            self.part = torch.cat([torch.full((k,), i, device=device) for i, k in enumerate(sizes)])  # set of row
            self.sums = torch.zeros(len(parts), 2, device=device)

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> tuple[float, float, float, float]:
        d = self.data
        if not self.fused:
            return (*evaluate(model, d.x_train, d.y_train), *evaluate(model, d.x_val, d.y_val))
        was_training = model.training
        model.eval()
        logits = model(self.x).float()
        loss = loss_fn(logits, self.y, reduction="none")
        per_row = torch.stack((loss, (predict(logits) == self.y).to(loss.dtype)), 1)
        model.train(was_training)
        sums = self.sums.index_add(0, self.part, per_row).tolist()  # [[loss sum, hits], ...] per set
        means = [(loss_sum / k, hits / k) for (loss_sum, hits), k in zip(sums, self.sizes)]
        return (*means[0], *means[-1])  # train, then val (the same when val is the training set)


def batch_size_of(cfg: TrainerConfig, n: int) -> int:
    """Examples per step: cfg.batch_size, or all n for ``full``."""
    return n if cfg.batch_size == "full" else min(int(cfg.batch_size), n)


def planned_epochs(cfg: TrainerConfig, n: int) -> int:
    """Epochs :func:`fit` runs on n training examples: cfg.epochs, or ceil(cfg.steps / steps per epoch)."""
    per_epoch = math.ceil(n / batch_size_of(cfg, n))
    return math.ceil(cfg.steps / per_epoch) if cfg.steps is not None else cfg.epochs


def lr_factor(step: int, steps_per_epoch: int, total_steps: int, cfg: TrainerConfig) -> float:
    """Multiplier of cfg.lr at optimizer step ``step`` (0-based).

    Warm-up: (step + 1) / W for step < W = round(warmup_epochs x steps_per_epoch). Then, with
    e = step // steps_per_epoch the epoch (0-based): step: gamma^(e // step_epochs); cosine:
    (1 + cos(pi t)) / 2 with t = (step - W) / (total_steps - W), the fraction of the post-warm-up steps done.
    """
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return (step + 1) / warmup
    if cfg.schedule == "step":
        return cfg.gamma ** ((step // steps_per_epoch) // cfg.step_epochs)
    if cfg.schedule == "cosine":
        t = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * t))
    return 1.0


class BestState:
    """A copy (in memory) of the weights at the best validation accuracy seen (the first of equal ones)."""

    def __init__(self) -> None:
        self.epoch: int | None = None
        self.val_acc = -math.inf
        self.state: dict[str, Tensor] | None = None

    def update(self, model: nn.Module, epoch: int, val_acc: float) -> None:
        """Keep the weights of ``model`` when ``val_acc`` beats the best so far."""
        if val_acc > self.val_acc:
            self.epoch, self.val_acc = epoch, val_acc
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def evaluate(self, model: nn.Module, x: Tensor | Rows, y: Tensor) -> tuple[float, float]:
        """(loss, accuracy) on (x, y) of ``model`` with the best weights; ``model`` is left as it was."""
        if self.state is None:
            return math.nan, math.nan
        current = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.state)
        try:
            return evaluate(model, x, y)
        finally:
            model.load_state_dict(current)


@dataclass
class TrainState:
    """Where :func:`fit` stopped, enough to go on exactly: ``epoch`` epochs trained and ``position`` examples
    into the next one (0 at an epoch's end); the weights, the optimizer's state, the batch-order generator's
    state at the start of that next epoch, torch's global RNG state, the running loss sum and example count
    of the epoch in progress, and the best-val weights (:class:`BestState`)."""

    epoch: int
    step: int
    position: int
    model: dict[str, Tensor]
    optimizer: dict[str, Any]
    order_rng: Tensor
    torch_rng: Tensor
    loss_sum: float
    seen: int
    best_epoch: int | None
    best_val_acc: float
    best_state: dict[str, Tensor] | None


class Preempted(Exception):
    """:func:`fit` stopped because ``stop_requested`` said so, after handing its state to ``on_checkpoint``."""


def _capture(
    model: nn.Module, optimizer: torch.optim.Optimizer, order_rng: Tensor, best: BestState | None, **where: Any
) -> TrainState:
    """A :class:`TrainState` of copies (training may go on), at ``where`` (epoch, step, position, loss_sum, seen)."""
    return TrainState(
        model={k: v.detach().clone() for k, v in model.state_dict().items()},
        optimizer=copy.deepcopy(optimizer.state_dict()),
        order_rng=order_rng.clone(),
        torch_rng=torch.get_rng_state(),
        best_epoch=best.epoch if best else None,
        best_val_acc=best.val_acc if best else -math.inf,
        best_state=best.state if best else None,
        **where,
    )


def _restore(state: TrainState, model: nn.Module, optimizer: torch.optim.Optimizer, best: BestState | None) -> None:
    model.load_state_dict(state.model)
    optimizer.load_state_dict(state.optimizer)
    torch.set_rng_state(state.torch_rng)
    if best is not None:
        best.epoch, best.val_acc, best.state = state.best_epoch, state.best_val_acc, state.best_state


def fit(
    model: nn.Module,
    data: Dataset,
    cfg: TrainerConfig,
    seed: int,
    best: BestState | None = None,
    overlap: bool = False,
    resume: TrainState | None = None,
    on_checkpoint: Callable[[TrainState], None] | None = None,
    stop_requested: Callable[[], bool] | None = None,
    lr_multipliers: Mapping[str, float] | None = None,
) -> Iterator[EpochMetrics]:
    """Train ``model`` on ``data`` for cfg.epochs epochs (or cfg.steps optimizer steps), yielding the
    metrics of every cfg.eval_every-th epoch and of the last one. ``best`` (optional) keeps the weights
    of the best val accuracy.

    Batches are slices of a fresh permutation of the training indices each epoch, drawn from a generator
    seeded with ``seed``: the same seed gives the same batches and, on CPU, identical metrics.

    ``overlap`` (for a CPU with a core to spare): an epoch's end-of-epoch measurement (train and val sets) runs
    in a second thread, on a copy of the weights, while the next epoch trains; the epoch is yielded once it is
    measured, and its epoch_s counts training only. The caller sees the same metrics and, while it holds an
    epoch, the model with that epoch's weights, also when it stops there; stopping costs the one epoch trained
    ahead. Not used for a compiled model, nor for streamed data (two threads would start DataLoader worker
    processes at once, and forking beside a running thread is unsafe: a worker died so in a test).

    Checkpoints: ``on_checkpoint`` gets a :class:`TrainState` after every cfg.checkpoint_every-th evaluated
    epoch (measured in this thread, once the caller has seen it) and, when ``stop_requested()`` turns true
    (checked after every optimizer step), at that step, after which fit raises :class:`Preempted`. ``resume``
    (such a state) goes on from there: the same batches, the same updates, as if never stopped.

    ``lr_multipliers`` (parameter name -> factor, :mod:`initsweep.core.parametrization`): each parameter's lr is
    cfg.lr x its factor x the schedule's; the metrics' lr is cfg.lr x the schedule's.
    """
    optimizer = make_optimizer(param_groups(model, cfg.lr, lr_multipliers), cfg)
    generator = torch.Generator().manual_seed(seed)
    if resume is not None:
        _restore(resume, model, optimizer, best)
        generator.set_state(resume.order_rng)
    x, y = data.x_train, data.y_train
    n = len(x)
    bs = batch_size_of(cfg, n)
    per_epoch = math.ceil(n / bs)
    epochs = planned_epochs(cfg, n)
    total = cfg.steps if cfg.steps is not None else epochs * per_epoch
    # torch.compile of a Module returns a Module (OptimizedModule); its stub types the result as a bare callable.
    net = cast(nn.Module, torch.compile(model)) if cfg.compile else model
    measure = Measure(data)
    ahead = _Ahead(model, measure, cfg.precision) if overlap and not cfg.compile and not data.streamed else None
    model.train()
    step, t0, since = (resume.step if resume else 0), time.perf_counter(), 0
    every = (cfg.checkpoint_every or 0) if on_checkpoint is not None else 0
    stop = stop_requested or (lambda: False)

    def measured_now(epoch: int, loss_sum: Tensor, seen: int) -> EpochMetrics:
        with autocast(x.device, cfg.precision):
            train_loss, train_acc, val_loss, val_acc = measure(net)
        if best is not None:
            best.update(model, epoch, val_acc)
        elapsed = time.perf_counter() - t0
        timing = (elapsed / since, loss_sum.item() / max(seen, 1), base_lr(optimizer), elapsed)
        return EpochMetrics(epoch, train_loss, train_acc, val_loss, val_acc, *timing)

    try:
        for epoch in range((resume.epoch if resume else 0) + 1, epochs + 1):
            order_rng = generator.get_state()
            # Full batch: every step sees all examples in order, no permutation to draw.
            order = torch.randperm(n, generator=generator).to(x.device) if bs < n else None
            # Running sums stay on the device (no .item() per step, which would synchronize a GPU).
            mid_epoch = resume is not None and resume.position and epoch == resume.epoch + 1
            loss_sum = torch.full((), resume.loss_sum if mid_epoch else 0.0, device=x.device)  # type: ignore[union-attr]
            offset = resume.position if mid_epoch else 0  # type: ignore[union-attr]
            step, seen, stopped = _train_epoch(net, optimizer, cfg, x, y, order, offset, step, total, loss_sum, stop)
            if stopped is not None:
                yield from _pending(ahead, best)  # the epoch measured meanwhile is the caller's first
                if on_checkpoint is not None:
                    where = dict(epoch=epoch - 1, step=step, position=stopped, loss_sum=loss_sum.item(), seen=seen)
                    on_checkpoint(_capture(model, optimizer, order_rng, best, **where))
                raise Preempted(f"stopped at epoch {epoch}, step {step}")
            since += 1
            if epoch % cfg.eval_every and epoch != epochs:
                continue
            due = bool(every) and epoch % every == 0 and epoch != epochs
            if ahead is None or due:
                yield from _pending(ahead, best)
                yield measured_now(epoch, loss_sum, seen)
                if due and on_checkpoint is not None:  # the caller has this epoch: save what comes after it
                    at = dict(epoch=epoch, step=step, position=0, loss_sum=0.0, seen=0)
                    on_checkpoint(_capture(model, optimizer, generator.get_state(), best, **at))
            else:
                elapsed = time.perf_counter() - t0
                timing = (elapsed / since, loss_sum.item() / seen, base_lr(optimizer), elapsed)
                yield from _pending(ahead, best)  # the previous evaluated epoch, measured meanwhile
                ahead.start(epoch, timing)
            t0, since = time.perf_counter(), 0
        yield from _pending(ahead, best)  # the last epoch
    finally:
        if ahead is not None:  # a pass still running (the caller stopped early) ends first
            ahead.pool.shutdown()


def _pending(ahead: _Ahead | None, best: BestState | None) -> Iterator[EpochMetrics]:
    """The epoch :class:`_Ahead` measured meanwhile, if any."""
    if ahead is not None and (held := ahead.hand_over()) is not None:
        yield from ahead.give(held, best)


def _train_epoch(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    cfg: TrainerConfig,
    x: Tensor | Rows,
    y: Tensor,
    order: Tensor | None,
    offset: int,
    step: int,
    total: int,
    loss_sum: Tensor,
    stop: Callable[[], bool],
) -> tuple[int, int, int | None]:
    """Train on the epoch's batches from example ``offset`` on (:func:`_batches` of ``order``), adding each
    batch's loss x size to ``loss_sum``, until the epoch ends, ``total`` steps are done, or ``stop()`` after a
    step. Returns (steps done in all, examples seen this epoch, where it stopped early or None)."""
    n, bs = len(y), batch_size_of(cfg, len(y))
    per_epoch = math.ceil(n / bs)
    seen = offset
    for xb, yb in _batches(x, y, order, offset, bs):
        if step == total:
            break
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * group.get("lr_mult", 1.0) * lr_factor(step, per_epoch, total, cfg)
        with autocast(x.device, cfg.precision):  # forward only; backward runs outside autocast
            loss = loss_fn(net(xb).float(), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum.add_(loss.detach(), alpha=len(yb))
        seen += len(yb)
        step += 1
        if stop():
            return step, seen, seen
    return step, seen, None


def _batches(
    x: Tensor | Rows, y: Tensor, order: Tensor | None, offset: int, batch_size: int
) -> Iterator[tuple[Tensor, Tensor]]:
    """(x, y) batches of ``batch_size`` examples (the last one smaller): ``order[offset:]`` in slices (None:
    the examples in order, all at once when batch_size >= n). Tensors are indexed; streamed rows are read by
    their DataLoader, the same examples in the same batches, and their labels indexed."""
    n = len(y)
    if isinstance(x, Tensor):
        for start in range(offset, n, batch_size):
            if order is None:
                yield (x, y) if batch_size >= n else (x[start : start + batch_size], y[start : start + batch_size])
            else:
                idx = order[start : start + batch_size]
                yield x[idx], y[idx]
        return
    chunks = (order if order is not None else torch.arange(n, device=y.device))[offset:].split(batch_size)
    yield from zip(x.batches([c.tolist() for c in chunks]), (y[c] for c in chunks))


class _Ahead:
    """:func:`fit`'s ``overlap``: the end-of-epoch :class:`Measure` in a second thread, on a copy of the model
    loaded with that epoch's weights (shown to the caller when the epoch is yielded)."""

    def __init__(self, model: nn.Module, measure: Measure, precision: str):
        from concurrent.futures import ThreadPoolExecutor

        self.model, self.measure, self.precision = model, measure, precision
        self.shadow = copy.deepcopy(model).eval()  # holds the pending epoch's weights until it is yielded
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="initsweep-measure")
        self.pending: tuple | None = None  # (epoch, timing, future of the measurement)

    def start(self, epoch: int, timing: tuple) -> None:
        self.shadow.load_state_dict(self.model.state_dict())
        self.pending = (epoch, timing, self.pool.submit(self._measure))

    def _measure(self) -> tuple[float, float, float, float]:
        with autocast(self.measure.data.device, self.precision):
            return self.measure(self.shadow)

    def hand_over(self) -> tuple | None:
        """The pending epoch (None when there is none)."""
        held, self.pending = self.pending, None
        return held

    def give(self, held: tuple, best: BestState | None) -> Iterator[EpochMetrics]:
        """Yield the held epoch, once measured, with the model showing its weights; training's come back after."""
        epoch, timing, measured = held
        train_loss, train_acc, val_loss, val_acc = measured.result()
        current = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(self.shadow.state_dict())
        if best is not None:
            best.update(self.model, epoch, val_acc)
        yield EpochMetrics(epoch, train_loss, train_acc, val_loss, val_acc, *timing)  # timing: epoch_s .. interval_s
        self.model.load_state_dict(current)  # not reached when the caller stops at this epoch


def divergence(epoch: EpochMetrics, initial_loss: float, factor: float | None) -> str | None:
    """Why training has diverged after ``epoch``, or None: a non-finite train or val loss, or a train loss
    above ``factor`` x the loss at initialization. The train loss checked is the epoch's worst (full pass or
    running mean), so a blow-up within the epoch counts. The one place that decides divergence."""
    train_loss = epoch.worst_train_loss
    for name, value in (("train loss", train_loss), ("val loss", epoch.val_loss)):
        if not math.isfinite(value):
            return f"{name} is {value}"
    if factor is not None and train_loss > factor * initial_loss:
        return f"train loss {train_loss:.4g} > {factor:g} x initial loss {initial_loss:.4g}"
    return None


def chance_accuracy(y: Tensor) -> float:
    """Accuracy of always predicting the most frequent class of ``y`` (1/C for balanced classes)."""
    return torch.bincount(y).max().item() / len(y) if len(y) else math.nan


def summary_context(
    model: nn.Module,
    data: Dataset,
    best: BestState,
    cfg: MetricsConfig,
    at_best: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """The keyword arguments of :func:`summarize` beyond the history: the best-val state's test metrics
    (``at_best`` when the caller has them: the best epoch was the last, its weights the final ones), the val
    set's chance accuracy, the chance loss ln C, and the metrics config."""
    return {
        "at_best": at_best if at_best is not None else best.evaluate(model, data.x_test, data.y_test),
        "chance_acc": chance_accuracy(data.y_val),
        "chance_loss": math.log(max(2, data.num_classes)),
        "cfg": cfg,
    }


def _first_epoch(history: Sequence[EpochMetrics], reached: Callable[[EpochMetrics], bool]) -> float:
    """The first evaluated epoch where ``reached`` holds, as a float; NaN (never) when none."""
    return float(next((h.epoch for h in history if reached(h)), math.nan))


def summarize(
    history: Sequence[EpochMetrics],
    test_loss: float,
    test_acc: float,
    at_best: tuple[float, float] | None = None,
    chance_acc: float | None = None,
    chance_loss: float | None = None,
    cfg: MetricsConfig | None = None,
) -> dict[str, float]:
    """End-of-run metrics. Non-finite losses count as the worst value; NaN means "never".

    - val/acc_best, val/loss_best, val/acc_final, val/epoch_best, train/loss_final, train/acc_final, test/*.
    - val/epochs_to_learn: first epoch with val acc >= target = chance + learn_level x (1 - chance)
      (``val/learn_target``); NaN when never reached.
    - val/epochs_to_90pct: first epoch with val acc >= 0.9 x best, NaN when the run never reached the target
      (90% of a chance-level best is reached at once and measures nothing).
    - train/epochs_to_loss: first epoch with full-pass train loss < loss_threshold (default ln(C) / 2).
    - val/acc_drop = best - final val acc; val/collapsed = 1 when it exceeds collapse_drop, else 0.
    - test/acc_at_best_val, test/loss_at_best_val: test metrics of the weights at the best val accuracy.
    """
    cfg = cfg or MetricsConfig()
    accs = [h.val_acc for h in history]
    losses = [h.val_loss if math.isfinite(h.val_loss) else math.inf for h in history]
    best = max(accs)
    out = {
        "val/acc_best": best,
        "val/loss_best": min(losses),
        "val/acc_final": accs[-1],
        "val/epoch_best": float(history[accs.index(best)].epoch),
        "val/epochs_to_90pct": _first_epoch(history, lambda h: h.val_acc >= 0.9 * best),
        "val/acc_drop": best - accs[-1],
        "val/collapsed": float(best - accs[-1] > cfg.collapse_drop),
        "train/loss_final": history[-1].train_loss,
        "train/acc_final": history[-1].train_acc,
        "test/loss": test_loss,
        "test/acc": test_acc,
        "time/train_s": sum(h.interval_s if math.isfinite(h.interval_s) else h.epoch_s for h in history),
    }
    if chance_acc is not None and math.isfinite(chance_acc):
        target = chance_acc + cfg.learn_level * (1 - chance_acc)
        out["val/chance_acc"] = chance_acc
        out["val/learn_target"] = target
        out["val/epochs_to_learn"] = _first_epoch(history, lambda h: h.val_acc >= target)
        if math.isnan(out["val/epochs_to_learn"]):
            out["val/epochs_to_90pct"] = math.nan
    threshold = cfg.loss_threshold if cfg.loss_threshold is not None else (chance_loss or math.nan) / 2
    if math.isfinite(threshold):
        out["train/loss_threshold"] = threshold
        out["train/epochs_to_loss"] = _first_epoch(history, lambda h: h.train_loss < threshold)
    if at_best is not None:
        out["test/loss_at_best_val"], out["test/acc_at_best_val"] = at_best
    return out
