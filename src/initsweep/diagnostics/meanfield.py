"""Mean-field signal propagation through a deep fully connected net at initialization, in the infinite-width limit
(Poole et al. 2016, "Exponential expressivity in deep neural networks through transient chaos"; Schoenholz et al.
2017, "Deep information propagation"), for weights W ~ N(0, σw²/fan_in), biases b ~ N(0, σb²) and activation φ.
With z, z1, z2 independent standard normals:

- length map q_{l+1} = σw² E[φ(√q_l z)²] + σb² (pre-activation variance); ``q_star`` = its fixed point q*,
  found by iterating the map from q = 1 (inf when it diverges, e.g. relu with σw² > 2);
- ``chi1`` χ1 = σw² E[φ'(√q* z)²]: the slope of the correlation map at c = 1, the mean squared singular value of
  one layer's Jacobian; χ1 < 1 ordered phase, χ1 > 1 chaotic, χ1 = 1 the edge of chaos;
- correlation map c_{l+1} = (σw² E[φ(u1) φ(u2)] + σb²) / q*, u1 = √q* z1, u2 = √q* (c z1 + √(1 - c²) z2), with
  slope χ_c(c) = σw² E[φ'(u1) φ'(u2)]; its stable fixed point c* is 1 when χ1 <= 1, else the root of
  c_{l+1}(c) = c below 1;
- ``xi_c`` ξ_c = -1 / ln χ_c(c*) (Schoenholz et al. 2017, eq. 9): the depth scale over which two inputs'
  correlation reaches c*; infinite at χ1 = 1. Nets deeper than about 6 ξ_c do not train (their Fig. 5).

Expectations are Gauss-Hermite quadratures (probabilists' nodes, :data:`NODES` per dimension), in float64.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from initsweep.core.models import ACTIVATION_MODULES

NODES = 100  # Gauss-Hermite nodes per dimension (even: no node at 0, where relu's slope jumps)
Q_MAX = 1e12  # the length map diverges beyond this
C_NEAR_1 = 1 - 1e-6  # a chaotic c* above this counts as 1


@dataclass(frozen=True)
class MeanField:
    """q*, χ1, c*, χ_c(c*) and ξ_c of one (activation, σw², σb²)."""

    q_star: float
    chi1: float
    c_star: float
    chi_c: float
    xi_c: float

    def metrics(self) -> dict[str, float]:
        """``diag/meanfield_q_star``, ``diag/chi1``, ``diag/xi_c``."""
        return {"diag/meanfield_q_star": self.q_star, "diag/chi1": self.chi1, "diag/xi_c": self.xi_c}


@lru_cache(maxsize=2)
def _gauss_hermite(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes z and weights w with sum_i w_i f(z_i) ~ E[f(z)], z ~ N(0, 1)."""
    z, w = np.polynomial.hermite_e.hermegauss(n)
    return torch.from_numpy(z), torch.from_numpy(w / math.sqrt(2 * math.pi))


@lru_cache(maxsize=8)
def _module(activation: str) -> torch.nn.Module:
    return ACTIVATION_MODULES[activation]()


def _phi(activation: str, u: torch.Tensor) -> torch.Tensor:
    """φ(u) for one of the model activations."""
    with torch.no_grad():
        return _module(activation)(u)


def _slope(activation: str, u: torch.Tensor) -> torch.Tensor:
    """φ'(u), by autograd."""
    with torch.enable_grad():
        x = u.detach().clone().requires_grad_(True)
        (slope,) = torch.autograd.grad(_module(activation)(x).sum(), x)
    return slope


def length_map(activation: str, sigma_w2: float, sigma_b2: float, q: float) -> float:
    """q_{l+1} = σw² E[φ(√q z)²] + σb²."""
    z, w = _gauss_hermite(NODES)
    phi = _phi(activation, math.sqrt(q) * z)
    return sigma_w2 * float((w * phi**2).sum()) + sigma_b2


def q_star(activation: str, sigma_w2: float, sigma_b2: float, tol: float = 1e-12, max_iter: int = 2000) -> float:
    """The fixed point of :func:`length_map` reached from q = 1 (inf when q exceeds ``Q_MAX``)."""
    q = 1.0
    for _ in range(max_iter):
        nxt = length_map(activation, sigma_w2, sigma_b2, q)
        if nxt > Q_MAX or not math.isfinite(nxt):
            return math.inf
        if abs(nxt - q) <= tol * max(q, 1e-300):
            return nxt
        q = nxt
    return q


