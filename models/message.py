"""The channel-neutral message: one message to one person on one channel, and who that person is.

Planning (campaigns, triggers, segments, experiments) makes these; ``channels.dispatch`` delivers them through the
adapters in ``channels/``. Neither side knows the other's details, as listmonk keeps its message apart from its
messengers. A ``Recipient`` carries PII: it travels only in-process, never into logs, flow parameters or artifacts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

LedgerKey = tuple[str, int, str]
"""``(occurrence_key, customer_id, channel)``: the ledger's unique key of one message."""


@dataclass(frozen=True)
class Recipient:
    """What a channel may know about the person (PII: never log it)."""

    customer_id: int
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    city: str | None = None
    region: str | None = None
    country: str | None = None
    zip: str | None = None
    birthday: date | None = None
    timezone: str | None = None
    user_id: str | None = None
    """The id the store's app knows the person by (their Shopify customer id, else CRM record id, else analytics
    user id): what in-app cards and the pull API call them, never omnicast's internal row id."""


@dataclass(frozen=True)
class OutboundMessage:
    """One message to one person on one channel, channel-neutral.

    ``(occurrence_key, recipient.customer_id, channel)`` is the ledger key: the same triple is delivered at most once.
    ``context`` holds what templates render (recommended products, trigger details); ``audience`` names the ad
    audience for ad channels.
    """

    occurrence_key: str
    channel: str
    recipient: Recipient
    campaign: str
    template: str | None = None
    variant: str | None = None
    audience: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    marketing: bool = True
    """Marketing messages also need the customer to be a marketing contact (CRM); transactional ones do not."""
    priority: int = 5
    """The campaign's priority, 1 = most important: when two marketing messages compete for one frequency-cap slot,
    the lower number takes it (ties: the order dispatch got them in)."""
    retract: bool = False
    """Take back what an earlier message delivered instead of delivering: remove the person from the ad audience,
    withdraw the in-app card. The gate never holds a retraction back (no consent is needed to stop targeting someone),
    and adapters that cannot take anything back refuse it as a permanent failure."""
    send_window: str | None = None
    """``HH:MM-HH:MM``: the local hours (the customer's zone) the campaign's messages may arrive in; a message due
    outside them is deferred to the window's next opening. ``None`` = any hour (the store's quiet hours still apply)."""

    @property
    def customer_id(self) -> int:
        return self.recipient.customer_id

    @property
    def ledger_key(self) -> LedgerKey:
        return (self.occurrence_key, self.recipient.customer_id, self.channel)
