"""Delivery: every planned message goes through ``channels.dispatch`` and nothing else.

One delivery first finishes what earlier runs left unfinished (a crash, a retryable failure, a message deferred by
quiet hours whose time has come), then delivers what was planned now, through the run's open channels; both are
reported, so a run that leaves work undone says so. A sending flow ends with :func:`finish_run`: its summary
artifact, and a Failed state when messages failed, were left unfinished or a campaign stopped.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed, State
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from channels.dispatch import MESSAGES, DispatchReport, dispatch, finish_unfinished
from channels.report import NO_VARIANT
from channels.rules import DispatchRules
from flows.runtime import Resources, run_logger
from flows.summary import RunProgress, in_prefect_run, nothing_sent_sentence
from models.message import OutboundMessage

HOLDOUT = "holdout"
_KEYS_PER_QUERY = 500


@dataclass
class Delivery:
    """What one delivery did: ``planned`` for the messages planned now, ``leftovers`` for earlier runs' unfinished
    ones (``None`` when there were none to look for)."""

    planned: DispatchReport
    leftovers: DispatchReport = field(default_factory=DispatchReport)

    @property
    def total(self) -> DispatchReport:
        return self.planned.merge(self.leftovers)


@dataclass(frozen=True)
class CampaignPlan:
    """What planning made of one campaign (or ad audience) for the day: counts only, never customer data."""

    campaign: str
    customers: int
    """Distinct customers planned (holdout included)."""
    messages: int
    """Planned messages: one per customer and channel."""
    holdout: int = 0
    """Customers in the holdout: recorded in the ledger, never contacted."""
    why_none: str | None = None
    """When nothing was planned, why (``no customer in segment loyal-regulars today``)."""

    @classmethod
    def of(cls, campaign: str, messages: Sequence[OutboundMessage], why_none: str | None = None) -> CampaignPlan:
        return cls(
            campaign=campaign,
            customers=len({m.customer_id for m in messages}),
            messages=len(messages),
            holdout=len({m.customer_id for m in messages if m.variant == HOLDOUT}),
            why_none=None if messages else why_none,
        )


@dataclass
class Planned:
    """What a sending flow planned, and what delivery did with it (``None`` when delivery was left to the caller).

    Messages carry PII, so they travel only in-process between tasks, never as flow parameters (which Prefect stores).
    ``plans`` says per campaign (or audience) how many customers and messages were planned, or why none.
    """

    messages: list[OutboundMessage]
    delivery: Delivery | None = None
    plans: list[CampaignPlan] = field(default_factory=list)

    @property
    def report(self) -> DispatchReport | None:
        return self.delivery.planned if self.delivery is not None else None


def log_plans(plans: Iterable[CampaignPlan], what: str = "campaign", *, only_empty: bool = False) -> None:
    """One line per campaign or audience in the run's log: customers, messages, holdout, or why none (only the
    empty ones with ``only_empty``: campaign planning logs its own counts)."""
    logger = run_logger()
    for plan in plans:
        if plan.messages and only_empty:
            continue
        if plan.messages:
            logger.info(
                "%s %s: %d customers, %d messages planned, %d in the holdout (recorded, never contacted)",
                what, plan.campaign, plan.customers, plan.messages, plan.holdout,
            )  # fmt: skip
        else:
            logger.info("%s %s: 0 planned: %s", what, plan.campaign, plan.why_none or "nothing to send today")


@task(name="dispatch", cache_policy=NO_CACHE)
def deliver(
    resources: Resources,
    messages: Sequence[OutboundMessage],
    *,
    campaigns: Collection[str] | None = None,
) -> Delivery:
    """Finish earlier runs' unfinished messages (of ``campaigns``, or all), then ledger → gate → adapter for each
    planned message through the run's channels; the reports reconcile per channel and per campaign and variant.

    The Prefect UI gets a progress bar (``dispatch-progress``) updated after each batch, and the log one line per
    channel and per campaign (and variant), with why a campaign sent nothing."""
    logger = run_logger()
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
    total = len(messages)
    bar = RunProgress("dispatch-progress", f"Dispatch: 0 of {total:,} messages")
    logger.info("dispatching %d planned messages", total)

    def progress(done: int, of: int) -> None:
        bar.update(done, of, f"Dispatch: {done:,} of {of:,} messages")

    planned = dispatch(resources.engine, messages, channels, lease=lease, rules=rules, progress=progress)
    bar.update(total, total, f"Dispatch: {total:,} of {total:,} messages")
    planned.already_sent.update(already_sent_days(resources.engine, planned, messages, settings.timezone))
    for row in planned.rows():
        logger.info(
            "%s: planned %d, sent %d, suppressed %d (%s), failed %d (%s), deferred %d, already in ledger %d, "
            "unfinished %d",
            row["channel"], row["planned"], row["sent"], row["suppressed"], row["suppressed_by"] or "-",
            row["failed"], row["failed_by"] or "-", row["deferred"], row["already_done"], row["unfinished"],
        )  # fmt: skip
    log_outcomes(planned)
    for campaign, why in planned.merge(leftovers).stopped.items():
        logger.error("campaign %s stopped: %s", campaign, why)
    return Delivery(planned=planned, leftovers=leftovers)


def log_outcomes(report: DispatchReport) -> None:
    """One line per campaign (and per variant when it has several) in the run's log, with why nothing was sent."""
    logger = run_logger()
    variants: dict[str, list[str]] = defaultdict(list)
    for campaign, variant in report.variants:
        variants[campaign].append(variant)
    for campaign, t in report.by_campaign().items():
        why = nothing_sent_sentence(t, report.already_sent.get(campaign))
        logger.info(
            "campaign %s: planned %d, sent %d, suppressed %d, failed %d, deferred %d, already in ledger %d, "
            "unfinished %d%s",
            campaign, t.planned, t.sent, t.suppressed.total(), t.failed.total(), t.deferred, t.already_done,
            t.unfinished, f" ({why})" if why else "",
        )  # fmt: skip
        if variants[campaign] == [NO_VARIANT]:
            continue
        for variant in sorted(variants[campaign]):
            v = report.variants[(campaign, variant)]
            logger.info(
                "campaign %s, variant %s: planned %d, sent %d, suppressed %d, failed %d, already in ledger %d",
                campaign, variant, v.planned, v.sent, v.suppressed.total(), v.failed.total(), v.already_done,
            )  # fmt: skip


