"""The whole day with the store read from the Shopify Admin GraphQL API: a local stand-in that enforces the API's
contract holds the demo's sample store (filled from its Shopify exports by ``tests.peers.shopify_exports``); the CRM
and GA4 stay the demo's files. Two days run. The first loads the shop whole by bulk operations and gives the store a
file-based sync of the same export folder gives (profiles, consents, orders, lines, the day's trigger moments), apart
from the dirty rows the stand-in cannot hold; it sends the day's emails. Then the shop changes (a partial refund, an
email unsubscribe, a new order) and the next day's sync asks only for what changed: the database follows, and the
unsubscribed customer's email that day is suppressed.

The reader is built by the registry with its real ``time.sleep`` and ``time.monotonic``, and nothing in it is patched:
the stand-in keeps time with ``time.monotonic`` (its cost bucket refills as the reader waits) and finishes a bulk
operation at the first poll (``bulk_polls=1``; the reader polls after one second, so the first day waits three
seconds for its three operations).
"""

from __future__ import annotations

import time as clock
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from sqlalchemy import Engine, func, select

from models.consent import consent_states
from models.db import make_engine, upgrade
from models.schema import Consent, Customer, Identity, Message, Order, OrderLine, TriggerOccurrence
from sources.formats import CUSTOMERS_FILE, ORDERS_FILE, PRODUCTS_FILE
from tests.peers.shopify_admin import ShopifyAdmin, make_order, number_of, parse_iso
from tests.peers.shopify_exports import REPEATED, Filled, fill_from_exports

CUSTOMERS = 300
AS_OF = date(2026, 10, 15)
"""The sample store's day, fixed: the unsubscribe needs a subscribed customer with a moment the next day, which a
300-customer store has on some days only (on 2026-11-27 nobody, on 2026-10-15 two); the same day always gives the
same store and the same moments."""
SHOP = "bean-and-leaf.myshopify.com"
REFUND = "5.00"
COUNTED = {"customers": Customer, "orders": Order, "order_lines": OrderLine, "consents": Consent}
STORE_FILES = {"products": PRODUCTS_FILE, "customers": CUSTOMERS_FILE, "orders": ORDERS_FILE}


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {name: conn.execute(select(func.count()).select_from(model)).scalar_one()
                for name, model in COUNTED.items()}  # fmt: skip


def profile_keys(engine: Engine) -> dict[int, tuple[tuple[str, str], ...]]:
    """Profile id → the source records it unifies: what names a profile in two databases whose ids differ."""
    keys: dict[int, set[tuple[str, str]]] = {}
    with engine.connect() as conn:
        for customer, source, external in conn.execute(select(Identity.customer_id, Identity.source,
                                                              Identity.external_id)):  # fmt: skip
            keys.setdefault(customer, set()).add((source, external))
    return {customer: tuple(sorted(records)) for customer, records in keys.items()}


def store_snapshot(engine: Engine, day: date) -> dict[str, Counter[tuple[Any, ...]]]:
    """Profiles, consents, orders and lines with every profile id replaced by its source records; a consent dated
    by the sync itself (an undated denial: the sync's clock, after ``day`` began) counts as dated by the sync."""
    key = profile_keys(engine)
    began = datetime.combine(day, time())

    def when(moment: datetime | None) -> Any:
        return "by the sync" if moment is not None and moment.replace(tzinfo=None) >= began else moment

    profile = [c for c in Customer.__table__.columns if c.name not in ("id", "created_at", "updated_at")]  # type: ignore[attr-defined]
    order = [c for c in Order.__table__.columns if c.name not in ("id", "customer_id")]  # type: ignore[attr-defined]
    with engine.connect() as conn:
        return {
            "profiles": Counter((key.get(row[0]), *row[1:])
                                for row in conn.execute(select(Customer.__table__.c.id, *profile))),  # type: ignore[attr-defined]
            "consents": Counter((key.get(c), channel, source, state, when(at)) for c, channel, source, state, at in
                                conn.execute(select(Consent.customer_id, Consent.channel, Consent.source, Consent.state,
                                                    Consent.recorded_at))),
            "orders": Counter((key.get(row[0]), *row[1:])
                              for row in conn.execute(select(Order.__table__.c.customer_id, *order))),  # type: ignore[attr-defined]
            "lines": Counter(tuple(row) for row in conn.execute(
                select(Order.external_id, OrderLine.sku, OrderLine.name, OrderLine.quantity, OrderLine.price,
                       OrderLine.product_id).join(Order, Order.id == OrderLine.order_id))),
        }  # fmt: skip


