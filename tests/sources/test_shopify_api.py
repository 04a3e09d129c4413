"""The Shopify Admin API reader against a local stand-in that enforces the API's contract (tests/peers/shopify_admin).

No test sleeps: the reader sleeps on a ``ManualClock`` that the stand-in's cost bucket also refills by, so a wait is
exactly as long as the reader asked for.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from sources.base import ReadContext, SourceConfig, SourceRead, SourceRefused
from sources.shopify import read_customers, read_products
from sources.shopify_api import API_VERSION, MAX_RETRIES, NESTED_PAGE, WAIT_MARGIN, ShopifyApi
from sources.validate import ROW, Intake
from tests.peers.http_peer import Drop
from tests.peers.shopify_admin import (
    ManualClock,
    Reply,
    ShopifyAdmin,
    gid,
    make_customer,
    make_order,
    make_product,
    number_of,
)

TOKEN = "shpat_test_token"
SHOP = "shopify://demo-roasters.myshopify.com"
NOW = datetime(2026, 6, 1, tzinfo=UTC)
OLD = "2020-01-01T00:00:00Z"
"""A watermark older than every record: an incremental read of everything (paged, not bulk)."""


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def peer(clock: ManualClock) -> Iterator[ShopifyAdmin]:
    with ShopifyAdmin(token=TOKEN, clock=clock) as server:
        yield server


def config(peer: ShopifyAdmin, *, token: str | None = TOKEN, url: str = SHOP) -> SourceConfig:
    return SourceConfig("store", url, "OMNICAST_STORE_URL", token=token, api_base=peer.url)


def reader(peer: ShopifyAdmin, clock: ManualClock, **options: Any) -> ShopifyApi:
    return ShopifyApi(config(peer, **options), sleep=clock.sleep, clock=clock, jitter=lambda: 0.0)


def context(watermarks: dict[str, str] | None = None, skus: set[str] | None = None) -> ReadContext:
    return ReadContext(known_skus=skus or set(), default_country="US", now=NOW, watermarks=dict(watermarks or {}))


def stock(peer: ShopifyAdmin, products: int = 12, customers: int = 40, orders: int = 30) -> None:
    """A small store: some products with several variants (one past a nested page), orders with several lines."""
    peer.put("products", *[make_product(n, variants=1 + n % 3) for n in range(products)])
    peer.put("products", make_product(products, variants=NESTED_PAGE + 3))
    peer.put("customers", *[make_customer(n) for n in range(customers)])
    peer.put("orders", *[
        make_order(n, email=f"customer{n % customers}@example.com",
                   lines=[(f"SKU-{(n + k) % products:04d}", 1 + k, "14.50") for k in range(1 + n % 3)])
        for n in range(orders)
    ])  # fmt: skip
    peer.put(
        "orders",
        make_order(
            orders,
            email="big@example.com",
            lines=[(f"SKU-{k % products:04d}", 1, "9.00") for k in range(NESTED_PAGE + 2)],
        ),
    )


def held(peer: ShopifyAdmin) -> dict[str, Any]:
    """What the stand-in holds, in the terms of the frames."""
    products, customers, orders = (list(peer.records[name].values()) for name in ("products", "customers", "orders"))
    return {
        "skus": sorted(v["sku"] for p in products for v in p["variants"]),
        "customers": sorted(str(number_of(c["id"])) for c in customers),
        "orders": sorted(o["name"] for o in orders),
        "lines": sorted((o["name"], li["sku"], li["quantity"]) for o in orders for li in o["lineItems"]),
        "watermarks": {name: max(r["updatedAt"] for r in peer.records[name].values())
                       for name in ("products", "customers", "orders")},
    }  # fmt: skip


def frames_of(read: SourceRead) -> dict[str, Any]:
    lines = read.frames["lines"]
    return {
        "skus": sorted(read.frames["products"]["sku"]),
        "customers": sorted(read.frames["customers"]["external_id"]),
        "orders": sorted(read.frames["orders"]["external_id"]),
        "lines": sorted(zip(lines["order_external_id"], lines["sku"], lines["quantity"].astype(int), strict=True)),
        "watermarks": read.watermarks,
    }


# --- first load --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("grouped", [True, False], ids=["children-after-parent", "children-at-the-end"])
def test_first_load_by_bulk_operations_reads_what_the_shop_holds(
    peer: ShopifyAdmin, clock: ManualClock, grouped: bool
) -> None:
    stock(peer)
    peer.bulk_grouped = grouped
    api = reader(peer, clock)
    read = api.read(context())
    assert read.error is None and not read.incremental
    assert frames_of(read) == held(peer)
    assert all(i.rows_quarantined == 0 and i.fields_quarantined == 0 for i in read.intakes.values())
    assert [i.file for i in read.intakes.values()] == ["shopify:products", "shopify:customers", "shopify:orders"]
    assert len(peer.operations) == 3 and all(op.status == "COMPLETED" for op in peer.operations)
    assert peer.list_calls() == []  # no page queries: the first load is the bulk operations' alone
    downloads = [c for c in peer.calls if c.method == "GET"]
    assert len(downloads) == 3 and all("x-shopify-access-token" not in c.headers for c in downloads)
    assert all(c.path == f"/admin/api/{API_VERSION}/graphql.json" for c in peer.graphql_calls())
    assert api.stats.bulk_operations == 3
    # polls wait between them, on the injected clock
    assert clock.sleeps and all(wait >= 1.0 for wait in clock.sleeps)


@pytest.mark.parametrize(
    ("code", "fix"),
    [
        ("INTERNAL_SERVER_ERROR", "run the sync again later"),
        ("ACCESS_DENIED", "set OMNICAST_STORE_TOKEN to the Admin API"),
    ],
)
def test_a_failed_bulk_operation_refuses_the_source_with_its_error_code(
    peer: ShopifyAdmin, clock: ManualClock, code: str, fix: str
) -> None:
    stock(peer)
    peer.bulk_error = code
    with pytest.raises(SourceRefused, match=rf"^OMNICAST_STORE_URL .*FAILED \({code}\) — {fix}"):
        reader(peer, clock).read(context())


def test_a_first_load_the_network_breaks_off_keeps_what_completed(peer: ShopifyAdmin, clock: ManualClock) -> None:
    stock(peer)
    peer.script(*[None] * 4, *[Reply(503)] * (MAX_RETRIES + 1))  # products' operation: run, 2 polls, download
    read = reader(peer, clock).read(context())
    assert read.error is not None and "reading customers stopped" in read.error and "HTTP 503" in read.error
    assert sorted(read.frames["products"]["sku"]) == held(peer)["skus"] and read.frames["customers"].empty
    assert read.watermarks == {"products": held(peer)["watermarks"]["products"]}


def test_a_bulk_operation_already_running_is_waited_for(peer: ShopifyAdmin, clock: ManualClock) -> None:
    stock(peer)
    bulk = 'bulkOperationRunQuery(query: "{ products { edges { node { id } } } }")'
    mutation = f"mutation {{ {bulk} {{ bulkOperation {{ id }} userErrors {{ code }} }} }}"
    other = httpx.post(f"{peer.url}/admin/api/{API_VERSION}/graphql.json", headers={"X-Shopify-Access-Token": TOKEN},
                       json={"query": mutation})  # fmt: skip
    assert other.json()["data"]["bulkOperationRunQuery"]["userErrors"] == []
    read = reader(peer, clock).read(context())
    assert read.error is None and frames_of(read) == held(peer)
    refused = [c for c in peer.graphql_calls() if "bulkOperationRunQuery" in c.root and c.outcome == "ok"]
    assert len(peer.operations) == 4 and len(refused) == 5  # the other's, then ours once refused and three run


# --- incremental -------------------------------------------------------------------------------------------


def test_an_incremental_run_reads_only_what_changed_and_reflects_edits(peer: ShopifyAdmin, clock: ManualClock) -> None:
    stock(peer)
    first = reader(peer, clock).read(context())
    edited, refunded = gid("Order", 5_000_003), gid("Order", 5_000_007)
    peer.edit("orders", edited, lambda o: o["lineItems"][0].update(quantity=9))
    peer.refund(refunded, "5.00")
    peer.edit("customers", gid("Customer", 7_000_002), lambda c: c["emailMarketingConsent"].update(
        marketingState="UNSUBSCRIBED", consentUpdatedAt="2026-01-02T08:00:00Z"))  # fmt: skip
    peer.put("products", make_product(50, variants=NESTED_PAGE + 2))
    peer.put("orders", make_order(60, email="new@example.com", lines=[("SKU-0050", 1, "3.00")] * (NESTED_PAGE + 4)))
    calls_before = len(peer.calls)

    api = reader(peer, clock)
    second = api.read(context(first.watermarks, skus=set(first.frames["products"]["sku"])))  # the stored SKUs

    assert second.error is None and second.incremental
    assert all(i.rows_quarantined == 0 for i in second.intakes.values())
    assert len(peer.operations) == 3  # no new bulk operation
    pages = [c for c in peer.calls[calls_before:] if set(c.root) & {"products", "customers", "orders"}]
    assert pages and all(f"updated_at:>='{first.watermarks[c.root[0]]}'" == c.variables["query"] for c in pages)
    assert all("sortKey: UPDATED_AT" in c.query and c.variables["first"] <= 250 for c in pages)
    orders = second.frames["orders"].set_index("external_id")
    # the boundary records (updatedAt == watermark) come again; everything else is what changed
    assert set(orders.index) == {"#1030", "#1003", "#1007", "#1060"}
    assert orders.loc["#1007", "financial_status"] == "partially_refunded"
    assert orders.loc["#1007", "refunded_amount"] == 5.0
    lines = second.frames["lines"]
    assert lines[(lines["order_external_id"] == "#1003") & (lines["line_number"] == 1)]["quantity"].tolist() == [9]
    assert (lines["order_external_id"] == "#1060").sum() == NESTED_PAGE + 4  # line items paged on by order(id:)
    assert sorted(second.frames["products"]["handle"].unique()) == ["product-12", "product-50"]
    assert (second.frames["products"]["handle"] == "product-50").sum() == NESTED_PAGE + 2
    customers = second.frames["customers"].set_index("external_id")
    assert customers.loc["7000002", "accepts_email"] is False
    assert customers.loc["7000002", "accepts_email_at"] == pd.Timestamp("2026-01-02T08:00:00Z")
    assert second.watermarks == held(peer)["watermarks"]
    assert set(second.watermarks) == {"products", "customers", "orders"}


def test_the_same_input_twice_gives_the_same_frames_and_no_watermark_moves(
    peer: ShopifyAdmin, clock: ManualClock
) -> None:
    stock(peer)
    first = reader(peer, clock).read(context())
    again = reader(peer, clock).read(context(first.watermarks))
    once_more = reader(peer, clock).read(context(first.watermarks))
    assert again.watermarks == once_more.watermarks == first.watermarks
    for name in ("products", "customers", "orders", "lines"):
        pd.testing.assert_frame_equal(again.frames[name], once_more.frames[name])
    # nothing changed: only the boundary records (updatedAt == the watermark) were read again, as the first run had them
    customers = first.frames["customers"].drop(columns=ROW).set_index("external_id")
    boundary = again.frames["customers"].drop(columns=ROW).set_index("external_id")
    assert len(boundary) == 1
    pd.testing.assert_frame_equal(boundary, customers.loc[boundary.index])
    full = reader(peer, clock).read(context({"products": OLD, "customers": OLD, "orders": OLD}))
    assert frames_of(full) == frames_of(first)  # paging everything gives what the bulk operations gave


# --- cost throttling ---------------------------------------------------------------------------------------


def test_the_reader_waits_for_the_bucket_instead_of_being_throttled(peer: ShopifyAdmin, clock: ManualClock) -> None:
    peer.put("customers", *[make_customer(n) for n in range(1500)])
    api = reader(peer, clock)
    read = api.read(context({"products": OLD, "customers": OLD, "orders": OLD}))
    assert read.error is None and len(read.frames["customers"]) == 1500
    calls = peer.graphql_calls()
    assert peer.graphql_calls("THROTTLED") == []
    assert all(c.requested <= 1000 for c in calls)
    # each wait was the deficit the previous answer showed, over the restore rate: no more, no less
    deficits = [c.requested - prev.available_after for prev, c in zip(calls, calls[1:], strict=False)]
    expected = sum(d for d in deficits if d > 0) / peer.restore_rate
    margin = WAIT_MARGIN / peer.restore_rate * sum(d > 0 for d in deficits)  # the bucket is reported rounded
    assert sum(clock.sleeps) == pytest.approx(expected + margin, abs=0.01)
    assert api.stats.throttle_wait == pytest.approx(sum(clock.sleeps))
    assert expected > 60  # 1,500 customers at ~5 points each, 50 points/s: most of it waited for
    assert api.stats.pages["customers"] == 8  # 199 a page: as many as fit under the 1,000-point query limit


def test_a_throttled_answer_is_waited_out_and_the_same_page_asked_again(peer: ShopifyAdmin, clock: ManualClock) -> None:
    peer.put("customers", *[make_customer(n) for n in range(300)])
    peer.drain(to=0.0)  # earlier calls of this app emptied the bucket: the reader cannot know
    read = reader(peer, clock).read(context({"products": OLD, "customers": OLD, "orders": OLD}))
    assert read.error is None and len(read.frames["customers"]) == 300
    calls = peer.graphql_calls()
    throttled = [i for i, c in enumerate(calls) if c.outcome == "THROTTLED"]
    assert throttled, "the drained bucket throttles the first query"
    for i in throttled:
        retry = calls[i + 1]
        assert (retry.query, retry.variables) == (calls[i].query, calls[i].variables)
    assert calls[-1].outcome == "ok"
    first_wait = clock.sleeps[0]
    assert first_wait == pytest.approx((calls[0].requested + WAIT_MARGIN) / peer.restore_rate, abs=0.01)


def test_a_query_over_the_cost_limit_is_asked_again_in_smaller_pages(clock: ManualClock) -> None:
    with ShopifyAdmin(token=TOKEN, clock=clock, max_query_cost=400) as peer:
        peer.put("customers", *[make_customer(n) for n in range(500)])
        read = reader(peer, clock).read(context({"products": OLD, "customers": OLD, "orders": OLD}))
        assert read.error is None and len(read.frames["customers"]) == 500
        refused = peer.graphql_calls("MAX_COST_EXCEEDED")
        assert len(refused) == 1  # the first page asked (products); every later page fits the limit it named
        assert all(c.requested <= 400 for c in peer.graphql_calls("ok"))


def test_http_429_waits_for_retry_after(peer: ShopifyAdmin, clock: ManualClock) -> None:
    peer.put("customers", make_customer(1))
    peer.script(Reply(429, {"errors": "Exceeded 2 calls per second for api client."}, retry_after=7))
    read = reader(peer, clock).read(context({"products": OLD, "customers": OLD, "orders": OLD}))
    assert read.error is None and len(read.frames["customers"]) == 1
    assert clock.sleeps[0] == 7.0


def test_server_errors_and_dropped_connections_are_retried(peer: ShopifyAdmin, clock: ManualClock) -> None:
    peer.put("customers", make_customer(1))
    peer.script(Reply(502), Drop(), Reply(503))
    api = reader(peer, clock)
    read = api.read(context({"products": OLD, "customers": OLD, "orders": OLD}))
    assert read.error is None and len(read.frames["customers"]) == 1
    assert api.stats.retries == 3 and clock.sleeps[:3] == [0.5, 1.0, 2.0]  # backoff: half of 1, 2, 4 s (no jitter)


# --- a failure part-way ------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["5xx", "dropped"])
def test_a_read_failing_half_way_keeps_complete_pages_and_the_next_run_resumes(
    peer: ShopifyAdmin, clock: ManualClock, how: str
) -> None:
    stock(peer, customers=1000)
    stored = {"products": OLD, "customers": OLD, "orders": OLD}
    if how == "5xx":
        peer.fail_after(pages=3)  # products (1 page), customers pages 1 and 2; then 503 for good
    else:  # products' page and the long product's variants paged on, customers pages 1 and 2; then no answers
        peer.script(*[None] * 4, *[Drop()] * (MAX_RETRIES + 1))
    partial = reader(peer, clock).read(context(stored))

    assert partial.error is not None and partial.error.startswith("OMNICAST_STORE_URL (shopify://demo-roasters")
    assert "customers" in partial.error and "\n" not in partial.error
    customers = peer.records["customers"]
    read_ids = partial.frames["customers"]["external_id"].tolist()
    assert len(read_ids) == 2 * 199
    by_update = sorted(customers.values(), key=lambda c: (c["updatedAt"], number_of(c["id"])))
    assert partial.watermarks["customers"] == by_update[2 * 199 - 1]["updatedAt"]
    assert partial.watermarks["products"] == held(peer)["watermarks"]["products"]
    assert partial.watermarks["orders"] == OLD  # not read: stays where it was
    assert partial.frames["orders"].empty

    peer.recover()
    peer.script()
    resumed = reader(peer, clock).read(context(partial.watermarks))
    assert resumed.error is None
    everything = set(read_ids) | set(resumed.frames["customers"]["external_id"])
    assert everything == set(held(peer)["customers"])
    assert resumed.watermarks == held(peer)["watermarks"]
    assert sorted(resumed.frames["orders"]["external_id"]) == held(peer)["orders"]


# --- refusals ----------------------------------------------------------------------------------------------


def test_a_rejected_token_refuses_the_source_naming_the_token_setting(peer: ShopifyAdmin, clock: ManualClock) -> None:
    with pytest.raises(SourceRefused) as refused:
        reader(peer, clock, token="shpat_wrong").read(context())
    text = str(refused.value)
    assert text.startswith("OMNICAST_STORE_TOKEN:") and "HTTP 401" in text and "shpat_" in text
    assert "read_products, read_customers, read_orders" in text and "shpat_wrong" not in text


def test_a_missing_token_or_scope_refuses_the_source(peer: ShopifyAdmin, clock: ManualClock) -> None:
    with pytest.raises(SourceRefused, match="no access token — set OMNICAST_STORE_TOKEN to the Admin API access"):
        reader(peer, clock, token=None).check()
    peer.scopes = frozenset({"read_products", "read_orders"})
    with pytest.raises(SourceRefused, match=r"denied access .*read_customers.* set OMNICAST_STORE_TOKEN"):
        reader(peer, clock).read(context({"products": OLD, "customers": OLD, "orders": OLD}))
    peer.script(Reply(403, {"errors": "[API] This action requires merchant approval for read_orders scope."}))
    with pytest.raises(SourceRefused, match=r"^OMNICAST_STORE_TOKEN: .*HTTP 403"):
        reader(peer, clock).read(context())


@pytest.mark.parametrize(
    "url",
    [
        "shopify://demo-roasters.com",
        "https://demo.myshopify.com",
        "shopify://demo.myshopify.com/admin",
        "shopify://user:pw@demo.myshopify.com",
    ],
)
def test_the_url_must_name_a_myshopify_shop(peer: ShopifyAdmin, clock: ManualClock, url: str) -> None:
    with pytest.raises(SourceRefused, match=r"^OMNICAST_STORE_URL \(.*\): not a Shopify shop — write shopify://SHOP"):
        reader(peer, clock, url=url).check()


def test_errors_name_the_settings_as_the_sync_labels_them(peer: ShopifyAdmin, clock: ManualClock) -> None:
    labelled = SourceConfig("store", SHOP, "OMNICAST_STORE_URL (--store)", token="shpat_wrong", api_base=peer.url)
    with pytest.raises(SourceRefused, match="^OMNICAST_STORE_TOKEN: .* set OMNICAST_STORE_TOKEN to"):
        ShopifyApi(labelled, sleep=clock.sleep, clock=clock).read(context())


def test_an_unknown_shop_or_api_version_refuses_the_source(clock: ManualClock) -> None:
    with (
        ShopifyAdmin(token=TOKEN, clock=clock, versions=("2024-01",)) as old,
        pytest.raises(SourceRefused, match=rf"HTTP 404.*API version {API_VERSION} is unknown"),
    ):
        reader(old, clock).read(context())


# --- the same checks as the export -------------------------------------------------------------------------


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def quarantine_of(intake: Intake) -> list[tuple[int, str, str, str]]:
    found = intake.quarantine()
    return list(zip(found["row_number"], found["column"], found["reason"], found["scope"], strict=True))


def test_bad_records_are_quarantined_exactly_as_in_the_export(
    peer: ShopifyAdmin, clock: ManualClock, tmp_path: Path
) -> None:
    peer.put("products", make_product(1, price="14.50"), make_product(2, price="12,50"), make_product(3, price="-1"))
    peer.put("customers", make_customer(1), make_customer(2, email="not-an-email", phone="+1 415 555 0123"),
             make_customer(3, email_state="UNSUBSCRIBED", sms_state="SUBSCRIBED", phone="12"))  # fmt: skip
    read = reader(peer, clock).read(context({"products": OLD, "customers": OLD, "orders": OLD}))

    # the same records as Shopify's CSV export writes them (written here by hand, not by the reader)
    def product_row(n: int, price: str) -> dict[str, str]:
        return {"Handle": f"product-{n}", "Title": f"Product {n}", "Vendor": "Omnicast Roasters",
                "Type": "Coffee Beans", "Tags": f"coffee, t{n % 3}", "Published": "TRUE", "Variant SKU": f"SKU-{n:04d}",
                "Variant Inventory Tracker": "shopify", "Variant Inventory Qty": "12",
                "Variant Inventory Policy": "deny", "Variant Price": price,
                "Image Src": f"https://cdn.example.com/p{n}.jpg", "Gift Card": "FALSE",
                "Roast level (product.metafields.custom.roast_level)": "medium",
                "Replenishment days (product.metafields.custom.replenishment_days)": "30",
                "Status": "active"}  # fmt: skip

    def customer_row(n: int, email: str, accepts: str, phone: str, sms: str) -> dict[str, str]:
        return {"Customer ID": f"'{7_000_000 + n}", "First Name": f"First{n}", "Last Name": f"Last{n}",
                "Email": email, "Accepts Email Marketing": accepts, "Default Address City": "Springfield",
                "Default Address Province Code": "IL", "Default Address Country Code": "US",
                "Default Address Zip": "62701", "Phone": phone, "Accepts SMS Marketing": sms}  # fmt: skip

    products_csv = write_csv(tmp_path / "products_export.csv",
                             [product_row(1, "14.50"), product_row(2, "12,50"), product_row(3, "-1")])  # fmt: skip
    customers_csv = write_csv(tmp_path / "customers_export.csv", [
        customer_row(1, "customer1@example.com", "yes", "", ""),
        customer_row(2, "not-an-email", "yes", "'+1 415 555 0123", ""),
        customer_row(3, "customer3@example.com", "no", "12", "yes"),
    ])  # fmt: skip
    products_intake, customers_intake = Intake("products", "x"), Intake("customers", "x")
    products = read_products(products_csv, products_intake)
    customers = read_customers(customers_csv, customers_intake, "US")

    assert quarantine_of(read.intakes["products"]) == quarantine_of(products_intake)
    assert quarantine_of(read.intakes["customers"]) == quarantine_of(customers_intake)
    assert [r[2] for r in quarantine_of(products_intake)] == [
        "Variant Price is not a number like 14.50",
        "Variant Price is negative",
    ]
    assert {r[1] for r in quarantine_of(customers_intake)} == {"Email", "Phone"}
    api_products = read.frames["products"].sort_values("sku").reset_index(drop=True)
    pd.testing.assert_frame_equal(api_products.drop(columns=ROW), products.drop(columns=ROW), check_dtype=False)
    api_customers = read.frames["customers"].drop(columns=["accepts_email_at", "accepts_sms_at"])
    pd.testing.assert_frame_equal(api_customers, customers, check_dtype=False)


def test_consent_states_and_their_dates(peer: ShopifyAdmin, clock: ManualClock) -> None:
    peer.put("customers",
             make_customer(1, email_state="SUBSCRIBED", email_at="2025-02-03T04:05:06Z",
                           sms_state="UNSUBSCRIBED", sms_at="2025-07-01T00:00:00-04:00", phone="+14155550123"),
             make_customer(2, email_state="NOT_SUBSCRIBED", email_at=None),
             make_customer(3, email_state=None, email=""),
             make_customer(4, email_state="SOMETHING_NEW", email_at="2025-01-01T00:00:00Z"))  # fmt: skip
    read = reader(peer, clock).read(context({"products": OLD, "customers": OLD, "orders": OLD}))
    customers = read.frames["customers"].set_index("external_id")
    assert customers["accepts_email"].tolist() == [True, False, None, None]
    assert customers["accepts_sms"].tolist() == [False, None, None, None]
    assert str(customers["accepts_email_at"].dtype).startswith("datetime64") and customers["accepts_email_at"].dt.tz
    assert customers.loc["7000001", "accepts_email_at"] == pd.Timestamp("2025-02-03T04:05:06Z")
    assert customers.loc["7000001", "accepts_sms_at"] == pd.Timestamp("2025-07-01T04:00:00Z")
    assert customers["accepts_email_at"].isna().tolist() == [False, True, True, False]
    assert read.intakes["customers"].fields_quarantined == 0


def test_an_empty_shop_reads_as_empty_frames(peer: ShopifyAdmin, clock: ManualClock) -> None:
    for watermarks in ({}, {"products": OLD, "customers": OLD, "orders": OLD}):
        read = reader(peer, clock).read(context(watermarks))
        assert read.error is None and all(frame.empty for frame in read.frames.values())
        assert {"accepts_email_at", "accepts_sms_at"} <= set(read.frames["customers"].columns)
        assert read.watermarks == watermarks  # nothing read: no watermark to move


# --- the stand-in's own contract ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "variables", "code"),
    [
        ("{ products(first: 10) { nodes { id colour } } }", {}, "undefinedField"),
        ("{ products(first: 251) { nodes { id } } }", {}, "argumentLimit"),
        ("{ products { nodes { id } } }", {}, "missingRequiredArguments"),
        ('{ products(first: 5, after: "bm9wZQ==") { nodes { id } } }', {}, "BAD_REQUEST"),
        ('{ products(first: 5, query: "title:coffee") { nodes { id } } }', {}, "argumentLiteralsIncompatible"),
        ("query($n: Int!) { customers(first: $n) { nodes { id } } }", {}, "GRAPHQL_VALIDATION_FAILED"),
        ("{ customers(first: 5) { nodes { defaultAddress } } }", {}, "selectionMismatch"),
        ("{ orders(first: 5) { ...F } }", {}, "GRAPHQL_PARSE_FAILED"),
        ("{ shop { name } }", {}, "undefinedField"),
        ("{ orders(first: 250) { nodes { id lineItems(first: 250) { nodes { id } } } } }", {}, "MAX_COST_EXCEEDED"),
    ],
)
def test_the_stand_in_refuses_what_shopify_refuses(peer: ShopifyAdmin, query: str, variables: dict[str, Any],
                                                   code: str) -> None:  # fmt: skip
    answer = httpx.post(f"{peer.url}/admin/api/{API_VERSION}/graphql.json", headers={"X-Shopify-Access-Token": TOKEN},
                        json={"query": query, "variables": variables}).json()  # fmt: skip
    assert "data" not in answer and answer["errors"][0]["extensions"]["code"] == code
