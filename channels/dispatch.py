"""Dispatch: the only path a message takes. Per channel, in batches:
ledger claim → consent (and topic opt-outs) → suppression list → frequency cap by priority → quiet hours → adapter
→ outcome.

The ``messages`` ledger's unique key ``(occurrence_key, customer_id, channel)`` is the guarantee that a message goes
out at most once, across retries, reruns, crashes and parallel workers. A message moves through these states::

    pending ──► sending ──► sent
       │  ▲        └──────► failed   retryable (a later run takes it again) | permanent | in_doubt
       │  └ deferred: pending with not_before (quiet hours); the first run after not_before takes it
       ├──► failed                    campaign_stopped (error-rate stop; a later run takes it again)
       └──► suppressed                consent, topic opt-out, suppression list, frequency cap, no address, holdout

* **claim** — one ``INSERT … ON CONFLICT DO NOTHING … RETURNING`` per batch: the rows it returns are ours; each
  keeps the planner's payload (and ``marketing``) so a later run can finish it. A key that exists is ours only if a
  conditional ``UPDATE … RETURNING`` takes it: a retryable failure with attempts left, a deferred row whose
  ``not_before`` has come, or a ``pending`` row untouched for longer than ``lease`` (its run died before handing it
  over: nothing was sent). The database serializes both statements, so two workers never hold the same key.
* **gate** — in one consent query per batch: the channel's consent, the campaign's topic
  (``email:weekly-picks``; a topic denial is ``opted_out_topic``, an opt-out of all still wins) and the CRM's
  marketing status; then the suppression list (one query per batch: hard bounces, complaints, SMTP refusals,
  erasures), ``Channel.can_reach`` and the experiment holdout. Each suppression is recorded with its reason and never
  reaches the adapter. These always apply.
* **rules** (``rules=DispatchRules(...)``, see ``channels/rules.py``; ``None`` = none of this) — for marketing messages
  on the capped channels: the **frequency cap**, counted per customer over marketing rows ``sent``/``sending`` in
  the customer's local calendar day and the 7 local days ending on the hand-over day, plus what this batch already let
  through (earlier batches are in the ledger by then). The input is materialized and stably sorted by campaign
  priority before batching, so when two messages compete for one slot the higher-priority campaign always takes it;
  the other is ``suppressed``/``frequency_cap``. Then **quiet hours** and the campaign's **send window**: a message
  whose hand-over would fall inside the quiet hours or outside its window stays ``pending`` with ``not_before`` = the
  next open instant in the customer's zone (reported
  ``deferred``) and is released; the cap is judged on the day it will be handed over, and judged again then (a
  deferred message takes no slot until it goes). Two workers delivering *different* messages to one customer at the
  same moment can both pass the cap: it is exact per run, not across concurrent runs.
* **hand-over** — the rows become ``sending`` and that is committed *before* the adapter gets them; each result
  then becomes ``sent`` or ``failed`` (``retryable``, ``permanent``, ``in_doubt`` when the adapter says the message
  may have been accepted: never resent). A result naming a suppression reason puts the address on the suppression
  list in the same transaction as the outcome. With rules, a retryable failure is committed as such and tried again
  within the run after an exponential backoff with full jitter (``in_run_retries``, attempts counted as always),
  then left to a later run. A ``sending`` row older than ``lease`` belongs to a run that died in between: the
  channel is asked what it already holds (``Channel.already_delivered``; a file sink sees its files), held messages
  are recorded as sent, the others are delivered again. A channel that cannot tell gets one message at a time, so at
  most one message per worker can be in doubt; it ends ``failed``/``in_doubt``, never resent. **SMTP** has no
  idempotency key: for it (``knows_deliveries`` false) the window between "the server accepted" and "the ledger says
  sent" is one message. A batch API without one (Postmark, ``hands_over_batches``) gets whole batches: its window is
  one call (≤ 500 messages), all of them ``in_doubt`` after a crash, none resent.
* **error-rate stop** (with rules) — per campaign, once it has ``error_min_handovers`` hand-overs in this run and more
  than ``error_threshold`` of them failed (after in-run retries), its remaining messages in this run are not handed
  over: ``failed``/``campaign_stopped`` (a later run takes them again once the problem is fixed), and
  ``DispatchReport.stopped`` says which campaign stopped and why, so the caller can end the run Failed.
* **held elsewhere** — a key another live run is working on is waited for (up to ``wait``), then counted done,
  or taken over once that run's lease has passed; what is still held at the end is reported as ``unfinished``.
  A key deferred (by any run) and not yet due is reported ``deferred``, never ``unfinished``.
* **leftovers** — :func:`finish_unfinished` finishes what earlier runs left (``pending``/``sending`` past the lease,
  retryable failures with attempts left, deferred messages now due) from the payload in the row, whether or not
  anyone plans it again.

Every planned message ends in exactly one bucket: planned = sent + suppressed + failed + already_done + unfinished
+ deferred (``channels/report.py``), counted per channel and per (campaign, variant) at once
(``DispatchReport.count``), failures with their error text. ``progress(done, total)``, when given, is called after
each batch. Every statement on the ledger is in ``channels/ledger.py``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection, Engine

from channels import gate, ledger
from channels.base import (
    Channel,
    ChannelConfigError,
    ChannelError,
    DeliveryResult,
    RetryableChannelError,
)
from channels.ledger import FINAL_STATES, IN_DOUBT, MESSAGES, payload_of
from channels.recipients import load_recipients
from channels.report import ChannelTally, DispatchReport
from channels.rules import DispatchRules
from models import suppression
from models.message import LedgerKey, OutboundMessage

__all__ = [
    "DEFAULT_LEASE", "DEFAULT_MAX_ATTEMPTS", "MESSAGES", "ChannelTally", "DispatchReport", "DispatchRules",
    "dispatch", "finish_unfinished", "payload_of",
]  # fmt: skip

log = logging.getLogger(__name__)

DEFAULT_LEASE = timedelta(minutes=15)
DEFAULT_EXPIRY = timedelta(days=7)
DEFAULT_MAX_ATTEMPTS = 3
POLL_SECONDS = 0.5
CAMPAIGN_STOPPED = "campaign_stopped"


def dispatch(
    engine: Engine,
    messages: Iterable[OutboundMessage],
    channels: Mapping[str, Channel],
    *,
    now: datetime | None = None,
    max_attempts: int | None = None,
    lease: timedelta = DEFAULT_LEASE,
    wait: timedelta | None = None,
    rules: DispatchRules | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DispatchReport:
    """Deliver ``messages`` through ``channels`` (keyed by ``OutboundMessage.channel``) at most once each.

    ``now`` fixes the clock (tests, replays); ``max_attempts`` bounds the hand-overs of a retryable message over all
    runs (default ``rules.max_attempts``, or 3 without rules); ``lease`` is how long a claimed or handed-over message
    is left to the run holding it before another run takes it over; ``wait`` is how long to wait at the end for
    messages another run holds (default: ``lease`` on the real clock, none with a fixed ``now``); ``rules`` adds the
    frequency cap by priority, quiet hours, in-run retries and the error-rate stop (``None``: none of them);
    ``progress`` is called after each batch with (messages done, messages in all), for a progress bar (the input is
    then read into a list first, to know its length). Raises ``ChannelConfigError`` for an unknown channel or when an
    adapter reports one (what was handed over is settled first).
    """
    clock: Callable[[], datetime] = (lambda: now) if now is not None else (lambda: datetime.now(UTC))
    patience = wait if wait is not None else (timedelta(0) if now is not None else lease)
    run = _Run(engine, clock, _max_attempts(max_attempts, rules), lease, rules)
    report = run.report
    if rules is not None:  # higher priority decided first, whatever the input order (sorted() is stable)
        messages = sorted(messages, key=lambda m: m.priority)
    elif progress is not None and not isinstance(messages, Sequence):
        messages = list(messages)
    total = len(messages) if progress is not None and isinstance(messages, Sequence) else 0
    done = 0
    held: dict[str, tuple[Channel, list[OutboundMessage]]] = {}
    for channel, batch in _batches(messages, channels):
        _count(report, channel.name, batch, "planned")
        elsewhere = _BatchRun(run, channel).dispatch(batch)
        if elsewhere:
            held.setdefault(channel.name, (channel, []))[1].extend(elsewhere)
        if progress is not None:
            done += len(batch)
            progress(done, total)
    if held:
        held = _wait_for_other_runs(run, held, patience)
    for name, (_, still) in held.items():
        _count(report, name, still, "unfinished")
    for name, tally in sorted(report.channels.items()):
        log.info(
            "dispatch %s: planned=%d sent=%d suppressed=%d failed=%d already_done=%d unfinished=%d deferred=%d",
            name, tally.planned, tally.sent, tally.suppressed.total(), tally.failed.total(), tally.already_done,
            tally.unfinished, tally.deferred,
        )  # fmt: skip
    for campaign, why in sorted(report.stopped.items()):
        log.warning("campaign %s stopped: %s", campaign, why)
    return report


def finish_unfinished(
    engine: Engine,
    channels: Mapping[str, Channel],
    *,
    now: datetime | None = None,
    max_attempts: int | None = None,
    lease: timedelta = DEFAULT_LEASE,
    expire_after: timedelta = DEFAULT_EXPIRY,
    wait: timedelta | None = None,
    campaigns: Collection[str] | None = None,
    rules: DispatchRules | None = None,
) -> DispatchReport:
    """Finish every message earlier runs left unfinished on ``channels``, whether or not anyone plans it again.

    Taken: ``pending``/``sending`` rows untouched for longer than ``lease`` (their run died), deferred rows whose
    ``not_before`` has passed (a deferred row not yet due is left alone) and retryable failures (also
    ``campaign_stopped``) with attempts left. Each is rebuilt from the payload kept in its row and the customer's
    current profile, then goes through :func:`dispatch` with ``rules`` (so consent, the suppression list and the cap
    are checked again: an unsubscribe since then wins). A message planned more than ``expire_after`` ago (deferred:
    due more than that ago) and never handed over is closed as ``failed``/``expired`` instead: a birthday email a
    month late is worse than none. ``campaigns`` limits the search to those campaigns' messages.
    """
    current = now or datetime.now(UTC)
    stale_before = current - lease
    attempts = _max_attempts(max_attempts, rules)
    with engine.begin() as conn:
        rows = ledger.leftovers(conn, list(channels), stale_before, attempts, current, campaigns)
        too_old = current - expire_after  # only rows never handed over expire: a handed-over one is settled first
        given_up = {
            r["id"]: "expired"
            for r in rows
            if r["state"] != "sending" and (r["not_before"] or r["created_at"]) < too_old  # waiting is not lateness
        }
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
        _give_up_leftovers(conn, given_up, expire_after, current, stale_before, attempts)
    report = dispatch(engine, messages, channels, now=now, max_attempts=attempts, lease=lease, wait=wait, rules=rules)
    for row in rows:
        if row["id"] in given_up:
            reason = given_up[row["id"]]
            campaign, variant = row["campaign"] or "", row["variant"]
            report.count(row["channel"], campaign, variant, "planned")
            report.count(row["channel"], campaign, variant, "failed", reason=reason,
                         error=_give_up_error(reason, expire_after))  # fmt: skip
    if rows:
        log.info("finished %d messages earlier runs left unfinished (%d given up)", len(rows), len(given_up))
    return report


def _max_attempts(max_attempts: int | None, rules: DispatchRules | None) -> int:
    if max_attempts is not None:
        return max_attempts
    return rules.max_attempts if rules is not None else DEFAULT_MAX_ATTEMPTS


def _give_up_leftovers(
    conn: Connection, given_up: Mapping[int, str], expire_after: timedelta, now: datetime, stale_before: datetime,
    max_attempts: int,
) -> None:  # fmt: skip
    """Close leftovers that will not be sent, each only while no live run has taken it meanwhile."""
    conditions = {
        "expired": ledger.takeable(stale_before, max_attempts, now),
        "permanent": ledger.takeable(stale_before, max_attempts, now),
        IN_DOUBT: ledger.handed_over_before(stale_before),
    }
    for reason, condition in conditions.items():
        ids = [row_id for row_id, why in given_up.items() if why == reason]
        ledger.give_up(conn, ids, condition, reason, _give_up_error(reason, expire_after), now)


def _give_up_error(reason: str, expire_after: timedelta) -> str:
    """The ledger's error text for a leftover given up with ``reason``."""
    return {
        "expired": f"planned more than {expire_after} ago and never delivered",
        "permanent": "cannot rebuild: the customer or the planned content is gone",
        IN_DOUBT: "cannot rebuild: the customer or the planned content is gone, and it was being handed over",
    }[reason]


