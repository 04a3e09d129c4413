"""GA4 events (sample/events.py): one purchase per order with its total, the funnel, abandoned carts."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from tests.sample.reading import SHOPIFY_TIME, clean_events, parses, records, shopify_time


def test_each_order_has_one_purchase_event_with_its_total(store: tuple[Path, dict]) -> None:
    out, manifest = store
    totals = {o["Name"]: Decimal(o["Total"]) for o in records(out, "orders") if o["Name"] and o["Total"]}
    purchases = [e for e in clean_events(out) if e["event_name"] == "purchase"]
    assert sorted(e["ecommerce"]["transaction_id"] for e in purchases) == sorted(totals)
    assert all(
        Decimal(str(e["ecommerce"]["purchase_revenue"])) == totals[e["ecommerce"]["transaction_id"]] for e in purchases
    )
    assert len(totals) == manifest["expected"]["orders"]


def test_funnel_and_logged_in_vs_anonymous_events(store: tuple[Path, dict]) -> None:
    out, _ = store
    events = clean_events(out)
    names = Counter(e["event_name"] for e in events)
    assert names["view_item"] > names["add_to_cart"] > names["begin_checkout"] > names["purchase"] > 0
    ids = {c["Customer ID"].lstrip("'") for c in records(out, "customers")}
    logged_in = [e for e in events if e["user_id"] is not None]
    assert 0.2 < len(logged_in) / len(events) < 0.9
    assert {e["user_id"] for e in logged_in} <= ids


def test_logged_in_carts_abandoned_in_the_last_three_days(store: tuple[Path, dict]) -> None:
    out, manifest = store
    email_of = {c["Customer ID"].lstrip("'"): c["Email"] for c in records(out, "customers")}
    last_order: dict[str, float] = {}
    for row in records(out, "orders"):
        if row["Name"] and parses(row["Created at"], SHOPIFY_TIME):
            ts = shopify_time(row["Created at"]).timestamp()
            last_order[row["Email"]] = max(ts, last_order.get(row["Email"], 0))
    since = (datetime(2026, 11, 27, tzinfo=UTC) - timedelta(days=3)).timestamp() * 1_000_000
    latest_cart: dict[str, int] = {}
    for e in clean_events(out):
        if e["event_name"] == "add_to_cart" and e["user_id"] and e["event_timestamp"] >= since:
            latest_cart[e["user_id"]] = max(e["event_timestamp"], latest_cart.get(e["user_id"], 0))
    abandoned = [u for u, ts in latest_cart.items() if last_order.get(email_of[u], 0) + 10 < ts / 1_000_000]
    assert len(abandoned) == manifest["expected"]["recent_abandoned_carts"] > 10
