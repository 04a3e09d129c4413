"""Reading a WooCommerce store through its REST API v3, against a local server that enforces the API's contract:
what the store holds arrives in the export's standard frames, an incremental run reads only what changed, a failed
run resumes where its last complete page ended, and a bad record is quarantined as the same row of a CSV export is.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pandas as pd
import pytest

import sources.woocommerce as woocommerce
from sources.base import ReadContext, SourceConfig, SourceRefused
from sources.shopify import read_customers, read_orders
from sources.validate import Intake
from sources.woocommerce import WooCommerceApi, WooCommerceRead, financial_status
from tests.peers.woocommerce_api import Reply, Throttle, WooCommerceServer

NOW = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
EXPORTS = Path(__file__).resolve().parents[1] / "data" / "sources" / "store"


@pytest.fixture
def store() -> Iterator[WooCommerceServer]:
    """A small coffee shop: two simple products, a variable one with two variations, a grouped one; three
    customers; four orders. The server's clock then moves an hour on (the store was filled before the sync)."""
    with WooCommerceServer() as peer:
        peer.add_product("BEAN-ETH-001", "14.50", name="Ethiopia Yirgacheffe", manage_stock=True, stock_quantity=40,
                         meta_data=[{"id": 1, "key": "replenishment_days", "value": "30"},
                                    {"id": 2, "key": "roast_level", "value": "light"}],
                         images=[{"id": 9, "src": "https://cdn.example.com/eth.jpg"}])  # fmt: skip
        peer.add_product("BEAN-COL-002", "13.00", on_sale=True, regular_price="15.00", backorders="notify")
        filters = peer.add_product("", "", slug="v60-filters", name="V60 Filters", type="variable",
                                   categories=[{"id": 16, "name": "Filters & Pods", "slug": "filters"}])  # fmt: skip
        peer.add_variation(filters, "FLT-V60-100", "6.00")
        peer.add_variation(filters, "FLT-V60-200", "10.00", manage_stock=True, stock_quantity=3)
        peer.add_product("", "", slug="starter-set", type="grouped")
        jane = peer.add_customer("jane.doe@example.com", first_name="Jane", last_name="Doe",
                                 billing={"city": "San Francisco", "state": "CA", "country": "US", "postcode": "94103",
                                          "phone": "(415) 555-0123"})  # fmt: skip
        peer.add_customer("erika@example.de", first_name="Erika", billing={"country": "DE", "phone": "030 1234567"})
        peer.add_customer("john@example.com", first_name="John")
        peer.add_order("jane.doe@example.com", [("BEAN-ETH-001", 1, "14.50"), ("FLT-V60-100", 2, "6.00")],
                       customer_id=jane)  # fmt: skip
        peer.add_order("erika@example.de", [("BEAN-COL-002", 1, "13.00")], status="processing")
        peer.add_order("john@example.com", [("FLT-V60-200", 1, "10.00")], status="pending")
        peer.add_order("jane.doe@example.com", [("BEAN-ETH-001", 2, "14.50")], status="cancelled")
        peer.tick(3600)
        yield peer


def api(peer: WooCommerceServer, waits: list[float] | None = None, token: str | None = None) -> WooCommerceApi:
    config = SourceConfig("store", "woocommerce://shop.example", "OMNICAST_STORE_URL",
                          peer.credentials if token is None else token, peer.url)  # fmt: skip
    return WooCommerceApi(config, sleep=(waits if waits is not None else []).append)


def context(watermarks: dict[str, str] | None = None, skus: set[str] | None = None) -> ReadContext:
    return ReadContext(known_skus=skus or set(), default_country="US", now=NOW, watermarks=watermarks or {})


def read(
    peer: WooCommerceServer,
    watermarks: dict[str, str] | None = None,
    skus: set[str] | None = None,
    waits: list[float] | None = None,
) -> WooCommerceRead:
    """One read; ``skus``: the SKUs the store's database already holds (an incremental run's order lines need them)."""
    return api(peer, waits).read(context(watermarks, skus))


def order_names(result: WooCommerceRead) -> set[str]:
    return set(result.frames["orders"]["external_id"])


