"""Replenishment moments: remind a customer a few days before a consumable runs out, once, and only if it will."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from sqlalchemy.engine import Engine

from models.replenishment import find_replenishments
from tests.models.builders import StoreBuilder, at

UTC_ZONE = ZoneInfo("UTC")


@pytest.fixture
def store(sqlite_engine: Engine) -> StoreBuilder:
    return StoreBuilder(sqlite_engine)


def _found(store: StoreBuilder, today: str, zone: ZoneInfo = UTC_ZONE) -> pd.DataFrame:
    return find_replenishments(store.engine, date.fromisoformat(today), zone)


def test_customer_about_to_run_out_gets_a_reminder_with_the_product(store: StoreBuilder) -> None:
    beans = store.product("Ethiopia Yirgacheffe 250 g", replenish_days=14)
    customer = store.customer()
    store.order(customer, at("2026-03-01"), [(beans, 2)])  # 2 bags × 14 days: runs out on Mar 29
    found = _found(store, "2026-03-25")
    assert found.to_dict("records") == [
        {
            "occurrence_key": f"replenishment:{customer}:SKU-1:2026-03-01",
            "customer_id": customer,
            "due_on": date(2026, 3, 25),
            "payload": {"product_id": beans, "sku": "SKU-1", "last_ordered": "2026-03-01", "runs_out_on": "2026-03-29"},
        }
    ]


@pytest.mark.parametrize(
    ("today", "due"),
    [("2026-03-09", False), ("2026-03-10", True), ("2026-03-15", True), ("2026-03-18", True), ("2026-03-19", False)],
)
def test_reminder_window_opens_five_days_before_and_closes_three_days_after(
    store: StoreBuilder, today: str, due: bool
) -> None:
    beans = store.product(replenish_days=14)
    store.order(store.customer(), at("2026-03-01"), [(beans, 1)])  # runs out on Mar 15
    assert len(_found(store, today)) == int(due)


def test_customer_who_reordered_gets_no_replenishment_reminder(store: StoreBuilder) -> None:
    beans = store.product(replenish_days=14)
    customer = store.customer()
    store.order(customer, at("2026-03-01"), [(beans, 1)])
    store.order(customer, at("2026-03-12"), [(beans, 1)])  # bought again before running out
    assert _found(store, "2026-03-14").empty  # the first bag would run out on Mar 15
    assert _found(store, "2026-03-24")["occurrence_key"].tolist() == [f"replenishment:{customer}:SKU-1:2026-03-12"]


def test_customer_who_switched_to_another_coffee_is_reminded_of_the_new_one_only(store: StoreBuilder) -> None:
    old = store.product(replenish_days=14, product_type="Coffee")
    new = store.product(replenish_days=20, product_type="Coffee")
    customer = store.customer()
    store.order(customer, at("2026-03-01"), [(old, 1)])
    store.order(customer, at("2026-03-05"), [(new, 1)])  # runs out on Mar 25
    assert _found(store, "2026-03-14").empty
    assert [p["product_id"] for p in _found(store, "2026-03-22")["payload"]] == [new]


def test_several_coffees_bought_together_make_one_reminder_for_the_one_lasting_longest(store: StoreBuilder) -> None:
    short, long = store.product(replenish_days=10), store.product(replenish_days=14)
    tea = store.product(replenish_days=12, product_type="Tea")
    customer = store.customer()
    store.order(customer, at("2026-03-01"), [(short, 1), (long, 1), (tea, 1)])  # out on Mar 11, 15 and 13
    reminded = {
        day: sorted(p["product_id"] for p in _found(store, day)["payload"]) for day in ("2026-03-08", "2026-03-12")
    }
    assert reminded == {"2026-03-08": [tea], "2026-03-12": sorted([long, tea])}


def test_another_product_type_does_not_silence_the_reminder(store: StoreBuilder) -> None:
    beans = store.product(replenish_days=14, product_type="Coffee")
    tea = store.product(replenish_days=30, product_type="Tea")
    customer = store.customer()
    store.order(customer, at("2026-03-01"), [(beans, 1)])
    store.order(customer, at("2026-03-05"), [(tea, 1)])
    assert [p["product_id"] for p in _found(store, "2026-03-14")["payload"]] == [beans]


def test_refunded_purchases_do_not_count(store: StoreBuilder) -> None:
    beans = store.product(replenish_days=14)
    customer = store.customer()
    store.order(customer, at("2026-03-01"), [(beans, 1)], financial_status="refunded", refunded_amount=10.0)
    store.order(customer, at("2026-03-01", 13), [(beans, 1)], cancelled_at=at("2026-03-02"))
    store.order(customer, at("2026-03-01", 14), [(beans, 1)], financial_status="paid", refunded_amount=10.0)
    assert _found(store, "2026-03-14").empty


def test_partially_refunded_order_still_counts(store: StoreBuilder) -> None:
    beans = store.product(replenish_days=14)
    store.order(
        store.customer(), at("2026-03-01"), [(beans, 2)], financial_status="partially_refunded", refunded_amount=5
    )
    assert len(_found(store, "2026-03-26")) == 1


def test_a_refunded_reorder_does_not_silence_the_reminder(store: StoreBuilder) -> None:
    beans = store.product(replenish_days=14)
    customer = store.customer()
    store.order(customer, at("2026-03-01"), [(beans, 1)])
    store.order(customer, at("2026-03-10"), [(beans, 1)], financial_status="refunded", refunded_amount=10.0)
    assert _found(store, "2026-03-14")["occurrence_key"].tolist() == [f"replenishment:{customer}:SKU-1:2026-03-01"]


def test_gear_inactive_products_and_products_without_a_rhythm_get_no_reminder(store: StoreBuilder) -> None:
    grinder = store.product(consumable=False, replenish_days=14, product_type="Gear")
    retired = store.product(replenish_days=14, active=False)
    unknown = store.product(replenish_days=None)
    store.order(store.customer(), at("2026-03-01"), [(grinder, 1), (retired, 1), (unknown, 1)])
    assert _found(store, "2026-03-14").empty


def test_same_day_orders_add_up(store: StoreBuilder) -> None:
    beans = store.product(replenish_days=10)
    customer = store.customer()
    store.order(customer, at("2026-03-01", 9), [(beans, 1)])
    store.order(customer, at("2026-03-01", 18), [(beans, 2)])
    assert _found(store, "2026-03-30")["payload"].iloc[0]["runs_out_on"] == "2026-03-31"


def test_order_date_is_the_store_local_day(store: StoreBuilder) -> None:
    beans = store.product(replenish_days=14)
    customer = store.customer()
    store.order(customer, at("2026-03-01", 23, 30), [(beans, 1)])  # Mar 2 in Berlin
    found = _found(store, "2026-03-14", ZoneInfo("Europe/Berlin"))
    assert found["payload"].iloc[0]["last_ordered"] == "2026-03-02"
    assert found["occurrence_key"].iloc[0].endswith(":2026-03-02")


def test_guest_orders_are_ignored(store: StoreBuilder) -> None:
    beans = store.product(replenish_days=14)
    store.order(None, at("2026-03-01"), [(beans, 1)])
    assert _found(store, "2026-03-14").empty
