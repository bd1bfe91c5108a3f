"""Dynamical-isometry diagnostics at initialization (Saxe et al. 2014; Pennington et al. 2017).

A deep net learns at a depth-independent speed when its input-output Jacobian J = d logits / d input is
well conditioned: all singular values near 1. :func:`isometry_metrics` measures, on a batch:

- ``diag/jacobian_sv_mean``, ``diag/jacobian_sv_std``: mean and std of the singular values of J(x_i),
  pooled over the samples x_i of the batch (each J(x_i) is outputs x input features);
- ``diag/jacobian_sv_max_min_ratio``: mean over samples of sigma_max / sigma_min of J(x_i) (inf when a
  sample's smallest singular value is 0);
- ``diag/jacobian_sq_norm``: mean over samples of ||J(x_i)||_F^2 / outputs (the mean squared singular value:
  1 for an isometry, growing or shrinking geometrically with depth for a badly scaled init);
- ``diag/weight_sv_mean``, ``diag/weight_sv_std``: over all layers, the mean of each weight's (viewed as
  out x fan_in) singular-value mean and std; ``diag/weight_sv_max_min_ratio``: its largest
  sigma_max / sigma_min over the layers (1 for orthogonal square weights).

That J includes the rectangular input and output layers (an orthogonal linear net of width 256 measures a mean
of about 0.5). The isometry of the hidden layers is :func:`hidden_isometry`: the singular values of
J_h = d a_L / d a_1 (last hidden post-activation w.r.t. the first), with each example's first pre-activations
rescaled to the mean-field fixed point q* of the model's own weight and bias variances:
``diag/hidden_q``, ``diag/hidden_sv_mean``, ``_std``, ``_max``, ``_min``, ``diag/hidden_sq_sv_mean``, and the
whole spectrum as the artifact :func:`spectrum_file` (:func:`spectrum_table`). The hidden map
(:func:`hidden_chain`) of an MLP runs between its hidden layers of one width, of a conv net between its first and
last conv feature maps (flattened; cropped beyond :data:`MAX_JACOBIAN_ENTRIES`), of a residual model along its
stream (x_0 -> x_L, ``residual_stream()``); other models have none.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from initsweep.core.initializers import init_layers
from initsweep.core.initializers.apply import LAYER_TYPES, Layer
from initsweep.core.models import ACTIVATION_MODULES, residual_stream

log = logging.getLogger(__name__)


def singular_values(matrices: Tensor) -> Tensor:
    """Singular values (descending) of a matrix or a batch of matrices, in float64; all NaN when any entry
    is not finite (an exploding init overflows; the SVD of inf is undefined)."""
    m = matrices.double()
    if not torch.isfinite(m).all():
        return torch.full((*m.shape[:-2], min(m.shape[-2:])), float("nan"), dtype=m.dtype)
    return torch.linalg.svdvals(m)


def input_output_jacobian(model: nn.Module, x: Tensor) -> Tensor:
    """J of shape (n, outputs, features): d model(x)_i / d x_i for every sample, flattened features.

    One backward pass per output unit; samples do not interact (eval mode), so the gradient of the summed
    output c with respect to the batch is row i's Jacobian row c. The model's mode is restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            xi = x.detach().clone().requires_grad_(True)
            out = model(xi).float()
            rows = [
                torch.autograd.grad(out[:, c].sum(), xi, retain_graph=c < out.shape[1] - 1)[0].flatten(1)
                for c in range(out.shape[1])
            ]
    finally:
        model.train(was_training)
    return torch.stack(rows, dim=1)


def _ratio(sv: Tensor) -> Tensor:
    """sigma_max / sigma_min along the last axis (inf where sigma_min = 0)."""
    return sv[..., 0] / sv[..., -1]


def isometry_metrics(model: nn.Module, x: Tensor) -> dict[str, float]:
    """The ``diag/jacobian_*`` and ``diag/weight_*`` scalars of the module docstring on the batch ``x``."""
    out: dict[str, float] = {}
    with torch.no_grad():
        per_layer = [singular_values(m.weight.detach().flatten(1)) for _, m in init_layers(model)]
    if per_layer:
        out["diag/weight_sv_mean"] = sum(s.mean().item() for s in per_layer) / len(per_layer)
        out["diag/weight_sv_std"] = sum(s.std(unbiased=False).item() for s in per_layer) / len(per_layer)
        out["diag/weight_sv_max_min_ratio"] = max(_ratio(s).item() for s in per_layer)
    sv = singular_values(input_output_jacobian(model, x))
    out["diag/jacobian_sv_mean"] = sv.mean().item()
    out["diag/jacobian_sv_std"] = sv.std(unbiased=False).item()
    out["diag/jacobian_sv_max_min_ratio"] = _ratio(sv).mean().item()
    out["diag/jacobian_sq_norm"] = sv.pow(2).mean().item()
    return out


