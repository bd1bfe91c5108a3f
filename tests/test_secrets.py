"""Secrets stay secret: a password in a store URL is shown as *** in what initsweep records and prints."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from conftest import client_for
from initsweep.protocol import Parent, redact
from initsweep.tracking import client as tracking
from initsweep.tracking import ui_view


@pytest.mark.parametrize(
    "text, shown",
    [
        ("postgresql://u:pw@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql+psycopg://optuna:p%40ss@10.0.0.1/optuna", "postgresql+psycopg://optuna:***@10.0.0.1/optuna"),
        ("storage=mysql://u:p@h/db uri=http://a:b@c:5000", "storage=mysql://u:***@h/db uri=http://a:***@c:5000"),
        ("sqlite:///mlruns/mlflow.db", "sqlite:///mlruns/mlflow.db"),
        ("https://user@host/x", "https://user@host/x"),
        ("mlruns/optuna/journal.log", "mlruns/optuna/journal.log"),
        ("postgresql://u:pa/ss@h/db", "postgresql://u:***@h/db"),  # a "/" in the password
        ("postgresql://u@h/db?sslmode=require&password=s3cret", "postgresql://u@h/db?sslmode=require&password=***"),
        ("postgresql://u@h/db?PASSWORD=s3cret&x=1", "postgresql://u@h/db?PASSWORD=***&x=1"),
        ("storage=postgresql://u@h/db?password=qu/ery7&x=1 n", "storage=postgresql://u@h/db?password=***&x=1 n"),
        ("postgresql\\://u@h/db?password=qu/ery7", "postgresql\\://u@h/db?password=***"),  # Hydra-escaped query
        ("tracking.uri=postgresql\\://u\\:pw@h/db", "tracking.uri=postgresql\\://u\\:***@h/db"),  # Hydra-escaped
        ("http://127.0.0.1:5001", "http://127.0.0.1:5001"),
    ],
)
def test_redact_hides_only_the_password(text: str, shown: str):
    assert redact(text) == shown


@pytest.mark.parametrize(
    "name",
    ["tracking.uri=postgresql\\://u\\:pw/7x@h\\:5432/db", "tracking.uri='postgresql://u@h/db?password=pw/7x'"],
)
def test_a_saved_view_named_after_a_url_keeps_no_password_and_stays_json(name: str):
    """A sweep's saved view is JSON named after its command line: Hydra's escape doubles in it, and a quoted query
    password is followed by the JSON string's closing quote (both leaked or broke the view)."""
    shown = redact(ui_view.envelope(f"initsweep: sweep {name}", {}))
    assert "pw/7x" not in shown
    assert json.loads(shown)["name"] == f"initsweep: sweep {redact(name)}"


def test_params_tags_and_run_names_never_store_a_password(tmp_path):
    client = tracking.connect(tracking.resolve_uri(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"))
    exp = tracking.experiment_id(client, "secrets")
    url = "postgresql://optuna:hunter2@db.lab:5432/optuna"
    logger = tracking.start_run(client, exp, f"tracking.uri={url}", {"overrides": f"x={url}"})
    logger.log_params({"optuna.storage": url})
    logger.set_tags({"storage": url})
    logger.end()
    run = client_for(tmp_path).get_run(logger.run_id)
    recorded = [run.info.run_name, *run.data.params.values(), *run.data.tags.values()]
    assert not [v for v in recorded if "hunter2" in v]
    assert run.data.params["optuna.storage"] == "postgresql://optuna:***@db.lab:5432/optuna"


def test_state_files_that_hold_store_uris_are_private(tmp_path):
    path = Parent("run", "exp", "postgresql://u:pw@h/db", "sweep").write(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_artifact_texts_and_the_local_metrics_file_never_hold_a_password(tmp_path):
    from initsweep.tracking import metrics_file

    client = tracking.connect(tracking.resolve_uri(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"))
    exp = tracking.experiment_id(client, "secrets")
    url = "postgresql\\://optuna\\:hunter2@db.lab/optuna"  # as Hydra writes the override into config.yaml
    logger = tracking.start_run(client, exp, "run", {})
    logger.log_text(f"tracking:\n  uri: {url}\n", "config.yaml")
    logger.end()
    config_yaml = client.download_artifacts(logger.run_id, "config.yaml", str(tmp_path))
    assert "hunter2" not in Path(config_yaml).read_text() and "optuna\\:***@" in Path(config_yaml).read_text()
    local = metrics_file.MetricsFile(tmp_path / "metrics.jsonl", "run", "postgresql://u:hunter2@h/db")
    local.end("FINISHED")
    assert "hunter2" not in (tmp_path / "metrics.jsonl").read_text()


def test_launch_lines_study_names_and_experiment_tags_never_show_a_password(caplog, tmp_path):
    """What the acceptance test (tests/test_secrets_acceptance.py) found leaking, each checked on its own:
    Hydra's per-job launch line, the study name derived from the overrides, an experiment tag (a sweep's view
    is named after its command line) and the comparison report."""
    import logging

    from initsweep.report.comparison import write_report
    from initsweep.report.console import quiet_libraries
    from initsweep.tuning.plan import default_study_name
    from initsweep.tuning.search_space import SearchSpace

    quiet_libraries()
    with caplog.at_level(logging.INFO):
        for launcher in ("hydra._internal.core_plugins.basic_launcher", "hydra_plugins.hydra_joblib_launcher._core"):
            logging.getLogger(launcher).info("\t#0 : init=zeros tracking.uri=postgresql\\://u\\:pa/ss@h\\:5432/db")
    assert len(caplog.messages) == 2 and not [m for m in caplog.messages if "pa/ss" in m]
    assert "u\\:***@h" in caplog.messages[0]

    name = default_study_name("initsweep", SearchSpace((), ("tracking.uri=postgresql://u:hunter2@h/db",)))
    assert name == "initsweep tracking.uri=postgresql://u:***@h/db"

    client = tracking.connect(tracking.resolve_uri(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"))
    exp = tracking.experiment_id(client, "secrets")
    tracking.set_experiment_tag(client, exp, "view", '{"name": "sweep tracking.uri=postgresql://u:hunter2@h/db"}')
    assert client.get_experiment(exp).tags["view"] == '{"name": "sweep tracking.uri=postgresql://u:***@h/db"}'

    logger = tracking.start_run(client, exp, "run", {})
    logger.end()
    run = client.get_run(logger.run_id)
    paths = write_report(client, [run], tmp_path / "report", "Report: sweep tracking.uri=postgresql://u:hunter2@h/db")
    assert "u:***@h" in paths[0].read_text() and not [p for p in paths[:2] if "hunter2" in p.read_text()]
