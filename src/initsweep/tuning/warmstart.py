"""Warm start of a study: points evaluated before the sampler's own (``hydra.sweeper.enqueue``).

``enqueue: [{init.std: 0.088}, {init.std: 0.0625}]`` queues those trials first (the other searched keys are
sampled); ``enqueue: variance_preserving`` (or that word as an item of the list) queues the He, LeCun and
Xavier scales of the chosen model, computed from the fans of its layer with the most weights (the std
rules of the catalogue's kaiming_normal for ReLU, lecun_normal and xavier_normal with gain 1):

    He: std = sqrt(2 / fan_in)    LeCun: std = sqrt(1 / fan_in)    Xavier: std = sqrt(2 / (fan_in + fan_out))

and written in the searched key's own terms: ``init.std`` as is, ``init.low`` / ``init.high`` as -/+ sqrt(3) std
(the uniform of that std), ``init.scale`` (variance_scaling) as std^2 x n of its mode, ``init.gain`` (xavier_*)
as std / sqrt(2 / (fan_in + fan_out)). Enqueued trials count toward ``n_trials``; re-running the command does
not queue a point the study already holds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from initsweep._compat.optuna import distribution_contains
from initsweep.core.config import ConfigError, validate
from initsweep.core.initializers import SCHEMES, Site, fan
from initsweep.tuning.search_space import SETTINGS_KEY, SearchSpace

VARIANCE_PRESERVING = "variance_preserving"
KEY = f"{SETTINGS_KEY}.enqueue"


def dominant_shape(base: Mapping[str, Any]) -> tuple[int, ...]:
    """The shape of the weight layer with the most weights of the model that ``base`` (a job config) builds."""
    from initsweep.core import data as datasets  # torch: only when variance-preserving points are asked for
    from initsweep.core.models import build_model

    config = validate(dict(base))
    data = datasets.load(config.data)
    model = build_model(config.model, data.input_shape, data.num_classes)
    weights = [p for name, p in model.named_parameters() if name.endswith("weight") and p.dim() >= 2]
    return tuple(max(weights, key=lambda p: p.numel()).shape)


def _std(scheme: str, shape: tuple[int, ...], **params: Any) -> float:
    """The std that ``scheme``'s own rule promises for a weight of ``shape``."""
    rule = SCHEMES[scheme]
    std = rule.expected_std(rule.params(**params), Site(shape, "relu"))
    assert std is not None  # a variance-scaling rule always promises one
    return std


def variance_preserving_stds(shape: tuple[int, ...]) -> dict[str, float]:
    """The He, LeCun and Xavier std of a weight (the catalogue's kaiming_normal for ReLU, lecun_normal and
    xavier_normal with gain 1; formulas in the module docstring)."""
    return {
        "he": _std("kaiming_normal", shape, nonlinearity="relu"),
        "lecun": _std("lecun_normal", shape),
        "xavier": _std("xavier_normal", shape, gain=1.0),
    }


def in_terms_of(key: str, std: float, init: Mapping[str, Any], shape: tuple[int, ...]) -> dict[str, float] | None:
    """The value(s) of searched ``key`` that give weights of ``std`` under ``init``; None for a key it does
    not know."""
    if key == "init.std":
        return {key: std}
    if key in ("init.low", "init.high"):
        return {"init.low": -math.sqrt(3.0) * std, "init.high": math.sqrt(3.0) * std}
    if key == "init.scale" and init.get("name") == "variance_scaling":
        return {key: std**2 * fan(shape, str(init.get("mode", "fan_in")))}
    if key == "init.gain" and str(init.get("name", "")).startswith("xavier"):
        return {key: std / _std("xavier_normal", shape, gain=1.0)}
    return None


def variance_preserving_points(space: SearchSpace, base: Mapping[str, Any]) -> list[dict[str, Any]]:
    """He, LeCun and Xavier points for the searched keys (duplicates dropped, e.g. LeCun = Xavier for a square
    layer); ConfigError when no searched key has a variance-preserving value."""
    searched = {p.name for p in space.params}
    shape = dominant_shape(base)
    points: list[dict[str, Any]] = []
    for std in variance_preserving_stds(shape).values():
        point: dict[str, Any] = {}
        for key in sorted(searched):
            values = in_terms_of(key, std, base.get("init", {}), shape) or {}
            point.update({k: round(v, 6) for k, v in values.items() if k in searched})
        if point and point not in points:
            points.append(point)
    if not points:
        raise ConfigError(
            f"{KEY} = {VARIANCE_PRESERVING!r}: none of the searched keys ({', '.join(sorted(searched))}) has a "
            "variance-preserving value; it knows init.std, init.low/init.high, init.scale (variance_scaling) and "
            "init.gain (xavier_*). Give the points yourself, e.g. enqueue=[{init.std: 0.1}]"
        )
    return points


def enqueue_points(setting: Any, space: SearchSpace, base: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The checked points of ``hydra.sweeper.enqueue``: a list of {searched key: value} (a point may leave
    keys out: the sampler draws them), ``variance_preserving``, or a list mixing both. ConfigError naming the
    point for a key that is not searched or a value outside its search range."""
    items: Sequence[Any] = [setting] if isinstance(setting, str) else list(setting or [])
    distributions = space.distributions
    points: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        if item == VARIANCE_PRESERVING:
            points.extend(p for p in variance_preserving_points(space, base) if _within(p, distributions))
            continue
        if not isinstance(item, Mapping) or not item:
            raise ConfigError(
                f"{KEY}[{i}] = {item!r}: a point is a mapping of searched keys to values, e.g. {{init.std: 0.1}}, "
                f"or the word {VARIANCE_PRESERVING}"
            )
        for key, value in item.items():
            if key not in distributions:
                raise ConfigError(f"{KEY}[{i}]: {key} is not searched; searched: {', '.join(distributions)}")
            if not _within({key: value}, distributions):
                expression = next(p.expression for p in space.params if p.name == key)
                raise ConfigError(f"{KEY}[{i}]: {key}={value!r} lies outside its search space {expression}")
        points.append(dict(item))
    return points


def _within(point: Mapping[str, Any], distributions: Mapping[str, Any]) -> bool:
    """Every value of ``point`` lies in its distribution."""
    for key, value in point.items():
        d = distributions[key]
        try:
            if not distribution_contains(d, value):
                return False
        except (ValueError, TypeError):
            return False
    return True


def enqueue(study: Any, points: Sequence[Mapping[str, Any]]) -> None:
    """Queue ``points`` in ``study`` (an optuna.Study) ahead of the sampler; a point already in the study (a
    resumed command) is not queued again."""
    for point in points:
        study.enqueue_trial(dict(point), skip_if_exists=True)
