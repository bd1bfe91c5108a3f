"""The store side of a sweep's life cycle (:class:`initsweep.sweep.callback.SweepCallback`): its parent run opened, its
runs summarized and reported; and of a study's (the Optuna sweeper's ``Study``): its settings, its trials'
states and its results on the parent run. The sweep's process calls these through the tracking writer when it
has one (:func:`initsweep.writer.client.store_side`: a sweep whose process has not imported MLflow), so that the
sweep's process imports torch and trains while the writer imports MLflow and writes to the store; else in
its own process. MLflow is imported on first use: a process without it names these functions for its writer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from initsweep.core.lazy import LazyModule
from initsweep.protocol import ROLE_SWEEP, Failure, Parent, Tag, TrialOutcome

if TYPE_CHECKING:
    from initsweep.report import comparison as report
    from initsweep.tracking import client as tracking
    from initsweep.tracking import recovery, ui_view
else:
    report = LazyModule("initsweep.report.comparison")
    tracking = LazyModule("initsweep.tracking.client")
    recovery = LazyModule("initsweep.tracking.recovery")
    ui_view = LazyModule("initsweep.tracking.ui_view")

STUDY_PARENT_TAG = "initsweep.study_parent"  # value: the study name; marks the study-level parent run


def open_parent(
    uri: str,
    experiment: str,
    run_name: str,
    study: str | None,
    overrides: list[str],
    params: Mapping[str, Any],
    who: Mapping[str, str] | None = None,
    resume: str | None = None,
) -> tracking.RunLogger:
    """Open the store (closing the runs of dead processes) and the sweep's parent run: the run ``resume`` reopened
    (a resumed sweep; a new one when the store no longer has it), a new one, or the study's shared one
    (``study``: found or created by name, per-invocation ``params`` then as tags)."""
    client = tracking.connect(uri)  # creates the store once, before any worker starts
    recovery.reap(client)
    exp_id = tracking.experiment_id(client, experiment)
    reopened = tracking.reopen_run(client, resume, who, finished=True) if resume else None
    if reopened is not None:
        return reopened  # its tags and params are this sweep's already
    if study is None:
        logger = tracking.start_run(client, exp_id, run_name, {Tag.ROLE: ROLE_SWEEP}, who=who)
    else:  # many workers, one study: its one parent run, found or created by study name
        found = study_parent_run(client, exp_id, study, run_name, {Tag.ROLE: ROLE_SWEEP})
        logger = tracking.RunLogger(client, found, experiment_id=exp_id)
    logger.set_tags({Tag.SWEEP_ID: logger.run_id, Tag.OVERRIDES: " ".join(overrides)})
    tracking.set_experiment_tag(client, exp_id, *ui_view.sweep_view(logger.run_id, study or run_name))  # its links
    if study is None:
        logger.log_params(params)
    else:  # a shared run's params cannot change
        logger.set_tags(params)
    return logger


# A sweep's child runs as summarize read them, for the write_report that follows it (one search instead of
# two: 0.4 s for 16 runs on SQLite). Nothing changes a child run between the two calls: every job has ended.
_CHILDREN: dict[str, list[Any]] = {}


def _job(run: Any) -> tuple[str, str | None, str | None]:
    """The job a run is of: (run name, job number, trial number), the same for a job launched again after its
    worker died or in a resumed sweep."""
    return run.info.run_name, run.data.tags.get(Tag.JOB_NUM), run.data.tags.get(Tag.TRIAL_NUMBER)


def _is_result(run: Any) -> bool:
    """Whether a run is a result of the experiment: FINISHED, or diverged."""
    return run.info.status == "FINISHED" or run.data.tags.get(Tag.FAILURE) == Failure.DIVERGED.value


def one_per_job(runs: Sequence[Any]) -> list[Any]:
    """Each job's run, oldest job first (``runs`` oldest first): its last result, else its last run. A job run
    again (its worker died, or the sweep was resumed) is one row of the summary and one sample of the report."""
    chosen: dict[tuple[str, str | None, str | None], Any] = {}
    for run in runs:
        job = _job(run)
        if job not in chosen or _is_result(run) or not _is_result(chosen[job]):
            chosen[job] = run
    return list(chosen.values())


def finished_jobs(uri: str, experiment_id: str, run_id: str) -> list[int]:
    """The numbers of the sweep's jobs that have a result (:func:`_is_result`) under its parent run."""
    runs = tracking.child_runs(tracking.connect(uri), experiment_id, run_id)
    return sorted({int(r.data.tags[Tag.JOB_NUM]) for r in runs if Tag.JOB_NUM in r.data.tags and _is_result(r)})


def summarize(uri: str, experiment_id: str, run_id: str, sweep_dir: str) -> tuple[str, int, list[str]]:
    """After the last job: close the runs of dead workers, write and log ``summary.md``; returns the table, the
    number of runs and the names of the jobs that crashed (a diverged run is a result, not a crash; a job
    launched again after its worker died crashed only when no run of it finished)."""
    client = tracking.connect(uri)
    recovery.reap_quietly(client)  # a job whose worker died, or whose end the store did not take
    every = tracking.child_runs(client, experiment_id, run_id)
    runs = _CHILDREN[run_id] = one_per_job(every)
    table = report.summary_table(runs)
    path = Path(sweep_dir) / "summary.md"
    path.write_text(table + "\n")
    tracking.RunLogger(client, run_id).log_artifact(path)
    errors = (Failure.EXCEPTION.value, Failure.TRACKING.value, Failure.LOST.value)
    finished = {_job(r) for r in every if r.info.status == "FINISHED"}
    crashed = [r.info.run_name for r in every if r.data.tags.get(Tag.FAILURE) in errors and _job(r) not in finished]
    return table, len(runs), list(dict.fromkeys(crashed))


