"""The campaign flow: plan the day's campaign and triggered messages, and deliver them unless asked not to."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import date, timedelta

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.states import State
from sqlalchemy import func, select

from flows.deliver import CampaignPlan, Planned, deliver, finish_run, log_plans
from flows.runtime import Resources, load_settings, locked, run_date, run_resources, run_title
from flows.settings import Settings
from models.campaigns import Campaign, Catalog, load_catalog
from models.message import OutboundMessage
from models.planning import StoreInfo, plan_campaign
from models.schema import TriggerOccurrence
from models.segments import Segment, members

OCCURRENCES = TriggerOccurrence.__table__  # type: ignore[attr-defined]


def store_info(settings: Settings) -> StoreInfo:
    return StoreInfo(name=settings.store_name, url=settings.public_url, address=settings.store_address)


def _specs(catalog: Catalog, name: str | None, kinds: tuple[str, ...]) -> list[Campaign]:
    """Campaign ``name`` (or every campaign of ``kinds``), in priority order."""
    specs = [catalog.campaign(name)] if name else [c for c in catalog.campaigns if c.kind in kinds]
    return sorted(specs, key=lambda spec: (spec.priority, spec.name))


@task(name="plan-campaigns", cache_policy=NO_CACHE)
def plan_campaigns(
    resources: Resources, today: date, name: str | None, *, kinds: tuple[str, ...] = ("triggered", "broadcast")
) -> list[OutboundMessage]:
    """The day's messages of campaign ``name`` (or of every campaign of ``kinds``), in priority order; the run's
    log gets one line per campaign (planning's counts, or why it planned nothing)."""
    catalog = resources.campaigns()
    specs = _specs(catalog, name, kinds)
    store = store_info(resources.settings)
    # campaigns, experiments and assignments have unique keys: one planner at a time
    with locked(resources.engine, resources.settings, "campaign"):
        planned = {
            spec.name: plan_campaign(
                resources.engine,
                spec,
                today,
                store,
                catalog.segments,
                global_holdout_percent=resources.settings.global_holdout_percent,
            )
            for spec in specs
        }
    messages = [message for spec in specs for message in planned[spec.name]]
    log_plans(campaign_plans(resources, today, specs, messages), only_empty=True)  # planning logs the others
    return messages


def campaign_plans(
    resources: Resources, today: date, specs: Sequence[Campaign], messages: Sequence[OutboundMessage]
) -> list[CampaignPlan]:
    """Per campaign: customers, messages and holdout planned, or why nothing was."""
    by_campaign: dict[str, list[OutboundMessage]] = defaultdict(list)
    for message in messages:
        by_campaign[message.campaign].append(message)
    segments = resources.campaigns().segments
    return [
        CampaignPlan.of(
            spec.name,
            by_campaign.get(spec.name, []),
            None if by_campaign.get(spec.name) else why_none_planned(resources, spec, today, segments),
        )
        for spec in specs
    ]


def why_none_planned(resources: Resources, spec: Campaign, today: date, segments: Mapping[str, Segment]) -> str:
    """Why ``spec`` planned nothing on ``today``, in words (counts and names only)."""
    file = spec.spec
    if not file.enabled:
        return "the campaign is disabled (enabled: false in its file)"
    if file.start is not None and today < file.start:
        return f"the campaign starts on {file.start.isoformat()}"
    if file.end is not None and today > file.end:
        return f"the campaign ended on {file.end.isoformat()}"
    with resources.engine.connect() as conn:
        if spec.trigger_kind is not None:
            since = today - timedelta(days=spec.lookback_days)
            due = conn.execute(
                select(func.count()).where(
                    OCCURRENCES.c.kind == spec.trigger_kind,
                    OCCURRENCES.c.due_on >= since,
                    OCCURRENCES.c.due_on <= today,
                )
            ).scalar_one()
            if not due:
                return f"no {spec.trigger_kind} occurrence due from {since.isoformat()} to {today.isoformat()}"
            return f"{due:,} {spec.trigger_kind} occurrences due, none for a customer omnicast can write to"
        segment = segments.get(spec.segment or "")
        if segment is None:
            return f"its segment {spec.segment!r} is not defined"
        found = len(members(conn, segment, today))
    if not found:
        return f"no customer in segment {spec.segment} today"
    return f"{found:,} customers in segment {spec.segment} today, none with recommendations to show"


def _campaign_run_name() -> str:
    from prefect.runtime import flow_run

    parameters = flow_run.parameters
    return run_title(parameters.get("name") or "campaigns", parameters.get("as_of"))


@flow(name="campaign", flow_run_name=_campaign_run_name)
def campaign_flow(name: str | None = None, as_of: str | None = None) -> State:
    """Plan one campaign (or all of them) for the day and deliver them through dispatch.

    The run is named after the campaign and its business day (``weekly-picks 2026-12-08``) and publishes a summary
    artifact (``campaign-<name>``): planned per campaign, the outcome per campaign, variant and channel, failures by
    error, and why nothing went out when nothing did (``0 sent: already sent on 2026-12-01 by an earlier run``).
    Ends Failed (the :class:`Planned` as data, as the daily run does) when messages failed, were left unfinished or
    a campaign stopped. Call with ``return_state=True`` and read ``state.result(raise_on_failure=False)`` to get the
    :class:`Planned` either way.
    """
    settings = load_settings()
    if name:
        load_catalog(settings.campaigns_dir).campaign(name)  # fail before any work on an unknown name
    with run_resources(settings, channels=True) as resources:
        day = run_date(resources.settings, as_of)
        messages = plan_campaigns(resources, day, name)
        plans = campaign_plans(
            resources, day, _specs(resources.campaigns(), name, ("triggered", "broadcast")), messages
        )
        campaigns = [name] if name else None  # finish only this campaign's leftovers when one is asked for
        planned = Planned(messages, deliver(resources, messages, campaigns=campaigns), plans=plans)
    return finish_run(
        planned, run_title(name or "campaigns", day.isoformat()), f"campaign-{name}" if name else "campaigns"
    )
