"""Churn risk: an honest probability of still being active, and one win-back moment per lapse."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from models.churn import (
    ChurnParams,
    churn_scores,
    customer_summary,
    expected_purchases,
    expected_purchases_if_active,
    find_churn_risks,
    fit_params,
    lapsed_customers,
    load_orders,
    p_active,
    p_buy,
    second_purchase_day,
)
from tests.models.builders import StoreBuilder, at

TODAY = date(2026, 6, 1)
PARAMS = ChurnParams(r=1.0, alpha=30.0, a=1.0, b=4.0, fitted=False)


def _orders(customer_id: int, last: date, gap_days: int, count: int) -> list[tuple[int, date]]:
    return [(customer_id, last - timedelta(days=gap_days * n)) for n in range(count)]


def _transactions(*rows: list[tuple[int, date]]) -> pd.DataFrame:
    return pd.DataFrame([r for group in rows for r in group], columns=["customer_id", "date"])


def test_regular_customer_who_went_quiet_is_at_risk_and_a_recent_one_is_not() -> None:
    quiet = _orders(1, TODAY - timedelta(days=75), 30, 6)  # monthly buyer, silent for 75 days
    recent = _orders(2, TODAY - timedelta(days=10), 30, 6)
    scores = churn_scores(_transactions(quiet, recent), TODAY, PARAMS)
    assert lapsed_customers(scores)["customer_id"].tolist() == [1]
    by_customer = scores.set_index("customer_id")
    assert by_customer.loc[1, "p_active"] < by_customer.loc[2, "p_active"]
    assert 25 < by_customer.loc[1, "expected_gap_days"] < 35


def test_one_time_buyer_is_flagged_by_their_own_rule_only() -> None:
    scores = churn_scores(_transactions([(1, TODAY - timedelta(days=200))]), TODAY, PARAMS)
    assert lapsed_customers(scores).empty  # the repeat rule (2 × their gap) never applies to one order
    assert lapsed_customers(scores, one_time_after_days=120)["customer_id"].tolist() == [1]
    assert lapsed_customers(scores, one_time_after_days=250).empty
    assert scores["p_active"].iloc[0] < 0.5  # the score says they are probably gone
    gone = churn_scores(_transactions([(1, TODAY - timedelta(days=400))]), TODAY, PARAMS)
    assert lapsed_customers(gone, one_time_after_days=120).empty  # over a year: lost, not lapsing


def test_second_purchase_day_is_when_most_second_orders_have_come() -> None:
    """Settled cohort (first order over a year ago): 80 % of their second orders came within 40 days; a recent
    customer's quick second order does not count, nor does a second order after a year."""
    start = TODAY - timedelta(days=600)
    rows = [(n, start) for n in range(40)] + [(n, start + timedelta(days=10 + n)) for n in range(30)]
    rows += [(100, start), (100, start + timedelta(days=500)), (200, TODAY - timedelta(days=20)), (200, TODAY)]
    day, basis = second_purchase_day(pd.DataFrame(rows, columns=["customer_id", "date"]), TODAY, PARAMS)
    assert basis == "cohort" and day == pytest.approx(np.quantile(np.arange(10, 40), 0.8))
    few = pd.DataFrame(rows[:45], columns=["customer_id", "date"])
    assert second_purchase_day(few, TODAY, PARAMS) == (2 * 30.0, "model")  # 2 × α/r when too few to tell
    young = pd.DataFrame([(c, d + timedelta(days=400)) for c, d in rows], columns=["customer_id", "date"])
    day, basis = second_purchase_day(young, TODAY + timedelta(days=30), PARAMS)  # nobody's first year is over
    assert basis == "all repeaters" and day == pytest.approx(np.quantile(np.arange(10, 40), 0.8))


def test_customer_silent_for_a_year_counts_as_lost_not_lapsing() -> None:
    gone = _orders(1, TODAY - timedelta(days=400), 30, 6)
    assert lapsed_customers(churn_scores(_transactions(gone), TODAY, PARAMS)).empty


def test_same_day_orders_are_one_purchase_and_later_orders_are_ignored() -> None:
    rows = [(1, date(2026, 1, 1)), (1, date(2026, 1, 1)), (1, date(2026, 2, 1)), (1, date(2026, 7, 1))]
    summary = customer_summary(pd.DataFrame(rows, columns=["customer_id", "date"]), TODAY)
    assert summary[["orders", "frequency", "recency_days", "age_days"]].iloc[0].tolist() == [2, 1, 31, 151]


def test_expected_gap_shrinks_a_short_history_towards_the_population() -> None:
    scores = churn_scores(_transactions(_orders(1, TODAY, 4, 2)), TODAY, PARAMS)  # one 4-day gap
    assert 4 < scores["expected_gap_days"].iloc[0] < 30


