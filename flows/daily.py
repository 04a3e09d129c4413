"""The daily parent flow: sync → train → triggers → campaign → audiences → dispatch."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed, Failed, State

from channels.dispatch import DispatchReport
from flows.audiences import audiences_flow
from flows.campaign import campaign_flow
from flows.deliver import deliver
from flows.runtime import load_settings, open_channels, open_database, run_date
from flows.summary import day_summary_markdown
from flows.sync import store_files, sync_flow
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


@flow(name="daily")
def daily_flow(as_of: str | None = None) -> State:
    """The whole day for the store. Safe to rerun: the ledger makes a second run send nothing new.

    Ends Failed (with the day's report as its data) when any message could not be delivered, so the Prefect UI
    shows an incomplete day; those messages are retried by the next run. Call with ``return_state=True`` and read
    ``state.result(raise_on_failure=False)`` to get the report either way.
    """
    settings = load_settings()
    store_files(settings)
    for channel in open_channels(settings).values():  # a wrong channel URL or missing secret stops the day here
        channel.close()
    day = run_date(settings, as_of)
    synced = sync_flow()
    trained = train_flow()
    found = triggers_flow(as_of=day.isoformat())
    campaigns = campaign_flow(as_of=day.isoformat(), deliver_now=False)
    audiences = audiences_flow(as_of=day.isoformat(), deliver_now=False)
    engine = open_database(settings)
    report = deliver(engine, settings, campaigns.messages + audiences.messages)
    day_report = DayReport(day=day, sync=synced, train=trained, triggers=found, dispatch=report)
    create_markdown_artifact(
        key="daily-summary", markdown=day_summary_markdown(day_report), description=f"omnicast day {day}"
    )
    return final_state(day_report)


def final_state(day: DayReport) -> State:
    """Completed when every planned message reached an outcome other than a failure; Failed (with the report) else."""
    failed = day.dispatch.total_failed
    if failed:
        return Failed(message=f"{failed} messages could not be delivered; the next run retries them", data=day)
    return Completed(data=day)
