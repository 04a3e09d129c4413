"""The whole day end to end on a small generated store, through a real Prefect API, run twice."""

from __future__ import annotations

import email
import email.policy
import json
import re
from typing import Any

import pytest
from sqlalchemy import func, select

from models.db import make_engine
from models.schema import Consent, Customer, Message, SourceLoad

CUSTOMERS = 300


@pytest.fixture(scope="module")
def demo_day(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run the daily flow twice on one sample store; keep both reports and the work folder."""
    from flows.daily import daily_flow
    from flows.demo import prepare_demo

    workdir = tmp_path_factory.mktemp("demo")
    manifest, environment = prepare_demo(workdir, CUSTOMERS)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in environment.items():
            patch.setenv(key, value)
        first = daily_flow(as_of=manifest["as_of"])
        second = daily_flow(as_of=manifest["as_of"])
    return {
        "workdir": workdir,
        "manifest": manifest,
        "environment": environment,
        "first": first,
        "second": second,
        "engine": make_engine(environment["OMNICAST_DATABASE_URL"]),
    }


@pytest.fixture(scope="module")
def own_runs(demo_day: dict) -> dict:
    """After the day (and the tests above, which count the day's messages): weekly-picks twice and the audiences
    once more, each as its own run, on the same store; their states."""
    from flows.audiences import audiences_flow
    from flows.campaign import campaign_flow

    as_of = demo_day["manifest"]["as_of"]
    with pytest.MonkeyPatch.context() as patch:
        for key, value in demo_day["environment"].items():
            patch.setenv(key, value)
        weekly = [campaign_flow(name="weekly-picks", as_of=as_of, return_state=True) for _ in range(2)]
        audiences = audiences_flow(as_of=as_of, return_state=True)
    return {"weekly": weekly, "audiences": audiences}


def _artifacts(key: str | None = None, kind: str | None = None) -> list:
    """Artifacts the test server holds (of ``key``, or of ``kind``), oldest first."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, ArtifactFilterType
    from prefect.client.schemas.sorting import ArtifactSort

    async def read() -> list:
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=[key]) if key else None,
                    type=ArtifactFilterType(any_=[kind]) if kind else None,
                ),
                sort=ArtifactSort.CREATED_DESC,
            )

    return list(reversed(asyncio.run(read())))


def _flow_run(state: Any) -> Any:
    import asyncio

    from prefect.client.orchestration import get_client

    async def read() -> Any:
        async with get_client() as client:
            return await client.read_flow_run(state.state_details.flow_run_id)

    return asyncio.run(read())


@pytest.mark.e2e
def test_every_source_reconciles(demo_day: dict) -> None:
    for count in demo_day["first"].sync.sources:
        assert count.rows_read == count.rows_loaded + count.rows_quarantined + count.duplicates_skipped, count
        assert count.rows_read > 0
    with demo_day["engine"].connect() as conn:
        loads = conn.execute(select(func.count()).select_from(SourceLoad)).scalar_one()
    assert loads == 2 * len(demo_day["first"].sync.sources)


@pytest.mark.e2e
def test_first_run_sends_on_every_channel_and_reconciles(demo_day: dict) -> None:
    report = demo_day["first"].dispatch
    for channel in ("email", "inapp", "meta", "google"):
        row = report.channels[channel]
        assert row.sent > 0, channel
        assert row.planned == row.accounted and row.unfinished == 0


@pytest.mark.e2e
def test_rerun_sends_nothing_new(demo_day: dict) -> None:
    first, second = demo_day["first"].dispatch, demo_day["second"].dispatch
    assert second.total_sent == 0
    for channel, row in second.channels.items():
        assert row.already_done == first.channels[channel].planned, channel


@pytest.mark.e2e
def test_one_ledger_row_per_planned_message(demo_day: dict) -> None:
    planned = sum(row.planned for row in demo_day["first"].dispatch.channels.values())
    with demo_day["engine"].connect() as conn:
        rows = conn.execute(select(func.count()).select_from(Message)).scalar_one()
        pending = conn.execute(select(func.count()).select_from(Message).where(Message.state == "pending")).scalar_one()
    assert rows == planned
    assert pending == 0


