"""The multirun's life cycle: a Hydra callback that owns the sweep's MLflow parent run.

``on_multirun_start`` (main process, before any job) validates every job's config, creates the store once,
and opens the parent run; jobs find it through a small JSON file in the sweep dir, which works for the
basic launcher (same process) and for joblib or submitit workers alike. A basic sweep run again into its dir
continues under the same parent run, its jobs with a result skipped (:mod:`initsweep.sweep.resume`).
``on_multirun_end`` prints the summary table and writes the comparison report
(src/initsweep/report/comparison.py), logs both to the parent run and closes it.
"""

from __future__ import annotations

import atexit
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from initsweep.protocol import (
    BASIC_LAUNCHER,
    BASIC_SWEEPER,
    BASIC_SWEEPERS,
    JOBLIB_LAUNCHER,
    JOBS_FILE,
    LOST_FILE,
    OPTUNA_SWEEPER,
    STATE_FILES,
    Failure,
    Parent,
    SweepJobs,
    SweepVerdict,
    Tag,
    job_config_dict,
)
from initsweep.report import console
from initsweep.sweep import resume
from initsweep.tracking import locks
from initsweep.tracking.locks import SweepDirInUse
from initsweep.tracking.run_logger import RunLogger
from initsweep.tracking.ui_view import sweep_view_id

# Hydra imports this module on every start (conf/config.yaml names the callback): the modules that import
# torch, MLflow or optuna (validation, tracking, tuning, report) are imported inside the callback's methods.


