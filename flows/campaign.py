"""The campaign flow: plan the day's campaign and triggered messages, and deliver them unless asked not to."""

from __future__ import annotations

from datetime import date

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.deliver import Planned, deliver
from flows.planning import DEFAULT_CAMPAIGNS, StoreInfo, campaign_by_name, plan_campaign
from flows.runtime import Resources, locked, run_date, run_resources
from flows.settings import Settings
from models.message import OutboundMessage


def store_info(settings: Settings) -> StoreInfo:
    return StoreInfo(name=settings.store_name, url=settings.public_url, address=settings.store_address)


@task(name="plan-campaigns", cache_policy=NO_CACHE)
def plan_campaigns(resources: Resources, today: date, name: str | None) -> list[OutboundMessage]:
    specs = [campaign_by_name(name)] if name else list(DEFAULT_CAMPAIGNS)
    store = store_info(resources.settings)
    # campaigns, experiments and assignments have unique keys: one planner at a time
    with locked(resources.engine, resources.settings, "campaign"):
        return [message for spec in specs for message in plan_campaign(resources.engine, spec, today, store)]


@flow(name="campaign")
def campaign_flow(name: str | None = None, as_of: str | None = None) -> Planned:
    """Plan one campaign (or all of them) for the day and deliver them through dispatch."""
    if name:
        campaign_by_name(name)  # fail before any work on an unknown name
    with run_resources(channels=True) as resources:
        messages = plan_campaigns(resources, run_date(resources.settings, as_of), name)
        campaigns = [name] if name else None  # finish only this campaign's leftovers when one is asked for
        return Planned(messages, deliver(resources, messages, campaigns=campaigns))
