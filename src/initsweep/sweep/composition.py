"""Composing a sweep's job configs once per combination of config-group choices.

Hydra composes every job of a multirun from scratch (about 0.2 s each here), twice for the basic sweeper: once
to check the batch, once to run it; the Optuna sweeper once per trial. Only the config-group choices
(``init=zeros``) change what a composition reads; every other override (``seed=3``, ``init.std=0.1``,
``+init.output_params.std=0.01``) is applied by Hydra to the composed config afterwards. So both helpers here
compose each distinct combination of group choices once and apply each job's other overrides to a copy, with
Hydra's own function:

- :func:`compose_jobs` gives the plain job configs (no ``hydra`` node) the sweep callback validates;
- :class:`CachedSweepLoader` is the config loader the sweepers hand their launchers: its
  ``load_sweep_config`` returns what Hydra's returns, in about 0.02 s instead of 0.2 s.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Callable
from typing import Any

from hydra.core.config_loader import ConfigLoader
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.types import HydraContext
from omegaconf import DictConfig, OmegaConf

from initsweep._compat.hydra import apply_overrides, get_overrides_dirname
from initsweep.protocol import job_config_dict


def is_group(loader: ConfigLoader, master_config: DictConfig, key: str) -> bool:
    """Whether ``key`` names a config group in the search path of the master config's composition."""
    hydra = master_config.hydra
    return bool(
        loader.get_group_options(
            key, results_filter=None, config_name=hydra.job.config_name, overrides=list(hydra.overrides.hydra)
        )
    )


def input_line(override: Override) -> str:
    """The override as written: OverridesParser.parse_overrides sets it on every override it returns."""
    if override.input_line is None:
        raise ValueError(f"the override of {override.key_or_group} was not parsed from a string")
    return override.input_line


def split_choices(overrides: list[Override], group: Callable[[str], bool]) -> tuple[list[Override], list[Override]]:
    """``overrides`` split as Hydra splits them: config-group choices (which select what is composed) and the
    rest (applied to the composed config). A dict value is never a choice."""
    choices: list[Override] = []
    rest: list[Override] = []
    for o in overrides:
        (choices if group(o.key_or_group) and not isinstance(o.value(), dict) else rest).append(o)
    return choices, rest


