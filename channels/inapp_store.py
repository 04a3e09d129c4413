"""In-app cards for apps that fetch them: ``OMNICAST_INAPP_URL=pull://`` (or ``pull://cards``).

Each card is built exactly as the feed and the webhook build it (``channels.inapp.build_card``: the template, then
``id`` from the ledger key, campaign, variant, customer_id, expires_at, checked by ``card_errors``) and stored in the
``inapp_cards`` table of the run's own database (``OMNICAST_DATABASE_URL``); ``omnicast serve`` answers
``GET /v1/customers/{external_id}/cards`` from it (``web/api.py``). Nothing leaves the machine at send time.

* A batch is one transaction: every valid card inserted, keyed by its id, ``ON CONFLICT DO NOTHING`` — a retried
  message (same ledger key, same card id) is stored once and keeps its first version.
* A retraction (``message.retract``) sets ``retracted_at`` on the card it names (``retracted_card_id``: context
  ``retracts`` or ``card_id``), only when that card belongs to the same customer; the API stops serving it. A
  retraction whose card was never stored withdraws nothing and is still sent (there is nothing to show).
* An invalid card fails that message permanently and stores nothing for it; a database error fails the batch as
  retryable (a later run stores it: the ids make that safe).
* ``already_delivered`` reads the table: a card is delivered when its row exists, a retraction when its card's row is
  marked retracted.

Errors and logs name counts and exception types only, never a card, a customer id or the database's error text
(it may quote parameters).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from pydantic import Field
from sqlalchemy import and_, bindparam, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from channels.base import (
    Channel,
    ChannelConfigError,
    ChannelError,
    DeliveryResult,
    PermanentChannelError,
    RetryableChannelError,
)
from channels.inapp import DEFAULT_TTL, MAX_TTL, build_card
from channels.inapp_webhook import retracted_card_id
from channels.outbox import ledger_hash
from channels.render import CardRenderer
from channels.spec import AdapterOptions, ChannelResources, ChannelTarget
from models.db import dialect_insert, make_engine
from models.message import LedgerKey, OutboundMessage
from models.schema import InAppCard

__all__ = ["CARDS", "HOSTS", "InAppStore", "InAppStoreOptions"]

CARDS = InAppCard.__table__  # type: ignore[attr-defined]
HOSTS = ("", "cards")
"""``pull://`` and ``pull://cards`` name the same place: the run's database."""
PROVIDER = "inapp_cards#"
CHUNK = 500


class InAppStoreOptions(AdapterOptions):
    """``pull://?ttl_days=14``: how long a card is served."""

    ttl_days: float = Field(DEFAULT_TTL.total_seconds() / 86400, gt=0, le=MAX_TTL.days,
                            description="how long a card stays in the app")  # fmt: skip