@settings(max_examples=80, deadline=None)
@given(
    x=st.integers(0, 30),
    t_x=st.integers(0, 500),
    extra=st.integers(0, 500),
    more=st.integers(1, 200),
    params=st.builds(
        ChurnParams,
        r=st.floats(0.1, 5),
        alpha=st.floats(1, 200),
        a=st.floats(0.1, 5),
        b=st.floats(0.1, 20),
        fitted=st.just(True),
    ),
)
def test_p_active_is_a_probability_that_falls_as_silence_grows(x, t_x, extra, more, params) -> None:
    t_x = t_x if x > 0 else 0
    earlier, later = p_active(
        params, np.array([x, x]), np.array([t_x, t_x]), np.array([t_x + extra, t_x + extra + more])
    )
    assert 0.0 <= later <= earlier <= 1.0


_PARAMS = st.builds(
    ChurnParams,
    r=st.floats(0.05, 50),
    alpha=st.floats(1, 2000),
    a=st.floats(0.05, 5),
    b=st.floats(0.05, 20),
    fitted=st.just(True),
)


@settings(max_examples=80, deadline=None)
@given(x=st.integers(0, 40), t_x=st.integers(0, 700), extra=st.integers(0, 700), t=st.floats(1, 720), params=_PARAMS)
def test_p_buy_is_a_probability_below_p_active_that_grows_with_the_horizon(x, t_x, extra, t, params) -> None:
    t_x = t_x if x > 0 else 0
    x_, t_x_, age = np.array([x]), np.array([t_x]), np.array([t_x + extra])
    short, long = p_buy(params, x_, t_x_, age, t)[0], p_buy(params, x_, t_x_, age, 2 * t)[0]
    assert 0.0 <= short <= long <= p_active(params, x_, t_x_, age)[0] + 1e-12
    purchases = expected_purchases(params, x_, t_x_, age, t)[0]
    assert purchases >= short - 1e-9  # at least one purchase with probability p ⇒ at least p purchases expected
    assert expected_purchases_if_active(params, x_, age, t)[0] >= purchases - 1e-9


def _simulate_mbgnbd(
    params: ChurnParams, n: int, calibration: float, horizon: float, seed: int
) -> tuple[np.ndarray, ...]:
    """(x, t_x, T, purchases in the next ``horizon`` days) of ``n`` MBG/NBD customers whose first purchase is uniform
    over the calibration period, in continuous time."""
    rng = np.random.default_rng(seed)
    rate, drop = rng.gamma(params.r, 1 / params.alpha, n), rng.beta(params.a, params.b, n)
    first = rng.uniform(0, calibration, n)
    x, last, later = np.zeros(n), first.copy(), np.zeros(n)
    clock, active = first.copy(), rng.random(n) > drop
    while active.any():
        clock = np.where(active, clock + rng.exponential(1 / rate), clock)
        inside = active & (clock <= calibration)
        after = active & (clock > calibration) & (clock <= calibration + horizon)
        x += inside
        last = np.where(inside, clock, last)
        later += after
        active = (inside | after) & (rng.random(n) > drop)
    return x, last - first, calibration - first, later


@pytest.mark.parametrize(
    "params", [ChurnParams(0.525, 43.3, 0.891, 1.614, True), ChurnParams(2.0, 60.0, 1.5, 6.0, True)]
)
def test_p_buy_and_expected_purchases_match_a_monte_carlo_of_the_process(params: ChurnParams) -> None:
    """Averaged over customers, P(buy | history) is the share who do buy, and within every group of customers picked
    by their history too (by frequency and by recency) — what a conditional probability must satisfy."""
    x, t_x, age, later = _simulate_mbgnbd(params, 200_000, 365.0, 90.0, seed=5)
    buys, purchases = p_buy(params, x, t_x, age, 90.0), expected_purchases(params, x, t_x, age, 90.0)
    silence = age - t_x
    groups = [
        x == 0,
        x == 1,
        (x >= 2) & (x < 5),
        x >= 5,
        silence < 30,
        (silence >= 30) & (silence < 120),
        silence >= 120,
    ]
    for group in groups:
        assert buys[group].mean() == pytest.approx((later[group] > 0).mean(), rel=0.04, abs=0.002)
        assert purchases[group].mean() == pytest.approx(later[group].mean(), rel=0.04, abs=0.002)


