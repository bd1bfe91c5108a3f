"""Comparison tables and reports built from MLflow runs.

:func:`summary_table` lists a sweep's runs; :func:`write_report` groups runs by configuration minus the
seed and writes a Markdown report with PNGs (mean ± 95% CI over seeds, learning curves, init-time signal
propagation). ``scripts/report.py`` is its command line; every multirun writes one at its end.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from initsweep.protocol import Failure, Tag, redact
from initsweep.report.console import round_numbers
from initsweep.tracking import client as tracking

# (column title, metric key, format)
SUMMARY_COLUMNS = (
    ("best val acc", "val/acc_best", "{:.3f}"),
    ("test acc", "test/acc", "{:.3f}"),
    ("epochs to 90% of best", "val/epochs_to_90pct", "{:.0f}"),
    ("final train loss", "train/loss_final", "{:.4g}"),
    ("best val loss", "val/loss_best", "{:.4g}"),
    ("test loss", "test/loss", "{:.4g}"),
    ("test acc at best val", "test/acc_at_best_val", "{:.3f}"),
    ("epochs to learn", "val/epochs_to_learn", "{:.0f}"),
)


def cell(key: str, value: float, fmt: str) -> str:
    """One value: NaN of an ``epochs_to`` metric is "never" (the run never got there), else "-"."""
    if value != value:  # NaN
        return "never" if "epochs_to" in key else "-"
    return fmt.format(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _job_order(run: Any) -> tuple[int, int]:
    num = run.data.tags.get(Tag.JOB_NUM)
    return (int(num) if num is not None else 1 << 30, run.info.start_time or 0)


def _state(run: Any) -> str:
    """A trial's Optuna state (COMPLETE / PRUNED / FAIL) when it has one, else the run status (+ failure, and
    "collapsed" when the final val acc fell far below the best)."""
    tags = run.data.tags
    if state := tags.get(Tag.TRIAL_STATE):
        return state
    failure = tags.get(Tag.FAILURE)
    if run.data.metrics.get("val/collapsed") == 1.0:  # a late collapse
        failure = ", ".join(filter(None, [failure, "collapsed"]))
    return f"{run.info.status} ({failure})" if failure else run.info.status


def _optimized(param: str | None) -> list[str]:
    """The metric names of an ``optimized_metric`` param: ``val/acc_best`` or (a list) ``['a', 'b']``."""
    if not param:
        return []
    return [m.strip(" '\"") for m in param.strip("[]").split(",")] if param.startswith("[") else [param]


def summary_table(runs: Sequence[Any]) -> str:
    """One row per run (in job order): its name, the summary metrics, and its state. The runs' optimized
    metric (param ``optimized_metric``) gets a column of its own when it is not among the summary columns."""
    columns = list(SUMMARY_COLUMNS)
    optimized = {m for r in runs for m in _optimized(r.data.params.get("optimized_metric"))}
    for key in sorted(optimized - {k for _, k, _ in columns}):
        columns.insert(0, (f"{key} (optimized)", key, "{:.4g}"))
    rows = []
    for run in sorted(runs, key=_job_order):
        metrics = run.data.metrics
        cells = [round_numbers(run.info.run_name or run.info.run_id)]
        cells += [cell(key, metrics[key], fmt) if key in metrics else "-" for _, key, fmt in columns]
        cells.append(_state(run))
        rows.append(cells)
    return markdown_table(["run", *(title for title, _, _ in columns), "status"], rows)


# ---------------------------------------------------------------------------------------------------
# Comparison over seeds: runs grouped by configuration minus the seed

GROUP_TAG = Tag.GROUP
# (column title, metric key, format) of the comparison table: mean ± 95% CI over seeds.
COMPARISON_COLUMNS = (
    ("best val acc", "val/acc_best", "{:.3f}"),
    ("test acc", "test/acc", "{:.3f}"),
    ("epochs to 90% of best val acc", "val/epochs_to_90pct", "{:.1f}"),
    ("final train loss", "train/loss_final", "{:.4g}"),
    ("best val loss", "val/loss_best", "{:.4g}"),
    ("test loss", "test/loss", "{:.4g}"),
    ("test acc at best val", "test/acc_at_best_val", "{:.3f}"),
    ("epochs to learn", "val/epochs_to_learn", "{:.1f}"),
    ("collapsed runs", "val/collapsed", "{:.2f}"),
)
COMPARISON_KEYS = tuple(k for _, k, _ in COMPARISON_COLUMNS)
RATE_KEYS = ("val/collapsed",)  # 0/1 per run: a rate with a binomial interval, not a mean ± t
# Resolved-config keys that do not change what is trained: runs that differ only in these are one configuration.
PLUMBING = ("seed", "trainer.threads", "trainer.checkpoint_every", "tracking.", "diagnostics.", "hydra.",
            "experiment_name", "max_jobs", "resume", "optimized_metric")  # fmt: skip


@dataclass(frozen=True)
class Estimate:
    """Mean of n values and the half-width of its confidence interval (NaN when n < 2)."""

    mean: float
    half_width: float
    n: int
    never: int = 0  # runs without a value (NaN: e.g. never reached the learning target), left out of the mean
    missing: str = "never"  # what a run without a value is called: "never" (a speed), "NaN" (a diverged loss)

    def format(self, fmt: str) -> str:
        """``mean ± half_width`` in ``fmt``; the mean alone when n = 1; ``-`` when n = 0; with
        `` (never: k)`` when k runs had no value, ``never (k)`` alone when none had one (``NaN`` for a
        quantity that is not a speed)."""
        if self.n == 0:
            return f"{self.missing} ({self.never})" if self.never else "-"
        if self.n == 1 or not math.isfinite(self.half_width):
            text = fmt.format(self.mean)
        else:
            text = f"{fmt.format(self.mean)} ± {fmt.format(self.half_width)}"
        return f"{text} ({self.missing}: {self.never})" if self.never else text


@dataclass(frozen=True)
class Median:
    """Median of a speed (epochs to reach a target) over n runs, a run that never got there counting as inf."""

    mean: float  # the median (named as Estimate's centre, which tables and figures read)
    n: int
    never: int = 0

    def format(self, fmt: str) -> str:
        """``4.0``, ``4.0 (never: 1/3)``, ``never (2/3)`` (the median run never got there), ``-`` (no run)."""
        if self.n == 0:
            return "-"
        if math.isinf(self.mean):
            return f"never ({self.never}/{self.n})"
        return fmt.format(self.mean) + (f" (never: {self.never}/{self.n})" if self.never else "")


@dataclass(frozen=True)
class Rate:
    """k of n runs (e.g. collapsed) with its Clopper-Pearson interval [low, high]."""

    k: int
    n: int
    low: float
    high: float

    @property
    def mean(self) -> float:
        return self.k / self.n if self.n else math.nan

    def format(self, fmt: str) -> str:
        """``1/3 [0.01, 0.91]``; ``-`` without runs."""
        return f"{self.k}/{self.n} [{self.low:.2f}, {self.high:.2f}]" if self.n else "-"


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> Rate:
    """The exact binomial interval of k successes in n: [B(a; k, n-k+1), B(1-a; k+1, n-k)], a = (1-c)/2, B the
    beta quantile (0 when k = 0, 1 when k = n)."""
    from scipy.stats import beta

    if n == 0:
        return Rate(0, 0, math.nan, math.nan)
    a = (1 - confidence) / 2
    low = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return Rate(k, n, low, high)


def median_speed(values: Sequence[float]) -> Median:
    """Median with NaN ("never got there") counted as inf, and how many never did."""
    ordered = sorted(math.inf if v != v else v for v in values)
    n = len(ordered)
    if n == 0:
        return Median(math.nan, 0)
    mid = ordered[(n - 1) // 2 : n // 2 + 1]
    median = math.inf if math.inf in mid else sum(mid) / len(mid)
    return Median(median, n, sum(v == math.inf for v in ordered))


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> Estimate:
    """Mean and Student-t confidence interval: mean ± t_{(1+c)/2, n-1} * s / sqrt(n), s with ddof=1."""
    n = len(values)
    if n == 0:
        return Estimate(math.nan, math.nan, 0)
    mean = sum(values) / n
    if n == 1:
        return Estimate(mean, math.nan, 1)
    s = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return Estimate(mean, t_quantile(confidence, n - 1) * s / math.sqrt(n), n)


def t_quantile(confidence: float, df: int) -> float:
    """The two-sided Student-t quantile t_((1+confidence)/2, df)."""
    from scipy.special import stdtrit

    return float(stdtrit(df, (1 + confidence) / 2))


def estimate(key: str, values: Sequence[float]) -> Estimate | Median | Rate:
    """A rate (``RATE_KEYS``: k/n, Clopper-Pearson), a speed (``epochs_to``: median, never = inf), else mean_ci
    of the values that are not NaN, the NaN ones counted."""
    if key in RATE_KEYS:
        return clopper_pearson(sum(v == 1.0 for v in values), len(values))
    if "epochs_to" in key:
        return median_speed(values)
    kept = [v for v in values if v == v]
    return replace(mean_ci(kept), never=len(values) - len(kept), missing="NaN")


def config_key(run: Any) -> str:
    """A run's resolved configuration without its seed and plumbing (``PLUMBING``: threads, tracking, plots,
    diagnostics, ...) from its params; :func:`group_of` for a run without such params."""
    kept = sorted((k, v) for k, v in run.data.params.items() if not k.startswith(PLUMBING))
    return repr(kept) if kept else group_of(run)


def group_of(run: Any) -> str:
    """A run's configuration without its seed: the ``initsweep.group`` tag, else its name minus seed=N."""
    tag = run.data.tags.get(GROUP_TAG)
    name = tag or re.sub(r"\s*\bseed=\S+", "", run.info.run_name or run.info.run_id).strip() or run.info.run_id
    # Hydra plumbing (++hydra.job.env_set.INITSWEEP_TRIAL=0) is no part of a configuration.
    return " ".join(t for t in name.split() if not t.lstrip("+~").startswith("hydra.")) or name