def write_report(uri: str, experiment_id: str, run_id: str, sweep_dir: str, run_name: str, experiment: str) -> str:
    """The comparison report of the sweep's runs in ``<sweep_dir>/report``, logged to the parent; its path."""
    client = tracking.connect(uri)
    runs = _CHILDREN.pop(run_id, None) or tracking.child_runs(client, experiment_id, run_id)
    title, source = report.sweep_heading(run_name, run_id, experiment, sweep_dir)
    written = report.write_report(client, runs, Path(sweep_dir) / "report", title, source)
    parent = tracking.RunLogger(client, run_id)
    for path in written:
        parent.log_artifact(path, "report")
    return str(written[0])


# The functions that draw (the report): the tracking writer first logs every run figure its drawing process
# has been sent (initsweep.writer.server), so that they come after the runs' own.
DRAWING = frozenset({write_report})


# ---------------------------------------------------------------------------------------------------
# A study: the parent run is the study, each trial a child run


def log_study_settings(
    parent: Parent, params: Mapping[str, Any], study_name: str, shared: bool, per_invocation: Sequence[str]
) -> list[str]:
    """The study's settings as params of its parent run. A parent shared by several invocations (workers)
    takes the ``per_invocation`` keys as tags and the others only where it has none yet (a param is written
    once; another worker may write the same ones between our read and our write). Returns the keys the shared
    run has other values for, which are kept."""
    client = tracking.connect(parent.tracking_uri)
    logger = tracking.RunLogger(client, parent.run_id)
    if not shared:
        tracking.log_study_start(logger, params, study_name)
        return []
    params = dict(params)
    logger.set_tags({k: params.pop(k) for k in per_invocation})
    for attempt in range(2):
        known = client.get_run(parent.run_id).data.params
        try:
            tracking.log_study_start(logger, {k: v for k, v in params.items() if k not in known}, study_name)
        except Exception:
            if attempt:
                raise
            continue
        return sorted(k for k, v in params.items() if k in known and known[k] != str(v))
    raise AssertionError("unreachable")


def tag_trials(parent: Parent, study_name: str, outcomes: Sequence[TrialOutcome]) -> None:
    """:func:`initsweep.tracking.client.record_trials` on the parent's store."""
    tracking.record_trials(tracking.connect(parent.tracking_uri), parent, study_name, outcomes)


def finished_trial_run(parent: Parent, trial: int) -> tuple[str, dict[str, float]] | None:
    """The id and metrics of a FINISHED run of trial number ``trial`` under the parent (an earlier attempt
    whose worker died after its run ended), or None."""
    client = tracking.connect(parent.tracking_uri)
    runs = tracking.child_runs(client, parent.experiment_id, parent.run_id, {Tag.TRIAL_NUMBER: trial})
    done = [r for r in runs if r.info.status == "FINISHED"]
    return (done[-1].info.run_id, dict(done[-1].data.metrics)) if done else None


def log_study_results(
    parent: Parent,
    study_name: str,
    metrics: Mapping[str, float],
    best: tuple[int, Mapping[str, Any]] | None,
    best_numbers: Sequence[int],
    run_ids: Mapping[int, str],
    results: Path,
    plots: Sequence[Path],
    shared: bool,
) -> None:
    """The study's counts, best trial, results file and plots on its parent run; its best trials' runs
    tagged (``run_ids``: the trial runs this process knows, by trial number). The best trial of a shared parent,
    which later workers change, is logged as tags, not params."""
    client = tracking.connect(parent.tracking_uri)
    logger = tracking.RunLogger(client, parent.run_id)
    if shared and best is not None:
        number, values = best
        logger.set_tags({Tag.BEST_TRIAL: number, **{f"best_params.{k}": v for k, v in values.items()}})
        best = None
    tracking.log_study_end(logger, metrics, best, results, plots)
    tracking.mark_best_runs(client, parent, study_name, best_numbers, run_ids)


def study_parent_run(client: Any, exp_id: str, study_name: str, run_name: str, tags: Mapping[str, Any]) -> str:
    """Id of the study's one MLflow parent run, found or created by study name, safe when workers race.

    Each worker looks for runs tagged ``initsweep.study_parent=<study_name>``; none -> it creates one, then
    searches again: the oldest (start time, then run id) wins, and a worker whose own run lost deletes it.
    A finished parent is set RUNNING again while this worker adds trials.
    """

    def candidates() -> list:
        runs = tracking.tagged_runs(client, exp_id, {STUDY_PARENT_TAG: study_name})
        return sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))

    found = candidates()
    if found:
        run_id = found[0].info.run_id
        if found[0].info.status != "RUNNING":
            client.update_run(run_id, status="RUNNING")
        return run_id
    mine = tracking.start_run(client, exp_id, run_name, {**tags, STUDY_PARENT_TAG: study_name}).run_id
    winner = candidates()[0].info.run_id
    if winner != mine:
        client.delete_run(mine)
    return winner
