"""The view of the MLflow UI (3.17) that initsweep saves on its experiments: learning curves first in the
chart view, the summary metrics as columns of the runs table, runs sorted by best val accuracy.

Without it MLflow draws one chart per metric, grouped by the metric name's prefix in alphabetical order
(``diag``, ``init``, ``test``, ``time``, ``train``, ``val``), and shows no metric column in the runs table.
MLflow 3.17 keeps named views as experiment tags ``mlflow.sharedViewState.<id>``; the value is the JSON
envelope ``{"name", "createdAt", "updatedAt", "state"}`` whose ``state`` is the JSON of the runs page's
search facets and UI state (the fields of MLflow's ``ExperimentPageUIState``). The page's URL parameter
``viewStateShareKey=<id>`` opens a view, and the page lists saved views in its views menu.

With ``isAccordionReordered`` set, MLflow keeps the sections in the order given and appends sections for
prefixes it does not know; metrics without a chart get one in the section of their prefix.

Two kinds of view: the experiment's (``initsweep``: every run but Optuna trials, which a study's own view
shows) and one per sweep or study (``sweep-<parent run id>``: only the parent's child runs, grouped by
``initsweep.group`` with the seeds of a configuration drawn as their mean and min-max band). The page
applies a view only when its URL carries no search facet (``searchFilter``, ``orderByKey``, ...): the filter
lives in the view. The UI sends a filter to the server only when a part of it reads like
``tags.x = ...``; any other text it searches as a run name (``IS NULL`` alone is such text).
"""

from __future__ import annotations

import json
import time
from typing import Any

from initsweep.protocol import Tag

VIEW_ID = "initsweep"
VIEW_TAG_PREFIX = "mlflow.sharedViewState."
VIEW_TAG = f"{VIEW_TAG_PREFIX}{VIEW_ID}"
VIEW_NAME = "initsweep: learning curves and summary"
CURVES_SECTION = "Learning curves"
# Line charts of the first section, in this order (per-epoch metrics of every job).
CURVES = ("val/acc", "val/loss", "train/acc", "train/loss")
# The other sections, by metric-name prefix; MLflow's own two come last.
SECTIONS = ("val", "test", "train", "time", "diag", "init", "Model metrics", "System metrics")
# Columns of the runs table (MLflow orders them by name in a shared view), and its sort key (descending).
COLUMNS = ("val/acc_best", "test/acc", "val/loss_best", "test/loss", "val/epochs_to_learn")
SORT_METRIC = "val/acc_best"
# The experiment's view leaves Optuna trials out (tagged trial_number; the second clause makes the UI take
# the text as a filter, see above). A sweep's view shows its parent's children, grouped by configuration.
NO_TRIALS = f"tags.{Tag.TRIAL_NUMBER} IS NULL AND attributes.run_name LIKE '%'"
SWEEP_FILTER = f"tags.`{Tag.PARENT}` = '{{run_id}}'"


def _metric_key(name: str) -> str:
    """MLflow's canonical column key of a metric, e.g. metrics.`val/acc`."""
    return f"metrics.`{name}`"


def _line_chart(metric: str, section: str) -> dict[str, Any]:
    return {
        "uuid": f"initsweep-{metric.replace('/', '-')}",
        "type": "LINE",
        "metricSectionId": section,
        "metricKey": metric,
        "deleted": False,
        "isGenerated": True,
        "runsCountToCompare": 100,
        "scaleType": "log" if metric.endswith("loss") else "linear",
        "xAxisScaleType": "linear",
        "xAxisKey": "step",
        "selectedXAxisMetricKey": "",
        "lineSmoothness": 0,
        "yAxisKey": "metric",
        "yAxisExpressions": [],
        "ignoreOutliers": False,
        "useGlobalXaxisKey": True,
        "useGlobalLineSmoothing": True,
        "range": {},
    }


def sweep_view_id(run_id: str) -> str:
    """The id of the view of the sweep (or study) whose parent run is ``run_id``."""
    return f"sweep-{run_id}"


def sweep_view(run_id: str, name: str) -> tuple[str, str]:
    """(experiment tag, value) of the view of one sweep's runs, grouped by configuration."""
    state = view_state(SWEEP_FILTER.format(run_id=run_id), grouped=True)
    return f"{VIEW_TAG_PREFIX}{sweep_view_id(run_id)}", envelope(f"initsweep: {name}", state)


def view_state(search_filter: str = NO_TRIALS, grouped: bool = False) -> dict[str, Any]:
    """The runs page's state the view restores (search facets and UI state, as MLflow serializes them):
    the runs ``search_filter`` selects; ``grouped``: by ``initsweep.group``, the mean over its runs."""
    sections = [{"uuid": "initsweep-curves", "name": CURVES_SECTION}]
    sections += [{"uuid": f"initsweep-{name.replace(' ', '-')}", "name": name} for name in SECTIONS]
    return {
        "searchFilter": search_filter,
        "orderByKey": _metric_key(SORT_METRIC),
        "orderByAsc": False,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "modelVersionFilter": "All Runs",
        "datasetsFilter": [],
        "selectedColumns": ["attributes.`Duration`", *map(_metric_key, COLUMNS)],
        "compareRunCharts": [_line_chart(metric, sections[0]["uuid"]) for metric in CURVES],
        "compareRunSections": [{**s, "display": True, "isReordered": True} for s in sections],
        "isAccordionReordered": True,
        "runsHiddenMode": "SHOW_ALL",
        "hideEmptyCharts": True,
        "useGroupedValuesInCharts": True,
        "groupBy": {"aggregateFunction": "average", "groupByKeys": [{"mode": "tag", "groupByData": Tag.GROUP}]}
        if grouped
        else None,
        "groupsExpanded": {},
        "viewMaximized": False,
        "runListHidden": False,
        "autoRefreshEnabled": False,
        "chartsSearchFilter": "",
        "globalLineChartConfig": {"xAxisKey": "step", "lineSmoothness": 0, "selectedXAxisMetricKey": ""},
    }


def envelope(name: str, state: dict[str, Any], now_ms: int | None = None) -> str:
    """An experiment tag's value: MLflow's saved-view envelope around a view's ``state``."""
    stamp = int(time.time() * 1000) if now_ms is None else now_ms
    text = json.dumps(state, separators=(",", ":"))
    return json.dumps({"name": name, "createdAt": stamp, "updatedAt": stamp, "state": text})


def view_tag_value(now_ms: int | None = None) -> str:
    """The experiment view's tag value (:func:`view_state` in its envelope)."""
    return envelope(VIEW_NAME, view_state(), now_ms)


def is_current(tag_value: str | None) -> bool:
    """True when ``tag_value`` already holds this version's view (its state, whatever its time stamps)."""
    try:
        return json.loads(tag_value or "")["state"] == json.loads(view_tag_value(0))["state"]
    except (ValueError, KeyError, TypeError):
        return False
