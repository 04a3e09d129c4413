"""Attribution rules on the hand-made ledger of measurement_fixture.py (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest
from sqlalchemy.engine import Engine

from models.attribution import attribute, exposures_of, load_attribution, window_orders
from models.errors import InputError
from tests.models.measurement_fixture import DAY, T0, build


def _credited(frame: pd.DataFrame) -> dict[int, tuple[str, str, int]]:
    """order id → (campaign, variant, message id)."""
    return {int(r.order_id): (r.campaign, r.variant, int(r.message_id)) for r in frame.itertuples()}


def test_last_click_and_last_delivery(engine: Engine) -> None:
    f = build(engine)
    click = load_attribution(engine, "click", 5)
    assert _credited(click.attributed) == {
        f.o[12]: ("picks", "B", f.m["c5-email"]),  # at the very time of the click: counts
        f.o[1]: ("picks", "A", f.m["c1-email"]),
        f.o[5]: ("picks", "B", f.m["c5-email"]),  # net of the refund, see below
        f.o[2]: ("winback", "A", f.m["c1-winback"]),  # the later click wins over the picks click
        f.o[3]: ("picks", "A", f.m["c2-email"]),  # exactly 5 days after c2's last click: still inside
    }
    revenue = dict(zip(click.attributed["order_id"], click.attributed["revenue"], strict=True))
    assert revenue[f.o[5]] == 30.0 and revenue[f.o[1]] == 30.0

    delivery = load_attribution(engine, "delivery", 5)
    assert _credited(delivery.attributed) == {
        f.o[12]: ("picks", "B", f.m["c5-email"]),
        f.o[1]: ("picks", "A", f.m["c1-inapp"]),  # email and card sent at the same moment: the higher id
        f.o[5]: ("picks", "B", f.m["c5-email"]),
        f.o[2]: ("winback", "A", f.m["c1-winback"]),
        # o3 is 5 days 3 h 59 min after c2's email went out: outside the window
    }


def test_orders_that_never_count(engine: Engine) -> None:
    f = build(engine)
    attribution = load_attribution(engine)
    ids = set(attribution.orders["order_id"])
    assert f.o[6] not in ids  # cancelled
    assert f.o[11] not in ids  # fully refunded
    assert {f.o[4], f.o[7], f.o[10]} <= ids  # counted orders without a touch: not attributed
    assert not {f.o[4], f.o[7], f.o[8], f.o[9], f.o[10]} & set(attribution.attributed["order_id"])


def test_a_shorter_window_drops_late_orders(engine: Engine) -> None:
    f = build(engine)
    one_day = load_attribution(engine, "click", 1)
    # o5 (T0+1d) is 23 h 30 min after c5's click: inside one day; o3 is 5 days after c2's last click: not.
    assert set(one_day.attributed["order_id"]) == {f.o[12], f.o[1], f.o[5], f.o[2]}


def test_exposures_follow_the_holdout_decision(engine: Engine) -> None:
    f = build(engine)
    exposures = load_attribution(engine).exposures
    arms = {(r.campaign, r.variant, int(r.customer_id)) for r in exposures.itertuples()}
    c = f.c
    assert arms == {
        ("picks", "A", c[1]),
        ("picks", "A", c[2]),
        ("picks", "A", c[3]),  # c3 capped: exposed, not sent
        ("picks", "B", c[5]),
        ("picks", "B", c[6]),
        ("picks", "holdout", c[7]),
        ("picks", "holdout", c[8]),  # c9 opted out before the holdout decision
        ("winback", "A", c[1]),
        ("winback", "holdout", c[7]),
    }
    row = exposures[(exposures["campaign"] == "picks") & (exposures["customer_id"] == c[1])].iloc[0]
    assert row["exposed_at"] == pd.Timestamp(T0) and bool(row["sent"])  # email + card: one exposure
    capped = exposures[exposures["customer_id"] == c[3]].iloc[0]
    assert not bool(capped["sent"]) and pd.isna(capped["sent_at"])


def test_holdout_orders_count_within_the_window_after_the_holdout_exposure(engine: Engine) -> None:
    f = build(engine)
    attribution = load_attribution(engine)
    window = window_orders(attribution.exposures, attribution.orders, timedelta(days=5))
    got = {(r.campaign, r.variant, int(r.order_id)) for r in window.itertuples()}
    assert got == {
        ("picks", "A", f.o[1]),
        ("picks", "A", f.o[2]),
        ("picks", "A", f.o[4]),  # o3 is T0+5d4h: outside
        ("picks", "B", f.o[12]),
        ("picks", "B", f.o[5]),
        ("picks", "holdout", f.o[7]),
        ("picks", "holdout", f.o[8]),  # o9 came before the exposure
        ("winback", "A", f.o[2]),
        ("winback", "holdout", f.o[8]),  # o7 (T0+1d) came before the winback exposure (T0+2d)
    }


def test_no_data_and_bad_parameters(engine: Engine) -> None:
    empty = load_attribution(engine)
    assert empty.attributed.empty and empty.exposures.empty and empty.orders.empty
    assert window_orders(empty.exposures, empty.orders, timedelta(days=5)).empty
    assert exposures_of(empty.ledger).empty
    with pytest.raises(InputError, match="choose one of: click, delivery"):
        load_attribution(engine, "first-touch")
    with pytest.raises(InputError, match="positive"):
        load_attribution(engine, "click", 0)


def test_attribute_ties_go_to_the_later_touch() -> None:
    at = pd.Timestamp(T0)
    orders = pd.DataFrame({"order_id": [1], "customer_id": [7], "ordered_at": [at + DAY], "revenue": [5.0]})
    touches = pd.DataFrame(
        {
            "message_id": [11, 12, 13],
            "customer_id": [7, 7, 8],
            "campaign": ["x", "y", "z"],
            "variant": ["A", "A", "A"],
            "touched_at": [at, at, at + DAY],
            "exposed_at": [at, at, at],
            "order_key": [2, 1, 3],  # message 11 has the higher key: the later of the two equal touches
        }
    )
    credited = attribute(orders, touches, timedelta(days=5))
    assert credited["message_id"].tolist() == [11]  # customer 8's touch is someone else's
