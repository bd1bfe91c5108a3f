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


def test_a_sweeps_view_selects_its_children_grouped_and_the_experiments_leaves_trials_out(tmp_store: str):
    client = MlflowClient(tracking_uri=tmp_store)
    exp_id = tracking.experiment_id(client, "initsweep")
    parents = [client.create_run(exp_id, run_name=f"sweep {i}").info.run_id for i in range(2)]
    for parent in parents:
        for name, trial in (("init=zeros seed=0", None), ("trial 0 init.std=0.1", "0")):
            tags = {"mlflow.parentRunId": parent, **({"trial_number": trial} if trial else {})}
            client.create_run(exp_id, run_name=name, tags=tags)
    key, value = ui_view.sweep_view(parents[0], "sweep 0")
    assert key == f"mlflow.sharedViewState.{ui_view.sweep_view_id(parents[0])}"
    state = json.loads(json.loads(value)["state"])
    assert state["groupBy"]["groupByKeys"] == [{"mode": "tag", "groupByData": "initsweep.group"}]
    # The filters the views carry, as the server runs them.
    mine = client.search_runs([exp_id], filter_string=state["searchFilter"])
    assert sorted(r.info.run_name for r in mine) == ["init=zeros seed=0", "trial 0 init.std=0.1"]
    assert {r.data.tags["mlflow.parentRunId"] for r in mine} == {parents[0]}
    kept = client.search_runs([exp_id], filter_string=ui_view.view_state()["searchFilter"])
    assert sorted(r.info.run_name for r in kept) == ["init=zeros seed=0"] * 2 + ["sweep 0", "sweep 1"]
