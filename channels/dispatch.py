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

Every planned message ends in exactly one bucket: planned = sent + suppressed + failed + already_done + unfinished
(``channels/report.py``). Every statement on the ledger is in ``channels/ledger.py``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection, Engine

from channels import ledger
from channels.base import (
    Channel,
    ChannelConfigError,
    ChannelError,
    DeliveryResult,
    RetryableChannelError,
)
from channels.consent import MARKETING, consent_states, suppression_reason
from channels.ledger import FINAL_STATES, IN_DOUBT, MESSAGES, payload_of
from channels.recipients import load_recipients
from channels.report import ChannelTally, DispatchReport
from models.message import LedgerKey, OutboundMessage

__all__ = [
    "DEFAULT_LEASE", "MESSAGES", "ChannelTally", "DispatchReport", "dispatch", "finish_unfinished", "payload_of",
]  # fmt: skip

log = logging.getLogger(__name__)

DEFAULT_LEASE = timedelta(minutes=15)
DEFAULT_EXPIRY = timedelta(days=7)
HOLDOUT = "holdout"
POLL_SECONDS = 0.5


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
        report.tally(channel.name).planned += len(batch)
        run = _BatchRun(engine, channel, report.tally(channel.name), clock, max_attempts, lease)
        elsewhere = run.dispatch(batch)
        if elsewhere:
            held.setdefault(channel.name, (channel, []))[1].extend(elsewhere)
    if held:
        held = _wait_for_other_runs(engine, held, report, clock, max_attempts, lease, patience)
    for name, (_, still) in held.items():
        report.tally(name).unfinished += len(still)
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
    stale_before = current - lease
    with engine.begin() as conn:
        rows = ledger.leftovers(conn, list(channels), stale_before, max_attempts, campaigns)
        too_old = current - expire_after  # only rows never handed over expire: a handed-over one is settled first
        given_up = {r["id"]: "expired" for r in rows if r["state"] != "sending" and r["created_at"] < too_old}
        recipients = load_recipients(conn, {r["customer_id"] for r in rows})
        messages: list[OutboundMessage] = []
        for row in rows:
            if row["id"] in given_up:
                continue
            rebuilt = ledger.rebuild(row, recipients)
            if rebuilt is not None:
                messages.append(rebuilt)
            else:  # a handed-over one may have gone out: in doubt, never resent
                given_up[row["id"]] = IN_DOUBT if row["state"] == "sending" else "permanent"
        _give_up_leftovers(conn, given_up, expire_after, current, stale_before, max_attempts)
    report = dispatch(engine, messages, channels, now=now, max_attempts=max_attempts, lease=lease, wait=wait)
    for row in rows:
        if row["id"] in given_up:
            tally = report.tally(row["channel"])
            tally.planned += 1
            tally.failed[given_up[row["id"]]] += 1
    if rows:
        log.info("finished %d messages earlier runs left unfinished (%d given up)", len(rows), len(given_up))
    return report


