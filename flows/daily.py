"""The daily parent flow: sync → train → triggers → campaign → audiences → dispatch."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed, Failed, State

from channels.dispatch import DispatchReport
from channels.report import RETRYABLE_REASONS
from flows.audiences import plan_audiences
from flows.campaign import plan_campaigns
from flows.deliver import Delivery, deliver
from flows.runtime import load_settings, run_date, run_resources, store_files
from flows.summary import day_summary_markdown
from flows.sync import run_sync
from flows.train import run_train
from flows.triggers import run_triggers
from models.recommender import TrainReport
from sources.load import SyncReport


@dataclass
class DayReport:
    """Everything the day did, for the summary table and the run's artifact."""

    day: date
    sync: SyncReport
    train: TrainReport
    triggers: dict[str, int]
    dispatch: DispatchReport
    leftovers: DispatchReport = field(default_factory=DispatchReport)
    """Messages earlier runs left unfinished, finished (or given up) by this run."""


@flow(name="daily")
def daily_flow(as_of: str | None = None, demo_workdir: str | None = None) -> State:
    """The whole day for the store. Safe to rerun: the ledger makes a second run send nothing new.

    The run's resources (settings, one migrated engine, the open channels) are built once and handed to every stage.
    Ends Failed (with the day's report as its data) when any message could not be delivered or was left
    unfinished, so the Prefect UI shows an incomplete day; the message says which the next run retries. Call with
    ``return_state=True`` and read ``state.result(raise_on_failure=False)`` to get the report either way.
    ``demo_workdir`` runs on the demo's sample store and outbox in that folder (`omnicast demo`).
    """
    if demo_workdir:
        from flows.demo import demo_settings  # the sample generator loads only for the demo

        settings = load_settings(**demo_settings(Path(demo_workdir)))
    else:
        settings = load_settings()
    store_files(settings)
    with run_resources(settings, channels=True) as resources:  # a wrong channel URL or secret stops the day here
        day = run_date(settings, as_of)
        synced = run_sync(resources)
        trained = run_train(resources)
        found = run_triggers(resources, day)
        messages = plan_campaigns(resources, day, None) + plan_audiences(resources, day, None)
        delivery: Delivery = deliver(resources, messages)
    day_report = DayReport(
        day=day, sync=synced, train=trained, triggers=found, dispatch=delivery.planned, leftovers=delivery.leftovers
    )
    create_markdown_artifact(
        key="daily-summary", markdown=day_summary_markdown(day_report), description=f"omnicast day {day}"
    )
    return final_state(day_report)


def final_state(day: DayReport) -> State:
    """Completed only when every message of the day (and every leftover of earlier runs) reached an outcome other
    than a failure; Failed, with the report and a message that says what the next run will and will not retry."""
    problem = undone_sentence(day.dispatch.merge(day.leftovers))
    if problem:
        return Failed(message=problem, data=day)
    return Completed(data=day)


def undone_sentence(report: DispatchReport) -> str | None:
    """What a run left undone, in one sentence (``None`` when nothing): retried later, given up, still held."""
    parts = [
        f"campaign {campaign} stopped ({why}); what it did not hand over is failed/campaign_stopped and the next run "
        f"retries it; the ledger (messages, campaign '{campaign}') lists who got it and who did not, with the reason"
        for campaign, why in sorted(report.stopped.items())
    ]
    if report.total_retryable:
        parts.append(f"{report.total_retryable:,} failed and the next run retries them")
    given_up = Counter[str]()
    for tally in report.channels.values():
        given_up.update({reason: n for reason, n in tally.failed.items() if reason not in RETRYABLE_REASONS})
    if given_up:
        reasons = ", ".join(f"{n:,} {_GIVEN_UP.get(reason, reason)}" for reason, n in sorted(given_up.items()))
        parts.append(f"{given_up.total():,} will not be retried ({reasons}; see the ledger's error column)")
    if report.total_unfinished:
        parts.append(
            f"{report.total_unfinished:,} are still held by another run, or by one that stopped less than "
            "OMNICAST_CLAIM_LEASE_SECONDS ago: run again after the lease to finish them"
        )
    if not parts:
        return None
    return "Messages not delivered: " + "; ".join(parts) + "."


_GIVEN_UP = {
    "permanent": "failed permanently",
    "in_doubt": "in doubt (handed over, outcome unknown; never resent)",
    "expired": "expired before they could go",
}