def sweep_command(config: DictConfig) -> list[str]:
    """The overrides a basic sweeper expands into jobs: its ``params`` (from the config), then the command's."""
    params = [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
    return params + list(config.hydra.overrides.task)


def basic_jobs(config: DictConfig) -> list[list[str]] | None:
    """Each job's overrides, in job-number order, when the basic sweeper runs the multirun; else None."""
    if config.hydra.sweeper.get("_target_") not in BASIC_SWEEPERS or not GlobalHydra.instance().is_initialized():
        return None
    from initsweep._compat.hydra import BasicSweeper  # its split_arguments has no public twin

    # The loader expands glob(...) sweeps (e.g. init=glob(*,exclude=custom)) into the group's options.
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    jobs = [
        list(job)
        for batch in BasicSweeper.split_arguments(parser.parse_overrides(sweep_command(config)), None)
        for job in batch
    ]
    check_job_count(len(jobs), int(config.get("max_jobs", 1000)))
    return jobs


def job_configs(config: DictConfig, jobs: list[list[str]] | None) -> list[dict[str, Any]]:
    """Every job config a multirun will run, for validation before the parent run exists: each job of the
    basic sweeper (``jobs``, from :func:`basic_jobs`); the base config and the search space's corners for the
    Optuna sweeper (whose checked plan this makes, see ``initsweep.tuning.plan.plan_for``); the base config for
    any other sweeper."""
    if config.hydra.sweeper.get("_target_") == OPTUNA_SWEEPER:
        from initsweep.tuning.plan import plan_for  # optuna: only for studies

        plan = plan_for(config)
        return [plan.base, *plan.checked_configs]
    if jobs is None:
        return [job_config_dict(config)]
    from initsweep.sweep.composition import compose_jobs

    loader = GlobalHydra.instance().config_loader()
    return compose_jobs(config, jobs, loader, progress=_checking_progress(len(jobs)))


def check_job_count(n_jobs: int, max_jobs: int) -> None:
    """ConfigError when a multirun has more than ``max_jobs`` jobs: a mistyped range should not start
    thousands of trainings."""
    from initsweep.core.config import ConfigError

    if n_jobs > max_jobs:
        raise ConfigError(
            f"this multirun has {n_jobs} jobs, more than max_jobs = {max_jobs}; each job trains a model, so it "
            f"takes about {n_jobs} times as long as one run: to start it, add max_jobs={n_jobs}"
        )


def _checking_progress(n_jobs: int, every_s: float = 10.0) -> Callable[[int], None] | None:
    """For a multirun of more than 100 jobs: a callback that says how many job configs are checked, at most
    every ``every_s`` seconds (checking 10,000 configs takes minutes)."""
    if n_jobs <= 100:
        return None
    last = [time.monotonic()]

    def say(done: int) -> None:
        if time.monotonic() - last[0] >= every_s:
            last[0] = time.monotonic()
            print(f"initsweep: checking job configs: {done}/{n_jobs}", file=sys.stderr, flush=True)

    return say


def fixed_overrides(overrides: list[str]) -> tuple[str, ...]:
    """The command-line overrides that are not sweeps (``a=1`` but not ``a=1,2`` or ``a=range(3)``)."""
    from initsweep.sweep.composition import input_line

    parsed = OverridesParser.create().parse_overrides(overrides)
    return tuple(input_line(o) for o in parsed if not o.is_sweep_override())


def shared_study_name(config: DictConfig) -> str | None:
    """The study's name when its invocations share one study-level parent run (Optuna sweeper with
    ``shared_parent=true``), else None."""
    if config.hydra.sweeper.get("_target_") != OPTUNA_SWEEPER or not config.hydra.sweeper.get("shared_parent"):
        return None
    from initsweep.tuning.plan import plan_for  # optuna: only for studies

    return plan_for(config).study_name


def sweep_to_continue(config: DictConfig, sweep_dir: Path, jobs: list[list[str]] | None) -> SweepJobs | None:
    """The sweep recorded in ``sweep_dir`` that this basic sweep continues (:func:`initsweep.sweep.resume.continued`),
    or None: a new sweep (another sweeper, ``resume=false``, nothing recorded). SweepChanged when the dir holds a
    sweep of another command."""
    if jobs is None or config.hydra.sweeper.get("_target_") != BASIC_SWEEPER or not config.get("resume", True):
        return None
    from initsweep.protocol import resolve_uri

    return resume.continued(
        sweep_dir, resolve_uri(OmegaConf.select(config, "tracking.uri")), sweep_command(config), jobs
    )


def claim_sweep_dir(config: DictConfig) -> Path:
    """Make ``hydra.sweep.dir`` this sweep's own before anything is written there (see
    :func:`initsweep.tracking.locks.claim_sweep_dir`): a timestamped dir gets a ``_2``, ``_3``, ... suffix when another
    sweep started in the same second; a fixed dir is refused while a live sweep holds it. The claimed dir
    replaces ``hydra.sweep.dir`` in ``config`` and in the Hydra overrides every job's config is composed from."""
    raw = OmegaConf.to_container(config.hydra.sweep, resolve=False)
    if not isinstance(raw, dict):
        raise TypeError(f"hydra.sweep is a mapping, not {type(raw).__name__}")
    timestamped = "${now:" in str(raw["dir"])
    wanted = Path(str(config.hydra.sweep.dir))
    claimed = locks.claim_sweep_dir(wanted, unique=timestamped)
    if claimed != wanted:
        quoted = str(claimed).replace("\\", "\\\\").replace("'", "\\'")
        with read_write(config.hydra), open_dict(config.hydra):
            config.hydra.sweep.dir = str(claimed)
            config.hydra.overrides.hydra.append(f"hydra.sweep.dir='{quoted}'")
    return claimed


class SweepCallback(Callback):
    """Hydra callback: one MLflow parent run per multirun, and the summary at its end."""

    def __init__(self) -> None:
        self.parent: Parent | None = None
        self.logger: RunLogger | None = None  # the parent run's
        self.writer: Any = None  # the tracking writer that holds the parent run, if one does
        self.claimed: Path | None = None  # the sweep dir, from its claim until the parent run exists
        self.opening: Any = None  # the writer's request that opens the parent run, until it has replied
        self.uri = ""  # the store's

    def __getstate__(self) -> dict[str, Any]:
        """What a launcher ships to its workers (joblib, submitit pickle the callbacks): not the main process's
        parent run logger nor its tracking writer (a process and its pipes); workers find the parent run
        through the sweep dir."""
        return {**self.__dict__, "logger": None, "writer": None}

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Hydra turns exceptions raised by callbacks into warnings and goes on (its jobs would then run without
        # a parent run), so every failure here ends the process itself, with one clear message; the exit hooks
        # registered by _start close what it opened.
        try:
            self._start(config)
        except Exception as e:  # noqa: BLE001 - the expected failures are one line already (SystemExit)
            from initsweep.protocol import redact

            first = str(e).splitlines()[0] if str(e) else ""
            print(redact(f"initsweep: the sweep could not start: {type(e).__name__}: {first}"), file=sys.stderr)
            raise SystemExit(2) from None

    def _start(self, config: DictConfig) -> None:
        from hydra.errors import HydraException

        from initsweep.core.config import ConfigError, validate

        try:
            claimed = claim_sweep_dir(config)
        except SweepDirInUse as e:
            print(f"initsweep: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        self.claimed = claimed
        atexit.register(self._close_if_open)  # from here on, an interrupt at any moment leaves nothing RUNNING
        try:
            jobs = basic_jobs(config)
            before = sweep_to_continue(config, claimed, jobs)
            configs = job_configs(config, jobs)
            checked = [validate(c) for c in configs]
            if shared_study_name(config) is None:  # the writer imports MLflow while this process imports torch
                from initsweep.writer import client as writer

                writer.prestart()
            from initsweep.tracking.processes import import_uninterrupted

            import_uninterrupted("torch")  # about 1.7 s, once per sweep
            from initsweep.jobs.resources import check_all_buildable

            check_all_buildable(checked)
        except (ConfigError, HydraException, resume.SweepChanged) as e:
            locks.abandon_sweep_dir(claimed)
            print(f"initsweep: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        for name in STATE_FILES:  # what an earlier sweep left in a reused dir, but the record of the one continued
            if before is None or name != JOBS_FILE:
                (claimed / name).unlink(missing_ok=True)
        from initsweep.protocol import resolve_uri
        from initsweep.sweep import launchers
        from initsweep.tracking import processes

        launchers.install_slurm_watcher(OmegaConf.to_container(config.hydra.launcher, resolve=True))  # type: ignore[arg-type]
        processes.terminate_as_interrupt(
            pass_on=True
        )  # SIGTERM stops the workers too and closes the runs, as Ctrl-C does
        uri = self.uri = resolve_uri(checked[0].tracking.uri)
        overrides = list(config.hydra.overrides.task)
        run_name = " ".join(["sweep", *overrides]) if overrides else "sweep"
        params: dict[str, Any] = {"sweep_dir": str(config.hydra.sweep.dir)}
        if jobs is not None:
            params["n_jobs"] = len(jobs)
        study = shared_study_name(config)
        args = (uri, checked[0].experiment_name, run_name, study, overrides, params, processes.identity())
        self.logger = self._open_parent(config, claimed, study, (*args, before and before.run_id))
        run_id, exp_id = self.logger.run_id, str(self.logger.experiment_id)
        self.parent = Parent(run_id, exp_id, uri, run_id, fixed_overrides(overrides))
        self.claimed = None
        sweep_dir = Path(config.hydra.sweep.dir)
        self.parent.write(sweep_dir)
        total = config.hydra.sweeper.get("n_trials")
        if jobs is not None:
            done = self._done_before(before, len(jobs), sweep_dir)
            resume.record(run_id, uri, sweep_command(config), jobs, done).write(sweep_dir)
            total = len(jobs) - len(done)
            if not total:
                launchers.stop_warm_workers()
        console.start_progress(sweep_dir, total)
        # MLflow, imported at exit by _close_if_open when the writer holds the parent, imports the thread pool,
        # whose exit hook threading refuses once it has shut down: import it now (torch would have).
        import concurrent.futures.thread  # noqa: F401

    def _open_parent(self, config: DictConfig, claimed: Path, study: str | None, args: tuple) -> Any:
        """:func:`initsweep.writer.sweep_runs.open_parent` ``(*args)`` (``study``: its study argument); a store
        that fails: one line, exit 2."""
        from initsweep.protocol import TrackingError
        from initsweep.sweep import launchers
        from initsweep.writer import client as writer
        from initsweep.writer import sweep_runs

        # A sweep whose process has no MLflow yet (any but a shared study's): the tracking writer imports it and
        # opens the store and the parent run while this process imports torch for the jobs, if they run here
        # (a joblib or SLURM sweep's process never trains: its workers would compete with that import).
        self.writer = writer.writer() if study is None and writer.wanted() else None
        # Again, now that the writer exists: atexit runs the last registered first, so this runs before the
        # writer's own exit hook closes it, while the parent run can still be closed through it.
        atexit.register(self._close_if_open)
        launcher = config.hydra.launcher.get("_target_")
        try:
            if self.writer is None:  # MLflow: imported only once every job's config is valid
                return sweep_runs.open_parent(*args)
            self.opening = opening = self.writer.run_function(sweep_runs.open_parent, *args)
            if launcher == BASIC_LAUNCHER:
                from initsweep.tracking.processes import import_uninterrupted

                import_uninterrupted("torch._dynamo")  # what the first optimizer step imports (1-2 s)
            elif launcher == JOBLIB_LAUNCHER:  # the workers start and import torch meanwhile
                launcher_cfg = OmegaConf.to_container(config.hydra.launcher, resolve=True)
                launchers.warm_up_joblib_workers(launcher_cfg, launchers.warm_worker)  # type: ignore[arg-type]
            logger = self.writer.value(opening)
            self.opening = None
            self.writer.sweep_run_id = logger.run_id  # its jobs' ends are confirmed later
            return logger
        except TrackingError as e:
            self.opening = None  # answered (with the error): nothing to wait for at exit
            launchers.stop_warm_workers()
            locks.abandon_sweep_dir(claimed)
            print(f"initsweep: {e}", file=sys.stderr)
            raise SystemExit(2) from None

    def _done_before(self, before: SweepJobs | None, n_jobs: int, sweep_dir: Path) -> list[int]:
        """The jobs of the sweep this one continues (``before``) that have a result under its parent, said in
        one line; none for a new sweep."""
        from initsweep.writer import sweep_runs

        assert self.parent is not None
        if before is None:
            return []
        if before.run_id != self.parent.run_id:
            print(
                f"initsweep: the parent run {before.run_id} of the sweep in {sweep_dir} is no longer in the store; "
                "starting a new sweep there",
                file=sys.stderr,
            )
            return []
        p = self.parent
        done: list[int] = self._store(sweep_runs.finished_jobs, p.tracking_uri, p.experiment_id, p.run_id)
        print(
            f"initsweep: resuming {sweep_dir}: {len(done)} of {n_jobs} jobs already finished; "
            f"running {n_jobs - len(done)}",
            file=sys.stderr,
        )
        return done

    def _close_if_open(self) -> None:
        """At exit without on_multirun_end (interrupted or crashed sweep): never leave the parent RUNNING; a
        sweep interrupted before its parent run existed leaves no lock-only dir behind."""
        if self.logger is None and self.opening is not None:  # interrupted while the writer opened the parent
            try:
                self.logger = self.writer.value(self.opening)
            except BaseException:  # noqa: BLE001 - the writer failed or was interrupted too: nothing to close
                pass
        if self.logger is not None and self.parent is None:  # the parent run exists, its record does not yet
            self.parent = Parent(self.logger.run_id, str(self.logger.experiment_id), self.uri, "", ())
        if self.logger is not None and not self.logger.ended and self.parent is not None:
            from initsweep.tracking import client as tracking
            from initsweep.tracking import recovery

            spare = []
            if self.writer is None:
                client = cast(tracking.RunLogger, self.logger).client  # the parent run's, in this process
            else:  # the writer holds the parent run; this process reads the store itself on the way out
                spare = [self.writer.proc.pid]
                try:
                    client = tracking.connect(self.parent.tracking_uri)
                except tracking.TrackingError:
                    client = None
            recovery.stop_children(client, spare=spare)  # no joblib worker outlives the sweep
            if client is not None:
                recovery.reap_quietly(client)  # jobs of workers that died (or were killed) with the sweep
            try:
                self.logger.set_tags({Tag.FAILURE: Failure.SWEEP_UNFINISHED.value})
                self.logger.end("KILLED")
            except Exception as e:  # noqa: BLE001 - the store failed: no traceback on the way out
                self.logger.fail_tracking(f"{type(e).__name__}: {e}")
        if self.claimed is not None:  # the sweep never got to write its records: no lock-only dir left
            locks.abandon_sweep_dir(self.claimed)
            self.claimed = None

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.parent is None or self.logger is None:
            return
        try:
            self._end(config)
        except Exception as e:  # noqa: BLE001 - e.g. the store failed: never a silent exit 0 (Hydra warns only)
            from initsweep.protocol import reason

            why = reason(e)
            print(f"initsweep: the sweep could not be closed: {why}", file=sys.stderr)
            if not self.logger.ended:
                self.logger.fail_tracking(why)
            note = f"the parent run {self.parent.run_id} may be left RUNNING ({why}); the re-run closes it"
            self._say_store_failures(Path(config.hydra.sweep.dir), note)
            raise SystemExit(1) from None

    def _say_store_failures(self, sweep_dir: Path, parent_note: str) -> bool:
        """Print the jobs the store failed (:func:`initsweep.protocol.record_store_failure`, and the runs whose
        end the writer's store refused) with the command that runs them again; whether there were any."""
        from initsweep.protocol import store_failures

        names = self.writer.refused if self.writer else ()
        refused = [f"{console.round_numbers(name)}: the store refused the run's end" for name in names]
        failed = store_failures(sweep_dir) + refused
        if failed:
            lines = resume.store_failure_lines(failed, resume.rerun_command(sys.argv, sweep_dir), parent_note)
            print("\n".join(lines), file=sys.stderr)
        return bool(failed)

    def _end(self, config: DictConfig) -> None:
        assert self.parent is not None and self.logger is not None
        from initsweep.protocol import store_failures
        from initsweep.report import drawing as figures
        from initsweep.writer import sweep_runs

        figures.finish()  # the last jobs' figures, drawn in the background
        p = self.parent
        view = sweep_view_id(p.run_id)  # the sweep's own runs, grouped by configuration
        sweep_dir = Path(config.hydra.sweep.dir)
        args = (p.tracking_uri, p.experiment_id, p.run_id, str(sweep_dir))
        table, n_runs, crashed = self._store(sweep_runs.summarize, *args)
        if self.writer is not None:  # runs whose end the store refused (read while the summary was waited for)
            crashed += [name for name in self.writer.refused if name not in crashed]
        print(
            f"\nSweep {p.sweep_id} ({n_runs} runs) in MLflow experiment {p.experiment_id}:\n{table}\n"
            f"Parent run: {console.run_url(p.experiment_id, p.run_id)}\n"
            f"Compare runs: {console.runs_url(p.experiment_id, view=view)}\n"
            f"Learning curves: {console.runs_url(p.experiment_id, charts=True, view=view)}"
        )
        try:
            experiment = str(config.get("experiment_name", p.experiment_id))
            run_name = " ".join(["sweep", *config.hydra.overrides.task])
            print(f"Report: {self._store(sweep_runs.write_report, *args, run_name, experiment)}")
        except Exception as e:  # a failed report must not leave the parent run open
            from initsweep.protocol import reason

            why = reason(e)
            print(f"initsweep: the comparison report failed: {why}", file=sys.stderr)
        # A sweeper that tolerates failed jobs decides the parent's status itself (the Optuna sweeper does).
        if verdict := SweepVerdict.read(sweep_dir):
            if verdict.keep_open:  # a shared study parent: workers still run trials, the last one ends it
                self.logger.ended = True
                print(f"Study parent run left RUNNING for the workers still running: {self.parent.run_id}")
            elif verdict.reason:
                self.logger.set_tags({Tag.FAILURE: verdict.reason})
            self.logger.end(verdict.status)  # nothing when kept open
            if verdict.status == "FAILED":
                print(f"initsweep: {verdict.reason or 'the sweep failed'}", file=sys.stderr)
                raise SystemExit(1)
            return
        # A diverged job is a result of the experiment; a crashed one is an error of the sweep, and so is a
        # worker that died: the jobs without a result then (running or queued) were launched once more.
        lost = sweep_dir / LOST_FILE
        relaunched = list(dict.fromkeys(lost.read_text().splitlines())) if lost.exists() else []
        on_store = store_failures(sweep_dir) or (self.writer is not None and self.writer.refused)
        if on_store:
            self.logger.set_tags({Tag.FAILURE: Failure.TRACKING.value})
        self.logger.end("FAILED" if crashed or relaunched or on_store else "FINISHED")
        if on_store:
            self._say_store_failures(sweep_dir, f"the parent run {p.run_id} ended FAILED, failure=tracking")
        if crashed:
            print(f"initsweep: {len(crashed)} job(s) failed: {', '.join(crashed)}", file=sys.stderr)
        if relaunched:
            print(
                f"initsweep: a worker died; {len(relaunched)} job(s) without a result were launched again: "
                + "; ".join(relaunched),
                file=sys.stderr,
            )
        if crashed or relaunched or on_store:
            raise SystemExit(1)  # Hydra would swallow an exception raised here

    def _store(self, function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)``, one of :mod:`initsweep.writer.sweep_runs`: in the tracking writer when it holds the
        sweep, else here."""
        from initsweep.writer.client import store_side

        return store_side(self.writer, function, *args)