def short_labels(groups: Sequence[str]) -> dict[str, str]:
    """Labels that drop the overrides every group shares (``experiment=x init=zeros`` -> ``init=zeros``)."""
    tokens = [g.split() for g in groups]
    common = set.intersection(*(set(t) for t in tokens)) if len(tokens) > 1 else set()
    return {g: round_numbers(" ".join(x for x in t if x not in common) or g) for g, t in zip(groups, tokens)}


@dataclass
class GroupStats:
    """One configuration: its runs (all seeds), and the mean ± CI of each metric over its finished runs."""

    group: str
    label: str
    runs: list[Any]
    finished: list[Any]
    estimates: dict[str, Estimate | Median | Rate]
    by_seed: dict[str, Any] = field(default_factory=dict)  # the latest finished run of each seed

    @property
    def seeds(self) -> list[str]:
        return sorted({r.data.params.get("seed", "?") for r in self.finished}, key=lambda s: (len(s), s))

    @property
    def warnings(self) -> list[str]:
        """The distinct ``diag/warning`` tags of the group's runs."""
        return sorted({w for r in self.runs if (w := r.data.tags.get(Tag.DIAG_WARNING))})


def group_runs(runs: Sequence[Any]) -> dict[str, list[Any]]:
    """Runs by resolved configuration (:func:`config_key`), named by their first run's :func:`group_of`, groups in
    the job order of their first run: re-stating an overlay's own value or changing plumbing joins a group."""
    by_key: dict[str, list[Any]] = {}
    for run in sorted(runs, key=_job_order):
        by_key.setdefault(config_key(run), []).append(run)
    groups: dict[str, list[Any]] = {}
    for members in by_key.values():
        name = group_of(members[0])
        groups[name if name not in groups else f"{name} ({len(groups)})"] = members
    return groups


