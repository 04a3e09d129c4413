"""The daily parent flow: sync → train → triggers → campaign → audiences → dispatch."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed, Failed, State

from channels.dispatch import DispatchReport
from flows.audiences import audiences_flow
from flows.campaign import campaign_flow
from flows.deliver import Delivery, deliver
from flows.runtime import check_channels, load_settings, open_database, run_date, store_files
from flows.summary import day_summary_markdown
from flows.sync import sync_flow
from flows.train import train_flow
from flows.triggers import triggers_flow
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
def daily_flow(as_of: str | None = None) -> State:
    """The whole day for the store. Safe to rerun: the ledger makes a second run send nothing new.

    Ends Failed (with the day's report as its data) when any message could not be delivered or was left
    unfinished, so the Prefect UI shows an incomplete day; the message says which the next run retries. Call with
    ``return_state=True`` and read ``state.result(raise_on_failure=False)`` to get the report either way.
    """
    settings = load_settings()
    store_files(settings)
    check_channels(settings)  # a wrong channel URL or missing secret stops the day here
    day = run_date(settings, as_of)
    synced = sync_flow()
    trained = train_flow()
    found = triggers_flow(as_of=day.isoformat())
    campaigns = campaign_flow(as_of=day.isoformat(), deliver_now=False)
    audiences = audiences_flow(as_of=day.isoformat(), deliver_now=False)
    engine = open_database(settings)
    delivery: Delivery = deliver(engine, settings, campaigns.messages + audiences.messages)
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
    parts = []
    if report.total_retryable:
        parts.append(f"{report.total_retryable:,} failed and the next run retries them")
    given_up = Counter[str]()
    for tally in report.channels.values():
        given_up.update({reason: n for reason, n in tally.failed.items() if reason != "retryable"})
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
