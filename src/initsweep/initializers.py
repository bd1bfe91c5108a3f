"""The catalogue of weight-initialization schemes.

Each scheme fills a weight tensor in place, like the ``torch.nn.init`` functions, and states the
standard deviation its formula promises for a given shape, so that every run can compare the measured
statistics with the theory. Shapes follow PyTorch: Linear ``(out, in)``, Conv ``(out, in, *kernel)``;
``fan_in = in * prod(kernel)``, ``fan_out = out * prod(kernel)``.

Layout of this module: parameter schemas (pydantic, one per scheme family), pure fill functions (one
tensor, no model knowledge, formula in the docstring), the ``SCHEMES`` table, :func:`check_params`
(called by ``config.validate`` so that bad parameters fail before training), and :func:`initialize`,
which applies a scheme (plus bias and output-layer handling, and the data-dependent LSUV) to a model.
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

import torch
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator
from torch import Tensor, nn


class InitError(ValueError):
    """A scheme cannot be applied to this model or data; the message names the key to change."""


# ---------------------------------------------------------------------------------------------------
# Gains


ACTIVATION_GAIN_NAMES = ("linear", "sigmoid", "tanh", "relu", "leaky_relu", "selu", "gelu")
NONLINEARITIES = ("linear", "conv1d", "conv2d", "conv3d", "sigmoid", "tanh", "relu", "leaky_relu", "selu")


def gain_for(nonlinearity: str, a: float | None = None) -> float:
    """PyTorch's recommended gain (``torch.nn.init.calculate_gain``): linear/conv/sigmoid 1, tanh 5/3,
    relu sqrt(2), leaky_relu sqrt(2 / (1 + a^2)) (a = negative slope, 0.01 when not given), selu 3/4.

    gelu has no gain in PyTorch; GELU behaves like ReLU away from 0, so it gets ReLU's sqrt(2).
    """
    if nonlinearity == "gelu":
        return math.sqrt(2.0)
    return float(torch.nn.init.calculate_gain(nonlinearity, a))


def resolve_gain(gain: float | str, activation: str) -> float:
    """A numeric gain, or ``auto``: :func:`gain_for` the model's activation."""
    return gain_for(activation) if gain == "auto" else float(gain)


def _check_gain(value: Any) -> float | str:
    if value == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError("gain must be a number >= 0 or 'auto' (PyTorch's gain for the model's activation)")
    if value < 0:
        raise ValueError("gain must be >= 0 (or 'auto')")
    return float(value)


Gain = Annotated[Any, BeforeValidator(_check_gain)]

# ---------------------------------------------------------------------------------------------------
# Parameter schemas


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(_Params):
    pass


class ConstantParams(_Params):
    value: float = Field(0.0, description="the constant")


class NormalParams(_Params):
    mean: float = Field(0.0, description="mean")
    std: float = Field(1.0, ge=0, description="standard deviation")


class UniformParams(_Params):
    low: float = Field(-1.0, description="lower bound")
    high: float = Field(1.0, description="upper bound")

    @model_validator(mode="after")
    def _ordered(self) -> UniformParams:
        if self.low > self.high:
            raise ValueError(f"init.low = {self.low} must not exceed init.high = {self.high}")
        return self


class TruncatedNormalParams(_Params):
    mean: float = Field(0.0, description="mean of the normal before truncation")
    std: float = Field(1.0, ge=0, description="std of the normal before truncation")
    lower_sd: float = Field(-2.0, description="lower cut-off in std units: W >= mean + lower_sd * std")
    upper_sd: float = Field(2.0, description="upper cut-off in std units: W <= mean + upper_sd * std")

    @model_validator(mode="after")
    def _ordered(self) -> TruncatedNormalParams:
        if not self.lower_sd < self.upper_sd:
            raise ValueError(f"lower_sd ({self.lower_sd}) must be below upper_sd ({self.upper_sd})")
        return self


class XavierParams(_Params):
    gain: Gain = Field(1.0, description="gain (a number >= 0, or auto)")