# ---------------------------------------------------------------------------------------------------
# The hidden-to-hidden Jacobian at the fixed point q*

SPECTRUM_DIR = "isometry"


def spectrum_file(step: int) -> str:
    """The artifact of a run's hidden-Jacobian singular values at ``step``: ``isometry/step_<4 digits>.json``."""
    return f"{SPECTRUM_DIR}/step_{step:04d}.json"


@dataclass(frozen=True)
class HiddenChain:
    """The part of a model the hidden Jacobian runs through: ``entry`` (the model's input to the first hidden
    layer's output h_1, any flatten before it included), ``activation`` (the activation module that follows it, if any:
    a_1 = activation(h_1)), ``rest`` (a_1 to the last hidden layer's activation: a_L = rest(a_1)) and the
    layers of ``rest`` (for sigma_w^2, sigma_b^2; none for a residual stream, which has no fixed point q* here)."""

    entry: nn.Module
    activation: nn.Module
    rest: nn.Module
    layers: tuple[Layer, ...]


CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_ACTIVATIONS = tuple(ACTIVATION_MODULES.values())


def _no_parameters(modules: list[nn.Module]) -> bool:
    return all(next(m.parameters(), None) is None for m in modules)


def hidden_chain(model: nn.Module) -> HiddenChain | None:
    """Where the hidden Jacobian runs, or None where it cannot be defined:

    - a model with a ``residual_stream()`` (:class:`initsweep.core.models.ResidualStream`): the stream after the
      input layer to the stream after the last block (x_0 -> x_L), at the measured length (no q*);
    - an ``nn.Sequential`` with two or more Conv layers (the CNN): the first conv layer's feature map after its
      activation to the last conv layer's (pools between them included), both flattened;
    - an ``nn.Sequential`` whose layers are all Linear (the MLP): the first to the last hidden layer's
      activation, all hidden layers of one width.

    None for a Sequential with fewer than two such hidden layers, hidden widths that differ, or parameters outside
    the layers (a norm layer), and for any other model."""
    stream = residual_stream(model)
    if stream is not None:
        return HiddenChain(stream.entry, nn.Identity(), stream.blocks, ())
    if not isinstance(model, nn.Sequential):
        return None
    children = list(model.children())
    at = [i for i, m in enumerate(children) if isinstance(m, LAYER_TYPES)]
    hidden = [i for i in at if isinstance(children[i], CONV_TYPES)]
    if len(hidden) < 2:  # no conv chain: the hidden Linear layers, the last layer being the output layer
        hidden = at[:-1]
        linear = [m for m in (children[i] for i in at) if isinstance(m, nn.Linear)]
        if len(hidden) < 2 or len(linear) < len(at):
            return None
        width = linear[0].out_features
        if any(m.out_features != width or m.in_features != width for m in linear[1:-1]):
            return None
    end = hidden[-1] + 1
    if end < len(children) and isinstance(children[end], _ACTIVATIONS):
        end += 1
    between = children[hidden[0] + 1 : end]
    others = [children[i] for i in range(end) if i not in hidden]
    if not _no_parameters(others):  # a norm layer (or any other weights) in the way
        return None
    split = int(isinstance(between[0], _ACTIVATIONS))  # a_1: after the activation, before any pool
    layers = tuple(m for m in (children[i] for i in hidden[1:]) if isinstance(m, LAYER_TYPES))
    return HiddenChain(
        nn.Sequential(*children[: hidden[0] + 1]),
        nn.Sequential(*between[:split]),
        nn.Sequential(*between[split:]),
        layers,
    )


def _f64_device(t: Tensor) -> torch.device:
    """Where float64 work on ``t`` runs: its own device, except MPS (which has no float64): the CPU."""
    return torch.device("cpu") if t.device.type == "mps" else t.device


def _f64(t: Tensor) -> Tensor:
    return t.detach().to(_f64_device(t), torch.float64)


