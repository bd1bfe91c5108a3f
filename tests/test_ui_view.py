"""initsweep's saved view of the MLflow UI: written on the experiments it logs to, in MLflow 3.17's format."""

from __future__ import annotations

import json

from mlflow import MlflowClient

from initsweep.tracking import client as tracking
from initsweep.tracking import ui_view


def _state(client: MlflowClient, exp_id: str) -> tuple[dict, dict]:
    envelope = json.loads(client.get_experiment(exp_id).tags[ui_view.VIEW_TAG])
    return envelope, json.loads(envelope["state"])


def test_experiments_carry_the_view_with_learning_curves_first_kept_current(tmp_store: str):
    client = MlflowClient(tracking_uri=tmp_store)
    exp_id = tracking.experiment_id(client, "initsweep")
    envelope, state = _state(client, exp_id)
    # MLflow's saved-view envelope: a name, times in ms, and the state as a JSON string.
    assert envelope["name"] == ui_view.VIEW_NAME and envelope["createdAt"] > 1e12
    sections = state["compareRunSections"]
    assert [s["name"] for s in sections[:4]] == [ui_view.CURVES_SECTION, "val", "test", "train"]
    assert state["isAccordionReordered"] is True  # MLflow keeps the order instead of sorting by name
    first = sections[0]["uuid"]
    assert [c["metricKey"] for c in state["compareRunCharts"] if c["metricSectionId"] == first] == list(ui_view.CURVES)
    assert {"metrics.`val/acc_best`", "metrics.`test/acc`"} <= set(state["selectedColumns"])
    assert state["orderByKey"] == "metrics.`val/acc_best`" and state["orderByAsc"] is False
    # Rewritten only when it changed: a current view is left alone, a stale one (older initsweep) replaced.
    assert tracking.experiment_id(client, "initsweep") == exp_id
    assert _state(client, exp_id)[0]["updatedAt"] == envelope["updatedAt"]
    client.set_experiment_tag(exp_id, ui_view.VIEW_TAG, json.dumps({**envelope, "state": "{}"}))
    tracking.experiment_id(client, "initsweep")
    assert _state(client, exp_id)[1] == ui_view.view_state()