class KaimingParams(_Params):
    mode: Literal["fan_in", "fan_out"] = Field("fan_in", description="fan_in | fan_out")
    nonlinearity: Literal[(*NONLINEARITIES, "auto")] = Field(  # type: ignore[valid-type]
        "leaky_relu", description="gain's nonlinearity (auto = the model's activation)"
    )
    a: float = Field(0.0, ge=0, description="negative slope of leaky_relu")


class VarianceScalingParams(_Params):
    scale: float = Field(1.0, gt=0, description="target variance times fan")
    mode: Literal["fan_in", "fan_out", "fan_avg"] = Field("fan_in", description="fan_in | fan_out | fan_avg")
    distribution: Literal["normal", "truncated_normal", "uniform"] = Field(
        "truncated_normal", description="normal | truncated_normal (at 2 std) | uniform"
    )


class OrthogonalParams(_Params):
    gain: Gain = Field(1.0, description="gain (a number >= 0, or auto)")


class IdentityParams(_Params):
    gain: Gain = Field(1.0, description="gain (a number >= 0, or auto)")
    fallback: str | None = Field(
        "eye", description="for non-square weights: eye (rectangular identity), a scheme name, or null (error)"
    )

    @field_validator("fallback")
    @classmethod
    def _known_fallback(cls, value: str | None) -> str | None:
        allowed = identity_fallbacks()
        if value is not None and value not in allowed:
            raise ValueError(
                f"unknown fallback; use null (error on non-square weights) or one of: {', '.join(allowed)}"
            )
        return value


class SparseParams(_Params):
    sparsity: float = Field(0.1, ge=0, lt=1, description="fraction of zeros in each column, in [0, 1)")
    std: float = Field(0.01, ge=0, description="std of the non-zero entries")


class LSUVParams(_Params):
    tol: float = Field(0.1, gt=0, description="stop when |Var(output) - 1| < tol")
    max_iter: int = Field(10, ge=1, description="rescaling rounds per layer")
    batch_size: int = Field(256, ge=2, description="training samples used")


class CustomParams(BaseModel):
    """``_target_``: dotted path of ``fn(tensor, **kwargs)``; every other key is passed to it."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)
    target: str | None = Field(None, alias="_target_", description="dotted path of fn(tensor, **kwargs)")

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


# ---------------------------------------------------------------------------------------------------
# Fill functions: pure in-place operations on one tensor, no model knowledge.


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


def _phi(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi) if math.isfinite(x) else 0.0


def _Phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def truncated_std_factor(lower_sd: float, upper_sd: float) -> float:
    """std of a standard normal truncated to [lower_sd, upper_sd]:
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
    """Mean of a standard normal truncated to [lower_sd, upper_sd]: (phi(a) - phi(b)) / Z."""
    z = _Phi(upper_sd) - _Phi(lower_sd)
    return (_phi(lower_sd) - _phi(upper_sd)) / z if z > 0 else 0.0


TRUNC2 = truncated_std_factor(-2.0, 2.0)  # 0.87962566...


@torch.no_grad()
def constant_(w: Tensor, value: float) -> Tensor:
    """W = value."""
    return w.fill_(value)