def comparison(runs: Sequence[Any], keys: Sequence[str] = COMPARISON_KEYS) -> list[GroupStats]:
    """Per configuration, mean ± 95% CI over seeds of each metric in ``keys``, over the runs that are
    results: FINISHED, or diverged (a diverged run is an outcome of the experiment; crashed or killed
    runs are left out)."""
    groups = group_runs(runs)
    labels = short_labels(list(groups))
    out = []
    for group, members in groups.items():
        finished = [
            r for r in members if r.info.status == "FINISHED" or r.data.tags.get(Tag.FAILURE) == Failure.DIVERGED.value
        ]
        # One value per seed (its latest run by start time): reruns of a seed are not independent samples.
        ordered = sorted(finished, key=lambda r: r.info.start_time or 0)
        by_seed = {r.data.params.get("seed", r.info.run_id): r for r in ordered}
        latest = list(by_seed.values())
        estimates = {k: estimate(k, [r.data.metrics[k] for r in latest if k in r.data.metrics]) for k in keys}
        out.append(GroupStats(group, labels[group], members, finished, estimates, by_seed))
    return out


def paired_difference(a: GroupStats, b: GroupStats, key: str, confidence: float = 0.95) -> tuple[Estimate, str]:
    """b - a of ``key`` per seed both have (their latest runs): mean ± Student-t CI of the differences, and
    "resolved" when the interval excludes 0 ("not resolved" when it includes 0 or fewer than 2 seeds pair)."""
    seeds = [s for s in a.by_seed if s in b.by_seed]
    diffs = [
        b.by_seed[s].data.metrics[key] - a.by_seed[s].data.metrics[key]
        for s in seeds
        if key in a.by_seed[s].data.metrics and key in b.by_seed[s].data.metrics
    ]
    est = mean_ci([d for d in diffs if math.isfinite(d)], confidence)
    resolved = est.n >= 2 and abs(est.mean) > est.half_width
    return est, "resolved" if resolved else "not resolved"


