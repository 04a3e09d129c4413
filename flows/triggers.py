"""The triggers flow: find today's moments (birthdays, replenishment, churn risk, abandoned carts)."""

from __future__ import annotations

from datetime import date

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.runtime import Resources, locked, run_date, run_logger, run_resources, run_title
from models.triggers import detect_triggers


@task(name="detect-triggers", cache_policy=NO_CACHE)
def detect(resources: Resources, today: date) -> dict[str, int]:
    with locked(resources.engine, resources.settings, "triggers"):  # occurrences have unique keys: one run at a time
        return detect_triggers(resources.engine, today, store_timezone=resources.settings.timezone)


def run_triggers(resources: Resources, today: date) -> dict[str, int]:
    """The triggers stage on a run's resources: new occurrences per kind, as an artifact too."""
    found = detect(resources, today)
    logger = run_logger()
    for kind, n in sorted(found.items()):
        logger.info("trigger %s: %d new occurrences for %s", kind, n, today.isoformat())
    create_table_artifact(
        key="triggers",
        table=[{"kind": kind, "new occurrences": n} for kind, n in sorted(found.items())],
        description=f"Triggers detected for {today.isoformat()}",
    )
    return found


def _triggers_run_name() -> str:
    from prefect.runtime import flow_run

    return run_title("triggers", flow_run.parameters.get("as_of"))


@flow(name="triggers", flow_run_name=_triggers_run_name)
def triggers_flow(as_of: str | None = None) -> dict[str, int]:
    """New trigger occurrences per kind for the day (a rerun the same day finds none new)."""
    with run_resources() as resources:
        return run_triggers(resources, run_date(resources.settings, as_of))
