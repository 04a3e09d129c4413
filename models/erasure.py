"""Right to erasure (`omnicast forget EMAIL`): the person's personal data goes, everywhere, and they stay gone.

For the customers the address belongs to (their profile's email, or a source record's email or external id) and in
one transaction:

* every address and phone number known for them goes on the suppression list (reason ``erased``, source ``forget``):
  only a salted hash is kept, so a later import of the same address is recognised and never mailed;
* consent denials (source ``erasure``) on every channel and topic, and on ``marketing``;
* the profile's personal columns are blanked (email, phone, names, address, birthday, tier, time zone) and
  ``erased_at`` is set; the row itself stays, so orders, events and the ledger keep pointing at a nobody;
* their source records (``identities``) are deleted, the email of their orders (and of any order placed with the
  address) is blanked, their devices' analytics events lose the device id, their trigger occurrences are deleted
  (a birthday's due date is the birthday), the in-app cards held for the app to fetch are deleted (a title holds
  a first name), quarantined input rows holding the address or phone are deleted;
* the ledger keeps its rows (state, reason, ids: what was sent when) but loses every planned payload; messages not
  yet handed over are recorded as ``suppressed: erased`` so no run tries to finish them.

An address nobody has is still put on the suppression list (an erasure request may come before the import that
would bring the person in) and the report says "not found". Calling it again changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Text, cast, delete, func, null, or_, select, update
from sqlalchemy.engine import Connection, Engine

from models.db import dialect_insert
from models.errors import InputError
from models.schema import (
    Consent,
    Customer,
    Event,
    Identity,
    InAppCard,
    Message,
    Order,
    QuarantineRow,
    Suppression,
    TriggerOccurrence,
)
from models.suppression import address_hash, is_suppressed, normalize_address, salt, suppress

CUSTOMERS = Customer.__table__  # type: ignore[attr-defined]
IDENTITIES = Identity.__table__  # type: ignore[attr-defined]
ORDERS = Order.__table__  # type: ignore[attr-defined]
EVENTS = Event.__table__  # type: ignore[attr-defined]
CONSENTS = Consent.__table__  # type: ignore[attr-defined]
MESSAGES = Message.__table__  # type: ignore[attr-defined]
QUARANTINE = QuarantineRow.__table__  # type: ignore[attr-defined]
TRIGGERS = TriggerOccurrence.__table__  # type: ignore[attr-defined]
CARDS = InAppCard.__table__  # type: ignore[attr-defined]
SUPPRESSIONS = Suppression.__table__  # type: ignore[attr-defined]

REASON = "erased"
SOURCE = "forget"
CONSENT_SOURCE = "erasure"
CONSENT_CHANNELS = ("email", "sms", "ads", "inapp", "marketing")
"""Denied for every erased customer, besides every channel or topic they already had a statement on."""
PII_COLUMNS = ("email", "phone", "first_name", "last_name", "city", "region", "country", "zip", "birthday",
               "loyalty_tier", "timezone")  # fmt: skip
ERASED_DEVICE = "erased"
MAX_EMAIL_CHARS = 320


@dataclass
class ErasureReport:
    """What ``forget`` did. It names no one: counts and ids only."""

    found: bool
    customer_ids: list[int] = field(default_factory=list)
    already_erased: bool = False
    newly_suppressed: int = 0
    consents_denied: int = 0
    identities_deleted: int = 0
    orders_blanked: int = 0
    events_blanked: int = 0
    triggers_deleted: int = 0
    cards_deleted: int = 0
    quarantine_deleted: int = 0
    payloads_cleared: int = 0
    messages_suppressed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One human line (the CLI prints it)."""
        if not self.found:
            if self.already_erased:
                return "already erased: nothing about this address is stored; it stays on the suppression list"
            return (
                "not found: no customer has this address; it is on the suppression list now, so no later import "
                "brings it back into a campaign"
            )
        return (
            f"erased {len(self.customer_ids)} customer profile(s) (ids {', '.join(map(str, self.customer_ids))}): "
            f"{self.identities_deleted} source record(s) deleted, {self.orders_blanked} order email(s) and "
            f"{self.events_blanked} event device id(s) blanked, {self.triggers_deleted} trigger occurrence(s) and "
            f"{self.quarantine_deleted} quarantined row(s) deleted, "
            f"{self.payloads_cleared} planned message(s) cleared ({self.messages_suppressed} unsent now suppressed), "
            f"{self.consents_denied} consent denial(s) recorded; the address is on the suppression list"
        )