def _overrides(group: str) -> dict[str, str]:
    """``key=value`` tokens of a group's name (``model.depth=8 init=lecun`` -> {model.depth: 8, init: lecun})."""
    return dict(t.lstrip("+~").split("=", 1) for t in group.split() if "=" in t)


def paired_references(stats: Sequence[GroupStats]) -> list[tuple[GroupStats, GroupStats]]:
    """(reference, configuration) pairs that differ in one key: for each key where a configuration differs from
    the first configuration, the configuration with that key set back to the first one's value, when the sweep
    has it (``model.depth=8 init=lecun`` pairs with ``model.depth=8 init=orthogonal`` and with ``model.depth=2
    init=lecun``, not with ``model.depth=2 init=orthogonal``). A configuration with no such reference pairs with
    the first."""
    first = _overrides(stats[0].group)
    by_overrides = {frozenset(_overrides(g.group).items()): g for g in stats}
    pairs = []
    for g in stats[1:]:
        mine = _overrides(g.group)
        refs = [
            ref
            for k, v in mine.items()
            if k in first and first[k] != v and (ref := by_overrides.get(frozenset({**mine, k: first[k]}.items())))
        ]
        pairs += [(ref, g) for ref in refs] or [(stats[0], g)]
    return pairs


def paired_lines(stats: Sequence[GroupStats], keys: Sequence[str] = ("test/acc", "val/acc_best")) -> list[str]:
    """One line per :func:`paired_references` pair and key, where the two configurations share 2 or more seeds."""
    lines = []
    for ref, g in paired_references(stats):
        for key in keys:
            est, verdict = paired_difference(ref, g, key)
            if est.n >= 2:
                lo, hi = est.mean - est.half_width, est.mean + est.half_width
                lines.append(
                    f"- {key}: {g.label} - {ref.label} = {est.mean:+.4f} (95% CI [{lo:.4f}, {hi:.4f}], "
                    f"{est.n} paired seeds): {verdict} at 95%"
                )
    return lines


def comparison_table(stats: Sequence[GroupStats]) -> str:
    """Markdown: one row per configuration, mean ± 95% CI over seeds of the comparison metrics."""
    rows = []
    for g in stats:
        seeds = len(g.seeds)
        n = f"{seeds}" + (f" ({len(g.finished)} runs: reruns of a seed)" if len(g.finished) > seeds else "")
        if len(g.runs) > len(g.finished):
            n += f" (+{len(g.runs) - len(g.finished)} crashed or killed)"
        rows.append([g.label, n, *(g.estimates[k].format(fmt) for _, k, fmt in COMPARISON_COLUMNS)])
    return markdown_table(["configuration", "seeds", *(t for t, _, _ in COMPARISON_COLUMNS)], rows)


