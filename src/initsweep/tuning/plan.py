"""The sweeper side of a study: samplers, pruners, storage, the checked plan of a study, and its plots.

The Hydra plugin (``hydra_plugins.initsweep_optuna_sweeper``) runs the ask/tell loop on what this module
builds; the job side of a study is :mod:`initsweep.tuning.trial`. Imported only when a study runs (never by
``train.py --help``), so optuna is imported at the top.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import textwrap
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import optuna.storages.journal  # JournalFileBackend's module: optuna.storages does not re-export it
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from initsweep.core.config import ConfigError, validate
from initsweep.core.targets import check_nested_targets
from initsweep.protocol import job_config_dict, metric_names, redact
from initsweep.tracking.drivers import check_storage_driver
from initsweep.tracking.store_races import open_despite_races
from initsweep.tuning.objectives import check_pruner, pareto_plot, resolve_directions
from initsweep.tuning.pruning import pruner_kwargs_for
from initsweep.tuning.search_space import SETTINGS_KEY, SearchSpace, check_paths, format_override, parse_search_space
from initsweep.tuning.settings import SweeperSettings
from initsweep.tuning.warmstart import enqueue_points

DEFAULT_STORAGE = Path("mlruns") / "optuna" / "journal.log"


class AskTellGridSampler(optuna.samplers.GridSampler):
    """GridSampler without the ``study.stop()`` of its after_trial, which works only inside
    ``study.optimize``; the sweeper stops asking by itself once every grid point has started."""

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        return None


class AskTellBruteForceSampler(optuna.samplers.BruteForceSampler):
    """BruteForceSampler without the ``study.stop()`` of its after_trial (see AskTellGridSampler)."""

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        return None


# Short names -> ``_target_``. These need no package beyond initsweep's own dependencies (gp needs torch and
# scipy, qmc scipy), except cmaes, which needs the `cmaes` package and is refused without it.
SAMPLERS = {
    "tpe": "optuna.samplers.TPESampler",
    "random": "optuna.samplers.RandomSampler",
    "grid": f"{__name__}.AskTellGridSampler",
    "qmc": "optuna.samplers.QMCSampler",
    "gp": "optuna.samplers.GPSampler",
    "nsga2": "optuna.samplers.NSGAIISampler",
    "bruteforce": f"{__name__}.AskTellBruteForceSampler",
    "cmaes": "optuna.samplers.CmaEsSampler",
}
PRUNERS = {
    "median": "optuna.pruners.MedianPruner",
    "percentile": "optuna.pruners.PercentilePruner",
    "successive_halving": "optuna.pruners.SuccessiveHalvingPruner",
    "hyperband": "optuna.pruners.HyperbandPruner",
    "threshold": "optuna.pruners.ThresholdPruner",
    "none": "optuna.pruners.NopPruner",
}
FINITE_SAMPLERS = ("grid", "bruteforce")  # they need every parameter to have finitely many values


def _node(kind: str, spec: Any, kwargs: Mapping[str, Any] | None, table: Mapping[str, str]) -> dict[str, Any]:
    """The ``_target_`` node of a sampler or pruner given by short name or as a node, with ``kwargs`` added."""
    if isinstance(spec, Mapping):
        if "_target_" not in spec:
            raise ConfigError(f"{SETTINGS_KEY}.{kind}: a node needs a _target_, e.g. optuna.{kind}s.X")
        node = {**spec, **(kwargs or {})}
        try:  # before Hydra's instantiate imports them: a _target_ that names nothing runs no code
            check_nested_targets(node, f"{SETTINGS_KEY}.{kind}")
        except ValueError as e:
            raise ConfigError(str(e)) from None
        return node
    if spec not in table:
        raise ConfigError(f"{SETTINGS_KEY}.{kind} = {spec!r}: unknown {kind}; available: {', '.join(table)}")
    return {"_target_": table[spec], **(kwargs or {})}


def _instantiate(kind: str, name: Any, node: Mapping[str, Any], **extra: Any) -> Any:
    """``hydra.utils.instantiate(node)``; a constructor's refusal becomes a ConfigError listing what it takes."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # qmc, gp, bruteforce
        try:
            return instantiate(dict(node), _convert_="all", **extra)
        except InstantiationException as e:
            cause = e.__cause__
            if not isinstance(cause, (TypeError, ValueError)):
                raise ConfigError(f"{SETTINGS_KEY}.{kind}: {str(e).splitlines()[0]}") from None
            cls: type[Any] = get_class(node["_target_"])
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "args", "kwargs")]
    raise ConfigError(
        f"{SETTINGS_KEY}.{kind}_kwargs: {cls.__name__} ({kind}={name}) refused them: {cause}; "
        f"it accepts: {', '.join(accepted) or 'nothing'} (kwargs meant for another {kind}? "
        f"reset them with {SETTINGS_KEY}.{kind}_kwargs={{}})"
    )