class InAppStore(Channel):
    """Stores validated content cards (and their retractions) in ``inapp_cards`` for the pull API.

    ``engine`` is disposed by ``close`` only when ``owns_engine`` (``open_channel`` opens one on
    ``OMNICAST_DATABASE_URL``). ``clock`` (aware, UTC) dates the cards and is injectable for tests.
    """

    name = "inapp"
    consent_channel = "inapp"
    batch_size = 500
    knows_deliveries = True
    schemes: ClassVar[tuple[str, ...]] = ("pull",)
    Options: ClassVar[type[AdapterOptions]] = InAppStoreOptions

    def __init__(
        self,
        engine: Engine,
        renderer: CardRenderer,
        *,
        ttl: timedelta = DEFAULT_TTL,
        owns_engine: bool = False,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not timedelta(0) < ttl <= MAX_TTL:
            raise ChannelConfigError(f"in-app card ttl must be between 0 and 30 days, not {ttl}")
        self.engine = engine
        self.renderer = renderer
        self.ttl = ttl
        self.owns_engine = owns_engine
        self.clock = clock or (lambda: datetime.now(UTC))

    def __repr__(self) -> str:  # never the database URL (it may hold a password)
        return f"InAppStore(database={self.engine.dialect.name!r}, ttl={self.ttl})"

    @classmethod
    def open_channel(cls, target: ChannelTarget, resources: ChannelResources) -> Channel:
        """The store on the run's database (``OMNICAST_DATABASE_URL``)."""
        parts = target.parts
        if (parts.hostname or "") not in HOSTS or parts.path not in ("", "/") or parts.port or parts.username:
            raise ChannelConfigError(
                f"{target.setting}: pull:// keeps the cards in omnicast's own database (OMNICAST_DATABASE_URL) for "
                "`omnicast serve` to answer GET /v1/customers/<id>/cards; write it as pull:// (options after ?, "
                "e.g. pull://?ttl_days=14)"
            )
        url = getattr(resources.settings, "database_url", None)
        if not isinstance(url, str) or not url:
            raise ChannelConfigError(f"{target.setting}=pull:// needs OMNICAST_DATABASE_URL (the cards live there)")
        options: InAppStoreOptions = target.options
        return cls(make_engine(url), CardRenderer(resources.templates_dir), ttl=timedelta(days=options.ttl_days),
                   owns_engine=True)  # fmt: skip

    # channel ---------------------------------------------------------------------------------------------------

    def send(self, message: OutboundMessage) -> DeliveryResult:
        """One message is a one-card batch."""
        return self.send_batch([message])[0]

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[DeliveryResult]:
        """Build every card, then store the valid ones and apply the retractions in one transaction."""
        now = self.clock().astimezone(UTC)
        rows: list[dict[str, Any]] = []
        retractions: list[dict[str, Any]] = []
        outcome: list[DeliveryResult | str] = []  # a failure, or the provider id once stored
        for message in messages:
            try:
                if message.retract:
                    card_id = retracted_card_id(message)
                    retractions.append({"card_id": card_id, "owner": message.customer_id})
                    outcome.append(f"{PROVIDER}{card_id}:retracted")
                else:
                    card = build_card(self.renderer, message, now, self.ttl)
                    rows.append(_row(card, message, now))
                    outcome.append(f"{PROVIDER}{card['id']}")
            except ChannelConfigError:
                raise
            except ChannelError as exc:
                outcome.append(DeliveryResult.failed(exc))
        try:
            self._store(rows, retractions, now)
        except SQLAlchemyError as exc:  # its text may quote parameters (cards, customer ids): the type only
            error = RetryableChannelError(f"could not store in-app cards ({type(exc).__name__})")
            return [item if isinstance(item, DeliveryResult) else DeliveryResult.failed(error) for item in outcome]
        return [item if isinstance(item, DeliveryResult) else DeliveryResult.sent(item) for item in outcome]

    def already_delivered(self, messages: Sequence[OutboundMessage]) -> dict[LedgerKey, str]:
        """Cards whose row exists; retractions whose card's row is marked retracted."""
        cards: dict[str, LedgerKey] = {}
        retracted: dict[str, list[LedgerKey]] = {}
        for message in messages:
            if not message.retract:
                cards[ledger_hash(message.ledger_key)] = message.ledger_key
                continue
            try:
                retracted.setdefault(retracted_card_id(message), []).append(message.ledger_key)
            except PermanentChannelError:
                continue  # names no card: never delivered (sending it fails it for good)
        found: dict[LedgerKey, str] = {}
        wanted = sorted({*cards, *retracted})
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), CHUNK):
                chunk = wanted[start : start + CHUNK]
                for card_id, retracted_at in conn.execute(
                    select(CARDS.c.id, CARDS.c.retracted_at).where(CARDS.c.id.in_(chunk))
                ):
                    if card_id in cards:
                        found[cards[card_id]] = f"{PROVIDER}{card_id}"
                    if retracted_at is not None:
                        for key in retracted.get(card_id, ()):
                            found[key] = f"{PROVIDER}{card_id}:retracted"
        return found

    def close(self) -> None:
        """Dispose of the engine when this channel opened it (closing twice is harmless)."""
        if self.owns_engine:
            self.engine.dispose()

    # storing ---------------------------------------------------------------------------------------------------

    def _store(self, rows: list[dict[str, Any]], retractions: list[dict[str, Any]], now: datetime) -> None:
        if not rows and not retractions:
            return
        with self.engine.begin() as conn:
            if rows:
                conn.execute(dialect_insert(conn)(CARDS).on_conflict_do_nothing(index_elements=[CARDS.c.id]), rows)
            if retractions:
                conn.execute(
                    update(CARDS)
                    .where(
                        and_(
                            CARDS.c.id == bindparam("card_id"),
                            CARDS.c.customer_id == bindparam("owner"),
                            CARDS.c.retracted_at.is_(None),
                        )
                    )  # fmt: skip
                    .values(retracted_at=now, updated_at=now),
                    retractions,
                )


def _row(card: dict[str, Any], message: OutboundMessage, now: datetime) -> dict[str, Any]:
    """The table row of a built (valid) card."""
    return {
        "id": card["id"],
        "customer_id": message.customer_id,
        "card": card,
        "campaign": message.campaign,
        "created_at": now,
        "expires_at": datetime.fromisoformat(card["expires_at"]).astimezone(UTC),
        "updated_at": now,
    }