# ---------------------------------------------------------------------------------------------------
# Init-time signal profile and learning curves, read back from MLflow

_LAYER_KEY = re.compile(r"^diag/(?P<layer>[^/]+)/(?P<stat>act_std|grad_out_std)$")


def _layer_order(name: str) -> tuple[float, str]:
    """fc1, fc2, ..., fc10, then layers without a number (out) last."""
    m = re.search(r"(\d+)$", name)
    return (int(m.group(1)) if m else math.inf, name)


def init_profile(client: Any, run: Any, stat: str = "act_std") -> dict[str, float]:
    """``diag/<layer>/<stat>`` of a run at step 0 (initialization), by layer in network order."""

    table = tracking.layer_table(client, run.info.run_id, 0)
    if table is not None:  # the per-layer table artifact (layers/step_0000.json)
        column = table["columns"].get(f"diag/{stat}", [])
        found = {layer: v for layer, v in zip(table["layers"], column) if v is not None}
        return {layer: found[layer] for layer in sorted(found, key=_layer_order)}
    keys = {m["layer"]: k for k in run.data.metrics if (m := _LAYER_KEY.match(k)) and m["stat"] == stat}
    repeated = run.data.params.get("diagnostics.every", "0") not in ("0", "None")
    values = {}
    for layer, key in keys.items():
        if repeated:  # the latest value is from a later epoch: read step 0 from the history
            step0 = [v for s, v in tracking.metric_history(client, run.info.run_id, key) if s == 0]
            if not step0:
                continue
            values[layer] = step0[0]
        else:
            values[layer] = run.data.metrics[key]
    return {layer: values[layer] for layer in sorted(values, key=_layer_order)}


def _bands_over(
    series: Sequence[dict[Any, float]], order: Sequence[Any], log: bool = False
) -> tuple[list, list, list, list]:
    """Mean and 95% CI band at each x of ``order`` over the series that have a finite value there; NaN where
    they all have NaN or inf (drawn as a marker). With ``log`` (a log axis), the geometric mean and its
    interval exp(mean(ln v) ± t s/sqrt(n)) over the positive values, so the band stays positive and is right
    on the axis it is drawn on; 0 where every value is 0 (a loss of 0: the figure's bottom-edge marker)."""
    xs: list[Any] = []
    mean: list[float] = []
    lo: list[float] = []
    hi: list[float] = []
    for x in order:
        values = [s[x] for s in series if x in s]
        finite = [v for v in values if math.isfinite(v)]
        if log and finite:
            finite = [math.log(v) for v in finite if v > 0] or [-math.inf]
        est = mean_ci(finite)
        if est.n == 0 and not values:
            continue
        half = est.half_width if math.isfinite(est.half_width) else 0.0
        band = (est.mean, est.mean - half, est.mean + half) if est.n else (math.nan,) * 3
        xs.append(x)
        for out, v in zip((mean, lo, hi), band):
            out.append(math.exp(v) if log and est.n else v)
    return xs, mean, lo, hi


def curve_bands(client: Any, stats: Sequence[GroupStats], key: str, log: bool = False) -> dict[str, tuple]:
    """Per configuration: (epochs, mean, lower, upper) of ``key`` over its finished runs' histories
    (:func:`_bands_over`; geometric with ``log``)."""
    out = {}
    for g in stats:
        series = [dict(tracking.metric_history(client, r.info.run_id, key)) for r in g.finished]
        steps = sorted({s for h in series for s in h})
        if steps:
            out[g.label] = _bands_over(series, steps, log)
    return out


def profile_bands(client: Any, stats: Sequence[GroupStats], stat: str) -> dict[str, tuple]:
    """Per configuration: (layers, geometric mean, lower, upper) of the init-time ``diag/<layer>/<stat>``."""
    out = {}
    for g in stats:
        series = [init_profile(client, r, stat) for r in g.finished]
        layers = sorted({layer for p in series for layer in p}, key=_layer_order)
        if layers:
            out[g.label] = _bands_over(series, layers, log=True)
    return out


