"""Closing runs whose process is gone: no run stays RUNNING for a dead process, no completed epoch is lost.

Every run carries the tags ``initsweep.host``, ``initsweep.pid``, ``initsweep.pid_start`` and
``initsweep.heartbeat`` (see :func:`initsweep.tracking.client.start_run`), and a job's run names its local
``metrics.jsonl`` (:mod:`initsweep.tracking.metrics_file`). :func:`reap` looks at every RUNNING run of a
store and closes:

* a run whose local file records how it ended (e.g. ``FAILED``/``failure=tracking`` when the store refused
  the metrics): that end, with every metric of the file;
* a run of this host whose process is gone (its pid is dead, or now belongs to a process started at another
  time): ``KILLED``, tag ``failure=lost``, with every epoch of its file uploaded;
* a run of another host whose heartbeat (the last batch of metrics that reached the store) is older than
  ``$INITSWEEP_STALE_S`` seconds (default 900): the same. A job whose epochs take longer than that, on
  another host, would be taken for dead: raise the limit for such runs.

Any initsweep process that opens a store calls :func:`reap` (the sweep's main process at its start, its
end and its exit, a single run at its start, ``python -m initsweep.tracking.recovery``). Re-sending metrics is
idempotent: the store ignores a value it already has (same key, step, timestamp, value).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag

from initsweep.protocol import Failure, Tag, one_line
from initsweep.tracking import client as tracking
from initsweep.tracking import metrics_file as ledger
from initsweep.tracking import processes

STALE_S = float(os.environ.get("INITSWEEP_STALE_S", "900"))


def lost_because(run: Any, host: str | None = None, now: float | None = None) -> str | None:
    """Why ``run`` (RUNNING) has no live process, or None when it may still be alive (or is not ours to judge:
    runs without the host tag, written before initsweep recorded it)."""
    tags = run.data.tags
    if Tag.HOST not in tags or Tag.PID not in tags:
        return None
    host = host or processes.identity()["host"]
    if tags[Tag.HOST] == host:
        pid = int(tags[Tag.PID])
        return None if processes.alive(pid, tags.get(Tag.PID_START)) else f"process {pid} on {host} is gone"
    age = (now or time.time()) - float(tags.get(Tag.HEARTBEAT) or 0)
    return f"no heartbeat from {tags[Tag.HOST]} for {age:.0f} s" if age > STALE_S else None


def _record(run: Any) -> ledger.Record | None:
    """The run's own part of the local metrics file its tag names, or None (see :func:`local_record`)."""
    path = run.data.tags.get(Tag.METRICS_FILE)
    return local_record(path, run.info.run_id) if path else None


def local_record(path: str | Path, run_id: str) -> ledger.Record | None:
    """Run ``run_id``'s own part of the metrics file ``path`` (never another run's of a reused dir), or None;
    damaged lines are skipped and said once, and an unreadable file is None: recovery never stops at a bad file."""
    if not Path(path).is_file():
        return None
    try:
        rec = ledger.read(Path(path), run_id)
    except OSError as e:
        print(f"initsweep: warning: cannot read {path} ({e}); closing run {run_id} without it", file=sys.stderr)
        return None
    if rec.skipped:
        lines = ", ".join(map(str, rec.skipped[:5])) + (" ..." if len(rec.skipped) > 5 else "")
        print(f"initsweep: warning: {path}: skipped {len(rec.skipped)} damaged line(s) ({lines})", file=sys.stderr)
    return rec if rec.run_id == run_id else None


def upload(client: MlflowClient, run_id: str, rec: ledger.Record) -> int:
    """Send the file's metric lines that were not confirmed stored (all of them after the last ``flushed``
    mark); returns how many lines were sent."""
    lines = rec.metrics[rec.flushed :]
    metrics = [Metric(k, v, ts, step) for step, ts, values in lines for k, v in values.items()]
    for start in range(0, len(metrics), 1000):
        tracking.retrying(client.log_batch, run_id, metrics=metrics[start : start + 1000])
    return len(lines)


def settle(client: MlflowClient, run: Any, host: str | None = None) -> str | None:
    """Close one RUNNING run if its job recorded its end or its process is gone; returns the status set."""
    rec = _record(run)
    if rec is not None and rec.end is not None:
        status, failure, reason = rec.end["end"], rec.end.get("failure"), rec.end.get("reason")
    elif why := lost_because(run, host):
        status, failure, reason = "KILLED", Failure.LOST.value, why
    else:
        return None
    run_id = run.info.run_id
    if rec is not None:
        upload(client, run_id, rec)
    if failure:
        tags = [RunTag(Tag.FAILURE, failure), RunTag(Tag.FAILURE_REASON, (reason or "")[:5000])]
        tracking.retrying(client.log_batch, run_id, tags=tags)
    tracking.retrying(client.set_terminated, run_id, status=status)
    return status


