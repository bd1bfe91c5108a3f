"""The search space of a study: Hydra's sweep syntax (``interval``, ``choice``, ``range``, ``tag``) as Optuna
distributions, and trials' values back as Hydra overrides. Pure functions over Hydra's override parser."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import product
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from hydra.errors import HydraException, OverrideParseException
from optuna.distributions import CategoricalChoiceType, CategoricalDistribution, FloatDistribution, IntDistribution

from initsweep.core.config import ConfigError, did_you_mean, dotted_keys

SETTINGS_KEY = "hydra.sweeper"
SEARCH_TAGS = ("log", "int")


# Search space: Hydra's sweep syntax -> Optuna distributions


@dataclass(frozen=True)
class SearchParam:
    """One searched config key: its Optuna distribution and the expression it came from."""

    name: str  # config path, e.g. "init.std"; also the Optuna parameter name
    distribution: Any  # optuna.distributions.BaseDistribution
    expression: str  # as written, e.g. "tag(log, interval(0.001, 1.0))"
    add: bool = False  # `+key=...`: the key is added to the config

    def corners(self) -> list[Any]:
        """Values worth checking before any trial: the bounds, or every choice (at most 10)."""
        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            return list(d.choices)[:10]
        return [d.low, d.high]

    def grid(self) -> list[Any] | None:
        """Every value of a finite distribution (choice, range, int interval), else None."""
        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            return list(d.choices)
        if isinstance(d, IntDistribution) and not d.log:
            return list(range(d.low, d.high + 1, d.step))
        if isinstance(d, FloatDistribution) and d.step is not None:
            n = int(round((d.high - d.low) / d.step))
            return [_clean_float(d.low + i * d.step) for i in range(n + 1)]
        return None


def _clean_float(x: float) -> float:
    """Drop binary noise from a computed grid point (0.30000000000000004 -> 0.3)."""
    return float(f"{x:.12g}")


def _param_error(key: str, expression: str, problem: str) -> ConfigError:
    return ConfigError(f"{SETTINGS_KEY}.params.{key} = {expression!r}: {problem}")


def _distribution(key: str, expression: str, value: Any, tags: set[str]) -> Any:
    """The Optuna distribution of one parsed sweep value (interval, choice or range)."""
    unknown = tags - set(SEARCH_TAGS)
    if unknown:
        raise _param_error(key, expression, f"unknown tag {sorted(unknown)}; allowed tags: {', '.join(SEARCH_TAGS)}")
    if isinstance(value, IntervalSweep):
        return _interval(key, expression, value, tags)
    if "log" in tags:
        raise _param_error(key, expression, "tag log applies to interval(...) only")
    if isinstance(value, (RangeSweep, ChoiceSweep)) and value.shuffle:
        raise _param_error(key, expression, "shuffle(...) means nothing to a sampler; drop it")
    if isinstance(value, RangeSweep):
        return _range(key, expression, value)
    if isinstance(value, ChoiceSweep):
        return _choice(key, expression, list(value.list))
    allowed = "interval(a,b), tag(log, interval(a,b)), choice(...) or range(...)"
    raise _param_error(key, expression, f"not a search expression; use {allowed}")


def _interval(key: str, expression: str, value: IntervalSweep, tags: set[str]) -> Any:
    """interval(low, high): float, or int with tag int; log-uniform with tag log."""
    low, high, log = value.start, value.end, "log" in tags
    if low is None or high is None:  # Hydra's parser sets both; a hand-made IntervalSweep may not
        raise _param_error(key, expression, "interval(low, high) needs both bounds")
    if not low < high:
        raise _param_error(key, expression, f"empty interval: low ({low:g}) must be below high ({high:g})")
    if log and low <= 0:
        raise _param_error(key, expression, f"a log interval needs low > 0, got {low:g}")
    if "int" not in tags:
        return FloatDistribution(float(low), float(high), log=log)
    if low != int(low) or high != int(high):
        raise _param_error(key, expression, "tag int needs whole-number bounds")
    return IntDistribution(int(low), int(high), log=log)


def _range(key: str, expression: str, value: RangeSweep) -> Any:
    """range(start, stop, step): the values start, start + step, ... below stop, as a stepped distribution."""
    start, stop, step = value.start, value.stop, value.step
    if start is None or stop is None:  # Hydra's parser sets both; a hand-made RangeSweep may not
        raise _param_error(key, expression, "range(start, stop, step) needs a start and a stop")
    if step is None or step <= 0:
        raise _param_error(key, expression, "range(start, stop, step) needs a positive step")
    count = math.ceil((stop - start) / step)
    if count < 1:
        raise _param_error(key, expression, f"empty range: no value from {start:g} up to (excluding) {stop:g}")
    last = start + (count - 1) * step
    if all(isinstance(v, int) for v in (start, stop, step)):
        return IntDistribution(int(start), int(last), step=int(step))
    if count == 1:
        return CategoricalDistribution([_clean_float(start)])
    return FloatDistribution(float(start), _clean_float(last), step=float(step))


def _choice(key: str, expression: str, choices: list[Any]) -> Any:
    """choice(a, b, ...): distinct numbers, strings, booleans or null."""
    if not choices:
        raise _param_error(key, expression, "empty choice")
    checked: list[CategoricalChoiceType] = []
    for c in choices:
        if not (c is None or isinstance(c, (bool, int, float, str))):
            problem = f"choice values must be numbers, strings, booleans or null, got {c!r}"
            raise _param_error(key, expression, problem)
        checked.append(c)
    if len(set(map(repr, choices))) != len(choices):
        raise _param_error(key, expression, "choice values must be distinct")
    return CategoricalDistribution(checked)


@dataclass(frozen=True)
class SearchSpace:
    """The searched keys, and the plain overrides every trial gets (the command line's, as given)."""

    params: tuple[SearchParam, ...]
    fixed: tuple[str, ...] = ()

    @property
    def distributions(self) -> dict[str, Any]:
        return {p.name: p.distribution for p in self.params}

    def overrides(self, values: Mapping[str, Any]) -> list[str]:
        """Command-line overrides for one trial: the fixed ones, then one per searched key."""
        by_name = {p.name: p for p in self.params}
        return [*self.fixed, *(format_override(k, v, add=by_name[k].add) for k, v in values.items())]


def parse_search_space(params: Mapping[str, Any], arguments: Sequence[str]) -> SearchSpace:
    """Search space from the sweeper's ``params`` (overlay) and the command line's sweep overrides.

    A command-line sweep (``init.std='interval(0.01,0.1)'``) replaces the overlay's entry for the same key,
    a plain value on the command line (``init.std=0.05``) takes the key out of the search, and a plain value
    in ``params`` (``trainer.lr: 0.1``) is passed to every trial. Raises ConfigError naming
    the key for anything a sampler cannot search.
    """
    parser = OverridesParser.create()
    searched: dict[str, SearchParam] = {}
    fixed: list[str] = []

    def parse(line: str, key: str, expression: str):
        try:
            return parser.parse_override(line)
        except (OverrideParseException, HydraException) as e:
            raise _param_error(key, expression, f"cannot parse: {str(e).splitlines()[0]}") from None

    for key, raw in (params or {}).items():
        expression = str(raw)
        o = parse(f"{key}={expression}", key, expression)
        if o.is_sweep_override():
            searched[o.key_or_group] = SearchParam(
                o.key_or_group, _distribution(key, expression, o.value(), set(o.value().tags)), expression, o.is_add()
            )
        else:
            fixed.append(f"{key}={expression}")
    cli_fixed: list[str] = []
    for line in arguments:
        o = parse(line, line.split("=", 1)[0], line.split("=", 1)[-1])
        if o.is_sweep_override():
            if o.is_delete():
                raise _param_error(o.key_or_group, line, "a deletion cannot be searched")
            expression = line.split("=", 1)[1]
            value = o.value()
            distribution = _distribution(o.key_or_group, expression, value, set(value.tags))
            searched[o.key_or_group] = SearchParam(o.key_or_group, distribution, expression, o.is_add())
        else:
            searched.pop(o.key_or_group, None)  # a plain value on the command line fixes a searched key
            cli_fixed.append(line)
    if not searched:
        raise ConfigError(
            f"{SETTINGS_KEY}.params: nothing to search; declare e.g. `init.std: tag(log, interval(0.001, 1.0))` "
            "in an hparams_search overlay or pass `init.std='interval(0.01,1)'` on the command line"
        )
    # Command-line overrides come last so they win over params' plain values.
    return SearchSpace(tuple(searched.values()), tuple(fixed + cli_fixed))


def format_override(key: str, value: Any, add: bool = False) -> str:
    """``key=value`` in Hydra's override syntax; floats keep every digit (repr), strings are quoted if needed."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float)):
        text = repr(value)
    else:
        s = str(value)
        safe = s and all(ch.isalnum() or ch in "_-./:" for ch in s) and not s[0].isdigit()
        text = s if safe else "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return f"{'+' if add else ''}{key}={text}"


def check_paths(space: SearchSpace, job_config: Mapping[str, Any]) -> None:
    """Every searched key (except ``+key`` additions) must exist in the job's config."""
    known = dotted_keys(job_config)  # group nodes such as "init" or "model" count too
    for p in space.params:
        if p.add or p.name in known:
            continue
        problem = f"{p.name} is not a key of the config{did_you_mean(p.name, known)} (use +{p.name} to add a key)"
        raise _param_error(p.name, p.expression, problem)


def grid_points(space: SearchSpace) -> list[tuple[Any, ...]]:
    """All points of a finite search space, in parameter order."""
    return list(product(*(p.grid() or [] for p in space.params)))
