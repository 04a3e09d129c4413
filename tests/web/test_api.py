"""The pull API of `omnicast serve`: API keys, unknown customers, live cards newest first, recommendations, ETag/304,
and nothing about the customer in the logs."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert
from sqlalchemy.engine import Engine

from channels.inapp_store import InAppStore
from channels.outbox import ledger_hash
from channels.render import CardRenderer
from flows.settings import Settings
from models.errors import ConfigurationError
from models.message import OutboundMessage
from models.schema import Identity, Product, Recommendation
from tests.channels.conftest import add_customers, message
from tests.web.conftest import SECRET, SERVE_URL, Clock, live_server
from web.api import api_keys
from web.app import create_app

KEY = "test-key-0123456789abcdef"
OTHER_KEY = "rotated-key-fedcba9876543210"
SHOP_ID = "7301234567890"  # the app's user id: the store's (Shopify) customer id
BEARER = {"Authorization": f"Bearer {KEY}"}
SEEN = datetime(2026, 1, 1, tzinfo=UTC)


def api_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"secret_key": SECRET, "serve_url": SERVE_URL, "public_url": "https://beanandleaf.example",
                              "api_keys": f"{KEY}, {OTHER_KEY}", **overrides}  # fmt: skip
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def api_client(engine: Engine, clock: Clock, **overrides: Any) -> TestClient:
    return TestClient(create_app(api_settings(**overrides), engine, clock=clock))


def add_shop_customers(engine: Engine, ids: dict[int, str]) -> None:
    """Customers with a Shopify identity each: customer id → the store's customer id."""
    add_customers(engine, ids, channel="inapp")
    with engine.begin() as conn:
        conn.execute(insert(Identity.__table__), [  # type: ignore[attr-defined]
            {"customer_id": i, "source": "shopify", "external_id": external, "seen_at": SEEN}
            for i, external in ids.items()
        ])  # fmt: skip


def card(customer_id: int, occurrence: str) -> OutboundMessage:
    return message(customer_id, channel="inapp", occurrence=occurrence)


def store_cards(engine: Engine, at: datetime, messages: list[OutboundMessage], ttl_days: float = 14) -> None:
    channel = InAppStore(engine, CardRenderer(), ttl=timedelta(days=ttl_days), clock=lambda: at)
    results = channel.send_batch(messages)
    assert all(result.status == "sent" for result in results), results


def add_recommendations(engine: Engine, customer_id: int, count: int, inactive: set[int] = frozenset()) -> None:  # type: ignore[assignment]
    with engine.begin() as conn:
        conn.execute(insert(Product.__table__), [  # type: ignore[attr-defined]
            {"id": 100 + i, "sku": f"BL-{i:03d}", "handle": f"kenya-aa-{i}", "title": f"Kenya AA Lot {i}",
             "price": 18.5 + i, "image_url": f"https://cdn.beanandleaf.example/p/{i}.jpg", "consumable": True,
             "active": i not in inactive}
            for i in range(1, count + 1)
        ])  # fmt: skip
        conn.execute(insert(Recommendation.__table__), [  # type: ignore[attr-defined]
            {"customer_id": customer_id, "product_id": 100 + i, "rank": i, "score": 1.0 / i, "model": "hybrid",
             "explanation": "Because you bought Ethiopia Guji", "trained_at": datetime(2026, 12, 1, tzinfo=UTC)}
            for i in range(1, count + 1)
        ])  # fmt: skip


# --- keys ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["cards", "recommendations"])
def test_without_configured_keys_the_api_is_off_and_says_how_to_turn_it_on(
    sqlite_engine: Engine, clock: Clock, route: str
) -> None:
    add_shop_customers(sqlite_engine, {1: SHOP_ID})
    for keys in (None, "", " , "):
        answer = api_client(sqlite_engine, clock, api_keys=keys).get(f"/v1/customers/{SHOP_ID}/{route}", headers=BEARER)
        assert answer.status_code == 503 and "OMNICAST_API_KEYS" in answer.json()["error"]
        assert answer.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("headers", "challenge"),
    [
        ({}, 'Bearer realm="omnicast"'),
        ({"Authorization": "Bearer "}, 'Bearer realm="omnicast"'),
        ({"Authorization": f"Basic {KEY}"}, 'Bearer realm="omnicast"'),
        ({"Authorization": f"Bearer {KEY}x"}, 'Bearer realm="omnicast", error="invalid_token"'),
        ({"Authorization": f"Bearer {KEY[:-1]}"}, 'Bearer realm="omnicast", error="invalid_token"'),
        ({"X-API-Key": "nope"}, 'Bearer realm="omnicast", error="invalid_token"'),
        ({"X-API-Key": f"{KEY},{OTHER_KEY}"}, 'Bearer realm="omnicast", error="invalid_token"'),
    ],
)
def test_a_missing_or_wrong_key_is_401_with_a_challenge(
    sqlite_engine: Engine, clock: Clock, headers: dict[str, str], challenge: str
) -> None:
    add_shop_customers(sqlite_engine, {1: SHOP_ID})
    client = api_client(sqlite_engine, clock)
    for route in ("cards", "recommendations"):
        answer = client.get(f"/v1/customers/{SHOP_ID}/{route}", headers=headers)
        assert answer.status_code == 401 and answer.headers["www-authenticate"] == challenge
        assert "error" in answer.json() and KEY not in answer.text and "etag" not in answer.headers