def forget(engine: Engine, email: str, *, now: datetime | None = None) -> ErasureReport:
    """Erase everything omnicast holds about the person with ``email`` (see the module docstring)."""
    address = _checked(email)
    when = now or datetime.now(UTC)
    if when.tzinfo is None:
        raise ValueError("forget needs an aware datetime (UTC)")
    with engine.begin() as conn:
        customer_ids = _customers(conn, address)
        emails, phones = _contacts(conn, customer_ids, address)
        report = ErasureReport(found=bool(customer_ids), customer_ids=customer_ids)
        report.already_erased = not customer_ids and is_erased(conn, address)
        report.newly_suppressed = _suppress(conn, "email", emails, customer_ids, when) + _suppress(
            conn, "sms", phones, customer_ids, when
        )
        if customer_ids:
            report.consents_denied = _deny(conn, customer_ids, when)
            report.identities_deleted = _count(conn.execute(delete(IDENTITIES).where(
                IDENTITIES.c.customer_id.in_(customer_ids) | func.lower(IDENTITIES.c.email).in_(emails)
                | func.lower(IDENTITIES.c.external_id).in_(emails)
            )))  # fmt: skip
            devices = select(EVENTS.c.user_pseudo_id).where(EVENTS.c.customer_id.in_(customer_ids)).distinct()
            report.events_blanked = _count(conn.execute(
                update(EVENTS).where(EVENTS.c.user_pseudo_id.in_(list(conn.execute(devices).scalars())),
                                     EVENTS.c.user_pseudo_id != ERASED_DEVICE).values(user_pseudo_id=ERASED_DEVICE)
            ))  # fmt: skip
            report.triggers_deleted = _count(
                conn.execute(delete(TRIGGERS).where(TRIGGERS.c.customer_id.in_(customer_ids)))
            )
            report.cards_deleted = _count(conn.execute(delete(CARDS).where(CARDS.c.customer_id.in_(customer_ids))))
            report.messages_suppressed = _count(conn.execute(
                update(MESSAGES).where(MESSAGES.c.customer_id.in_(customer_ids), _unsent())
                .values(state="suppressed", reason=REASON, payload=null(), not_before=None, updated_at=when)
            ))  # fmt: skip
            report.payloads_cleared = report.messages_suppressed + _count(conn.execute(
                update(MESSAGES).where(MESSAGES.c.customer_id.in_(customer_ids), _has_payload())
                .values(payload=null())
            ))  # fmt: skip
            blank: dict[str, Any] = {column: None for column in PII_COLUMNS}
            conn.execute(
                update(CUSTOMERS).where(CUSTOMERS.c.id.in_(customer_ids))
                .values(**blank, erased_at=when, updated_at=when)
            )  # fmt: skip
        report.orders_blanked = _count(conn.execute(
            update(ORDERS).where(ORDERS.c.email.is_not(None),
                                 ORDERS.c.customer_id.in_(customer_ids) | func.lower(ORDERS.c.email).in_(emails))
            .values(email=None)
        ))  # fmt: skip
        report.quarantine_deleted = _delete_quarantined(conn, [*emails, *phones])
    return report


def is_erased(conn: Connection, email: str) -> bool:
    """Whether ``email`` was erased (``omnicast forget``): an import must leave it out, a send must skip it."""
    return is_suppressed(conn, "email", email) == REASON


def _checked(email: str) -> str:
    address = normalize_address("email", email or "")
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or len(address) > MAX_EMAIL_CHARS or any(ch.isspace() for ch in address):
        raise InputError("the address to forget is not an email address (expected one like name@example.com)")
    return address


def _customers(conn: Connection, address: str) -> list[int]:
    """Every profile the address belongs to: its own email, a source record's email or id, an order's email."""
    ids: set[int] = set(conn.execute(select(CUSTOMERS.c.id).where(func.lower(CUSTOMERS.c.email) == address)).scalars())
    ids.update(conn.execute(select(IDENTITIES.c.customer_id).where(
        or_(func.lower(IDENTITIES.c.email) == address, func.lower(IDENTITIES.c.external_id) == address)
    )).scalars())  # fmt: skip
    ids.update(conn.execute(select(ORDERS.c.customer_id).where(
        func.lower(ORDERS.c.email) == address, ORDERS.c.customer_id.is_not(None)
    )).scalars())  # fmt: skip
    return sorted(ids)


