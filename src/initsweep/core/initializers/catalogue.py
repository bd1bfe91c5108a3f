"""The catalogue: every scheme's parameter schema, how it fills one weight, and the std its formula promises.

``SCHEMES`` maps ``init.name`` to a :class:`Scheme`, in the order of the catalogue table; the fills themselves
live in :mod:`.fills`. A scheme's parameters are a pydantic model (extra keys forbidden), checked by
:func:`~initsweep.core.initializers.validation.check_params` before training, so that a bad value fails with one
message naming the key. Adding a scheme: one entry in ``SCHEMES`` (a member of the variance-scaling family:
one row of ``VARIANCE_SCALING``) and one ``conf/init/NAME.yaml`` with the schema's defaults.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from initsweep.core.initializers.fills import (
    NONLINEARITIES,
    constant_,
    delta_orthogonal_,
    delta_orthogonal_std,
    fan,
    fans,
    gain_for,
    identity_,
    identity_std,
    is_square,
    normal_,
    orthogonal_,
    pytorch_default_,
    resolve_gain,
    sparse_,
    sparse_std,
    truncated_normal_,
    truncated_std_factor,
    uniform_,
    variance_scaling_,
    variance_scaling_std,
)
from initsweep.core.lazy import no_grad
from initsweep.core.targets import import_target

if TYPE_CHECKING:
    from torch import Tensor


class InitError(ValueError):
    """A scheme cannot be applied to this model or data; the message names the key to change."""


# ---------------------------------------------------------------------------------------------------
# Parameter schemas


def _check_gain(value: Any) -> float | str:
    if value == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError("gain must be a number >= 0 or 'auto' (PyTorch's gain for the model's activation)")
    if value < 0:
        raise ValueError("gain must be >= 0 (or 'auto')")
    return float(value)


Gain = Annotated[Any, BeforeValidator(_check_gain)]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


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


class MeanFieldParams(_Params):
    sigma_w2: float = Field(1.76, ge=0, description="weight variance times fan_in, σw²")
    sigma_b2: float = Field(0.05, ge=0, description="bias variance, σb²")


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
# Schemes


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
    (lsuv, custom). ``bias_std(params)``, when set, is the scheme's own bias rule: biases ~ N(0, bias_std²),
    in place of ``init.bias`` (mean_field).
    """

    name: str
    formula: str
    params: type[BaseModel]
    fill: Callable[[Tensor, Any, Site], Any]
    expected_std: Callable[[Any, Site], float | None]
    iid: bool = True
    summary: str = ""
    bias_std: Callable[[Any], float] | None = None


StdRule = Callable[[Any, Site], float]


def variance_scaling_scheme(
    name: str, params: type[BaseModel], std: StdRule, distribution: str | None, formula: str, summary: str
) -> Scheme:
    """A member of the variance-scaling family: ``std(params, site)`` is its rule (the std its formula
    promises), and :func:`~initsweep.core.initializers.fills.variance_scaling_` draws W with that std from
    ``distribution`` (None: the scheme's own ``distribution`` parameter)."""

    def fill(w: Tensor, p: Any, s: Site) -> Tensor:
        return variance_scaling_(w, std(p, s), distribution or p.distribution)

    return Scheme(name, formula, params, fill, std, summary=summary)


# The family's std rules. All are sqrt(scale / fan) (Xavier: gain^2 over fan_avg, Kaiming: gain^2 over fan_mode,
# LeCun: 1 over fan_in), but each keeps its paper's arithmetic so the weights drawn stay bit-identical.
def _xavier_std(p: XavierParams, s: Site) -> float:
    return resolve_gain(p.gain, s.activation) * math.sqrt(2.0 / (s.fan_in + s.fan_out))


def _kaiming_std(p: KaimingParams, s: Site) -> float:
    nonlinearity = s.activation if p.nonlinearity == "auto" else p.nonlinearity
    a = p.a if nonlinearity == "leaky_relu" else None
    return gain_for(nonlinearity, a) / math.sqrt(fan(s.shape, p.mode))


def _lecun_std(p: Any, s: Site) -> float:
    return math.sqrt(1.0 / s.fan_in)


def _scaled_std(p: VarianceScalingParams, s: Site) -> float:
    return variance_scaling_std(s.shape, p.scale, p.mode)


