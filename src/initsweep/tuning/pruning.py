"""Pruner defaults that suit the study's length, and the rule that a trial is never pruned at its last epoch.

Optuna's own defaults judge a trial from its first report: MedianPruner(n_startup_trials=5, n_warmup_steps=0)
compares epoch 1 of a new trial with epoch 1 of the complete ones. Early epochs rank learning speed, not the
final value: a std near the best (0.076 in a 5-epoch ``normal_std`` study) starts slower than its neighbours
and was pruned at epoch 1. In a resumed study the earlier invocation's complete trials already exceed
n_startup_trials, so every new trial faces that epoch-1 median at once (all 8 new trials pruned at epoch 1).
The defaults here add a warm-up in epochs, derived from ``trainer.epochs``. Pure functions, no Optuna import.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

STARTUP_TRIALS = 5  # complete trials of the whole study before any pruning (Optuna's default, kept)
PERCENTILE_PRUNERS = ("median", "percentile")
RESOURCE_PRUNERS = ("successive_halving", "hyperband")


def warmup_epochs(epochs: int) -> int:
    """Epochs a trial trains before it may be judged: a third of ``epochs``, rounded up, at least 1
    (5 -> 2, 20 -> 7, 30 -> 10)."""
    return max(1, -(-int(epochs) // 3))


def default_pruner_kwargs(pruner: Any, epochs: int | None) -> dict[str, Any]:
    """The kwargs initsweep gives a pruner named ``pruner`` for trials of ``epochs`` epochs (None: the
    epochs vary per trial, so only the trial count is set). The first epoch a trial can be pruned at is
    ``warmup_epochs(epochs) + 1``:

    * median, percentile: n_startup_trials=5 (counted over the whole study's COMPLETE trials, a resumed
      study's earlier ones included), n_min_trials=5 (complete trials that reported the epoch judged),
      n_warmup_steps = the first prunable epoch (Optuna prunes from ``step == n_warmup_steps``);
    * successive_halving: min_resource = the first prunable epoch (its first rung);
    * hyperband: the same min_resource, max_resource = ``epochs``;
    * threshold, none, a ``_target_`` node: nothing.

    A trial is never pruned at its last epoch either way (:func:`may_prune`).
    """
    if not isinstance(pruner, str):
        return {}
    first = None if epochs is None else warmup_epochs(epochs) + 1
    if pruner in PERCENTILE_PRUNERS:
        out: dict[str, Any] = {"n_startup_trials": STARTUP_TRIALS, "n_min_trials": STARTUP_TRIALS}
        return out if first is None else {**out, "n_warmup_steps": first}
    if pruner in RESOURCE_PRUNERS and first is not None and epochs is not None:
        out = {"min_resource": min(first, int(epochs))}
        return {**out, "max_resource": int(epochs)} if pruner == "hyperband" else out
    return {}


def pruner_kwargs_for(pruner: Any, given: Mapping[str, Any], epochs: int | None) -> dict[str, Any]:
    """:func:`default_pruner_kwargs` with the user's ``given`` kwargs on top: given keys always win. A given
    n_startup_trials also sets the default n_min_trials (at least 1), so that a smaller startup prunes sooner."""
    out = {**default_pruner_kwargs(pruner, epochs), **given}
    if "n_min_trials" in out and "n_min_trials" not in given and "n_startup_trials" in given:
        out["n_min_trials"] = max(1, int(given["n_startup_trials"]))
    return out


def may_prune(epoch: int, last_epoch: int | None) -> bool:
    """Whether the pruner is asked at ``epoch``: never at the last epoch (or after it), where the trial has
    spent all its cost and pruning would only discard its finished value. ``last_epoch`` None: always."""
    return last_epoch is None or epoch < last_epoch


def describe(kwargs: Mapping[str, Any]) -> str:
    """``(k=v, ...)`` for the study's start line, or nothing for no kwargs."""
    return "(" + ", ".join(f"{k}={v}" for k, v in kwargs.items()) + ")" if kwargs else ""
