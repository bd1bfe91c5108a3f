"""Optuna for initsweep: the search space, samplers, pruners and storage, and the adapter job -> trial.

Two sides share this module:

* the sweeper (``hydra_plugins.initsweep_optuna_sweeper``, main process) parses the search space written
  in Hydra's sweep syntax, builds the sampler, pruner and storage, asks trials and tells their outcome;
* every job of a study (same process or a joblib worker) rebuilds its trial from the shared storage
  (:func:`run_trial`), reports the optimized metric after every epoch and stops when the pruner says so.

The sweeper hands a job its trial through ``hydra.job.env_set.INITSWEEP_TRIAL=<number>`` and a small JSON
file in the sweep dir (:class:`StudySpec`), so the job's config and its logged params stay clean.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import product
from pathlib import Path
from typing import TYPE_CHECKING, Any

from initsweep.config import ConfigError

if TYPE_CHECKING:  # optuna is imported lazily: train.py --help stays quick
    import optuna
    from omegaconf import DictConfig

    from initsweep.job import JobContext
    from initsweep.trainer import EpochMetrics

TRIAL_ENV = "INITSWEEP_TRIAL"
STUDY_FILE = "initsweep_study.json"
DEFAULT_STORAGE = Path("mlruns") / "optuna" / "journal.log"
SETTINGS_KEY = "hydra.sweeper"

# Samplers Optuna ships that need no package beyond initsweep's own dependencies (gp needs torch and
# scipy, qmc scipy; both are here). cmaes needs the `cmaes` package and is refused without it.
SAMPLERS = ("tpe", "random", "grid", "qmc", "gp", "nsga2", "bruteforce", "cmaes")
PRUNERS = ("median", "percentile", "successive_halving", "hyperband", "threshold", "none")
DIRECTIONS = ("auto", "maximize", "minimize")
SEARCH_TAGS = ("log", "int")


# ---------------------------------------------------------------------------------------------------
# Direction and the metric reported per epoch


def metric_direction(metric: str) -> str:
    """``minimize`` for loss metrics (``val/loss_best``, ``train/loss_final``, ...), else ``maximize``."""
    return "minimize" if "loss" in metric.rsplit("/", 1)[-1] else "maximize"


def intermediate_value(metric: str, history: Sequence[EpochMetrics]) -> float:
    """What ``metric`` would be if training stopped after the last epoch of ``history``.

    val/acc_best = max val acc so far, val/loss_best = min val loss so far, val/acc_final = last val acc,
    train/loss_final = last train loss. Test metrics are not measured during training: test/acc and
    test/loss report the last val acc and val loss instead.
    """
    last = history[-1]
    per_metric = {
        "val/acc_best": lambda: max(h.val_acc for h in history),
        "val/loss_best": lambda: min(h.val_loss for h in history),
        "val/acc_final": lambda: last.val_acc,
        "test/acc": lambda: last.val_acc,
        "test/loss": lambda: last.val_loss,
        "train/loss_final": lambda: last.train_loss,
    }
    if metric not in per_metric:
        raise ConfigError(f"optimized_metric = {metric!r}: no per-epoch counterpart; allowed: {', '.join(per_metric)}")
    return float(per_metric[metric]())


# ---------------------------------------------------------------------------------------------------
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
        from optuna.distributions import CategoricalDistribution

        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            return list(d.choices)[:10]
        return [d.low, d.high]

    def grid(self) -> list[Any] | None:
        """Every value of a finite distribution (choice, range, int interval), else None."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

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
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    unknown = tags - set(SEARCH_TAGS)
    if unknown:
        raise _param_error(key, expression, f"unknown tag {sorted(unknown)}; allowed tags: {', '.join(SEARCH_TAGS)}")
    log = "log" in tags
    if isinstance(value, IntervalSweep):
        low, high = value.start, value.end
        if not low < high:
            raise _param_error(key, expression, f"empty interval: low ({low:g}) must be below high ({high:g})")
        if log and low <= 0:
            raise _param_error(key, expression, f"a log interval needs low > 0, got {low:g}")
        if "int" in tags:
            if low != int(low) or high != int(high):
                raise _param_error(key, expression, "tag int needs whole-number bounds")
            return IntDistribution(int(low), int(high), log=log)
        return FloatDistribution(float(low), float(high), log=log)
    if log:
        raise _param_error(key, expression, "tag log applies to interval(...) only")
    if isinstance(value, RangeSweep):
        if value.shuffle:
            raise _param_error(key, expression, "shuffle(...) means nothing to a sampler; drop it")
        start, stop, step = value.start, value.stop, value.step
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
    if isinstance(value, ChoiceSweep):
        if value.shuffle:
            raise _param_error(key, expression, "shuffle(...) means nothing to a sampler; drop it")
        choices = list(value.list)
        if not choices:
            raise _param_error(key, expression, "empty choice")
        for c in choices:
            if not (c is None or isinstance(c, (bool, int, float, str))):
                problem = f"choice values must be numbers, strings, booleans or null, got {c!r}"
                raise _param_error(key, expression, problem)
        if len(set(map(repr, choices))) != len(choices):
            raise _param_error(key, expression, "choice values must be distinct")
        return CategoricalDistribution(choices)
    allowed = "interval(a,b), tag(log, interval(a,b)), choice(...) or range(...)"
    raise _param_error(key, expression, f"not a search expression; use {allowed}")


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
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException, OverrideParseException

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
    import difflib

    from initsweep.tracking import flatten

    flat = flatten(job_config)
    known = set(flat)
    for key in flat:  # group nodes such as "init" or "model" count too
        parts = key.split(".")
        known.update(".".join(parts[:i]) for i in range(1, len(parts)))
    for p in space.params:
        if p.add or p.name in known:
            continue
        close = difflib.get_close_matches(p.name, sorted(known), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        problem = f"{p.name} is not a key of the config{hint} (use +{p.name} to add a key)"
        raise _param_error(p.name, p.expression, problem)


# ---------------------------------------------------------------------------------------------------
# Samplers, pruners, storage


def _kwargs_error(kind: str, name: str, cls: type, error: Exception) -> ConfigError:
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "args", "kwargs")]
    return ConfigError(
        f"{SETTINGS_KEY}.{kind}_kwargs: {cls.__name__} ({kind}={name}) refused them: {error}; "
        f"it accepts: {', '.join(accepted) or 'nothing'} (kwargs meant for another {kind}? "
        f"reset them with {SETTINGS_KEY}.{kind}_kwargs={{}})"
    )


