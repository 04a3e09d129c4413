"""The audiences flow: keep ad-platform audiences in step with segments (hashed identifiers only).

Each sync plans, per audience and platform, the additions (eligible people not in yet) and the removals (people in
who withdrew ads consent, were erased or suppressed, or left the segment), as ``models/audiences.py`` decides, and
delivers them through the one dispatch path. ``full`` re-uploads everyone eligible. An audience under the
platform's minimum size gets no additions and a warning in the run's log and summary.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.states import State

from channels.registry import UnconfiguredChannel
from flows.deliver import CampaignPlan, Planned, deliver, finish_run, log_plans
from flows.runtime import Resources, check_platform, locked, run_date, run_logger, run_resources, run_title
from models import audiences as membership
from models.audiences import AudienceSync
from models.message import OutboundMessage
from models.segments import members

AUDIENCE_PREFIX = membership.PREFIX
"""The ledger's campaign names of audience syncs start with it (their leftovers are finished by audience runs)."""


@dataclass
class AudiencePlan:
    """A sync's additions and removals, and per audience and platform what they are for."""

    messages: list[OutboundMessage] = field(default_factory=list)
    syncs: list[AudienceSync] = field(default_factory=list)

    def settle(self, resources: Resources) -> None:
        """After dispatch: membership from the ledger's outcomes, and the counts each sync reports."""
        membership.record(resources.engine, self.syncs, self.messages)
        for sync in self.syncs:
            run_logger().info(
                "audience %s on %s: %s added, %s removed, %s unchanged, size %s",
                sync.audience, sync.platform, f"{sync.added:,}", f"{sync.removed:,}", f"{sync.unchanged:,}",
                f"{sync.size:,}",
            )  # fmt: skip


@task(name="plan-audiences", cache_policy=NO_CACHE)
def plan_audiences(
    resources: Resources, today: date, platform: str | None, *, full: bool = False
) -> AudiencePlan:
    """The day's audience additions and removals (all platforms or one); one log line per audience and platform."""
    catalog = resources.campaigns()
    open_channels = resources.open_channels()
    platforms = [platform] if platform else [
        p for p in membership.MIN_SIZE if p in open_channels and not isinstance(open_channels[p], UnconfiguredChannel)
    ]  # a platform left off is not synced (its audience rows would only be suppressed no_channel)
    plan = AudiencePlan()
    logger = run_logger()
    with locked(resources.engine, resources.settings, "audiences"):
        for name, audience in catalog.audiences.items():
            messages, syncs = membership.plan_sync(
                resources.engine, name, audience, catalog.segments, today, platforms, full=full,
                min_size=resources.settings.audience_min_size,
            )  # fmt: skip
            plan.messages += messages
            plan.syncs += syncs
    for sync in plan.syncs:
        (logger.warning if sync.below_minimum else logger.info)("audience %s", sync.sentence())
    log_plans(audience_plans(resources, today, plan), "audience", only_empty=True)
    return plan


def audience_plans(resources: Resources, today: date, plan: AudiencePlan) -> list[CampaignPlan]:
    """Per audience: members planned and messages (one per platform and change), or why none."""
    by_audience: dict[str, list[OutboundMessage]] = defaultdict(list)
    for message in plan.messages:
        by_audience[message.campaign].append(message)
    syncs: dict[str, list[AudienceSync]] = defaultdict(list)
    for sync in plan.syncs:
        syncs[sync.audience].append(sync)
    catalog = resources.campaigns()
    plans = []
    for name, audience in catalog.audiences.items():
        campaign = f"{AUDIENCE_PREFIX}{name}"
        why = None
        if not by_audience.get(campaign):
            mine = syncs.get(name, [])
            small = [s for s in mine if s.below_minimum]
            if small:
                why = "; ".join(s.sentence() for s in small)
            elif mine:
                why = f"in step: {', '.join(f'{s.platform} {s.unchanged:,} unchanged' for s in mine)}"
            else:
                with resources.engine.connect() as conn:
                    found = len(members(conn, catalog.segments[audience.segment], today))
                why = (
                    f"{found:,} customers in segment {audience.segment} today, on no platform this run syncs"
                    if found
                    else f"no customer in segment {audience.segment} today"
                )
        plans.append(CampaignPlan.of(campaign, by_audience.get(campaign, []), why))
    return plans


def _audiences_run_name() -> str:
    from prefect.runtime import flow_run

    parameters = flow_run.parameters
    platform = parameters.get("platform")
    return run_title(f"audiences {platform}" if platform else "audiences", parameters.get("as_of"))


@dataclass
class AudienceRun(Planned):
    """A sync's :class:`Planned`, with per audience and platform what changed (``omnicast audiences sync --json``)."""

    syncs: list[AudienceSync] = field(default_factory=list)


@flow(name="audiences", flow_run_name=_audiences_run_name)
def audiences_flow(platform: str | None = None, as_of: str | None = None, full: bool = False) -> State:
    """Plan audience additions and removals (all platforms or one; ``full`` re-uploads every eligible member) and
    deliver them.

    Named ``audiences 2026-12-08`` (``audiences meta 2026-12-08`` for one platform); publishes a summary artifact
    (``audiences``) like a campaign run's, and ends Failed (the :class:`AudienceRun` as data) when changes failed or
    were left unfinished. Call with ``return_state=True`` to get the :class:`AudienceRun` either way."""
    check_platform(platform)
    with run_resources(channels=True) as resources:
        day = run_date(resources.settings, as_of)
        plan = plan_audiences(resources, day, platform, full=full)
        plans = audience_plans(resources, day, plan)
        audiences = [f"{AUDIENCE_PREFIX}{name}" for name in resources.campaigns().audiences]
        delivery = deliver(resources, plan.messages, campaigns=audiences)
        plan.settle(resources)
        planned = AudienceRun(plan.messages, delivery, plans=plans, syncs=plan.syncs)
    label = f"audiences {platform}" if platform else "audiences"
    return finish_run(planned, run_title(label, day.isoformat()), label)


__all__ = ["AUDIENCE_PREFIX", "AudiencePlan", "AudienceRun", "audience_plans", "audiences_flow", "plan_audiences"]
