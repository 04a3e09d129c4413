"""The pull API of ``omnicast serve``, for apps that fetch rather than receive::

    GET /v1/customers/{external_id}/cards               the customer's live in-app cards, newest first
    GET /v1/customers/{external_id}/recommendations     their top recommendations (?limit=1..50, default 10)
    GET /v1/products/{product_id}/related               the product's related products (?limit=1..50, default 10)

``external_id`` is the app's user id, the one the in-app cards carry (``channels.recipients.app_user_ids``): the
store's customer id (the Shopify Customer ID of the customers export), or for someone the store does not know, their
CRM record id; an id that is nobody's app user id (a CRM id of a store customer, an email, a person erased by
``omnicast forget``) is 404. ``product_id`` is the product's SKU or its handle (the ``/products/{handle}`` of its
page), as the recommendations answer gives them; an unknown one is 404. Related products are what the train stage
wrote to ``related_products`` (``models/recommend/related.py``: bought with it, else similar to it), only those that
can be sold now (active, published, not a gift card, in stock or stock not tracked).

Every request carries an API key from ``OMNICAST_API_KEYS`` (comma-separated, so a key can be rotated: add the new
one, move the apps, drop the old one) as ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``; keys are compared in
constant time. No key configured: 503 saying to set it. A missing or wrong key: 401 with ``WWW-Authenticate``.

Answers are JSON with a strong ``ETag`` over the body and ``Cache-Control: private, no-cache``: an app sends
``If-None-Match`` and gets 304 with no body while nothing changed. Cards are the ones the ``pull://`` in-app adapter
stored (``channels/inapp_store.py``): not retracted, not expired, at most ``MAX_CARDS``. Each answer costs three
indexed queries (the identity, the person's own ids, then the cards or recommendations), run in the threadpool.
Nothing here logs a key, an id or a card (``web.app`` logs the path with the customer's id replaced by ``…``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import Connection, and_, case, or_, select, true
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from channels.recipients import USER_ID_SOURCES, app_user_ids
from models.errors import ConfigurationError
from models.schema import Identity, InAppCard, Product, Recommendation, RelatedProduct

__all__ = ["API_KEYS_SETTING", "DEFAULT_LIMIT", "MAX_CARDS", "MAX_LIMIT", "PullApi", "api_keys", "api_router"]

API_KEYS_SETTING = "OMNICAST_API_KEYS"
GENERATE = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'
MIN_KEY_CHARS = 16
MAX_EXTERNAL_ID = 255
MAX_CARDS = 100
DEFAULT_LIMIT, MAX_LIMIT = 10, 50
CACHE = {"Cache-Control": "private, no-cache", "Vary": "Authorization, X-API-Key", "X-Content-Type-Options": "nosniff"}
ERROR_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
CHALLENGE = 'Bearer realm="omnicast"'

IDENTITIES = Identity.__table__  # type: ignore[attr-defined]
CARDS = InAppCard.__table__  # type: ignore[attr-defined]
RECOMMENDATIONS = Recommendation.__table__  # type: ignore[attr-defined]
PRODUCTS = Product.__table__  # type: ignore[attr-defined]
RELATED = RelatedProduct.__table__  # type: ignore[attr-defined]

_LIMIT = re.compile(r"^[0-9]{1,3}$")
_ETAG = re.compile(r'(?:W/)?("[^"]*")')


def api_keys(settings: Any) -> tuple[str, ...]:
    """The keys in ``settings.api_keys`` (a string or a secret, comma-separated; empty when unset).
    ``ConfigurationError`` for a key too short to be a secret."""
    value = getattr(settings, "api_keys", None)
    if value is not None and hasattr(value, "get_secret_value"):  # a pydantic SecretStr
        value = value.get_secret_value()
    if not isinstance(value, str):
        return ()
    keys = tuple(key for key in (part.strip() for part in value.split(",")) if key)
    for n, key in enumerate(keys, start=1):
        if len(key) < MIN_KEY_CHARS or any(ch.isspace() or not ch.isprintable() for ch in key):
            which = f"key {n} of {len(keys)}" if len(keys) > 1 else "the key"
            raise ConfigurationError(
                f"{API_KEYS_SETTING}: {which} is not a usable API key (at least {MIN_KEY_CHARS} printable characters, "
                f"no spaces; keys are separated by commas); generate one with {GENERATE}"
            )
    return keys


def api_router(settings: Any, engine: Engine, clock: Callable[[], datetime]) -> APIRouter:
    """The ``/v1`` routes on ``engine`` (``create_app`` mounts them)."""
    return PullApi(settings, engine, clock).router()


class PullApi:
    """The handlers, with what they share: the key digests, the database, the clock, the store's URL."""

    def __init__(self, settings: Any, engine: Engine, clock: Callable[[], datetime]) -> None:
        self.digests = tuple(hashlib.sha256(key.encode()).digest() for key in api_keys(settings))
        self.engine = engine
        self.clock = clock
        self.store_url = str(getattr(settings, "public_url", "")).rstrip("/")

    def router(self) -> APIRouter:
        router = APIRouter()
        router.add_api_route("/v1/customers/{external_id}/cards", self.cards, methods=["GET"])
        router.add_api_route("/v1/customers/{external_id}/recommendations", self.recommendations, methods=["GET"])
        router.add_api_route("/v1/products/{product_id}/related", self.related, methods=["GET"])
        return router

    # --- handlers ----------------------------------------------------------------------------------------------

    async def cards(self, external_id: str, request: Request) -> Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        if len(external_id) > MAX_EXTERNAL_ID:
            return _error("unknown customer", 404)
        cards = await run_in_threadpool(self._read_cards, external_id, self.clock())
        if cards is None:
            return _error("unknown customer", 404)
        return _answer(request, {"customer": external_id, "cards": cards})

    async def recommendations(self, external_id: str, request: Request) -> Response:
        return await self._listing(request, external_id, self._read_recommendations, "customer", "recommendations")

    async def related(self, product_id: str, request: Request) -> Response:
        return await self._listing(request, product_id, self._read_related, "product", "related")

    async def _listing(
        self, request: Request, key: str, read: Callable[[str, int], Any], subject: str, field: str
    ) -> Response:
        """A limited list about one customer or product: key checked, ``?limit`` read, 404 for an unknown one."""
        refused = self._refusal(request)
        if refused is not None:
            return refused
        limit = _limit(request)
        if isinstance(limit, Response):
            return limit
        if len(key) > MAX_EXTERNAL_ID:
            return _error(f"unknown {subject}", 404)
        items = await run_in_threadpool(read, key, limit)
        if items is None:
            return _error(f"unknown {subject}", 404)
        return _answer(request, {subject: key, field: items})

    # --- auth --------------------------------------------------------------------------------------------------

    def _refusal(self, request: Request) -> Response | None:
        """503 when no key is configured, 401 for a missing or wrong key, ``None`` when the key is one of ours."""
        if not self.digests:
            return _error(f"the pull API is off: set {API_KEYS_SETTING} (comma-separated API keys; generate one with "
                          f"{GENERATE}) and restart omnicast serve", 503)  # fmt: skip
        given = _presented_key(request)
        if given is None:
            return _error("an API key is required: send Authorization: Bearer <key> or X-API-Key: <key>", 401,
                          {"WWW-Authenticate": CHALLENGE})  # fmt: skip
        digest = hashlib.sha256(given.encode("utf-8", "surrogateescape")).digest()
        matched = False
        for known in self.digests:  # every key compared, each in constant time
            matched |= hmac.compare_digest(digest, known)
        if not matched:
            return _error("the API key is not valid", 401, {"WWW-Authenticate": f'{CHALLENGE}, error="invalid_token"'})
        return None

    # --- database ----------------------------------------------------------------------------------------------

    def _read_cards(self, external_id: str, now: datetime) -> list[Any] | None:
        with self.engine.connect() as conn:
            customer_id = _customer_id(conn, external_id)
            if customer_id is None:
                return None
            rows = conn.execute(
                select(CARDS.c.card)
                .where(CARDS.c.customer_id == customer_id, CARDS.c.retracted_at.is_(None), CARDS.c.expires_at > now)
                .order_by(CARDS.c.created_at.desc(), CARDS.c.id.desc())
                .limit(MAX_CARDS)
            )
            return [card for (card,) in rows]

    def _read_recommendations(self, external_id: str, limit: int) -> list[dict[str, Any]] | None:
        with self.engine.connect() as conn:
            customer_id = _customer_id(conn, external_id)
            if customer_id is None:
                return None
            rows = conn.execute(
                select(RECOMMENDATIONS.c.rank, RECOMMENDATIONS.c.model, RECOMMENDATIONS.c.explanation,
                       PRODUCTS.c.sku, PRODUCTS.c.title, PRODUCTS.c.handle, PRODUCTS.c.image_url, PRODUCTS.c.price)
                .join(PRODUCTS, PRODUCTS.c.id == RECOMMENDATIONS.c.product_id)
                .where(RECOMMENDATIONS.c.customer_id == customer_id, PRODUCTS.c.active == true())
                .order_by(RECOMMENDATIONS.c.rank)
                .limit(limit)
            ).all()  # fmt: skip
        return [{**self._product(row), "explanation": row.explanation, "model": row.model} for row in rows]

    def _read_related(self, product_id: str, limit: int) -> list[dict[str, Any]] | None:
        """The related products of the product whose SKU (first) or handle is ``product_id``; two indexed queries."""
        with self.engine.connect() as conn:
            found = conn.execute(
                select(PRODUCTS.c.id)
                .where(or_(PRODUCTS.c.sku == product_id, PRODUCTS.c.handle == product_id))
                .order_by(case((PRODUCTS.c.sku == product_id, 0), else_=1), PRODUCTS.c.active.desc(), PRODUCTS.c.id)
                .limit(1)
            ).scalar()
            if found is None:
                return None
            rows = conn.execute(
                select(RELATED.c.rank, RELATED.c.kind, RELATED.c.explanation,
                       PRODUCTS.c.sku, PRODUCTS.c.title, PRODUCTS.c.handle, PRODUCTS.c.image_url, PRODUCTS.c.price)
                .join(PRODUCTS, PRODUCTS.c.id == RELATED.c.related_product_id)
                .where(RELATED.c.product_id == found, _sellable())
                .order_by(RELATED.c.rank)
                .limit(limit)
            ).all()  # fmt: skip
        return [{**self._product(row), "explanation": row.explanation, "kind": row.kind} for row in rows]

    def _product(self, row: Any) -> dict[str, Any]:
        return {
            "rank": row.rank,
            "sku": row.sku,
            "title": row.title,
            "url": f"{self.store_url}/products/{row.handle}",  # as planning links a product (StoreInfo)
            "image_url": row.image_url,
            "price": row.price,
        }


