"""Dispatch: the only path a message takes. Per channel, in batches: ledger claim → consent gate → adapter → outcome.

The ``messages`` ledger's unique key ``(occurrence_key, customer_id, channel)`` is the guarantee that a message goes
out at most once, across retries, reruns, crashes and parallel workers:

* **claim** — one ``INSERT … ON CONFLICT DO NOTHING … RETURNING`` per batch: the rows it returns are ours. A key
  that exists is ours only if one conditional ``UPDATE … RETURNING`` takes it: a retryable failure with attempts
  left, or a ``pending`` row whose worker died (untouched for longer than ``lease``). The database serializes
  both statements, so two workers can never hold the same key.
* **gate** — consent (one query per batch), then ``Channel.can_reach``, then the experiment holdout; each
  suppression is recorded with its reason and never reaches the adapter.
* **adapter** — ``send_batch``; each result becomes ``sent`` or ``failed`` (``reason`` retryable | permanent).
  A ``ChannelConfigError`` hands the batch back (``failed``/retryable, attempts unchanged) and stops the run.

Every planned message ends in exactly one bucket: planned = sent + suppressed + failed + already_done.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Integer, String, and_, bindparam, func, literal, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Engine, Result
from sqlalchemy.types import TypeEngine

from channels.base import Channel, ChannelConfigError, ChannelError, DeliveryResult, OutboundMessage
from channels.consent import consent_states, suppression_reason
from models.db import dialect_insert
from models.schema import Message

log = logging.getLogger(__name__)

MESSAGES = Message.__table__  # type: ignore[attr-defined]
DEFAULT_LEASE = timedelta(minutes=15)
HOLDOUT = "holdout"

LedgerKey = tuple[str, int, str]
_KEY_COLUMNS = (MESSAGES.c.occurrence_key, MESSAGES.c.customer_id, MESSAGES.c.channel)


@dataclass
class ChannelTally:
    """What happened to one channel's messages in one run."""

    planned: int = 0
    sent: int = 0
    suppressed: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    already_done: int = 0

    @property
    def accounted(self) -> int:
        """Messages that reached an outcome; equals ``planned`` when the books balance."""
        return self.sent + self.suppressed.total() + self.failed.total() + self.already_done


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
    def balanced(self) -> bool:
        """planned = sent + suppressed + failed + already_done on every channel."""
        return all(t.planned == t.accounted for t in self.channels.values())

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
) -> DispatchReport:
    """Deliver ``messages`` through ``channels`` (keyed by ``OutboundMessage.channel``) at most once each.

    ``now`` fixes the clock (tests, replays); ``max_attempts`` bounds retries of retryable failures; ``lease`` is
    how long a ``pending`` claim is respected before a later run treats its worker as dead. Raises
    ``ChannelConfigError`` for an unknown channel or when an adapter reports one (nothing is recorded as sent).
    """
    clock: Callable[[], datetime] = (lambda: now) if now is not None else (lambda: datetime.now(UTC))
    report = DispatchReport()
    for channel, batch in _batches(messages, channels):
        run = _BatchRun(engine, channel, report.tally(channel.name), clock, max_attempts, lease)
        run.dispatch(batch)
    for name, tally in sorted(report.channels.items()):
        log.info(
            "dispatch %s: planned=%d sent=%d suppressed=%d failed=%d already_done=%d",
            name, tally.planned, tally.sent, tally.suppressed.total(), tally.failed.total(), tally.already_done,
        )  # fmt: skip
    return report


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


