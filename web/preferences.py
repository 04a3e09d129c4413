"""The preference centre's reads and writes: what a customer gets on a channel, and their answers as consent statements.

Conventions (docs/notes of issue 6, ``models.consent``):

* opting out of all marketing email is a denial on the channel itself (``email``), source ``unsubscribe``, written by
  ``models.consent.record_unsubscribe`` (the same statement the RFC 8058 one-click POST makes);
* opting out of one topic is a denial on ``f"{channel}:{campaign}"`` (``email:weekly-picks``), source
  ``preference_centre``; opting back in is a ``granted`` statement of the same source;
* re-subscribing is a ``granted`` statement on the channel, source ``preference_centre``, dated after every earlier
  statement on that channel, so it wins over the opt-out (the newest statement wins; a later one-click wins again).

Topics are the campaigns that send on the channel: the store's campaign files first (``OMNICAST_CAMPAIGNS_DIR``, each
with the ``topic:`` label and line it gives customers), then any other active campaign of the ``campaigns`` table
(named after itself).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from models.campaigns import Campaign as CampaignSpec
from models.campaigns import topic_label
from models.consent import CONSENTS, DENIED, GRANTED, ConsentState, latest_state, record_unsubscribe
from models.db import dialect_insert
from models.schema import Campaign, Customer

CUSTOMERS = Customer.__table__  # type: ignore[attr-defined]
CAMPAIGNS = Campaign.__table__  # type: ignore[attr-defined]
SOURCE = "preference_centre"
Action = Literal["unsubscribe_all", "resubscribe", "topics"]
ACTIONS: tuple[Action, ...] = ("unsubscribe_all", "resubscribe", "topics")

@dataclass(frozen=True)
class Topic:
    """One campaign a customer can opt out of on its own."""

    name: str
    label: str
    description: str


@dataclass(frozen=True)
class TopicChoice:
    topic: Topic
    receiving: bool


@dataclass(frozen=True)
class Preferences:
    """What a customer gets on ``channel``: the channel's consent state and, per topic, whether they opted out."""

    customer_id: int
    channel: str
    erased: bool
    state: ConsentState | None
    topics: tuple[TopicChoice, ...]

    @property
    def subscribed(self) -> bool:
        return self.state == GRANTED


def topics(conn: Connection, channel: str, campaigns: Sequence[CampaignSpec]) -> list[Topic]:
    """The topics of ``channel``: the campaign files' campaigns that use it, then the stored active ones that do."""
    found = [Topic(c.name, c.topic.label, c.topic.description) for c in campaigns if channel in c.channels]
    names = {topic.name for topic in found}
    stored = conn.execute(
        select(CAMPAIGNS.c.name, CAMPAIGNS.c.channels).where(CAMPAIGNS.c.active).order_by(CAMPAIGNS.c.name)
    )
    for name, channels in stored:
        if name not in names and channel in {part.strip() for part in (channels or "").split(",")}:
            found.append(Topic(name, topic_label(name), ""))
    return found


def customer_exists(conn: Connection, customer_id: int) -> tuple[bool, bool]:
    """``(exists, erased)`` for a customer id taken from a token."""
    row = conn.execute(select(CUSTOMERS.c.erased_at).where(CUSTOMERS.c.id == customer_id)).first()
    return (row is not None, row is not None and row[0] is not None)


def read_preferences(
    conn: Connection, customer_id: int, channel: str, campaigns: Sequence[CampaignSpec]
) -> Preferences | None:
    """The customer's preferences on ``channel``; ``None`` when no such customer exists."""
    exists, erased = customer_exists(conn, customer_id)
    if not exists:
        return None
    available = topics(conn, channel, campaigns)
    statements = _statements(conn, customer_id, [channel, *(_topic_channel(channel, t.name) for t in available)])
    choices = tuple(
        TopicChoice(topic, latest_state(statements.get(_topic_channel(channel, topic.name), [])) != DENIED)
        for topic in available
    )
    return Preferences(customer_id, channel, erased, latest_state(statements.get(channel, [])), choices)


def apply_choices(
    engine: Engine,
    customer_id: int,
    channel: str,
    action: Action,
    chosen: Collection[str],
    now: datetime,
    campaigns: Sequence[CampaignSpec],
) -> None:
    """Record what the customer asked for (see the module docstring); topics not offered are ignored."""
    if action == "unsubscribe_all":
        unsubscribe(engine, customer_id, channel, now)
        return
    with engine.begin() as conn:
        available = [topic.name for topic in topics(conn, channel, campaigns)]
        channels = [_topic_channel(channel, name) for name in available]
        statements = _statements(conn, customer_id, [channel, *channels])
        for name, topic_channel in zip(available, channels, strict=True):
            current = latest_state(statements.get(topic_channel, []))
            wanted = GRANTED if name in chosen else DENIED
            if (current == DENIED) != (wanted == DENIED):
                record_statement(conn, customer_id, topic_channel, wanted, _after(now, statements.get(topic_channel)))
        if action == "resubscribe" and latest_state(statements.get(channel, [])) != GRANTED:
            record_statement(conn, customer_id, channel, GRANTED, _after(now, statements.get(channel)))


def unsubscribe(engine: Engine, customer_id: int, channel: str, now: datetime) -> None:
    """The opt-out of the whole channel (one-click POST, or the page's button): a denial, source ``unsubscribe``,
    dated after every earlier statement on the channel so that it is the one that counts."""
    with engine.connect() as conn:
        statements = _statements(conn, customer_id, [channel]).get(channel)
    record_unsubscribe(engine, customer_id, channel, source="unsubscribe", at=_after(now, statements))


def record_statement(
    conn: Connection, customer_id: int, channel: str, state: ConsentState, at: datetime, source: str = SOURCE
) -> None:
    """``source``'s statement about ``customer_id`` on ``channel`` (replacing its earlier one)."""
    insert = dialect_insert(conn)(CONSENTS).values(
        customer_id=customer_id, channel=channel, state=state, source=source, recorded_at=at
    )
    conn.execute(
        insert.on_conflict_do_update(
            index_elements=[CONSENTS.c.customer_id, CONSENTS.c.channel, CONSENTS.c.source],
            set_={"state": insert.excluded.state, "recorded_at": insert.excluded.recorded_at},
        )
    )


def _topic_channel(channel: str, topic: str) -> str:
    return f"{channel}:{topic}"


def _statements(conn: Connection, customer_id: int, channels: Iterable[str]) -> dict[str, list[tuple[str, datetime]]]:
    wanted = sorted(set(channels))
    query = select(CONSENTS.c.channel, CONSENTS.c.state, CONSENTS.c.recorded_at).where(
        CONSENTS.c.customer_id == customer_id, CONSENTS.c.channel.in_(wanted)
    )
    found: dict[str, list[tuple[str, datetime]]] = {}
    for channel, state, recorded_at in conn.execute(query):
        found.setdefault(channel, []).append((state, recorded_at))
    return found


def _after(now: datetime, statements: list[tuple[str, datetime]] | None) -> datetime:
    """``now``, or just after the newest earlier statement if that is not older (a clock step, a CRM row dated
    ahead): the customer's own latest answer must be the newest statement."""
    newest = max((recorded_at for _, recorded_at in statements or []), default=None)
    return now if newest is None or newest < now else newest + timedelta(microseconds=1)