def _give_up_leftovers(
    conn: Connection, given_up: Mapping[int, str], expire_after: timedelta, now: datetime, stale_before: datetime,
    max_attempts: int,
) -> None:  # fmt: skip
    """Close leftovers that will not be sent, each only while no live run has taken it meanwhile."""
    errors = {
        "expired": (ledger.takeable(stale_before, max_attempts),
                    f"planned more than {expire_after} ago and never delivered"),
        "permanent": (ledger.takeable(stale_before, max_attempts),
                      "cannot rebuild: the customer or the planned content is gone"),
        IN_DOUBT: (ledger.handed_over_before(stale_before),
                   "cannot rebuild: the customer or the planned content is gone, and it was being handed over"),
    }  # fmt: skip
    for reason, (condition, error) in errors.items():
        ids = [row_id for row_id, why in given_up.items() if why == reason]
        ledger.give_up(conn, ids, condition, reason, error, now)


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
) -> dict[str, tuple[Channel, list[OutboundMessage]]]:
    """Give messages other runs hold the time to finish (or their lease to pass), then settle them again; the ones
    still held at the end."""
    deadline = time.monotonic() + patience.total_seconds()
    count = sum(len(messages) for _, messages in held.values())
    if patience > timedelta(0):
        log.info("%d messages are held by another run; waiting up to %s for them", count, patience)
    while held and time.monotonic() < deadline:
        time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        still: dict[str, tuple[Channel, list[OutboundMessage]]] = {}
        for name, (channel, messages) in held.items():
            elsewhere = _BatchRun(engine, channel, report.tally(name), clock, max_attempts, lease).dispatch(messages)
            if elsewhere:
                still[name] = (channel, elsewhere)
        held = still
    return held


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
        """Claim, gate and deliver ``batch`` (counted as planned by the caller); return the messages another run
        holds, which are in no bucket yet: the caller waits for them or counts them ``unfinished``."""
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
        return elsewhere

    # claim -------------------------------------------------------------------------------------------------

    def _claim(
        self, conn: Connection, messages: Sequence[OutboundMessage]
    ) -> tuple[dict[LedgerKey, int], dict[LedgerKey, Any]]:
        """Ledger row id of every key this run now holds, and the rows of the keys it could not take."""
        if not messages:
            return {}, {}
        now = self.clock()
        claimed = ledger.insert_claims(conn, messages, now)
        taken = [message.ledger_key for message in messages if message.ledger_key not in claimed]
        if not taken:
            return claimed, {}
        rows = ledger.existing_rows(conn, taken)
        candidates = [row.id for row in rows.values() if row.state in ("pending", "failed")]  # the SQL decides
        reclaimed = ledger.take(conn, candidates, ledger.takeable(now - self.lease, self.max_attempts), now)
        claimed.update(reclaimed)
        return claimed, {key: row for key, row in rows.items() if key not in reclaimed}

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
        handed_over = ledger.handed_over_before(now - self.lease)
        held = _ask_channel(self.channel, messages)
        if held is None:
            self.tally.failed[IN_DOUBT] += len(rows)
            error = f"handed to {self.channel.name} by a run that stopped before it knew the outcome"
            ledger.give_up(conn, list(ids.values()), handed_over, IN_DOUBT, error, now)
            return {}
        self.tally.already_done += len(held)
        self.tally.recovered += len(held)
        ledger.record_found_sent(conn, {ids[key]: pid for key, pid in held.items()}, now - self.lease, now)
        missing = [ids[m.ledger_key] for m in messages if m.ledger_key not in held]
        return ledger.take(conn, missing, handed_over, now)

    # gate --------------------------------------------------------------------------------------------------

    def _gate(
        self, conn: Connection, messages: Sequence[OutboundMessage], claimed: Mapping[LedgerKey, int]
    ) -> list[OutboundMessage]:
        """Record a suppression for every message that must not go; return the ones that may."""
        states = consent_states(conn, [m.customer_id for m in messages], self.channel.consent_channel)
        marketing = consent_states(conn, [m.customer_id for m in messages if m.marketing], MARKETING)
        deliverable: list[OutboundMessage] = []
        suppressed: dict[int, str] = {}
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
                suppressed[claimed[message.ledger_key]] = reason
        ledger.record_suppressed(conn, suppressed, self.clock())
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
        with self.engine.begin() as conn:
            return ledger.mark_sending(conn, ids, self.clock())

    def _hand_over(self, messages: Sequence[OutboundMessage], ids: Sequence[int]) -> None:
        try:
            results = self.channel.send_batch(messages)
        except ChannelConfigError as exc:  # by contract nothing of *this* call was delivered by a plain channel
            self._settle(messages, ids, f"ChannelConfigError: {exc}", retryable=True, count_attempt=False,
                         nothing_sent=True)  # fmt: skip
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
        count_attempt: bool, nothing_sent: bool = False,
    ) -> None:  # fmt: skip
        """A hand-over that raised: what the channel holds is sent, the rest failed (in doubt when it can't tell).

        ``nothing_sent``: the error says so by contract (a configuration error); a channel that cannot tell what it
        delivered is then believed, since it was handed one message."""
        held: dict[LedgerKey, str] | None = {} if nothing_sent else None
        if self.channel.knows_deliveries:
            held = _ask_channel(self.channel, messages)
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
                outcomes.append(ledger.outcome(row_id, "sent", None, result.provider_id, None, now))
            else:
                reason = IN_DOUBT if in_doubt else ("retryable" if result.retryable else "permanent")
                self.tally.failed[reason] += 1
                outcomes.append(ledger.outcome(row_id, "failed", reason, result.provider_id, result.error, None))
        with self.engine.begin() as conn:
            ledger.record_outcomes(conn, outcomes, now, count_attempt=count_attempt)


def _ask_channel(channel: Channel, messages: Sequence[OutboundMessage]) -> dict[LedgerKey, str] | None:
    """``channel.already_delivered``; a channel that fails to answer cannot tell."""
    try:
        return channel.already_delivered(messages)
    except Exception:  # noqa: BLE001  (the answer decides between resend and in doubt: never guess)
        log.exception("channel %s could not say what it already holds", channel.name)
        return None


def _first_of_each_key(batch: Sequence[OutboundMessage]) -> list[OutboundMessage]:
    """The batch without repeated ledger keys (a repeat is the same message planned twice)."""
    seen: set[LedgerKey] = set()
    unique = []
    for message in batch:
        if message.ledger_key not in seen:
            seen.add(message.ledger_key)
            unique.append(message)
    return unique
