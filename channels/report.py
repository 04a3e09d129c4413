"""What a dispatch run did, per channel and per (campaign, variant): every planned message in exactly one bucket,
and the rows summaries print.

planned = sent + suppressed + failed + already_done + unfinished + deferred, on every channel
(``DispatchReport.balanced``), and the per-(campaign, variant) tallies add up to the same totals
(``DispatchReport.reconciles_by_campaign``). ``DispatchReport.stopped`` names the campaigns the error-rate rule
stopped, and why. Failures keep their error text (the ledger's ``error`` column: no customer data) so summaries can
group them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final

RETRYABLE_REASONS: Final = ("retryable", "campaign_stopped")
"""Failure reasons a later run takes again."""

NO_VARIANT: Final = "-"
"""The variant of messages planned without one (audience syncs, campaigns without an experiment)."""

BUCKETS: Final = ("planned", "sent", "suppressed", "failed", "already_done", "unfinished", "deferred", "recovered")
"""What :meth:`ChannelTally.add` counts (``recovered`` is a part of ``already_done``, counted besides it)."""

MAX_ERROR_TEXT: Final = 200
"""Error texts are grouped by their first characters (a summary row, not a log)."""


@dataclass
class ChannelTally:
    """What happened to one channel's messages in one run.

    ``already_done``: finished before this run (``recovered`` of them delivered by a run that died before recording
    it, found at the sink now); ``unfinished``: still held by another run, or by a crashed one whose lease has not
    passed, when this run ended; ``deferred``: waiting (``pending`` with ``not_before``) for the customer's quiet
    hours to end, by this run or an earlier one; a run after ``not_before`` sends it.
    """

    planned: int = 0
    sent: int = 0
    suppressed: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    already_done: int = 0
    unfinished: int = 0
    recovered: int = 0
    deferred: int = 0
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Failures by (reason, error text), as the ledger records them; ``""`` when no text was given."""

    def add(self, bucket: str, n: int = 1, *, reason: str | None = None, error: str | None = None) -> None:
        """Count ``n`` messages in ``bucket`` (one of :data:`BUCKETS`); ``suppressed`` and ``failed`` need the
        ``reason``, a failure keeps its ``error`` text too."""
        if bucket == "suppressed":
            self.suppressed[_required(reason, bucket)] += n
        elif bucket == "failed":
            why = _required(reason, bucket)
            self.failed[why] += n
            self.errors[(why, (error or "")[:MAX_ERROR_TEXT])] += n
        elif bucket in BUCKETS:
            setattr(self, bucket, getattr(self, bucket) + n)
        else:
            raise ValueError(f"unknown bucket {bucket!r}; one of {', '.join(BUCKETS)}")

    def include(self, other: ChannelTally) -> None:
        """Add ``other``'s counts to this tally's."""
        self.planned += other.planned
        self.sent += other.sent
        self.suppressed.update(other.suppressed)
        self.failed.update(other.failed)
        self.already_done += other.already_done
        self.unfinished += other.unfinished
        self.recovered += other.recovered
        self.deferred += other.deferred
        self.errors.update(other.errors)

    @property
    def accounted(self) -> int:
        """Messages that reached a bucket; equals ``planned`` when the books balance."""
        return (
            self.sent + self.suppressed.total() + self.failed.total() + self.already_done + self.unfinished
            + self.deferred
        )  # fmt: skip

    @property
    def retryable(self) -> int:
        """Failures a later run takes again (``retryable``, and ``campaign_stopped``: never handed over)."""
        return sum(self.failed[reason] for reason in RETRYABLE_REASONS)

    @property
    def given_up(self) -> int:
        """Failures no run will retry: permanent, in doubt, expired."""
        return self.failed.total() - self.retryable