@torch.no_grad()
def normal_(w: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    """W ~ N(mean, std^2)."""
    return w.normal_(mean, std)


@torch.no_grad()
def uniform_(w: Tensor, low: float = -1.0, high: float = 1.0) -> Tensor:
    """W ~ U(low, high); std = (high - low) / sqrt(12)."""
    return w.uniform_(low, high)


@torch.no_grad()
def truncated_normal_(
    w: Tensor, mean: float = 0.0, std: float = 1.0, lower_sd: float = -2.0, upper_sd: float = 2.0
) -> Tensor:
    """W ~ N(mean, std^2) truncated to [mean + lower_sd * std, mean + upper_sd * std].

    Cut-offs are in std units (like Keras' TruncatedNormal), not absolute like the ``a``, ``b`` of
    ``torch.nn.init.trunc_normal_``. The resulting std is ``std * truncated_std_factor(lower_sd, upper_sd)``.
    """
    if std == 0:
        return w.fill_(mean)
    return nn.init.trunc_normal_(w, mean, std, mean + lower_sd * std, mean + upper_sd * std)


def variance_scaling_std(shape: tuple[int, ...], scale: float, mode: str) -> float:
    """std = sqrt(scale / n), n = fan_in, fan_out or (fan_in + fan_out) / 2."""
    return math.sqrt(scale / fan(shape, mode))


@torch.no_grad()
def variance_scaling_(w: Tensor, std: float, distribution: str) -> Tensor:
    """Draw zero-mean entries with standard deviation ``std`` (from :func:`variance_scaling_std`):

    normal: N(0, std^2); uniform: U(-sqrt(3) std, sqrt(3) std); truncated_normal: N(0, (std / 0.8796)^2)
    cut at 2 of its std, so that the truncated std is ``std`` (Keras' convention).
    Xavier, Kaiming and LeCun are special cases: scale = gain^2 with fan_avg (Xavier) or fan_in/fan_out
    (Kaiming), scale = 1 with fan_in (LeCun).
    """
    if distribution == "normal":
        return w.normal_(0.0, std)
    if distribution == "uniform":
        bound = math.sqrt(3.0) * std
        return w.uniform_(-bound, bound)
    if distribution == "truncated_normal":
        return truncated_normal_(w, 0.0, std / TRUNC2, -2.0, 2.0)
    raise ValueError(f"unknown distribution {distribution!r}")


def _as_matrix(w: Tensor) -> Tensor:
    return w.reshape(w.shape[0], -1)


@torch.no_grad()
def orthogonal_(w: Tensor, gain: float = 1.0) -> Tensor:
    """W (viewed as rows = out, cols = in * prod(kernel)) = gain * Q with orthonormal rows (rows <= cols)
    or columns (rows > cols), from the QR decomposition of a Gaussian matrix (Saxe et al. 2014).
    Mean square entry gain^2 / max(rows, cols), so std ~ gain / sqrt(max(rows, cols))."""
    rows, cols = w.shape[0], w.numel() // w.shape[0]
    g = torch.randn(max(rows, cols), min(rows, cols), dtype=torch.float64)
    q, r = torch.linalg.qr(g)
    q = q * torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0, torch.ones(()))  # Haar measure
    if rows < cols:
        q = q.T
    return w.copy_((gain * q).reshape(w.shape).to(w.dtype))


def is_square(shape: tuple[int, ...]) -> bool:
    """An identity fits: out == in (Conv: out_channels == in_channels; odd kernel has a centre)."""
    return shape[0] == shape[1]


@torch.no_grad()
def identity_(w: Tensor, gain: float = 1.0) -> Tensor:
    """W = gain * I: Linear gets the (rectangular) identity matrix, Conv the Dirac delta at the kernel
    centre (each output channel i copies input channel i), as ``eye_`` / ``dirac_``; min(out, in) ones."""
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


@torch.no_grad()
def sparse_(w: Tensor, sparsity: float = 0.1, std: float = 0.01) -> Tensor:
    """In each column (input unit) of W viewed as (out, in * prod(kernel)): ceil(sparsity * out) entries
    are 0, chosen at random, the rest ~ N(0, std^2) (Martens 2010). std(W) = std * sqrt(1 - zeros / out)."""
    m = _as_matrix(w)
    rows, cols = m.shape
    n_zero = math.ceil(sparsity * rows)
    values = torch.randn(rows, cols) * std
    rank = torch.rand(rows, cols).argsort(dim=0).argsort(dim=0)  # a random permutation of rows per column
    values[rank < n_zero] = 0.0
    return w.copy_(values.reshape(w.shape).to(w.dtype))


def sparse_std(shape: tuple[int, ...], sparsity: float, std: float) -> float:
    rows = shape[0]
    return std * math.sqrt((rows - math.ceil(sparsity * rows)) / rows)


