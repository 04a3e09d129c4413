"""The audiences flow: keep ad-platform audiences in step with segments (hashed identifiers only)."""

from __future__ import annotations

from datetime import date

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy.engine import Engine

from flows.deliver import Planned, deliver
from flows.planning import DEFAULT_AUDIENCES, plan_audience
from flows.runtime import check_platform, load_settings, locked, open_database, run_date
from flows.settings import Settings
from models.message import OutboundMessage


@task(name="plan-audiences", cache_policy=NO_CACHE)
def plan_audiences(engine: Engine, settings: Settings, today: date, platform: str | None) -> list[OutboundMessage]:
    with locked(engine, settings, "audiences"):
        messages = [m for spec in DEFAULT_AUDIENCES for m in plan_audience(engine, spec, today)]
    return [m for m in messages if platform is None or m.channel == platform]


@flow(name="audiences")
def audiences_flow(
    platform: str | None = None, as_of: str | None = None, deliver_now: bool = True
) -> Planned:
    """Plan audience additions (all platforms or one); deliver them unless ``deliver_now`` is false."""
    check_platform(platform)
    settings = load_settings()
    engine = open_database(settings)
    messages = plan_audiences(engine, settings, run_date(settings, as_of), platform)
    audiences = [f"audience:{spec.name}" for spec in DEFAULT_AUDIENCES]  # leftovers of audience syncs only
    delivery = deliver(engine, settings, messages, campaigns=audiences) if deliver_now else None
    return Planned(messages, delivery)
