"""What the Prefect UI and the terminal say about a run, from hand-built reports and ledgers: the per-campaign and
per-variant tables, failures grouped by error, and why a campaign sent nothing."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime

from rich.console import Console
from sqlalchemy import insert
from sqlalchemy.engine import Engine

from channels.dispatch import MESSAGES, ChannelTally, DispatchReport
from flows.deliver import CampaignPlan, Delivery, Planned, already_sent_days, artifact_key, finish_run
from flows.summary import (
    campaign_rows,
    day_summary_markdown,
    failure_rows,
    nothing_sent_sentence,
    print_run_summary,
    run_headline,
    run_summary_markdown,
    variant_rows,
)
from models.message import OutboundMessage, Recipient
from models.recommend import TrainReport
from models.sync import SyncReport
from tests.channels.conftest import add_customers

DEC_1 = date(2026, 12, 1)


def _report() -> DispatchReport:
    """weekly-picks: variant a sent 3 and failed 2 (two errors); b suppressed 2; holdout 1. birthday: none sent."""
    report = DispatchReport()
    count = report.count
    count("email", "weekly-picks", "a", "planned", 5)
    count("email", "weekly-picks", "a", "sent", 3)
    count("email", "weekly-picks", "a", "failed", reason="retryable", error="RetryableChannelError: 451 greylisted")
    count("email", "weekly-picks", "a", "failed", reason="permanent", error="PermanentChannelError: 552 | too big")
    count("email", "weekly-picks", "b", "planned", 2)
    count("email", "weekly-picks", "b", "suppressed", 2, reason="opted_out")
    count("email", "weekly-picks", "holdout", "planned")
    count("email", "weekly-picks", "holdout", "suppressed", reason="holdout")
    count("inapp", "birthday", None, "planned", 3)
    count("inapp", "birthday", None, "already_done", 3)
    report.already_sent["birthday"] = (DEC_1, DEC_1)
    return report


def test_the_reasons_nothing_went_out_read_as_a_sentence() -> None:
    done = ChannelTally(planned=40, already_done=40)
    assert nothing_sent_sentence(done, (DEC_1, DEC_1)) == "0 sent: already sent on 2026-12-01 by an earlier run"
    assert nothing_sent_sentence(done, (DEC_1, date(2026, 12, 2))) == (
        "0 sent: already sent between 2026-12-01 and 2026-12-02 by an earlier run"
    )
    assert nothing_sent_sentence(done) == "0 sent: already in the ledger from an earlier run"

    suppressed = ChannelTally(planned=112, suppressed=Counter(frequency_cap=32, opted_out=80))
    assert nothing_sent_sentence(suppressed) == "0 sent: 112 suppressed (opted_out 80, frequency_cap 32)"

    mixed = ChannelTally(
        planned=10, already_done=4, suppressed=Counter(holdout=1), failed=Counter(retryable=2), deferred=2,
        unfinished=1,
    )  # fmt: skip
    assert nothing_sent_sentence(mixed, (DEC_1, DEC_1)) == (
        "0 sent: 4 already sent on 2026-12-01 by an earlier run; 1 suppressed (holdout 1); 2 failed (retryable 2); "
        "2 deferred until the customer's quiet hours end; 1 still held by another run"
    )

    nobody = CampaignPlan("weekly-picks", 0, 0, why_none="no customer in segment loyal-regulars today")
    assert nothing_sent_sentence(None, None, nobody) == "0 planned: no customer in segment loyal-regulars today"
    assert nothing_sent_sentence(ChannelTally(planned=3, sent=1, suppressed=Counter(opted_out=2))) is None
    assert nothing_sent_sentence(ChannelTally()) is None


def test_per_campaign_and_per_variant_tables_add_up_and_say_why() -> None:
    report = _report()
    assert report.reconciles_by_campaign

    plans = [CampaignPlan("win-back", 0, 0, why_none="no churn_risk occurrence due from 2026-11-24 to 2026-12-01")]
    assert campaign_rows(report, plans) == [
        ["birthday", "3", "0", "0", "0", "0", "3", "0", "0 sent: already sent on 2026-12-01 by an earlier run"],
        ["weekly-picks", "8", "3", "3", "2", "0", "0", "0", ""],
        ["win-back", "0", "0", "0", "0", "0", "0", "0",
         "0 planned: no churn_risk occurrence due from 2026-11-24 to 2026-12-01"],
    ]  # fmt: skip
    assert variant_rows(report) == [
        ["birthday", "-", "3", "0", "0", "0", "0", "3", "0", ""],
        ["weekly-picks", "a", "5", "3", "0", "2", "0", "0", "0", ""],
        ["weekly-picks", "b", "2", "0", "2", "0", "0", "0", "0", "opted_out 2"],
        ["weekly-picks", "holdout", "1", "0", "1", "0", "0", "0", "0", "holdout 1"],
    ]


def test_failures_are_grouped_by_campaign_reason_and_error_text_largest_first() -> None:
    report = DispatchReport()
    for campaign, n, error in (("birthday", 3, "SMTP 451 greylisted"), ("weekly-picks", 5, "SMTP 451 greylisted"),
                               ("weekly-picks", 1, None), ("birthday", 2, "SMTP 451 greylisted")):  # fmt: skip
        report.count("email", campaign, "a", "planned", n)
        report.count("email", campaign, "a", "failed", n, reason="retryable", error=error)

    assert failure_rows(report) == [
        ["birthday", "retryable", "5", "SMTP 451 greylisted"],
        ["weekly-picks", "retryable", "5", "SMTP 451 greylisted"],
        ["weekly-picks", "retryable", "1", "(no error text)"],
    ]
    assert failure_rows(report, limit=1)[-1] == ["2 more groups", "", "6", ""]


def test_a_campaign_runs_summary_artifact_has_every_table_and_the_reason_it_failed() -> None:
    report = _report()
    plans = [CampaignPlan("weekly-picks", 7, 8, holdout=1), CampaignPlan("birthday", 3, 3)]
    planned = Planned([], Delivery(planned=report), plans=plans)

    text = run_summary_markdown("campaigns 2026-12-08", planned, problem="Messages not delivered: 1 failed.")

    assert text.startswith("# campaigns 2026-12-08\n\n**3 sent of 11 planned.**")
    assert "**Run failed:** Messages not delivered: 1 failed." in text
    for heading in ("## Planned", "## Campaigns", "## Variants", "## Failures, by error", "## Channels"):
        assert heading in text, heading
    assert "| birthday | 3 | 0 | 0 | 0 | 0 | 3 | 0 |\n" in text
    assert "- **birthday**: 0 sent: already sent on 2026-12-01 by an earlier run" in text  # notes under the table
    assert "- **weekly-picks**: 1 permanent: `PermanentChannelError: 552 | too big`" in text  # whole, as a list


def test_one_campaigns_headline_says_why_it_sent_nothing() -> None:
    report = DispatchReport()
    report.count("email", "weekly-picks", "a", "planned", 40)
    report.count("email", "weekly-picks", "a", "already_done", 40)
    report.already_sent["weekly-picks"] = (DEC_1, DEC_1)
    again = Planned([], Delivery(planned=report), plans=[CampaignPlan("weekly-picks", 40, 40)])
    assert run_headline(again) == "0 sent: already sent on 2026-12-01 by an earlier run."

    empty = Planned([], Delivery(planned=DispatchReport()), plans=[
        CampaignPlan("weekly-picks", 0, 0, why_none="no customer in segment loyal-regulars today")
    ])  # fmt: skip
    assert run_headline(empty) == "0 planned: no customer in segment loyal-regulars today."

    both = Planned([], Delivery(planned=report), plans=[
        CampaignPlan("weekly-picks", 40, 40), CampaignPlan("birthday", 0, 0, why_none="no birthday occurrence due")
    ])  # fmt: skip
    assert run_headline(both) == (
        "0 sent — weekly-picks: already sent on 2026-12-01 by an earlier run; birthday: 0 planned: no birthday "
        "occurrence due."
    )

    console = Console(record=True, width=200)
    print_run_summary(console, again)
    shown = console.export_text()
    assert "Campaigns" in shown and "Variants" in shown and "0 sent: already sent on 2026-12-01" in shown


def test_a_run_with_failures_ends_failed_with_its_report_and_a_clean_one_completes() -> None:
    failing = DispatchReport()
    failing.count("email", "weekly-picks", "a", "planned", 2)
    failing.count("email", "weekly-picks", "a", "sent")
    failing.count("email", "weekly-picks", "a", "failed", reason="retryable", error="451")
    planned = Planned([], Delivery(planned=failing))

    state = finish_run(planned, "weekly-picks 2026-12-08", "campaign-weekly-picks")

    assert state.is_failed() and "1 failed and the next run retries them" in (state.message or "")
    assert state.result(raise_on_failure=False) is planned

    stopped = DispatchReport(stopped={"weekly-picks": "5 of 20 hand-overs failed"})
    assert finish_run(Planned([], Delivery(planned=stopped)), "t", "k").is_failed()
    assert finish_run(Planned([], Delivery(planned=_report_sent())), "t", "k").is_completed()
    assert artifact_key("campaign-Weekly Picks!") == "campaign-weekly-picks"


def _report_sent() -> DispatchReport:
    report = DispatchReport()
    report.count("email", "weekly-picks", "a", "planned")
    report.count("email", "weekly-picks", "a", "sent")
    return report


def test_earlier_sends_are_looked_up_in_the_ledger_in_the_stores_time_zone(sqlite_engine: Engine) -> None:
    add_customers(sqlite_engine, [1, 2, 3])
    rows = [
        (1, "weekly-picks:2026-W49", "sent", datetime(2026, 12, 2, 3, 0, tzinfo=UTC)),  # Dec 1 in Los Angeles
        (2, "weekly-picks:2026-W49", "sent", datetime(2026, 12, 2, 20, 0, tzinfo=UTC)),
        (3, "weekly-picks:2026-W49", "suppressed", None),
        (1, "weekly-picks:2026-W48", "sent", datetime(2026, 11, 24, 12, 0, tzinfo=UTC)),  # another week: not this one
    ]
    with sqlite_engine.begin() as conn:
        conn.execute(insert(MESSAGES), [
            {"occurrence_key": key, "customer_id": cid, "channel": "email", "campaign": "weekly-picks",
             "state": state, "sent_at": sent_at, "created_at": DEC_1_UTC, "updated_at": DEC_1_UTC}
            for cid, key, state, sent_at in rows
        ])  # fmt: skip
    report = DispatchReport()
    report.count("email", "weekly-picks", "a", "planned", 3)
    report.count("email", "weekly-picks", "a", "already_done", 3)
    report.count("email", "birthday", None, "planned")
    report.count("email", "birthday", None, "sent")
    messages = [_message(cid, "weekly-picks:2026-W49") for cid in (1, 2, 3)] + [_message(1, "birthday:1", "birthday")]

    found = already_sent_days(sqlite_engine, report, messages, "America/Los_Angeles")

    assert found == {"weekly-picks": (DEC_1, date(2026, 12, 2))}


DEC_1_UTC = datetime(2026, 12, 1, tzinfo=UTC)


def _message(customer_id: int, occurrence: str, campaign: str = "weekly-picks") -> OutboundMessage:
    return OutboundMessage(occurrence, "email", Recipient(customer_id), campaign)


def test_the_days_summary_has_the_per_campaign_and_variant_tables() -> None:
    from flows.daily import DayReport

    sync = SyncReport(run_id="r1", sources=[], profiles=0, identities=0, consents=0)
    train = TrainReport(customers=0, warm_customers=0, cold_customers=0, items=0, interactions=0, recommendations=0,
                        fit_seconds=0, score_seconds=0)  # fmt: skip
    day = DayReport(day=date(2026, 12, 8), sync=sync, train=train, triggers={"birthday": 3}, dispatch=_report())

    text = day_summary_markdown(day)

    assert "## Campaigns" in text and "| campaign | planned | sent |" in text
    assert "| weekly-picks | b | 2 | 0 | 2 | 0 | 0 | 0 | 0 |\n" in text
    assert "- **weekly-picks / b**: suppressed opted_out 2" in text  # under the table: the UI clips wide tables
    assert "- **weekly-picks**: 1 retryable: `RetryableChannelError: 451 greylisted`" in text


def test_on_a_narrow_terminal_names_and_numbers_stay_whole() -> None:
    report = _report()
    report.count("email", "audience:churn-risk", None, "planned", 12_345)
    plans = [CampaignPlan("audience:churn-risk", 12_345, 12_345), CampaignPlan("weekly-picks", 7, 8, holdout=1)]
    console = Console(width=80, record=True)
    print_run_summary(console, Planned([], Delivery(planned=report), plans=plans))
    text = console.export_text()
    assert "audience:churn-risk" in text and "12,345" in text and "weekly-picks" in text
    assert not [line for line in text.splitlines() if "│" in line and "…" in line]  # no cell is cut


def test_the_headline_says_how_many_wait_for_their_window() -> None:
    report = DispatchReport()
    report.count("email", "fruity-fans", "A", "planned", 10)
    report.count("email", "fruity-fans", "A", "sent", 3)
    report.count("email", "fruity-fans", "A", "deferred", 7)
    planned = Planned([], Delivery(planned=report), plans=[CampaignPlan("fruity-fans", 10, 10)])
    assert run_headline(planned) == "3 sent of 10 planned; 7 wait for their send window or the end of quiet hours."
    assert variant_rows(report)[0][2:9] == ["10", "3", "0", "0", "7", "0", "0"]  # planned = sent + ... + deferred