@pytest.mark.parametrize(
    "headers",
    [BEARER, {"Authorization": f"bearer   {OTHER_KEY}"}, {"X-API-Key": KEY}, {"x-api-key": f" {OTHER_KEY} "}],
)
def test_either_configured_key_in_either_header_is_accepted(
    sqlite_engine: Engine, clock: Clock, headers: dict[str, str]
) -> None:
    add_shop_customers(sqlite_engine, {1: SHOP_ID})
    answer = api_client(sqlite_engine, clock).get(f"/v1/customers/{SHOP_ID}/cards", headers=headers)
    assert answer.status_code == 200 and answer.json() == {"customer": SHOP_ID, "cards": []}


def test_keys_come_from_OMNICAST_API_KEYS_and_a_weak_key_stops_the_app(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMNICAST_API_KEYS", f"{KEY},{OTHER_KEY},")
    assert api_keys(Settings(_env_file=None)) == (KEY, OTHER_KEY)  # type: ignore[call-arg]
    assert api_keys(object()) == ()
    with pytest.raises(ConfigurationError, match="OMNICAST_API_KEYS: key 2 of 2 is not a usable API key") as caught:
        create_app(api_settings(api_keys=f"{KEY},short"), sqlite_engine)
    assert "short" not in str(caught.value) and KEY not in str(caught.value)


# --- customers -------------------------------------------------------------------------------------------------------


def test_the_app_user_id_finds_the_customer_and_any_other_id_is_404(engine: Engine, clock: Clock) -> None:
    """The app's user id is the id the cards carry: the store's customer id, a CRM id only for a CRM-only person."""
    add_shop_customers(engine, {1: SHOP_ID})
    add_customers(engine, [2], channel="inapp")
    with engine.begin() as conn:
        conn.execute(insert(Identity.__table__), [  # type: ignore[attr-defined]
            {"customer_id": 1, "source": "crm", "external_id": "crm-41", "seen_at": SEEN},
            {"customer_id": 2, "source": "crm", "external_id": "crm-42", "seen_at": SEEN},
        ])  # fmt: skip
    client = api_client(engine, clock)
    assert client.get("/v1/customers/crm-42/cards", headers=BEARER).json() == {"customer": "crm-42", "cards": []}
    for external in ("7309999999999", "1", "2", "crm-41", "c1@example.com", "x" * 300):
        for route in ("cards", "recommendations"):
            answer = client.get(f"/v1/customers/{external}/{route}", headers=BEARER)
            assert answer.status_code == 404 and answer.json() == {"error": "unknown customer"}


# --- cards -----------------------------------------------------------------------------------------------------------


def test_cards_are_the_live_ones_newest_first(engine: Engine, clock: Clock) -> None:
    add_shop_customers(engine, {1: SHOP_ID, 2: "7300000000002"})
    now = clock.now
    store_cards(engine, now - timedelta(days=3), [card(1, "weekly:2026-46"), card(2, "weekly:2026-46")])
    store_cards(engine, now - timedelta(days=2), [card(1, "cart:2026-12-01")])
    store_cards(engine, now - timedelta(days=1), [card(1, "weekly:2026-48")])
    store_cards(engine, now - timedelta(days=2), [card(1, "flash:2026-12-01")], ttl_days=1)  # expired yesterday
    store_cards(engine, now - timedelta(hours=1), [
        replace(card(1, "cart:2026-12-01:retract"), retract=True, context={"retracts": "cart:2026-12-01"})
    ])  # fmt: skip

    answer = api_client(engine, clock).get(f"/v1/customers/{SHOP_ID}/cards", headers=BEARER)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["customer"] == SHOP_ID
    assert [c["id"] for c in body["cards"]] == [ledger_hash(card(1, occ).ledger_key)
                                                for occ in ("weekly:2026-48", "weekly:2026-46")]  # fmt: skip
    assert all(c["customer_id"] == 1 and c["title"] and c["campaign"] == "weekly-picks" for c in body["cards"])
    assert answer.headers["cache-control"] == "private, no-cache" and answer.headers["x-content-type-options"]

    clock.now += timedelta(days=12)  # the older card expires (14 days after it was stored)
    later = api_client(engine, clock).get(f"/v1/customers/{SHOP_ID}/cards", headers=BEARER).json()
    assert [c["id"] for c in later["cards"]] == [ledger_hash(card(1, "weekly:2026-48").ledger_key)]


def test_the_api_answers_under_the_serve_url_path_too(sqlite_engine: Engine, clock: Clock) -> None:
    add_shop_customers(sqlite_engine, {1: SHOP_ID})
    client = api_client(sqlite_engine, clock)
    assert client.get(f"/m/v1/customers/{SHOP_ID}/cards", headers=BEARER).status_code == 200


# --- recommendations -------------------------------------------------------------------------------------------------


def test_recommendations_in_rank_order_with_product_details_and_a_limit(engine: Engine, clock: Clock) -> None:
    add_shop_customers(engine, {1: SHOP_ID, 2: "7300000000002"})
    add_recommendations(engine, 1, 60, inactive={2})
    client = api_client(engine, clock)

    default = client.get(f"/v1/customers/{SHOP_ID}/recommendations", headers=BEARER)
    assert default.status_code == 200
    items = default.json()["recommendations"]
    assert [item["rank"] for item in items] == [1, *range(3, 12)]  # 10, the inactive product left out
    assert items[0] == {
        "rank": 1, "sku": "BL-001", "title": "Kenya AA Lot 1", "url": "https://beanandleaf.example/products/kenya-aa-1",
        "image_url": "https://cdn.beanandleaf.example/p/1.jpg", "price": 19.5,
        "explanation": "Because you bought Ethiopia Guji", "model": "hybrid",
    }  # fmt: skip

    three = client.get(f"/v1/customers/{SHOP_ID}/recommendations?limit=3", headers=BEARER).json()
    assert [item["rank"] for item in three["recommendations"]] == [1, 3, 4]
    most = client.get(f"/v1/customers/{SHOP_ID}/recommendations?limit=50", headers=BEARER).json()
    assert len(most["recommendations"]) == 50
    for bad in ("0", "51", "-1", "ten", "1e1", ""):
        answer = client.get(f"/v1/customers/{SHOP_ID}/recommendations?limit={bad}", headers=BEARER)
        assert answer.status_code == 400 and "1 to 50" in answer.json()["error"]
    none = client.get("/v1/customers/7300000000002/recommendations", headers=BEARER)
    assert none.json() == {"customer": "7300000000002", "recommendations": []}


# --- caching ---------------------------------------------------------------------------------------------------------


def test_etag_gives_304_until_the_body_changes(engine: Engine, clock: Clock) -> None:
    add_shop_customers(engine, {1: SHOP_ID})
    store_cards(engine, clock.now - timedelta(days=1), [card(1, "weekly:2026-48")])
    client = api_client(engine, clock)
    path = f"/v1/customers/{SHOP_ID}/cards"

    first = client.get(path, headers=BEARER)
    etag = first.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
    assert client.get(path, headers=BEARER).headers["etag"] == etag  # stable

    for given in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        cached = client.get(path, headers={**BEARER, "If-None-Match": given})
        assert cached.status_code == 304 and cached.content == b"" and cached.headers["etag"] == etag
        assert cached.headers["cache-control"] == "private, no-cache"
    assert client.get(path, headers={**BEARER, "If-None-Match": '"other"'}).status_code == 200
    assert client.get(path, headers={"If-None-Match": etag}).status_code == 401  # the key first, always

    store_cards(engine, clock.now - timedelta(hours=1), [card(1, "birthday:2026:1")])
    changed = client.get(path, headers={**BEARER, "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag and len(changed.json()["cards"]) == 2

    recs = f"/v1/customers/{SHOP_ID}/recommendations"
    add_recommendations(engine, 1, 5)
    tags = {client.get(f"{recs}?limit={n}", headers=BEARER).headers["etag"] for n in (3, 4, 5)}
    assert len(tags) == 3 and etag not in tags


# --- logs ------------------------------------------------------------------------------------------------------------


def test_no_customer_id_key_or_card_in_the_logs_of_a_real_server(
    sqlite_engine: Engine, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    add_shop_customers(sqlite_engine, {1: SHOP_ID})
    store_cards(sqlite_engine, clock.now - timedelta(days=1), [card(1, "weekly:2026-48")])
    add_recommendations(sqlite_engine, 1, 3)
    caplog.set_level(logging.DEBUG)
    wrong = {"X-API-Key": "wrong-key-0123456789"}
    with (
        live_server(create_app(api_settings(), sqlite_engine, clock=clock)) as base,
        httpx.Client(base_url=base) as http,
    ):
        assert http.get(f"/v1/customers/{SHOP_ID}/cards", headers=BEARER).status_code == 200
        assert http.get(f"/m/v1/customers/{SHOP_ID}/recommendations?limit=2", headers=BEARER).status_code == 200
        assert http.get("/v1/customers/c1@example.com/cards", headers=BEARER).status_code == 404
        assert http.get(f"/v1/customers/{SHOP_ID}/cards", headers=wrong).status_code == 401
    server_side = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]  # the client logs URLs
    logged = "\n".join(f"{r.name} {r.getMessage()}" for r in server_side)
    assert "GET /v1/customers/…/cards 200" in logged and "GET /m/v1/customers/…/recommendations 200" in logged
    assert "GET /v1/customers/…/cards 404" in logged and "GET /v1/customers/…/cards 401" in logged
    for secret in (SHOP_ID, "c1@example.com", KEY, "wrong-key", "Kenya AA", "Yirgacheffe", "weekly:2026-48"):
        assert secret not in logged
