"""Studies that survive kills, resumes and concurrent invocations.

* Ownership: every trial an invocation asks for carries its owner as trial system attrs
  (``initsweep:host``, ``initsweep:pid``, ``initsweep:pid_start`` = the process's start time, s since the epoch)
  and a heartbeat: ``initsweep:heartbeat`` (s since the epoch) on a journal file, Optuna's own heartbeat table
  on an RDB storage (:func:`sweeper_storage`), renewed every ``heartbeat_interval`` s by a thread
  (:class:`TrialKeeper`).
* Recovery (:func:`recover_stale_trials`, at the start of an invocation and before each batch): a RUNNING
  trial is stale when its owner process on this host is gone, or when its heartbeat is older than the grace
  period (another host, or no owner recorded). It is marked FAIL (user attr ``reason``, system attr
  ``initsweep:failed_by``) and retried once with the same params (:func:`retry_once`: a WAITING trial the
  next ask pops, keeping a grid point's ``grid_id``), so a grid never skips a point. So is a trial whose job
  was interrupted (the sweeper tells it FAIL as it stops). The retry's job goes on from the resume point the
  dead attempt left in its job dir (``initsweep:job_dir``), in the same MLflow run.
* Seeds (:func:`ask_first`): the sampler of an invocation is seeded with ``seed + n``, where ``n`` is the
  number of the first trial this invocation creates. Trial numbers are handed out by the storage, one per
  trial, so a resumed study never replays earlier draws and two invocations running at once draw differently.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from initsweep._compat import optuna as compat
from initsweep.protocol import RESUME_FILE
from initsweep.tracking import processes
from initsweep.tuning.plan import open_storage

log = logging.getLogger(__name__)

PREFIX = "initsweep:"
HOST, PID, PID_START, HEARTBEAT = (f"{PREFIX}{k}" for k in ("host", "pid", "pid_start", "heartbeat"))
FAILED_BY = f"{PREFIX}failed_by"  # "host:pid" of the invocation that marked a stale trial FAIL
JOB_DIR = f"{PREFIX}job_dir"  # the output dir of a trial's job: its resume point (initsweep.jobs.resume)
RESUME_FROM = f"{PREFIX}resume_from"  # a retry's: the dead attempt's JOB_DIR, whose resume point it continues
RETRY_HISTORY = "retry_history"  # Optuna's name (RetryHeartbeatStaleTrialCallback): numbers of the ancestors
MAX_RETRY = 1
# A trial is claimed (owner attrs) right after it is asked for; one still unclaimed this long after it started
# was asked for by a process killed in between, on any storage and host.
UNCLAIMED_S = 10.0


def process_identity(pid: int | None = None) -> dict[str, Any]:
    """Host name, pid and start time (s since the epoch) of a process: together they name it even after
    the pid is reused."""
    pid = os.getpid() if pid is None else pid
    return {HOST: socket.gethostname(), PID: pid, PID_START: processes.start_time(pid)}


def owner_label(attrs: Mapping[str, Any]) -> str:
    return f"{attrs.get(HOST, '?')}:{attrs.get(PID, '?')}"


def sweeper_storage(spec: str, heartbeat_interval: int, grace_s: int) -> optuna.storages.BaseStorage:
    """The storage the sweeper opens: an RDB URL with Optuna's heartbeat (``heartbeat_interval`` s,
    ``grace_s``) and :func:`retry_once` as its stale-trial callback; a journal file as
    :func:`initsweep.tuning.plan.open_storage` opens it (its heartbeat is the ``initsweep:heartbeat`` attr)."""
    if "://" not in spec:
        return open_storage(spec)
    return open_storage(
        spec, heartbeat_interval=heartbeat_interval, grace_period=grace_s, heartbeat_stale_trial_callback=retry_once
    )


def retry_once(study: optuna.Study, trial: FrozenTrial, interrupted: bool = False) -> int | None:
    """Enqueue a WAITING copy of ``trial`` (same params and distributions, so any sampler allows it; a grid
    point keeps its ``grid_id``) unless it is itself a retry; the owner attrs are not copied, its job dir is
    (as ``initsweep:resume_from``: the retry's job continues its resume point and MLflow run when it left
    one). A trial ``interrupted`` (its study was stopped) that left a resume point is retried however often it
    was before: each time it goes on where it stopped. Returns the retry's number."""
    attrs = {k: v for k, v in trial.system_attrs.items() if not k.startswith(PREFIX)}
    history = [*attrs.get(RETRY_HISTORY, []), trial.number]
    job_dir = trial.system_attrs.get(JOB_DIR)
    preempted = interrupted and job_dir is not None and (Path(job_dir) / RESUME_FILE).exists()
    if len(history) > MAX_RETRY and not preempted:
        return None
    attrs.update({"failed_trial": trial.number, RETRY_HISTORY: history})
    if job_dir is not None:
        attrs[RESUME_FROM] = job_dir
    waiting = optuna.trial.create_trial(
        state=TrialState.WAITING,
        params=trial.params,
        distributions=trial.distributions,
        system_attrs=attrs,
        user_attrs={"retry_of": trial.number},
    )
    study.add_trial(waiting)
    return study.get_trials(deepcopy=False)[-1].number