def test_fit_tells_active_from_lapsed_customers_on_simulated_history() -> None:
    """Simulate buyers who drop out; score on the first 365 days; check against who buys in the next 180."""
    rng = np.random.default_rng(0)
    rows, active_later = [], []
    for customer in range(1500):
        rate, drop, t, bought = rng.gamma(2.0, 1 / 60.0), rng.beta(1.0, 3.0), 0.0, []
        alive = True
        while alive and t < 545:
            bought.append(t)
            alive = rng.random() > drop
            t += rng.exponential(1 / rate)
        rows += [(customer, date(2025, 1, 1) + timedelta(days=int(d))) for d in bought if d < 365]
        active_later.append(any(365 <= d < 545 for d in bought))
    params = fit_params(customer_summary(pd.DataFrame(rows, columns=["customer_id", "date"]), date(2026, 1, 1)))
    assert params.fitted
    scores = churn_scores(pd.DataFrame(rows, columns=["customer_id", "date"]), date(2026, 1, 1), params)
    truth = np.array(active_later)[scores["customer_id"].to_numpy()]
    assert _auc(scores["p_active"].to_numpy(), truth) > 0.7


def test_small_store_uses_the_stated_prior() -> None:
    summary = customer_summary(_transactions(_orders(1, TODAY, 20, 4), _orders(2, TODAY, 40, 3)), TODAY)
    params = fit_params(summary)
    assert not params.fitted
    assert (params.r, params.a, params.b) == (1.0, 1.0, 4.0)
    assert params.alpha == 30.0  # median of the two customers' gaps (20 and 40 days)


def test_churn_risk_occurrence_keys_the_lapse_by_last_order_date(sqlite_engine: Engine) -> None:
    store = StoreBuilder(sqlite_engine)
    beans = store.product(replenish_days=30)
    customer = store.customer()
    for day in ("2026-01-01", "2026-01-31", "2026-03-02"):
        store.order(customer, at(day), [(beans, 1)])
    store.order(customer, at("2026-04-20"), [(beans, 1)], cancelled_at=at("2026-04-21"))  # does not count
    found = find_churn_risks(sqlite_engine, date(2026, 5, 20), ZoneInfo("UTC"))
    assert found["occurrence_key"].tolist() == [f"churn_risk:{customer}:2026-03-02"]
    assert found["due_on"].tolist() == [date(2026, 5, 20)]
    payload = found["payload"].iloc[0]
    assert {"days_since_last_order", "expected_gap_days", "p_active"} <= set(payload)  # the keys templates know
    assert payload["orders"] == 3 and payload["value_rank"] == 1
    assert 0 < payload["p_buy_90d"] < payload["p_active"] and payload["expected_purchases_90d"] > 0
    assert payload["clv_365d"] > 0 and payload["value_at_risk"] > 0
    assert payload["days_since_last_order"] == 79
    assert isinstance(payload["expected_gap_days"], float) and 0 < payload["p_active"] < 1


def test_win_back_ranks_by_value_at_risk_and_covers_one_time_buyers(sqlite_engine: Engine) -> None:
    """Two lapsed monthly buyers alike but for their basket size: the bigger spender comes first. A one-time buyer
    silent past the store's second-purchase day is flagged too, with ``orders`` 1 for the template; one who bought
    last week is not."""
    store = StoreBuilder(sqlite_engine)
    beans = store.product(replenish_days=30)
    today = date(2026, 6, 10)  # 70 days after the monthly buyers' last orders; 151 after the one-time buyer's
    big, small, once, fresh = (store.customer() for _ in range(4))
    for n in range(4):
        store.order(big, at(date(2026, 1, 1) + timedelta(days=30 * n)), [(beans, 5)])
        store.order(small, at(date(2026, 1, 2) + timedelta(days=30 * n)), [(beans, 1)])
    store.order(once, at(date(2026, 1, 10)), [(beans, 2)])
    store.order(fresh, at(today - timedelta(days=7)), [(beans, 2)])
    found = find_churn_risks(sqlite_engine, today, ZoneInfo("UTC"))
    payloads = dict(zip(found["customer_id"], found["payload"], strict=True))
    assert set(payloads) == {big, small, once}
    assert (
        found["customer_id"].tolist()[:2] == [big, small] or payloads[once]["value_rank"] < payloads[big]["value_rank"]
    )
    assert payloads[big]["value_at_risk"] > payloads[small]["value_at_risk"]
    assert payloads[big]["value_rank"] < payloads[small]["value_rank"]
    ranks = [p["value_rank"] for p in found["payload"]]
    values = [p["value_at_risk"] for p in found["payload"]]
    assert ranks == list(range(1, len(found) + 1)) and values == sorted(values, reverse=True)
    assert payloads[once]["orders"] == 1 and payloads[big]["orders"] == 4
    assert found.set_index("customer_id").loc[once, "occurrence_key"] == f"churn_risk:{once}:2026-01-10"


def _next_period_rates(flagged: set, one_timers: set, buyers_later: set, not_yet_due: set) -> tuple[float, float]:
    def rate(group: set) -> float:
        return len(group & buyers_later) / len(group)

    return rate(flagged & one_timers), rate(not_yet_due & one_timers)


