"""The send ledger's statements: every read and write of ``messages`` that dispatch makes, and nothing else.

A message's row moves through these states (``channels/dispatch.py`` says when)::

    pending ──► sending ──► sent
       │  ▲        └──────► failed   retryable, campaign_stopped (a later run takes it again)
       │  └ deferred (pending with not_before: quiet hours)    | permanent | in_doubt | expired
       ├──► failed                    campaign_stopped (its campaign's error rate stopped it before the hand-over)
       └──► suppressed                consent, topic opt-out, suppression list, frequency cap, no address, holdout

Every statement that takes a row from another run is conditional (``… WHERE state = … AND updated_at < …``), so
the database decides, not a value read a moment earlier: two runs never both hold a row. ``payload`` holds what the
planner decided while a row is unfinished and is dropped at its outcome. ``marketing`` (set at the claim) says whether
a row counts toward the frequency cap; ``not_before`` is set only on a ``pending`` row a run deferred and released: no
run holds it, any run may take it once that instant has passed (and taking it clears it).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Boolean, Text, and_, bindparam, case, null, or_, select, text, true, update
from sqlalchemy.engine import Connection

from channels.report import RETRYABLE_REASONS
from models.db import dialect_insert
from models.message import LedgerKey, OutboundMessage, Recipient
from models.schema import Message

MESSAGES = Message.__table__  # type: ignore[attr-defined]
FINAL_STATES = ("sent", "suppressed", "failed")
IN_DOUBT = "in_doubt"

KEY_COLUMNS = (MESSAGES.c.occurrence_key, MESSAGES.c.customer_id, MESSAGES.c.channel)
_CLAIM_COLUMNS = ("occurrence_key", "customer_id", "channel", "campaign", "variant", "template", "marketing")


def payload_of(message: OutboundMessage) -> dict[str, Any]:
    """What the ledger keeps to rebuild ``message`` later: its audience and template context, without the
    customer (rebuilt from the profile at that time, so no stale personal data is kept here)."""
    context = {key: value for key, value in message.context.items() if key != "customer"}
    return {"audience": message.audience, "marketing": message.marketing, "context": context,
            "priority": message.priority, "send_window": message.send_window, "retract": message.retract}  # fmt: skip


def rebuild(row: Mapping[Any, Any], recipients: Mapping[int, Recipient]) -> OutboundMessage | None:
    """The message a ledger row stands for, or ``None`` when its customer or its planned content is gone."""
    recipient = recipients.get(row["customer_id"])
    payload = row["payload"]
    if recipient is None and payload and payload.get("retract"):
        recipient = Recipient(customer_id=row["customer_id"])  # a removal carries its own hashes: no profile needed
    if recipient is None or (payload is None and row["template"]):
        return None
    payload = payload or {}
    context = dict(payload.get("context") or {})
    context["customer"] = {"first_name": recipient.first_name}
    return OutboundMessage(
        occurrence_key=row["occurrence_key"],
        channel=row["channel"],
        recipient=recipient,
        campaign=row["campaign"] or "",
        template=row["template"],
        variant=row["variant"],
        audience=payload.get("audience"),
        context=context,
        marketing=bool(payload.get("marketing", True)),
        priority=int(payload.get("priority", 5)),
        send_window=payload.get("send_window"),
        retract=bool(payload.get("retract", False)),
    )


# --- claims ---------------------------------------------------------------------------------------------------

_PG_CLAIMS = text(
    """
    INSERT INTO messages (occurrence_key, customer_id, channel, campaign, variant, template, marketing, payload,
                          state, attempts, created_at, updated_at)
    SELECT u.occurrence_key, u.customer_id, u.channel, u.campaign, u.variant, u.template, u.marketing, p.value,
           'pending', 0, :now, :now
    FROM unnest(CAST(:occurrence_keys AS text[]), CAST(:customer_ids AS integer[]), CAST(:channels AS text[]),
                CAST(:campaigns AS text[]), CAST(:variants AS text[]), CAST(:templates AS text[]),
                CAST(:marketings AS boolean[]))
         WITH ORDINALITY AS u(occurrence_key, customer_id, channel, campaign, variant, template, marketing, position)
    JOIN json_array_elements(CAST(:payloads AS json)) WITH ORDINALITY AS p(value, position) USING (position)
    ON CONFLICT (occurrence_key, customer_id, channel) DO NOTHING
    RETURNING id, occurrence_key, customer_id, channel
    """
).bindparams(bindparam("now", type_=MESSAGES.c.created_at.type))


def insert_claims(conn: Connection, messages: Sequence[OutboundMessage], now: datetime) -> dict[LedgerKey, int]:
    """``INSERT … ON CONFLICT DO NOTHING RETURNING`` the batch as ``pending`` rows (with ``marketing``, which the
    frequency cap counts); the row id of each key inserted.

    PostgreSQL gets one short statement over arrays (``INSERT … SELECT FROM unnest(…)``): a 500-row VALUES list
    has 5,000 parameters and psycopg re-parses its 160 KB text on every batch, which alone capped claims at
    ~6,000 rows/s. The payloads travel as one JSON array, not a text array: psycopg escapes every quote of every
    element of a text array with a regex (measured: 60% of a claim's time). SQLite takes the batch as an
    executemany, the payload bound as the JSON text orjson made (the JSON column type would serialize it again).
    """
    payloads = [orjson.dumps(payload_of(m), default=str) for m in messages]
    if conn.dialect.name == "postgresql":
        columns = {f"{name}s": [getattr(m, name) for m in messages] for name in _CLAIM_COLUMNS}
        rows = conn.execute(_PG_CLAIMS, {**columns, "payloads": (b"[" + b",".join(payloads) + b"]").decode(),
                                         "now": now})  # fmt: skip
    else:
        pending = {"state": "pending", "attempts": 0, "created_at": now, "updated_at": now}
        statement = dialect_insert(conn)(MESSAGES).values(payload=bindparam("payload_text", type_=Text))
        values = [
            {**{name: getattr(m, name) for name in _CLAIM_COLUMNS}, **pending, "payload_text": payload.decode()}
            for m, payload in zip(messages, payloads, strict=True)
        ]
        statement = statement.on_conflict_do_nothing(index_elements=list(KEY_COLUMNS))
        rows = conn.execute(statement.returning(MESSAGES.c.id, *KEY_COLUMNS), values)
    return _ids_by_key(rows)


_EXISTING_COLUMNS = (
    MESSAGES.c.id, MESSAGES.c.state, MESSAGES.c.reason, MESSAGES.c.attempts, MESSAGES.c.updated_at,
    MESSAGES.c.not_before, *KEY_COLUMNS,
)  # fmt: skip
_PG_EXISTING = text(
    """
    SELECT m.id, m.state, m.reason, m.attempts, m.updated_at, m.not_before, m.occurrence_key, m.customer_id,
           m.channel
    FROM unnest(CAST(:customer_ids AS integer[])) AS k(customer_id)
    CROSS JOIN LATERAL (
        SELECT * FROM messages
        WHERE occurrence_key = :occurrence_key AND channel = :channel AND customer_id = k.customer_id LIMIT 1
    ) AS m
    """
).columns(*_EXISTING_COLUMNS)


def existing_rows(conn: Connection, keys: Sequence[LedgerKey]) -> dict[LedgerKey, Any]:
    """The ledger rows of ``keys``. A batch's keys share one occurrence and channel (or a few), so each such pair is
    one query. PostgreSQL looks each key up on its own (``LATERAL … LIMIT 1``): right after a big run its planner
    statistics still say the occurrence has a handful of rows, and a plain ``customer_id IN (…)`` then scans the
    whole occurrence for every batch (bench/bench_dispatch.py: a rerun of 20,000 messages 11.7 s → 1.0 s)."""
    groups: dict[tuple[str, str], list[int]] = {}
    for occurrence_key, customer_id, channel in keys:
        groups.setdefault((occurrence_key, channel), []).append(customer_id)
    found: dict[LedgerKey, Any] = {}
    for (occurrence, channel), ids in groups.items():
        if conn.dialect.name == "postgresql":
            params = {"customer_ids": ids, "occurrence_key": occurrence, "channel": channel}
            rows = conn.execute(_PG_EXISTING, params)
        else:
            rows = conn.execute(
                select(*_EXISTING_COLUMNS).where(
                    MESSAGES.c.occurrence_key == occurrence, MESSAGES.c.channel == channel,
                    MESSAGES.c.customer_id.in_(ids),
                )  # fmt: skip
            )
        for row in rows:
            found[(row.occurrence_key, row.customer_id, row.channel)] = row
    return found


# --- taking rows over -----------------------------------------------------------------------------------------


def takeable(stale_before: datetime, max_attempts: int, now: datetime) -> Any:
    """Rows a run may take without asking the channel: a claim untouched since ``stale_before`` (its run died
    before the hand-over: nothing was sent), a deferred message whose ``not_before`` has come (no run holds it, so
    no lease applies), or a retryable failure (also ``campaign_stopped``) with attempts left."""
    abandoned = and_(
        MESSAGES.c.state == "pending", MESSAGES.c.not_before.is_(None), MESSAGES.c.updated_at < stale_before
    )
    due = and_(MESSAGES.c.state == "pending", MESSAGES.c.not_before.is_not(None), MESSAGES.c.not_before <= now)
    retryable = and_(
        MESSAGES.c.state == "failed", MESSAGES.c.reason.in_(RETRYABLE_REASONS), MESSAGES.c.attempts < max_attempts
    )
    return or_(abandoned, due, retryable)


def handed_over_before(stale_before: datetime) -> Any:
    """Rows handed to a channel by a run that has not recorded the outcome since ``stale_before``."""
    return and_(MESSAGES.c.state == "sending", MESSAGES.c.updated_at < stale_before)


def take(conn: Connection, ids: Sequence[int], condition: Any, now: datetime) -> dict[LedgerKey, int]:
    """Make the rows of ``ids`` that still meet ``condition`` ours again (``pending``, no longer deferred); the ones
    we got."""
    if not ids:
        return {}
    statement = (
        update(MESSAGES)
        .where(MESSAGES.c.id.in_(list(ids)), condition)
        .values(state="pending", not_before=None, updated_at=now)
        .returning(MESSAGES.c.id, *KEY_COLUMNS)
    )
    return _ids_by_key(conn.execute(statement))


def record_found_sent(conn: Connection, provider_ids: Mapping[int, str], stale_before: datetime, now: datetime) -> None:
    """Handed-over rows the channel says it holds (row id → its provider id): sent, by the run that died."""
    if provider_ids:
        conn.execute(
            update(MESSAGES)
            .where(MESSAGES.c.id == bindparam("row_id"), handed_over_before(stale_before))
            .values(state="sent", reason=None, error=None, provider_id=bindparam("pid"), sent_at=now, payload=None,
                    attempts=MESSAGES.c.attempts + 1, updated_at=now),
            [{"row_id": row_id, "pid": provider_id} for row_id, provider_id in provider_ids.items()],
        )  # fmt: skip


def give_up(conn: Connection, ids: Sequence[int], condition: Any, reason: str, error: str, now: datetime) -> None:
    """The rows of ``ids`` that still meet ``condition`` end ``failed`` with ``reason``; their payload goes."""
    if ids:
        conn.execute(
            update(MESSAGES)
            .where(MESSAGES.c.id.in_(list(ids)), condition)
            .values(state="failed", reason=reason, error=error, payload=None, updated_at=now)
        )


def leftovers(
    conn: Connection,
    channels: Collection[str],
    stale_before: datetime,
    max_attempts: int,
    now: datetime,
    campaigns: Collection[str] | None = None,
) -> Sequence[Any]:
    """Every row earlier runs left unfinished on ``channels`` (of ``campaigns``, or all): takeable ones (deferred
    ones only once due), and ones handed over and never recorded."""
    unfinished = or_(takeable(stale_before, max_attempts, now), handed_over_before(stale_before))
    query = select(MESSAGES).where(MESSAGES.c.channel.in_(list(channels)), unfinished)
    if campaigns is not None:
        query = query.where(MESSAGES.c.campaign.in_(list(campaigns)))
    return conn.execute(query.order_by(MESSAGES.c.channel, MESSAGES.c.id)).mappings().all()


# --- gate, hand-over, outcome ---------------------------------------------------------------------------------


def record_suppressed(conn: Connection, reasons: Mapping[int, str], now: datetime) -> None:
    """Rows (id → reason) the gate stopped: ``suppressed``, for good."""
    if reasons:
        conn.execute(
            update(MESSAGES)
            .where(MESSAGES.c.id == bindparam("row_id"))
            .values(state="suppressed", reason=bindparam("new_reason"), error=None, payload=None, updated_at=now),
            [{"row_id": row_id, "new_reason": reason} for row_id, reason in reasons.items()],
        )


def defer(conn: Connection, not_before: Mapping[int, datetime], now: datetime) -> None:
    """Our ``pending`` rows (id → instant) wait for the customer's quiet hours to end: still ``pending``, released
    (no run holds them), taken by the first run after ``not_before``."""
    if not_before:
        conn.execute(
            update(MESSAGES)
            .where(MESSAGES.c.id == bindparam("row_id"), MESSAGES.c.state == "pending")
            .values(not_before=bindparam("new_not_before"), updated_at=now),
            [{"row_id": row_id, "new_not_before": at} for row_id, at in not_before.items()],
        )


def record_stopped(conn: Connection, ids: Sequence[int], error: str, now: datetime) -> set[int]:
    """Our ``pending`` rows of a campaign the error-rate rule stopped: ``failed``/``campaign_stopped``, never handed
    over, payload kept for a later run; the ids we still held."""
    if not ids:
        return set()
    statement = (
        update(MESSAGES)
        .where(MESSAGES.c.id.in_(list(ids)), MESSAGES.c.state == "pending")
        .values(state="failed", reason="campaign_stopped", error=error, updated_at=now)
        .returning(MESSAGES.c.id)
    )
    return set(conn.execute(statement).scalars())


_PG_RECENT_SENDS = text(
    """
    SELECT m.customer_id, m.sent_at, m.updated_at
    FROM unnest(CAST(:customer_ids AS integer[])) AS k(customer_id)
    CROSS JOIN LATERAL (
        SELECT customer_id, sent_at, updated_at FROM messages
        WHERE customer_id = k.customer_id AND channel = ANY(CAST(:channels AS text[])) AND marketing
          AND ((state = 'sent' AND sent_at >= :since) OR (state = 'sending' AND updated_at >= :since))
    ) AS m
    """
).columns(MESSAGES.c.customer_id, MESSAGES.c.sent_at, MESSAGES.c.updated_at).bindparams(
    bindparam("since", type_=MESSAGES.c.sent_at.type)
)


def recent_marketing_sends(
    conn: Connection, customer_ids: Collection[int], channels: Collection[str], since: datetime
) -> dict[int, list[datetime]]:
    """When each customer's marketing messages on ``channels`` since ``since`` were sent (or handed over, for rows
    still ``sending``), in one query: what the frequency cap counts. PostgreSQL looks each customer up on its own
    (``LATERAL``), for the reason :func:`existing_rows` gives: right after a big run, stale planner statistics
    otherwise scan every row sent so far for every batch (20,000 capped messages: 7.9 s → 4.2 s)."""
    if not customer_ids or not channels:
        return {}
    ids, names = sorted(set(customer_ids)), sorted(set(channels))
    if conn.dialect.name == "postgresql":
        rows = conn.execute(_PG_RECENT_SENDS, {"customer_ids": ids, "channels": names, "since": since})
    else:
        rows = conn.execute(
            select(MESSAGES.c.customer_id, MESSAGES.c.sent_at, MESSAGES.c.updated_at).where(
                MESSAGES.c.customer_id.in_(ids),
                MESSAGES.c.channel.in_(names),
                MESSAGES.c.marketing == true(),
                or_(
                    and_(MESSAGES.c.state == "sent", MESSAGES.c.sent_at >= since),
                    and_(MESSAGES.c.state == "sending", MESSAGES.c.updated_at >= since),
                ),
            )
        )
    sends: dict[int, list[datetime]] = {}
    for customer_id, sent_at, updated_at in rows:
        sends.setdefault(customer_id, []).append(sent_at or updated_at)
    return sends


def retake_for_sending(conn: Connection, ids: Sequence[int], max_attempts: int, now: datetime) -> set[int]:
    """Our retryable failures with attempts left go straight back to ``sending`` for an in-run retry (one
    statement: a run that took them meanwhile keeps them); the ids we got."""
    if not ids:
        return set()
    statement = (
        update(MESSAGES)
        .where(
            MESSAGES.c.id.in_(list(ids)), MESSAGES.c.state == "failed", MESSAGES.c.reason == "retryable",
            MESSAGES.c.attempts < max_attempts,
        )  # fmt: skip
        .values(state="sending", reason=None, updated_at=now)
        .returning(MESSAGES.c.id)
    )
    return set(conn.execute(statement).scalars())


def mark_sending(conn: Connection, ids: Sequence[int], now: datetime) -> set[int]:
    """Our ``pending`` rows become ``sending`` (commit before the hand-over); the ids we still held."""
    statement = (
        update(MESSAGES)
        .where(MESSAGES.c.id.in_(list(ids)), MESSAGES.c.state == "pending")
        .values(state="sending", updated_at=now)
        .returning(MESSAGES.c.id)
    )
    return set(conn.execute(statement).scalars())


_OUTCOME_UPDATE = (
    update(MESSAGES)
    .where(MESSAGES.c.id == bindparam("row_id"), MESSAGES.c.state == "sending")
    .values(
        state=bindparam("new_state"),
        reason=bindparam("new_reason"),
        provider_id=bindparam("new_provider_id"),
        error=bindparam("new_error"),
        sent_at=bindparam("new_sent_at"),
        payload=case((bindparam("new_keep", type_=Boolean), MESSAGES.c.payload), else_=null()),
    )
)


def outcome(
    row_id: int, state: str, reason: str | None, provider_id: str | None, error: str | None,
    sent_at: datetime | None,
) -> dict[str, Any]:  # fmt: skip
    """One row's outcome for :func:`record_outcomes`; a retryable failure keeps its payload for the next run."""
    return {
        "row_id": row_id,
        "new_state": state,
        "new_reason": reason,
        "new_provider_id": provider_id,
        "new_error": error,
        "new_sent_at": sent_at,
        "new_keep": reason in RETRYABLE_REASONS,
    }


def record_outcomes(
    conn: Connection, outcomes: Sequence[dict[str, Any]], now: datetime, *, count_attempt: bool
) -> None:
    """What the channel said, for rows still ``sending`` (a row another run took over meanwhile is theirs)."""
    attempts = MESSAGES.c.attempts + 1 if count_attempt else MESSAGES.c.attempts
    conn.execute(_OUTCOME_UPDATE.values(updated_at=now, attempts=attempts), outcomes)


def _ids_by_key(rows: Any) -> dict[LedgerKey, int]:
    return {(r.occurrence_key, r.customer_id, r.channel): r.id for r in rows}