def reap(client: MlflowClient) -> list[Any]:
    """Close every RUNNING run of the store whose job ended or whose process is gone (see the module
    docstring); returns the runs closed, as they were found."""
    exp_ids = [e.experiment_id for e in tracking.retrying(client.search_experiments)]
    if not exp_ids:
        return []
    running = tracking.retrying(
        client.search_runs, exp_ids, filter_string="attributes.status = 'RUNNING'", max_results=10000
    )
    host = processes.identity()["host"]
    return [run for run in running if settle(client, run, host)]


def complete_refused(client: MlflowClient) -> list[tuple[Any, int]]:
    """Send every ``FAILED``, ``failure=tracking`` run the metric lines of its ``metrics.jsonl`` that the store
    did not confirm (it refused them; it takes writes again), once: tag ``initsweep.uploaded`` = lines sent.
    Returns ``(run, lines sent)`` for each run completed."""
    exp_ids = [e.experiment_id for e in tracking.retrying(client.search_experiments)]
    query = f"attributes.status = 'FAILED' and tags.`{Tag.FAILURE}` = '{Failure.TRACKING.value}'"
    refused = tracking.retrying(client.search_runs, exp_ids, filter_string=query, max_results=10000) if exp_ids else []
    done = []
    for run in refused:
        if Tag.UPLOADED not in run.data.tags and (rec := _record(run)) is not None:
            sent = upload(client, run.info.run_id, rec)
            tracking.retrying(client.set_tag, run.info.run_id, Tag.UPLOADED, str(sent))
            done.append((run, sent))
    return done


def reap_quietly(client: MlflowClient) -> list[Any]:
    """:func:`reap`, never raising (called on the way out of a sweep, when the store may be what failed)."""
    try:
        return reap(client)
    except Exception as e:  # noqa: BLE001
        print(f"initsweep: could not close the runs of dead processes: {one_line(e)}", file=sys.stderr)
        return []


def stop_children(client: MlflowClient | None, grace_s: float = 15.0, spare: Collection[int] = ()) -> None:
    """On the way out of a sweep's main process: give this process's children (joblib workers) up to
    ``grace_s`` seconds to close the runs they hold (they got the Ctrl-C or the SIGTERM), then SIGKILL every
    child left (idle workers, loky's resource tracker) but those in ``spare`` (the tracking writer), so that no
    worker outlives the sweep. Without a ``client`` (the store is unusable) the children are killed at once."""
    kids = set(processes.children(os.getpid())) - set(spare)
    if client is None:
        grace_s = 0.0
    host, deadline = processes.identity()["host"], time.monotonic() + grace_s
    while client is not None and kids and time.monotonic() < deadline:
        try:
            running = tracking.retrying(
                client.search_runs,
                [e.experiment_id for e in client.search_experiments()],
                filter_string=f"attributes.status = 'RUNNING' and tags.`{Tag.HOST}` = '{host}'",
            )
        except Exception:  # noqa: BLE001 - the store is unusable: do not wait for it
            break
        if not kids & {int(r.data.tags.get(Tag.PID, 0)) for r in running}:
            break
        time.sleep(0.2)
    for pid in kids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    """``python -m initsweep.tracking.recovery [TRACKING_URI]``: close the runs of dead processes now, and send
    the runs the store failed (``FAILED``, ``failure=tracking``) what their metrics files kept. Exit status 0,
    2 when the store cannot be opened, 1 when it refuses a write (one line; what was not sent is sent next time)."""
    parser = argparse.ArgumentParser(
        prog="python -m initsweep.tracking.recovery",
        description="Close the runs of dead processes; send runs the store failed what their metrics files kept.",
    )
    parser.add_argument("uri", nargs="?", help="MLflow tracking URI (default: as train.py finds the store)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        client = tracking.connect(tracking.resolve_uri(args.uri))
    except tracking.TrackingError as e:
        print(f"initsweep: {e}", file=sys.stderr)
        return 2
    try:
        for run in reap(client):
            print(f"closed run {run.info.run_id} ({run.info.run_name})")
        for run, sent in complete_refused(client):
            print(
                f"sent {sent} metric line(s) kept in its metrics.jsonl to run {run.info.run_id} ({run.info.run_name})"
            )
    except Exception as e:  # noqa: BLE001 - the store refuses writes again (still full): one line, not a traceback
        stopped = f"initsweep: recovery stopped, the store refused a write: {one_line(e)}"
        print(f"{stopped}; run it again once the store takes writes", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