# name, parameters, std rule, distribution (None: init.distribution), formula, reference
VARIANCE_SCALING: tuple[tuple[str, type[BaseModel], StdRule, str | None, str, str], ...] = (
    ("xavier_uniform", XavierParams, _xavier_std, "uniform",
     "W ~ U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out)); std = gain * sqrt(2 / (fan_in + fan_out))",
     "Glorot & Bengio 2010"),
    ("xavier_normal", XavierParams, _xavier_std, "normal",
     "W ~ N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out))",
     "Glorot & Bengio 2010"),
    ("kaiming_uniform", KaimingParams, _kaiming_std, "uniform",
     "W ~ U(-b, b), b = sqrt(3) * gain(nonlinearity, a) / sqrt(fan_mode); std = gain / sqrt(fan_mode)",
     "He et al. 2015"),
    ("kaiming_normal", KaimingParams, _kaiming_std, "normal",
     "W ~ N(0, std^2), std = gain(nonlinearity, a) / sqrt(fan_mode)",
     "He et al. 2015"),
    ("lecun_uniform", NoParams, _lecun_std, "uniform",
     "W ~ U(-b, b), b = sqrt(3 / fan_in); std = 1 / sqrt(fan_in)",
     "LeCun et al. 1998; Keras lecun_uniform"),
    ("lecun_normal", NoParams, _lecun_std, "truncated_normal",
     "W ~ N(0, (s/0.8796)^2) cut at 2 of its std, s = 1 / sqrt(fan_in); std = s",
     "Keras lecun_normal (truncated normal), for SELU"),
    ("variance_scaling", VarianceScalingParams, _scaled_std, None,
     "std = sqrt(scale / n), n = fan_in | fan_out | (fan_in + fan_out)/2; drawn from N(0, std^2), "
     "U(-sqrt(3) std, sqrt(3) std) or a normal cut at 2 std rescaled by 1/0.8796",
     "the general form: Xavier, Kaiming and LeCun are special cases"),
)  # fmt: skip


def _orthogonal_std(p: OrthogonalParams, s: Site) -> float:
    rows, cols = s.shape[0], math.prod(s.shape[1:])
    return resolve_gain(p.gain, s.activation) / math.sqrt(max(rows, cols))


def _identity_fill(w: Tensor, p: IdentityParams, s: Site) -> None:
    if p.fallback == "eye" and len(s.shape) > 2 and s.shape[0] > s.shape[1]:
        # A Dirac with more output than input channels copies each input channel once and leaves the other
        # out - in filters all zero: identical units, which stay identical in training.
        raise InitError(
            f"init=identity: a conv with more output than input channels ({s.shape[1]} -> {s.shape[0]}) has no "
            f"identity; the Dirac delta would leave {s.shape[0] - s.shape[1]} of its {s.shape[0]} filters all zero "
            f"(duplicate units). Set init.fallback=delta_orthogonal (an orthogonal centre tap, Xiao et al. 2018), "
            f"another scheme name, or use init=delta_orthogonal"
        )
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


@no_grad
def _call_custom(w: Tensor, p: CustomParams) -> None:
    import torch

    fn = import_target(p.target or "")
    try:
        result = fn(w, **p.kwargs)
    except Exception as e:  # noqa: BLE001 - any failure of user code becomes a clear message
        raise InitError(
            f"init._target_ = {p.target!r} failed on a tensor of shape {tuple(w.shape)}: {type(e).__name__}: {e}"
        ) from e
    if isinstance(result, torch.Tensor) and result is not w and result.shape == w.shape:
        w.copy_(result)  # a function that returns a new tensor instead of filling in place


