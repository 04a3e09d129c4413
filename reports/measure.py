"""What a report measures, from the settings: the attribution model, window and time zone, and which campaign."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from models.attribution import DEFAULT_MODEL, DEFAULT_WINDOW_DAYS, MESSAGES, check_model
from models.errors import InputError
from models.measurement import Measurement, measure

__all__ = ["attribution_settings", "check_campaign", "measure_for"]


def attribution_settings(settings: Any) -> dict[str, Any]:
    """The attribution model, window and time zone a report uses, from the settings
    (``OMNICAST_ATTRIBUTION_MODEL``, ``OMNICAST_ATTRIBUTION_WINDOW_DAYS``, ``OMNICAST_TIMEZONE``); the defaults
    (last click, 5 days) while a setting does not exist."""
    return {
        "model": check_model(str(getattr(settings, "attribution_model", DEFAULT_MODEL))),
        "window_days": float(getattr(settings, "attribution_window_days", DEFAULT_WINDOW_DAYS)),
        "timezone": str(getattr(settings, "timezone", "UTC") or "UTC"),
    }


def check_campaign(engine: Engine, settings: Any, name: str) -> None:
    """A campaign name is one the ledger or the campaign files know; else an ``InputError`` naming the known ones."""
    with engine.connect() as conn:
        sent = {row for row in conn.execute(select(MESSAGES.c.campaign).distinct()).scalars() if row}
    if name in sent:
        return
    try:
        from models.campaigns import load_catalog

        files = {campaign.name for campaign in load_catalog(settings.campaigns_dir).campaigns}
    except InputError:  # a broken campaign file must not hide the report of what was sent
        files = set()
    if name in files:
        return
    known = ", ".join(sorted(n for n in sent | files if not n.startswith("audience:"))) or "none yet"
    raise InputError(f"unknown campaign {name!r}; campaigns: {known}")


def measure_for(engine: Engine, settings: Any, campaign: str | None = None, since: date | None = None) -> Measurement:
    """Measure with the settings' attribution model, window and time zone."""
    if campaign:
        check_campaign(engine, settings, campaign)
    return measure(engine, campaign=campaign, since=since, **attribution_settings(settings))
