"""Every number of the report, recomputed by hand on the ledger of measurement_fixture.py (SQLite and PostgreSQL)."""

from __future__ import annotations

import math
import statistics
from datetime import date

import pytest
from scipy import stats
from sqlalchemy import insert
from sqlalchemy.engine import Engine

from models.measurement import (
    ALL_VARIANTS,
    ArmMetrics,
    Measurement,
    measure,
    newcombe_difference,
    welch_difference,
    wilson_interval,
)
from models.schema import Message
from tests.models.measurement_fixture import T0, build

Z = 1.959963984540054


def wilson(x: int, n: int) -> tuple[float, float]:
    """Wilson (1927) written out again, independently of models.measurement."""
    p = x / n
    centre = (2 * n * p + Z**2) / (2 * (n + Z**2))
    half = Z * math.sqrt(Z**2 + 4 * n * p * (1 - p)) / (2 * (n + Z**2))
    return centre - half, centre + half


def newcombe(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float, float]:
    (l1, u1), (l2, u2) = wilson(x1, n1), wilson(x2, n2)
    p1, p2 = x1 / n1, x2 / n2
    d = p1 - p2
    return d, d - math.hypot(p1 - l1, u2 - p2), d + math.hypot(u1 - p1, p2 - l2)


def welch(a: list[float], b: list[float]) -> tuple[float, float, float]:
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    d = statistics.fmean(a) - statistics.fmean(b)
    return d, d - half, d + half


# ---------------------------------------------------------------- the intervals themselves


