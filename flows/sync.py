"""The sync flow: read the store export, CRM and analytics files, quarantine bad rows, unify profiles."""

from __future__ import annotations

import uuid
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.runtime import Resources, load_settings, locked, run_resources, store_files
from sources.load import SyncReport, sync_store

__all__ = ["load_sources", "run_sync", "store_files", "sync_flow"]


@task(name="load-sources", cache_policy=NO_CACHE)
def load_sources(resources: Resources, run_id: str) -> SyncReport:
    settings = resources.settings
    store, crm, analytics = store_files(settings)
    # Two syncs at once would insert the same SKUs and replace each other's orders: one at a time per database.
    with locked(resources.engine, settings, "sync"):
        return sync_store(
            resources.engine, store, crm, analytics, run_id=run_id, default_country=settings.default_country
        )


def run_sync(resources: Resources) -> SyncReport:
    """The sync stage on a run's resources: load every source, publish the per-source counts as an artifact."""
    report = load_sources(resources, run_id=uuid.uuid4().hex[:12])
    create_table_artifact(
        key="sync-sources",
        table=[
            {
                "source": s.source,
                "read": s.rows_read,
                "loaded": s.rows_loaded,
                "quarantined": s.rows_quarantined,
                "duplicates": s.duplicates_skipped,
                "forgotten": s.forgotten_skipped,
                "cells set aside": s.fields_quarantined,
            }
            for s in report.sources
        ],
        description=f"Sync run {report.run_id}: {report.profiles} customer profiles.",
    )
    return report


@flow(name="sync")
def sync_flow(store: str | None = None, crm: str | None = None, analytics: str | None = None) -> SyncReport:
    """Load every configured source; rows read = loaded + quarantined + duplicates, per source.

    ``store``, ``crm`` and ``analytics`` name files for this run instead of ``OMNICAST_STORE_PATH``,
    ``OMNICAST_CRM_PATH`` and ``OMNICAST_ANALYTICS_PATH``."""
    settings = load_settings()
    overrides = {"store_path": store, "crm_path": crm, "analytics_path": analytics}
    settings = settings.model_copy(update={key: Path(value) for key, value in overrides.items() if value})
    store_files(settings)
    with run_resources(settings) as resources:
        return run_sync(resources)