def _pair(q: float, c: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quadrature grid of (u1, u2) with correlation c and variance q, and its weights."""
    z, w = _gauss_hermite(NODES)
    z1, z2 = z[:, None], z[None, :]
    s = math.sqrt(q)
    u1 = (s * z1).expand(-1, len(z))
    return u1, s * (c * z1 + math.sqrt(max(1 - c * c, 0.0)) * z2), w[:, None] * w[None, :]


def correlation_map(activation: str, sigma_w2: float, sigma_b2: float, q: float, c: float) -> float:
    """c_{l+1} = (σw² E[φ(u1) φ(u2)] + σb²) / q for inputs of length q and correlation c."""
    u1, u2, w2 = _pair(q, c)
    return (sigma_w2 * float((w2 * _phi(activation, u1) * _phi(activation, u2)).sum()) + sigma_b2) / q


def chi_c(activation: str, sigma_w2: float, q: float, c: float) -> float:
    """χ_c(c) = σw² E[φ'(u1) φ'(u2)], the slope of :func:`correlation_map` at c."""
    u1, u2, w2 = _pair(q, c)
    return sigma_w2 * float((w2 * _slope(activation, u1) * _slope(activation, u2)).sum())


def _chi1(activation: str, sigma_w2: float, q: float) -> float:
    z, w = _gauss_hermite(NODES)
    return sigma_w2 * float((w * _slope(activation, math.sqrt(q) * z) ** 2).sum())


def chi1(activation: str, sigma_w2: float, sigma_b2: float) -> float:
    """χ1 = σw² E[φ'(√q* z)²] alone (no c*, ξ_c: a few ms), e.g. to trace the edge of chaos χ1 = 1."""
    q = q_star(activation, sigma_w2, sigma_b2)
    return _chi1(activation, sigma_w2, min(q, Q_MAX) if q > 0 else 1e-300)


def mean_field(activation: str, sigma_w2: float, sigma_b2: float) -> MeanField:
    """q*, χ1, c*, χ_c and ξ_c (module docstring); c* by Brent's method on c_{l+1}(c) - c over [0, 1).
    Where q* is infinite, χ1 is that at q = ``Q_MAX`` (exact for the scale-free relu and linear), the rest NaN."""
    q = q_star(activation, sigma_w2, sigma_b2)
    q_eval = min(q, Q_MAX) if q > 0 else 1e-300
    chi1 = _chi1(activation, sigma_w2, q_eval)
    from scipy.optimize import brentq  # lazy: a job imports this module, few runs use it

    if math.isinf(q):  # no fixed length: correlations are not defined by this map
        return MeanField(q, chi1, math.nan, math.nan, math.nan)
    c, slope = 1.0, chi1
    gap = lambda c: correlation_map(activation, sigma_w2, sigma_b2, q_eval, c) - c  # noqa: E731
    if chi1 > 1 + 1e-9 and gap(C_NEAR_1) < 0:  # chaotic: c = 1 is unstable, the stable fixed point lies below
        # c_{l+1}(0) = (σw² E[φ]² + σb²) / q* >= 0, so c* is in [0, 1): 0 for an odd φ without biases
        c = brentq(gap, 0.0, C_NEAR_1, xtol=1e-12) if gap(0.0) > 1e-12 else 0.0
        slope = chi_c(activation, sigma_w2, q_eval, c)
    xi = -1.0 / math.log(slope) if 0 < slope < 1 else math.inf
    return MeanField(q, chi1, c, slope, xi)


def meanfield_metrics(scheme: str, params: Mapping[str, float], activation: str) -> dict[str, float]:
    """:meth:`MeanField.metrics` of an ``init=mean_field`` run (its ``sigma_w2``, ``sigma_b2``); none for other
    schemes, whose bias variance is not a parameter."""
    if scheme != "mean_field":
        return {}
    from initsweep.core.initializers import check_params

    p = check_params(scheme, params)
    return mean_field(activation, p.sigma_w2, p.sigma_b2).metrics()