def test_wilson_and_newcombe_match_the_published_examples() -> None:
    # Newcombe (1998), Statistics in Medicine 17: 857–872 and 873–890.
    low, high = wilson_interval(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    lift = newcombe_difference(56, 70, 48, 80)
    assert (round(lift.low, 4), round(lift.high, 4)) == (0.0524, 0.3339)
    assert lift.difference == pytest.approx(0.2) and lift.baseline == pytest.approx(0.6)
    assert lift.relative == pytest.approx(0.2 / 0.6) and lift.significant
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert newcombe_difference(0, 10, 0, 10).low < 0 < newcombe_difference(0, 10, 0, 10).high


def test_welch_matches_scipy() -> None:
    a, b = [50.0, 0, 10, 0, 0, 35.5], [30.0, 0, 0, 12]
    lift = welch_difference(a, b)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (lift.low, lift.high) == pytest.approx((ci.low, ci.high))
    assert welch_difference([0, 0], [0, 0, 0]).low == 0.0  # constant samples: the point itself
    with pytest.raises(ValueError):
        welch_difference([1.0], [1.0, 2.0])


# ---------------------------------------------------------------- the report's numbers


def _arm(result: Measurement, campaign: str, variant: str) -> ArmMetrics:
    found = next(c for c in result.campaigns if c.name == campaign)
    if variant == ALL_VARIANTS:
        return found.total
    return next(arm for arm in found.arms if arm.variant == variant)


def _check(arm: ArmMetrics, **expected: float | int | None) -> None:
    for name, value in expected.items():
        got = getattr(arm, name)
        assert got == (pytest.approx(value) if isinstance(value, float) else value), f"{arm.variant} {name}: {got}"


def test_every_number_by_hand_last_click(engine: Engine) -> None:
    build(engine)
    result = measure(engine, model="click", window_days=5)
    assert [c.name for c in result.campaigns] == ["picks", "winback"]

    # picks A: recipients c1 c2 c3 (c4 opted out); sent c1 (email + card) and c2; clickers c1 c2.
    # Last click: o1 (c1, 30) and o3 (c2, 10); o2 went to winback. Window (T0 … T0+5d): o1 30, o2 20 (c1), o4 10 (c3).
    a = _arm(result, "picks", "A")
    _check(
        a,
        recipients=3,
        sent=2,
        messages_sent=3,
        delivered=2,
        clickers=2,
        ctr=1.0,
        conversions=2,
        orders=2,
        revenue=40.0,
        aov=20.0,
        conversion_rate=2 / 3,
        revenue_per_recipient=40 / 3,
        window_conversions=2,
        window_orders=3,
        window_revenue=60.0,
        window_conversion_rate=2 / 3,
        window_revenue_per_recipient=20.0,
    )
    # picks B: c5 c6 sent, c5 clicked; o12 (10, at the click) and o5 (40 − 10 refunded) by c5; c6's are cancelled
    # or refunded.
    b = _arm(result, "picks", "B")
    _check(
        b,
        recipients=2,
        sent=2,
        messages_sent=2,
        clickers=1,
        ctr=0.5,
        conversions=1,
        orders=2,
        revenue=40.0,
        aov=20.0,
        conversion_rate=0.5,
        revenue_per_recipient=20.0,
        window_conversions=1,
        window_orders=2,
        window_revenue=40.0,
    )
    # holdout: c7 c8 (c9 opted out); c7's o7 10 and o8 20 within the window; c8's o9 came before.
    h = _arm(result, "picks", "holdout")
    _check(
        h,
        recipients=2,
        sent=0,
        messages_sent=0,
        clickers=0,
        ctr=None,
        conversions=1,
        orders=2,
        revenue=30.0,
        aov=15.0,
        conversion_rate=0.5,
        revenue_per_recipient=15.0,
        window_conversions=1,
        window_orders=2,
        window_revenue=30.0,
        conversion_lift=None,
        revenue_lift=None,
    )
    total = _arm(result, "picks", ALL_VARIANTS)
    _check(
        total,
        recipients=5,
        sent=4,
        messages_sent=5,
        clickers=3,
        ctr=0.75,
        conversions=3,
        orders=4,
        revenue=80.0,
        aov=20.0,
        conversion_rate=0.6,
        revenue_per_recipient=16.0,
        window_conversions=3,
        window_orders=5,
        window_revenue=100.0,
        window_revenue_per_recipient=20.0,
    )

    # Lift vs holdout: window conversion rate (Newcombe) and window revenue per recipient (Welch).
    per_recipient = {"A": [50.0, 0.0, 10.0], "B": [40.0, 0.0], ALL_VARIANTS: [50.0, 0.0, 10.0, 40.0, 0.0]}
    converted = {"A": (2, 3), "B": (1, 2), ALL_VARIANTS: (3, 5)}
    for arm in (a, b, total):
        assert arm.conversion_lift is not None and arm.revenue_lift is not None
        x, n = converted[arm.variant]
        assert (arm.conversion_lift.difference, arm.conversion_lift.low, arm.conversion_lift.high) == pytest.approx(
            newcombe(x, n, 1, 2)
        )
        assert arm.conversion_lift.baseline == pytest.approx(0.5)
        assert (arm.revenue_lift.difference, arm.revenue_lift.low, arm.revenue_lift.high) == pytest.approx(
            welch(per_recipient[arm.variant], [30.0, 0.0])
        )
        assert arm.revenue_lift.baseline == pytest.approx(15.0)

    # winback: c1 (A, sent, clicked, o2 20) against c7 (holdout, o8 20 after its exposure; o7 before it).
    wa, wh = _arm(result, "winback", "A"), _arm(result, "winback", "holdout")
    _check(
        wa,
        recipients=1,
        sent=1,
        clickers=1,
        conversions=1,
        orders=1,
        revenue=20.0,
        window_conversions=1,
        window_revenue=20.0,
    )
    _check(wh, recipients=1, conversions=1, orders=1, revenue=20.0)
    assert wa.conversion_lift is not None and wa.conversion_lift.difference == 0.0
    assert (wa.conversion_lift.low, wa.conversion_lift.high) == pytest.approx(newcombe(1, 1, 1, 1)[1:])
    assert wa.revenue_lift is None  # one recipient a side: no variance to speak of


def test_every_number_by_hand_last_delivery(engine: Engine) -> None:
    build(engine)
    result = measure(engine, model="delivery", window_days=5)
    # o3 is more than 5 days after c2's email went out; everything else credited as with clicks.
    _check(
        _arm(result, "picks", "A"),
        conversions=1,
        orders=1,
        revenue=30.0,
        aov=30.0,
        revenue_per_recipient=10.0,
        window_revenue=60.0,
    )
    _check(_arm(result, "picks", "B"), conversions=1, orders=2, revenue=40.0)
    _check(_arm(result, "winback", "A"), conversions=1, orders=1, revenue=20.0)
    _check(_arm(result, "picks", "holdout"), conversions=1, orders=2, revenue=30.0)  # the model changes nothing here


def test_daily_series_by_hand(engine: Engine) -> None:
    build(engine)
    result = measure(engine, model="click", window_days=5)
    rows = {row["day"]: row for row in result.daily_rows()}
    assert list(rows) == [f"2026-11-{d}" for d in range(10, 16)]  # first send … last attributed order, no gaps
    assert rows["2026-11-10"] == {"day": "2026-11-10", "messages_sent": 5, "clicks": 4, "orders": 2, "revenue": 40.0}
    assert rows["2026-11-11"] == {"day": "2026-11-11", "messages_sent": 0, "clicks": 0, "orders": 1, "revenue": 30.0}
    assert rows["2026-11-12"] == {"day": "2026-11-12", "messages_sent": 1, "clicks": 1, "orders": 1, "revenue": 20.0}
    assert rows["2026-11-13"]["orders"] == rows["2026-11-14"]["orders"] == 0
    assert rows["2026-11-15"] == {"day": "2026-11-15", "messages_sent": 0, "clicks": 0, "orders": 1, "revenue": 10.0}
    # In New York, o1 (15:00 UTC) and o12 (10:30 UTC) are still on the 10th; the sends (10:01 UTC) too.
    ny = {d.day.isoformat(): d for d in measure(engine, timezone="America/New_York").daily}
    assert ny["2026-11-10"].messages_sent == 5 and ny["2026-11-10"].orders == 2


def test_filters_by_campaign_and_since(engine: Engine) -> None:
    build(engine)
    only = measure(engine, campaign="winback")
    assert [c.name for c in only.campaigns] == ["winback"]
    assert sum(d.messages_sent for d in only.daily) == 1 and sum(d.revenue for d in only.daily) == 20.0
    later = measure(engine, since=date(2026, 11, 11))  # picks was exposed on the 10th: only winback is left
    assert [c.name for c in later.campaigns] == ["winback"]
    assert measure(engine, campaign="nothing-sent-yet").campaigns == []


def test_rows_for_csv_and_artifacts(engine: Engine) -> None:
    build(engine)
    result = measure(engine)
    variants = result.variant_rows()
    assert [(r["campaign"], r["variant"]) for r in variants] == [
        ("picks", "A"),
        ("picks", "B"),
        ("picks", ALL_VARIANTS),
        ("picks", "holdout"),
        ("winback", "A"),
        ("winback", "holdout"),
    ]
    a = variants[0]
    assert a["ctr"] == 1.0 and a["revenue_per_recipient"] == round(40 / 3, 4)
    assert a["conversion_lift"] == round(2 / 3 - 0.5, 6)
    assert a["conversion_lift_low"] == round(newcombe(2, 3, 1, 2)[1], 6)
    assert variants[3]["conversion_lift"] is None
    campaigns = result.campaign_rows()
    assert campaigns[0]["campaign"] == "picks" and campaigns[0]["variants"] == "A, B"
    assert campaigns[0]["recipients"] == 5 and campaigns[0]["holdout_recipients"] == 2
    assert campaigns[0]["holdout_window_conversion_rate"] == 0.5
    assert campaigns[1]["variants"] == "A" and campaigns[1]["revenue"] == 20.0


def test_no_revenue_interval_against_a_holdout_where_nobody_bought(engine: Engine) -> None:
    f = build(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(Message.__table__),  # type: ignore[attr-defined]
            [
                {
                    "occurrence_key": "quiet:1",
                    "customer_id": f.c[n],
                    "channel": "email",
                    "campaign": "quiet",
                    "variant": variant,
                    "state": state,
                    "reason": reason,
                    "created_at": T0,
                    "updated_at": T0,
                    "sent_at": T0 if state == "sent" else None,
                }
                for n, variant, state, reason in [
                    (1, "A", "sent", None),
                    (3, "A", "sent", None),
                    (8, "holdout", "suppressed", "holdout"),
                    (9, "holdout", "suppressed", "holdout"),
                ]
            ],
        )
    quiet = _arm(measure(engine), "quiet", "A")
    assert quiet.window_revenue == 60.0  # c1's 50 and c3's 10 against a holdout (c8, c9) that bought nothing
    assert quiet.conversion_lift is not None and quiet.revenue_lift is None


def test_an_empty_ledger_measures_nothing(engine: Engine) -> None:
    result = measure(engine)
    assert result.campaigns == [] and result.daily == []
