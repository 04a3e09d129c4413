"""In-app cards taken back when their reason has ended: the cart was bought (or emptied), the product running low
was ordered again. A card that says "still in your cart" after the purchase reads wrong for the rest of its life.

Each daily run looks at the cart and refill cards the in-app channel delivered in the last 30 days (no card lives
longer) and plans a retraction (``OutboundMessage.retract``) for each whose moment has ended, judged exactly as
planning judges what a cart or refill email may still show (``models.planning.own_items``). The retraction's ledger
key is the card's own with ``:retract`` (so one per card), and its context names the card (``retracts``: the
occurrence key that delivered it); the in-app adapters turn it into a ``card.retracted`` event or take the card out
of the feed. Retractions go through the same dispatch path and never need consent.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.engine import Engine

from models.db import session_scope
from models.message import OutboundMessage, Recipient
from models.planning import Target, own_items
from models.schema import Message, TriggerOccurrence

MESSAGES = Message.__table__  # type: ignore[attr-defined]
OCCURRENCES = TriggerOccurrence.__table__  # type: ignore[attr-defined]
KINDS = ("abandoned_cart", "replenishment")
CARD_LIFETIME = timedelta(days=30)
SUFFIX = ":retract"


def plan_retractions(engine: Engine, now: datetime | None = None) -> list[OutboundMessage]:
    """One retraction per delivered cart or refill card whose moment has ended (see the module docstring)."""
    now = now or datetime.now(UTC)
    with session_scope(engine) as session:
        rows = session.execute(
            select(MESSAGES.c.occurrence_key, MESSAGES.c.customer_id, MESSAGES.c.campaign, OCCURRENCES.c.payload)
            .join(OCCURRENCES, OCCURRENCES.c.occurrence_key == MESSAGES.c.occurrence_key)
            .where(MESSAGES.c.channel == "inapp", MESSAGES.c.state == "sent", OCCURRENCES.c.kind.in_(KINDS))
            .where(MESSAGES.c.sent_at >= now - CARD_LIFETIME)
        ).all()
        if not rows:
            return []
        targets = [Target(key, int(cid), dict(payload or {})) for key, cid, _, payload in rows]
        own = own_items(session, targets)
    return [
        OutboundMessage(
            occurrence_key=f"{key}{SUFFIX}",
            channel="inapp",
            recipient=Recipient(customer_id=int(cid)),
            campaign=campaign or "",
            variant="retract",
            context={"retracts": key},
            retract=True,
            marketing=False,
        )
        for key, cid, campaign, _ in rows
        if not own.get((key, int(cid)))
    ]


__all__ = ["plan_retractions"]