def _count(
    report: DispatchReport, channel: str, messages: Iterable[OutboundMessage], bucket: str, *,
    reason: str | None = None, error: str | None = None,
) -> None:  # fmt: skip
    """Count ``messages`` in ``bucket`` on ``channel`` and under each one's campaign and variant."""
    groups = Counter((m.campaign, m.variant) for m in messages)
    for (campaign, variant), n in groups.items():
        report.count(channel, campaign, variant, bucket, n, reason=reason, error=error)


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
    run: _Run, held: dict[str, tuple[Channel, list[OutboundMessage]]], patience: timedelta
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
            elsewhere = _BatchRun(run, channel).dispatch(messages)
            if elsewhere:
                still[name] = (channel, elsewhere)
        held = still
    return held


@dataclass
class _Run:
    """What the batches of one dispatch call share: the clock, the limits, the report and each campaign's record
    of hand-overs for the error-rate stop."""

    engine: Engine
    clock: Callable[[], datetime]
    max_attempts: int
    lease: timedelta
    rules: DispatchRules | None
    report: DispatchReport = field(default_factory=DispatchReport)
    handed_over: Counter[str] = field(default_factory=Counter)
    failures: dict[str, Counter[str]] = field(default_factory=dict)

    def count_hand_over(self, campaign: str, failure: str | None) -> None:
        """One message of ``campaign`` handed over (its last try in this run) and how it failed, if it did; stops
        the campaign when its failed share passes the threshold."""
        self.handed_over[campaign] += 1
        failed = self.failures.setdefault(campaign, Counter())
        if failure is not None:
            failed[failure] += 1
        rules = self.rules
        if rules is None or campaign in self.report.stopped:
            return
        handed, total = self.handed_over[campaign], failed.total()
        if handed >= rules.error_min_handovers and total / handed > rules.error_threshold:
            reasons = ", ".join(f"{reason}={n}" for reason, n in sorted(failed.items()))
            self.report.stopped[campaign] = (
                f"{total} of {handed} hand-overs failed ({total / handed:.0%} > {rules.error_threshold:.0%}: "
                f"{reasons}); its remaining messages were not handed over"
            )
            log.warning("campaign %s stops: %s", campaign, self.report.stopped[campaign])


