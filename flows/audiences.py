"""The audiences flow: keep ad-platform audiences in step with segments (hashed identifiers only)."""

from __future__ import annotations

from datetime import date

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.deliver import Planned, deliver
from flows.planning import DEFAULT_AUDIENCES, plan_audience
from flows.runtime import Resources, check_platform, locked, run_date, run_resources
from models.message import OutboundMessage

AUDIENCE_CAMPAIGNS = [f"audience:{spec.name}" for spec in DEFAULT_AUDIENCES]
"""The ledger's campaign names of audience syncs (their leftovers are finished by audience runs only)."""


@task(name="plan-audiences", cache_policy=NO_CACHE)
def plan_audiences(resources: Resources, today: date, platform: str | None) -> list[OutboundMessage]:
    with locked(resources.engine, resources.settings, "audiences"):
        messages = [m for spec in DEFAULT_AUDIENCES for m in plan_audience(resources.engine, spec, today)]
    return [m for m in messages if platform is None or m.channel == platform]


@flow(name="audiences")
def audiences_flow(platform: str | None = None, as_of: str | None = None) -> Planned:
    """Plan audience additions (all platforms or one) and deliver them."""
    check_platform(platform)
    with run_resources(channels=True) as resources:
        messages = plan_audiences(resources, run_date(resources.settings, as_of), platform)
        return Planned(messages, deliver(resources, messages, campaigns=AUDIENCE_CAMPAIGNS))


__all__ = ["AUDIENCE_CAMPAIGNS", "audiences_flow", "plan_audiences"]