def _customer_id(conn: Connection, external_id: str) -> int | None:
    """The golden profile whose app user id is ``external_id`` (the id its in-app cards carry: the store's customer id,
    else a CRM or analytics id, as ``channels.recipients.app_user_ids`` picks it); ``None`` when nobody's is. One
    lookup in the identities' (source, external id) index, then the candidate's own ids to confirm it."""
    candidates = conn.execute(
        select(IDENTITIES.c.customer_id)
        .where(IDENTITIES.c.source.in_(USER_ID_SOURCES), IDENTITIES.c.external_id == external_id)
        .distinct()
    ).scalars()
    for customer_id in sorted(candidates):  # one, but for a CRM id equal to another person's store id
        if app_user_ids(conn, [customer_id]).get(customer_id) == external_id:
            return int(customer_id)
    return None


def _sellable() -> Any:
    """Products a placement may show now (``models.recommend.related.suggestable``, kept here so the web process does
    not load the recommender): active, published, not a gift card, in stock or stock not tracked."""
    stock = PRODUCTS.c.inventory_quantity
    return and_(PRODUCTS.c.active == true(), PRODUCTS.c.published == true(), PRODUCTS.c.gift_card.is_not(true()),
                or_(stock.is_(None), stock > 0))  # fmt: skip


def _limit(request: Request) -> int | Response:
    """``?limit=`` (1..``MAX_LIMIT``, default ``DEFAULT_LIMIT``), or the 400 answer for a bad one."""
    given = request.query_params.get("limit")
    if given is not None and not (_LIMIT.fullmatch(given) and 1 <= int(given) <= MAX_LIMIT):
        return _error(f"limit must be a whole number from 1 to {MAX_LIMIT}", 400)
    return int(given) if given is not None else DEFAULT_LIMIT


def _presented_key(request: Request) -> str | None:
    """The key in ``Authorization: Bearer …``, else in ``X-API-Key``; ``None`` when neither carries one."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, credentials = header.strip().partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    key = request.headers.get("x-api-key", "").strip()
    return key or None


def _answer(request: Request, payload: dict[str, Any]) -> Response:
    """``payload`` as JSON with a strong ETag over the body; 304 without a body when ``If-None-Match`` holds it."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    headers = {**CACHE, "ETag": etag}
    if _none_match(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


def _none_match(header: str | None, etag: str) -> bool:
    """Whether ``If-None-Match`` names ``etag`` (weak comparison, as RFC 9110 §13.1.2 asks) or is ``*``."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    return etag in _ETAG.findall(header)


def _error(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps({"error": message}).encode()
    return Response(
        body, status_code=status, media_type="application/json", headers={**ERROR_HEADERS, **(headers or {})}
    )
