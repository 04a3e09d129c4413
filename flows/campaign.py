"""The campaign flow: plan the day's campaign and triggered messages, and deliver them unless asked not to."""

from __future__ import annotations

from datetime import date

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.deliver import Planned, deliver
from flows.runtime import Resources, load_settings, locked, run_date, run_resources
from flows.settings import Settings
from models.campaigns import load_catalog
from models.message import OutboundMessage
from models.planning import StoreInfo, plan_campaign


def store_info(settings: Settings) -> StoreInfo:
    return StoreInfo(name=settings.store_name, url=settings.public_url, address=settings.store_address)


@task(name="plan-campaigns", cache_policy=NO_CACHE)
def plan_campaigns(
    resources: Resources, today: date, name: str | None, *, kinds: tuple[str, ...] = ("triggered", "broadcast")
) -> list[OutboundMessage]:
    """The day's messages of campaign ``name`` (or of every campaign of ``kinds``), in priority order."""
    catalog = resources.campaigns()
    specs = [catalog.campaign(name)] if name else [c for c in catalog.campaigns if c.kind in kinds]
    specs.sort(key=lambda spec: (spec.priority, spec.name))
    store = store_info(resources.settings)
    # campaigns, experiments and assignments have unique keys: one planner at a time
    with locked(resources.engine, resources.settings, "campaign"):
        return [
            message
            for spec in specs
            for message in plan_campaign(resources.engine, spec, today, store, catalog.segments)
        ]


@flow(name="campaign")
def campaign_flow(name: str | None = None, as_of: str | None = None) -> Planned:
    """Plan one campaign (or all of them) for the day and deliver them through dispatch."""
    settings = load_settings()
    if name:
        load_catalog(settings.campaigns_dir).campaign(name)  # fail before any work on an unknown name
    with run_resources(settings, channels=True) as resources:
        messages = plan_campaigns(resources, run_date(resources.settings, as_of), name)
        campaigns = [name] if name else None  # finish only this campaign's leftovers when one is asked for
        return Planned(messages, deliver(resources, messages, campaigns=campaigns))
