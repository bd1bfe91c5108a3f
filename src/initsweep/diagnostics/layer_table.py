"""The per-layer table: per-layer diagnostics (``diag/fc1/act_std``, ``init/fc1/weight_std``) kept as one
table per step instead of hundreds of metric keys, plus the few scalar summaries logged as metrics."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

LAYERS_DIR = "layers"


def table_file(step: int) -> str:
    """The artifact file of a run's per-layer table for ``step``: ``layers/step_<step, 4 digits>.json``."""
    return f"{LAYERS_DIR}/step_{step:04d}.json"


_LAYER_KEY = re.compile(r"^(?P<kind>diag|init)/(?P<layer>[^/]+)/(?P<stat>[^/]+)$")


def split_layers(metrics: Mapping[str, float]) -> tuple[dict[str, float], dict[str, Any]]:
    """(scalar metrics, per-layer table): ``diag/fc1/act_std`` -> table column ``diag/act_std``, row fc1."""
    scalars: dict[str, float] = {}
    layers: list[str] = []
    cells: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        m = _LAYER_KEY.match(key)
        if m is None:
            scalars[key] = value
            continue
        if m["layer"] not in layers:
            layers.append(m["layer"])
        cells.setdefault(f"{m['kind']}/{m['stat']}", {})[m["layer"]] = float(value)
    columns = {stat: [by_layer.get(layer) for layer in layers] for stat, by_layer in cells.items()}
    return scalars, {"layers": layers, "columns": columns}


def layer_summaries(table: Mapping[str, Any]) -> dict[str, float]:
    """A few scalars of a per-layer table: activation std of the first and last layer and its min and max
    over layers, gradient std of the first and last layer, the largest dead / saturated unit fraction,
    the total duplicate units, and the smallest and largest weight std."""
    cols = table["columns"]

    def values(stat: str) -> list[float]:
        return [v for v in cols.get(stat, []) if v is not None]

    out: dict[str, float] = {}
    for stat in ("diag/act_std", "diag/grad_out_std"):
        if v := values(stat):
            out[f"{stat}_first"], out[f"{stat}_last"] = v[0], v[-1]
    if v := values("diag/act_std"):
        out["diag/act_std_min"], out["diag/act_std_max"] = min(v), max(v)
    for stat in ("diag/dead_frac", "diag/saturated_frac"):
        if v := values(stat):
            out[f"{stat}_max"] = max(v)
    if v := values("diag/duplicate_units"):
        out["diag/duplicate_units_total"] = sum(v)
    if v := values("init/weight_std"):
        out["init/weight_std_min"], out["init/weight_std_max"] = min(v), max(v)
    return out


def layer_record(metrics: Mapping[str, float], step: int) -> tuple[dict[str, float], dict[str, Any] | None, str]:
    """What ``log_layers`` records for ``step``: the scalar metrics (with the table's summaries), the per-layer
    table (None when no key is per-layer) and its artifact file ``layers/step_<step>.json``."""
    scalars, table = split_layers(metrics)
    if not table["layers"]:
        return scalars, None, ""
    scalars.update(layer_summaries(table))
    return scalars, table, table_file(step)