@torch.no_grad()
def pytorch_default_(w: Tensor, fan_in: int) -> Tensor:
    """PyTorch's own Linear/ConvNd init (``reset_parameters``: kaiming_uniform_ with a = sqrt(5)):
    W ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), std = 1 / sqrt(3 fan_in). Its bias rule is the same
    distribution, so ``init.bias=weight`` reproduces PyTorch's layer init exactly."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return w.uniform_(-bound, bound)


def import_target(path: str) -> Callable[..., Any]:
    """The object a dotted path such as ``torch.nn.init.orthogonal_`` names (module, then attributes)."""
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError as e:
            if e.name and not ".".join(parts[:i]).startswith(e.name):
                raise  # the module exists but an import inside it failed
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(f"no module in {path!r} can be imported")


# ---------------------------------------------------------------------------------------------------
# The catalogue


@dataclass(frozen=True)
class Site:
    """Where a scheme is applied: the weight's shape and the model's activation."""

    shape: tuple[int, ...]
    activation: str

    @property
    def fan_in(self) -> int:
        return fans(self.shape)[0]

    @property
    def fan_out(self) -> int:
        return fans(self.shape)[1]


@dataclass(frozen=True)
class Scheme:
    """One initializer: its parameters, how it fills a weight, and the std its formula promises.

    ``fill(w, params, site)`` fills ``w`` in place; for ``iid`` schemes every entry is drawn from one
    distribution that depends only on the site's fans, so a bias can be drawn from it too
    (``init.bias=weight``). ``expected_std(params, site)`` is None where only a measurement can tell
    (lsuv, custom).
    """

    name: str
    formula: str
    params: type[BaseModel]
    fill: Callable[[Tensor, Any, Site], Any]
    expected_std: Callable[[Any, Site], float | None]
    iid: bool = True
    summary: str = ""


def _kaiming_std(p: KaimingParams, s: Site) -> float:
    nonlinearity = s.activation if p.nonlinearity == "auto" else p.nonlinearity
    a = p.a if nonlinearity == "leaky_relu" else None
    return gain_for(nonlinearity, a) / math.sqrt(fan(s.shape, p.mode))


def _xavier_std(p: XavierParams, s: Site) -> float:
    return resolve_gain(p.gain, s.activation) * math.sqrt(2.0 / (s.fan_in + s.fan_out))


def _lecun_std(p: Any, s: Site) -> float:
    return math.sqrt(1.0 / s.fan_in)


def _orthogonal_std(p: OrthogonalParams, s: Site) -> float:
    rows, cols = s.shape[0], math.prod(s.shape[1:])
    return resolve_gain(p.gain, s.activation) / math.sqrt(max(rows, cols))


def _identity_fill(w: Tensor, p: IdentityParams, s: Site) -> None:
    if is_square(s.shape) or p.fallback == "eye":
        identity_(w, resolve_gain(p.gain, s.activation))
    elif p.fallback is None:
        raise InitError(
            f"init=identity: weight of shape {tuple(s.shape)} is not square (out {s.shape[0]} != in "
            f"{s.shape[1]}) and init.fallback is null; set init.fallback=eye (rectangular identity) or a "
            f"scheme name for such layers, e.g. init.fallback=xavier_normal"
        )
    else:
        fb = SCHEMES[p.fallback]
        fb.fill(w, fb.params(), s)


def _identity_std(p: IdentityParams, s: Site) -> float | None:
    if is_square(s.shape) or p.fallback in ("eye", None):
        return identity_std(s.shape, resolve_gain(p.gain, s.activation))
    fb = SCHEMES[p.fallback]
    return fb.expected_std(fb.params(), s)


def _no_fill(w: Tensor, p: Any, s: Site) -> None:  # lsuv: applied model-wide by initialize()
    raise InitError("init=lsuv is data-dependent and applies to a whole model, not one tensor")


SCHEMES: dict[str, Scheme] = {
    s.name: s
    for s in (
        Scheme(
            "zeros",
            "W = 0",
            NoParams,
            lambda w, p, s: constant_(w, 0.0),
            lambda p, s: 0.0,
            summary="all units identical: symmetry is never broken",
        ),
        Scheme(
            "ones",
            "W = 1",
            NoParams,
            lambda w, p, s: constant_(w, 1.0),
            lambda p, s: 0.0,
            summary="all units identical: symmetry is never broken",
        ),
        Scheme(
            "constant",
            "W = value",
            ConstantParams,
            lambda w, p, s: constant_(w, p.value),
            lambda p, s: 0.0,
            summary="all units identical",
        ),
        Scheme(
            "normal",
            "W ~ N(mean, std^2)",
            NormalParams,
            lambda w, p, s: normal_(w, p.mean, p.std),
            lambda p, s: p.std,
            summary="scale independent of the layer's size",
        ),
        Scheme(
            "uniform",
            "W ~ U(low, high); std = (high - low) / sqrt(12)",
            UniformParams,
            lambda w, p, s: uniform_(w, p.low, p.high),
            lambda p, s: (p.high - p.low) / math.sqrt(12),
            summary="scale independent of the layer's size",
        ),
        Scheme(
            "truncated_normal",
            "W ~ N(mean, std^2) cut to [mean + a*std, mean + b*std], a = lower_sd, b = upper_sd; "
            "std(W) = std * sqrt(1 + (a phi(a) - b phi(b))/Z - ((phi(a) - phi(b))/Z)^2), Z = Phi(b) - Phi(a)",
            TruncatedNormalParams,
            lambda w, p, s: truncated_normal_(w, p.mean, p.std, p.lower_sd, p.upper_sd),
            lambda p, s: p.std * truncated_std_factor(p.lower_sd, p.upper_sd),
            summary="cut-offs in std units (as Keras); torch's trunc_normal_ takes absolute a, b",
        ),
        Scheme(
            "xavier_uniform",
            "W ~ U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out)); std = gain * sqrt(2 / (fan_in + fan_out))",
            XavierParams,
            lambda w, p, s: variance_scaling_(w, _xavier_std(p, s), "uniform"),
            _xavier_std,
            summary="Glorot & Bengio 2010",
        ),
        Scheme(
            "xavier_normal",
            "W ~ N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out))",
            XavierParams,
            lambda w, p, s: variance_scaling_(w, _xavier_std(p, s), "normal"),
            _xavier_std,
            summary="Glorot & Bengio 2010",
        ),
        Scheme(
            "kaiming_uniform",
            "W ~ U(-b, b), b = sqrt(3) * gain(nonlinearity, a) / sqrt(fan_mode); std = gain / sqrt(fan_mode)",
            KaimingParams,
            lambda w, p, s: variance_scaling_(w, _kaiming_std(p, s), "uniform"),
            _kaiming_std,
            summary="He et al. 2015",
        ),
        Scheme(
            "kaiming_normal",
            "W ~ N(0, std^2), std = gain(nonlinearity, a) / sqrt(fan_mode)",
            KaimingParams,
            lambda w, p, s: variance_scaling_(w, _kaiming_std(p, s), "normal"),
            _kaiming_std,
            summary="He et al. 2015",
        ),
        Scheme(
            "lecun_uniform",
            "W ~ U(-b, b), b = sqrt(3 / fan_in); std = 1 / sqrt(fan_in)",
            NoParams,
            lambda w, p, s: variance_scaling_(w, _lecun_std(p, s), "uniform"),
            _lecun_std,
            summary="LeCun et al. 1998; Keras lecun_uniform",
        ),
        Scheme(
            "lecun_normal",
            "W ~ N(0, (s/0.8796)^2) cut at 2 of its std, s = 1 / sqrt(fan_in); std = s",
            NoParams,
            lambda w, p, s: variance_scaling_(w, _lecun_std(p, s), "truncated_normal"),
            _lecun_std,
            summary="Keras lecun_normal (truncated normal), for SELU",
        ),
        Scheme(
            "variance_scaling",
            "std = sqrt(scale / n), n = fan_in | fan_out | (fan_in + fan_out)/2; drawn from N(0, std^2), "
            "U(-sqrt(3) std, sqrt(3) std) or a normal cut at 2 std rescaled by 1/0.8796",
            VarianceScalingParams,
            lambda w, p, s: variance_scaling_(w, variance_scaling_std(s.shape, p.scale, p.mode), p.distribution),
            lambda p, s: variance_scaling_std(s.shape, p.scale, p.mode),
            summary="the general form: Xavier, Kaiming and LeCun are special cases",
        ),
        Scheme(
            "orthogonal",
            "W = gain * Q, Q with orthonormal rows or columns (W viewed as out x in*k); "
            "std ~ gain / sqrt(max(out, in*k))",
            OrthogonalParams,
            lambda w, p, s: orthogonal_(w, resolve_gain(p.gain, s.activation)),
            _orthogonal_std,
            iid=False,
            summary="Saxe et al. 2014",
        ),
        Scheme(
            "identity",
            "W = gain * I (Conv: Dirac delta at the kernel centre); non-square weights: "
            "fallback (eye = rectangular identity, a scheme, or null = error)",
            IdentityParams,
            _identity_fill,
            _identity_std,
            iid=False,
            summary="torch eye_ / dirac_; Le et al. 2015",
        ),
        Scheme(
            "sparse",
            "each column: ceil(sparsity * out) zeros, the rest ~ N(0, std^2); "
            "std(W) = std * sqrt(1 - ceil(sparsity * out) / out)",
            SparseParams,
            lambda w, p, s: sparse_(w, p.sparsity, p.std),
            lambda p, s: sparse_std(s.shape, p.sparsity, p.std),
            iid=False,
            summary="Martens 2010",
        ),
        Scheme(
            "pytorch_default",
            "W ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)); std = 1 / sqrt(3 fan_in)",
            NoParams,
            lambda w, p, s: pytorch_default_(w, s.fan_in),
            lambda p, s: 1.0 / math.sqrt(3 * s.fan_in),
            summary="nn.Linear/ConvNd reset_parameters (kaiming_uniform_, a = sqrt(5))",
        ),
        Scheme(
            "lsuv",
            "orthogonal pre-init, then per layer (in forward order) W /= sqrt(Var(layer output)) on "
            "a training batch until |Var - 1| < tol or max_iter; expected std = measured",
            LSUVParams,
            _no_fill,
            lambda p, s: None,
            iid=False,
            summary="Mishkin & Matas 2016, data-dependent",
        ),
        Scheme(
            "custom",
            "fn(W, **kwargs) for init._target_ = fn's dotted path; expected std = measured",
            CustomParams,
            lambda w, p, s: _call_custom(w, p),
            lambda p, s: None,
            iid=False,
            summary="any torch.nn.init-style function",
        ),
    )
}


def identity_fallbacks() -> tuple[str, ...]:
    """Allowed values of identity's ``fallback`` (besides null)."""
    return ("eye", *(n for n in SCHEMES if n not in ("identity", "lsuv", "custom")))


