"""Orders and accounts (sample/orders.py, sample/customers.py, sample/orders_export.py): totals add up, guests,
replenishment cycles, seasons."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from tests.sample.reading import FILES, SHOPIFY_TIME, parses, read_csv, records, shopify_time


def test_customer_totals_add_up_from_their_orders(store: tuple[Path, dict]) -> None:
    out, _ = store
    header, rows = read_csv(out / FILES["orders"])
    firsts = {r[0]: dict(zip(header, r, strict=True)) for r in rows if len(r) == len(header) and r[0] and r[11]}
    spent: Counter = Counter()
    count: Counter = Counter()
    for order in firsts.values():
        count[order["Email"]] += 1
        if order["Financial Status"] in {"paid", "refunded", "partially_refunded"}:
            spent[order["Email"]] += Decimal(order["Total"]) - Decimal(order["Refunded Amount"] or "0")
    customers = [c for c in records(out, "customers") if c["Total Orders"] != "0"]
    assert len(customers) > 1500
    for customer in customers:
        assert int(customer["Total Orders"]) == count[customer["Email"]]
        assert Decimal(customer["Total Spent"]) == spent[customer["Email"]]


def test_guest_checkouts_use_emails_the_customers_export_lacks(store: tuple[Path, dict]) -> None:
    out, manifest = store
    known = {c["Email"].strip().lower() for c in records(out, "customers")}
    guests = {o["Email"] for o in records(out, "orders") if o["Email"].lower() not in known}
    assert len(guests) == manifest["expected"]["guest_emails"] > 0


def test_consumables_are_reordered_on_their_replenishment_cycle(store: tuple[Path, dict]) -> None:
    out, manifest = store
    replenish = "Replenishment days (product.metafields.custom.replenishment_days)"
    days = {p["Variant SKU"]: int(p[replenish]) for p in records(out, "products") if p[replenish]}
    buys = defaultdict(list)
    for row in records(out, "orders"):
        if (
            row["Name"]
            and row["Lineitem sku"] in days
            and row["Lineitem quantity"].isdigit()
            and parses(row["Created at"], SHOPIFY_TIME)
        ):
            when = shopify_time(row["Created at"])
            buys[row["Email"], row["Lineitem sku"]].append((when, int(row["Lineitem quantity"])))
    ratios, due = [], 0
    as_of = datetime(2026, 11, 27, tzinfo=UTC)
    for (_, sku), history in buys.items():
        history.sort()
        if len(history) < 3:
            continue
        ratios += [(b[0] - a[0]).days / (days[sku] * a[1]) for a, b in zip(history, history[1:], strict=False)]
        last, qty = history[-1]
        due += -14 <= (last + timedelta(days=days[sku] * qty) - as_of).days <= 7
    assert len(ratios) > 1000
    assert 0.9 < statistics.median(ratios) < 1.5
    assert due > 20
    assert manifest["expected"]["replenishment_due_next_7_days"] > 0


def test_seasonal_peak_in_november_and_december(store: tuple[Path, dict]) -> None:
    _, manifest = store
    months = manifest["expected"]["orders_by_month"]
    assert months["2025-12"] > 1.2 * months["2025-09"] and months["2025-12"] > months["2026-01"]
    assert months["2026-08"] < months["2026-06"]
