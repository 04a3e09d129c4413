"""The campaign flow: plan the day's campaign and triggered messages, and deliver them unless asked not to."""

from __future__ import annotations

from datetime import date

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy.engine import Engine

from flows.deliver import Planned, deliver
from flows.planning import DEFAULT_CAMPAIGNS, StoreInfo, campaign_by_name, plan_campaign
from flows.runtime import load_settings, locked, open_database, run_date
from flows.settings import Settings
from models.message import OutboundMessage


def store_info(settings: Settings) -> StoreInfo:
    return StoreInfo(name=settings.store_name, url=settings.public_url, address=settings.store_address)


@task(name="plan-campaigns", cache_policy=NO_CACHE)
def plan_campaigns(engine: Engine, settings: Settings, today: date, name: str | None) -> list[OutboundMessage]:
    specs = [campaign_by_name(name)] if name else list(DEFAULT_CAMPAIGNS)
    store = store_info(settings)
    with locked(engine, settings, "campaign"):  # campaigns, experiments and assignments have unique keys
        return [message for spec in specs for message in plan_campaign(engine, spec, today, store)]


@flow(name="campaign")
def campaign_flow(name: str | None = None, as_of: str | None = None, deliver_now: bool = True) -> Planned:
    """Plan one campaign (or all of them) for the day; deliver them through dispatch when ``deliver_now``.

    The daily flow plans here and delivers every channel in its own dispatch step.
    """
    settings = load_settings()
    if name:
        campaign_by_name(name)  # fail before any work on an unknown name
    engine = open_database(settings)
    messages = plan_campaigns(engine, settings, run_date(settings, as_of), name)
    campaigns = [name] if name else None  # finish only this campaign's leftovers when one is asked for
    delivery = deliver(engine, settings, messages, campaigns=campaigns) if deliver_now else None
    return Planned(messages, delivery)