# Schemes that may initialize the output layer differently (init.output).
def output_schemes() -> tuple[str, ...]:
    return tuple(n for n in SCHEMES if n not in ("lsuv", "custom"))


# ---------------------------------------------------------------------------------------------------
# Validation


def _pydantic_message(name: str, error: ValidationError, prefix: str) -> str:
    parts = []
    for err in error.errors(include_url=False):
        err["msg"] = err["msg"].removeprefix("Value error, ")
        key = ".".join([prefix, *map(str, err["loc"])]) if err["loc"] else prefix
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(SCHEMES[name].params.model_fields) or "none"
            parts.append(f"{key}: unknown parameter of init={name} (its parameters: {allowed})")
        elif err["loc"]:
            parts.append(f"{key} = {err.get('input')!r}: {err['msg']}")
        else:
            parts.append(f"{prefix} (init={name}): {err['msg']}")
    return "\n  ".join(parts)


def _check_custom(p: CustomParams, prefix: str) -> None:
    key = f"{prefix}._target_"
    if not p.target or p.target == "???":
        raise ValueError(
            f"{key}: required with init=custom: the dotted path of a function fn(tensor, **kwargs) that fills "
            f"the tensor in place, e.g. {key}=torch.nn.init.orthogonal_ (extra arguments: +init.NAME=VALUE)"
        )
    try:
        fn = import_target(p.target)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"{key} = {p.target!r}: cannot be imported ({e}); is its module on PYTHONPATH?") from None
    except Exception as e:  # noqa: BLE001 - the user's module itself fails to import (syntax error, ...)
        raise ValueError(f"{key} = {p.target!r}: importing it failed: {type(e).__name__}: {e}") from None
    if not callable(fn):
        raise ValueError(f"{key} = {p.target!r}: is a {type(fn).__name__}, not a callable fn(tensor, **kwargs)")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # builtins without a signature: checked when called
    try:
        sig.bind(torch.empty(0), **p.kwargs)
    except TypeError as e:
        raise ValueError(
            f"{key} = {p.target!r}: cannot be called as fn(tensor, {', '.join(f'{k}=...' for k in p.kwargs)}): "
            f"{e} (extra keyword arguments come from +init.NAME=VALUE)"
        ) from None