def compose_jobs(
    config: DictConfig,
    jobs: list[list[str]],
    loader: ConfigLoader,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Each job's config (no ``hydra`` node, resolved) as Hydra will compose it, with one full composition per
    distinct combination of group choices; ``hydra.*`` overrides are left out. A copy of a plain dict costs
    microseconds when every other override sets an existing leaf of an interpolation-free config.
    ``progress(n)`` is called after each job's config."""
    parser = OverridesParser.create(config_loader=loader)
    group = functools.lru_cache(maxsize=None)(functools.partial(is_group, loader, config))
    bases: dict[tuple[str, ...], dict[str, Any]] = {}
    out = []
    for job in jobs:
        choices, rest = split_choices(parser.parse_overrides(job), group)
        key = tuple(input_line(o) for o in choices)
        if key not in bases:
            bases[key] = job_config_dict(loader.load_sweep_config(config, list(key)), resolve=False)
        out.append(_with_overrides(bases[key], [o for o in rest if not o.is_hydra_override()]))
        if progress is not None:
            progress(len(out))
    return out


def _with_overrides(base: dict[str, Any], overrides: list[Override]) -> dict[str, Any]:
    """``base`` (unresolved) with Hydra overrides applied, resolved: a dict copy when every override sets an
    existing leaf to a scalar and nothing interpolates, else through OmegaConf as Hydra does."""
    if "${" not in repr(base) and all(_plain_leaf(base, o) for o in overrides):
        out = copy.deepcopy(base)
        for o in overrides:
            *path, leaf = o.key_or_group.split(".")
            node = out
            for key in path:
                node = node[key]
            node[leaf] = o.value()
        return out
    cfg = OmegaConf.create(base)
    OmegaConf.set_struct(cfg, True)  # as Hydra's composed config: a new key needs +key=value
    apply_overrides(overrides, cfg)
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def _plain_leaf(base: dict[str, Any], override: Override) -> bool:
    """Whether ``override`` is ``key=scalar`` on a key that exists in ``base`` and holds no mapping or list."""
    if override.is_add() or override.is_delete() or override.is_force_add() or override.package is not None:
        return False
    if isinstance(override.value(), (dict, list)):
        return False
    node: Any = base
    for key in override.key_or_group.split("."):
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return not isinstance(node, (dict, list))


def _leaves_composition_alone(override: Override) -> bool:
    """Whether applying ``override`` after composition gives what composing with it gives: any app key; of
    Hydra's own keys only ``hydra.job.env_set.*`` (the Optuna sweeper sets a trial's number there), as others
    (``hydra.searchpath``, ``hydra.job.env_copy``, ...) change what Hydra composes or derives."""
    return not override.is_hydra_override() or override.key_or_group.startswith("hydra.job.env_set.")


class CachedSweepLoader(ConfigLoader):
    """Hydra's config loader with a cache in ``load_sweep_config``: the first job of each combination of group
    choices is composed in full; another job gets a copy of it with its other overrides applied by Hydra's own
    ``_apply_overrides_to_config``, and the fields Hydra derives from a job's overrides set again
    (``hydra.overrides``, ``hydra.job.override_dirname``, ``hydra.runtime.cwd``). A job with a ``hydra.*``
    value override other than ``hydra.job.env_set.*`` is composed in full. Everything else is the wrapped
    loader's. Picklable: joblib and submitit workers receive it with the sweeper's launcher, bases included."""

    def __init__(self, loader: ConfigLoader) -> None:
        self.loader = loader
        self._bases: dict[tuple[Any, ...], DictConfig] = {}
        self._groups: dict[tuple[Any, ...], bool] = {}

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        parsed = OverridesParser.create().parse_overrides(list(sweep_overrides))
        context = (str(master_config.hydra.job.config_name), *master_config.hydra.overrides.hydra)
        choices, rest = split_choices(parsed, functools.partial(self._is_group, master_config, context))
        if any(o.is_sweep_override() for o in parsed) or not all(map(_leaves_composition_alone, rest)):
            return self.loader.load_sweep_config(master_config, list(sweep_overrides))
        key = (context, *(o.input_line for o in choices))
        if key not in self._bases:
            self._bases[key] = self.loader.load_sweep_config(master_config, [str(o.input_line) for o in choices])
        cfg = copy.deepcopy(self._bases[key])
        apply_overrides(rest, cfg)
        task = [o for o in parsed if not o.is_hydra_override()]
        naming = cfg.hydra.job.config.override_dirname
        cfg.hydra.overrides.task = [o.input_line for o in task]
        cfg.hydra.overrides.hydra = [*context[1:], *(o.input_line for o in parsed if o.is_hydra_override())]
        cfg.hydra.job.override_dirname = get_overrides_dirname(
            overrides=task, kv_sep=naming.kv_sep, item_sep=naming.item_sep, exclude_keys=naming.exclude_keys
        )
        cfg.hydra.runtime.cwd = os.getcwd()
        OmegaConf.copy_cache(from_config=master_config, to_config=cfg)
        return cfg

    def _is_group(self, master_config: DictConfig, context: tuple[Any, ...], key: str) -> bool:
        if (context, key) not in self._groups:
            self._groups[(context, key)] = is_group(self.loader, master_config, key)
        return self._groups[(context, key)]

    def load_configuration(self, *args: Any, **kwargs: Any) -> DictConfig:
        return self.loader.load_configuration(*args, **kwargs)

    def get_search_path(self) -> Any:
        return self.loader.get_search_path()

    def get_sources(self) -> Any:
        return self.loader.get_sources()

    def list_groups(self, parent_name: str) -> Any:
        return self.loader.list_groups(parent_name)

    def get_group_options(self, *args: Any, **kwargs: Any) -> Any:
        return self.loader.get_group_options(*args, **kwargs)

    def compute_defaults_list(self, *args: Any, **kwargs: Any) -> Any:
        return self.loader.compute_defaults_list(*args, **kwargs)


def cached_context(hydra_context: HydraContext) -> HydraContext:
    """``hydra_context`` with its config loader wrapped in a :class:`CachedSweepLoader`: a sweeper's setup
    hands it to its launcher, which then composes each job through the cache."""
    return HydraContext(config_loader=CachedSweepLoader(hydra_context.config_loader), callbacks=hydra_context.callbacks)