def already_sent_days(
    engine: Engine, report: DispatchReport, messages: Iterable[OutboundMessage], timezone: str
) -> dict[str, tuple[date, date]]:
    """For each campaign this run found messages of already done: the first and last day (in the store's
    ``timezone``) on which the ledger recorded its occurrences' messages as sent, if any were."""
    campaigns = {campaign for campaign, t in report.by_campaign().items() if t.already_done}
    keys: dict[str, set[str]] = defaultdict(set)
    for message in messages:
        if message.campaign in campaigns:
            keys[message.campaign].add(message.occurrence_key)
    found: dict[str, tuple[datetime, datetime]] = {}
    with engine.connect() as conn:
        for campaign, occurrences in keys.items():
            ordered = sorted(occurrences)
            for start in range(0, len(ordered), _KEYS_PER_QUERY):
                first, last = conn.execute(
                    select(func.min(MESSAGES.c.sent_at), func.max(MESSAGES.c.sent_at)).where(
                        MESSAGES.c.campaign == campaign,
                        MESSAGES.c.state == "sent",
                        MESSAGES.c.occurrence_key.in_(ordered[start : start + _KEYS_PER_QUERY]),
                    )
                ).one()
                if first is None:
                    continue
                known = found.get(campaign, (first, last))
                found[campaign] = (min(first, known[0]), max(last, known[1]))
    zone = ZoneInfo(timezone)
    return {campaign: (_local_day(first, zone), _local_day(last, zone)) for campaign, (first, last) in found.items()}


def _local_day(moment: datetime, zone: ZoneInfo) -> date:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(zone).date()


def finish_run(planned: Planned, title: str, key: str) -> State:
    """End a campaign or audience run: its summary as a Markdown artifact (``key``), then Completed, or Failed
    (with ``planned`` as data either way) when messages failed, were left unfinished or a campaign stopped, with
    the message the daily run gives (:func:`flows.daily.undone_sentence`)."""
    from flows.daily import undone_sentence  # the daily flow imports this module
    from flows.summary import run_summary_markdown

    delivery = planned.delivery
    problem = undone_sentence(delivery.total) if delivery is not None else None
    if in_prefect_run():
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(key=artifact_key(key), markdown=run_summary_markdown(title, planned, problem),
                                 description=title)  # fmt: skip
    if problem:
        run_logger().error("%s", problem)
        return Failed(message=problem, data=planned)
    return Completed(data=planned)


def artifact_key(text: str) -> str:
    """A Prefect artifact key (lowercase letters, digits, dashes) from a campaign or audience name."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "run"


__all__ = [
    "CampaignPlan", "Delivery", "Planned", "already_sent_days", "artifact_key", "deliver", "finish_run",
    "log_outcomes", "log_plans",
]  # fmt: skip