def reconciles(result: WooCommerceRead) -> None:
    loaded = {"products": len(result.frames["products"]), "customers": len(result.frames["customers"]),
              "orders": len(result.frames["lines"])}  # fmt: skip
    for name, intake in result.intakes.items():
        assert intake.count(loaded[name]).reconciles, name


# first load ----------------------------------------------------------------------------------------------------------


def test_a_first_load_holds_what_the_store_holds(store: WooCommerceServer) -> None:
    result = read(store)
    assert result.error is None and not result.incremental
    products = result.frames["products"].set_index("sku")
    assert set(products.index) == {"BEAN-ETH-001", "BEAN-COL-002", "FLT-V60-100", "FLT-V60-200"}
    eth = products.loc["BEAN-ETH-001"]
    assert (eth["title"], eth["price"], eth["replenish_days"], eth["roast"]) == ("Ethiopia Yirgacheffe", 14.5, 30,
                                                                                 "light")  # fmt: skip
    assert eth["inventory_quantity"] == 40 and eth["image_url"] == "https://cdn.example.com/eth.jpg" and eth["active"]
    assert products.loc["BEAN-COL-002", "inventory_quantity"] is None  # not tracked: sold regardless
    assert products.loc["FLT-V60-100", "handle"] == "v60-filters" and products.loc["FLT-V60-100", "consumable"]
    assert products.loc["FLT-V60-200", "inventory_quantity"] == 3
    customers = result.frames["customers"].set_index("email")
    assert set(customers["external_id"]) == {str(i) for i in store.customers}
    jane = customers.loc["jane.doe@example.com"]
    assert (jane["phone"], jane["country"], jane["city"]) == ("+14155550123", "US", "San Francisco")
    assert customers.loc["erika@example.de", "phone"] == "+49301234567"  # national number, the billing country's
    assert customers["accepts_email"].isna().all()  # WooCommerce states no marketing consent
    assert order_names(result) == {f"#{i}" for i in store.orders}
    assert len(result.frames["lines"]) == 5
    statuses = dict(zip(result.frames["orders"]["external_id"], result.frames["orders"]["financial_status"],
                        strict=True))  # fmt: skip
    assert sorted(statuses.values()) == ["paid", "paid", "pending", "voided"]
    assert result.present == {str(i) for i in store.customers}
    assert set(result.watermarks) == {"products", "customers", "orders"}
    reconciles(result)


def test_same_store_read_twice_gives_the_same_frames(store: WooCommerceServer) -> None:
    first, second = read(store), read(store)
    for name in first.frames:
        pd.testing.assert_frame_equal(first.frames[name], second.frames[name])
    assert first.watermarks == second.watermarks


def test_financial_status_follows_status_and_refunds() -> None:
    def status(state: str, refunds: tuple[str, ...] = (), total: str = "30.00") -> str:
        return financial_status({"status": state, "total": total, "refunds": [{"total": r} for r in refunds]})

    assert status("completed") == status("processing") == "paid"
    assert status("completed", ("-10.00",)) == "partially_refunded"
    assert status("completed", ("-10.00", "-20.00")) == "refunded"
    assert status("refunded", ("-30.00",)) == "refunded"
    assert status("pending") == status("on-hold") == "pending"
    assert status("cancelled") == status("failed") == "voided"
    assert status("wc-shipped") == "wc-shipped"  # a plugin's own status: set aside by the order checks


# incremental ---------------------------------------------------------------------------------------------------------


