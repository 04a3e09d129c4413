"""The sync flow on API sources: a WooCommerce store and a HubSpot CRM served by local stand-ins that enforce the
APIs' contracts. The first run reads everything, later runs only what changed (their watermarks), a store that fails
part-way keeps its complete pages and the next run resumes, and `omnicast sync --json` gives one key per source."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from models.db import make_engine
from models.schema import Consent, Identity, Order, OrderLine
from tests.peers.hubspot_api import HubSpotServer
from tests.peers.woocommerce_api import WooCommerceServer

FIRST = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
SNAPSHOT_TABLES = ["customers", "identities", "consents", "products", "orders", "order_lines"]


@pytest.fixture
def shop() -> Iterator[WooCommerceServer]:
    with WooCommerceServer() as peer:
        peer.add_product("BEAN-ETH-001", "14.50", name="Ethiopia Yirgacheffe")
        peer.add_product("BEAN-COL-002", "13.00", name="Colombia Huila")
        filters = peer.add_product("", "", slug="v60-filters", name="V60 Filters", type="variable")
        peer.add_variation(filters, "FLT-V60-100", "6.00")
        jane = peer.add_customer("jane.doe@example.com", first_name="Jane", last_name="Doe",
                                 billing={"city": "San Francisco", "state": "CA", "country": "US"})  # fmt: skip
        peer.add_customer("john@example.com", first_name="John", last_name="Smith")
        for n in range(30):
            peer.add_order("jane.doe@example.com" if n % 2 else "john@example.com",
                           [("BEAN-ETH-001", 1, "14.50"), ("FLT-V60-100", 2, "6.00")],
                           customer_id=jane if n % 2 else None)  # fmt: skip
        peer.add_order("guest@example.org", [("BEAN-COL-002", 1, "13.00")], status="processing")
        peer.tick(3600)
        yield peer


@pytest.fixture
def crm() -> Iterator[HubSpotServer]:
    with HubSpotServer() as peer:
        peer.add_contact("jane.doe@example.com", at=FIRST, firstname="Jane", lastname="Doe", loyalty_tier="Gold",
                         hs_marketable_status="true", email_marketing_consent="subscribed",
                         ads_personalization_consent="true")  # fmt: skip
        peer.add_contact("lee@example.com", at=FIRST + timedelta(hours=1), firstname="Lee",
                         hs_marketable_status="true", email_marketing_consent="subscribed")  # fmt: skip
        yield peer


@pytest.fixture
def configured(
    prefect_api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shop: WooCommerceServer, crm: HubSpotServer
) -> str:
    database = f"sqlite:///{tmp_path / 'omnicast.db'}"
    for name in ("STORE_PATH", "CRM_PATH", "ANALYTICS_PATH", "ANALYTICS_URL"):
        monkeypatch.delenv(f"OMNICAST_{name}", raising=False)
    monkeypatch.setenv("OMNICAST_DATABASE_URL", database)
    monkeypatch.setenv("OMNICAST_STORE_URL", "woocommerce://shop.example")
    monkeypatch.setenv("OMNICAST_STORE_TOKEN", shop.credentials)
    monkeypatch.setenv("OMNICAST_STORE_API_BASE", shop.url)
    monkeypatch.setenv("OMNICAST_CRM_URL", "hubspot://")
    monkeypatch.setenv("OMNICAST_CRM_TOKEN", crm.token)
    monkeypatch.setenv("OMNICAST_CRM_API_BASE", crm.url)
    return database


def snapshot(database: str) -> dict[str, list[tuple[Any, ...]]]:
    engine = make_engine(database)
    try:
        with engine.connect() as conn:
            return {
                table: sorted(tuple(str(v) for v in row if not isinstance(v, datetime))
                              for row in conn.exec_driver_sql(f"SELECT * FROM {table}").all())
                for table in SNAPSHOT_TABLES
            }  # fmt: skip
    finally:
        engine.dispose()


def rows(database: str, query: Any) -> list[Any]:
    engine = make_engine(database)
    try:
        with engine.connect() as conn:
            return list(conn.execute(query).all())
    finally:
        engine.dispose()


def test_the_sync_flow_reads_the_apis_whole_then_only_what_changed(
    configured: str, shop: WooCommerceServer, crm: HubSpotServer
) -> None:
    from flows.sync import sync_flow

    first = sync_flow()
    store, contacts = first.configured["store"], first.configured["crm"]
    assert (store.platform, store.mode, contacts.platform) == ("woocommerce", "full", "hubspot")
    assert first.orders == 31 and first.reconciles and set(store.watermarks) >= {"products", "customers", "orders"}
    assert "contacts" in contacts.watermarks
    requests_before = len(shop.calls)

    jane_order = next(number for number, order in shop.orders.items() if order["billing"]["email"].startswith("jane"))
    shop.refund(jane_order, 14.50)
    crm.edit_contact(next(iter(crm.contacts)), email_marketing_consent="unsubscribed")
    shop.tick(60)
    second = sync_flow()
    assert second.configured["store"].mode == "incremental" and second.configured["crm"].mode == "incremental"
    assert second.orders <= 2, "the refunded order, and the one at the watermark (inclusive), read again"
    fetched = [call.count for call in shop.calls]
    assert sum(fetched[requests_before:]) * 3 < sum(fetched[:requests_before]), "an incremental run fetches far less"
    refunded = rows(configured, select(Order.financial_status, Order.refunded_amount).where(
        Order.external_id == f"#{shop.orders[jane_order]['number']}"))  # fmt: skip
    assert refunded == [("partially_refunded", 14.5)]
    jane = rows(configured, select(Identity.customer_id).where(Identity.source == "crm"))[0][0]
    email = rows(configured, select(Consent.state).where(Consent.customer_id == jane, Consent.source == "crm",
                                                         Consent.channel == "email"))  # fmt: skip
    assert email == [("denied",)]
    lines = rows(configured, select(OrderLine.id))

    before = snapshot(configured)
    third = sync_flow()
    assert snapshot(configured) == before, "the same input again changes nothing"
    assert len(rows(configured, select(OrderLine.id))) == len(lines) and third.reconciles


def test_a_store_that_fails_part_way_keeps_its_complete_pages_and_the_next_run_resumes(
    configured: str, shop: WooCommerceServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sources.woocommerce
    from flows.sync import SourcePartlyRead, sync_flow

    monkeypatch.setattr(sources.woocommerce, "MAX_RETRIES", 1)  # one retry (1-2 s), not a minute of backoff

    sync_flow()
    for _ in range(150):  # two pages of new orders
        shop.add_order("john@example.com", [("BEAN-COL-002", 1, "13.00")])
    shop.tick(60)
    shop.fail_after_pages, shop.fail_on, shop.pages_served = 1, "/orders", 0
    refused = r"^the store source \(OMNICAST_STORE_URL=woocommerce://shop\.example.*\) stopped part-way: orders: HTTP"
    with pytest.raises(SourcePartlyRead, match=refused):
        sync_flow()
    kept = len(rows(configured, select(Order.id)))
    assert 31 < kept < 31 + 150, "the complete first page was written"
    shop.fail_after_pages = None
    resumed = sync_flow()
    assert len(rows(configured, select(Order.id))) == 181 and resumed.orders <= 150 - (kept - 31) + 1


def test_sync_json_adds_one_key_per_configured_source(configured: str) -> None:
    from flows.cli import app

    result = CliRunner().invoke(app, ["sync", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"run_id", "sources", "profiles", "quarantined", "store", "crm"} <= set(report) and "analytics" not in report
    assert report["store"]["platform"] == "woocommerce" and report["store"]["location"].startswith("woocommerce://shop.example")
    assert report["crm"]["read"] == report["crm"]["loaded"] + report["crm"]["quarantined"] + report["crm"][
        "duplicates_skipped"] + report["crm"]["forgotten_skipped"]  # fmt: skip


def test_a_source_refused_as_a_whole_is_one_line_naming_it(configured: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.cli import app

    monkeypatch.setenv("OMNICAST_STORE_TOKEN", "ck_wrong:cs_wrong")
    result = CliRunner().invoke(app, ["sync"])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "OMNICAST_STORE" in errors[0], result.output


def test_a_token_can_come_from_a_prefect_secret_block(configured: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.blocks.system import Secret

    from flows.runtime import SettingError, load_settings, source_configs

    Secret(value="ck_from:cs_block").save("omnicast-store-key", overwrite=True)
    monkeypatch.setenv("OMNICAST_STORE_TOKEN", "prefect-secret://omnicast-store-key")
    store = source_configs(load_settings())[0]
    assert store.token == "ck_from:cs_block"
    monkeypatch.setenv("OMNICAST_STORE_TOKEN", "prefect-secret://no-such-block")
    with pytest.raises(SettingError, match=r"^OMNICAST_STORE_TOKEN: no Prefect Secret block named 'no-such-block'"):
        source_configs(load_settings())