def chain_variances(chain: HiddenChain) -> tuple[float, float]:
    """(sigma_w^2, sigma_b^2) of the layers the Jacobian runs through, measured on their weights:
    sigma_w^2 = mean over layers of fan_in * mean(W^2) (fan_in = in_features, or in_channels x kernel size),
    sigma_b^2 = mean over layers of mean(b^2) (0 without biases). For a Gaussian init they estimate the mean-field
    parameters; an orthogonal (or delta-orthogonal) W of gain g gives g^2."""
    with torch.no_grad():
        sw = [m.weight[0].numel() * _f64(m.weight).pow(2).mean().item() for m in chain.layers]
        sb = [_f64(m.bias).pow(2).mean().item() if m.bias is not None else 0.0 for m in chain.layers]
    return sum(sw) / len(sw), sum(sb) / len(sb)


def fixed_point_q(chain: HiddenChain, activation: str) -> float | None:
    """q* of the mean-field length map (:func:`initsweep.diagnostics.meanfield.q_star`) for the activation and
    :func:`chain_variances`; None where it is not a positive finite number (a diverging length map, or one
    that contracts to 0, or one that has not settled: |map(q) - q| > 1e-6 q) and for a residual stream."""
    from initsweep.diagnostics.meanfield import length_map, q_star

    if not chain.layers:
        return None
    sigma_w2, sigma_b2 = chain_variances(chain)
    q = q_star(activation, sigma_w2, sigma_b2)
    if not (math.isfinite(q) and q > 1e-12):
        return None
    # q_star stops after its iterations even where the map still drifts (relu with sigma_w^2 a bit above 2)
    return q if abs(length_map(activation, sigma_w2, sigma_b2, q) - q) <= 1e-6 * q else None


def _first_preactivation(chain: HiddenChain, x: Tensor) -> Tensor:
    """h_1 = W_1 x + b_1 (the entry's output) in float64."""
    entry = copy.deepcopy(chain.entry).to(_f64_device(x), torch.float64).eval()
    return entry(_f64(x))


def _mean_square(h: Tensor) -> Tensor:
    """Each sample's mean square over its units (all features of a feature map), shaped to broadcast over h."""
    return h.flatten(1).pow(2).mean(dim=1).view(-1, *[1] * (h.dim() - 1))


# Entries of a conv chain's Jacobian per example (2 MB in float64): a larger one is measured on a crop. The SVD of
# 8 examples of 512 x 1024 (digits' CNN, uncropped) took 1.5 s on one core (loaded machine), of 288 x 784 (its 7 x 7
# crop) 0.4 s.
MAX_JACOBIAN_ENTRIES = 1 << 18


def crop_side(rest: nn.Module, a1: Tensor, budget: int = MAX_JACOBIAN_ENTRIES) -> int | None:
    """The side (in positions) of the centred crop of the feature map ``a1`` (n, C, *size) whose Jacobian
    through ``rest`` has at most ``budget`` entries (outputs x inputs, per example): None when the whole map
    fits (vectors always do), 0 when no crop does (pools leave nothing)."""
    size = a1.shape[2:]
    if not size:
        return None

    def entries(side: int) -> int:
        probe = a1.new_zeros(1, a1.shape[1], *(min(s, side) for s in size))
        with torch.no_grad():
            return rest(probe)[0].numel() * probe[0].numel()

    side = max(size)
    if entries(side) <= budget:
        return None
    try:
        while side > 1:
            side -= 1
            if entries(side) <= budget:
                return side
    except RuntimeError:  # a pool's output would be empty
        pass
    return 0