def test_an_incremental_run_reads_only_the_changes(store: WooCommerceServer) -> None:
    first = read(store)
    paid, processing, pending, _ = sorted(store.orders)
    store.tick(600)
    store.refund(paid, 6.00)  # partial
    store.edit_order(processing, status="completed")
    store.refund(pending, 10.00, full=True)
    erika = next(i for i, c in store.customers.items() if c["email"] == "erika@example.de")
    store.edit_customer(erika, last_name="Mustermann")
    store.tick(3600)
    calls_before = len(store.calls)
    second = read(store, first.watermarks, skus=set(first.frames["products"]["sku"]))
    assert second.error is None and second.incremental
    orders = second.frames["orders"].set_index("external_id")
    at_watermark = {f"#{i}" for i, o in store.orders.items() if o["date_modified_gmt"] == first.watermarks["orders"]}
    assert at_watermark and set(orders.index) == {f"#{paid}", f"#{processing}", f"#{pending}"} | at_watermark
    assert orders.loc[f"#{paid}", "financial_status"] == "partially_refunded"
    assert orders.loc[f"#{paid}", "refunded_amount"] == 6.0
    assert orders.loc[f"#{processing}", "financial_status"] == "paid"
    assert orders.loc[f"#{pending}", "financial_status"] == "refunded"
    assert set(second.frames["lines"]["order_external_id"]) == set(orders.index)  # an edited order's lines again
    assert second.frames["products"].empty
    customer_watermark = first.watermarks["customers"]
    again = {str(i) for i, c in store.customers.items() if c["date_modified_gmt"] == customer_watermark}
    customers = second.frames["customers"].set_index("external_id")
    assert set(customers.index) == {str(erika)} | again and customers.loc[str(erika), "last_name"] == "Mustermann"
    assert second.present == {str(i) for i in store.customers}  # the customers list is still read whole
    asked = [c.params for c in store.calls[calls_before:] if c.path.endswith("/orders")]
    assert asked[0]["modified_after"] < first.watermarks["orders"] and asked[0]["dates_are_gmt"] == "true"
    assert second.watermarks["orders"] > first.watermarks["orders"]
    third = read(store, second.watermarks)  # nothing changed: only the watermarks' own records come again
    last = {f"#{i}" for i, o in store.orders.items() if o["date_modified_gmt"] == second.watermarks["orders"]}
    assert order_names(third) == last and len(third.frames["customers"]) <= 1
    reconciles(second)


