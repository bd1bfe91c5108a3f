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
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from initsweep.core.initializers import init_layers


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