def check_params(name: str, params: Mapping[str, Any], prefix: str = "init") -> Any:
    """Validate a scheme's parameters; ValueError names the key (``prefix.param``) and what is allowed."""
    if name not in SCHEMES:
        raise ValueError(f"{prefix}.name = {name!r}: unknown initializer; available: {', '.join(SCHEMES)}")
    try:
        p = SCHEMES[name].params.model_validate(dict(params))
    except ValidationError as e:
        raise ValueError(_pydantic_message(name, e, prefix)) from None
    if name == "custom":
        _check_custom(p, prefix)
    return p


def check_init(
    name: str,
    params: Mapping[str, Any],
    bias: str,
    output: str | None,
    output_params: Mapping[str, Any],
) -> None:
    """Everything about an init config that can be checked without a model: the scheme's parameters, the
    output layer's scheme and parameters, and whether ``init.bias=weight`` makes sense for them."""
    check_params(name, params)
    if output is not None:
        if output not in output_schemes():
            raise ValueError(
                f"init.output = {output!r}: unknown; use null (same as the other layers) or one of: "
                f"{', '.join(output_schemes())}"
            )
        check_params(output, output_params, prefix="init.output_params")
    elif output_params:
        raise ValueError("init.output_params: given but init.output is null; set init.output=SCHEME as well")
    if bias == "weight":
        for scheme in {name, output or name}:
            if not SCHEMES[scheme].iid and scheme != "custom":
                raise ValueError(
                    f"init.bias = 'weight': init={scheme} does not draw entries independently, so it has no "
                    f"distribution for a bias; use init.bias=zeros or init.bias=constant"
                )


