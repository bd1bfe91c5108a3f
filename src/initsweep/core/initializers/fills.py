"""Functional fills: pure in-place operations on one weight tensor, in the style of ``torch.nn.init``.

Nothing here knows about models, configs or parameter schemas. Shapes follow PyTorch: Linear ``(out, in)``,
Conv ``(out, in, *kernel)``; ``fan_in = in * prod(kernel)``, ``fan_out = out * prod(kernel)``. Each fill's
docstring states its formula, the std it gives, its reference, and where it differs from ``torch.nn.init``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from initsweep.core.lazy import LazyModule, no_grad

if TYPE_CHECKING:
    from torch import Tensor

torch = LazyModule("torch")  # imported on first use: validating a config reads this module, never torch
nn = LazyModule("torch.nn")

NONLINEARITIES = ("linear", "conv1d", "conv2d", "conv3d", "sigmoid", "tanh", "relu", "leaky_relu", "selu")

# ---------------------------------------------------------------------------------------------------
# Gains and fans


def gain_for(nonlinearity: str, a: float | None = None) -> float:
    """PyTorch's recommended gain (``torch.nn.init.calculate_gain``): linear/conv/sigmoid 1, tanh 5/3,
    relu sqrt(2), leaky_relu sqrt(2 / (1 + a^2)) (a = negative slope, 0.01 when not given), selu 3/4.

    Differs from torch: gelu has no gain in PyTorch; GELU behaves like ReLU away from 0, so it gets sqrt(2).
    """
    if nonlinearity == "gelu":
        return math.sqrt(2.0)
    return float(torch.nn.init.calculate_gain(nonlinearity, a))


def resolve_gain(gain: float | str, activation: str) -> float:
    """A numeric gain, or ``auto``: :func:`gain_for` the model's activation."""
    return gain_for(activation) if gain == "auto" else float(gain)


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight: fan_in = in * prod(kernel), fan_out = out * prod(kernel)."""
    if len(shape) < 2:
        raise ValueError(f"fans need a weight of 2 or more dimensions, got shape {tuple(shape)}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def fan(shape: tuple[int, ...], mode: str) -> float:
    """fan_in, fan_out or fan_avg = (fan_in + fan_out) / 2 of a weight shape."""
    fan_in, fan_out = fans(shape)
    return {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]


# ---------------------------------------------------------------------------------------------------
# The truncated standard normal


def _phi(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi) if math.isfinite(x) else 0.0


def _Phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def truncated_std_factor(lower_sd: float, upper_sd: float) -> float:
    """std of a standard normal truncated to [a, b] = [lower_sd, upper_sd]:
    sqrt(1 + (a phi(a) - b phi(b)) / Z - ((phi(a) - phi(b)) / Z)^2), Z = Phi(b) - Phi(a).
    0.8796 for the symmetric cut at 2 std."""
    a, b = lower_sd, upper_sd
    z = _Phi(b) - _Phi(a)
    if z <= 0:
        return 0.0
    ta = a * _phi(a) if math.isfinite(a) else 0.0
    tb = b * _phi(b) if math.isfinite(b) else 0.0
    mean = (_phi(a) - _phi(b)) / z
    return math.sqrt(max(1 + (ta - tb) / z - mean * mean, 0.0))


def truncated_mean_shift(lower_sd: float, upper_sd: float) -> float:
    """Mean of a standard normal truncated to [a, b] = [lower_sd, upper_sd]: (phi(a) - phi(b)) / Z."""
    z = _Phi(upper_sd) - _Phi(lower_sd)
    return (_phi(lower_sd) - _phi(upper_sd)) / z if z > 0 else 0.0


TRUNC2 = truncated_std_factor(-2.0, 2.0)  # 0.87962566...

# ---------------------------------------------------------------------------------------------------
# Fills with a fixed scale


@no_grad
def constant_(w: Tensor, value: float) -> Tensor:
    """W = value; std 0. Every unit of a layer computes the same function and receives the same gradient, so
    the symmetry is never broken (the classic failure of zeros and ones). As ``torch.nn.init.constant_``."""
    return w.fill_(value)


@no_grad
def normal_(w: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    """W ~ N(mean, std^2). As ``torch.nn.init.normal_``; the scale ignores the layer's size."""
    return w.normal_(mean, std)