class _BatchRun:
    """One batch of one channel through claim → gate → hand-over → outcome."""

    def __init__(self, run: _Run, channel: Channel) -> None:
        self.run = run
        self.engine = run.engine
        self.channel = channel
        self.clock = run.clock
        self.max_attempts = run.max_attempts
        self.lease = run.lease
        self.rules = run.rules

    def _count(
        self, messages: Iterable[OutboundMessage], bucket: str, *, reason: str | None = None, error: str | None = None
    ) -> None:
        """Count ``messages`` of this batch's channel in ``bucket`` (per channel and per campaign and variant)."""
        _count(self.run.report, self.channel.name, messages, bucket, reason=reason, error=error)

    def dispatch(self, batch: Sequence[OutboundMessage]) -> list[OutboundMessage]:
        """Claim, gate and deliver ``batch`` (counted as planned by the caller); return the messages another run
        holds, which are in no bucket yet: the caller waits for them or counts them ``unfinished``."""
        unique, repeats = _first_of_each_key(batch)
        self._count(repeats, "already_done")
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
        reclaimed = ledger.take(conn, candidates, ledger.takeable(now - self.lease, self.max_attempts, now), now)
        claimed.update(reclaimed)
        return claimed, {key: row for key, row in rows.items() if key not in reclaimed}

    def _sort_out(
        self, messages: Sequence[OutboundMessage], found: Mapping[LedgerKey, Any]
    ) -> tuple[list[tuple[OutboundMessage, int]], list[OutboundMessage]]:
        """Keys we could not claim: done (counted), deferred and not yet due (counted), handed over by a dead run
        (in doubt), or held by another run."""
        now = self.clock()
        stale = now - self.lease
        in_doubt: list[tuple[OutboundMessage, int]] = []
        elsewhere: list[OutboundMessage] = []
        for message in messages:
            row = found.get(message.ledger_key)
            if row is None or row.state in FINAL_STATES:
                self._count([message], "already_done")  # gone means a concurrent erasure; final means done
            elif row.state == "pending" and row.not_before is not None and row.not_before > now:
                self._count([message], "deferred")  # waits for the customer's quiet hours to end; nobody holds it
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
            error = f"handed to {self.channel.name} by a run that stopped before it knew the outcome"
            self._count(messages, "failed", reason=IN_DOUBT, error=error)
            ledger.give_up(conn, list(ids.values()), handed_over, IN_DOUBT, error, now)
            return {}
        found = [m for m in messages if m.ledger_key in held]
        self._count(found, "already_done")
        self._count(found, "recovered")
        ledger.record_found_sent(conn, {ids[key]: pid for key, pid in held.items()}, now - self.lease, now)
        missing = [ids[m.ledger_key] for m in messages if m.ledger_key not in held]
        return ledger.take(conn, missing, handed_over, now)

    # gate --------------------------------------------------------------------------------------------------

    def _gate(
        self, conn: Connection, messages: Sequence[OutboundMessage], claimed: Mapping[LedgerKey, int]
    ) -> list[OutboundMessage]:
        """Record a suppression (or a deferral) for every message that must not go now; return the ones that may
        (the decisions are ``channels/gate.py``'s)."""
        if not messages:
            return []
        refused = gate.refusals(conn, self.channel, messages)
        deliverable = [m for m in messages if m.ledger_key not in refused]
        deferred: dict[LedgerKey, datetime] = {}
        now = self.clock()
        if self.rules is not None:
            deliverable, capped, deferred = gate.cap_and_quiet_hours(
                conn, self.channel.name, self.rules, deliverable, now
            )
            refused.update(capped)
        for message in messages:
            if message.ledger_key in refused:
                self._count([message], "suppressed", reason=refused[message.ledger_key])
            elif message.ledger_key in deferred:
                self._count([message], "deferred")
        ledger.record_suppressed(conn, {claimed[key]: reason for key, reason in refused.items()}, now)
        ledger.defer(conn, {claimed[key]: at for key, at in deferred.items()}, now)
        return deliverable

    # hand-over + outcome -----------------------------------------------------------------------------------

    def _deliver(self, messages: Sequence[OutboundMessage], claimed: Mapping[LedgerKey, int]) -> None:
        """Mark ``sending`` (committed), hand over, record outcomes; one message at a time when the channel cannot
        tell afterwards what it delivered. Messages of a campaign stopped meanwhile are not handed over."""
        whole = self.channel.knows_deliveries or self.channel.hands_over_batches
        groups = [list(messages)] if whole else [[m] for m in messages]
        for group in groups:
            group = self._leave_stopped_campaigns(group, claimed)
            if not group:
                continue
            ours = self._mark_sending([claimed[m.ledger_key] for m in group])
            mine = [m for m in group if claimed[m.ledger_key] in ours]
            taken = [m for m in group if claimed[m.ledger_key] not in ours]
            self._count(taken, "unfinished")  # our lease ran out and another run took them
            if mine:
                self._hand_over_and_retry(mine, [claimed[m.ledger_key] for m in mine])

    def _leave_stopped_campaigns(
        self, group: list[OutboundMessage], claimed: Mapping[LedgerKey, int]
    ) -> list[OutboundMessage]:
        """Record the messages of stopped campaigns ``failed``/``campaign_stopped``; the others."""
        stopped = self.run.report.stopped
        if not stopped:
            return group
        left = [m for m in group if m.campaign in stopped]
        if not left:
            return group
        ids = [claimed[m.ledger_key] for m in left]
        error = "campaign stopped: too many of its hand-overs failed in this run; a later run takes it again"
        with self.engine.begin() as conn:
            recorded = ledger.record_stopped(conn, ids, error, self.clock())
        self._count([m for m in left if claimed[m.ledger_key] in recorded], "failed", reason=CAMPAIGN_STOPPED,
                    error=error)  # fmt: skip
        # our lease ran out and another run took them
        self._count([m for m in left if claimed[m.ledger_key] not in recorded], "unfinished")
        return [m for m in group if m.campaign not in stopped]

    def _mark_sending(self, ids: Sequence[int]) -> set[int]:
        with self.engine.begin() as conn:
            return ledger.mark_sending(conn, ids, self.clock())

    def _hand_over_and_retry(self, messages: Sequence[OutboundMessage], ids: Sequence[int]) -> None:
        """Hand over; with rules, try retryable failures again after a backoff, each failure committed first (a
        crash while waiting leaves them retryable for a later run, never ``sending``)."""
        rules = self.rules
        retry = 0
        while True:
            results = self._hand_over(messages, ids)
            again = {
                i for i, r in enumerate(results)
                if r.status == "failed" and r.retryable and not r.in_doubt and messages[i].campaign not in
                self.run.report.stopped
            }  # fmt: skip
            if rules is None or retry >= rules.in_run_retries or not again:
                self._record(messages, ids, results)
                return
            self._record(messages, ids, results, final=[i not in again for i in range(len(results))])
            rules.sleep(rules.backoff(retry))
            retry += 1
            retry_ids = [ids[i] for i in sorted(again)]
            with self.engine.begin() as conn:
                retaken = ledger.retake_for_sending(conn, retry_ids, self.max_attempts, self.clock())
            for i in sorted(again):  # out of attempts, or another run took it meanwhile: failed, retryable
                if ids[i] not in retaken:
                    self._count([messages[i]], "failed", reason="retryable", error=results[i].error)
                    self.run.count_hand_over(messages[i].campaign, "retryable")
            keep = [i for i in sorted(again) if ids[i] in retaken]
            if not keep:
                return
            messages, ids = [messages[i] for i in keep], [ids[i] for i in keep]

    def _hand_over(self, messages: Sequence[OutboundMessage], ids: Sequence[int]) -> list[DeliveryResult]:
        """The adapter's results; a call that failed as a whole becomes one result per message. Configuration
        errors and adapter bugs are recorded, then raised."""
        try:
            results = self.channel.send_batch(messages)
        except ChannelConfigError as exc:  # by contract nothing of *this* call was delivered by a plain channel
            self._record(messages, ids, self._settle(messages, f"ChannelConfigError: {exc}", retryable=True,
                                                     nothing_sent=True), count_attempt=False)  # fmt: skip
            raise
        except ChannelError as exc:  # the adapter failed the whole call
            return self._settle(
                messages, f"{type(exc).__name__}: {exc}", retryable=isinstance(exc, RetryableChannelError)
            )
        except Exception as exc:  # a bug in the adapter: settle what we can, then let it show
            self._record(messages, ids, self._settle(messages, f"{type(exc).__name__} in {self.channel.name} adapter",
                                                     retryable=True))  # fmt: skip
            raise
        if len(results) != len(messages):
            self._record(messages, ids, self._settle(messages, "adapter returned a wrong number of results",
                                                     retryable=True))  # fmt: skip
            raise RuntimeError(
                f"channel {self.channel.name!r} returned {len(results)} results for {len(messages)} messages"
            )
        return list(results)

    def _settle(
        self, messages: Sequence[OutboundMessage], error: str, *, retryable: bool, nothing_sent: bool = False
    ) -> list[DeliveryResult]:
        """A hand-over that raised: what the channel holds is sent, the rest failed (in doubt when it can't tell).

        ``nothing_sent``: the error says so by contract (a configuration error); a channel that cannot tell what it
        delivered is then believed, since it was handed one message."""
        held: dict[LedgerKey, str] | None = {} if nothing_sent else None
        if self.channel.knows_deliveries:
            held = _ask_channel(self.channel, messages)
        results = []
        for message in messages:
            if held is None:
                results.append(DeliveryResult("failed", error=error, in_doubt=True))
            elif message.ledger_key in held:
                results.append(DeliveryResult.sent(held[message.ledger_key]))
            else:
                results.append(DeliveryResult("failed", error=error, retryable=retryable))
        return results

    def _record(
        self, messages: Sequence[OutboundMessage], ids: Sequence[int], results: Sequence[DeliveryResult], *,
        count_attempt: bool = True, final: Sequence[bool] | None = None,
    ) -> None:  # fmt: skip
        """Record the outcomes, and the addresses a result says are dead on the suppression list, in one
        transaction; count the ``final`` ones (default all; the others are tried again in this run)."""
        now = self.clock()
        outcomes = []
        dead: list[tuple[OutboundMessage, str]] = []
        for i, (message, row_id, result) in enumerate(zip(messages, ids, results, strict=True)):
            counted = final is None or final[i]
            failure: str | None = None
            if result.status == "sent":
                outcomes.append(ledger.outcome(row_id, "sent", None, result.provider_id, None, now))
            else:
                failure = IN_DOUBT if result.in_doubt else ("retryable" if result.retryable else "permanent")
                outcomes.append(ledger.outcome(row_id, "failed", failure, result.provider_id, result.error, None))
                if result.suppress:
                    dead.append((message, result.suppress))
            if counted:
                if failure is None:
                    self._count([message], "sent")
                else:
                    self._count([message], "failed", reason=failure, error=result.error)
                if count_attempt:
                    self.run.count_hand_over(message.campaign, failure)
        with self.engine.begin() as conn:
            ledger.record_outcomes(conn, outcomes, now, count_attempt=count_attempt)
            for message, reason in dead:
                self._suppress_address(conn, message, reason, now)

    def _suppress_address(self, conn: Connection, message: OutboundMessage, reason: str, now: datetime) -> None:
        """Put the message's address on the suppression list of the channel's consent channel (email)."""
        channel = self.channel.consent_channel
        address = gate.addresses([message], channel).get(message.customer_id)
        if address is None:
            return
        if reason not in suppression.REASONS:
            log.warning("channel %s named an unknown suppression reason %r; address not listed", self.channel.name,
                        reason)  # fmt: skip
            return
        suppression.suppress(conn, channel, address, reason, source=self.channel.name,
                             customer_id=message.customer_id, at=now)  # fmt: skip


def _ask_channel(channel: Channel, messages: Sequence[OutboundMessage]) -> dict[LedgerKey, str] | None:
    """``channel.already_delivered``; a channel that fails to answer cannot tell."""
    try:
        return channel.already_delivered(messages)
    except Exception:  # noqa: BLE001  (the answer decides between resend and in doubt: never guess)
        log.exception("channel %s could not say what it already holds", channel.name)
        return None


def _first_of_each_key(batch: Sequence[OutboundMessage]) -> tuple[list[OutboundMessage], list[OutboundMessage]]:
    """The batch without repeated ledger keys, and the repeats (a repeat is the same message planned twice)."""
    seen: set[LedgerKey] = set()
    unique, repeats = [], []
    for message in batch:
        if message.ledger_key not in seen:
            seen.add(message.ledger_key)
            unique.append(message)
        else:
            repeats.append(message)
    return unique, repeats