def make_sampler(
    name: str, kwargs: Mapping[str, Any] | None = None, seed: int | None = None, space: SearchSpace | None = None
) -> optuna.samplers.BaseSampler:
    """The sampler called ``name`` (see SAMPLERS), seeded; grid and bruteforce need a finite space."""
    from optuna import samplers

    kwargs = dict(kwargs or {})
    if name not in SAMPLERS:
        raise ConfigError(f"{SETTINGS_KEY}.sampler = {name!r}: unknown sampler; available: {', '.join(SAMPLERS)}")
    if name in ("grid", "bruteforce") and space is not None:
        infinite = [p.name for p in space.params if p.grid() is None]
        if infinite:
            raise ConfigError(
                f"{SETTINGS_KEY}.sampler = {name!r} needs a finite search space, but {', '.join(infinite)} "
                "is a continuous interval; use choice(...), range(...) or tag(int, interval(a,b))"
            )
    if name == "cmaes" and importlib.util.find_spec("cmaes") is None:
        raise ConfigError(f"{SETTINGS_KEY}.sampler = 'cmaes' needs the cmaes package: pip install cmaes")
    classes = {
        "tpe": samplers.TPESampler,
        "random": samplers.RandomSampler,
        "grid": samplers.GridSampler,
        "qmc": samplers.QMCSampler,
        "gp": samplers.GPSampler,
        "nsga2": samplers.NSGAIISampler,
        "bruteforce": samplers.BruteForceSampler,
        "cmaes": samplers.CmaEsSampler,
    }
    cls = classes[name]
    if name in ("grid", "bruteforce"):
        cls = _ask_tell(cls)
    if name == "grid":
        kwargs["search_space"] = {p.name: p.grid() for p in space.params} if space else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental-feature warnings of qmc, gp, bruteforce
        try:
            return cls(seed=seed, **kwargs)
        except (TypeError, ValueError) as e:
            raise _kwargs_error("sampler", name, cls, e) from None


def _ask_tell(cls: type) -> type:
    """``cls`` without its after_trial, which calls study.stop() once the space is exhausted: that works only
    inside study.optimize, and the sweeper stops asking by itself (see grid_points)."""

    def after_trial(self: Any, study: Any, trial: Any, state: Any, values: Any) -> None:
        return None

    return type(cls.__name__, (cls,), {"after_trial": after_trial, "__doc__": cls.__doc__})