@no_grad
def uniform_(w: Tensor, low: float = -1.0, high: float = 1.0) -> Tensor:
    """W ~ U(low, high); std = (high - low) / sqrt(12). As ``torch.nn.init.uniform_(w, a=low, b=high)``."""
    return w.uniform_(low, high)


@no_grad
def truncated_normal_(
    w: Tensor, mean: float = 0.0, std: float = 1.0, lower_sd: float = -2.0, upper_sd: float = 2.0
) -> Tensor:
    """W ~ N(mean, std^2) truncated to [mean + lower_sd * std, mean + upper_sd * std];
    std(W) = std * :func:`truncated_std_factor` (lower_sd, upper_sd).

    Differs from torch: the cut-offs are in std units (like Keras' TruncatedNormal), not absolute like the
    ``a``, ``b`` of ``torch.nn.init.trunc_normal_``, so one setting fits any ``std``; ``std = 0`` gives W = mean.
    """
    if std == 0:
        return w.fill_(mean)
    return nn.init.trunc_normal_(w, mean, std, mean + lower_sd * std, mean + upper_sd * std)


# ---------------------------------------------------------------------------------------------------
# The variance-scaling family: Xavier, Kaiming, LeCun


def variance_scaling_std(shape: tuple[int, ...], scale: float, mode: str) -> float:
    """std = sqrt(scale / n), n = fan_in, fan_out or fan_avg = (fan_in + fan_out) / 2.

    The special cases: LeCun et al. 1998 (Efficient BackProp) scale 1, fan_in; Glorot & Bengio 2010 scale
    gain^2, fan_avg; He et al. 2015 scale gain^2, fan_in (forward variance) or fan_out (backward variance).
    """
    return math.sqrt(scale / fan(shape, mode))


@no_grad
def variance_scaling_(w: Tensor, std: float, distribution: str) -> Tensor:
    """Draw zero-mean entries with standard deviation ``std`` (from :func:`variance_scaling_std`):

    normal: N(0, std^2); uniform: U(-sqrt(3) std, sqrt(3) std); truncated_normal: N(0, (std / 0.8796)^2)
    cut at 2 of its std, so that the truncated std is ``std``.

    Differs from torch: one fill serves the whole family, given the std rather than a gain and a mode
    (as Keras' and Flax's ``variance_scaling``); its uniform and normal draws are those of ``xavier_*_`` and
    ``kaiming_*_``, and the truncated normal (which torch lacks) is rescaled so its std is exact.
    """
    if distribution == "normal":
        return w.normal_(0.0, std)
    if distribution == "uniform":
        bound = math.sqrt(3.0) * std
        return w.uniform_(-bound, bound)
    if distribution == "truncated_normal":
        return truncated_normal_(w, 0.0, std / TRUNC2, -2.0, 2.0)
    raise ValueError(f"unknown distribution {distribution!r}")