class _BatchRun:
    """One batch of one channel through claim → gate → adapter → outcome."""

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

    def dispatch(self, batch: Sequence[OutboundMessage]) -> None:
        self.tally.planned += len(batch)
        unique = _first_of_each_key(batch)
        self.tally.already_done += len(batch) - len(unique)
        with self.engine.begin() as conn:
            claimed = self._claim(conn, unique)
            self.tally.already_done += len(unique) - len(claimed)
            deliverable = self._gate(conn, [m for m in unique if m.ledger_key in claimed], claimed)
        if deliverable:
            self._deliver(deliverable, claimed)

    # claim -------------------------------------------------------------------------------------------------

    def _claim(self, conn: Connection, messages: Sequence[OutboundMessage]) -> dict[LedgerKey, int]:
        """Ledger row id of every key this run now holds."""
        if not messages:
            return {}
        now = self.clock()
        claimed = {(r.occurrence_key, r.customer_id, r.channel): r.id for r in _insert_claims(conn, messages, now)}
        taken = [message.ledger_key for message in messages if message.ledger_key not in claimed]
        if taken:
            claimed.update(self._reclaim(conn, taken, now))
        return claimed

    def _reclaim(self, conn: Connection, keys: Sequence[LedgerKey], now: datetime) -> dict[LedgerKey, int]:
        """Take back keys whose earlier attempt failed retryably, or whose worker died mid-send."""
        retryable = and_(
            MESSAGES.c.state == "failed",
            MESSAGES.c.reason == "retryable",
            MESSAGES.c.attempts < self.max_attempts,
        )
        abandoned = and_(MESSAGES.c.state == "pending", MESSAGES.c.updated_at < now - self.lease)
        statement = (
            update(MESSAGES)
            .where(tuple_(*_KEY_COLUMNS).in_(list(keys)), or_(retryable, abandoned))
            .values(state="pending", updated_at=now)
            .returning(MESSAGES.c.id, *_KEY_COLUMNS)
        )
        return {(r.occurrence_key, r.customer_id, r.channel): r.id for r in conn.execute(statement)}

    # gate --------------------------------------------------------------------------------------------------

    def _gate(
        self, conn: Connection, messages: Sequence[OutboundMessage], claimed: Mapping[LedgerKey, int]
    ) -> list[OutboundMessage]:
        """Record a suppression for every message that must not go; return the ones that may."""
        states = consent_states(conn, [m.customer_id for m in messages], self.channel.consent_channel)
        deliverable: list[OutboundMessage] = []
        suppressed: list[dict[str, Any]] = []
        for message in messages:
            reason = (
                suppression_reason(states.get(message.customer_id))
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
                .values(state="suppressed", reason=bindparam("new_reason"), error=None, updated_at=self.clock())
            )
            conn.execute(statement, suppressed)
        return deliverable

    # adapter + outcome -------------------------------------------------------------------------------------

    def _deliver(self, messages: Sequence[OutboundMessage], claimed: Mapping[LedgerKey, int]) -> None:
        ids = [claimed[message.ledger_key] for message in messages]
        try:
            results = self.channel.send_batch(messages)
        except ChannelConfigError as exc:
            self._release(ids, f"ChannelConfigError: {exc}")
            raise
        except ChannelError as exc:  # the adapter failed the whole batch at once
            results = [DeliveryResult.failed(exc)] * len(messages)
        except Exception as exc:
            self._release(ids, f"{type(exc).__name__} in {self.channel.name} adapter", count_attempt=True)
            raise
        if len(results) != len(messages):
            self._release(ids, "adapter returned a wrong number of results", count_attempt=True)
            raise RuntimeError(
                f"channel {self.channel.name!r} returned {len(results)} results for {len(messages)} messages"
            )
        self._record(ids, results)

    def _record(self, ids: Sequence[int], results: Sequence[DeliveryResult]) -> None:
        now = self.clock()
        outcomes = []
        for row_id, result in zip(ids, results, strict=True):
            if result.status == "sent":
                self.tally.sent += 1
                outcomes.append(_outcome(row_id, "sent", None, result.provider_id, None, now))
            else:
                reason = "retryable" if result.retryable else "permanent"
                self.tally.failed[reason] += 1
                outcomes.append(_outcome(row_id, "failed", reason, result.provider_id, result.error, None))
        with self.engine.begin() as conn:
            conn.execute(_OUTCOME_UPDATE.values(updated_at=now), outcomes)

    def _release(self, ids: Sequence[int], error: str, *, count_attempt: bool = False) -> None:
        """Hand claimed rows back as retryable failures so the next run takes them at once (nothing was sent)."""
        attempts = MESSAGES.c.attempts + 1 if count_attempt else MESSAGES.c.attempts
        statement = (
            update(MESSAGES)
            .where(MESSAGES.c.id.in_(list(ids)), MESSAGES.c.state == "pending")
            .values(state="failed", reason="retryable", error=error, attempts=attempts, updated_at=self.clock())
        )
        with self.engine.begin() as conn:
            conn.execute(statement)


_OUTCOME_UPDATE = (
    update(MESSAGES)
    .where(MESSAGES.c.id == bindparam("row_id"))
    .values(
        state=bindparam("new_state"),
        reason=bindparam("new_reason"),
        provider_id=bindparam("new_provider_id"),
        error=bindparam("new_error"),
        sent_at=bindparam("new_sent_at"),
        attempts=MESSAGES.c.attempts + 1,
    )
)


def _outcome(
    row_id: int, state: str, reason: str | None, provider_id: str | None, error: str | None, sent_at: datetime | None
) -> dict[str, Any]:
    return {
        "row_id": row_id,
        "new_state": state,
        "new_reason": reason,
        "new_provider_id": provider_id,
        "new_error": error,
        "new_sent_at": sent_at,
    }


_CLAIM_COLUMNS: dict[str, type[TypeEngine[Any]]] = {
    "occurrence_key": String,
    "customer_id": Integer,
    "channel": String,
    "campaign": String,
    "variant": String,
    "template": String,
}


def _insert_claims(conn: Connection, messages: Sequence[OutboundMessage], now: datetime) -> Result[Any]:
    """``INSERT … ON CONFLICT DO NOTHING RETURNING`` the batch's ledger rows; only rows we inserted come back.

    PostgreSQL gets one short statement over arrays (``INSERT … SELECT FROM unnest(…)``): a 500-row VALUES list
    has 5,000 parameters and psycopg re-parses its 160 KB text on every batch, which alone capped claims at
    ~6,000 rows/s. SQLite takes the batch as an executemany.
    """
    pending = {"state": "pending", "attempts": 0, "created_at": now, "updated_at": now}
    rows = [{name: getattr(message, name) for name in _CLAIM_COLUMNS} for message in messages]
    if conn.dialect.name == "postgresql":
        arrays = [bindparam(f"claim_{n}", [row[n] for row in rows], type_=ARRAY(t)) for n, t in _CLAIM_COLUMNS.items()]
        unnested = func.unnest(*arrays).table_valued(*_CLAIM_COLUMNS).render_derived()
        constants = [literal(value, MESSAGES.c[name].type).label(name) for name, value in pending.items()]
        source = select(*(unnested.c[name] for name in _CLAIM_COLUMNS), *constants)
        statement = postgresql.insert(MESSAGES).from_select([*_CLAIM_COLUMNS, *pending], source)
        return conn.execute(_on_conflict_return_ids(statement))
    statement = dialect_insert(conn)(MESSAGES)
    return conn.execute(_on_conflict_return_ids(statement), [{**row, **pending} for row in rows])


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
