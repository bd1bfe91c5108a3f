"""Best-trial checkpoints: a run's best-validation weights as an MLflow artifact, and the model back from it.

A job saves ``checkpoint/model_state_dict.pt`` (``torch.save`` of a dict: the ``state_dict`` at the epoch of
the best val accuracy, the data's ``input_shape`` and ``num_classes``, that ``epoch``) when
``tracking.checkpoint`` says so: ``auto`` (the default) for the trials of an Optuna study, ``best`` for every
run, ``none`` never. The study tags the run of its best trial ``optuna.best=true``, so::

    from initsweep.tracking.checkpoint import load_best
    model = load_best()  # the latest study's best trial, with its weights at its best val accuracy
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from pydantic import ValidationError

from initsweep.core.config import ConfigError, ModelConfig
from initsweep.core.models import build_model
from initsweep.protocol import Tag
from initsweep.tracking.run_logger import RunLogger

ARTIFACT_DIR = "checkpoint"
FILE_NAME = "model_state_dict.pt"
ARTIFACT = f"{ARTIFACT_DIR}/{FILE_NAME}"


def wanted(setting: str, in_study: bool) -> bool:
    """Whether a run saves its weights: ``best`` always, ``auto`` in a study's trials, ``none`` never."""
    return setting == "best" or (setting == "auto" and in_study)


def save(
    logger: RunLogger,
    model: torch.nn.Module,
    best_state: dict[str, torch.Tensor] | None,
    best_epoch: int | None,
    input_shape: tuple[int, ...],
    num_classes: int,
) -> None:
    """Log the weights ``best_state`` (the model's current ones when None) as ``checkpoint/model_state_dict.pt``
    and tag the run with that artifact path."""
    state = best_state if best_state is not None else model.state_dict()
    payload = {
        "state_dict": {k: v.detach().cpu() for k, v in state.items()},
        "input_shape": list(input_shape),
        "num_classes": int(num_classes),
        "epoch": best_epoch,
    }
    path = Path(tempfile.mkdtemp(prefix="initsweep-ckpt-")) / FILE_NAME
    torch.save(payload, path)
    logger.move_artifact(path, ARTIFACT_DIR)  # then removed; the tracking writer's logger does not wait
    logger.set_tags({Tag.CHECKPOINT: ARTIFACT})


def load_model(run_id: str, tracking_uri: str | None = None) -> torch.nn.Module:
    """The model of run ``run_id`` (built from its ``config.yaml`` artifact) with its checkpointed weights.
    Imports the module its ``model._target_`` names (and no other ``_target_`` of the run)."""
    from initsweep.tracking import client as tracking  # MLflow: only to read runs back

    client = tracking.connect(tracking.resolve_uri(tracking_uri))
    with tempfile.TemporaryDirectory(prefix="initsweep-load-") as tmp:
        config_path = client.download_artifacts(run_id, "config.yaml", tmp)
        weights_path = client.download_artifacts(run_id, ARTIFACT, tmp)
        raw: Any = OmegaConf.to_container(OmegaConf.load(config_path), resolve=True)
        payload = torch.load(weights_path, map_location="cpu", weights_only=True)
    # Only the model section: building the model imports its ``model._target_`` (that is what was asked
    # for); the run's data and init targets are never imported to read it back.
    try:
        model_config = ModelConfig.model_validate(raw["model"])
    except (KeyError, TypeError, ValidationError) as e:
        raise ConfigError(f"run {run_id}: its config.yaml has no usable model section ({e})") from None
    model = build_model(model_config, tuple(payload["input_shape"]), payload["num_classes"])
    model.load_state_dict(payload["state_dict"])
    return model.eval()


def best_run_id(study_name: str | None = None, tracking_uri: str | None = None) -> str:
    """The run of the best trial (tag ``optuna.best=true``) of ``study_name``, or of the latest study; a
    Pareto front's first trial. LookupError when there is none."""
    from initsweep.tracking import client as tracking  # MLflow: only to read runs back

    client = tracking.connect(tracking.resolve_uri(tracking_uri))
    exp_ids = [e.experiment_id for e in client.search_experiments()]
    tagged = client.search_runs(
        exp_ids, filter_string=f"tags.`{Tag.BEST}` = 'true'", order_by=["attributes.start_time DESC"]
    )
    runs = [r for r in tagged if study_name is None or r.data.tags.get(Tag.STUDY_NAME) == study_name]
    if not runs:
        raise LookupError(f"no best trial tagged {Tag.BEST}=true" + (f" in study {study_name!r}" if study_name else ""))
    latest = runs[0].data.tags.get(Tag.STUDY_NAME)
    of_latest = [r for r in runs if r.data.tags.get(Tag.STUDY_NAME) == latest]
    return min(of_latest, key=lambda r: int(r.data.tags.get(Tag.TRIAL_NUMBER, 0))).info.run_id


def load_best(study_name: str | None = None, tracking_uri: str | None = None) -> torch.nn.Module:
    """The best trial's model of ``study_name`` (default: the latest study), with its checkpointed weights."""
    return load_model(best_run_id(study_name, tracking_uri), tracking_uri)