@no_grad
def pytorch_default_(w: Tensor, fan_in: int) -> Tensor:
    """PyTorch's own Linear/ConvNd init (``reset_parameters``: ``kaiming_uniform_`` with a = sqrt(5)):
    W ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), std = 1 / sqrt(3 fan_in). Its bias rule is the same
    distribution, so ``init.bias=weight`` reproduces PyTorch's layer init exactly (same seed, same numbers)."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return w.uniform_(-bound, bound)


# ---------------------------------------------------------------------------------------------------
# Structured fills: entries are not drawn independently


def _as_matrix(w: Tensor) -> Tensor:
    return w.reshape(w.shape[0], -1)


@no_grad
def orthogonal_(w: Tensor, gain: float = 1.0) -> Tensor:
    """W (viewed as rows = out, cols = in * prod(kernel)) = gain * Q with orthonormal rows (rows <= cols)
    or columns (rows > cols), Q from the QR decomposition of a Gaussian matrix with the signs of R's
    diagonal folded in (Haar measure; Saxe et al. 2014). Mean square entry gain^2 / max(rows, cols),
    so std ~ gain / sqrt(max(rows, cols)).

    Differs from torch: the Gaussian matrix is drawn and factorised in float64 (torch uses the weight's
    dtype), so Q is orthonormal to float32 precision at any size, and a zero on R's diagonal keeps its sign +1.
    """
    rows, cols = w.shape[0], w.numel() // w.shape[0]
    g = torch.randn(max(rows, cols), min(rows, cols), dtype=torch.float64)
    q, r = torch.linalg.qr(g)
    q = q * torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0, torch.ones(()))  # Haar measure
    if rows < cols:
        q = q.T
    return w.copy_((gain * q).reshape(w.shape).to(w.dtype))


@no_grad
def delta_orthogonal_(w: Tensor, gain: float = 1.0) -> Tensor:
    """Conv ``(out, in, *kernel)``: every spatial tap 0 except the kernel centre (index k // 2 per axis), which is
    gain * H with H an out x in matrix of orthonormal columns (out >= in) or rows (out < in), drawn as in
    :func:`orthogonal_` (Xiao et al. 2018, "Dynamical isometry and a mean field theory of CNNs"). With
    out >= in and padding that keeps the size, the conv maps every input to one of gain times its norm.
    Linear weights get :func:`orthogonal_`. Mean square entry gain^2 min(out, in) / numel: :func:`delta_orthogonal_std`.

    Differs from torch, which has no delta-orthogonal init (``orthogonal_`` on a conv makes the flattened
    out x in*k matrix orthogonal, which spreads each filter over all taps).
    """
    if w.dim() == 2:
        return orthogonal_(w, gain)
    centre = torch.empty(w.shape[0], w.shape[1], dtype=w.dtype, device=w.device)
    orthogonal_(centre, gain)
    w.zero_()
    index: tuple[slice | int, ...] = (slice(None), slice(None), *(k // 2 for k in w.shape[2:]))
    w[index] = centre
    return w


def delta_orthogonal_std(shape: tuple[int, ...], gain: float) -> float:
    """Root mean square entry of :func:`delta_orthogonal_`: gain * sqrt(min(out, in) / numel) (its mean is ~0);
    for a Linear weight the same number as orthogonal's gain / sqrt(max(out, in))."""
    return gain * math.sqrt(min(shape[0], shape[1]) / math.prod(shape))


def is_square(shape: tuple[int, ...]) -> bool:
    """An identity fits: out == in (Conv: out_channels == in_channels; odd kernel has a centre)."""
    return shape[0] == shape[1]


@no_grad
def identity_(w: Tensor, gain: float = 1.0) -> Tensor:
    """W = gain * I: Linear gets the (rectangular) identity matrix, Conv the Dirac delta at the kernel
    centre (each output channel i copies input channel i); min(out, in) entries equal gain, the rest 0
    (Le et al. 2015 for ReLU networks). std: :func:`identity_std`.

    Differs from torch: one fill for every layer (``eye_`` for 2-D weights, ``dirac_`` otherwise) with a gain.
    """
    if w.dim() == 2:
        nn.init.eye_(w)
    else:
        nn.init.dirac_(w)
    return w.mul_(gain)


def identity_std(shape: tuple[int, ...], gain: float) -> float:
    """Exact (unbiased) std of gain * I: k = min(out, in) entries equal gain among N, the rest 0."""
    n = math.prod(shape)
    k = min(shape[0], shape[1])
    if n < 2:
        return 0.0
    mean = gain * k / n
    return math.sqrt(max(gain * gain * k - n * mean * mean, 0.0) / (n - 1))


@no_grad
def sparse_(w: Tensor, sparsity: float = 0.1, std: float = 0.01) -> Tensor:
    """In each column (input unit) of W viewed as (out, in * prod(kernel)): ceil(sparsity * out) entries
    are 0, chosen at random, the rest ~ N(0, std^2) (Martens 2010). std(W): :func:`sparse_std`.

    Differs from torch: ``torch.nn.init.sparse_`` takes 2-D weights only and loops over columns; this one
    also fills Conv weights (as the matrix above) and draws all columns at once.
    """
    m = _as_matrix(w)
    rows, cols = m.shape
    n_zero = math.ceil(sparsity * rows)
    values = torch.randn(rows, cols) * std
    rank = torch.rand(rows, cols).argsort(dim=0).argsort(dim=0)  # a random permutation of rows per column
    values[rank < n_zero] = 0.0
    return w.copy_(values.reshape(w.shape).to(w.dtype))


def sparse_std(shape: tuple[int, ...], sparsity: float, std: float) -> float:
    """std(W) of :func:`sparse_` about 0: std * sqrt(1 - ceil(sparsity * out) / out)."""
    rows = shape[0]
    return std * math.sqrt((rows - math.ceil(sparsity * rows)) / rows)
