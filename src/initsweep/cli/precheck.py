"""Command-line checks that run before ``hydra.main``: every config error is one ``initsweep:`` line, exit 2.

Hydra reports its own errors (unknown key, unknown group option, bad override syntax) with its search path
and exit 1, and by the time the task function validates a config, Hydra has already created the run's
output directory. :func:`check_command_line` composes the config the way Hydra will (sweeps replaced by
their first value, every value of a swept group checked against the group's options) and, for a single
run, validates it against the schema, so that a rejected command leaves no ``outputs/`` or ``multirun/``
directory behind. It composes with the search path Hydra will use: the primary config dir (or ``-cp``), a
user's ``--config-dir``, and ``hydra.searchpath`` from the command line or the primary config, so a user's
own group options are accepted and a typo in one is reported with the options listed.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

# Flags after which Hydra runs nothing (help, printed config, shell completion): no check needed.
_NO_RUN_FLAGS = ("help", "hydra_help", "cfg", "info", "shell_completion")


def fail(message: str) -> NoReturn:
    """Print ``initsweep: message`` to stderr and exit 2."""
    print(f"initsweep: {message}", file=sys.stderr)
    raise SystemExit(2)


def _first_values(overrides: list[Any]) -> list[str]:
    """The overrides with every sweep replaced by its first value (glob sweeps left out)."""
    out = []
    for o in overrides:
        if not o.is_sweep_override():
            out.append(o.input_line)
            continue
        try:
            first = next(iter(o.sweep_string_iterator()))
        except Exception:  # noqa: BLE001 - glob() and other sweeps that need the group's options
            continue
        out.append(f"{o.get_key_element()}={first}")
    return out


def _command() -> str:
    """How this process was started, for messages: ``initsweep``, ``python -m initsweep`` or ``python train.py``."""
    name = Path(sys.argv[0]).name
    if name == "__main__.py":
        return "python -m initsweep"
    return f"python {name}" if name.endswith(".py") else name or "initsweep"


def _compose(overrides: list[str], config_name: str) -> Any:
    from hydra import compose

    return compose(config_name=config_name, overrides=overrides)


def _searchpath_overrides(parsed: list[Any]) -> list[str]:
    """The ``hydra.searchpath=[...]`` overrides of the command line (Hydra's loader honours the first)."""
    return [o.input_line for o in parsed if o.get_key_element() == "hydra.searchpath"]


def _group_options(loader: Any, group: str, parsed: list[Any], config_name: str, subgroups: bool = False) -> list[str]:
    """The options of config group ``group`` (with ``subgroups``: its subgroups too) in the search path of this
    composition: the user's ``hydra.searchpath`` (command line, else the primary config's) included. Empty when
    ``group`` is no config group."""
    from hydra.core.object_type import ObjectType

    kind = None if subgroups else ObjectType.CONFIG
    return list(loader.get_group_options(group, kind, config_name=config_name, overrides=_searchpath_overrides(parsed)))


def _explain(error: Exception, parsed: list[Any], config_name: str) -> str:
    """One line for a Hydra composition error, with the closest key or option."""
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from initsweep.core.config import did_you_mean, dotted_keys

    text = str(error)
    loader = GlobalHydra.instance().config_loader()
    if m := re.search(r"Could not find '([^']+)/([^'/]+)'", text):
        group, value = m.group(1), m.group(2)
        options = _group_options(loader, group, parsed, config_name)
        return f"{group}={value}: no such option{did_you_mean(value, options)} (options: {', '.join(options)})"
    if m := re.search(r"Could not (?:override|append to config|delete from config)[^']*'([^']+)'", text) or re.search(
        r"full_key: (\S+)", text
    ):
        key = m.group(1).lstrip("+~")
        others = [o.input_line for o in parsed if o.get_key_element().lstrip("+~") != key and not o.is_sweep_override()]
        try:
            known = dotted_keys(OmegaConf.to_container(_compose(others, config_name), resolve=False))  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001
            known = []
        line = next((o.input_line for o in parsed if o.get_key_element().lstrip("+~") == key), key)
        # A close key of the same section (trainer.lrr: trainer.lr), else a new key (init.factor on a custom
        # init), which Hydra takes with a +.
        section, _, last = key.rpartition(".")
        siblings = [k.rpartition(".")[2] for k in known if k.rpartition(".")[0] == section]
        hint = did_you_mean(last, siblings, section)
        if not hint:
            hint = "; add it with +" + line.lstrip("+~") if "Could not append" not in text else ""
        return f"unknown key {key} (in {line}){hint}"
    return text.replace("\n", " ").split("Config search path")[0].strip()


def take_config_dirs(argv: Sequence[str]) -> list[str]:
    """``argv`` without ``--config-dir DIR`` / ``--config-dir=DIR`` / ``-cd DIR``, whose directories go to
    ``$INITSWEEP_CONFIG_DIRS`` (absolute, before any already there): the search-path plugin
    (hydra_plugins/initsweep_searchpath) puts them before the package's configs in this process and in every
    worker of a sweep. :func:`fail` for a directory that does not exist."""
    import os

    from initsweep.protocol import CONFIG_DIRS_ENV

    rest, dirs, items = [], [], list(argv)
    while items:
        arg = items.pop(0)
        if arg in ("--config-dir", "-cd") and items:
            dirs.append(items.pop(0))
        elif arg.startswith("--config-dir="):
            dirs.append(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    for d in dirs:
        if not Path(d).is_dir():
            fail(f"--config-dir {d}: no such directory ({Path(d).resolve()})")
    if dirs:
        known = [d for d in os.environ.get(CONFIG_DIRS_ENV, "").split(os.pathsep) if d]
        os.environ[CONFIG_DIRS_ENV] = os.pathsep.join([str(Path(d).resolve()) for d in dirs] + known)
    return rest


def check_command_line(
    argv: Sequence[str], config_path: str | Path, config_name: str = "config", task_module: str = "initsweep.cli.main"
) -> None:
    """Check the arguments of ``@hydra.main(config_path=..., config_name=...)`` (task function in module
    ``task_module``) as Hydra will read them, ``-cp``/``-cn``/``-cd`` included; on any config error,
    :func:`fail` (exit 2)."""
    from initsweep._compat.hydra import get_args_parser

    args, _ = get_args_parser().parse_known_args(take_config_dirs(argv))
    if any(getattr(args, flag, None) for flag in _NO_RUN_FLAGS):
        return
    parsed = _parse_overrides(args.overrides, args.multirun)
    primary = str(args.config_path if args.config_path is not None else config_path)
    cfg = _compose_checked(parsed, task_module, primary, args.config_name or config_name)
    if not args.multirun:  # a multirun: the sweep callback validates every job's config before the first job
        _validate(cfg)


def _parse_overrides(overrides: list[str], multirun: bool) -> list[Any]:
    """Hydra's parsed overrides; :func:`fail` on bad syntax, or on a sweep without ``-m``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as e:
        fail(f"bad override syntax: {str(e).splitlines()[0]} (see `{_command()} --help`; quote values with spaces)")
    sweeps = [o.input_line for o in parsed if o.is_sweep_override()]
    if sweeps and not multirun:
        fail(f"{sweeps[0]} is a sweep: add -m to run one job per value, or write a list as key=[a,b]")
    return parsed


def _compose_checked(parsed: list[Any], task_module: str, config_path: str, config_name: str) -> Any:
    """The config of the first job, composed as Hydra will (same search path); :func:`fail` on an unknown group
    option anywhere in a sweep, or on any composition error."""
    from hydra import version
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    from initsweep._compat.hydra import initialize_as_main, main_search_path

    version.setbase("1.3")  # as @hydra.main(version_base="1.3") sets it
    with initialize_as_main(main_search_path(task_module, config_path), task_name="initsweep"):
        loader = GlobalHydra.instance().config_loader()
        try:
            _check_swept_options(parsed, loader, config_name)
            cfg = _compose(_first_values(parsed), config_name)
        except (HydraException, Exception) as e:  # noqa: BLE001 - every composition error becomes one line
            fail(_explain(e, parsed, config_name))
    return cfg


def _check_swept_options(parsed: list[Any], loader: Any, config_name: str) -> None:
    """Every value of a swept config group must be one of its options."""
    from initsweep.core.config import did_you_mean

    for o in parsed:
        group = o.get_key_element().lstrip("+~")
        if not (o.is_sweep_override() and _group_options(loader, group, parsed, config_name, subgroups=True)):
            continue
        options = _group_options(loader, group, parsed, config_name)
        try:
            values = list(o.sweep_string_iterator())
        except Exception:  # noqa: BLE001 - glob(): Hydra expands it from the options themselves
            values = []
        for value in values:
            sub, _, name = value.rpartition("/")  # init=variants/normal_x10: option normal_x10 of init/variants
            known = _group_options(loader, f"{group}/{sub}", parsed, config_name) if sub else options
            if name not in known:
                shown = [f"{sub}/{o}" for o in known] if sub and known else options
                fail(f"{group}={value}: no such option{did_you_mean(value, shown)} (options: {', '.join(shown)})")


def _validate(cfg: Any) -> None:
    """The typed schema's check of a single run's config, then whether its data loads and its model builds
    (:func:`initsweep.jobs.resources.check_buildable`; the job reuses the loaded data); :func:`fail` with the
    message."""
    from omegaconf import OmegaConf

    from initsweep.core.config import ConfigError, validate

    try:
        config = validate(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
        from initsweep.tracking.processes import import_uninterrupted

        import_uninterrupted("torch")  # the job imports it next anyway
        from initsweep.jobs.resources import check_buildable

        check_buildable(config)
    except ConfigError as e:
        fail(str(e))
    except Exception as e:  # noqa: BLE001 - e.g. an interpolation that does not resolve
        fail(f"invalid configuration: {e}")
