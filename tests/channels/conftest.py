"""Helpers for channel tests: customers with consent in the ledger database, and planner-shaped messages."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import Engine

from models.message import OutboundMessage, Recipient
from models.schema import Consent, Customer

LONG_AGO = datetime(2026, 1, 1, tzinfo=UTC)

STORE = {
    "name": "Bean & Leaf Coffee",
    "url": "https://beanandleaf.example",
    "address": "12 Roastery Lane, Portland, OR 97201, USA",
}


def planner_context(first_name: str | None = "Ann", products: int = 3, **trigger: Any) -> dict[str, Any]:
    """A context exactly as the planner passes it (the template contract)."""
    return {
        "store": dict(STORE),
        "customer": {"first_name": first_name},
        "products": [
            {
                "sku": f"BL-{i:03d}",
                "title": f"Ethiopia Yirgacheffe Lot {i}",
                "url": f"https://beanandleaf.example/products/yirgacheffe-{i}?utm_source=email&utm_medium=crm",
                "image_url": f"https://cdn.beanandleaf.example/products/yirgacheffe-{i}.jpg",
                "price": 18.5 + i,
                "explanation": "Because you bought Kenya AA Nyeri",
            }
            for i in range(products)
        ],
        "trigger": {"kind": "weekly_picks", **trigger},
    }


def add_customers(
    engine: Engine, ids: Iterable[int], *, consent: str | None = "granted", channel: str = "email"
) -> None:
    """Customers ``ids`` (emails ``c<id>@example.com``), each with a ``consent`` statement on ``channel``."""
    now = datetime.now(UTC)
    ids = list(ids)
    with engine.begin() as conn:
        conn.execute(
            insert(Customer.__table__),  # type: ignore[attr-defined]
            [{"id": i, "email": f"c{i}@example.com", "created_at": now, "updated_at": now} for i in ids],
        )
        if consent:
            grant(conn, ids, consent, channel)


def grant(conn: Any, ids: Iterable[int], state: str, channel: str, *, source: str = "shopify") -> None:
    conn.execute(
        insert(Consent.__table__),  # type: ignore[attr-defined]
        [
            {"customer_id": i, "channel": channel, "state": state, "source": source, "recorded_at": LONG_AGO}
            for i in ids
        ],
    )


def message(
    customer_id: int,
    *,
    channel: str = "email",
    occurrence: str = "weekly:2026-48",
    template: str | None = "weekly_picks",
    email: str | None = "",
    variant: str | None = None,
    **recipient: Any,
) -> OutboundMessage:
    """A planner-shaped message; ``email=""`` means the customer's default test address."""
    address = f"c{customer_id}@example.com" if email == "" else email
    return OutboundMessage(
        occurrence_key=occurrence,
        channel=channel,
        recipient=Recipient(customer_id=customer_id, email=address, first_name="Ann", **recipient),
        campaign="weekly-picks",
        template=template,
        variant=variant,
        audience="loyal-regulars",
        context=planner_context(),
    )


