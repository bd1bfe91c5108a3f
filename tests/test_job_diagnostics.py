"""Diagnostics inside a job: logged at step 0 (and every k epochs), warnings tagged, training untouched."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from conftest import client_for, compose
from initsweep.core.config import ConfigError
from initsweep.jobs import job
from initsweep.jobs.job import JobContext, execute, group_name, run_diagnostics, run_name
from initsweep.tracking import client as tracking

FAST = ["trainer.epochs=2"]


def _only_run(tmp_path: Path):
    client = client_for(tmp_path)
    exp_ids = [e.experiment_id for e in client.search_experiments()]
    (found,) = client.search_runs(exp_ids)
    return client, found


def test_zeros_job_logs_diagnostics_at_step_0_and_tags_the_warning(tmp_path, tmp_store, capsys):
    ctx = JobContext(output_dir=tmp_path / "out", overrides=("init=zeros",), init_choice="zeros")
    execute(compose([*FAST, "init=zeros", f"tracking.uri={tmp_store}"]), ctx=ctx)
    client, found = _only_run(tmp_path)
    m = found.data.metrics
    table = tracking.layer_table(client, found.info.run_id, 0)  # per-layer values: one JSON artifact
    dups = dict(zip(table["layers"], table["columns"]["diag/duplicate_units"]))
    assert dups["fc1"] == 256 and dups["fc2"] == 256
    assert m["diag/duplicate_units_total"] == sum(dups.values())
    assert m["diag/initial_loss"] == pytest.approx(m["diag/ln_num_classes"], rel=1e-6)
    assert [h.step for h in client.get_metric_history(found.info.run_id, "diag/act_std_first")] == [0]
    # Compact: no per-layer metric keys, a few dozen keys at most.
    # Depth-independent: per-layer values live in the layers/ table artifact; ~47 scalar keys of ours, plus
    # MLflow's fixed set of system/* metrics (CPU, memory, disk, network) in their own chart section; 6 of the
    # ~53 are the hidden Jacobian's summaries (diag/hidden_*), whose full spectrum is the isometry/ artifact.
    ours = sorted(k for k in m if not k.startswith("system/"))
    assert not [k for k in m if k.count("/") > 1] and len(ours) <= 56, ours
    assert len(m) - len(ours) <= 12, sorted(set(m) - set(ours))
    assert found.data.tags["diag/warning"].startswith("symmetry not broken: duplicate units in fc1 256/256")
    assert found.data.tags["initsweep.group"] == "init=zeros"
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if "warning" in line] == [
        f"initsweep: warning: init=zeros seed=0: {found.data.tags['diag/warning']}"
    ]
    artifacts = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert "signal_propagation.png" in artifacts and "isometry_spectrum.png" in artifacts
    # zeros: h_1 = 0, relu'(0) = 0, so the hidden Jacobian fc1 -> fc2 is 0: every singular value 0
    assert m["diag/hidden_sv_max"] == 0.0 and m["diag/hidden_q"] == 0.0
    spectrum = json.loads(Path(client.download_artifacts(found.info.run_id, "isometry/step_0000.json")).read_text())
    assert spectrum["histogram"]["counts"][0] == len(spectrum["singular_values"]) == 8 * 256


def test_diagnostics_repeat_every_k_epochs_without_changing_training(tmp_path, tmp_store):
    common = [*FAST, "init=uniform", "tracking.log_plots=false", f"tracking.uri={tmp_store}"]
    with_diag = execute(compose([*common, "diagnostics.every=1", "experiment_name=a"]), ctx=JobContext()).value
    without = execute(compose([*common, "diagnostics.enabled=false", "experiment_name=b"]), ctx=JobContext()).value
    assert with_diag == without  # diagnostics draw no random numbers and leave no gradients behind
    client = client_for(tmp_path)
    a = client.search_runs([client.get_experiment_by_name("a").experiment_id])[0]
    b = client.search_runs([client.get_experiment_by_name("b").experiment_id])[0]
    steps = [h.step for h in client.get_metric_history(a.info.run_id, "diag/grad_out_std_last")]
    assert sorted(steps) == [0, 1, 2]
    assert all(tracking.layer_table(client, a.info.run_id, step)["layers"][0] == "fc1" for step in steps)
    assert not any(k.startswith("diag/") for k in b.data.metrics)
    for key in ("val/acc", "train/loss"):
        hist = lambda r, key=key: [(h.step, h.value) for h in client.get_metric_history(r.info.run_id, key)]  # noqa: E731
        assert sorted(hist(a)) == sorted(hist(b))


def test_init_diagnostics_in_a_thread_log_what_they_log_inline(tmp_path, tmp_store, monkeypatch):
    """One job with a core to spare runs its init diagnostics in a thread while it trains; the same job as one
    of two parallel jobs runs them first. Step 0 (table, scalars) and the training are the same."""
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    monkeypatch.setattr("torch.get_num_threads", lambda: 1)
    threads: list[str] = []

    def recording(*args):
        threads.append(threading.current_thread().name)
        return run_diagnostics(*args)

    monkeypatch.setattr(job, "run_diagnostics", recording)
    common = [*FAST, "init=zeros", "tracking.log_plots=false", f"tracking.uri={tmp_store}"]
    for name, parallel_jobs in (("thread", 1), ("inline", 2)):
        execute(compose([*common, f"experiment_name={name}"]), ctx=JobContext(parallel_jobs=parallel_jobs))
    assert threads[0].startswith("initsweep-diag") and threads[1] == threading.current_thread().name
    client = client_for(tmp_path)
    thread, inline = (
        client.search_runs([client.get_experiment_by_name(n).experiment_id])[0] for n in ("thread", "inline")
    )

    def ours(run):  # repr: NaN (zeros: the ratios are undefined) equals NaN
        return {k: repr(v) for k, v in run.data.metrics.items() if not k.startswith(("system/", "time/"))}

    def table(run):
        return json.dumps(tracking.layer_table(client, run.info.run_id, 0))

    assert ours(thread) == ours(inline) and "diag/duplicate_units_total" in ours(thread)
    assert table(thread) == table(inline)
    assert thread.data.tags["diag/warning"] == inline.data.tags["diag/warning"]
    assert "time/diag_s" in thread.data.metrics
    for key in ("diag/act_std_first", "val/acc", "train/loss"):
        hist = [[(h.step, h.value) for h in client.get_metric_history(r.info.run_id, key)] for r in (thread, inline)]
        assert sorted(hist[0]) == sorted(hist[1]) and hist[0]


@pytest.mark.parametrize(
    "override, key",
    [
        ("diagnostics.every=-1", "diagnostics.every"),
        ("diagnostics.warn_factor=0.5", "diagnostics.warn_factor"),
        ("diagnostics.batch_size=0", "diagnostics.batch_size"),
        ("+diagnostics.colour=red", "diagnostics.colour"),
    ],
)
def test_bad_diagnostics_settings_name_the_key(override, key, tmp_store):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        execute(compose([override, f"tracking.uri={tmp_store}"]), ctx=JobContext())


def test_group_is_the_configuration_without_the_seed():
    overrides = ("init=normal", "seed=2", "model.width=64", "hydra.verbose=true")
    assert group_name(overrides, "normal") == "init=normal model.width=64"
    assert run_name(overrides, "normal", 2) == "init=normal model.width=64 seed=2"
    assert group_name(("seed=1",), "zeros") == "init=zeros"


def test_an_orthogonal_deep_linear_job_logs_hidden_singular_values_of_1(tmp_path, tmp_store):
    """Issue 33's acceptance, through a job: width 256 (not the 64 inputs), depth 32, linear, orthogonal."""
    overrides = ["trainer.epochs=1", "tracking.log_plots=false", "model.activation=linear", "model.depth=32"]
    execute(compose([*overrides, "init=orthogonal", f"tracking.uri={tmp_store}"]), ctx=JobContext())
    client, found = _only_run(tmp_path)
    step_0 = {k: client.get_metric_history(found.info.run_id, k)[0] for k in found.data.metrics}
    hidden = {k: h.value for k, h in step_0.items() if k.startswith("diag/hidden_") and h.step == 0}
    assert 1 - 1e-5 <= hidden["diag/hidden_sv_min"] <= hidden["diag/hidden_sv_max"] <= 1 + 1e-5, hidden
    assert hidden["diag/hidden_q"] == pytest.approx(1.0, abs=1e-3)  # linear, sigma_w^2 = 1: q* = 1
    assert found.data.metrics["diag/jacobian_sv_mean"] < 0.7  # end to end (10 x 64) it is no isometry
    spectrum = json.loads(Path(client.download_artifacts(found.info.run_id, "isometry/step_0000.json")).read_text())
    assert len(spectrum["singular_values"]) == 8 * 256 and spectrum["summary"] == pytest.approx(hidden)
