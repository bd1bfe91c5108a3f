"""Signal-propagation diagnostics: how a fixed batch travels forward and its gradient backward.

:func:`diagnose` runs one forward and one backward pass of a model on a fixed batch, reads every named
layer's output through forward hooks, and returns ``diag/<layer>/...`` metrics (the layer names of
:func:`initsweep.core.initializers.init_layers`: fc1, fc2, ..., out) plus warnings. It leaves the model as it
found it: no ``.grad`` is written (gradients come from :func:`torch.autograd.grad`), no random number is
drawn, and the train/eval mode is restored. It knows nothing about MLflow.

Per layer ``L`` (statistics over all batch x unit elements):

- ``diag/L/preact_mean``, ``preact_std``: of the layer's output z = W a + b (pre-activation).
- ``diag/L/act_mean``, ``act_std``: of the activation that follows it, a = f(z) (for the output layer
  and layers without an activation, a = z: the logits).
- ``diag/L/act_std_ratio``: act_std(L) / act_std(previous layer); the previous layer of the first one is
  the input batch. Omitted when the previous std is 0 (the ratio is undefined).
- ``diag/L/dead_frac`` (ReLU): fraction of units that are never active (a = 0) on the whole batch.
- ``diag/L/saturated_frac`` (tanh, sigmoid): fraction of units that sit near a bound of the activation
  (|tanh| > 1 - tol; sigmoid < tol or > 1 - tol) on every example of the batch, the same "no gradient
  for any example" criterion as a dead ReLU; ``saturated_act_frac``: fraction of (example, unit)
  activations near a bound.
- ``diag/L/grad_out_std``: std of dLoss/dz, the gradient of the mean cross-entropy w.r.t. the layer's
  output.
- ``diag/L/weight_grad_norm``: Frobenius norm of dLoss/dW.
- ``diag/L/duplicate_units``: number of units whose incoming weights and bias equal those of another
  unit of the layer within ``duplicate_tol`` (max absolute difference, relative to the layer's largest
  absolute weight). Duplicated units receive identical gradients and stay duplicated: symmetry is not
  broken.

And ``diag/input_std``, ``diag/initial_loss`` (mean cross-entropy on the batch) beside
``diag/ln_num_classes`` = ln(C), the loss of a uniform prediction over C classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from initsweep.core.data import Rows
from initsweep.core.initializers import Layer, init_layers
from initsweep.core.models import loss_fn, residual_stream

SATURATING = (nn.Tanh, nn.Sigmoid)
# Activations whose output is zero on a whole region (a unit can die).
DYING = (nn.ReLU,)


@dataclass(frozen=True)
class Diagnostics:
    """One diagnosis: the metrics to log, the warnings, and the per-layer profile for plots."""

    metrics: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)
    act_std: list[float] = field(default_factory=list)
    grad_std: list[float] = field(default_factory=list)
    spectrum: list[float] = field(default_factory=list)  # hidden-Jacobian singular values (diagnostics.isometry)

    @property
    def warning(self) -> str | None:
        """All warnings on one line, or None."""
        return "; ".join(self.warnings) or None


def fixed_batch(x: Tensor | Rows, y: Tensor, batch_size: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """The same ``batch_size`` examples for every run: a permutation drawn from its own generator.

    The training seed plays no part, so runs that differ only by seed are diagnosed on the same batch.
    Streamed rows (:class:`initsweep.core.data.Rows`) give the same examples, read from their source.
    """
    n = len(x)
    if batch_size >= n:
        return (x, y) if isinstance(x, Tensor) else (x.take(torch.arange(n)), y)
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:batch_size].to(y.device)
    return (x[idx] if isinstance(x, Tensor) else x.take(idx)), y[idx]


def layer_activations(model: nn.Module) -> list[tuple[str, Layer, nn.Module | None]]:
    """(name, layer, activation module or None) for every layer of :func:`init_layers`.

    The activation of a layer is the parameter-free module that directly follows it among its parent's
    children (as in an ``nn.Sequential``: fc1 -> act1); None when the next module has parameters or
    there is none.
    """
    following: dict[int, nn.Module] = {}
    for parent in model.modules():
        children = list(parent.children())
        for a, b in zip(children, children[1:]):
            if not any(True for _ in b.parameters()) and not list(b.children()):
                following[id(a)] = b
    return [(name, m, following.get(id(m))) for name, m in init_layers(model)]


def duplicate_units(layer: Layer, tol: float = 1e-6) -> int:
    """How many units of ``layer`` have incoming weights (and bias) equal to another unit's.

    Two units i != j are duplicates when max_k |w_ik - w_jk| <= tol * max(1, max |W|). Since the difference
    of two rows' means is at most that maximum, only units whose mean lies within the tolerance of another's
    are compared (none, for a random init): the count is exact either way.
    """
    w = layer.weight.detach().flatten(1)
    if layer.bias is not None:
        w = torch.cat([w, layer.bias.detach().view(-1, 1)], dim=1)
    w = w.double()
    if len(w) < 2:
        return 0
    scale = max(1.0, w.abs().max().item())
    threshold = tol * scale
    means, order = torch.sort(w.mean(dim=1))
    rounding = 4 * w.shape[1] * torch.finfo(w.dtype).eps * scale  # bounds the error of two computed means
    near = (means[1:] - means[:-1]) <= threshold + rounding
    candidate = torch.zeros(len(w), dtype=torch.bool, device=w.device)
    candidate[order[1:][near]] = candidate[order[:-1][near]] = True
    w = w[candidate]
    n = len(w)
    if n < 2:
        return 0
    duplicated = torch.zeros(n, dtype=torch.bool, device=w.device)
    chunk = max(1, (1 << 22) // n)  # bounds the distance matrix held at once to ~4M entries
    for start in range(0, n, chunk):
        dist = torch.cdist(w[start : start + chunk], w, p=float("inf"))
        rows = torch.arange(start, min(start + chunk, n), device=w.device)
        dist[rows - start, rows] = math.inf  # a unit does not duplicate itself
        duplicated[start : start + chunk] = (dist <= threshold).any(dim=1)
    return int(duplicated.sum().item())


def _std(t: Tensor) -> float:
    """Std over all elements, in float64 (float32 overflows on the squares of exploding activations)."""
    return t.double().std().item() if t.numel() > 1 else 0.0


def diagnose(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    warn_factor: float = 100.0,
    duplicate_tol: float = 1e-6,
    saturation_tol: float = 0.01,
) -> Diagnostics:
    """Forward and backward ``(x, y)`` through ``model`` and measure every layer (see the module doc).

    Warnings: hidden layers with duplicate units (symmetry not broken); activation std changing by more
    than ``warn_factor`` (either way) from the first to the last hidden layer; a non-finite loss.

    A residual model (``residual_stream()``, :class:`initsweep.core.models.ResidualStream`) is judged on its
    stream: the std of x_0 (the blocks' input) against x_L (their output), not a branch's last layer against the
    input layer; and a branch's last layer may have duplicate units (Fixup's and zero-gamma's zero layers): its
    units get distinct gradients through the skip path, dLoss/dW = g a^T with g = dLoss/dx the stream's gradient.
    """
    named = layer_activations(model)
    outputs: dict[str, Tensor] = {}  # layer output z, part of the graph
    acts: dict[str, Tensor] = {}
    stream = residual_stream(model)
    ends: list[Tensor] = []  # the stream's x_0 and x_L

    def stream_ends(_module: nn.Module, inputs: tuple, output: Tensor) -> None:
        ends[:] = [inputs[0], output]

    handles = [stream.blocks.register_forward_hook(stream_ends)] if stream is not None else []

    def keep(store: dict[str, Tensor], name: str):
        def hook(_module: nn.Module, _inputs: tuple, output: Tensor) -> None:
            store[name] = output

        return hook

    for name, layer, act in named:
        handles.append(layer.register_forward_hook(keep(outputs, name)))
        if act is not None:
            handles.append(act.register_forward_hook(keep(acts, name)))
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            logits = model(x)
            loss = loss_fn(logits, y)
            names = [n for n, _, _ in named]
            weights = [layer.weight for _, layer, _ in named]
            grads = torch.autograd.grad(loss, [outputs[n] for n in names] + weights, allow_unused=True)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    num_classes = max(2, logits.shape[-1])  # a sigmoid head has one unit for two classes
    input_std = _std(x)
    metrics: dict[str, float] = {
        "diag/initial_loss": loss.item(),
        "diag/ln_num_classes": math.log(num_classes),
        "diag/input_std": input_std,
    }
    profile_act, profile_grad = [], []
    prev_std = input_std
    hidden: list[tuple[str, float, int, int]] = []  # (name, act_std, duplicates, units)
    branch_outputs = {id(m) for m in stream.branch_outputs} if stream is not None else set()
    with torch.no_grad():
        for i, (name, layer, act_module) in enumerate(named):
            z = outputs[name].detach()
            a = acts[name].detach() if name in acts else z
            p = f"diag/{name}"
            act_std = _std(a)
            metrics[f"{p}/preact_mean"] = z.double().mean().item()
            metrics[f"{p}/preact_std"] = _std(z)
            metrics[f"{p}/act_mean"] = a.double().mean().item()
            metrics[f"{p}/act_std"] = act_std
            if prev_std > 0:
                metrics[f"{p}/act_std_ratio"] = act_std / prev_std
            units = a.flatten(1) if a.dim() > 1 else a.view(-1, 1)
            if isinstance(act_module, DYING):
                metrics[f"{p}/dead_frac"] = (units <= 0).all(dim=0).float().mean().item()
            elif isinstance(act_module, SATURATING):
                lo, hi = (-1.0, 1.0) if isinstance(act_module, nn.Tanh) else (0.0, 1.0)
                near = (units <= lo + saturation_tol) | (units >= hi - saturation_tol)
                metrics[f"{p}/saturated_frac"] = near.all(dim=0).float().mean().item()
                metrics[f"{p}/saturated_act_frac"] = near.float().mean().item()
            g_out, g_w = grads[i], grads[len(named) + i]
            grad_std = _std(g_out) if g_out is not None else 0.0
            metrics[f"{p}/grad_out_std"] = grad_std
            metrics[f"{p}/weight_grad_norm"] = g_w.double().norm().item() if g_w is not None else 0.0
            dups = duplicate_units(layer, duplicate_tol)
            metrics[f"{p}/duplicate_units"] = float(dups)
            profile_act.append(act_std)
            profile_grad.append(grad_std)
            if i < len(named) - 1:
                hidden.append((name, act_std, 0 if id(layer) in branch_outputs else dups, layer.weight.shape[0]))
            prev_std = act_std
        stds = _compared_stds(hidden, [e.detach() for e in ends])

    warnings = _warnings(hidden, stds, loss.item(), warn_factor)
    return Diagnostics(metrics, warnings, [n for n, _, _ in named], profile_act, profile_grad)


def _compared_stds(hidden: list[tuple[str, float, int, int]], ends: list[Tensor]) -> list[tuple[str, float]]:
    """The two activations (name, std) the std warning compares: a residual stream's x_0 and x_L (``ends``), else
    the first and the last hidden layer (none with fewer than two)."""
    if ends:
        return [("the residual stream x_0", _std(ends[0])), ("x_L", _std(ends[1]))]
    return [(n, s) for n, s, _, _ in (hidden[0], hidden[-1])] if len(hidden) >= 2 else []


WARNED_LAYERS = 3  # layers a warning names; a model of 100 blocks gets "... and 97 more", not a 3 kB line


def _warnings(
    hidden: list[tuple[str, float, int, int]], stds: list[tuple[str, float]], loss: float, warn_factor: float
) -> list[str]:
    """The reasons a run is unlikely to train well, judged from its hidden layers (name, act std, duplicates,
    units), the two activations whose std the check compares (name, std) and the initial loss."""
    out = []
    dup = [f"{name} {d}/{n}" for name, _, d, n in hidden if d > 0]
    if dup:
        more = f" and {len(dup) - WARNED_LAYERS} more layers" if len(dup) > WARNED_LAYERS else ""
        out.append("symmetry not broken: duplicate units in " + ", ".join(dup[:WARNED_LAYERS]) + more)
    if len(stds) == 2:
        (first, s0), (last, s1) = stds
        if s0 > 0 or s1 > 0:
            change = s1 / s0 if s0 > 0 else math.inf
            if change > warn_factor or change < 1 / warn_factor:
                out.append(
                    f"activation std changes {change:.3g}x from {first} ({s0:.3g}) to {last} ({s1:.3g}),"
                    f" beyond the factor {warn_factor:g}"
                )
    if not math.isfinite(loss):
        out.append(f"initial loss is {loss}")
    return out
