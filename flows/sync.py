"""The sync flow: read the store export, CRM and analytics files, quarantine bad rows, unify profiles."""

from __future__ import annotations

import uuid

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
    source_readers,
    source_warnings,
)
from flows.summary import RunProgress
from models.errors import InputError
from models.sync import SyncReport, sync_sources

__all__ = ["SourcePartlyRead", "load_sources", "run_sync", "sync_flow"]

STORE_STEPS = 6
"""What a sync says it has done (``sync_sources``' progress): products, customers and orders read, profiles, orders
and analytics written; then one step more per optional source configured (CRM, analytics read)."""


class SourcePartlyRead(InputError):
    """A source stopped part-way: what its complete pages held is written and its watermark kept (the next run
    resumes there), and the run says which source failed and why."""


@task(name="load-sources", cache_policy=NO_CACHE)
def load_sources(resources: Resources, run_id: str, full: bool = False) -> SyncReport:
    """Every configured source through ``sync_sources``; a progress bar (``sync-progress``) in the Prefect UI moves
    with each source read and written, and the log gets each step and each source's counts (never a row).
    ``full``: read every source whole, ignoring the stored watermarks."""
    settings = resources.settings
    readers = source_readers(settings)
    logger = run_logger()
    steps = STORE_STEPS + sum(reader.role != "store" for reader in readers)
    bar = RunProgress("sync-progress", f"Sync: reading the sources (0 of {steps} steps)", every=0)
    done = 0

    def progress(step: str) -> None:  # sync_store's step lines hold counts only ("orders: 3000 orders, … read")
        nonlocal done
        done += 1
        logger.info("sync: %s", step)
        bar.update(done, steps, f"Sync: {step} ({min(done, steps)} of {steps} steps)")

    # Two syncs at once would insert the same SKUs and replace each other's orders: one at a time per database.
    with locked(resources.engine, settings, "sync"):
        report = sync_sources(
            resources.engine, readers, run_id=run_id, default_country=settings.default_country, progress=progress,
            full=full,
        )  # fmt: skip
    bar.update(steps, steps, f"Sync: done, {report.profiles:,} customer profiles")
    for s in report.sources:
        logger.info(
            "source %s: read %d, loaded %d, quarantined %d, duplicates %d, forgotten %d, cells set aside %d",
            s.source, s.rows_read, s.rows_loaded, s.rows_quarantined, s.duplicates_skipped, s.forgotten_skipped,
            s.fields_quarantined,
        )  # fmt: skip
    for role, summary in report.configured.items():
        logger.info(
            "source %s (%s, %s): read %d, loaded %d, quarantined %d, duplicates %d, deleted on the platform %d, "
            "watermarks %s", role, summary.platform, summary.mode, summary.read, summary.loaded, summary.quarantined,
            summary.duplicates_skipped, summary.deleted, summary.watermarks or "none (read whole)",
        )  # fmt: skip
        if summary.error:
            logger.error("source %s stopped part-way: %s", role, summary.error)
    logger.info(
        "sync %s: %d customer profiles (%d new) from %d source records, %d consent statements",
        report.run_id, report.profiles, report.new_profiles, report.identities, report.consents,
    )  # fmt: skip
    return report


def run_sync(resources: Resources, full: bool = False) -> SyncReport:
    """The sync stage on a run's resources: load every source, publish the per-source counts as an artifact (with
    a warning for each optional source left unconfigured). A source that stopped part-way fails the stage after
    what it read is written (:class:`SourcePartlyRead`): the next run resumes from its watermark."""
    report = load_sources(resources, run_id=uuid.uuid4().hex[:12], full=full)
    warnings = source_warnings(resources.settings)
    description = f"Sync run {report.run_id}: {report.profiles} customer profiles."
    if warnings:
        description += "\n\n" + "\n\n".join(f"**Warning:** {warning}." for warning in warnings)
    for role, error in report.errors.items():
        description += f"\n\n**The {role} source stopped part-way:** {error} (what it read before is saved)."
    role_of = {"products": "store", "customers": "store", "orders": "store", "crm": "crm", "analytics": "analytics"}
    resource_of = {"crm": "contacts", "analytics": "events"}

    def origin(name: str) -> dict[str, str]:
        summary = report.configured.get(role_of.get(name, ""))
        if summary is None:
            return {"from": "", "watermark": ""}
        mark = summary.watermarks.get(resource_of.get(name, name), "")
        return {"from": f"{summary.platform} ({summary.mode})", "watermark": mark or "read whole"}

    create_table_artifact(
        key="sync-sources",
        table=[
            {
                "source": s.source,
                **origin(s.source),
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
    if report.errors:
        problems = "; ".join(
            f"the {role} source (OMNICAST_{role.upper()}_URL={report.configured[role].location}) stopped part-way: "
            f"{error}"
            for role, error in report.errors.items()
        )
        raise SourcePartlyRead(f"{problems} — what it read before is saved, and the next sync resumes from there")
    return report


def _sync_run_name() -> str:
    return run_title("sync")


@flow(name="sync", flow_run_name=_sync_run_name)
def sync_flow(
    store: str | None = None, crm: str | None = None, analytics: str | None = None, full: bool = False
) -> SyncReport:
    """Load every configured source; rows read = loaded + quarantined + duplicates, per source.

    ``store``, ``crm`` and ``analytics`` name sources (a path or a URL) for this run instead of
    ``OMNICAST_STORE_URL``, ``OMNICAST_CRM_URL`` and ``OMNICAST_ANALYTICS_URL``; ``full`` reads every source whole
    instead of the changes since its watermarks."""
    settings = load_settings()
    overrides = {"store_url": store, "crm_url": crm, "analytics_url": analytics}
    settings = settings.model_copy(update={key: value for key, value in overrides.items() if value})
    source_readers(settings)
    logger = run_logger()
    for warning in source_warnings(settings):  # allowed, never silent (the daily run logs them itself)
        logger.warning(warning)
    with run_resources(settings) as resources:
        return run_sync(resources, full=full)
