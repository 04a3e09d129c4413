"""Tracked-link clicks: record who clicked which link of which message, and where to send them (with UTM tags)."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote, unquote_plus, urlsplit, urlunsplit

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from channels.tokens import ClickClaim
from models.schema import Click, Customer, Message

CLICKS = Click.__table__  # type: ignore[attr-defined]
CUSTOMERS = Customer.__table__  # type: ignore[attr-defined]
MESSAGES = Message.__table__  # type: ignore[attr-defined]
UTM_SOURCE = "omnicast"
UTM_MEDIUM = "email"
OUR_UTM = ("utm_source", "utm_medium", "utm_campaign", "utm_content")


def record_click(engine: Engine, claim: ClickClaim, now: datetime) -> bool:
    """Store one click; ``False`` (nothing stored) for a customer who is unknown or was erased."""
    with engine.begin() as conn:
        customer = conn.execute(select(CUSTOMERS.c.erased_at).where(CUSTOMERS.c.id == claim.customer_id)).first()
        if customer is None or customer[0] is not None:
            return False
        message_id = conn.execute(
            select(MESSAGES.c.id).where(
                MESSAGES.c.occurrence_key == claim.occurrence_key,
                MESSAGES.c.customer_id == claim.customer_id,
                MESSAGES.c.channel == claim.channel,
            )
        ).scalar()
        conn.execute(
            insert(CLICKS).values(
                message_id=message_id,
                customer_id=claim.customer_id,
                campaign=claim.campaign or None,
                variant=claim.variant,
                url=without_utm(claim.url),
                clicked_at=now,
            )  # fmt: skip
        )
    return True


def with_utm(url: str, campaign: str, variant: str | None, medium: str = UTM_MEDIUM) -> str:
    """``url`` with ``utm_source=omnicast``, ``utm_medium``, ``utm_campaign`` and ``utm_content`` (the variant).

    The rest of the query is kept byte for byte, in order; a ``utm_source``/``utm_medium``/``utm_campaign``/
    ``utm_content`` the template already set is replaced (never duplicated); other ``utm_*`` stay.
    """
    parts = urlsplit(url)
    kept = [part for part in parts.query.split("&") if part and _name(part) not in OUR_UTM]
    ours = {"utm_source": UTM_SOURCE, "utm_medium": medium, "utm_campaign": campaign, "utm_content": variant}
    added = [f"{name}={quote(value, safe='-._~')}" for name, value in ours.items() if value]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "&".join(kept + added), parts.fragment))


def without_utm(url: str) -> str:
    """``url`` without our UTM parameters (what ``clicks.url`` keeps: the page, not how we tagged it)."""
    parts = urlsplit(url)
    kept = [part for part in parts.query.split("&") if part and _name(part) not in OUR_UTM]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "&".join(kept), parts.fragment))


def _name(part: str) -> str:
    return unquote_plus(part.split("=", 1)[0]).strip().lower()