# fmt: off
SCHEMES: dict[str, Scheme] = {s.name: s for s in (
    Scheme("zeros", "W = 0", NoParams, lambda w, p, s: constant_(w, 0.0), lambda p, s: 0.0,
           summary="all units identical: symmetry is never broken"),
    Scheme("ones", "W = 1", NoParams, lambda w, p, s: constant_(w, 1.0), lambda p, s: 0.0,
           summary="all units identical: symmetry is never broken"),
    Scheme("constant", "W = value", ConstantParams, lambda w, p, s: constant_(w, p.value), lambda p, s: 0.0,
           summary="all units identical"),
    Scheme("normal", "W ~ N(mean, std^2)", NormalParams, lambda w, p, s: normal_(w, p.mean, p.std),
           lambda p, s: p.std, summary="scale independent of the layer's size"),
    Scheme("uniform", "W ~ U(low, high); std = (high - low) / sqrt(12)", UniformParams,
           lambda w, p, s: uniform_(w, p.low, p.high), lambda p, s: (p.high - p.low) / math.sqrt(12),
           summary="scale independent of the layer's size"),
    Scheme("truncated_normal",
           "W ~ N(mean, std^2) cut to [mean + a*std, mean + b*std], a = lower_sd, b = upper_sd; "
           "std(W) = std * sqrt(1 + (a phi(a) - b phi(b))/Z - ((phi(a) - phi(b))/Z)^2), Z = Phi(b) - Phi(a)",
           TruncatedNormalParams, lambda w, p, s: truncated_normal_(w, p.mean, p.std, p.lower_sd, p.upper_sd),
           lambda p, s: p.std * truncated_std_factor(p.lower_sd, p.upper_sd),
           summary="cut-offs in std units (as Keras); torch's trunc_normal_ takes absolute a, b"),
    *(variance_scaling_scheme(*member) for member in VARIANCE_SCALING),
    Scheme("orthogonal", "W = gain * Q, Q with orthonormal rows or columns (W viewed as out x in*k); "
           "std ~ gain / sqrt(max(out, in*k))", OrthogonalParams,
           lambda w, p, s: orthogonal_(w, resolve_gain(p.gain, s.activation)), _orthogonal_std,
           iid=False, summary="Saxe et al. 2014"),
    Scheme("delta_orthogonal", "Conv: W[:, :, centre] = gain * H, H (out x in) with orthonormal rows or columns, "
           "every other tap 0; Linear: orthogonal. std ~ gain * sqrt(min(out, in) / numel)", OrthogonalParams,
           lambda w, p, s: delta_orthogonal_(w, resolve_gain(p.gain, s.activation)),
           lambda p, s: delta_orthogonal_std(s.shape, resolve_gain(p.gain, s.activation)),
           iid=False, summary="Xiao et al. 2018"),
    Scheme("identity", "W = gain * I (Conv: Dirac delta at the kernel centre); non-square weights: "
           "fallback (eye = rectangular identity: a Conv with out > in channels is refused, a scheme, or "
           "null = error)", IdentityParams,
           _identity_fill, _identity_std, iid=False, summary="torch eye_ / dirac_; Le et al. 2015"),
    Scheme("sparse", "each column: ceil(sparsity * out) zeros, the rest ~ N(0, std^2); "
           "std(W) = std * sqrt(1 - ceil(sparsity * out) / out)", SparseParams,
           lambda w, p, s: sparse_(w, p.sparsity, p.std), lambda p, s: sparse_std(s.shape, p.sparsity, p.std),
           iid=False, summary="Martens 2010"),
    Scheme("pytorch_default", "W ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)); std = 1 / sqrt(3 fan_in)", NoParams,
           lambda w, p, s: pytorch_default_(w, s.fan_in), lambda p, s: 1.0 / math.sqrt(3 * s.fan_in),
           summary="nn.Linear/ConvNd reset_parameters (kaiming_uniform_, a = sqrt(5))"),
    Scheme("mean_field", "W ~ N(0, sigma_w2 / fan_in), b ~ N(0, sigma_b2); std = sqrt(sigma_w2 / fan_in)",
           MeanFieldParams, lambda w, p, s: normal_(w, 0.0, math.sqrt(p.sigma_w2 / s.fan_in)),
           lambda p, s: math.sqrt(p.sigma_w2 / s.fan_in), bias_std=lambda p: math.sqrt(p.sigma_b2),
           summary="Poole et al. 2016, Schoenholz et al. 2017: logs q*, chi1, xi_c"),
    Scheme("lsuv", "orthogonal pre-init, then per layer (in forward order) W /= sqrt(Var(layer output)) on "
           "a training batch until |Var - 1| < tol or max_iter; expected std = measured", LSUVParams,
           _no_fill, lambda p, s: None, iid=False, summary="Mishkin & Matas 2016, data-dependent"),
    Scheme("custom", "fn(W, **kwargs) for init._target_ = fn's dotted path; expected std = measured",
           CustomParams, lambda w, p, s: _call_custom(w, p), lambda p, s: None, iid=False,
           summary="any torch.nn.init-style function"),
)}
# fmt: on


def identity_fallbacks() -> tuple[str, ...]:
    """Allowed values of identity's ``fallback`` (besides null)."""
    return ("eye", *(n for n in SCHEMES if n not in ("identity", "lsuv", "custom")))


def output_schemes() -> tuple[str, ...]:
    """Schemes that may initialize the output layer differently (``init.output``)."""
    return tuple(n for n in SCHEMES if n not in ("lsuv", "custom"))