@pytest.mark.e2e
def test_every_email_file_is_a_complete_message_to_a_consenting_customer(demo_day: dict) -> None:
    files = sorted((demo_day["workdir"] / "outbox" / "email").glob("*.eml"))
    assert len(files) == demo_day["first"].dispatch.channels["email"].sent
    with demo_day["engine"].connect() as conn:
        consented = {
            row.email
            for row in conn.execute(
                select(Customer.email)
                .join(Consent, Consent.customer_id == Customer.id)
                .where(Consent.channel == "email")
                .where(Consent.state == "granted")
            )
        }
    for path in files:
        raw = path.read_bytes()
        assert b"\n" not in raw.replace(b"\r\n", b"")
        message = email.message_from_bytes(raw, policy=email.policy.default)
        for header in ("From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post"):
            assert message[header], (path.name, header)
        assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
        assert message["To"].addresses[0].addr_spec in consented


@pytest.mark.e2e
def test_audience_files_hold_no_plaintext_identifiers(demo_day: dict) -> None:
    files = list((demo_day["workdir"] / "outbox" / "audiences").glob("*.csv"))
    assert files
    with demo_day["engine"].connect() as conn:
        emails = [e for (e,) in conn.execute(select(Customer.email).where(Customer.email.is_not(None)))]
    text = "\n".join(path.read_text() for path in files)
    assert not any(address in text for address in emails)


@pytest.mark.e2e
def test_inapp_cards_are_json_lines(demo_day: dict) -> None:
    lines = [
        json.loads(line)
        for path in (demo_day["workdir"] / "outbox" / "inapp").glob("*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert len(lines) == demo_day["first"].dispatch.channels["inapp"].sent
    assert all(card["title"] and card["campaign"] for card in lines)


@pytest.mark.e2e
def test_demo_command_run_again_says_nothing_new_was_sent(demo_day: dict) -> None:
    from typer.testing import CliRunner

    from flows.cli import app
    from flows.demo import demo_environment

    with pytest.MonkeyPatch.context() as patch:
        for key in demo_environment(demo_day["workdir"]):  # the command sets these; put them back afterwards
            patch.setenv(key, "")
        # the demo also sends the broadcasts (weekly picks), which the daily runs above leave to their schedule
        first = CliRunner().invoke(app, ["demo", "--workdir", str(demo_day["workdir"])])
        result = CliRunner().invoke(app, ["demo", "--workdir", str(demo_day["workdir"])])
    assert first.exit_code == 0 and result.exit_code == 0, first.output + result.output
    assert "0 new messages sent" in result.output, result.output[-3000:]
    assert "Sources" in result.output and "Messages" in result.output


def test_a_day_with_undelivered_messages_ends_failed_and_keeps_its_report() -> None:
    from collections import Counter
    from datetime import date

    from channels.dispatch import ChannelTally, DispatchReport
    from flows.daily import DayReport, final_state

    failing = DispatchReport({"email": ChannelTally(planned=3, sent=1, failed=Counter(retryable=2))})
    day = DayReport(day=date(2026, 11, 27), sync=None, train=None, triggers={}, dispatch=failing)  # type: ignore[arg-type]
    state = final_state(day)
    assert state.is_failed() and "2 failed and the next run retries them" in (state.message or "")
    assert state.result(raise_on_failure=False) is day

    fine = DayReport(
        day=date(2026, 11, 27),
        sync=None,
        train=None,
        triggers={},  # type: ignore[arg-type]
        dispatch=DispatchReport({"email": ChannelTally(planned=1, sent=1)}),
    )
    assert final_state(fine).is_completed()


@pytest.mark.e2e
def test_each_day_publishes_its_summary_to_the_prefect_ui(demo_day: dict) -> None:
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def summaries() -> list[str]:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["daily-summary"]))
            )
            return [str(artifact.data) for artifact in found]

    published = asyncio.run(summaries())
    assert len(published) >= 2  # one per run of the day
    assert any("0 new messages sent" in text for text in published)
    assert all("| email |" in text for text in published)