def _stale_reason(trial: FrozenTrial, me: Mapping[str, Any], now: float, grace_s: float, rdb: bool) -> str | None:
    """Why a RUNNING trial is stale, or None when its owner may still run it: never claimed
    (:data:`UNCLAIMED_S` after it started), its owner on this host dead, or (journal) its heartbeat older than
    ``grace_s``. On an RDB storage Optuna's heartbeat decides for owners on other hosts."""
    attrs = trial.system_attrs
    started = trial.datetime_start.timestamp() if trial.datetime_start is not None else None
    if PID not in attrs and HEARTBEAT not in attrs and started is not None and now - started > UNCLAIMED_S:
        return f"never claimed: its process died {now - started:.0f} s ago between creating and claiming it"
    if PID in attrs and attrs.get(HOST) == me[HOST]:
        if (attrs[PID], attrs.get(PID_START)) == (me[PID], me[PID_START]):
            return None  # ours
        if not processes.alive(attrs[PID], attrs.get(PID_START)):
            return f"its process {owner_label(attrs)} is gone"
        return None
    if rdb:
        return None
    beat = attrs.get(HEARTBEAT)
    if beat is not None and now - float(beat) > grace_s:
        return f"no heartbeat from {owner_label(attrs)} for {now - float(beat):.0f} s (grace {grace_s:.0f} s)"
    return None


