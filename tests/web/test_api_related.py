"""The pull API's product-page placement: GET /v1/products/{sku or handle}/related, on the real app."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import insert, update
from sqlalchemy.engine import Engine

from models.schema import Product, RelatedProduct
from tests.web.conftest import Clock
from tests.web.test_api import BEARER, KEY, api_client

TRAINED = datetime(2026, 12, 1, tzinfo=UTC)


def add_related(engine: Engine, count: int, inactive: frozenset[int] = frozenset()) -> None:
    """Product 1 (SKU BL-001, handle ethiopia-guji) and ``count`` related products 101.., related in rank order."""
    with engine.begin() as conn:
        conn.execute(insert(Product.__table__), [  # type: ignore[attr-defined]
            {"id": 1, "sku": "BL-001", "handle": "ethiopia-guji", "title": "Ethiopia Guji", "price": 21.0,
             "image_url": None, "active": True},
            {"id": 2, "sku": "ethiopia-guji-old", "handle": "ethiopia-guji-old", "title": "Old Guji", "price": 1.0,
             "image_url": None, "active": True},
            *({"id": 100 + i, "sku": f"BL-1{i:02d}", "handle": f"kenya-aa-{i}", "title": f"Kenya AA Lot {i}",
               "price": 18.5 + i, "image_url": f"https://cdn.beanandleaf.example/p/{i}.jpg",
               "active": i not in inactive}
              for i in range(1, count + 1)),
        ])  # fmt: skip
        conn.execute(insert(RelatedProduct.__table__), [  # type: ignore[attr-defined]
            {"product_id": 1, "rank": i, "related_product_id": 100 + i, "score": 1.0 / i,
             "kind": "co_purchase" if i % 2 else "content",
             "explanation": "Pairs with Ethiopia Guji" if i % 2 else "Similar to Ethiopia Guji", "trained_at": TRAINED}
            for i in range(1, count + 1)
        ])  # fmt: skip


def test_related_products_in_rank_order_by_sku_or_handle_with_a_limit(engine: Engine, clock: Clock) -> None:
    add_related(engine, 60, inactive=frozenset({2}))
    client = api_client(engine, clock)

    by_sku = client.get("/v1/products/BL-001/related", headers=BEARER)
    assert by_sku.status_code == 200
    body = by_sku.json()
    assert body["product"] == "BL-001"
    assert [item["rank"] for item in body["related"]] == [1, *range(3, 12)]  # 10, the inactive product left out
    assert body["related"][0] == {
        "rank": 1, "sku": "BL-101", "title": "Kenya AA Lot 1", "url": "https://beanandleaf.example/products/kenya-aa-1",
        "image_url": "https://cdn.beanandleaf.example/p/1.jpg", "price": 19.5,
        "explanation": "Pairs with Ethiopia Guji", "kind": "co_purchase",
    }  # fmt: skip
    by_handle = client.get("/v1/products/ethiopia-guji/related", headers=BEARER).json()
    assert by_handle["related"] == body["related"]
    assert [i["rank"] for i in client.get("/v1/products/BL-001/related?limit=3", headers=BEARER).json()["related"]] == [
        1, 3, 4,
    ]  # fmt: skip
    assert len(client.get("/v1/products/BL-001/related?limit=50", headers=BEARER).json()["related"]) == 50
    for bad in ("0", "51", "ten", ""):
        answer = client.get(f"/v1/products/BL-001/related?limit={bad}", headers=BEARER)
        assert answer.status_code == 400 and "1 to 50" in answer.json()["error"]


def test_only_products_that_can_be_sold_now_are_shown(engine: Engine, clock: Clock) -> None:
    add_related(engine, 5)
    products = Product.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        conn.execute(update(products).where(products.c.id == 101).values(inventory_quantity=0))  # sold out
        conn.execute(update(products).where(products.c.id == 102).values(published=False))
        conn.execute(update(products).where(products.c.id == 103).values(gift_card=True))
        conn.execute(update(products).where(products.c.id == 104).values(inventory_quantity=3))
    related = api_client(engine, clock).get("/v1/products/BL-001/related", headers=BEARER).json()["related"]
    assert [item["sku"] for item in related] == ["BL-104", "BL-105"]


def test_a_sku_wins_over_another_products_handle_and_unknown_products_are_404(engine: Engine, clock: Clock) -> None:
    add_related(engine, 3)
    client = api_client(engine, clock)
    none = client.get("/v1/products/ethiopia-guji-old/related", headers=BEARER)  # its own SKU: no related yet
    assert none.status_code == 200 and none.json() == {"product": "ethiopia-guji-old", "related": []}
    for unknown in ("BL-999", "x" * 300, "1"):  # the row id is not a product id of the store
        answer = client.get(f"/v1/products/{unknown}/related", headers=BEARER)
        assert answer.status_code == 404 and answer.json() == {"error": "unknown product"}


def test_the_key_is_required_and_the_etag_gives_304(sqlite_engine: Engine, clock: Clock) -> None:
    add_related(sqlite_engine, 5)
    client = api_client(sqlite_engine, clock)
    path = "/v1/products/BL-001/related"
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"X-API-Key": KEY + "x"}).status_code == 401
    off = api_client(sqlite_engine, clock, api_keys="").get(path, headers=BEARER)
    assert off.status_code == 503 and "OMNICAST_API_KEYS" in off.json()["error"]
    first = client.get(path, headers=BEARER)
    etag = first.headers["etag"]
    cached = client.get(path, headers={**BEARER, "If-None-Match": etag})
    assert (
        cached.status_code == 304 and cached.content == b"" and cached.headers["cache-control"] == "private, no-cache"
    )
    assert client.get(f"{path}?limit=2", headers={**BEARER, "If-None-Match": etag}).status_code == 200
    assert client.get("/m/v1/products/ethiopia-guji/related", headers=BEARER).json() == first.json() | {
        "product": "ethiopia-guji"
    }
