"""The audiences flow: keep ad-platform audiences in step with segments (hashed identifiers only)."""

from __future__ import annotations

from datetime import date

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.deliver import Planned, deliver
from flows.runtime import Resources, check_platform, locked, run_date, run_resources
from models.message import OutboundMessage
from models.planning import plan_audience

AUDIENCE_PREFIX = "audience:"
"""The ledger's campaign names of audience syncs start with it (their leftovers are finished by audience runs)."""


@task(name="plan-audiences", cache_policy=NO_CACHE)
def plan_audiences(resources: Resources, today: date, platform: str | None) -> list[OutboundMessage]:
    catalog = resources.campaigns()
    with locked(resources.engine, resources.settings, "audiences"):
        messages = [
            message
            for name, audience in catalog.audiences.items()
            for message in plan_audience(resources.engine, name, audience, catalog.segments, today)
        ]
    return [m for m in messages if platform is None or m.channel == platform]


@flow(name="audiences")
def audiences_flow(platform: str | None = None, as_of: str | None = None) -> Planned:
    """Plan audience additions (all platforms or one) and deliver them."""
    check_platform(platform)
    with run_resources(channels=True) as resources:
        messages = plan_audiences(resources, run_date(resources.settings, as_of), platform)
        audiences = [f"{AUDIENCE_PREFIX}{name}" for name in resources.campaigns().audiences]
        return Planned(messages, deliver(resources, messages, campaigns=audiences))


__all__ = ["AUDIENCE_PREFIX", "audiences_flow", "plan_audiences"]