def init_table(client: Any, stats: Sequence[GroupStats]) -> str:
    """Markdown: per configuration, the mean initial loss and init-time activation std of each layer."""
    rows = []
    ln_c = None
    for g in stats:
        loss = mean_ci(
            [r.data.metrics["diag/initial_loss"] for r in g.finished if "diag/initial_loss" in r.data.metrics]
        )
        ln_c = ln_c or next((r.data.metrics.get("diag/ln_num_classes") for r in g.finished), None)
        profiles = [init_profile(client, r) for r in g.finished]
        layers = sorted({layer for p in profiles for layer in p}, key=_layer_order)
        stds = [mean_ci([p[layer] for p in profiles if layer in p]).mean for layer in layers]
        profile = " → ".join(f"{layer} {s:.3g}" for layer, s in zip(layers, stds)) or "-"
        rows.append([g.label, loss.format("{:.3g}"), profile, "; ".join(g.warnings) or "-"])
    loss_title = f"initial loss (ln C = {ln_c:.3f})" if ln_c else "initial loss"
    return markdown_table(["configuration", loss_title, "activation std per layer", "warning"], rows)


# The learning-curve panels, in reading order (two columns): metric key -> panel name.
CURVE_PANELS = {"train/loss": "train loss", "val/loss": "val loss", "train/acc": "train accuracy",
                "val/acc": "val accuracy"}  # fmt: skip

ARCHITECTURE_PARAMS = ("model.name", "model._target_")  # what names a run's layer set


def architecture(run: Any) -> str:
    """The model a run trained (``model.name``, else ``model._target_``; "?" when it logged neither): runs of
    different architectures have different layers and are reported apart."""
    return next((v for k in ARCHITECTURE_PARAMS if (v := run.data.params.get(k))), "?")


@dataclass(frozen=True)
class Figures:
    """How a report draws its figures: ``title`` names the sweep in each; ``vector`` ("pdf", "svg" or None) also
    writes each figure in that vector format, ``width_in`` inches wide (a paper's column: 3.5 single, 7 double)."""

    title: str = ""
    vector: str | None = None
    width_in: float = 7.0


def write_report(
    client: Any, runs: Sequence[Any], out_dir: Path, title: str, source: str = "", figures: Figures | None = None
) -> list[Path]:
    """Write ``report.md``, the same page as self-contained ``report.html`` (figures embedded) and their
    PNGs into ``out_dir``, and vector copies of the figures as ``figures`` says; return the written paths
    (report.md first). The figures' titles name ``title`` (:func:`figure_title`).

    The report compares configurations (runs grouped by configuration minus the seed): mean ± 95% CI over
    seeds of the summary metrics, learning curves (mean and 95% CI band), and the activation and gradient
    std per layer at initialization; with a section per architecture when the runs trained several.
    """
    from initsweep.report.html import write_html

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_model: dict[str, list[Any]] = {}
    for run in runs:
        by_model.setdefault(architecture(run), []).append(run)
    lines = [f"# {title}", ""]
    if source:
        lines += [source, ""]
    paths: list[Path] = []
    figures = replace(figures or Figures(), title=figure_title(title))
    if len(by_model) == 1:
        paths += _section(client, runs, out_dir, "", lines, figures)
    else:
        lines += [f"{len(runs)} runs of {len(by_model)} architectures (param `model.name`), reported apart.", ""]
        for name, members in by_model.items():
            lines += [f"## Architecture: {name}", ""]
            prefix = re.sub(r"[^\w.-]+", "_", name) + "_"  # file names: initsweep.core.models.CNN_...
            paths += _section(
                client, members, out_dir, prefix, lines, replace(figures, title=f"{figures.title}, {name}"), "###"
            )
    report = out_dir / "report.md"
    report.write_text(redact("\n".join(lines)))  # run labels come from overrides: a store URL's password
    return [report, write_html(report), *paths]