def make_sampler(
    spec: Any, kwargs: Mapping[str, Any] | None = None, seed: int | None = None, space: SearchSpace | None = None
) -> optuna.samplers.BaseSampler:
    """The sampler ``spec`` (a short name from SAMPLERS or a ``_target_`` node), seeded; grid and bruteforce
    need a finite space."""
    node = _node("sampler", spec, kwargs, SAMPLERS)
    if spec in FINITE_SAMPLERS and space is not None:
        infinite = [p.name for p in space.params if p.grid() is None]
        if infinite:
            raise ConfigError(
                f"{SETTINGS_KEY}.sampler = {spec!r} needs a finite search space, but {', '.join(infinite)} "
                "is a continuous interval; use choice(...), range(...) or tag(int, interval(a,b))"
            )
    if spec == "cmaes" and importlib.util.find_spec("cmaes") is None:
        raise ConfigError(f"{SETTINGS_KEY}.sampler = 'cmaes' needs the cmaes package: pip install cmaes")
    if spec == "grid":
        node["search_space"] = {p.name: p.grid() for p in space.params} if space else {}
    return _instantiate("sampler", spec, node, seed=seed)


def make_pruner(spec: Any, kwargs: Mapping[str, Any] | None = None) -> optuna.pruners.BasePruner:
    """The pruner ``spec`` (a short name from PRUNERS or a ``_target_`` node); ``none`` never prunes.

    percentile defaults to percentile=25 (prune below the best quarter's threshold when maximizing).
    """
    node = _node("pruner", spec, kwargs, PRUNERS)
    if spec == "percentile":
        node.setdefault("percentile", 25.0)
    return _instantiate("pruner", spec, node)


def resolve_storage(spec: str | None) -> str:
    """Storage spec as stored and shared: an RDB URL (``sqlite:///...``, ``postgresql://...``) as is, or the
    absolute path of an Optuna journal file (default: ``<cwd>/mlruns/optuna/journal.log``)."""
    if spec is None or str(spec).strip() == "":
        return str(Path.cwd() / DEFAULT_STORAGE)
    spec = str(spec)
    if "://" in spec:
        return spec
    return str(Path(spec).expanduser().resolve())


def open_storage(spec: str, **rdb_kwargs: Any) -> optuna.storages.BaseStorage:
    """A journal file path -> JournalStorage with a file backend (safe for several processes on one
    machine); an RDB URL -> RDBStorage(spec, **rdb_kwargs), opened again while another client is creating
    the same database's tables (:func:`initsweep.tracking.store_races.open_despite_races`)."""
    if "://" in spec:
        with warnings.catch_warnings():
            # heartbeat_interval is "experimental" in Optuna.
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            return open_despite_races(
                lambda: optuna.storages.RDBStorage(spec, **rdb_kwargs), f"the Optuna storage {redact(spec)}"
            )
    Path(spec).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(spec))


# The storages this process's trials use, by spec. A journal storage replays the whole file when opened (every
# study that ever used it: 0.04 s a trial on a fresh 30-trial study's journal, growing with the file); kept
# open, it reads only what other processes appended since. The sweeper lends the jobs it runs in its own
# process the storage it opened (:func:`share_storage`).
_TRIAL_STORAGES: dict[str, optuna.storages.BaseStorage] = {}


def share_storage(spec: str, storage: optuna.storages.BaseStorage | str) -> None:
    """Let this process's trials use ``storage``, opened from ``spec``, if it is a journal (the sweeper's RDB
    storage beats a heartbeat for its own trials: the trials open theirs)."""
    if isinstance(storage, optuna.storages.JournalStorage):
        _TRIAL_STORAGES[spec] = storage


def trial_storage(spec: str) -> optuna.storages.BaseStorage:
    """The storage ``spec`` names, opened once per process for its trials (it syncs with what others write)."""
    if spec not in _TRIAL_STORAGES:
        _TRIAL_STORAGES[spec] = optuna.storages.get_storage(open_storage(spec))
    return _TRIAL_STORAGES[spec]


def default_study_name(experiment_name: str, space: SearchSpace) -> str:
    """The experiment, the command's plain overrides and the search space, e.g.
    ``initsweep hparams_search=normal_std init.std=tag(log, interval(0.001, 3.0))``: the same command finds
    the same study again, and a different model, range or overlay gets a study of its own. A password in a
    store URL among the overrides (``tracking.uri=postgresql://u:pw@h/db``) is ``***``: the name is stored in
    the study, shown in log lines and recorded in MLflow."""
    searched = sorted(f"{p.name}={p.expression}" for p in space.params)
    return redact(" ".join([experiment_name, *sorted(space.fixed), *searched]))


