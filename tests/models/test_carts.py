"""Abandoned carts: logged-in carts of the last 72 hours whose items were not bought afterwards."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from sqlalchemy.engine import Engine

from models.carts import cart_window, find_abandoned_carts
from tests.models.builders import StoreBuilder, at

TODAY = date(2026, 3, 10)
UTC_ZONE = ZoneInfo("UTC")


@pytest.fixture
def store(sqlite_engine: Engine) -> StoreBuilder:
    return StoreBuilder(sqlite_engine)


def _found(store: StoreBuilder, today: date = TODAY, zone: ZoneInfo = UTC_ZONE) -> pd.DataFrame:
    return find_abandoned_carts(store.engine, today, zone)


def test_cart_without_purchase_is_abandoned_with_its_items(store: StoreBuilder) -> None:
    beans, mug = store.product("Kenya Nyeri"), store.product("Mug", consumable=False)
    customer = store.customer()
    store.event(customer, "add_to_cart", beans, at("2026-03-08", 10))
    store.event(customer, "begin_checkout", mug, at("2026-03-08", 10, 5))
    found = _found(store)
    assert found.to_dict("records") == [
        {
            "occurrence_key": f"abandoned_cart:{customer}:2026-03-08",
            "customer_id": customer,
            "due_on": TODAY,
            "payload": {
                "product_ids": [mug, beans],
                "skus": ["SKU-2", "SKU-1"],
                "cart_at": "2026-03-08T10:05:00+00:00",
            },
        }
    ]


def test_cart_followed_by_an_order_is_not_abandoned(store: StoreBuilder) -> None:
    beans = store.product()
    customer = store.customer()
    store.event(customer, "add_to_cart", beans, at("2026-03-08", 10))
    store.order(customer, at("2026-03-08", 10, 30), [(beans, 1)])
    assert _found(store).empty


def test_purchase_event_after_the_cart_also_counts_as_bought(store: StoreBuilder) -> None:
    beans = store.product()
    customer = store.customer()
    store.event(customer, "add_to_cart", beans, at("2026-03-08", 10))
    store.event(customer, "purchase", beans, at("2026-03-10", 8))  # bought this morning, before the run
    assert _found(store).empty


def test_purchase_before_the_cart_does_not_cancel_it(store: StoreBuilder) -> None:
    beans = store.product()
    customer = store.customer()
    store.order(customer, at("2026-03-07", 9), [(beans, 1)])
    store.event(customer, "add_to_cart", beans, at("2026-03-08", 10))
    assert len(_found(store)) == 1


def test_only_the_unbought_items_are_reminded(store: StoreBuilder) -> None:
    beans, grinder = store.product(), store.product(consumable=False)
    customer = store.customer()
    store.event(customer, "add_to_cart", grinder, at("2026-03-08", 9))
    store.event(customer, "add_to_cart", beans, at("2026-03-08", 10))
    store.order(customer, at("2026-03-08", 11), [(beans, 1)])
    found = _found(store)
    assert found["payload"].iloc[0]["product_ids"] == [grinder]
    assert found["payload"].iloc[0]["cart_at"] == "2026-03-08T10:00:00+00:00"  # the customer's last cart event


def test_buying_part_of_the_cart_later_does_not_make_a_new_moment(store: StoreBuilder) -> None:
    beans, grinder = store.product(), store.product(consumable=False)
    customer = store.customer()
    store.event(customer, "add_to_cart", grinder, at("2026-03-07", 9))
    store.event(customer, "add_to_cart", beans, at("2026-03-08", 10))
    first = _found(store, date(2026, 3, 9))
    store.order(customer, at("2026-03-09", 15), [(beans, 1)])
    second = _found(store, date(2026, 3, 10))
    assert first["occurrence_key"].tolist() == second["occurrence_key"].tolist()
    assert [p["product_ids"] for p in second["payload"]] == [[grinder]]


def test_anonymous_carts_and_views_are_ignored(store: StoreBuilder) -> None:
    beans = store.product()
    store.event(None, "add_to_cart", beans, at("2026-03-08", 10))
    store.event(store.customer(), "view_item", beans, at("2026-03-08", 10))
    assert _found(store).empty


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        (datetime(2026, 3, 6, 23, 59, tzinfo=UTC), False),  # older than 72 h before today's start
        (datetime(2026, 3, 7, 0, 0, tzinfo=UTC), True),
        (datetime(2026, 3, 9, 23, 59, tzinfo=UTC), True),
        (datetime(2026, 3, 10, 0, 0, tzinfo=UTC), False),  # today: judged by tomorrow's run
    ],
)
def test_window_is_the_72_hours_before_the_start_of_today(store: StoreBuilder, moment: datetime, inside: bool) -> None:
    beans = store.product()
    store.event(store.customer(), "add_to_cart", beans, moment)
    assert len(_found(store)) == int(inside)


def test_window_and_cart_day_follow_the_store_timezone(store: StoreBuilder) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    start, end = cart_window(TODAY, berlin)
    assert (start.astimezone(UTC), end.astimezone(UTC)) == (
        datetime(2026, 3, 6, 23, tzinfo=UTC),
        datetime(2026, 3, 9, 23, tzinfo=UTC),
    )
    beans = store.product()
    customer = store.customer()
    store.event(customer, "add_to_cart", beans, datetime(2026, 3, 8, 23, 30, tzinfo=UTC))  # Mar 9 in Berlin
    assert _found(store, zone=berlin)["occurrence_key"].tolist() == [f"abandoned_cart:{customer}:2026-03-09"]


def test_inactive_products_are_left_out(store: StoreBuilder) -> None:
    retired = store.product(active=False)
    store.event(store.customer(), "add_to_cart", retired, at("2026-03-08"))
    assert _found(store).empty


def test_next_day_run_keys_the_same_cart_the_same_way(store: StoreBuilder) -> None:
    beans = store.product()
    customer = store.customer()
    store.event(customer, "add_to_cart", beans, at("2026-03-08", 10))
    first = _found(store)["occurrence_key"].tolist()
    assert _found(store, date(2026, 3, 11))["occurrence_key"].tolist() == first