def figure_title(title: str) -> str:
    """A report's ``title`` as its figures name it: without ``Report: `` and the overrides that do not change what
    is trained (``PLUMBING`` but the seed: ``tracking.uri=...``, ``hydra.*``)."""
    plumbing = tuple(p for p in PLUMBING if p != "seed")
    return " ".join(t for t in title.removeprefix("Report: ").split() if not t.lstrip("+~").startswith(plumbing))


def _draw(panels: list, path: Path, figures: Figures, what: str, xlabel: str = "epoch", quantity: str = "loss"):
    """``path`` (a PNG) and, with ``figures.vector``, its vector copy at the column width; titled ``figures.title:
    what``."""
    from initsweep.report.plots import band_panels  # lazy: matplotlib only when drawing

    title = redact(f"{figures.title}: {what}" if figures.title else what)  # run labels: as in report.md
    paths = [band_panels(panels, path, xlabel, title=title, quantity=quantity)]
    if figures.vector:
        vector = path.with_suffix(f".{figures.vector}")
        paths.append(band_panels(panels, vector, xlabel, title=title, width_in=figures.width_in, quantity=quantity))
    return paths


def _section(
    client: Any, runs: Sequence[Any], out_dir: Path, prefix: str, lines: list[str], figures: Figures, h: str = "##"
):
    """Append the comparison of ``runs`` (one architecture) to ``lines``; returns its figures' paths (their
    names start with ``prefix``)."""
    from initsweep.report.plots import Panel  # lazy: matplotlib only when drawing

    stats = comparison(runs)
    paths: list[Path] = []
    lines += [
        f"{len(runs)} runs in {len(stats)} configurations. Each cell: mean ± 95% confidence interval over "
        "seeds (Student t, n - 1 degrees of freedom); a single seed shows the value alone.",
        "",
        comparison_table(stats),
        "",
        "Collapsed runs: k/n with the Clopper-Pearson 95% interval; epochs to a target: the median over seeds, a "
        "run that never got there counting as infinite (never: k/n).",
        "",
    ]
    if paired := paired_lines(stats):
        lines += ["## Paired differences over seeds", "", *paired, ""]
    curves = {k: curve_bands(client, stats, k, log=k.endswith("loss")) for k in CURVE_PANELS}
    if any(curves.values()):
        panels = [Panel(name, curves[k], "log" if k.endswith("loss") else "linear", ylim=(0, 1) if k.endswith("acc")
                        else None) for k, name in CURVE_PANELS.items()]  # fmt: skip
        drawn = _draw(panels, out_dir / f"{prefix}learning_curves.png", figures, "learning curves")
        path = drawn[0]
        paths += drawn
        lines += [
            f"{h} Learning curves",
            "",
            "Mean over seeds (loss: the geometric mean, on its log axis); shaded: 95% confidence interval. An x "
            "at the bottom edge marks a loss of 0, a triangle at the top edge NaN or inf (docs/figures.md).",
            "",
            f"![learning curves]({path.name})",
            "",
        ]
    act, grad = profile_bands(client, stats, "act_std"), profile_bands(client, stats, "grad_out_std")
    if any(act.values()):
        drawn = _draw(
            [Panel("activation std at init", act, "log"), Panel("grad std at init (dLoss/d output)", grad, "log")],
            out_dir / f"{prefix}init_signal.png",
            figures,
            "signal at initialization",
            xlabel="layer",
            quantity="std",
        )
        path = drawn[0]
        paths += drawn
        lines += [
            f"{h} Signal propagation at initialization",
            "",
            "Measured on one fixed batch of training data before the first step (columns `diag/...` of each "
            "run's `layers/step_0000.json`). On the log axes, an x at the bottom edge marks a std of 0.",
            "",
            init_table(client, stats),
            "",
            f"![signal at initialization]({path.name})",
            "",
        ]
    return paths


def sweep_heading(run_name: str, run_id: str, experiment: str, sweep_dir: str | Path | None) -> tuple[str, str]:
    """(title, source line) of a sweep's report."""
    where = f", sweep dir `{sweep_dir}`" if sweep_dir else ""
    return f"Report: {run_name}", f"MLflow experiment `{experiment}`, parent run `{run_id}`{where}."
