"""Dispatch: the only path a message takes. Per channel, in batches: ledger claim → gate → hand-over → outcome.

The ``messages`` ledger's unique key ``(occurrence_key, customer_id, channel)`` is the guarantee that a message goes
out at most once, across retries, reruns, crashes and parallel workers. A message moves through these states::

    pending ──► sending ──► sent
       │           └──────► failed   retryable (a later run takes it again) | permanent | in_doubt
       └──► suppressed                consent, non-marketing contact, no address, holdout

* **claim** — one ``INSERT … ON CONFLICT DO NOTHING … RETURNING`` per batch: the rows it returns are ours; each
  keeps the planner's payload so a later run can finish it. A key that exists is ours only if a conditional
  ``UPDATE … RETURNING`` takes it: a retryable failure with attempts left, or a ``pending`` row untouched for longer
  than ``lease`` (its run died before handing it over: nothing was sent). The database serializes both
  statements, so two workers never hold the same key.
* **gate** — consent and marketing status (one query per batch), ``Channel.can_reach``, the experiment holdout;
  each suppression is recorded with its reason and never reaches the adapter.
* **hand-over** — the rows become ``sending`` and that is committed *before* the adapter gets them; each result
  then becomes ``sent`` or ``failed``. A ``sending`` row older than ``lease`` belongs to a run that died in
  between: the channel is asked what it already holds (``Channel.already_delivered``; a file sink sees its files),
  held messages are recorded as sent, the others are delivered again. A channel that cannot tell gets one message
  at a time, so at most one message per worker can be in doubt; it ends ``failed``/``in_doubt``, never resent.
* **held elsewhere** — a key another live run is working on is waited for (up to ``wait``), then counted done,
  or taken over once that run's lease has passed; what is still held at the end is reported as ``unfinished``.
* **leftovers** — :func:`finish_unfinished` finishes what earlier runs left (``pending``/``sending`` past the lease,
  retryable failures with attempts left) from the payload in the row, whether or not anyone plans it again.

Every planned message ends in exactly one bucket: planned = sent + suppressed + failed + already_done + unfinished.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import (
    Boolean,
    Integer,
    String,
    Text,
    and_,
    bindparam,
    case,
    null,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine, Result
from sqlalchemy.types import TypeEngine

from channels.base import (
    Channel,
    ChannelConfigError,
    ChannelError,
    DeliveryResult,
    LedgerKey,
    OutboundMessage,
    RetryableChannelError,
)
from channels.consent import MARKETING, consent_states, suppression_reason
from channels.recipients import load_recipients
from models.db import dialect_insert
from models.schema import Message

log = logging.getLogger(__name__)

MESSAGES = Message.__table__  # type: ignore[attr-defined]
DEFAULT_LEASE = timedelta(minutes=15)
DEFAULT_EXPIRY = timedelta(days=7)
HOLDOUT = "holdout"
FINAL_STATES = ("sent", "suppressed", "failed")
IN_DOUBT = "in_doubt"
POLL_SECONDS = 0.5

_KEY_COLUMNS = (MESSAGES.c.occurrence_key, MESSAGES.c.customer_id, MESSAGES.c.channel)


@dataclass
class ChannelTally:
    """What happened to one channel's messages in one run.

    ``already_done``: finished before this run (``recovered`` of them delivered by a run that died before recording
    it, found at the sink now); ``unfinished``: still held by another run, or by a crashed one whose lease has not
    passed, when this run ended.
    """

    planned: int = 0
    sent: int = 0
    suppressed: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    already_done: int = 0
    unfinished: int = 0
    recovered: int = 0

    @property
    def accounted(self) -> int:
        """Messages that reached a bucket; equals ``planned`` when the books balance."""
        return self.sent + self.suppressed.total() + self.failed.total() + self.already_done + self.unfinished

    @property
    def retryable(self) -> int:
        """Failures a later run takes again."""
        return self.failed["retryable"]

    @property
    def given_up(self) -> int:
        """Failures no run will retry: permanent, in doubt, expired."""
        return self.failed.total() - self.failed["retryable"]


@dataclass
class DispatchReport:
    """Per-channel outcomes of a dispatch run; ``rows()`` feeds a summary table (CLI, Prefect artifact)."""

    channels: dict[str, ChannelTally] = field(default_factory=dict)

    def tally(self, channel: str) -> ChannelTally:
        """The tally for ``channel``, created empty on first use."""
        return self.channels.setdefault(channel, ChannelTally())

    @property
    def total_sent(self) -> int:
        return sum(t.sent for t in self.channels.values())

    @property
    def total_planned(self) -> int:
        return sum(t.planned for t in self.channels.values())

    @property
    def total_failed(self) -> int:
        return sum(t.failed.total() for t in self.channels.values())

    @property
    def total_retryable(self) -> int:
        return sum(t.retryable for t in self.channels.values())

    @property
    def total_given_up(self) -> int:
        return sum(t.given_up for t in self.channels.values())

    @property
    def total_unfinished(self) -> int:
        return sum(t.unfinished for t in self.channels.values())

    @property
    def total_recovered(self) -> int:
        return sum(t.recovered for t in self.channels.values())

    @property
    def complete(self) -> bool:
        """Every planned message reached an outcome and none failed."""
        return self.total_failed == 0 and self.total_unfinished == 0

    @property
    def balanced(self) -> bool:
        """planned = sent + suppressed + failed + already_done + unfinished on every channel."""
        return all(t.planned == t.accounted for t in self.channels.values())

    def merge(self, other: DispatchReport) -> DispatchReport:
        """A new report adding ``other``'s counts to this one's."""
        merged = DispatchReport()
        for report in (self, other):
            for name, t in report.channels.items():
                m = merged.tally(name)
                m.planned += t.planned
                m.sent += t.sent
                m.suppressed.update(t.suppressed)
                m.failed.update(t.failed)
                m.already_done += t.already_done
                m.unfinished += t.unfinished
                m.recovered += t.recovered
        return merged

    def rows(self) -> list[dict[str, Any]]:
        """One row per channel (sorted by name), reasons spelled out as ``reason=n, …``."""
        return [
            {
                "channel": name,
                "planned": t.planned,
                "sent": t.sent,
                "suppressed": t.suppressed.total(),
                "suppressed_by": _reasons(t.suppressed),
                "failed": t.failed.total(),
                "failed_by": _reasons(t.failed),
                "already_done": t.already_done,
                "unfinished": t.unfinished,
            }
            for name, t in sorted(self.channels.items())
        ]

    def to_markdown(self) -> str:
        """The rows as a Markdown table."""
        rows = self.rows()
        if not rows:
            return "_nothing to dispatch_"
        header = list(rows[0])
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(str(row[column]) for column in header) + " |" for row in rows]
        return "\n".join(lines)


def dispatch(
    engine: Engine,
    messages: Iterable[OutboundMessage],
    channels: Mapping[str, Channel],
    *,
    now: datetime | None = None,
    max_attempts: int = 3,
    lease: timedelta = DEFAULT_LEASE,
    wait: timedelta | None = None,
) -> DispatchReport:
    """Deliver ``messages`` through ``channels`` (keyed by ``OutboundMessage.channel``) at most once each.

    ``now`` fixes the clock (tests, replays); ``max_attempts`` bounds retries of retryable failures; ``lease`` is
    how long a claimed or handed-over message is left to the run holding it before another run takes it over;
    ``wait`` is how long to wait at the end for messages another run holds (default: ``lease`` on the real clock,
    none with a fixed ``now``). Raises ``ChannelConfigError`` for an unknown channel or when an adapter reports
    one (what was handed over is settled first).
    """
    clock: Callable[[], datetime] = (lambda: now) if now is not None else (lambda: datetime.now(UTC))
    patience = wait if wait is not None else (timedelta(0) if now is not None else lease)
    report = DispatchReport()
    held: dict[str, tuple[Channel, list[OutboundMessage]]] = {}
    for channel, batch in _batches(messages, channels):
        run = _BatchRun(engine, channel, report.tally(channel.name), clock, max_attempts, lease)
        elsewhere = run.dispatch(batch)
        if elsewhere:
            held.setdefault(channel.name, (channel, []))[1].extend(elsewhere)
    if held:
        _wait_for_other_runs(engine, held, report, clock, max_attempts, lease, patience)
    for name, tally in sorted(report.channels.items()):
        log.info(
            "dispatch %s: planned=%d sent=%d suppressed=%d failed=%d already_done=%d unfinished=%d",
            name, tally.planned, tally.sent, tally.suppressed.total(), tally.failed.total(), tally.already_done,
            tally.unfinished,
        )  # fmt: skip
    return report


def finish_unfinished(
    engine: Engine,
    channels: Mapping[str, Channel],
    *,
    now: datetime | None = None,
    max_attempts: int = 3,
    lease: timedelta = DEFAULT_LEASE,
    expire_after: timedelta = DEFAULT_EXPIRY,
    wait: timedelta | None = None,
    campaigns: Collection[str] | None = None,
) -> DispatchReport:
    """Finish every message earlier runs left unfinished on ``channels``, whether or not anyone plans it again.

    Taken: ``pending``/``sending`` rows untouched for longer than ``lease`` (their run died) and retryable failures
    with attempts left. Each is rebuilt from the payload kept in its row and the customer's current profile, then
    goes through :func:`dispatch` (so consent is checked again: an unsubscribe since then wins). A message planned
    more than ``expire_after`` ago and never handed over is closed as ``failed``/``expired`` instead: a birthday
    email a month late is worse than none. ``campaigns`` limits the search to those campaigns' messages.
    """
    current = now or datetime.now(UTC)
    with engine.begin() as conn:
        query = _leftovers_query(list(channels), current - lease, max_attempts)
        if campaigns is not None:
            query = query.where(MESSAGES.c.campaign.in_(list(campaigns)))
        rows = conn.execute(query).mappings().all()
        expired = [r["id"] for r in rows if r["state"] != "sending" and r["created_at"] < current - expire_after]
        recipients = load_recipients(conn, {r["customer_id"] for r in rows})
        messages: list[OutboundMessage] = []
        given_up: dict[int, str] = {row_id: "expired" for row_id in expired}
        for row in rows:
            if row["id"] in given_up:
                continue
            rebuilt = _rebuild(row, recipients)
            if rebuilt is not None:
                messages.append(rebuilt)
            else:  # a handed-over one may have gone out: in doubt, never resent
                given_up[row["id"]] = IN_DOUBT if row["state"] == "sending" else "permanent"
        reasons = {
            "expired": f"planned more than {expire_after} ago and never delivered",
            "permanent": "cannot rebuild: the customer or the planned content is gone",
            IN_DOUBT: "cannot rebuild: the customer or the planned content is gone, and it was being handed over",
        }
        for reason, error in reasons.items():
            ids = [row_id for row_id, why in given_up.items() if why == reason]
            _close(conn, ids, reason, error, current, current - lease, max_attempts)
    report = dispatch(engine, messages, channels, now=now, max_attempts=max_attempts, lease=lease, wait=wait)
    for row in rows:
        if row["id"] in given_up:
            tally = report.tally(row["channel"])
            tally.planned += 1
            tally.failed[given_up[row["id"]]] += 1
    if rows:
        log.info("finished %d messages earlier runs left unfinished (%d expired)", len(rows), len(expired))
    return report


def payload_of(message: OutboundMessage) -> dict[str, Any]:
    """What the ledger keeps to rebuild ``message`` later: its audience and template context, without the
    customer (rebuilt from the profile at that time, so no stale personal data is kept here)."""
    context = {key: value for key, value in message.context.items() if key != "customer"}
    return {"audience": message.audience, "marketing": message.marketing, "context": context}


# --- batches ------------------------------------------------------------------------------------------------


def _batches(
    messages: Iterable[OutboundMessage], channels: Mapping[str, Channel]
) -> Iterator[tuple[Channel, list[OutboundMessage]]]:
    """Stream ``messages`` into per-channel batches of ``batch_size`` (the input may be a generator)."""
    pending: dict[str, list[OutboundMessage]] = {}
    for message in messages:
        channel = channels.get(message.channel)
        if channel is None:
            raise ChannelConfigError(
                f"no channel named {message.channel!r} is configured; configured: {', '.join(sorted(channels))}"
            )
        batch = pending.setdefault(message.channel, [])
        batch.append(message)
        if len(batch) >= max(1, channel.batch_size):
            yield channel, pending.pop(message.channel)
    for name, batch in pending.items():
        yield channels[name], batch


def _wait_for_other_runs(
    engine: Engine,
    held: dict[str, tuple[Channel, list[OutboundMessage]]],
    report: DispatchReport,
    clock: Callable[[], datetime],
    max_attempts: int,
    lease: timedelta,
    patience: timedelta,
) -> None:
    """Give messages other runs hold the time to finish (or their lease to pass), then settle them again."""
    deadline = time.monotonic() + patience.total_seconds()
    count = sum(len(messages) for _, messages in held.values())
    if patience > timedelta(0):
        log.info("%d messages are held by another run; waiting up to %s for them", count, patience)
    while held and time.monotonic() < deadline:
        time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        still: dict[str, tuple[Channel, list[OutboundMessage]]] = {}
        for name, (channel, messages) in held.items():
            tally = report.tally(name)
            tally.planned -= len(messages)  # counted again by the retry below
            tally.unfinished -= len(messages)
            run = _BatchRun(engine, channel, tally, clock, max_attempts, lease)
            elsewhere = run.dispatch(messages)
            if elsewhere:
                still[name] = (channel, elsewhere)
        held = still


def _leftover(stale_before: datetime, max_attempts: int) -> Any:
    """Rows an earlier run left: claimed or handed over and untouched since ``stale_before``, or a retryable failure
    with attempts left."""
    abandoned = and_(MESSAGES.c.state.in_(["pending", "sending"]), MESSAGES.c.updated_at < stale_before)
    retryable = and_(
        MESSAGES.c.state == "failed", MESSAGES.c.reason == "retryable", MESSAGES.c.attempts < max_attempts
    )
    return or_(abandoned, retryable)


def _leftovers_query(channels: list[str], stale_before: datetime, max_attempts: int) -> Any:
    return (
        select(MESSAGES)
        .where(MESSAGES.c.channel.in_(channels), _leftover(stale_before, max_attempts))
        .order_by(MESSAGES.c.channel, MESSAGES.c.id)
    )


def _rebuild(row: Mapping[Any, Any], recipients: Mapping[int, Any]) -> OutboundMessage | None:
    """The message a ledger row stands for, or ``None`` when its customer or its planned content is gone."""
    recipient = recipients.get(row["customer_id"])
    payload = row["payload"]
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
    )


def _close(
    conn: Connection, ids: Sequence[int], reason: str, error: str, now: datetime, stale_before: datetime,
    max_attempts: int,
) -> None:  # fmt: skip
    """Give up on leftovers: ``failed`` with ``reason``, payload dropped; only rows no live run holds meanwhile."""
    if ids:
        conn.execute(
            update(MESSAGES)
            .where(MESSAGES.c.id.in_(list(ids)), _leftover(stale_before, max_attempts))
            .values(state="failed", reason=reason, error=error, payload=None, updated_at=now)
        )


class _BatchRun:
    """One batch of one channel through claim → gate → hand-over → outcome."""

    def __init__(
        self,
        engine: Engine,
        channel: Channel,
        tally: ChannelTally,
        clock: Callable[[], datetime],
        max_attempts: int,
        lease: timedelta,
    ) -> None:
        self.engine = engine
        self.channel = channel
        self.tally = tally
        self.clock = clock
        self.max_attempts = max_attempts
        self.lease = lease

    def dispatch(self, batch: Sequence[OutboundMessage]) -> list[OutboundMessage]:
        """Claim, gate and deliver ``batch``; return the messages another run holds (counted ``unfinished``)."""
        self.tally.planned += len(batch)
        unique = _first_of_each_key(batch)
        self.tally.already_done += len(batch) - len(unique)
        with self.engine.begin() as conn:
            claimed, found = self._claim(conn, unique)
            in_doubt, elsewhere = self._sort_out([m for m in unique if m.ledger_key not in claimed], found)
            if in_doubt:
                claimed.update(self._settle_in_doubt(conn, in_doubt))
            deliverable = self._gate(conn, [m for m in unique if m.ledger_key in claimed], claimed)
        if deliverable:
            self._deliver(deliverable, claimed)
        self.tally.unfinished += len(elsewhere)
        return elsewhere

    # claim -------------------------------------------------------------------------------------------------

    def _claim(
        self, conn: Connection, messages: Sequence[OutboundMessage]
    ) -> tuple[dict[LedgerKey, int], dict[LedgerKey, Any]]:
        """Ledger row id of every key this run now holds, and the rows of the keys it could not take."""
        if not messages:
            return {}, {}
        now = self.clock()
        claimed = {(r.occurrence_key, r.customer_id, r.channel): r.id for r in _insert_claims(conn, messages, now)}
        taken = [message.ledger_key for message in messages if message.ledger_key not in claimed]
        if not taken:
            return claimed, {}
        rows = _existing_rows(conn, taken)
        reclaimed = self._reclaim(conn, [row for row in rows.values() if self._may_take(row, now)], now)
        claimed.update(reclaimed)
        return claimed, {key: row for key, row in rows.items() if key not in reclaimed}

    def _may_take(self, row: Any, now: datetime) -> bool:
        """A retryable failure with attempts left, or a claim whose run died before handing it over."""
        retryable = row.state == "failed" and row.reason == "retryable" and row.attempts < self.max_attempts
        return retryable or (row.state == "pending" and row.updated_at < now - self.lease)

    def _reclaim(self, conn: Connection, rows: Sequence[Any], now: datetime) -> dict[LedgerKey, int]:
        """Take ``rows`` back, each only if it is still takeable (another run may have taken it meanwhile)."""
        if not rows:
            return {}
        retryable = and_(
            MESSAGES.c.state == "failed",
            MESSAGES.c.reason == "retryable",
            MESSAGES.c.attempts < self.max_attempts,
        )
        abandoned = and_(MESSAGES.c.state == "pending", MESSAGES.c.updated_at < now - self.lease)
        statement = (
            update(MESSAGES)
            .where(MESSAGES.c.id.in_([row.id for row in rows]), or_(retryable, abandoned))
            .values(state="pending", updated_at=now)
            .returning(MESSAGES.c.id, *_KEY_COLUMNS)
        )
        return {(r.occurrence_key, r.customer_id, r.channel): r.id for r in conn.execute(statement)}

    def _sort_out(
        self, messages: Sequence[OutboundMessage], found: Mapping[LedgerKey, Any]
    ) -> tuple[list[tuple[OutboundMessage, int]], list[OutboundMessage]]:
        """Keys we could not claim: done (counted), handed over by a dead run (in doubt), or held by another run."""
        stale = self.clock() - self.lease
        in_doubt: list[tuple[OutboundMessage, int]] = []
        elsewhere: list[OutboundMessage] = []
        for message in messages:
            row = found.get(message.ledger_key)
            if row is None or row.state in FINAL_STATES:
                self.tally.already_done += 1  # gone means a concurrent erasure; final means done
            elif row.state == "sending" and row.updated_at < stale:
                in_doubt.append((message, row.id))
            else:
                elsewhere.append(message)
        return in_doubt, elsewhere

    def _settle_in_doubt(self, conn: Connection, rows: Sequence[tuple[OutboundMessage, int]]) -> dict[LedgerKey, int]:
        """Rows a dead run handed over: sent if the channel holds them, else ours to deliver again (or in doubt)."""
        messages = [message for message, _ in rows]
        ids = {message.ledger_key: row_id for message, row_id in rows}
        now = self.clock()
        stale = and_(MESSAGES.c.state == "sending", MESSAGES.c.updated_at < now - self.lease)
        held = _ask_channel(self.channel, messages)
        if held is None:
            self.tally.failed[IN_DOUBT] += len(rows)
            error = f"handed to {self.channel.name} by a run that stopped before it knew the outcome"
            conn.execute(
                update(MESSAGES)
                .where(MESSAGES.c.id.in_(list(ids.values())), stale)
                .values(state="failed", reason=IN_DOUBT, error=error, payload=None, updated_at=now)
            )
            return {}
        if held:
            self.tally.already_done += len(held)
            self.tally.recovered += len(held)
            conn.execute(
                update(MESSAGES)
                .where(MESSAGES.c.id == bindparam("row_id"), stale)
                .values(state="sent", reason=None, error=None, provider_id=bindparam("pid"), sent_at=now,
                        payload=None, attempts=MESSAGES.c.attempts + 1, updated_at=now),
                [{"row_id": ids[key], "pid": provider_id} for key, provider_id in held.items()],
            )  # fmt: skip
        missing = [ids[m.ledger_key] for m in messages if m.ledger_key not in held]
        if not missing:
            return {}
        taken = conn.execute(
            update(MESSAGES)
            .where(MESSAGES.c.id.in_(missing), stale)
            .values(state="pending", updated_at=now)
            .returning(MESSAGES.c.id, *_KEY_COLUMNS)
        )
        return {(r.occurrence_key, r.customer_id, r.channel): r.id for r in taken}

    # gate --------------------------------------------------------------------------------------------------

    def _gate(
        self, conn: Connection, messages: Sequence[OutboundMessage], claimed: Mapping[LedgerKey, int]
    ) -> list[OutboundMessage]:
        """Record a suppression for every message that must not go; return the ones that may."""
        ids = [m.customer_id for m in messages]
        states = consent_states(conn, ids, self.channel.consent_channel)
        marketing = consent_states(conn, [m.customer_id for m in messages if m.marketing], MARKETING)
        deliverable: list[OutboundMessage] = []
        suppressed: list[dict[str, Any]] = []
        for message in messages:
            reason = (
                suppression_reason(
                    states.get(message.customer_id), marketing.get(message.customer_id) if message.marketing else None
                )
                or self.channel.can_reach(message)
                or (HOLDOUT if message.variant == HOLDOUT else None)
            )
            if reason is None:
                deliverable.append(message)
            else:
                self.tally.suppressed[reason] += 1
                suppressed.append({"row_id": claimed[message.ledger_key], "new_reason": reason})
        if suppressed:
            statement = (
                update(MESSAGES)
                .where(MESSAGES.c.id == bindparam("row_id"))
                .values(
                    state="suppressed", reason=bindparam("new_reason"), error=None, payload=None,
                    updated_at=self.clock(),
                )
            )  # fmt: skip
            conn.execute(statement, suppressed)
        return deliverable

    # hand-over + outcome -----------------------------------------------------------------------------------

    def _deliver(self, messages: Sequence[OutboundMessage], claimed: Mapping[LedgerKey, int]) -> None:
        """Mark ``sending`` (committed), hand over, record outcomes; one message at a time when the channel cannot
        tell afterwards what it delivered."""
        groups = [list(messages)] if self.channel.knows_deliveries else [[m] for m in messages]
        for group in groups:
            ours = self._mark_sending([claimed[m.ledger_key] for m in group])
            mine = [m for m in group if claimed[m.ledger_key] in ours]
            self.tally.unfinished += len(group) - len(mine)  # our lease ran out and another run took them
            if mine:
                self._hand_over(mine, [claimed[m.ledger_key] for m in mine])

    def _mark_sending(self, ids: Sequence[int]) -> set[int]:
        statement = (
            update(MESSAGES)
            .where(MESSAGES.c.id.in_(list(ids)), MESSAGES.c.state == "pending")
            .values(state="sending", updated_at=self.clock())
            .returning(MESSAGES.c.id)
        )
        with self.engine.begin() as conn:
            return set(conn.execute(statement).scalars())

    def _hand_over(self, messages: Sequence[OutboundMessage], ids: Sequence[int]) -> None:
        try:
            results = self.channel.send_batch(messages)
        except ChannelConfigError as exc:  # by contract nothing of *this* call was delivered by a plain channel
            self._settle(messages, ids, f"ChannelConfigError: {exc}", retryable=True, count_attempt=False)
            raise
        except ChannelError as exc:  # the adapter failed the whole call
            self._settle(messages, ids, f"{type(exc).__name__}: {exc}",
                         retryable=isinstance(exc, RetryableChannelError), count_attempt=True)  # fmt: skip
            return
        except Exception as exc:  # a bug in the adapter: settle what we can, then let it show
            self._settle(messages, ids, f"{type(exc).__name__} in {self.channel.name} adapter", retryable=True,
                         count_attempt=True)  # fmt: skip
            raise
        if len(results) != len(messages):
            self._settle(messages, ids, "adapter returned a wrong number of results", retryable=True,
                         count_attempt=True)  # fmt: skip
            raise RuntimeError(
                f"channel {self.channel.name!r} returned {len(results)} results for {len(messages)} messages"
            )
        self._record(ids, results)

    def _settle(
        self, messages: Sequence[OutboundMessage], ids: Sequence[int], error: str, *, retryable: bool,
        count_attempt: bool,
    ) -> None:  # fmt: skip
        """A hand-over that raised: what the channel holds is sent, the rest failed (in doubt when it can't tell)."""
        if self.channel.knows_deliveries:
            held = _ask_channel(self.channel, messages)
        else:  # one message per call: a config error means it was not sent, anything else leaves it in doubt
            held = {} if error.startswith("ChannelConfigError") else None
        results = []
        for message in messages:
            if held is None:
                results.append(DeliveryResult("failed", error=error, retryable=False))
            elif message.ledger_key in held:
                results.append(DeliveryResult.sent(held[message.ledger_key]))
            else:
                results.append(DeliveryResult("failed", error=error, retryable=retryable))
        self._record(ids, results, in_doubt=held is None, count_attempt=count_attempt)

    def _record(
        self, ids: Sequence[int], results: Sequence[DeliveryResult], *, in_doubt: bool = False,
        count_attempt: bool = True,
    ) -> None:  # fmt: skip
        now = self.clock()
        outcomes = []
        for row_id, result in zip(ids, results, strict=True):
            if result.status == "sent":
                self.tally.sent += 1
                outcomes.append(_outcome(row_id, "sent", None, result.provider_id, None, now, keep_payload=False))
            else:
                reason = IN_DOUBT if in_doubt else ("retryable" if result.retryable else "permanent")
                self.tally.failed[reason] += 1
                outcomes.append(
                    _outcome(row_id, "failed", reason, result.provider_id, result.error, None,
                             keep_payload=reason == "retryable")
                )  # fmt: skip
        statement = _OUTCOME_UPDATE.values(
            updated_at=now, attempts=MESSAGES.c.attempts + 1 if count_attempt else MESSAGES.c.attempts
        )
        with self.engine.begin() as conn:
            conn.execute(statement, outcomes)


def _ask_channel(channel: Channel, messages: Sequence[OutboundMessage]) -> dict[LedgerKey, str] | None:
    """``channel.already_delivered``; a channel that fails to answer cannot tell."""
    try:
        return channel.already_delivered(messages)
    except Exception:  # noqa: BLE001  (the answer decides between resend and in doubt: never guess)
        log.exception("channel %s could not say what it already holds", channel.name)
        return None


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


def _outcome(
    row_id: int,
    state: str,
    reason: str | None,
    provider_id: str | None,
    error: str | None,
    sent_at: datetime | None,
    *,
    keep_payload: bool,
) -> dict[str, Any]:
    return {
        "row_id": row_id,
        "new_state": state,
        "new_reason": reason,
        "new_provider_id": provider_id,
        "new_error": error,
        "new_sent_at": sent_at,
        "new_keep": keep_payload,
    }


_CLAIM_COLUMNS: dict[str, type[TypeEngine[Any]]] = {
    "occurrence_key": String,
    "customer_id": Integer,
    "channel": String,
    "campaign": String,
    "variant": String,
    "template": String,
}


_PG_CLAIMS = text(
    """
    INSERT INTO messages (occurrence_key, customer_id, channel, campaign, variant, template, payload,
                          state, attempts, created_at, updated_at)
    SELECT u.occurrence_key, u.customer_id, u.channel, u.campaign, u.variant, u.template, p.value,
           'pending', 0, :now, :now
    FROM unnest(CAST(:occurrence_keys AS text[]), CAST(:customer_ids AS integer[]), CAST(:channels AS text[]),
                CAST(:campaigns AS text[]), CAST(:variants AS text[]), CAST(:templates AS text[]))
         WITH ORDINALITY AS u(occurrence_key, customer_id, channel, campaign, variant, template, position)
    JOIN json_array_elements(CAST(:payloads AS json)) WITH ORDINALITY AS p(value, position) USING (position)
    ON CONFLICT (occurrence_key, customer_id, channel) DO NOTHING
    RETURNING id, occurrence_key, customer_id, channel
    """
).bindparams(bindparam("now", type_=MESSAGES.c.created_at.type))


def _insert_claims(conn: Connection, messages: Sequence[OutboundMessage], now: datetime) -> Result[Any]:
    """``INSERT … ON CONFLICT DO NOTHING RETURNING`` the batch's ledger rows; only rows we inserted come back.

    PostgreSQL gets one short statement over arrays (``INSERT … SELECT FROM unnest(…)``): a 500-row VALUES list
    has 5,000 parameters and psycopg re-parses its 160 KB text on every batch, which alone capped claims at
    ~6,000 rows/s. The payloads travel as one JSON array, not a text array: psycopg escapes every quote of every
    element of a text array with a regex (measured: 60% of a claim's time). SQLite takes the batch as an
    executemany.
    """
    if conn.dialect.name == "postgresql":
        payloads = b"[" + b",".join(orjson.dumps(payload_of(m), default=str) for m in messages) + b"]"
        return conn.execute(
            _PG_CLAIMS,
            {
                "occurrence_keys": [m.occurrence_key for m in messages],
                "customer_ids": [m.customer_id for m in messages],
                "channels": [m.channel for m in messages],
                "campaigns": [m.campaign for m in messages],
                "variants": [m.variant for m in messages],
                "templates": [m.template for m in messages],
                "payloads": payloads.decode(),
                "now": now,
            },
        )
    pending = {"state": "pending", "attempts": 0, "created_at": now, "updated_at": now}
    # The payload goes in as the JSON text orjson made: the JSON column type would serialize it again, slowly.
    statement = dialect_insert(conn)(MESSAGES).values(payload=bindparam("payload_text", type_=Text))
    values = [
        {**{name: getattr(m, name) for name in _CLAIM_COLUMNS}, **pending, "payload_text": orjson.dumps(
            payload_of(m), default=str).decode()}
        for m in messages
    ]
    return conn.execute(_on_conflict_return_ids(statement), values)


_EXISTING_COLUMNS = (
    MESSAGES.c.id, MESSAGES.c.state, MESSAGES.c.reason, MESSAGES.c.attempts, MESSAGES.c.updated_at, *_KEY_COLUMNS
)
_PG_EXISTING = text(
    """
    SELECT m.id, m.state, m.reason, m.attempts, m.updated_at, m.occurrence_key, m.customer_id, m.channel
    FROM unnest(CAST(:customer_ids AS integer[])) AS k(customer_id)
    CROSS JOIN LATERAL (
        SELECT * FROM messages
        WHERE occurrence_key = :occurrence_key AND channel = :channel AND customer_id = k.customer_id LIMIT 1
    ) AS m
    """
).columns(*_EXISTING_COLUMNS)


def _existing_rows(conn: Connection, keys: Sequence[LedgerKey]) -> dict[LedgerKey, Any]:
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


def _on_conflict_return_ids(statement: Any) -> Any:
    return statement.on_conflict_do_nothing(index_elements=list(_KEY_COLUMNS)).returning(MESSAGES.c.id, *_KEY_COLUMNS)


def _first_of_each_key(batch: Sequence[OutboundMessage]) -> list[OutboundMessage]:
    """The batch without repeated ledger keys (a repeat is the same message planned twice)."""
    seen: set[LedgerKey] = set()
    unique = []
    for message in batch:
        if message.ledger_key not in seen:
            seen.add(message.ledger_key)
            unique.append(message)
    return unique


def _reasons(counts: Counter[str]) -> str:
    return ", ".join(f"{reason}={n}" for reason, n in sorted(counts.items()))


