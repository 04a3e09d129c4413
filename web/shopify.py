"""Shopify's webhooks: a customer deleted in the store, and the privacy webhooks every Shopify app must answer.

Shopify signs each delivery: ``X-Shopify-Hmac-Sha256`` is the base64 HMAC-SHA256 of the raw body under the app's
client secret (``OMNICAST_SHOPIFY_WEBHOOK_SECRET``); ``X-Shopify-Topic`` names the event. Topics handled:

* ``customers/redact`` — the store owner (or the customer, through them) asks for erasure: done as `omnicast forget`
  does it (the address goes on the suppression list as a hash, the profile's personal data is blanked, the source
  records are deleted), for the payload's email, or the email omnicast holds for that Shopify customer id;
* ``customers/delete`` — the customer record is gone from the store: its identity is unlinked and Shopify's consent
  grants for that profile are taken back (its denials stay), as a sync does for a record an API says it deleted;
* ``customers/data_request`` — acknowledged and logged (count only): the data omnicast holds is what
  ``omnicast profile`` shows; ``shop/redact`` — acknowledged (the store uninstalled the app: drop the database).

Every other topic is acknowledged with 200 and ignored, so Shopify does not retry it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from models.erasure import forget
from models.identity import SHOPIFY
from models.schema import Customer, Identity
from models.sync import unlink_records

log = logging.getLogger(__name__)
_identities = Identity.__table__  # type: ignore[attr-defined]
_customers = Customer.__table__  # type: ignore[attr-defined]

TOPIC_HEADER = "x-shopify-topic"
SIGNATURE_HEADER = "x-shopify-hmac-sha256"


class ShopifyPayloadError(ValueError):
    """The signed body does not hold what its topic needs (a customer id)."""


@dataclass
class ShopifyOutcome:
    """What a delivery did: its topic, whether it was acted on, and what happened (counts, never an address)."""

    topic: str
    handled: bool
    erased: bool = False
    unlinked: int = 0
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def signature_matches(body: bytes, header: str | None, secret: str) -> bool:
    """Whether ``header`` is the base64 HMAC-SHA256 of ``body`` under ``secret`` (constant-time compare)."""
    if not header or not secret:
        return False
    expected = base64.b64encode(hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest())
    return hmac.compare_digest(expected, header.strip().encode("ascii", "replace"))


def handle_shopify(engine: Engine, topic: str, payload: dict[str, Any], now: datetime) -> ShopifyOutcome:
    """Act on one verified delivery (see the module docstring)."""
    if topic == "customers/redact":
        return _redact(engine, payload, now)
    if topic == "customers/delete":
        customer_id = _customer_id(payload.get("id"), topic)
        with engine.begin() as conn:
            unlinked = unlink_records(conn, SHOPIFY, [customer_id])
        log.info("shopify customers/delete: %d identity unlinked", unlinked)
        return ShopifyOutcome(topic, handled=True, unlinked=unlinked)
    if topic in ("customers/data_request", "shop/redact"):
        log.info("shopify %s acknowledged", topic)
        return ShopifyOutcome(topic, handled=True, note="acknowledged")
    return ShopifyOutcome(topic, handled=False, note="topic not used by omnicast")


def _redact(engine: Engine, payload: dict[str, Any], now: datetime) -> ShopifyOutcome:
    customer = payload.get("customer")
    if not isinstance(customer, dict):
        raise ShopifyPayloadError("customers/redact needs a 'customer' object with 'id' and 'email'")
    customer_id = _customer_id(customer.get("id"), "customers/redact")
    email = customer.get("email") if isinstance(customer.get("email"), str) and customer.get("email") else None
    if email is None:
        email = _stored_email(engine, customer_id)
    if email is None:
        with engine.begin() as conn:
            unlinked = unlink_records(conn, SHOPIFY, [customer_id])
        return ShopifyOutcome("customers/redact", handled=True, unlinked=unlinked,
                              note="no email known for this customer: the store record was unlinked")  # fmt: skip
    report = forget(engine, email, now=now)
    log.info("shopify customers/redact: %d profile(s) erased", len(report.customer_ids))
    return ShopifyOutcome("customers/redact", handled=True, erased=report.found,
                          note="erased" if report.found else "not found; the address is suppressed")  # fmt: skip


def _customer_id(value: Any, topic: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip().isdigit():
        raise ShopifyPayloadError(f"{topic} needs the Shopify customer id (a number)")
    return str(value).strip()


def _stored_email(engine: Engine, customer_id: str) -> str | None:
    """The email omnicast holds for this Shopify customer: its source record's, else its profile's."""
    with engine.connect() as conn:
        query = select(_identities.c.email, _identities.c.customer_id).where(
            (_identities.c.source == SHOPIFY) & (_identities.c.external_id == customer_id)
        )
        row = conn.execute(query).first()
        if row is None:
            return None
        if row.email:
            return str(row.email)
        query = select(func.lower(_customers.c.email)).where(_customers.c.id == row.customer_id)
        profile = conn.execute(query).scalar()
        return str(profile) if profile else None
