"""Reads of one sweep's or one study's runs select them in the store by tag, so that other sweeps and studies in
the same experiment neither slow them down nor leak into them (issue 32, item 6; scripts/bench_store.py)."""

from __future__ import annotations

from mlflow import MlflowClient

from initsweep.protocol import Parent, Tag, TrialOutcome, TrialState
from initsweep.tracking import client as tracking
from initsweep.writer.sweep_runs import study_parent_run


def _study(client: MlflowClient, exp: str, name: str, trials: int) -> tuple[Parent, list[str]]:
    parent = tracking.start_run(client, exp, f"study {name}", {Tag.ROLE: "sweep", Tag.STUDY_NAME: name})
    runs = [
        tracking.start_run(client, exp, f"trial {n}", {Tag.STUDY_NAME: name, Tag.TRIAL_NUMBER: n}, parent.run_id).run_id
        for n in range(trials)
    ]
    return Parent(parent.run_id, exp, client.tracking_uri, parent.run_id), runs


def test_a_study_marks_its_own_best_run_only_and_a_quote_in_its_name_is_no_filter_syntax(tmp_store: str):
    client = tracking.connect(tmp_store)
    exp = tracking.experiment_id(client, "scoping")
    other, other_runs = _study(client, exp, "other", 3)
    tracking.mark_best_runs(client, other, "other", [1])
    mine, my_runs = _study(client, exp, "it's mine", 3)
    sweep = tracking.start_run(client, exp, "sweep", {Tag.ROLE: "sweep"})
    tracking.start_run(client, exp, "job", {Tag.TRIAL_NUMBER: 1}, sweep.run_id)  # a trial number, no study

    tracking.mark_best_runs(client, mine, "it's mine", [1])
    tracking.mark_best_runs(client, mine, "it's mine", [2])  # a better trial: the old best is untagged

    best = {r.info.run_id for r in client.search_runs([exp], filter_string=f"tags.`{Tag.BEST}` = 'true'")}
    assert best == {other_runs[1], my_runs[2]}
    assert {r.info.run_id for r in tracking.child_runs(client, exp, mine.run_id)} == set(my_runs)
    trial_1 = tracking.tagged_runs(client, exp, {Tag.STUDY_NAME: "it's mine", Tag.TRIAL_NUMBER: 1})
    assert [r.info.run_id for r in trial_1] == [my_runs[1]]
    first = study_parent_run(client, exp, "it's", "study it's", {Tag.ROLE: "sweep"})  # found again by its name
    assert study_parent_run(client, exp, "it's", "study it's", {Tag.ROLE: "sweep"}) == first


def test_a_grown_sqlite_store_reads_a_metric_history_through_the_run_index(tmp_store: str):
    import sqlite3

    from mlflow.entities import Metric

    client = tracking.connect(tmp_store)
    exp = tracking.experiment_id(client, "scoping")
    runs = [tracking.start_run(client, exp, f"job {i}").run_id for i in range(10)]
    for run in runs:  # 1500 values: 10 runs x 5 metrics x 30 epochs
        client.log_batch(run, metrics=[Metric(f"m{k}", 0.0, 0, step) for k in range(5) for step in range(30)])
    db = tracking.sqlite_path(tmp_store)
    assert db is not None
    history = "EXPLAIN QUERY PLAN SELECT * FROM metrics WHERE run_uuid = ? AND key = ? ORDER BY timestamp, step, value"

    def plan() -> str:
        with sqlite3.connect(db) as con:
            return str(con.execute(history, (runs[0], "m0")).fetchall())

    assert "index_metrics_run_uuid_key_step" not in plan()  # no statistics: the metric name's index, every run
    tracking.connect.cache_clear()  # as a later process opens the grown store
    tracking.planner_statistics.cache_clear()
    tracking.connect(tmp_store)
    assert "index_metrics_run_uuid_key_step" in plan()
    assert [v for _, v in tracking.metric_history(client, runs[0], "m3")] == [0.0] * 30


def test_trial_runs_the_sweeper_knows_are_tagged_without_a_search(tmp_store: str):
    """A trial's run id, recorded by its job, is the run tagged: not another run with its number (a killed
    attempt), and a best trial already tagged is left as it is."""
    client = tracking.connect(tmp_store)
    exp = tracking.experiment_id(client, "known")
    parent, runs = _study(client, exp, "s", 2)
    retry = tracking.start_run(client, exp, "trial 1", {Tag.STUDY_NAME: "s", Tag.TRIAL_NUMBER: 1}, parent.run_id)
    outcomes = [TrialOutcome(n, {}, TrialState.COMPLETE, run_id=runs[n]) for n in (0, 1)]  # older than `retry`
    tracking.record_trials(client, parent, "s", outcomes)
    tracking.mark_best_runs(client, parent, "s", [1], {1: runs[1]})
    tracking.mark_best_runs(client, parent, "s", [1], {1: runs[1]})

    tags = {r: client.get_run(r).data.tags for r in [*runs, retry.run_id]}
    assert [tags[r].get(Tag.TRIAL_STATE) for r in runs] == ["COMPLETE", "COMPLETE"]
    assert Tag.TRIAL_STATE not in tags[retry.run_id]  # the search would have picked the latest run
    assert [r for r, t in tags.items() if t.get(Tag.BEST) == "true"] == [runs[1]]
