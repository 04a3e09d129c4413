"""Experiment assignment is balanced (chi-square against the weights) and the global holdout is independent of it."""

from __future__ import annotations

from collections import Counter

import pytest
from scipy.stats import chi2_contingency, chisquare, kstest

from models.experiments import HOLDOUT, apply_global_holdout, arm_shares, assign_variant, in_global_holdout

CUSTOMERS = range(1, 30_001)
ALPHA = 0.001  # the hash is fixed, so these p-values are too: a failure means a real imbalance, not bad luck

EXPERIMENTS = [  # name, variants, holdout %, weights
    ("weekly-picks", ("A",), 10, None),
    ("subject-test", ("A", "B"), 10, (3, 1)),
    ("winback", ("A", "B", "C"), 20, (1, 1, 2)),
    ("birthday", ("gift", "no-gift"), 5, (1, 1)),
    ("replenishment", ("A", "B"), 0, (9, 1)),
]


def _p_value(observed: Counter[str], shares: dict[str, float]) -> float:
    arms = sorted(shares)
    total = sum(observed.values())
    counts = [observed.get(arm, 0) for arm in arms]
    expected = [shares[arm] * total for arm in arms]
    assert sum(counts) == total, f"arms outside {arms}: {observed}"
    return float(chisquare(counts, expected).pvalue)


@pytest.mark.parametrize(("name", "variants", "holdout", "weights"), EXPERIMENTS)
def test_arms_match_their_weights(name: str, variants: tuple[str, ...], holdout: int, weights: tuple | None) -> None:
    observed = Counter(assign_variant(name, cid, variants, holdout, weights) for cid in CUSTOMERS)
    shares = {arm: share for arm, share in arm_shares(variants, holdout, weights).items() if share > 0}
    assert _p_value(observed, shares) > ALPHA, observed
    if not holdout:
        assert HOLDOUT not in observed


def test_assignment_is_deterministic_and_differs_between_experiments() -> None:
    first = [assign_variant("subject-test", cid, ("A", "B"), 10) for cid in range(2000)]
    assert first == [assign_variant("subject-test", cid, ("A", "B"), 10) for cid in range(2000)]
    other = [assign_variant("other-test", cid, ("A", "B"), 10) for cid in range(2000)]
    assert sum(a != b for a, b in zip(first, other, strict=True)) > 500  # independent experiments, not one split


def test_two_experiments_are_independent_of_each_other() -> None:
    pairs = Counter(
        (assign_variant("subject-test", cid, ("A", "B"), 10, (3, 1)), assign_variant("winback", cid, ("A", "B"), 20))
        for cid in CUSTOMERS
    )
    rows, cols = sorted({a for a, _ in pairs}), sorted({b for _, b in pairs})
    table = [[pairs[(a, b)] for b in cols] for a in rows]
    assert chi2_contingency(table).pvalue > ALPHA


@pytest.mark.parametrize("percent", [1, 5, 12.5, 50])
def test_global_holdout_takes_its_share(percent: float) -> None:
    members = sum(in_global_holdout(cid, percent) for cid in CUSTOMERS)
    observed = Counter({"in": members, "out": len(CUSTOMERS) - members})
    assert _p_value(observed, {"in": percent / 100, "out": 1 - percent / 100}) > ALPHA


def test_global_holdout_edges_and_growth() -> None:
    assert not any(in_global_holdout(cid, 0) for cid in range(1000))
    assert all(in_global_holdout(cid, 100) for cid in range(1000))
    five = {cid for cid in CUSTOMERS if in_global_holdout(cid, 5)}
    ten = {cid for cid in CUSTOMERS if in_global_holdout(cid, 10)}
    assert five < ten  # raising the percentage only adds members; nobody leaves


def _independence_p_value(arms: dict[int, str], members: set[int]) -> float:
    """Chi-square test of the contingency table campaign arm × global-holdout membership."""
    counts = Counter((arm, cid in members) for cid, arm in arms.items())
    table = [[counts[(arm, flag)] for flag in (True, False)] for arm in sorted(set(arms.values()))]
    return float(chi2_contingency(table).pvalue)


@pytest.mark.parametrize(("name", "variants", "holdout", "weights"), EXPERIMENTS)
def test_global_holdout_is_independent_of_campaign_arms(
    name: str, variants: tuple[str, ...], holdout: int, weights: tuple | None
) -> None:
    arms = {cid: assign_variant(name, cid, variants, holdout, weights) for cid in CUSTOMERS}
    members = {cid for cid in CUSTOMERS if in_global_holdout(cid, 10)}
    assert _independence_p_value(arms, members) > ALPHA


def test_global_holdout_independence_holds_across_many_experiments() -> None:
    """One fixed hash could pass by luck: across 40 experiments the independence p-values must look uniform
    (a dependence would pile them up near 0)."""
    customers = range(1, 10_001)
    members = {cid for cid in customers if in_global_holdout(cid, 20)}
    p_values = [
        _independence_p_value(
            {cid: assign_variant(f"test-{i}", cid, ("A", "B"), 10, (3, 1)) for cid in customers}, members
        )
        for i in range(40)
    ]
    assert kstest(p_values, "uniform").pvalue > ALPHA
    assert min(p_values) > ALPHA / 40  # Bonferroni over the 40


@pytest.mark.parametrize(("name", "variants", "holdout", "weights"), EXPERIMENTS)
def test_planned_arms_with_the_global_holdout_match_the_expected_shares(
    name: str, variants: tuple[str, ...], holdout: int, weights: tuple | None
) -> None:
    percent = 5
    arms = {cid: assign_variant(name, cid, variants, holdout, weights) for cid in CUSTOMERS}
    planned = apply_global_holdout(arms, percent)
    shares = arm_shares(variants, holdout, weights, global_holdout_percent=percent)
    assert _p_value(Counter(planned.values()), shares) > ALPHA
    for cid, arm in planned.items():  # members are holdout; everybody else keeps the campaign's arm
        assert arm == (HOLDOUT if in_global_holdout(cid, percent) else arms[cid])


def test_no_global_holdout_changes_nothing() -> None:
    arms = {cid: assign_variant("weekly-picks", cid, ("A",), 10) for cid in range(500)}
    assert apply_global_holdout(arms, 0) == arms