def test_an_edit_during_the_read_loses_no_record(store: WooCommerceServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two orders a page: after the first page the shop manager edits its first order, which moves to the end of
    the modification order. Page numbers alone would skip the order that slid into the gap; keyset paging not."""
    monkeypatch.setattr(woocommerce, "PER_PAGE", 2)
    for n in range(6):
        store.add_order(f"more{n}@example.com", [("BEAN-ETH-001", 1, "14.50")])
    store.tick(3600)
    first_order = min(store.orders)
    edited: list[int] = []

    def edit_once(path: str, page: int) -> None:
        if path.endswith("/orders") and not edited:
            edited.append(first_order)
            store.edit_order(first_order, status="completed")

    store.on_page = edit_once
    result = read(store)
    assert edited and order_names(result) == {f"#{i}" for i in store.orders}


def test_small_pages_follow_the_total_pages_header(store: WooCommerceServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(woocommerce, "PER_PAGE", 2)
    result = read(store)
    assert order_names(result) == {f"#{i}" for i in store.orders}
    assert set(result.frames["products"]["sku"]) == {"BEAN-ETH-001", "BEAN-COL-002", "FLT-V60-100", "FLT-V60-200"}
    customer_pages = [c for c in store.calls if c.path.endswith("/customers")]
    assert [c.params["page"] for c in customer_pages] == ["1", "2"]
    assert all(c.params["per_page"] == "2" for c in store.calls)
    assert result.requests == len(store.calls)


# failures ------------------------------------------------------------------------------------------------------------


def test_429_waits_as_long_as_retry_after_says(store: WooCommerceServer) -> None:
    waits: list[float] = []
    store.script(Throttle(retry_after=7), Reply(503, {"code": "unavailable", "message": "Maintenance"}))
    result = read(store, waits=waits)
    assert result.error is None and len(result.frames["products"]) == 4
    assert waits[0] >= 7 and len(waits) == 2
    assert [c.status for c in store.calls[:3]] == [429, 503, 200]


def test_a_read_failing_half_way_keeps_its_complete_pages_and_the_next_run_resumes(
    store: WooCommerceServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(woocommerce, "PER_PAGE", 2)
    for n in range(6):
        store.add_order(f"more{n}@example.com", [("BEAN-ETH-001", 1, "14.50")])
    store.tick(3600)
    store.fail_on, store.fail_after_pages = "/orders", 2  # two pages of orders, then 500s
    waits: list[float] = []
    partial = read(store, waits=waits)
    assert partial.error is not None and partial.error.startswith("orders: HTTP 500")
    # page 1: the two oldest orders; page 2 (from the second one's time on): it again and the third
    modified = sorted(o["date_modified_gmt"] for o in store.orders.values())
    assert len(partial.frames["orders"]) == 3 and partial.watermarks["orders"] == modified[2]
    assert len(partial.frames["products"]) == 4 and partial.present is not None
    assert len(waits) == woocommerce.MAX_RETRIES
    reconciles(partial)
    store.fail_after_pages = None
    rest = read(store, partial.watermarks, skus=set(partial.frames["products"]["sku"]))
    assert rest.error is None
    assert order_names(partial) | order_names(rest) == {f"#{i}" for i in store.orders}
    assert len(order_names(partial) & order_names(rest)) == 1  # the watermark's own order, read again


def test_a_store_that_never_answers_is_refused(store: WooCommerceServer) -> None:
    store.fail_after_pages = 0
    with pytest.raises(SourceRefused, match=r"OMNICAST_STORE_URL \(woocommerce://shop.example via http"):
        read(store)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (None, "was refused"),
        ("", "OMNICAST_STORE_TOKEN is not set"),
        ("just-a-password", "not a WooCommerce REST API key"),
    ],
)
def test_bad_credentials_are_refused_naming_the_setting(store: WooCommerceServer, token: str | None,
                                                        message: str) -> None:  # fmt: skip
    reader = api(store, token=f"{store.key}:cs_wrong" if token is None else token)
    with pytest.raises(SourceRefused, match=message) as refused:
        reader.read(context())
    text = str(refused.value)
    assert "OMNICAST_STORE_TOKEN" in text and "Settings → Advanced → REST API" in text and "Read" in text
    assert store.secret not in text


def test_a_key_never_travels_over_plain_http_to_another_host() -> None:
    config = SourceConfig("store", "woocommerce://shop.example", "OMNICAST_STORE_URL", "ck_1:cs_2",
                          "http://shop.example")  # fmt: skip
    with pytest.raises(SourceRefused, match="clear text"):
        WooCommerceApi(config).check()
    with pytest.raises(SourceRefused, match="woocommerce://HOST"):
        WooCommerceApi(SourceConfig("store", "woocommerce://", "OMNICAST_STORE_URL", "ck_1:cs_2")).check()


def test_the_api_root_follows_the_host_and_its_folder() -> None:
    config = SourceConfig("store", "woocommerce://shop.example:8443/blog/", "OMNICAST_STORE_URL", "ck_1:cs_2")
    reader = WooCommerceApi(config)
    assert reader._api_root() == "https://shop.example:8443/blog/wp-json/wc/v3"
    assert reader.location == "woocommerce://shop.example:8443/blog"


# bad records ---------------------------------------------------------------------------------------------------------


def _csv(path: Path, header_of: Path, rows: list[dict[str, str]]) -> Path:
    """An export file with the real export's header and these rows (cells the rows do not name are blank)."""
    with header_of.open(encoding="utf-8") as source:
        header = next(csv.reader(source))
    with path.open("w", encoding="utf-8", newline="") as target:
        writer = csv.DictWriter(target, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_a_bad_record_is_quarantined_as_the_same_csv_row_is(store: WooCommerceServer, tmp_path: Path) -> None:
    for order in list(store.orders):
        del store.orders[order]
    for customer in list(store.customers):
        del store.customers[customer]
    store.add_order("guest@example.com", [("GHOST-404", 1, "9.00"), ("BEAN-ETH-001", 1, "14.50")], number="2001")
    store.add_customer("not-an-email", first_name="Bad", billing={"phone": "12"})
    result = read(store)
    api_orders = result.intakes["orders"].quarantine()
    api_customers = result.intakes["customers"].quarantine()

    created = store.orders[max(store.orders)]["date_created_gmt"]
    line = {"Name": "#2001", "Email": "guest@example.com", "Financial Status": "paid", "Currency": "EUR",
            "Total": "23.50", "Created at": woocommerce._export_time(created)}  # fmt: skip
    orders_csv = _csv(tmp_path / "orders_export.csv", EXPORTS / "orders_export.csv", [
        line | {"Lineitem quantity": "1", "Lineitem name": "Ghost-404", "Lineitem price": "9.00",
                "Lineitem sku": "GHOST-404"},
        line | {"Lineitem quantity": "1", "Lineitem name": "Bean-Eth-001", "Lineitem price": "14.50",
                "Lineitem sku": "BEAN-ETH-001"},
    ])  # fmt: skip
    file_orders = Intake("orders", "orders_export.csv")
    read_orders(orders_csv, file_orders, {"BEAN-ETH-001", "BEAN-COL-002", "FLT-V60-100", "FLT-V60-200"}, NOW)
    customers_csv = _csv(tmp_path / "customers_export.csv", EXPORTS / "customers_export.csv", [
        {"Customer ID": str(max(store.customers)), "First Name": "Bad", "Email": "not-an-email",
         "Default Address Phone": "12"},
    ])  # fmt: skip
    file_customers = Intake("customers", "customers_export.csv")
    read_customers(customers_csv, file_customers, "US")

    def reasons(frame: pd.DataFrame) -> list[tuple[int, str, str, str]]:
        return list(frame[["row_number", "column", "reason", "scope"]].itertuples(index=False, name=None))

    assert (
        reasons(api_orders)
        == reasons(file_orders.quarantine())
        == [(1, "Lineitem sku", "unknown SKU 'GHOST-404'", "row")]
    )
    assert reasons(api_customers) == reasons(file_customers.quarantine())
    assert {r[1] for r in reasons(api_customers)} == {"Email", "Default Address Phone"}
    assert len(result.frames["customers"]) == 1  # set aside, not quarantined: the customer loads


# deleted customers -------------------------------------------------------------------------------------------------


def test_a_deleted_customer_is_missing_from_the_present_ones(store: WooCommerceServer) -> None:
    first = read(store)
    gone = min(store.customers)
    store.delete_customer(gone)
    second = read(store, first.watermarks)
    assert second.present is not None and str(gone) not in second.present
    assert second.present == {str(i) for i in store.customers}


def test_present_customers_is_unknown_when_the_list_moved_while_read(
    store: WooCommerceServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(woocommerce, "PER_PAGE", 2)
    first_customer = min(store.customers)

    def delete_once(path: str, page: int) -> None:
        if path.endswith("/customers") and page == 1 and first_customer in store.customers:
            store.delete_customer(first_customer)

    store.on_page = delete_once
    result = read(store)
    assert result.error is None and result.present is None


# the peer's contract -------------------------------------------------------------------------------------------------


def test_the_stand_in_enforces_the_documented_contract(store: WooCommerceServer) -> None:
    auth = (store.key, store.secret)
    root = f"{store.url}/wp-json/wc/v3"
    with httpx.Client(auth=auth) as client:
        assert client.get(f"{root}/orders", params={"per_page": 101}).json()["code"] == "rest_invalid_param"
        assert client.get(f"{root}/orders", params={"page": 0}).status_code == 400
        assert client.get(f"{root}/customers", params={"orderby": "modified"}).status_code == 400
        assert client.get(f"{root}/orders", params={"modified_after": "yesterday"}).status_code == 400
        answer = client.get(f"{root}/orders", params={"per_page": 3})
        assert (answer.headers["X-WP-Total"], answer.headers["X-WP-TotalPages"]) == ("4", "2")
        assert 'rel="next"' in answer.headers["Link"]
        assert client.get(f"{root}/orders", params={"page": 9}).json() == []
        newest = max(o["date_modified_gmt"] for o in store.orders.values())
        after = {"modified_after": newest, "dates_are_gmt": "true"}
        assert client.get(f"{root}/orders", params=after).json() == []  # after is strict
        local = client.get(f"{root}/orders", params={"modified_after": newest}).json()
        assert len(local) == 4  # compared with site time (GMT+2) unless dates_are_gmt
        assert client.get(f"{root}/products/999/variations").json()["code"] == "woocommerce_rest_product_invalid_id"
        assert client.get(f"{root}/coupons").json()["code"] == "rest_no_route"
    assert httpx.get(f"{root}/orders").json()["code"] == "woocommerce_rest_cannot_view"