def make_pruner(name: str, kwargs: Mapping[str, Any] | None = None) -> optuna.pruners.BasePruner:
    """The pruner called ``name`` (see PRUNERS); ``none`` never prunes.

    percentile defaults to percentile=25 (prune below the best quarter's threshold when maximizing).
    """
    from optuna import pruners

    kwargs = dict(kwargs or {})
    if name not in PRUNERS:
        raise ConfigError(f"{SETTINGS_KEY}.pruner = {name!r}: unknown pruner; available: {', '.join(PRUNERS)}")
    classes = {
        "median": pruners.MedianPruner,
        "percentile": pruners.PercentilePruner,
        "successive_halving": pruners.SuccessiveHalvingPruner,
        "hyperband": pruners.HyperbandPruner,
        "threshold": pruners.ThresholdPruner,
        "none": pruners.NopPruner,
    }
    cls = classes[name]
    if name == "percentile":
        kwargs.setdefault("percentile", 25.0)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise _kwargs_error("pruner", name, cls, e) from None


def resolve_storage(spec: str | None) -> str:
    """Storage spec as stored and shared: an RDB URL (``sqlite:///...``, ``postgresql://...``) as is, or the
    absolute path of an Optuna journal file (default: ``<cwd>/mlruns/optuna/journal.log``)."""
    if spec is None or str(spec).strip() == "":
        return str(Path.cwd() / DEFAULT_STORAGE)
    spec = str(spec)
    if "://" in spec:
        return spec
    return str(Path(spec).expanduser().resolve())


def open_storage(spec: str) -> optuna.storages.BaseStorage | str:
    """A journal file path -> JournalStorage with a file backend (safe for several processes on one
    machine); an RDB URL is returned as is for Optuna to open."""
    if "://" in spec:
        return spec
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    Path(spec).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(spec))


def default_study_name(experiment_name: str, space: SearchSpace) -> str:
    """The experiment, the command's plain overrides and the search space, e.g.
    ``initsweep hparams_search=normal_std init.std=tag(log, interval(0.001, 3.0))``: the same command finds
    the same study again, and a different model, range or overlay gets a study of its own."""
    searched = sorted(f"{p.name}={p.expression}" for p in space.params)
    return " ".join([experiment_name, *sorted(space.fixed), *searched])


def existing_study_direction(storage: optuna.storages.BaseStorage | str, study_name: str) -> str | None:
    """The direction of ``study_name`` in ``storage``, or None if there is no such study."""
    import optuna

    names = {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if study_name not in names:
        return None
    return names[study_name].direction.name.lower()


# ---------------------------------------------------------------------------------------------------
# The study as jobs see it


@dataclass(frozen=True)
class StudySpec:
    """What a job needs to find its trial: written by the sweeper into the sweep dir."""

    storage: str
    study_name: str
    pruner: str = "median"
    pruner_kwargs: dict[str, Any] = field(default_factory=dict)
    optimized_metric: str = "val/acc_best"

    def write(self, sweep_dir: Path) -> Path:
        path = Path(sweep_dir) / STUDY_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=1))
        return path

    @staticmethod
    def read(sweep_dir: Path | None) -> StudySpec | None:
        if sweep_dir is None or not (Path(sweep_dir) / STUDY_FILE).exists():
            return None
        return StudySpec(**json.loads((Path(sweep_dir) / STUDY_FILE).read_text()))


class EpochReporter:
    """``on_epoch`` callback of a trial's job: report the optimized metric, stop on pruning or divergence.

    Returns True (stop training) when the trial should be pruned. A non-finite loss also stops training
    and marks the trial as diverged; :func:`run_trial` then prunes it (see there).
    """

    def __init__(self, trial: optuna.Trial, metric: str):
        self.trial = trial
        self.metric = metric
        self.history: list[EpochMetrics] = []
        self.pruned_at: int | None = None
        self.diverged: str | None = None
        self.last_value: float | None = None

    def __call__(self, epoch: EpochMetrics) -> bool:
        self.history.append(epoch)
        if not (math.isfinite(epoch.train_loss) and math.isfinite(epoch.val_loss)):
            self.diverged = (
                f"diverged at epoch {epoch.epoch}: train/loss={epoch.train_loss:g}, val/loss={epoch.val_loss:g}"
            )
            return True
        value = intermediate_value(self.metric, self.history)
        self.trial.report(value, epoch.epoch)
        self.last_value = value
        if self.trial.should_prune():
            self.pruned_at = epoch.epoch
            return True
        return False

    @property
    def epochs(self) -> int:
        return len(self.history)


def trial_number_from_env() -> int | None:
    """The trial number the sweeper gave this job (``INITSWEEP_TRIAL``), or None outside a study."""
    raw = os.environ.get(TRIAL_ENV)
    return int(raw) if raw not in (None, "") else None


