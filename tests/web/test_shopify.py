"""Shopify's signed webhooks on `omnicast serve`: customers/redact erases, customers/delete unlinks, a bad signature
or a missing secret changes nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from models.consent import consent_states
from models.identity import SHOPIFY
from models.schema import Customer, Identity
from models.suppression import is_suppressed
from models.sync import sync_store
from tests.web.conftest import live_server, make_settings
from web.app import create_app

DATA = Path(__file__).resolve().parents[1] / "data" / "sources"
SECRET = "shpss_test_client_secret"
JANE = 7012345678901


@pytest.fixture
def synced(engine: Engine) -> Engine:
    sync_store(engine, DATA / "store", DATA / "hubspot_contacts.csv", None, run_id="r1",
               now=datetime(2026, 11, 25, 6, tzinfo=UTC))  # fmt: skip
    return engine


def signed(payload: dict[str, Any], topic: str, secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    digest = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    headers = {"X-Shopify-Topic": topic, "X-Shopify-Hmac-Sha256": digest, "Content-Type": "application/json",
               "X-Shopify-Shop-Domain": "bean-and-leaf.myshopify.com"}  # fmt: skip
    return body, headers


def identity(engine: Engine, external_id: int) -> int | None:
    with engine.connect() as conn:
        query = select(Identity.customer_id).where(Identity.source == SHOPIFY, Identity.external_id == str(external_id))
        return conn.execute(query).scalar_one_or_none()


def test_customers_redact_over_a_real_server_erases_the_person(synced: Engine) -> None:
    jane = identity(synced, JANE)
    assert jane is not None
    app = create_app(make_settings(shopify_webhook_secret=SECRET), synced)
    payload = {"shop_id": 954889, "shop_domain": "bean-and-leaf.myshopify.com",
               "customer": {"id": JANE, "email": "jane.doe@example.com", "phone": "+14155550123"},
               "orders_to_redact": [1001]}  # fmt: skip
    body, headers = signed(payload, "customers/redact")
    with live_server(app) as base:
        answer = httpx.post(f"{base}/webhooks/shopify", content=body, headers=headers)
        again = httpx.post(f"{base}/webhooks/shopify", content=body, headers=headers)
    assert answer.status_code == 200 and answer.json()["erased"] is True
    assert again.status_code == 200, "Shopify may deliver twice: the second changes nothing and still answers 200"
    with synced.connect() as conn:
        profile = conn.execute(select(Customer.email, Customer.first_name, Customer.erased_at)
                               .where(Customer.id == jane)).one()  # fmt: skip
        assert is_suppressed(conn, "email", "jane.doe@example.com")
    assert profile.email is None and profile.first_name is None and profile.erased_at is not None
    assert identity(synced, JANE) is None


def test_customers_redact_without_an_email_finds_the_one_omnicast_holds(synced: Engine) -> None:
    client = TestClient(create_app(make_settings(shopify_webhook_secret=SECRET), synced))
    body, headers = signed({"customer": {"id": JANE, "email": None}}, "customers/redact")
    answer = client.post("/webhooks/shopify", content=body, headers=headers)
    assert answer.status_code == 200 and answer.json()["erased"] is True
    with synced.connect() as conn:
        assert is_suppressed(conn, "email", "jane.doe@example.com")


def test_customers_delete_unlinks_the_record_and_takes_back_shopifys_grants(synced: Engine) -> None:
    jane = identity(synced, JANE)
    assert jane is not None
    with synced.connect() as conn:
        assert consent_states(conn, [jane], "sms")[jane] is not None
    client = TestClient(create_app(make_settings(shopify_webhook_secret=SECRET), synced))
    body, headers = signed({"id": JANE, "email": "jane.doe@example.com"}, "customers/delete")
    answer = client.post("/webhooks/shopify", content=body, headers=headers)
    assert answer.status_code == 200 and answer.json()["unlinked"] == 1
    assert identity(synced, JANE) is None
    with synced.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Customer).where(Customer.id == jane)).scalar_one() == 1
        state = consent_states(conn, [jane], "sms").get(jane)
    assert state is None or state.state == "denied", "Shopify's SMS grant went with the record"


@pytest.mark.parametrize(
    ("secret", "tamper", "status"),
    [
        (None, False, 503),  # webhooks off until the secret is set
        (SECRET, True, 401),  # a body changed after signing
        ("another-secret", False, 401),  # signed with another app's secret
    ],
)
def test_an_unverified_delivery_changes_nothing(synced: Engine, secret: str | None, tamper: bool, status: int) -> None:
    client = TestClient(create_app(make_settings(shopify_webhook_secret=secret), synced))
    body, headers = signed({"customer": {"id": JANE, "email": "jane.doe@example.com"}}, "customers/redact")
    if tamper:
        body = body.replace(b"jane", b"john")
    if secret == "another-secret":
        client = TestClient(create_app(make_settings(shopify_webhook_secret=SECRET), synced))
        body, headers = signed({"customer": {"id": JANE}}, "customers/redact", secret="another-secret")
    answer = client.post("/webhooks/shopify", content=body, headers=headers)
    assert answer.status_code == status
    assert identity(synced, JANE) is not None


def test_other_topics_are_acknowledged_and_a_payload_without_an_id_is_refused(synced: Engine) -> None:
    client = TestClient(create_app(make_settings(shopify_webhook_secret=SECRET), synced))
    body, headers = signed({"id": 5}, "orders/create")
    assert client.post("/webhooks/shopify", content=body, headers=headers).json()["handled"] is False
    body, headers = signed({"customer": {"email": "x@example.com"}}, "customers/redact")
    answer = client.post("/webhooks/shopify", content=body, headers=headers)
    assert answer.status_code == 400 and "customer id" in answer.json()["error"]
    assert identity(synced, JANE) is not None
