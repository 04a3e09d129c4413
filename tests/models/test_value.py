"""Customer value: the Gamma-Gamma spend model finds known parameters and predicts next purchases' value, CLV and
value at risk behave as amounts of money must."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.churn import ChurnParams
from models.value import SpendParams, clv, customer_scores, expected_spend, fit_spend, spend_summary, value_at_risk

CDNOW = SpendParams(p=6.25, q=3.74, gamma=15.44, fitted=True)  # FHL 2005's fit on CDNOW's repeat customers


def _simulate_spend(params: SpendParams, customers: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(purchases n, their mean value z̄, the value of the next purchase) from the Gamma-Gamma process."""
    rng = np.random.default_rng(seed)
    nu = rng.gamma(params.q, 1 / params.gamma, customers)
    n = 1 + rng.poisson(3, customers)
    mean = rng.gamma(params.p * n, 1 / nu) / n  # a sum of n Gamma(p, ν) values is Gamma(p n, ν)
    return n.astype(float), mean, rng.gamma(params.p, 1 / nu)


@pytest.mark.parametrize("seed", [0, 1])
def test_the_fit_recovers_known_parameters(seed: int) -> None:
    n, mean, _ = _simulate_spend(CDNOW, 20_000, seed)
    fitted = fit_spend(n, mean)
    assert fitted.fitted
    assert fitted.mean == pytest.approx(CDNOW.mean, rel=0.02)  # $35.08
    assert fitted.q == pytest.approx(CDNOW.q, rel=0.06)
    assert fitted.p == pytest.approx(CDNOW.p, rel=0.25)  # p and γ trade off: the least determined of the three


def test_the_fit_does_not_depend_on_the_currency_unit() -> None:
    n, mean, _ = _simulate_spend(CDNOW, 5_000, 3)
    dollars, cents = fit_spend(n, mean), fit_spend(n, mean * 100)
    assert cents.p == pytest.approx(dollars.p, rel=1e-3) and cents.q == pytest.approx(dollars.q, rel=1e-3)
    assert cents.gamma == pytest.approx(dollars.gamma * 100, rel=1e-3)


def test_expected_spend_predicts_the_next_purchase_within_every_group() -> None:
    """Averaged over customers with like histories (by purchases, by how much they spent), the conditional
    expectation is what their next purchases are worth: the shrinkage towards the population mean is right."""
    n, mean, following = _simulate_spend(CDNOW, 200_000, 5)
    predicted = expected_spend(CDNOW, n, mean)
    low, high = np.quantile(mean, [0.2, 0.8])
    for group in (n == 1, n == 2, n >= 5, mean < low, mean > high, (mean > high) & (n == 1)):
        assert predicted[group].mean() == pytest.approx(following[group].mean(), rel=0.02)
    assert expected_spend(CDNOW, np.array([0.0]), np.array([np.nan]))[0] == pytest.approx(CDNOW.mean)


def test_too_few_repeat_customers_use_the_stated_prior() -> None:
    prior = fit_spend(np.array([1, 2, 3, 1]), np.array([10.0, 20.0, 30.0, 40.0]))
    assert not prior.fitted and (prior.p, prior.q) == (4.0, 4.0)
    assert prior.mean == pytest.approx((10 + 40 + 90 + 40) / 7)  # the mean purchase value, weighted by purchases


def test_a_purchase_is_a_day_and_its_value_the_days_net_amount() -> None:
    rows = [("a", "2026-01-01", 10.0), ("a", "2026-01-01", 30.0), ("a", "2026-02-01", 20.0), ("a", "2026-09-01", 99.0)]
    summary = spend_summary(pd.DataFrame(rows, columns=["customer_id", "date", "amount"]), date(2026, 6, 1))
    assert summary[["purchases", "mean_spend"]].iloc[0].tolist() == [2, 30.0]


def test_customer_scores_give_every_score_and_work_without_amounts() -> None:
    start = date(2025, 1, 1)
    rows = [(c, start + timedelta(days=d)) for c in range(60) for d in range(0, 30 * (c % 5 + 1), 30)]
    frame = pd.DataFrame(rows, columns=["customer_id", "date"])
    scores = customer_scores(frame, date(2025, 12, 31))
    for column in ("p_active", "p_buy_90d", "expected_purchases_90d", "expected_spend", "clv_365d", "value_at_risk"):
        assert (scores[column] >= 0).all(), column
    assert scores["expected_spend"].to_numpy() == pytest.approx(1.0)  # no amounts: CLV counts purchases
    assert scores.attrs["churn_params"]["fitted"] and set(scores.attrs["spend_params"]) == {"p", "q", "gamma", "fitted"}


_CHURN = st.builds(
    ChurnParams,
    r=st.floats(0.05, 50),
    alpha=st.floats(1, 2000),
    a=st.floats(0.05, 5),
    b=st.floats(0.05, 20),
    fitted=st.just(True),
)


@settings(max_examples=60, deadline=None)
@given(
    churn=_CHURN,
    x=st.integers(0, 30),
    t_x=st.integers(0, 700),
    extra=st.integers(0, 700),
    spend=st.floats(0, 1000),
    horizon=st.floats(1, 730),
    discount=st.floats(0.01, 0.5),
)
def test_clv_and_value_at_risk_are_amounts_that_add_up(churn, x, t_x, extra, spend, horizon, discount) -> None:
    t_x = t_x if x > 0 else 0
    args = (churn, np.array([spend]), np.array([x]), np.array([t_x]), np.array([t_x + extra]))
    value, longer = clv(*args, horizon)[0], clv(*args, horizon * 2)[0]
    discounted = clv(*args, horizon, annual_discount=discount)[0]
    if_active, at_risk = clv(*args, horizon, if_active=True)[0], value_at_risk(*args, horizon)[0]
    assert 0.0 <= discounted <= value * (1 + 1e-9) + 1e-9 and value <= longer * (1 + 1e-9) + 1e-9
    assert 0.0 <= at_risk <= if_active * (1 + 1e-9) + 1e-9
    assert value + at_risk == pytest.approx(if_active, rel=1e-6, abs=1e-6)  # expected + expected loss = if active


def test_discounting_a_steady_buyer_matches_the_continuous_formula() -> None:
    """A customer certain to be active with a near-deterministic rate (r huge) buys t/gap times; discounted monthly
    at 10 % a year, a year of it is worth about ∫ e^(-δt) dt of it (steps discounted from their end: a bit less)."""
    churn = ChurnParams(r=1000, alpha=1000 * 30, a=1e-3, b=50, fitted=True)  # every 30 days, next to no drop-out
    args = (churn, np.array([50.0]), np.array([12.0]), np.array([365.0]), np.array([365.0]))
    assert clv(*args, 365.0)[0] == pytest.approx(50 * 365 / 30, rel=0.01)
    delta = np.log(1.10)
    continuous = 50 / 30 * 365 * (1 - np.exp(-delta)) / delta
    assert clv(*args, 365.0, annual_discount=0.10)[0] == pytest.approx(continuous, rel=0.01)