def moments(engine: Engine, day: date, timezone: str, recorded: bool) -> dict[tuple[str, Any, date], int]:
    """(kind, profile's source records, due on) → customer: the trigger moments the database holds for ``day``
    (``recorded``), or those the detectors would find on ``day`` and no earlier run recorded (they only read)."""
    from models.triggers import DETECTORS

    key = profile_keys(engine)
    with engine.connect() as conn:
        rows = conn.execute(select(TriggerOccurrence.occurrence_key, TriggerOccurrence.kind,
                                   TriggerOccurrence.customer_id, TriggerOccurrence.due_on)).all()  # fmt: skip
    if recorded:
        return {(kind, key[customer], due): customer for _, kind, customer, due in rows}
    known = {row[0] for row in rows}
    found: dict[tuple[str, Any, date], int] = {}
    for kind, detect in DETECTORS.items():
        frame = detect(engine, day, ZoneInfo(timezone))
        for occurrence, customer, due in zip(frame["occurrence_key"], frame["customer_id"], frame["due_on"],
                                             strict=True):  # fmt: skip
            if occurrence not in known:
                found[(kind, key[int(customer)], pd.Timestamp(due).date())] = int(customer)
    return found


def shopify_customer(engine: Engine, record_id: str) -> int:
    """The profile a Shopify customer record (by its gid) belongs to."""
    with engine.connect() as conn:
        return conn.execute(select(Identity.customer_id).where(
            Identity.source == "shopify", Identity.external_id == str(number_of(record_id)))).scalar_one()  # fmt: skip


def change_the_shop(shop: ShopifyAdmin, engine: Engine, day: date, timezone: str) -> dict[str, Any]:
    """Between the two days, in the shop: an email unsubscribe (dated by its ``consentUpdatedAt``) of a subscribed
    customer whom the next day has a moment for and who may be emailed now; a partial refund of another customer's
    paid order and a new order of a third."""
    found = moments(engine, day, timezone, recorded=False)
    due = {customer for (_, _, due_on), customer in found.items() if due_on <= day}  # a birthday: a week ahead
    subscribed = {
        record_id: record for record_id, record in sorted(shop.records["customers"].items())
        if (record.get("emailMarketingConsent") or {}).get("marketingState") == "SUBSCRIBED" and record.get("email")
    }  # fmt: skip
    profiles = {record_id: shopify_customer(engine, record_id) for record_id in subscribed}
    with engine.connect() as conn:
        may_email = consent_states(conn, list(profiles.values()), "email")
    target = next((record_id for record_id, profile in profiles.items()
                   if profile in due and may_email.get(profile) == "granted"), None)  # fmt: skip
    assert target is not None, "nobody subscribed has a moment tomorrow: the unsubscribe would prove nothing"
    unsubscribed_at = shop.tick()

    def unsubscribe(customer: dict[str, Any]) -> None:
        customer["emailMarketingConsent"] = {"marketingState": "UNSUBSCRIBED", "marketingOptInLevel": "SINGLE_OPT_IN",
                                             "consentUpdatedAt": unsubscribed_at}  # fmt: skip

    shop.edit("customers", target, unsubscribe)
    target_email = str(subscribed[target]["email"]).strip().lower()
    paid = [order for order in shop.records["orders"].values()
            if order["displayFinancialStatus"] == "PAID" and order.get("email")
            and str(order["email"]).strip().lower() != target_email
            and float(order["totalPriceSet"]["shopMoney"]["amount"]) > 20]  # fmt: skip
    refunded = max(paid, key=lambda order: (order["createdAt"], order["id"]))
    shop.refund(refunded["id"], REFUND)
    buyer = next(record for record_id, record in subscribed.items()
                 if record_id != target and record["email"] != refunded["email"])  # fmt: skip
    product = next(record for _, record in sorted(shop.records["products"].items())
                   if record["status"] == "ACTIVE" and not record["isGiftCard"])  # fmt: skip
    variant = product["variants"][0]
    new_order = make_order(100_000, email=buyer["email"], lines=[(variant["sku"], 2, variant["price"])],
                           created_at=shop.tick())  # fmt: skip
    shop.put("orders", new_order)
    return {"unsubscribed": target, "unsubscribed_at": unsubscribed_at, "refunded": refunded["name"],
            "new_order": new_order["name"], "buyer": buyer["id"], "new_sku": variant["sku"]}  # fmt: skip


