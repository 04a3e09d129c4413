"""The triggers flow: find today's moments (birthdays, replenishment, churn risk, abandoned carts)."""

from __future__ import annotations

from datetime import date

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from sqlalchemy.engine import Engine

from flows.runtime import load_settings, locked, open_database, run_date
from flows.settings import Settings
from models.triggers import detect_triggers


@task(name="detect-triggers", cache_policy=NO_CACHE)
def detect(engine: Engine, settings: Settings, today: date) -> dict[str, int]:
    with locked(engine, settings, "triggers"):  # occurrences have unique keys: one detector run at a time
        return detect_triggers(engine, today, store_timezone=settings.timezone)


@flow(name="triggers")
def triggers_flow(as_of: str | None = None) -> dict[str, int]:
    """New trigger occurrences per kind for the day (a rerun the same day finds none new)."""
    settings = load_settings()
    engine = open_database(settings)
    today = run_date(settings, as_of)
    found = detect(engine, settings, today)
    create_table_artifact(
        key="triggers",
        table=[{"kind": kind, "new occurrences": n} for kind, n in sorted(found.items())],
        description=f"Triggers detected for {today.isoformat()}",
    )
    return found