def _contacts(conn: Connection, customer_ids: Sequence[int], address: str) -> tuple[list[str], list[str]]:
    """Every email address and phone number known for these customers (the given address first)."""
    emails = {address}
    phones: set[str] = set()
    if customer_ids:
        for email, phone in conn.execute(
            select(CUSTOMERS.c.email, CUSTOMERS.c.phone).where(CUSTOMERS.c.id.in_(customer_ids))
        ):
            emails.add(normalize_address("email", email or ""))
            phones.add(normalize_address("sms", phone or ""))
        for email, phone in conn.execute(
            select(IDENTITIES.c.email, IDENTITIES.c.phone).where(IDENTITIES.c.customer_id.in_(customer_ids))
        ):
            emails.add(normalize_address("email", email or ""))
            phones.add(normalize_address("sms", phone or ""))
        emails.update(normalize_address("email", email) for email in conn.execute(
            select(ORDERS.c.email).where(ORDERS.c.customer_id.in_(customer_ids), ORDERS.c.email.is_not(None))
        ).scalars())  # fmt: skip
    emails.discard("")
    phones.discard("")
    return [address, *sorted(emails - {address})], sorted(phones)


def _suppress(conn: Connection, channel: str, addresses: Iterable[str], customer_ids: Sequence[int],
              when: datetime) -> int:  # fmt: skip
    """Put every address on ``channel``'s list as erased; one listed for another reason (a bounce) becomes erased."""
    added = 0
    key = salt(conn)
    owner = customer_ids[0] if customer_ids else None
    for address in addresses:
        if suppress(conn, channel, address, REASON, SOURCE, customer_id=owner, at=when):
            added += 1
            continue
        conn.execute(
            update(SUPPRESSIONS)
            .where(SUPPRESSIONS.c.channel == channel,
                   SUPPRESSIONS.c.address_hash == address_hash(key, channel, address),
                   SUPPRESSIONS.c.reason != REASON)
            .values(reason=REASON, source=SOURCE, detail=None)
        )  # fmt: skip
    return added


def _deny(conn: Connection, customer_ids: Sequence[int], when: datetime) -> int:
    """A denial (source ``erasure``) on every channel and topic each customer had a statement on, and on the usual
    channels and ``marketing``."""
    stated = conn.execute(select(CONSENTS.c.customer_id, CONSENTS.c.channel).where(
        CONSENTS.c.customer_id.in_(customer_ids)
    )).all()  # fmt: skip
    pairs = {(customer_id, channel) for customer_id in customer_ids for channel in CONSENT_CHANNELS}
    pairs.update((customer_id, channel) for customer_id, channel in stated)
    rows = [
        {"customer_id": customer_id, "channel": channel, "state": "denied", "source": CONSENT_SOURCE,
         "recorded_at": when}
        for customer_id, channel in sorted(pairs)
    ]  # fmt: skip
    insert = dialect_insert(conn)(CONSENTS)
    conn.execute(
        insert.on_conflict_do_update(
            index_elements=[CONSENTS.c.customer_id, CONSENTS.c.channel, CONSENTS.c.source],
            set_={"state": "denied", "recorded_at": insert.excluded.recorded_at},
        ),
        rows,
    )
    return len(rows)


def _unsent() -> Any:
    """Ledger rows no run has handed over (pending) or will hand over again (failed, retryable): nobody may
    finish them now. A row being handed over (``sending``) keeps its state: dispatch settles it."""
    return or_(MESSAGES.c.state == "pending", (MESSAGES.c.state == "failed") & (MESSAGES.c.reason == "retryable"))


def _has_payload() -> Any:
    """A payload that is not NULL, nor JSON ``null`` (what the JSON type stores for ``None``)."""
    return MESSAGES.c.payload.is_not(None) & (cast(MESSAGES.c.payload, Text) != "null")


def _delete_quarantined(conn: Connection, needles: Sequence[str]) -> int:
    """Delete the quarantined input rows whose raw text holds any of ``needles`` (as written or JSON-escaped)."""
    spellings = {spelling for needle in needles if needle
                 for spelling in (needle.lower(), json.dumps(needle)[1:-1].lower())}  # fmt: skip
    if not spellings:
        return 0
    matches = or_(*(func.lower(QUARANTINE.c.raw).contains(spelling, autoescape=True) for spelling in sorted(spellings)))
    return _count(conn.execute(delete(QUARANTINE).where(matches)))


def _count(result: Any) -> int:
    return max(int(result.rowcount or 0), 0)