@dataclass
class DispatchReport:
    """Per-channel outcomes of a dispatch run; ``rows()`` feeds a summary table (CLI, Prefect artifact).

    ``stopped``: campaign → why the error-rate rule stopped it in this run (its messages not handed over are
    ``failed``/``campaign_stopped``, which a later run takes again). A run with a stopped campaign should end Failed.
    ``variants``: (campaign, variant) → the same buckets for that variant's messages over all channels (variant
    :data:`NO_VARIANT` when a message has none); :meth:`count` fills both views at once.
    """

    channels: dict[str, ChannelTally] = field(default_factory=dict)
    stopped: dict[str, str] = field(default_factory=dict)
    variants: dict[tuple[str, str], ChannelTally] = field(default_factory=dict)
    already_sent: dict[str, tuple[date, date]] = field(default_factory=dict)
    """campaign → the first and last day (store time) on which the ledger recorded as sent the messages of its
    occurrences that this run found already done: filled by the caller, which knows the store's time zone
    (``flows/deliver.py``), so a summary can say "0 sent: already sent on … by an earlier run"."""

    def tally(self, channel: str) -> ChannelTally:
        """The tally for ``channel``, created empty on first use."""
        return self.channels.setdefault(channel, ChannelTally())

    def variant_tally(self, campaign: str, variant: str | None) -> ChannelTally:
        """The tally for ``campaign``'s ``variant`` (over all channels), created empty on first use."""
        return self.variants.setdefault((campaign, variant or NO_VARIANT), ChannelTally())

    def count(
        self, channel: str, campaign: str, variant: str | None, bucket: str, n: int = 1, *,
        reason: str | None = None, error: str | None = None,
    ) -> None:  # fmt: skip
        """Count ``n`` messages of ``campaign``/``variant`` on ``channel`` in ``bucket``, in both views."""
        self.tally(channel).add(bucket, n, reason=reason, error=error)
        self.variant_tally(campaign, variant).add(bucket, n, reason=reason, error=error)

    def by_campaign(self) -> dict[str, ChannelTally]:
        """Each campaign's tally, its variants added up (sorted by campaign)."""
        campaigns: dict[str, ChannelTally] = {}
        for (campaign, _), tally in sorted(self.variants.items()):
            campaigns.setdefault(campaign, ChannelTally()).include(tally)
        return campaigns

    @property
    def reconciles_by_campaign(self) -> bool:
        """The (campaign, variant) tallies add up to the channels' totals, bucket by bucket and reason by reason."""
        by_channel, by_variant = ChannelTally(), ChannelTally()
        for tally in self.channels.values():
            by_channel.include(tally)
        for tally in self.variants.values():
            by_variant.include(tally)
        return by_channel == by_variant

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
    def total_deferred(self) -> int:
        return sum(t.deferred for t in self.channels.values())

    @property
    def complete(self) -> bool:
        """Every planned message reached an outcome (or waits for quiet hours to end), none failed, no campaign
        stopped."""
        return self.total_failed == 0 and self.total_unfinished == 0 and not self.stopped

    @property
    def balanced(self) -> bool:
        """planned = sent + suppressed + failed + already_done + unfinished + deferred on every channel."""
        return all(t.planned == t.accounted for t in self.channels.values())

    def merge(self, other: DispatchReport) -> DispatchReport:
        """A new report adding ``other``'s counts to this one's."""
        merged = DispatchReport()
        for report in (self, other):
            for name, t in report.channels.items():
                merged.tally(name).include(t)
            for (campaign, variant), t in report.variants.items():
                merged.variant_tally(campaign, variant).include(t)
            for campaign, why in report.stopped.items():
                merged.stopped[campaign] = f"{merged.stopped[campaign]}; {why}" if campaign in merged.stopped else why
            for campaign, (first, last) in report.already_sent.items():
                known = merged.already_sent.get(campaign, (first, last))
                merged.already_sent[campaign] = (min(first, known[0]), max(last, known[1]))
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
                "deferred": t.deferred,
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


def _reasons(counts: Counter[str]) -> str:
    return ", ".join(f"{reason}={n}" for reason, n in sorted(counts.items()))


def _required(reason: str | None, bucket: str) -> str:
    if not reason:
        raise ValueError(f"a {bucket} message needs its reason")
    return reason