def _centre_crop(a: Tensor, side: int) -> Tensor:
    for dim, s in enumerate(a.shape[2:], start=2):
        start = max(0, (s - side) // 2)
        a = a.narrow(dim, start, min(s, side))
    return a


def _jacobian(chain: HiddenChain, x: Tensor, q: float | None) -> tuple[Tensor | None, int | None]:
    """(J, crop side) of :func:`hidden_jacobian`; J None where no crop fits :data:`MAX_JACOBIAN_ENTRIES`."""
    with torch.no_grad():
        h1 = _first_preactivation(chain, x)
        if q is not None:
            ms = _mean_square(h1)
            h1 = torch.where(ms > 0, h1 * torch.sqrt(q / ms.clamp_min(1e-300)), h1)
        act = copy.deepcopy(chain.activation).to(h1.device, torch.float64).eval()
        rest = copy.deepcopy(chain.rest).to(h1.device, torch.float64).eval()
        a1 = act(h1)
        side = crop_side(rest, a1)
        if side == 0:
            return None, 0
        if side is not None:
            a1 = _centre_crop(a1, side)
    for p in rest.parameters():
        p.requires_grad_(False)
    with torch.enable_grad():
        jac = torch.func.vmap(torch.func.jacrev(rest))(a1)
    return jac.reshape(len(a1), -1, a1[0].numel()), side


def hidden_jacobian(model: nn.Module, x: Tensor, q: float | None = None) -> Tensor | None:
    """J of shape (n, outputs, inputs): d a_L / d a_1 for every sample, where a_l is the post-activation of hidden
    layer l (a_1 of the first, a_L of the last; feature maps flattened), so J = D_L W_L ... D_2 W_2 with
    D_l = diag(phi'(h_l)); for a residual stream d x_L / d x_0 = prod_l (I + d branch_l / d x).

    The inputs: ``x`` through the first hidden layer, h_1 = W_1 x + b_1, each sample's h_1 rescaled to a mean
    square of ``q`` (mean over units), as in the mean-field analysis whose fixed point q* is the length every
    layer's pre-activations keep; ``q`` None: as measured. Computed in float64 on a copy of the chain (the
    arithmetic adds ~1e-12 at any depth; float32 weights bring their own ~1e-7); the model is left untouched.

    A conv chain whose J would have more than :data:`MAX_JACOBIAN_ENTRIES` entries per example is measured on
    the centred crop of a_1 of :func:`crop_side` (convs are translation-equivariant: the same operator on a
    smaller grid; the crop's border, zero-padded by the next conv, differs from the full map's interior).
    None without a :func:`hidden_chain` or a crop that fits."""
    chain = hidden_chain(model)
    return None if chain is None else _jacobian(chain, x, q)[0]


_SKIPPED: set[str] = set()  # model classes whose skipped hidden Jacobian was logged (once per process)


def _skip(model: nn.Module, why: str) -> tuple[dict[str, float], list[float]]:
    name = type(model).__name__
    if name not in _SKIPPED:
        _SKIPPED.add(name)
        log.info(f"initsweep: no hidden-to-hidden Jacobian for {name} ({why}): diag/hidden_* not logged")
    return {}, []


def hidden_isometry(model: nn.Module, x: Tensor, activation: str) -> tuple[dict[str, float], list[float]]:
    """The ``diag/hidden_*`` metrics and the pooled singular values (ascending) of :func:`hidden_jacobian` at
    q* (:func:`fixed_point_q`; where q* is not positive and finite, or for a residual stream, the batch's mean
    square of h_1), logged as ``diag/hidden_q``; ``diag/hidden_crop``: the crop's side where a conv chain was
    cropped. ({}, []) for a model without a :func:`hidden_chain` (said once per model class in the log)."""
    chain = hidden_chain(model)
    if chain is None:
        return _skip(model, "no chain of hidden layers of one width, of conv layers, or residual_stream()")
    q = fixed_point_q(chain, activation)
    if q is None:  # no fixed point to rescale to: the batch's own mean square of h_1
        with torch.no_grad():
            q = _first_preactivation(chain, x).pow(2).mean().item()
    jac, side = _jacobian(chain, x, q)
    if jac is None:
        return _skip(model, f"its Jacobian exceeds {MAX_JACOBIAN_ENTRIES} entries at every crop")
    sv = singular_values(jac)
    out = {
        "diag/hidden_q": q,
        "diag/hidden_sv_mean": sv.mean().item(),
        "diag/hidden_sv_std": sv.std(unbiased=False).item(),
        "diag/hidden_sv_max": sv.max().item(),
        "diag/hidden_sv_min": sv.min().item(),
        "diag/hidden_sq_sv_mean": sv.pow(2).mean().item(),
    }
    if side is not None:
        out["diag/hidden_crop"] = float(side)
    return out, sorted(sv.flatten().tolist())


def spectrum_table(values: list[float], metrics: dict[str, float], bins: int = 40) -> dict[str, object]:
    """The spectrum artifact (:func:`spectrum_file`): the summaries (``diag/hidden_*``), a histogram of the
    singular values (``bins`` equal bins from 0 to the largest; ``edges`` has bins + 1 entries) and the values
    themselves (pooled over the samples, ascending, 6 significant digits)."""
    finite = [v for v in values if math.isfinite(v)]
    top = max(finite, default=0.0) or 1.0
    counts = [0] * bins
    for v in finite:
        counts[min(int(v / top * bins), bins - 1)] += 1
    return {
        "summary": {k: v for k, v in metrics.items() if k.startswith("diag/hidden_")},
        "histogram": {"edges": [top * i / bins for i in range(bins + 1)], "counts": counts},
        "singular_values": [float(f"{v:.6g}") for v in values],
    }