def load_trial(spec: StudySpec, number: int) -> optuna.Trial:
    """Rebuild trial ``number`` of the study from the shared storage, with the study's pruner.

    The sampler is a RandomSampler: the job never samples (its values come as overrides), and a
    GridSampler here would re-register the grid point.
    """
    import optuna

    storage = optuna.storages.get_storage(open_storage(spec.storage))
    study = optuna.load_study(
        study_name=spec.study_name,
        storage=storage,
        sampler=optuna.samplers.RandomSampler(),
        pruner=make_pruner(spec.pruner, spec.pruner_kwargs),
    )
    study_id = storage.get_study_id_from_name(spec.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
    return optuna.trial.Trial(study, trial_id)


class TrialConfigError(RuntimeError):
    """A trial's config is invalid: the trial fails, the study goes on."""


def run_trial(cfg: DictConfig, number: int, ctx: JobContext | None = None) -> float:
    """Run one trial's job: train and track it (initsweep.job), reporting to the trial every epoch.

    Outcomes, as the sweeper sees them through the job's return:
    * the metric value -> COMPLETE;
    * ``optuna.TrialPruned`` -> PRUNED, raised after the MLflow run ended: when the pruner said so, and
      also when training diverged (non-finite loss). A diverged trial is a valid, bad result: pruned, TPE
      counts it as worse than every finished trial and avoids its region, whereas a FAIL trial would be
      ignored by the sampler and count toward max_failure_rate;
    * any other exception -> FAIL (the MLflow run ends FAILED with the reason).
    """
    import optuna

    from initsweep.job import JobContext

    ctx = ctx or JobContext.from_hydra()
    spec = StudySpec.read(ctx.sweep_dir)
    if spec is None:
        raise RuntimeError(f"{TRIAL_ENV}={number} but no {STUDY_FILE} in the sweep dir {ctx.sweep_dir}")
    trial = load_trial(spec, number)
    reporter = EpochReporter(trial, spec.optimized_metric)
    tags = {"trial_number": number, "optuna.study_name": spec.study_name}
    epochs = 0
    try:
        value, diverged = _run_job(cfg, ctx, reporter, tags)
        epochs = reporter.epochs + (1 if diverged and not reporter.diverged else 0)
    except ConfigError as e:
        raise TrialConfigError(str(e)) from None
    finally:
        trial.set_user_attr("epochs", epochs or reporter.epochs)
    if diverged:
        raise optuna.TrialPruned(diverged)
    if reporter.pruned_at is not None:
        raise optuna.TrialPruned(
            f"pruned at epoch {reporter.pruned_at}: {spec.optimized_metric}={reporter.last_value:.4g}"
        )
    return value


def _run_job(
    cfg: DictConfig, ctx: JobContext, reporter: EpochReporter, tags: dict[str, Any]
) -> tuple[float, str | None]:
    """(value, divergence reason or None) of the trial's job, run by initsweep.job with ``reporter`` as its
    on_epoch callback and ``tags`` on its MLflow run. A crash raises."""
    from initsweep.job import execute

    outcome = execute(cfg, ctx, on_epoch=reporter, extra_tags=tags)
    if outcome.error is not None:
        raise outcome.error
    if outcome.status == "DIVERGED":
        return outcome.value, f"diverged at epoch {reporter.epochs + 1}: {outcome.reason}"
    return outcome.value, reporter.diverged


# ---------------------------------------------------------------------------------------------------
# End of a study: plots


def study_plots(study: optuna.Study, param_names: Sequence[str], out_dir: Path) -> list[Path]:
    """Optuna's matplotlib plots as PNGs: optimization history, intermediate values, the objective against
    each parameter (one slice plot per parameter) and parameter importances (two or more parameters).
    A plot Optuna cannot draw yet (too few finished trials) is skipped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    out_dir.mkdir(parents=True, exist_ok=True)
    jobs: list[tuple[str, Any]] = [
        ("optimization_history", lambda: ovm.plot_optimization_history(study)),
        ("intermediate_values", lambda: ovm.plot_intermediate_values(study)),
    ]
    for name in param_names:
        safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)
        jobs.append((f"slice_{safe}", lambda name=name: ovm.plot_slice(study, params=[name])))
    if len(param_names) >= 2:
        jobs.append(("param_importances", lambda: ovm.plot_param_importances(study)))
    paths = []
    for stem, draw in jobs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ax = draw()
            except (ValueError, RuntimeError, ZeroDivisionError) as e:
                print(f"[initsweep] plot {stem} skipped: {e}")
                continue
        fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
        path = out_dir / f"{stem}.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths


def grid_points(space: SearchSpace) -> list[tuple[Any, ...]]:
    """All points of a finite search space, in parameter order."""
    return list(product(*(p.grid() or [] for p in space.params)))
