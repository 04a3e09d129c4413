"""Postmark's bounce, spam-complaint and subscription-change webhooks → the suppression list (and consent).

Shapes (postmarkapp.com/developer/webhooks): a bounce is ``{"RecordType": "Bounce", "ID": 42, "Type": "HardBounce",
"TypeCode": 1, "Email": ..., "MessageID": ..., "BouncedAt": ..., "Inactive": true, ...}``; a spam complaint the same
with ``"RecordType": "SpamComplaint", "Type": "SpamComplaint", "TypeCode": 512``; a subscription change (broadcast
streams) ``{"RecordType": "SubscriptionChange", "Recipient": ..., "SuppressSending": true, "SuppressionReason":
"HardBounce" | "SpamComplaint" | "ManualSuppression", "ChangedAt": ...}`` without an ID.

What each does:

* a hard bounce, and any other bounce after which Postmark made the address ``Inactive`` (bad address, blocked,
  manually deactivated...): the address goes on the suppression list, reason ``hard_bounce``, detail = the type;
* a spam complaint: suppression reason ``spam_complaint`` AND a consent denial on ``email`` (source
  ``spam_complaint``) for every customer with that address: they said no, in the strongest way;
* a soft bounce (transient, auto-responder, DNS error without deactivation...): acknowledged, nothing changes;
* a subscription change that suppresses sending: as a hard bounce, a complaint, or (manual suppression, which is
  how Postmark records an unsubscribe) a consent denial; a reactivation is acknowledged only: an address we were told
  is dead stays on our list until a person removes it;
* any other record type (delivery, open, click): acknowledged, so Postmark does not retry it.

Every event handled is kept in ``webhook_events`` (provider ``postmark``, Postmark's ``ID``) in the same transaction
as its effect, so a retried webhook changes nothing the second time. The address is never logged or stored in clear.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine

from models.db import dialect_insert
from models.schema import Customer, WebhookEvent
from models.suppression import address_hash, normalize_address, salt, suppress
from web.preferences import record_statement

PROVIDER = "postmark"
EVENTS = WebhookEvent.__table__  # type: ignore[attr-defined]
CUSTOMERS = Customer.__table__  # type: ignore[attr-defined]
SOFT_TYPES = frozenset({"Transient", "SoftBounce", "AutoResponder", "DnsError", "Unknown", "Subscribe",
                        "AddressChange", "OpenRelayTest", "VirusNotification", "ChallengeVerification"})  # fmt: skip
COMPLAINT_TYPES = frozenset({"SpamComplaint"})
MAX_EMAIL_CHARS = 320

log = logging.getLogger("omnicast.web.postmark")


class WebhookPayloadError(ValueError):
    """The JSON is not a Postmark event we can act on; the message names the field, never its value."""


@dataclass(frozen=True)
class WebhookOutcome:
    """What one webhook call did: ``suppressed``, ``opted_out``, ``acknowledged``, ``duplicate`` or ``ignored``."""

    status: str
    kind: str

    def as_dict(self) -> dict[str, str]:
        return {"status": self.status, "kind": self.kind}


@dataclass(frozen=True)
class _Plan:
    event_id: str
    kind: str
    address: str | None
    suppression: str | None  # reason for the suppression list
    deny_source: str | None  # consent denial on email, with this source


def handle_postmark(engine: Engine, event: Mapping[str, Any], now: datetime) -> WebhookOutcome:
    """Apply one Postmark webhook event (see the module docstring); ``WebhookPayloadError`` for a malformed one."""
    record_type = event.get("RecordType")
    if record_type in ("Bounce", "SpamComplaint"):
        plan = _bounce(event, record_type)
    elif record_type == "SubscriptionChange":
        plan = None
    else:
        log.info("postmark webhook: record type %s ignored", _safe(record_type))
        return WebhookOutcome("ignored", _safe(record_type))
    with engine.begin() as conn:
        if plan is None:
            plan = _subscription_change(conn, event)
        inserted = conn.execute(
            dialect_insert(conn)(EVENTS)
            .values(provider=PROVIDER, event_id=plan.event_id, kind=plan.kind, received_at=now)
            .on_conflict_do_nothing(index_elements=[EVENTS.c.provider, EVENTS.c.event_id])
            .returning(EVENTS.c.id)
        ).first()
        outcome = WebhookOutcome("duplicate", plan.kind) if inserted is None else _apply(conn, plan, now)
    log.info("postmark webhook: %s → %s", outcome.kind, outcome.status)
    return outcome


def _apply(conn: Connection, plan: _Plan, now: datetime) -> WebhookOutcome:
    if plan.address is None or (plan.suppression is None and plan.deny_source is None):
        return WebhookOutcome("acknowledged", plan.kind)
    customers = _customers(conn, plan.address)
    if plan.suppression is not None:
        suppress(conn, "email", plan.address, plan.suppression, PROVIDER,
                 customer_id=customers[0] if customers else None, detail=plan.kind[:100], at=now)  # fmt: skip
    if plan.deny_source is not None:
        for customer_id in customers:
            record_statement(conn, customer_id, "email", "denied", now, source=plan.deny_source)
    return WebhookOutcome("suppressed" if plan.suppression else "opted_out", plan.kind)


def _bounce(event: Mapping[str, Any], record_type: str) -> _Plan:
    event_id = event.get("ID")
    if isinstance(event_id, bool) or not isinstance(event_id, int | str) or not str(event_id).strip():
        raise WebhookPayloadError(f"a Postmark {record_type} event needs its ID (a number)")
    kind = event.get("Type")
    if not isinstance(kind, str) or not kind.strip():
        raise WebhookPayloadError(f"a Postmark {record_type} event needs its Type")
    address = _address(event.get("Email"), "Email")
    complaint = record_type == "SpamComplaint" or kind in COMPLAINT_TYPES
    if complaint:
        return _Plan(str(event_id), "SpamComplaint", address, "spam_complaint", "spam_complaint")
    dead = kind == "HardBounce" or (event.get("Inactive") is True and kind not in SOFT_TYPES)
    return _Plan(str(event_id), kind[:100], address, "hard_bounce" if dead else None, None)


def _subscription_change(conn: Connection, event: Mapping[str, Any]) -> _Plan:
    address = _address(event.get("Recipient"), "Recipient")
    changed_at = event.get("ChangedAt")
    if not isinstance(changed_at, str) or not changed_at:
        raise WebhookPayloadError("a Postmark SubscriptionChange event needs its ChangedAt")
    suppress_sending = event.get("SuppressSending") is True
    reason = event.get("SuppressionReason") if suppress_sending else None
    # No ID in this record: the change is identified by when, whom (salted hash) and what.
    digest = hashlib.sha256(
        f"{changed_at}|{address_hash(salt(conn), 'email', address)}|{suppress_sending}|{reason}".encode()
    ).hexdigest()[:40]
    event_id = f"SubscriptionChange:{digest}"
    if not suppress_sending:
        return _Plan(event_id, "Reactivation", address, None, None)
    if reason == "HardBounce":
        return _Plan(event_id, "HardBounce", address, "hard_bounce", None)
    if reason == "SpamComplaint":
        return _Plan(event_id, "SpamComplaint", address, "spam_complaint", "spam_complaint")
    return _Plan(event_id, "ManualSuppression", address, None, "unsubscribe")


def _address(value: Any, field: str) -> str:
    if not isinstance(value, str) or "@" not in value or len(value) > MAX_EMAIL_CHARS:
        raise WebhookPayloadError(f"the event's {field} is not an email address")
    return normalize_address("email", value)


def _customers(conn: Connection, address: str) -> list[int]:
    query = select(CUSTOMERS.c.id).where(func.lower(CUSTOMERS.c.email) == address).order_by(CUSTOMERS.c.id)
    return list(conn.execute(query).scalars())


def _safe(value: Any) -> str:
    """A record type as it may appear in a log line (short, printable)."""
    text = value if isinstance(value, str) else type(value).__name__
    return "".join(ch for ch in text[:40] if ch.isalnum()) or "unknown"
