"""Optuna internals (checked against optuna 4.9-5.1).

* ``Trial._trial_id`` and ``Study._storage``: a study's recovery writes a stale trial's state and attrs, and
  its heartbeat, through the storage by trial id (Optuna has no public call for another process's trial);
* ``BaseDistribution._contains``: whether a warm-start point lies inside a distribution.
"""

from __future__ import annotations

from typing import Any

import optuna


def trial_id(trial: optuna.Trial | optuna.trial.FrozenTrial) -> int:
    """The storage's id of ``trial`` (not its number)."""
    return int(trial._trial_id)


def study_storage(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage ``study`` reads and writes."""
    return study._storage


def distribution_contains(distribution: optuna.distributions.BaseDistribution, value: Any) -> bool:
    """Whether ``value`` (external representation) lies in ``distribution``; ValueError/TypeError when it
    cannot be represented."""
    return bool(distribution._contains(distribution.to_internal_repr(value)))