def test_one_time_rule_flags_buyers_less_likely_to_buy_next_period_on_simulated_history() -> None:
    """Time split of an MBG/NBD history (CDNOW's published fit, in days): one-time buyers the rule flags buy again
    in the next 180 days far less often than the one-time buyers it leaves for later."""
    params = ChurnParams(0.525, 43.3, 0.891, 1.614, True)
    rng = np.random.default_rng(11)
    rows, later = [], set()
    for customer in range(6000):
        rate, drop = rng.gamma(params.r, 1 / params.alpha), rng.beta(params.a, params.b)
        clock = rng.uniform(0, 730)
        while clock < 910:
            (
                rows.append((customer, date(2024, 1, 1) + timedelta(days=int(clock))))
                if clock < 730
                else later.add(customer)
            )
            if rng.random() < drop:
                break
            clock += rng.exponential(1 / rate)
    history = pd.DataFrame(rows, columns=["customer_id", "date"])
    split = date(2024, 1, 1) + timedelta(days=730)
    scores = churn_scores(history, split)
    day, basis = second_purchase_day(history, split, fit_params(customer_summary(history, split)))
    flagged = set(lapsed_customers(scores, one_time_after_days=day)["customer_id"])
    one_timers = set(scores.loc[scores["orders"] == 1, "customer_id"])
    not_yet_due = set(scores.loc[scores["days_since_last_order"] < day, "customer_id"])
    flagged_rate, waiting_rate = _next_period_rates(flagged, one_timers, later, not_yet_due)
    assert basis == "cohort" and len(flagged & one_timers) > 500
    assert flagged_rate < 0.6 * waiting_rate


def test_one_time_rule_flags_buyers_less_likely_to_buy_next_period_on_the_demo_store(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    """The same time split on the sample store, through the detector itself: detected on 2026-06-03, judged by the
    orders of the next six months."""
    from models.sync import sync_store
    from sample import write_sample

    write_sample(tmp_path / "store", customers=800, seed=7, as_of=date(2026, 12, 3))
    sync_store(sqlite_engine, tmp_path / "store" / "shopify", None, None, run_id="t", now=at("2026-12-03", 23))
    split, zone = date(2026, 6, 3), ZoneInfo("America/New_York")
    found = find_churn_risks(sqlite_engine, split, zone)
    orders = load_orders(sqlite_engine, zone)
    before = orders[orders["date"] <= pd.Timestamp(split)]
    after = orders[(orders["date"] > pd.Timestamp(split)) & (orders["date"] <= pd.Timestamp("2026-12-03"))]
    scores = churn_scores(before, split)
    day, _ = second_purchase_day(before, split, fit_params(customer_summary(before, split)))
    one_timers = set(scores.loc[scores["orders"] == 1, "customer_id"])
    not_yet_due = set(scores.loc[scores["days_since_last_order"] < day, "customer_id"])
    flagged = {c for c, p in zip(found["customer_id"], found["payload"], strict=True) if p["orders"] == 1}
    assert flagged and flagged <= one_timers
    flagged_rate, waiting_rate = _next_period_rates(flagged, one_timers, set(after["customer_id"]), not_yet_due)
    assert flagged_rate < 0.6 * waiting_rate


def test_no_orders_means_no_churn_risk(sqlite_engine: Engine) -> None:
    StoreBuilder(sqlite_engine).customer()
    assert find_churn_risks(sqlite_engine, TODAY, ZoneInfo("UTC")).empty


def _auc(scores: np.ndarray, truth: np.ndarray) -> float:
    ranks = pd.Series(scores).rank().to_numpy()
    positives = truth.sum()
    negatives = len(truth) - positives
    return float((ranks[truth].sum() - positives * (positives + 1) / 2) / (positives * negatives))


@pytest.mark.parametrize(
    ("orders", "since"), [(1, "since your first order"), (3, "since your last order"), (None, "since your last order")]
)
def test_win_back_copy_says_first_order_to_a_one_time_buyer(orders: int | None, since: str) -> None:
    """The payload's ``orders`` reaches the template: a one-time buyer's email and card say "since your first order";
    occurrences recorded before payloads had ``orders`` (None here) read as before."""
    from channels.render import CardRenderer, EmailRenderer
    from models.context import trigger_context
    from tests.channels.conftest import planner_context

    payload = {"days_since_last_order": 120, "orders": orders, "expected_gap_days": 40.0, "p_active": 0.2}
    if orders is None:
        del payload["orders"]
    context = {**planner_context(), "unsubscribe_url": "https://beanandleaf.example/u/T"}
    context["trigger"] = trigger_context("churn_risk", payload, TODAY, [])
    email = EmailRenderer().render("winback", context)
    assert f"It's been about 4 months {since}" in email.text
    assert f"It's been about 4 months {since}" in CardRenderer().render("winback", context)["body"]
