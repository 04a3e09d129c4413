"""The sync flow: read the store export, CRM and analytics files, quarantine bad rows, unify profiles."""

from __future__ import annotations

import uuid
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.runtime import (
    Resources,
    load_settings,
    locked,
    run_logger,
    run_resources,
    run_title,
    source_warnings,
    store_files,
)
from flows.summary import RunProgress
from models.sync import SyncReport, sync_store

__all__ = ["load_sources", "run_sync", "store_files", "sync_flow"]

STORE_STEPS = 6
"""What a sync says it has done (``sync_store``'s progress): products, customers and orders read, profiles, orders
and analytics written; then one step more per optional source configured (CRM, analytics read)."""


@task(name="load-sources", cache_policy=NO_CACHE)
def load_sources(resources: Resources, run_id: str) -> SyncReport:
    """Every configured source through ``sync_store``; a progress bar (``sync-progress``) in the Prefect UI moves
    with each source read and written, and the log gets each step and each source's counts (never a row)."""
    settings = resources.settings
    store, crm, analytics = store_files(settings)
    logger = run_logger()
    steps = STORE_STEPS + (crm is not None) + (analytics is not None)
    bar = RunProgress("sync-progress", f"Sync: reading the sources (0 of {steps} steps)", every=0)
    done = 0

    def progress(step: str) -> None:  # sync_store's step lines hold counts only ("orders: 3000 orders, … read")
        nonlocal done
        done += 1
        logger.info("sync: %s", step)
        bar.update(done, steps, f"Sync: {step} ({min(done, steps)} of {steps} steps)")

    # Two syncs at once would insert the same SKUs and replace each other's orders: one at a time per database.
    with locked(resources.engine, settings, "sync"):
        report = sync_store(
            resources.engine, store, crm, analytics, run_id=run_id, default_country=settings.default_country,
            progress=progress,
        )  # fmt: skip
    bar.update(steps, steps, f"Sync: done, {report.profiles:,} customer profiles")
    for s in report.sources:
        logger.info(
            "source %s: read %d, loaded %d, quarantined %d, duplicates %d, forgotten %d, cells set aside %d",
            s.source, s.rows_read, s.rows_loaded, s.rows_quarantined, s.duplicates_skipped, s.forgotten_skipped,
            s.fields_quarantined,
        )  # fmt: skip
    logger.info(
        "sync %s: %d customer profiles (%d new) from %d source records, %d consent statements",
        report.run_id, report.profiles, report.new_profiles, report.identities, report.consents,
    )  # fmt: skip
    return report


def run_sync(resources: Resources) -> SyncReport:
    """The sync stage on a run's resources: load every source, publish the per-source counts as an artifact (with
    a warning for each optional source left unconfigured)."""
    report = load_sources(resources, run_id=uuid.uuid4().hex[:12])
    warnings = source_warnings(resources.settings)
    description = f"Sync run {report.run_id}: {report.profiles} customer profiles."
    if warnings:
        description += "\n\n" + "\n\n".join(f"**Warning:** {warning}." for warning in warnings)
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
        description=description,
    )
    return report


def _sync_run_name() -> str:
    return run_title("sync")


@flow(name="sync", flow_run_name=_sync_run_name)
def sync_flow(store: str | None = None, crm: str | None = None, analytics: str | None = None) -> SyncReport:
    """Load every configured source; rows read = loaded + quarantined + duplicates, per source.

    ``store``, ``crm`` and ``analytics`` name files for this run instead of ``OMNICAST_STORE_PATH``,
    ``OMNICAST_CRM_PATH`` and ``OMNICAST_ANALYTICS_PATH``."""
    settings = load_settings()
    overrides = {"store_path": store, "crm_path": crm, "analytics_path": analytics}
    settings = settings.model_copy(update={key: Path(value) for key, value in overrides.items() if value})
    store_files(settings)
    logger = run_logger()
    for warning in source_warnings(settings):  # allowed, never silent (the daily run logs them itself)
        logger.warning(warning)
    with run_resources(settings) as resources:
        return run_sync(resources)
