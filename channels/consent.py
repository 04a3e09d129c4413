"""Consent: may we reach this customer on this channel? And the write side: unsubscribes and erasures.

Every source (Shopify, the CRM, our own unsubscribe endpoint, an erasure request) keeps one statement per
(customer, channel) in ``consents``. The gate reads all of them: the most recent ``recorded_at`` wins, a denial
wins a tie, and no statement at all means no consent. An unsubscribe is simply the newest statement, so it beats
any earlier grant, including one a daily CRM re-export keeps repeating (its ``recorded_at`` does not move).

Marketing eligibility is a separate fact: the CRM says whether someone is a marketing contact (HubSpot's
"Marketing contact status"), kept as statements on the pseudo-channel ``marketing``. A customer whose latest
``marketing`` statement is a denial gets no marketing message on any channel, whatever any channel's consent says.

Topics: an opt-out of one campaign is a statement on ``f"{channel}:{campaign}"`` (``email:weekly-picks``), made by the
preference centre; a newer ``granted`` statement there re-subscribes. A topic denial stops that campaign only; a
denial on the channel itself (unsubscribe from all) still stops everything, whatever the topics say.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import UTC, datetime
from typing import Final, Literal

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from models.db import dialect_insert
from models.schema import Consent

ConsentState = Literal["granted", "denied"]
GRANTED: Final[ConsentState] = "granted"
DENIED: Final[ConsentState] = "denied"
MARKETING: Final = "marketing"
"""Pseudo-channel of the CRM's marketing-contact status: denied = a non-marketing contact."""

CONSENTS = Consent.__table__  # type: ignore[attr-defined]


def latest_state(statements: Iterable[tuple[str, datetime]]) -> ConsentState | None:
    """The state that counts among ``(state, recorded_at)`` statements: newest wins, ``denied`` wins ties.

    ``None`` when there is no statement (which the gate treats as no consent).
    """
    best: tuple[datetime, bool] | None = None
    for state, recorded_at in statements:
        candidate = (recorded_at, state == DENIED)  # at the same instant, True (denied) sorts after False
        if best is None or candidate > best:
            best = candidate
    if best is None:
        return None
    return DENIED if best[1] else GRANTED


def consent_states(conn: Connection, customer_ids: Collection[int], channel: str) -> dict[int, ConsentState]:
    """The state that counts for each customer on ``channel``, in one query; customers with none are absent."""
    if not customer_ids:
        return {}
    query = select(CONSENTS.c.customer_id, CONSENTS.c.state, CONSENTS.c.recorded_at).where(
        CONSENTS.c.channel == channel, CONSENTS.c.customer_id.in_(sorted(set(customer_ids)))
    )
    statements: dict[int, list[tuple[str, datetime]]] = {}
    for customer_id, state, recorded_at in conn.execute(query):
        statements.setdefault(customer_id, []).append((state, recorded_at))
    states = {customer_id: latest_state(rows) for customer_id, rows in statements.items()}
    return {customer_id: state for customer_id, state in states.items() if state is not None}


def topic_channel(channel: str, campaign: str) -> str:
    """The consent channel of ``campaign``'s topic on ``channel`` (``email:weekly-picks``)."""
    return f"{channel}:{campaign}"


def consent_states_on(
    conn: Connection, customer_ids: Collection[int], channels: Collection[str]
) -> dict[tuple[int, str], ConsentState]:
    """The state that counts for each (customer, channel) of ``channels``, in one query; pairs with none are absent."""
    if not customer_ids or not channels:
        return {}
    query = select(CONSENTS.c.customer_id, CONSENTS.c.channel, CONSENTS.c.state, CONSENTS.c.recorded_at).where(
        CONSENTS.c.channel.in_(sorted(set(channels))), CONSENTS.c.customer_id.in_(sorted(set(customer_ids)))
    )
    statements: dict[tuple[int, str], list[tuple[str, datetime]]] = {}
    for customer_id, channel, state, recorded_at in conn.execute(query):
        statements.setdefault((customer_id, channel), []).append((state, recorded_at))
    states = {key: latest_state(rows) for key, rows in statements.items()}
    return {key: state for key, state in states.items() if state is not None}


def suppression_reason(
    state: ConsentState | None, marketing: ConsentState | None = None, topic: ConsentState | None = None
) -> str | None:
    """``None`` when a send is allowed; else ``opted_out`` (said no), ``opted_out_topic`` (said no to this
    campaign's topic), ``non_marketing`` (the CRM marks them a non-marketing contact) or ``no_consent`` (never
    asked). ``marketing`` is the customer's ``marketing`` state (pass ``None`` for a transactional message),
    ``topic`` their state on the campaign's topic (``None``: no statement, which does not stop anything)."""
    if state == DENIED:
        return "opted_out"
    if topic == DENIED:
        return "opted_out_topic"
    if marketing == DENIED:
        return "non_marketing"
    return None if state == GRANTED else "no_consent"


def record_unsubscribe(
    engine: Engine,
    customer_id: int,
    channel: str,
    source: str = "unsubscribe",
    at: datetime | None = None,
) -> None:
    """Write a denial for ``customer_id`` on ``channel`` as ``source``'s statement, dated now (or ``at``).

    Idempotent: the source's earlier statement is replaced, so a second click only moves the date forward.
    Use ``source="erasure"`` for a right-to-be-forgotten request.
    """
    when = at or datetime.now(UTC)
    if when.tzinfo is None:
        raise ValueError("record_unsubscribe needs an aware datetime (UTC)")
    with engine.begin() as conn:
        insert = dialect_insert(conn)(CONSENTS).values(
            customer_id=customer_id, channel=channel, state=DENIED, source=source, recorded_at=when
        )
        conn.execute(
            insert.on_conflict_do_update(
                index_elements=[CONSENTS.c.customer_id, CONSENTS.c.channel, CONSENTS.c.source],
                set_={"state": DENIED, "recorded_at": insert.excluded.recorded_at},
            )
        )