def test_a_day_says_which_failures_the_next_run_retries_and_which_it_will_not() -> None:
    from collections import Counter
    from datetime import date

    from channels.dispatch import ChannelTally, DispatchReport
    from flows.daily import DayReport, final_state

    rejected = DispatchReport({"inapp": ChannelTally(planned=5, sent=2, failed=Counter(permanent=3))})
    day = DayReport(day=date(2026, 11, 27), sync=None, train=None, triggers={}, dispatch=rejected)  # type: ignore[arg-type]
    message = final_state(day).message or ""
    assert "3 will not be retried (3 failed permanently" in message and "retries" not in message

    held = DispatchReport({"email": ChannelTally(planned=4, sent=1, unfinished=3)})
    day = DayReport(day=date(2026, 11, 27), sync=None, train=None, triggers={}, dispatch=held)  # type: ignore[arg-type]
    state = final_state(day)
    assert state.is_failed() and "3 are still held by another run" in (state.message or "")
    assert "OMNICAST_CLAIM_LEASE_SECONDS" in (state.message or "")


@pytest.mark.e2e
def test_the_days_summary_shows_each_campaign_and_variant(demo_day: dict) -> None:
    report = demo_day["first"].dispatch
    assert report.reconciles_by_campaign and report.variants
    rows = [f"| {campaign} | {t.planned:,} | {t.sent:,} |" for campaign, t in report.by_campaign().items()]
    assert any("| audience:" in row for row in rows)  # audience syncs are campaigns of their own in the table
    published = [str(artifact.data) for artifact in _artifacts("daily-summary")]
    assert all("## Campaigns" in text and "## Variants" in text for text in published)
    assert any(all(row in text for row in rows) for text in published)  # the first run's


@pytest.mark.e2e
def test_sync_and_dispatch_show_progress_bars_that_end_full(demo_day: dict) -> None:
    """Every run that completed shows full bars (the session's server also holds other tests' runs that were killed
    or failed on purpose part-way: their bars stop where the run did)."""
    for key in ("sync-progress", "dispatch-progress"):
        found = [artifact for artifact in _artifacts(key) if _completed(artifact.flow_run_id)]
        assert len(found) >= 2, key  # one per daily run at least
        assert all(artifact.type == "progress" and float(artifact.data) == 100.0 for artifact in found), key


def _completed(flow_run_id: Any) -> bool:
    import asyncio

    from prefect.client.orchestration import get_client

    async def read() -> bool:
        async with get_client() as client:
            run = await client.read_flow_run(flow_run_id)
            return bool(run.state and run.state.is_completed())

    return flow_run_id is not None and asyncio.run(read())


@pytest.mark.e2e
def test_a_campaign_run_is_named_after_its_day_and_says_why_it_sent_nothing_the_second_time(
    demo_day: dict, own_runs: dict
) -> None:
    as_of = demo_day["manifest"]["as_of"]
    first, again = own_runs["weekly"]
    assert first.is_completed() and again.is_completed()
    assert _flow_run(again).name == f"weekly-picks {as_of}"
    planned = again.result(raise_on_failure=False)
    assert planned.report.total_sent == 0 and planned.plans[0].customers > 0
    summaries = [str(artifact.data) for artifact in _artifacts("campaign-weekly-picks")]
    assert len(summaries) >= 2 and "## Variants" in summaries[-1]
    assert re.search(r"\*\*0 sent: already sent on \d{4}-\d{2}-\d{2} by an earlier run\.\*\*", summaries[-1])


@pytest.mark.e2e
def test_an_audience_run_is_named_after_its_day_and_publishes_its_summary(demo_day: dict, own_runs: dict) -> None:
    state = own_runs["audiences"]
    assert state.is_completed()
    assert _flow_run(state).name == f"audiences {demo_day['manifest']['as_of']}"
    summary = str(_artifacts("audiences")[-1].data)
    assert "## Planned" in summary  # the day's run added everyone: this one finds every audience in step
    assert "audience:churn-risk**: 0 planned: in step: meta" in summary and "unchanged" in summary
