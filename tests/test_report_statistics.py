"""Honest statistics of the comparison: binomial intervals for rates, median speeds with never = inf, grouping by the
resolved config, the latest run per seed, and paired per-seed differences."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from initsweep.report.comparison import (
    clopper_pearson,
    comparison,
    median_speed,
    paired_difference,
    paired_lines,
    paired_references,
)

BASE = {"init.name": "xavier_uniform", "trainer.epochs": "10", "trainer.lr": "0.01"}


def _run(name: str, job: int, seed: int, metrics: dict, start: int | None = None, **params: str) -> SimpleNamespace:
    return SimpleNamespace(
        info=SimpleNamespace(
            run_name=f"{name} seed={seed}", run_id=f"id{job}", status="FINISHED", start_time=start or job
        ),
        data=SimpleNamespace(
            tags={"initsweep.job_num": str(job)}, metrics=metrics, params={**BASE, "seed": str(seed), **params}
        ),
    )


def test_a_rate_gets_the_clopper_pearson_interval() -> None:
    rate = clopper_pearson(1, 3)
    assert (rate.low, rate.high) == pytest.approx((0.0084, 0.9057), abs=1e-4)  # the exact binomial interval
    assert rate.format("{:.2f}") == "1/3 [0.01, 0.91]"
    assert clopper_pearson(0, 3).low == 0.0 and clopper_pearson(3, 3).high == 1.0
    runs = [_run("init=a", i, i, {"val/collapsed": float(i == 0)}) for i in range(3)]
    (g,) = comparison(runs, keys=["val/collapsed"])
    assert g.estimates["val/collapsed"].format("{:.2f}") == "1/3 [0.01, 0.91]"


def test_speed_is_the_median_with_never_as_infinity() -> None:
    one_learns_fast = median_speed([2.0, math.nan, math.nan])
    all_learn = median_speed([4.0, 4.0, 4.0])
    assert one_learns_fast.format("{:.1f}") == "never (2/3)" and one_learns_fast.mean > all_learn.mean
    assert median_speed([2.0, 6.0, math.nan]).format("{:.1f}") == "6.0 (never: 1/3)"
    assert median_speed([2.0, 5.0]).format("{:.1f}") == "3.5"


def test_groups_follow_the_resolved_config_and_keep_the_latest_run_of_a_seed() -> None:
    runs = [
        _run("init=xavier_uniform", 0, 0, {"test/acc": 0.5}),
        _run("init=xavier_uniform trainer.epochs=10", 1, 1, {"test/acc": 0.7}),  # the overlay's own value
        _run("init=xavier_uniform trainer.threads=1", 2, 2, {"test/acc": 0.6}, **{"trainer.threads": "1"}),
        _run("init=xavier_uniform trainer.lr=0.1", 3, 0, {"test/acc": 0.2}, **{"trainer.lr": "0.1"}),
        _run("init=xavier_uniform", 4, 1, {"test/acc": 0.9}, start=-5),  # job 4 ran first: seed 1's earlier run
    ]
    stats = comparison(runs, keys=["test/acc"])
    assert [len(g.runs) for g in stats] == [4, 1]
    assert stats[0].estimates["test/acc"].mean == pytest.approx((0.5 + 0.7 + 0.6) / 3)  # seed 1: the later run
    assert stats[0].by_seed["1"].info.run_id == "id1"


def _pair(diffs: list[float]) -> tuple:
    a = [_run("init=a", i, i, {"test/acc": 0.5}, **{"init.name": "a"}) for i in range(len(diffs))]
    b = [_run("init=b", 10 + i, i, {"test/acc": 0.5 + d}, **{"init.name": "b"}) for i, d in enumerate(diffs)]
    return comparison(a + b, keys=["test/acc"])


def test_paired_differences_say_whether_they_are_resolved() -> None:
    est, verdict = paired_difference(*_pair([0.03, -0.01, 0.04]), "test/acc")
    assert est.n == 3 and est.mean == pytest.approx(0.02) and verdict == "not resolved"
    assert est.mean - est.half_width < 0 < est.mean + est.half_width
    stats = _pair([0.03, 0.02, 0.025])
    assert paired_difference(*stats, "test/acc")[1] == "resolved"
    (line,) = paired_lines(stats, keys=["test/acc"])
    assert line.startswith("- test/acc: init=b - init=a = +0.0250 (95% CI [") and line.endswith("resolved at 95%")


def test_each_configuration_pairs_with_the_ones_that_differ_from_it_in_one_key() -> None:
    configs = [(d, i) for d in ("2", "8") for i in ("orthogonal", "lecun")]
    runs = [
        _run(
            f"model.depth={d} init={i}",
            10 * j + s,
            s,
            {"test/acc": 0.5 + 0.1 * j},
            **{"model.depth": d, "init.name": i},
        )
        for j, (d, i) in enumerate(configs)
        for s in range(2)
    ]
    stats = comparison(runs, keys=["test/acc"])
    pairs = [(ref.group, g.group) for ref, g in paired_references(stats)]
    assert pairs == [
        ("model.depth=2 init=orthogonal", "model.depth=2 init=lecun"),
        ("model.depth=2 init=orthogonal", "model.depth=8 init=orthogonal"),
        ("model.depth=2 init=lecun", "model.depth=8 init=lecun"),
        ("model.depth=8 init=orthogonal", "model.depth=8 init=lecun"),  # init at depth 8, not across depths
    ]
    assert len(paired_lines(stats, keys=["test/acc"])) == 4