# ---------------------------------------------------------------------------------------------------
# Applying a scheme to a model


@dataclass(frozen=True)
class LayerStats:
    """Statistics of one layer's weight right after initialization."""

    layer: str
    weight_mean: float
    weight_std: float
    weight_std_expected: float


class InitSpec(Protocol):
    """What :func:`initialize` needs of an init config (``config.InitConfig`` is one)."""

    name: str
    bias: str
    bias_value: float
    output: str | None

    @property
    def params(self) -> dict[str, Any]: ...

    @property
    def output_params(self) -> dict[str, Any]: ...


LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def init_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers an initializer touches, with their stable names: every Linear and Conv."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, LAYER_TYPES)]


def output_layer(layers: list[tuple[str, nn.Module]]) -> str | None:
    """Name of the output layer: the layer called ``out``, else the last one."""
    names = [n for n, _ in layers]
    return "out" if "out" in names else (names[-1] if names else None)


@torch.no_grad()
def _call_custom(w: Tensor, p: CustomParams) -> None:
    fn = import_target(p.target or "")
    try:
        result = fn(w, **p.kwargs)
    except Exception as e:  # noqa: BLE001 - any failure of user code becomes a clear message
        raise InitError(
            f"init._target_ = {p.target!r} failed on a tensor of shape {tuple(w.shape)}: {type(e).__name__}: {e}"
        ) from e
    if isinstance(result, Tensor) and result is not w and result.shape == w.shape:
        w.copy_(result)  # a function that returns a new tensor instead of filling in place


def _stats(layer: str, w: Tensor, expected: float | None) -> LayerStats:
    std = w.std().item() if w.numel() > 1 else 0.0
    return LayerStats(layer, w.mean().item(), std, std if expected is None else float(expected))


@torch.no_grad()
def _fill_bias(module: nn.Module, scheme: Scheme, p: Any, site: Site, bias: str, value: float) -> None:
    if getattr(module, "bias", None) is None:
        return
    if bias == "weight":
        scheme.fill(module.bias, p, site)  # iid: the weight's distribution (custom: fn(bias, **kwargs))
    else:
        constant_(module.bias, value if bias == "constant" else 0.0)


