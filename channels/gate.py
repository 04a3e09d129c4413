"""The gate: which claimed messages may go now. Dispatch records what it decides (``channels/dispatch.py``).

In order, for each message: consent (the channel's, the marketing-contact status, the campaign's topic), the
suppression list, whether the channel can reach the person at all, the experiment's holdout; then, with rules, the
frequency cap (messages come sorted by priority, so the higher one takes the slot) judged on the customer's local
calendar day of the hand-over, and quiet hours and the campaign's send window (a message due outside the open hours
is deferred to their next start, never dropped).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection

from channels import ledger
from channels.base import Channel
from channels.rules import DispatchRules, local_date, next_open
from models import suppression
from models.campaigns import HOLDOUT
from models.consent import MARKETING, consent_states_on, suppression_reason, topic_channel
from models.message import LedgerKey, OutboundMessage

FREQUENCY_CAP = "frequency_cap"
CAP_LOOKBACK = timedelta(days=9)  # covers 7 local days ending on a hand-over deferred up to a day, in any zone


def refusals(conn: Connection, channel: Channel, messages: Sequence[OutboundMessage]) -> dict[LedgerKey, str]:
    """The messages that must never go, with the reason: consent, suppression list, no address, holdout. A
    retraction (``OutboundMessage.retract``) always may: stopping is never refused."""
    consent = channel.consent_channel
    topics = {m.campaign: topic_channel(consent, m.campaign) for m in messages if m.campaign}
    states = consent_states_on(conn, {m.customer_id for m in messages}, {consent, MARKETING, *topics.values()})
    listed = suppression.suppressed(conn, consent, addresses(messages, consent))
    refused: dict[LedgerKey, str] = {}
    for message in messages:
        if message.retract:
            continue  # taking back what was delivered (an audience removal) needs no consent and is never held back
        customer = message.customer_id
        reason = (
            suppression_reason(
                states.get((customer, consent)),
                states.get((customer, MARKETING)) if message.marketing else None,
                states.get((customer, topics[message.campaign])) if message.campaign else None,
            )
            or listed.get(customer)
            or channel.can_reach(message)
            or (HOLDOUT if message.variant == HOLDOUT else None)
        )
        if reason is not None:
            refused[message.ledger_key] = reason
    return refused


def cap_and_quiet_hours(
    conn: Connection, channel: str, rules: DispatchRules, messages: Sequence[OutboundMessage], now: datetime
) -> tuple[list[OutboundMessage], dict[LedgerKey, str], dict[LedgerKey, datetime]]:
    """Of ``messages`` (in priority order), the ones that may go now, the ones the frequency cap holds back
    (``frequency_cap``) and the ones deferred by quiet hours (ledger key → not before)."""
    capped = [m for m in messages if rules.caps(m.marketing, channel) and not m.retract]
    if not capped:
        return list(messages), {}, {}
    sends: dict[int, list[datetime]] = {}
    if rules.email_daily_cap or rules.email_weekly_cap:
        sends = ledger.recent_marketing_sends(
            conn, {m.customer_id for m in capped}, rules.capped_channels, now - CAP_LOOKBACK
        )
    deliverable: list[OutboundMessage] = []
    held: dict[LedgerKey, str] = {}
    deferred: dict[LedgerKey, datetime] = {}
    for message in messages:
        if message.retract or not rules.caps(message.marketing, channel):
            deliverable.append(message)
            continue
        zone = rules.zone(message.recipient.timezone)
        at = next_open(now, zone, rules.quiet_hours, message.send_window)
        day = local_date(at, zone)
        days = [local_date(sent, zone) for sent in sends.get(message.customer_id, ())]
        today = sum(1 for d in days if d == day)
        week = sum(1 for d in days if timedelta(0) <= day - d < timedelta(days=7))
        if (rules.email_daily_cap and today >= rules.email_daily_cap) or (
            rules.email_weekly_cap and week >= rules.email_weekly_cap
        ):
            held[message.ledger_key] = FREQUENCY_CAP
        elif at > now:
            deferred[message.ledger_key] = at
        else:
            sends.setdefault(message.customer_id, []).append(now)  # the slot is this message's
            deliverable.append(message)
    return deliverable, held, deferred


def addresses(messages: Iterable[OutboundMessage], consent_channel: str) -> dict[int, str]:
    """Customer id → the address the suppression list knows for ``consent_channel`` (email only, for now)."""
    if consent_channel != "email":
        return {}
    return {m.customer_id: m.recipient.email for m in messages if m.recipient.email}