def recover_stale_trials(study: optuna.Study, storage: Any, grace_s: float) -> list[str]:
    """Mark FAIL every RUNNING trial whose owner is gone (see :func:`_stale_reason`; on an RDB storage,
    Optuna's heartbeat also decides) and retry each once; one line per trial recovered."""
    messages: list[str] = []
    rdb = isinstance(storage, optuna.storages.RDBStorage)
    if rdb:
        before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # fail_stale_trials
            optuna.storages.fail_stale_trials(study)  # calls retry_once for each
        after = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        messages += [f"trial {n}: no heartbeat for {grace_s:.0f} s: marked FAIL, retried" for n in before - after]
    me, now = process_identity(), time.time()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = _stale_reason(trial, me, now, grace_s, rdb)
        if reason is None:
            continue
        trial_id = compat.trial_id(trial)
        storage_ = compat.study_storage(study)
        try:
            storage_.set_trial_user_attr(trial_id, "reason", f"lost: {reason}")
            storage_.set_trial_system_attr(trial_id, FAILED_BY, owner_label(me))
            if not storage_.set_trial_state_values(trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another invocation recovered it first
        retry = retry_once(study, storage_.get_trial(trial_id))
        then = f"retried as trial {retry}" if retry is not None else "not retried (it was a retry already)"
        messages.append(f"trial {trial.number}: {reason}: marked FAIL, {then}")
    return messages


@runtime_checkable
class _Heartbeat(Protocol):
    """A storage with Optuna's heartbeat table: an RDB storage, or the cache Optuna wraps it in."""

    def record_heartbeat(self, trial_id: int) -> None: ...


class TrialKeeper:
    """Claims the trials of this invocation (owner attrs) and renews their heartbeat every ``interval`` s
    in a daemon thread until they are released."""

    def __init__(self, study: optuna.Study, storage: Any, interval: float):
        self.study = study
        self.interval = interval
        self.identity = process_identity()
        self._ids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._rdb = isinstance(storage, optuna.storages.RDBStorage)
        self._thread = threading.Thread(target=self._beat_forever, name="initsweep-heartbeat", daemon=True)
        self._thread.start()

    def claim(self, trial: optuna.Trial) -> None:
        storage = compat.study_storage(self.study)
        for key, value in {**self.identity, HEARTBEAT: time.time()}.items():
            storage.set_trial_system_attr(compat.trial_id(trial), key, value)
        with self._lock:
            self._ids.add(compat.trial_id(trial))
        if self._rdb and isinstance(storage, _Heartbeat):
            storage.record_heartbeat(compat.trial_id(trial))

    def release(self, trial: Any) -> None:
        with self._lock:
            self._ids.discard(compat.trial_id(trial))

    def _beat_forever(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                ids = list(self._ids)
            for trial_id in ids:
                try:
                    storage = compat.study_storage(self.study)
                    if self._rdb and isinstance(storage, _Heartbeat):
                        storage.record_heartbeat(trial_id)
                    else:
                        storage.set_trial_system_attr(trial_id, HEARTBEAT, time.time())
                except Exception as e:  # noqa: BLE001 - a finished trial or a storage hiccup: try next time
                    log.debug(f"heartbeat of trial id {trial_id} failed: {e}")

    def stop(self) -> None:
        self._stop.set()


def _suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> None:
    """Suggest ``name`` from ``dist`` with the public suggest API (what ``study.ask(distributions)`` does)."""
    if isinstance(dist, FloatDistribution):
        trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
    elif isinstance(dist, IntDistribution):
        trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    elif isinstance(dist, CategoricalDistribution):
        trial.suggest_categorical(name, dist.choices)
    else:
        raise TypeError(f"unsupported distribution {dist!r}")


def ask(study: optuna.Study, distributions: Mapping[str, BaseDistribution] | None = None) -> optuna.Trial:
    """``study.ask(distributions)`` without Optuna's warning that an RDB storage's heartbeat is meant for
    ``Study.optimize``: the sweeper asks and tells, and keeps the heartbeat itself (module docstring)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed", category=UserWarning)
        return study.ask(None if distributions is None else dict(distributions))


def ask_first(
    study: optuna.Study,
    distributions: Mapping[str, BaseDistribution],
    seed: int | None,
    make_sampler: Callable[[int | None], optuna.samplers.BaseSampler],
) -> tuple[optuna.Trial, int | None]:
    """This invocation's first trial, with the sampler re-made with seed ``seed + trial.number`` before any
    value is drawn. Returns the trial and the effective seed (None when ``seed`` is None)."""
    trial = ask(study)
    effective = None if seed is None else int(seed) + trial.number
    if effective is not None:
        study.sampler = make_sampler(effective)
    for name, dist in distributions.items():
        _suggest(trial, name, dist)
    return trial, effective


def budget_used(trials: Sequence[Any]) -> int:
    """Trials of a study that count toward ``max_trials``: complete, pruned and running ones, and failed
    ones that were not retried (a retry, WAITING until asked, takes the failed trial's place)."""
    retried = {t.system_attrs.get("failed_trial") for t in trials}
    counted = ("COMPLETE", "PRUNED", "RUNNING")
    return sum(t.state.name in counted or (t.state.name == "FAIL" and t.number not in retried) for t in trials)


def budget_left(trials: Sequence[Any], max_trials: int | None) -> int | None:
    """Trials this invocation may still start under the study's total budget (None: no total budget)."""
    return None if max_trials is None else max(0, max_trials - budget_used(trials))