def existing_study_directions(storage: optuna.storages.BaseStorage | str, study_name: str) -> list[str] | None:
    """The directions of ``study_name`` in ``storage`` (one per objective), or None if there is no such study."""
    names = {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if study_name not in names:
        return None
    return [d.name.lower() for d in names[study_name].directions]


# ---------------------------------------------------------------------------------------------------
# The plan: everything checked before the first trial


@dataclass
class Plan:
    """A checked study: settings, search space, direction, storage and the job config it starts from."""

    settings: SweeperSettings
    space: SearchSpace
    directions: list[str]  # one per optimized metric
    storage: str
    study_name: str
    pruner_kwargs: dict[str, Any]  # the user's, on top of initsweep.tuning.pruning's defaults
    base: dict[str, Any]  # the job config without sweep values
    checked_configs: list[dict[str, Any]] = field(default_factory=list)
    enqueue: list[dict[str, Any]] = field(default_factory=list)  # points evaluated first (initsweep.tuning.warmstart)

    @property
    def metrics(self) -> list[str]:
        """The optimized metrics: one, or several for a multi-objective study."""
        return metric_names(self.base.get("optimized_metric"))  # type: ignore[arg-type]

    @property
    def optimized_metric(self) -> str | list[str]:
        """The config's optimized_metric as given: a name, or a list of them."""
        return self.metrics[0] if len(self.metrics) == 1 else self.metrics

    @property
    def metric(self) -> str:
        """The optimized metric(s) for people: ``val/loss_best`` or ``val/loss_best, val/acc_best``."""
        return ", ".join(self.metrics)

    @property
    def direction(self) -> str:
        """The direction(s) for people: ``minimize`` or ``minimize, maximize``."""
        return ", ".join(self.directions)

    def sampler(self) -> optuna.samplers.BaseSampler:
        s = self.settings
        return make_sampler(s.sampler, s.sampler_kwargs, s.seed, self.space)

    def pruner(self) -> optuna.pruners.BasePruner:
        return make_pruner(self.settings.pruner, self.pruner_kwargs)


def make_plan(config: DictConfig, config_loader: Any = None, check_configs: bool = True) -> Plan:
    """Check the sweeper settings, the search space and the study against ``config`` (the multirun's
    master config) and return the plan; ConfigError (naming the key) on the first problem.

    With ``check_configs``, the job configs at the search space's corners (each interval's bounds, each
    choice) are composed and validated, so that e.g. ``init.std=interval(-1,1)`` fails here, not in a trial.
    """
    s = SweeperSettings.from_values(OmegaConf.to_container(config.hydra.sweeper, resolve=True))  # type: ignore[arg-type]
    if problems := s.problems():
        raise ConfigError(problems[0])
    space = parse_search_space(s.params, list(config.hydra.overrides.task))
    base = job_config_dict(config)
    check_paths(space, base)
    metrics = metric_names(base.get("optimized_metric"))  # type: ignore[arg-type]
    directions = resolve_directions(metrics, s.direction)
    check_pruner(s.pruner, metrics)

    make_sampler(s.sampler, s.sampler_kwargs, s.seed, space)
    searched = {p.name for p in space.params}
    epochs = None if "trainer.epochs" in searched else int(base["trainer"]["epochs"])  # one step = one epoch
    pruner_kwargs = pruner_kwargs_for(s.pruner, s.pruner_kwargs, epochs)
    make_pruner(s.pruner, pruner_kwargs)

    storage = resolve_storage(s.storage)
    check_storage_driver(storage, f"{SETTINGS_KEY}.storage")
    study_name = s.study_name or default_study_name(str(base.get("experiment_name")), space)
    fresh = "://" not in storage and not Path(storage).exists()  # no journal file yet: no study, create nothing
    try:
        if not fresh and "://" not in storage:  # a journal file: every line one JSON record
            for number, line in enumerate(Path(storage).read_bytes().splitlines(), 1):
                if line.strip() and not isinstance(json.loads(line.decode()), dict):
                    raise ValueError(f"line {number} is not a journal record")
        existing = None if fresh else existing_study_directions(open_storage(storage), study_name)
    except Exception as e:  # noqa: BLE001 - a corrupt journal or database: name the file, launch nothing
        raise ConfigError(
            f"the Optuna storage {redact(storage)} cannot be read ({type(e).__name__}: {e}); move it away "
            f"or set {SETTINGS_KEY}.storage to another one"
        ) from None
    key = SETTINGS_KEY
    if existing is not None and not s.load_if_exists:
        raise ConfigError(
            f"{key}.study_name = {study_name!r} already exists in {redact(storage)}; set {key}.load_if_exists=true "
            "to continue it, or choose another study_name"
        )
    if existing is not None and existing != directions:
        was, now = ", ".join(existing), ", ".join(directions)
        hint = existing[0] if len(existing) == 1 else f"[{','.join(existing)}]"
        raise ConfigError(
            f"{key}.direction: study {study_name!r} in {redact(storage)} was created to {was}, but this run would "
            f"{now} {', '.join(metrics)}; use another study_name or {key}.direction={hint}"
        )
    plan = Plan(s, space, directions, storage, study_name, pruner_kwargs, base)
    plan.enqueue = enqueue_points(s.enqueue, space, base)
    if check_configs:
        plan.checked_configs = _corner_configs(config, config_loader, space)
    return plan


def _corner_configs(config: DictConfig, config_loader: Any, space: SearchSpace) -> list[dict[str, Any]]:
    """The validated job configs at every corner of the search space; ConfigError naming the first bad one."""
    if config_loader is None:
        from hydra.core.global_hydra import GlobalHydra  # only when the caller holds no loader

        config_loader = GlobalHydra.instance().config_loader()
    checked = []
    for p in space.params:
        for value in p.corners():
            override = format_override(p.name, value, add=p.add)
            job_cfg = job_config_dict(config_loader.load_sweep_config(config, [*space.fixed, override]))
            try:
                validate(job_cfg)
            except ConfigError as e:
                raise ConfigError(
                    f"{SETTINGS_KEY}.params.{p.name} = {p.expression!r} reaches an invalid config at {override}:\n"
                    f"  {str(e).replace(chr(10), chr(10) + '  ')}"
                ) from None
            checked.append(job_cfg)
    return checked


_PLANS: dict[str, Plan] = {}


def plan_for(config: DictConfig, config_loader: Any = None) -> Plan:
    """:func:`make_plan`, once per sweep dir in this process: SweepCallback checks the study before the
    parent run exists, and the sweeper then runs the same plan instead of composing it again."""
    key = str(config.hydra.sweep.dir)
    if key not in _PLANS:
        _PLANS[key] = make_plan(config, config_loader)
    return _PLANS[key]


# ---------------------------------------------------------------------------------------------------
# End of a study: plots


def study_plots(
    study: optuna.Study, param_names: Sequence[str], out_dir: Path, metrics: Sequence[str] = ()
) -> list[Path]:
    """Optuna's matplotlib plots as PNGs, axes named by the optimized ``metrics``, titles by the study:
    optimization history, intermediate values, the objective against each parameter (one slice plot per
    parameter) and parameter importances (two or more parameters). A multi-objective study gets the history and
    slices per metric (``_<metric>`` in the file name) and a Pareto front instead of intermediate values. A plot
    Optuna cannot draw yet (too few finished trials) is skipped."""
    import matplotlib  # lazy: only at the end of a study

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    from initsweep.report.plots import readable_log_x

    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = list(metrics) or ["Objective Value"]

    def safe(name: str) -> str:
        return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)

    jobs: list[tuple[str, Any]] = []
    for i, metric in enumerate(metrics):
        target = (lambda t, i=i: t.values[i]) if len(metrics) > 1 else None
        suffix = f"_{safe(metric)}" if len(metrics) > 1 else ""
        jobs.append(
            (
                f"optimization_history{suffix}",
                lambda target=target, metric=metric: ovm.plot_optimization_history(
                    study, target=target, target_name=metric
                ),
            )
        )
        for name in param_names:
            jobs.append(
                (
                    f"slice_{safe(name)}{suffix}",
                    lambda name=name, target=target, metric=metric: ovm.plot_slice(
                        study, params=[name], target=target, target_name=metric
                    ),
                )
            )
    if len(metrics) == 1:
        jobs.insert(1, ("intermediate_values", lambda: ovm.plot_intermediate_values(study)))
    if len(param_names) >= 2:
        jobs.append(("param_importances", lambda: ovm.plot_param_importances(study)))
    paths = []
    for stem, draw in jobs:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            # matplotlib's on the slice of a study with one trial (one x value); the plot is drawn all the same
            warnings.filterwarnings(
                "ignore", message="Attempting to set identical low and high xlims", category=UserWarning
            )
            try:
                ax = draw()
            except (ValueError, RuntimeError, ZeroDivisionError) as e:
                print(f"initsweep: plot {stem} skipped: {e}")
                continue
        for one in getattr(ax, "flat", [ax]):  # titles name the study; log x labels that do not overlap
            name = f"{study.study_name}: {one.get_title()}" if one.get_title() else study.study_name
            one.set_title(textwrap.fill(name, 70), fontsize=10)
            readable_log_x(one)
        fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
        path = out_dir / f"{stem}.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths + (pareto_plot(study, metrics, out_dir) if len(metrics) > 1 else [])