def file_sync(folder: Path, environment: dict[str, str], database: Path, day: date, timezone: str) -> dict[str, Any]:
    """``sync_store`` of the same export folder (with the same CRM and GA4 files) on a database of its own: its
    report, counts, snapshot and the trigger moments ``day`` would find there."""
    from models.sync import sync_store

    url = f"sqlite:///{database}"
    upgrade(url)
    engine = make_engine(url)
    try:
        report = sync_store(engine, folder, Path(environment["OMNICAST_CRM_URL"]),
                            Path(environment["OMNICAST_ANALYTICS_URL"]), run_id="file-sync")  # fmt: skip
        return {"report": report, "counts": counts(engine), "snapshot": store_snapshot(engine, day),
                "moments": set(moments(engine, day, timezone, recorded=False))}  # fmt: skip
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def api_days(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The demo's store in the Shopify stand-in; the daily flow on it, the shop changed, the next day's flow; and a
    file-based sync of the same exports beside it."""
    from flows.daily import daily_flow
    from flows.demo import DEMO_SEED, prepare_demo
    from flows.runtime import load_settings
    from sample import write_sample

    workdir = tmp_path_factory.mktemp("shopify-api-day")
    write_sample(workdir / "data", customers=CUSTOMERS, seed=DEMO_SEED, as_of=AS_OF)  # prepare_demo keeps it
    manifest, environment = prepare_demo(workdir, CUSTOMERS)
    folder = Path(environment["OMNICAST_STORE_URL"])
    first_day = date.fromisoformat(manifest["as_of"])
    second_day = first_day + timedelta(days=1)
    with ShopifyAdmin(clock=clock.monotonic, bulk_polls=1) as shop, pytest.MonkeyPatch.context() as patch:
        filled = fill_from_exports(shop, folder)
        for key, value in environment.items():
            patch.setenv(key, value)
        for name in ("STORE_PATH", "CRM_PATH", "ANALYTICS_PATH"):
            patch.delenv(f"OMNICAST_{name}", raising=False)
        patch.setenv("OMNICAST_STORE_URL", f"shopify://{SHOP}")
        patch.setenv("OMNICAST_STORE_TOKEN", shop.token)
        patch.setenv("OMNICAST_STORE_API_BASE", shop.url)
        timezone = load_settings().timezone
        first = daily_flow(as_of=first_day.isoformat())
        engine = make_engine(environment["OMNICAST_DATABASE_URL"])
        result: dict[str, Any] = {
            "first": first, "filled": filled, "engine": engine, "after_first": counts(engine),
            "snapshot": store_snapshot(engine, first_day), "moments": set(moments(engine, first_day, timezone, True)),
            "first_calls": list(shop.calls), "first_operations": list(shop.operations),
        }  # fmt: skip
        with engine.connect() as conn:
            result["last_message"] = conn.execute(select(func.max(Message.id))).scalar_one() or 0
        marks = first.sync.configured["store"].watermarks
        shop.stamp_after(datetime.combine(first_day, time(12), tzinfo=UTC))  # the shop changes after the first day
        result["changes"] = change_the_shop(shop, engine, second_day, timezone)
        result["changed"] = {resource: [record for record in shop.records[resource].values()
                                        if parse_iso(record["updatedAt"]) >= parse_iso(marks[resource])]
                             for resource in ("products", "customers", "orders")}  # fmt: skip
        result["second"] = daily_flow(as_of=second_day.isoformat())
        result["second_calls"] = shop.calls[len(result["first_calls"]) :]
        result["second_operations"] = shop.operations[len(result["first_operations"]) :]
    result["file"] = file_sync(folder, environment, workdir / "files.db", first_day, timezone)
    yield result
    engine.dispose()


@pytest.mark.e2e
def test_the_first_day_loads_the_shop_whole_by_bulk_operations_and_sends(api_days: dict[str, Any]) -> None:
    day, filled = api_days["first"], api_days["filled"]
    store = day.sync.configured["store"]
    assert (store.platform, store.mode, store.error) == ("shopify", "full", None)
    assert store.location.startswith(f"shopify://{SHOP} via http://127.0.0.1:")
    operations = api_days["first_operations"]
    assert [op.status for op in operations] == ["COMPLETED"] * 3
    assert [root.name for op in operations for root in op.selections] == ["products", "customers", "orders"]
    assert set(store.watermarks) == {"products", "customers", "orders"}
    assert not [call for call in api_days["first_calls"] if call.root and call.outcome != "ok"], "never throttled"
    assert store.read == filled.variants + filled.customers + filled.line_items and day.sync.reconciles
    assert day.sync.orders == filled.orders
    assert api_days["moments"] == api_days["file"]["moments"], "the file-based day would find the same moments"
    assert day.dispatch.channels["email"].sent > 20, "the day sent its triggered campaigns' emails"
    with api_days["engine"].connect() as conn:
        sent = conn.execute(select(func.count()).select_from(Message).where(
            Message.state == "sent", Message.id <= api_days["last_message"])).scalar_one()  # fmt: skip
    assert sent == day.dispatch.total_sent


@pytest.mark.e2e
def test_the_next_day_reads_only_the_changes_and_the_database_follows(api_days: dict[str, Any]) -> None:
    day, changes, changed = api_days["second"], api_days["changes"], api_days["changed"]
    store = day.sync.configured["store"]
    assert (store.platform, store.mode, store.error) == ("shopify", "incremental", None)
    assert not api_days["second_operations"], "no bulk operation on an incremental day"
    calls = api_days["second_calls"]
    assert [call.root for call in calls] == [("products",), ("customers",), ("orders",)], "one page each"
    rows = (sum(len(p["variants"]) for p in changed["products"]) + len(changed["customers"])
            + sum(len(o["lineItems"]) for o in changed["orders"]))  # fmt: skip
    assert store.read == rows <= 12, "the changed records and those at the watermarks (inclusive), nothing else"
    assert day.sync.orders == len(changed["orders"]) and day.sync.reconciles

    engine = api_days["engine"]
    with engine.connect() as conn:
        refunded = conn.execute(select(Order.financial_status, Order.refunded_amount).where(
            Order.external_id == changes["refunded"])).one()  # fmt: skip
        new_lines = conn.execute(select(OrderLine.sku, OrderLine.quantity).join(Order).where(
            Order.external_id == changes["new_order"])).all()  # fmt: skip
        buyer = conn.execute(select(Order.customer_id).where(Order.external_id == changes["new_order"])).scalar_one()
    assert tuple(refunded) == ("partially_refunded", float(REFUND))
    assert [tuple(line) for line in new_lines] == [(changes["new_sku"], 2)]
    assert buyer == shopify_customer(engine, changes["buyer"])

    customer = shopify_customer(engine, changes["unsubscribed"])
    with engine.connect() as conn:
        statement = conn.execute(select(Consent.state, Consent.recorded_at).where(
            Consent.customer_id == customer, Consent.channel == "email", Consent.source == "shopify")
        ).one()  # fmt: skip
        gate = consent_states(conn, [customer], "email")
        emails = conn.execute(select(Message.state, Message.reason).where(
            Message.customer_id == customer, Message.channel == "email",
            Message.id > api_days["last_message"])).all()  # fmt: skip
    assert statement.state == "denied" and gate == {customer: "denied"}
    assert statement.recorded_at.replace(tzinfo=None) == parse_iso(changes["unsubscribed_at"]).replace(tzinfo=None)
    assert emails, "the unsubscribed customer's moment planned no email today: the test lost its teeth"
    assert {tuple(email) for email in emails} == {("suppressed", "opted_out")}


@pytest.mark.e2e
def test_the_api_and_the_export_files_give_the_same_store(api_days: dict[str, Any]) -> None:
    filled: Filled = api_days["filled"]
    files, api = api_days["file"]["report"], api_days["first"].sync
    assert api_days["after_first"] == api_days["file"]["counts"]
    assert (api.profiles, api.consents, api.orders, api.order_lines) == (
        files.profiles, files.consents, files.orders, files.order_lines)  # fmt: skip
    for name, snapshot in api_days["snapshot"].items():
        assert snapshot == api_days["file"]["snapshot"][name], name
    api_counts = {count.source: count for count in api.sources}
    for count in files.sources:
        mine = api_counts[count.source]
        if count.source not in STORE_FILES:
            assert mine == count, count.source
            continue
        skipped = filled.skipped[STORE_FILES[count.source]]
        assert count.rows_read == mine.rows_read + skipped.total(), count.source
        assert count.rows_loaded == mine.rows_loaded, count.source
        assert count.duplicates_skipped == mine.duplicates_skipped + skipped[REPEATED], count.source
        assert count.rows_quarantined == mine.rows_quarantined + skipped.total() - skipped[REPEATED], count.source
        assert count.fields_quarantined == mine.fields_quarantined, count.source
    dirt = api_days["filled"].skipped
    assert dirt[PRODUCTS_FILE].total() >= 1 and dirt[CUSTOMERS_FILE].total() >= 2 and dirt[ORDERS_FILE].total() >= 5
