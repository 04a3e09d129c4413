"""Delivery: every planned message goes through ``channels.dispatch`` and nothing else.

One delivery first finishes what earlier runs left unfinished (a crash, a retryable failure, a message deferred by
quiet hours whose time has come), then delivers what was planned now, through the run's open channels; both are
reported, so a run that leaves work undone says so.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from channels.dispatch import DispatchReport, dispatch, finish_unfinished
from channels.rules import DispatchRules
from flows.runtime import Resources
from models.message import OutboundMessage


@dataclass
class Delivery:
    """What one delivery did: ``planned`` for the messages planned now, ``leftovers`` for earlier runs' unfinished
    ones (``None`` when there were none to look for)."""

    planned: DispatchReport
    leftovers: DispatchReport = field(default_factory=DispatchReport)

    @property
    def total(self) -> DispatchReport:
        return self.planned.merge(self.leftovers)


@dataclass
class Planned:
    """What a sending flow planned, and what delivery did with it (``None`` when delivery was left to the caller).

    Messages carry PII, so they travel only in-process between tasks, never as flow parameters (which Prefect stores).
    """

    messages: list[OutboundMessage]
    delivery: Delivery | None = None

    @property
    def report(self) -> DispatchReport | None:
        return self.delivery.planned if self.delivery is not None else None


@task(name="dispatch", cache_policy=NO_CACHE)
def deliver(
    resources: Resources,
    messages: Sequence[OutboundMessage],
    *,
    campaigns: Collection[str] | None = None,
) -> Delivery:
    """Finish earlier runs' unfinished messages (of ``campaigns``, or all), then ledger → gate → adapter for each
    planned message through the run's channels; the reports reconcile per channel."""
    logger = get_run_logger()
    settings = resources.settings
    lease = timedelta(seconds=settings.claim_lease_seconds)
    channels = resources.open_channels()
    rules = DispatchRules.from_settings(settings)
    leftovers = finish_unfinished(resources.engine, channels, lease=lease, campaigns=campaigns, rules=rules)
    if leftovers.total_planned:
        logger.info(
            "finished %d messages earlier runs left unfinished: %d sent, %d failed, %d still held elsewhere",
            leftovers.total_planned, leftovers.total_sent, leftovers.total_failed, leftovers.total_unfinished,
        )  # fmt: skip
    planned = dispatch(resources.engine, messages, channels, lease=lease, rules=rules)
    for row in planned.rows():
        logger.info(
            "%s: planned %d, sent %d, suppressed %d (%s), failed %d (%s), deferred %d, already in ledger %d, "
            "unfinished %d",
            row["channel"], row["planned"], row["sent"], row["suppressed"], row["suppressed_by"] or "-",
            row["failed"], row["failed_by"] or "-", row["deferred"], row["already_done"], row["unfinished"],
        )  # fmt: skip
    for campaign, why in planned.merge(leftovers).stopped.items():
        logger.error("campaign %s stopped: %s", campaign, why)
    return Delivery(planned=planned, leftovers=leftovers)
