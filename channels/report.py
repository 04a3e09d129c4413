"""What a dispatch run did, per channel: every planned message in exactly one bucket, and the rows summaries print.

planned = sent + suppressed + failed + already_done + unfinished + deferred, on every channel
(``DispatchReport.balanced``). ``DispatchReport.stopped`` names the campaigns the error-rate rule stopped, and why.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

RETRYABLE_REASONS: Final = ("retryable", "campaign_stopped")
"""Failure reasons a later run takes again."""


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
    """

    channels: dict[str, ChannelTally] = field(default_factory=dict)
    stopped: dict[str, str] = field(default_factory=dict)

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
                m = merged.tally(name)
                m.planned += t.planned
                m.sent += t.sent
                m.suppressed.update(t.suppressed)
                m.failed.update(t.failed)
                m.already_done += t.already_done
                m.unfinished += t.unfinished
                m.recovered += t.recovered
                m.deferred += t.deferred
            for campaign, why in report.stopped.items():
                merged.stopped[campaign] = f"{merged.stopped[campaign]}; {why}" if campaign in merged.stopped else why
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