def initialize(model: nn.Module, init: InitSpec, activation: str, batch: Tensor | None = None) -> list[LayerStats]:
    """Initialize every Linear/Conv layer of ``model`` in place and return each weight's statistics.

    The output layer gets ``init.output`` (with ``init.output_params``) when set. Biases follow
    ``init.bias``: ``zeros``, ``constant`` (= bias_value) or ``weight`` (drawn from the layer's weight
    distribution). ``lsuv`` needs ``batch`` (training inputs). Raises InitError where the scheme cannot be
    applied (identity on a non-square weight without fallback, lsuv on a model it cannot rescale).
    """
    p = check_params(init.name, init.params)
    layers = init_layers(model)
    out_name = output_layer(layers)
    plan: dict[str, tuple[Scheme, Any]] = {}
    for layer_name, _ in layers:
        if layer_name == out_name and init.output is not None:
            plan[layer_name] = (
                SCHEMES[init.output],
                check_params(init.output, init.output_params, "init.output_params"),
            )
        elif init.name == "lsuv":
            plan[layer_name] = (SCHEMES["orthogonal"], OrthogonalParams(gain=1.0))  # LSUV's pre-init
        else:
            plan[layer_name] = (SCHEMES[init.name], p)

    expected: dict[str, float | None] = {}
    for layer_name, module in layers:
        scheme, sp = plan[layer_name]
        site = Site(tuple(module.weight.shape), activation)
        try:
            scheme.fill(module.weight, sp, site)
        except InitError as e:
            raise InitError(f"layer {layer_name}: {e}") from None
        _fill_bias(module, scheme, sp, site, init.bias, init.bias_value)
        expected[layer_name] = scheme.expected_std(sp, site)

    if init.name == "lsuv":
        rescaled = [(n, m) for n, m in layers if not (n == out_name and init.output is not None)]
        lsuv_(model, rescaled, batch, p)
        for n, _ in rescaled:
            expected[n] = None  # data-dependent: the measured value
    return [_stats(n, m.weight, expected[n]) for n, m in layers]


@torch.no_grad()
def lsuv_(
    model: nn.Module, layers: list[tuple[str, nn.Module]], batch: Tensor | None, p: LSUVParams
) -> dict[str, float]:
    """Layer-sequential unit variance (Mishkin & Matas 2016): for each layer in forward order, scale its
    weight by 1/sqrt(Var(output)) on a batch until |Var(output) - 1| < tol or max_iter rounds.

    Returns each layer's final output variance. Raises InitError for what it cannot handle: no data, a
    layer the forward pass never reaches or reaches more than once (shared weights), or an output with
    zero or non-finite variance (nothing to rescale).
    """
    if batch is None or len(batch) < 2:
        raise InitError("init=lsuv needs a batch of training data (2 or more samples)")
    if len(batch) > p.batch_size:
        batch = batch[torch.randperm(len(batch))[: p.batch_size].to(batch.device)]
    captured: dict[str, list[Tensor]] = {n: [] for n, _ in layers}
    handles = [m.register_forward_hook(lambda mod, inp, out, n=n: captured[n].append(out)) for n, m in layers]
    was_training = model.training
    model.eval()
    variances: dict[str, float] = {}
    try:
        for name, module in layers:
            for rounds in range(p.max_iter + 1):
                for v in captured.values():
                    v.clear()
                model(batch)
                outs = captured[name]
                if len(outs) != 1:
                    raise InitError(
                        f"init=lsuv cannot handle this model: layer {name} runs {len(outs)} times in one forward "
                        f"pass (it needs each Linear/Conv layer exactly once, in sequence); use another init"
                    )
                var = outs[0].double().var().item()
                if not math.isfinite(var) or var <= 1e-12:
                    raise InitError(
                        f"init=lsuv cannot handle this model: layer {name}'s output has variance {var:.3g} on the "
                        f"data batch, so no rescaling can make it 1 (dead units or constant input?); use another "
                        f"init, or check init.bias / init.bias_value"
                    )
                variances[name] = var
                if abs(var - 1.0) < p.tol or rounds == p.max_iter:
                    break
                module.weight.mul_(1.0 / math.sqrt(var))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return variances
