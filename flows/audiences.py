"""The audiences flow: keep ad-platform audiences in step with segments (hashed identifiers only)."""

from __future__ import annotations

from collections import defaultdict
from datetime import date

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.states import State

from flows.deliver import CampaignPlan, Planned, deliver, finish_run, log_plans
from flows.runtime import Resources, check_platform, locked, run_date, run_resources, run_title
from models.message import OutboundMessage
from models.planning import plan_audience
from models.segments import members

AUDIENCE_PREFIX = "audience:"
"""The ledger's campaign names of audience syncs start with it (their leftovers are finished by audience runs)."""


@task(name="plan-audiences", cache_policy=NO_CACHE)
def plan_audiences(resources: Resources, today: date, platform: str | None) -> list[OutboundMessage]:
    """The day's audience additions (all platforms or one); the run's log gets one line per audience."""
    catalog = resources.campaigns()
    with locked(resources.engine, resources.settings, "audiences"):
        messages = [
            message
            for name, audience in catalog.audiences.items()
            for message in plan_audience(resources.engine, name, audience, catalog.segments, today)
        ]
    messages = [m for m in messages if platform is None or m.channel == platform]
    log_plans(audience_plans(resources, today, messages), "audience")
    return messages


def audience_plans(resources: Resources, today: date, messages: list[OutboundMessage]) -> list[CampaignPlan]:
    """Per audience: members planned and messages (one per platform), or why none."""
    by_audience: dict[str, list[OutboundMessage]] = defaultdict(list)
    for message in messages:
        by_audience[message.campaign].append(message)
    catalog = resources.campaigns()
    plans = []
    for name, audience in catalog.audiences.items():
        campaign = f"{AUDIENCE_PREFIX}{name}"
        why = None
        if not by_audience.get(campaign):
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


@flow(name="audiences", flow_run_name=_audiences_run_name)
def audiences_flow(platform: str | None = None, as_of: str | None = None) -> State:
    """Plan audience additions (all platforms or one) and deliver them.

    Named ``audiences 2026-12-08`` (``audiences meta 2026-12-08`` for one platform); publishes a summary artifact
    (``audiences``) like a campaign run's, and ends Failed (the :class:`Planned` as data) when additions failed or
    were left unfinished. Call with ``return_state=True`` to get the :class:`Planned` either way."""
    check_platform(platform)
    with run_resources(channels=True) as resources:
        day = run_date(resources.settings, as_of)
        messages = plan_audiences(resources, day, platform)
        plans = audience_plans(resources, day, messages)
        audiences = [f"{AUDIENCE_PREFIX}{name}" for name in resources.campaigns().audiences]
        planned = Planned(messages, deliver(resources, messages, campaigns=audiences), plans=plans)
    label = f"audiences {platform}" if platform else "audiences"
    return finish_run(planned, run_title(label, day.isoformat()), label)


__all__ = ["AUDIENCE_PREFIX", "audience_plans", "audiences_flow", "plan_audiences"]
