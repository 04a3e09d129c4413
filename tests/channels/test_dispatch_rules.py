"""Dispatch with rules, on SQLite and PostgreSQL: topic opt-outs, the suppression list, the frequency cap by priority,
quiet hours, in-doubt and dead-address outcomes, in-run retries and the error-rate stop. Every report must balance."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.engine import Engine

from channels.base import (
    DeliveryResult,
    InDoubtChannelError,
    InMemoryChannel,
    PermanentChannelError,
    RetryableChannelError,
)
from channels.dispatch import MESSAGES, DispatchReport, DispatchRules, dispatch, finish_unfinished
from models import suppression
from models.consent import record_unsubscribe
from models.message import OutboundMessage
from models.schema import Consent, Customer
from tests.channels.conftest import add_customers, message

CUSTOMERS = Customer.__table__  # type: ignore[attr-defined]
CONSENTS = Consent.__table__  # type: ignore[attr-defined]
T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)  # a Friday; noon in UTC, 07:00 in New York
QUIET = DispatchRules(quiet_hours=(time(21), time(8)))
NO_QUIET = DispatchRules()
PRIORITY = {"abandoned-cart": 1, "replenishment": 2, "birthday": 3, "winback": 4}  # the shipped campaigns' defaults


def mail(
    customer_id: int, campaign: str = "weekly-picks", *, occurrence: str | None = None, marketing: bool = True,
    timezone: str | None = None,
) -> OutboundMessage:  # fmt: skip
    """A planner-shaped email of ``campaign`` (its own occurrence unless given)."""
    base = message(customer_id, occurrence=occurrence or f"{campaign}:2026-11-27", timezone=timezone)
    return dataclasses.replace(base, campaign=campaign, marketing=marketing, priority=PRIORITY.get(campaign, 5))


def rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(MESSAGES).order_by(MESSAGES.c.id)).mappings()]


def by_campaign(engine: Engine, customer_id: int) -> dict[str, tuple[str, str | None]]:
    return {r["campaign"]: (r["state"], r["reason"]) for r in rows(engine) if r["customer_id"] == customer_id}


def balanced(report: DispatchReport) -> bool:
    return report.balanced and all(
        t.planned == t.sent + t.suppressed.total() + t.failed.total() + t.already_done + t.unfinished + t.deferred
        for t in report.channels.values()
    )


class Small(InMemoryChannel):
    batch_size = 1


# --- frequency cap and priority -------------------------------------------------------------------------------


@pytest.mark.parametrize("reverse", [False, True], ids=["high-first", "low-first"])
def test_a_daily_cap_of_one_keeps_the_higher_priority_message_whatever_the_order(engine: Engine, reverse: bool) -> None:
    add_customers(engine, [1, 2])
    planned = [mail(1, "weekly-picks"), mail(1, "winback"), mail(1, "abandoned-cart"), mail(2, "birthday"),
               mail(2, "audience-test")]  # fmt: skip
    if reverse:
        planned.reverse()
    channel = Small("email")  # one message a batch: later batches see earlier ones in the ledger

    report = dispatch(engine, planned, {"email": channel}, now=T0, rules=NO_QUIET)

    assert sorted((m.customer_id, m.campaign) for m in channel.delivered) == [(1, "abandoned-cart"), (2, "birthday")]
    assert report.channels["email"].suppressed == Counter(frequency_cap=3)
    assert by_campaign(engine, 1)["weekly-picks"] == ("suppressed", "frequency_cap")
    assert by_campaign(engine, 2)["audience-test"] == ("suppressed", "frequency_cap")  # unknown = broadcast
    assert balanced(report)


def test_within_one_batch_the_higher_priority_message_takes_the_slot(engine: Engine) -> None:
    add_customers(engine, [1])
    channel = InMemoryChannel("email")
    report = dispatch(engine, [mail(1, "winback"), mail(1, "replenishment")], {"email": channel}, now=T0,
                      rules=NO_QUIET)  # fmt: skip
    assert [m.campaign for m in channel.delivered] == ["replenishment"] and balanced(report)


def test_the_weekly_cap_counts_earlier_days_sends(engine: Engine) -> None:
    add_customers(engine, [1])
    channel = InMemoryChannel("email")
    reports = [
        dispatch(engine, [mail(1, occurrence=f"weekly:{day}")], {"email": channel}, now=T0 + timedelta(days=day),
                 rules=NO_QUIET)  # fmt: skip
        for day in range(5)
    ]
    assert [r.total_sent for r in reports] == [1, 1, 1, 0, 0]
    assert reports[3].channels["email"].suppressed == Counter(frequency_cap=1)
    # a week after the first send, a slot is free again
    later = dispatch(engine, [mail(1, occurrence="weekly:7")], {"email": channel}, now=T0 + timedelta(days=7),
                     rules=NO_QUIET)  # fmt: skip
    assert later.total_sent == 1 and all(balanced(r) for r in [*reports, later])


def test_the_day_is_the_customers_local_calendar_day(engine: Engine) -> None:
    add_customers(engine, [1])
    zone = "Pacific/Auckland"  # UTC+13 in November
    first_at = datetime(2026, 11, 27, 10, 30, tzinfo=UTC)  # 23:30 local
    channel = InMemoryChannel("email")
    dispatch(engine, [mail(1, occurrence="a", timezone=zone)], {"email": channel}, now=first_at, rules=NO_QUIET)

    same_day = dispatch(engine, [mail(1, occurrence="b", timezone=zone)], {"email": channel},
                        now=first_at + timedelta(minutes=20), rules=NO_QUIET)  # 23:50 local  # fmt: skip
    next_day = dispatch(engine, [mail(1, occurrence="c", timezone=zone)], {"email": channel},
                        now=first_at + timedelta(hours=1), rules=NO_QUIET)  # 00:30 local, an hour later  # fmt: skip

    assert same_day.channels["email"].suppressed == Counter(frequency_cap=1)
    assert next_day.total_sent == 1 and len(channel.delivered) == 2


def test_caps_can_be_turned_off_and_other_channels_are_not_capped(engine: Engine) -> None:
    add_customers(engine, [1])
    statement(engine, 1, "inapp", "granted", T0 - timedelta(days=1), "shopify")
    email, inapp = InMemoryChannel("email"), InMemoryChannel("inapp", consent_channel="inapp")
    planned = [mail(1, "birthday"), mail(1, "winback"), dataclasses.replace(mail(1, "winback"), channel="inapp"),
               dataclasses.replace(mail(1, "birthday"), channel="inapp")]  # fmt: skip
    report = dispatch(engine, planned, {"email": email, "inapp": inapp}, now=T0,
                      rules=DispatchRules(email_daily_cap=0, email_weekly_cap=0))  # fmt: skip
    assert len(email.delivered) == 2 and len(inapp.delivered) == 2 and balanced(report)


def test_transactional_messages_bypass_caps_and_quiet_hours_and_do_not_count(engine: Engine) -> None:
    add_customers(engine, [1])
    night = datetime(2026, 11, 27, 23, 0, tzinfo=UTC)
    channel = InMemoryChannel("email")
    dispatch(engine, [mail(1, "abandoned-cart")], {"email": channel}, now=night - timedelta(hours=12), rules=QUIET)
    receipts = [mail(1, "receipts", occurrence=f"order:{n}", marketing=False) for n in (1, 2)]

    report = dispatch(engine, receipts, {"email": channel}, now=night, rules=QUIET)

    assert report.total_sent == 2 and report.total_deferred == 0 and balanced(report)
    assert {r["campaign"]: r["marketing"] for r in rows(engine)} == {"abandoned-cart": True, "receipts": False}


# --- consent topics and the suppression list ------------------------------------------------------------------


def statement(engine: Engine, customer_id: int, channel: str, state: str, at: datetime, source: str) -> None:
    row = {"customer_id": customer_id, "channel": channel, "state": state, "source": source, "recorded_at": at}
    with engine.begin() as conn:
        conn.execute(CONSENTS.insert(), [row])


def test_a_topic_opt_out_stops_that_campaign_only(engine: Engine) -> None:
    add_customers(engine, [1, 2, 3])
    statement(engine, 1, "email:weekly-picks", "denied", T0 - timedelta(days=2), "preference_centre")
    statement(engine, 2, "email:weekly-picks", "denied", T0 - timedelta(days=2), "preference_centre")
    with engine.begin() as conn:  # 2 re-subscribed to the topic later: the newer statement wins
        conn.execute(update(CONSENTS).where(CONSENTS.c.customer_id == 2, CONSENTS.c.channel == "email:weekly-picks")
                     .values(state="granted", recorded_at=T0 - timedelta(days=1)))  # fmt: skip
    statement(engine, 3, "email:weekly-picks", "granted", T0 - timedelta(days=2), "preference_centre")
    record_unsubscribe(engine, 3, "email", at=T0 - timedelta(days=1))  # opt-out of all wins over a topic grant
    channel = InMemoryChannel("email")
    planned = [mail(i, c) for i in (1, 2, 3) for c in ("weekly-picks", "birthday")]

    report = dispatch(engine, planned, {"email": channel}, now=T0, rules=DispatchRules(email_daily_cap=0))

    assert sorted((m.customer_id, m.campaign) for m in channel.delivered) == [
        (1, "birthday"), (2, "birthday"), (2, "weekly-picks"),
    ]  # fmt: skip
    assert report.channels["email"].suppressed == Counter(opted_out_topic=1, opted_out=2)
    assert by_campaign(engine, 1)["weekly-picks"] == ("suppressed", "opted_out_topic")
    assert balanced(report)


def test_a_topic_opt_out_applies_without_rules_too(engine: Engine) -> None:
    add_customers(engine, [1])
    statement(engine, 1, "email:weekly-picks", "denied", T0, "preference_centre")
    report = dispatch(engine, [mail(1)], {"email": InMemoryChannel("email")}, now=T0)
    assert report.channels["email"].suppressed == Counter(opted_out_topic=1)


def test_addresses_on_the_suppression_list_are_not_mailed_with_one_lookup_a_batch(engine: Engine) -> None:
    ids = list(range(1, 8))
    add_customers(engine, ids)
    with engine.begin() as conn:
        suppression.suppress(conn, "email", "C1@Example.COM ", "hard_bounce", source="postmark")
        suppression.suppress(conn, "email", "c2@example.com", "spam_complaint", source="postmark")
        suppression.suppress(conn, "email", "c3@example.com", "erased", source="forget")
        suppression.suppress(conn, "sms", "c4@example.com", "manual", source="ops")  # another channel's list
    lookups: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "FROM suppressions" in statement:
            lookups.append(statement)

    class Three(InMemoryChannel):
        batch_size = 3

    channel = Three("email")
    event.listen(engine, "before_cursor_execute", count)
    try:
        report = dispatch(engine, [mail(i, marketing=i != 3) for i in ids], {"email": channel}, now=T0)
    finally:
        event.remove(engine, "before_cursor_execute", count)

    assert sorted(m.customer_id for m in channel.delivered) == [4, 5, 6, 7]
    assert report.channels["email"].suppressed == Counter(hard_bounce=1, spam_complaint=1, erased=1)
    assert len(lookups) == 3  # 7 messages in batches of 3
    assert balanced(report)


# --- quiet hours ----------------------------------------------------------------------------------------------


def test_quiet_hours_defer_to_the_customers_morning_then_a_later_run_sends(engine: Engine) -> None:
    add_customers(engine, [1, 2, 3])
    with engine.begin() as conn:  # a leftover is rebuilt from the profile: it must know the zone too
        conn.execute(update(CUSTOMERS).where(CUSTOMERS.c.id.in_([1, 3])).values(timezone="America/New_York"))
    rules = dataclasses.replace(QUIET, default_timezone="Asia/Tokyo")
    night = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)  # 22:00 in New York, 12:00 in Tokyo
    planned = [mail(1, timezone="America/New_York"), mail(2), mail(3, "birthday", timezone="America/New_York")]
    channel = InMemoryChannel("email")

    first = dispatch(engine, planned, {"email": channel}, now=night, rules=rules)

    morning = datetime(2026, 11, 27, 13, 0, tzinfo=UTC)  # 08:00 in New York
    assert [m.customer_id for m in channel.delivered] == [2]
    assert first.channels["email"].deferred == 2 and balanced(first) and first.complete
    deferred = {r["customer_id"]: r for r in rows(engine) if r["state"] == "pending"}
    assert {c: r["not_before"] for c, r in deferred.items()} == {1: morning, 3: morning}
    assert all(r["payload"] is not None for r in deferred.values())

    # before the morning: still deferred, neither taken nor counted as unfinished, by either path
    early = morning - timedelta(minutes=30)
    again = dispatch(engine, planned, {"email": channel}, now=early, rules=rules)
    leftovers = finish_unfinished(engine, {"email": channel}, now=early, rules=rules)
    assert again.channels["email"].deferred == 2 and again.channels["email"].already_done == 1
    assert again.total_unfinished == 0 and balanced(again)
    assert leftovers.total_planned == 0 and len(channel.delivered) == 1

    # a minute after the morning (well within the lease of the run that deferred them): both paths send
    later = morning + timedelta(minutes=1)
    replanned = dispatch(engine, [planned[0]], {"email": channel}, now=later, rules=rules)
    finished = finish_unfinished(engine, {"email": channel}, now=later, rules=rules)
    assert replanned.total_sent == 1 and finished.total_sent == 1 and balanced(replanned) and balanced(finished)
    assert sorted(m.customer_id for m in channel.delivered) == [1, 2, 3]
    assert {r["state"] for r in rows(engine)} == {"sent"} and all(r["not_before"] is None for r in rows(engine))


def test_a_campaigns_send_window_defers_it_and_a_leftover_keeps_its_window(engine: Engine) -> None:
    add_customers(engine, [1, 2])
    with engine.begin() as conn:
        conn.execute(update(CUSTOMERS).where(CUSTOMERS.c.id == 1).values(timezone="America/New_York"))
    windowed = dataclasses.replace(mail(1, timezone="America/New_York"), send_window="10:00-12:00")
    channel = InMemoryChannel("email")

    first = dispatch(engine, [windowed, mail(2)], {"email": channel}, now=T0, rules=QUIET)  # 07:00 NY, 12:00 UTC

    ten = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)  # 10:00 in New York
    assert [m.customer_id for m in channel.delivered] == [2]  # no window, the store's zone (UTC) is awake
    assert first.channels["email"].deferred == 1 and balanced(first)
    assert {r["customer_id"]: r["not_before"] for r in rows(engine) if r["state"] == "pending"} == {1: ten}

    # nobody ran until after the window closed: the leftover, rebuilt from the ledger, waits for tomorrow's window
    afternoon = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)  # 13:00 in New York
    late = finish_unfinished(engine, {"email": channel}, now=afternoon, rules=QUIET)
    assert late.total_sent == 0 and late.channels["email"].deferred == 1
    assert [r["not_before"] for r in rows(engine) if r["state"] == "pending"] == [ten + timedelta(days=1)]

    finished = finish_unfinished(engine, {"email": channel}, now=ten + timedelta(days=1, minutes=5), rules=QUIET)
    assert finished.total_sent == 1 and [m.send_window for m in channel.delivered] == [None, "10:00-12:00"]


def test_a_deferred_message_is_not_expired_for_having_waited(engine: Engine) -> None:
    add_customers(engine, [1])
    night = datetime(2026, 11, 27, 23, 0, tzinfo=UTC)
    dispatch(engine, [mail(1)], {"email": InMemoryChannel("email")}, now=night, rules=QUIET)
    with engine.begin() as conn:  # planned long ago (say, deferred again and again): lateness counts from not_before
        conn.execute(update(MESSAGES).values(created_at=night - timedelta(days=10)))
    channel = InMemoryChannel("email")

    report = finish_unfinished(engine, {"email": channel}, now=night + timedelta(hours=10), rules=QUIET)

    assert len(channel.delivered) == 1 and report.total_sent == 1 and balanced(report)
    stale = finish_unfinished(engine, {"email": channel}, now=night + timedelta(days=9), rules=QUIET)
    assert stale.total_planned == 0


def test_a_deferred_message_due_long_ago_expires(engine: Engine) -> None:
    add_customers(engine, [1])
    night = datetime(2026, 11, 27, 23, 0, tzinfo=UTC)
    dispatch(engine, [mail(1)], {"email": InMemoryChannel("email")}, now=night, rules=QUIET)
    channel = InMemoryChannel("email")
    report = finish_unfinished(engine, {"email": channel}, now=night + timedelta(days=9), rules=QUIET)
    assert channel.delivered == [] and report.channels["email"].failed == Counter(expired=1) and balanced(report)


def test_a_deferred_message_still_meets_the_cap_when_it_is_due(engine: Engine) -> None:
    add_customers(engine, [1])
    night = datetime(2026, 11, 27, 23, 0, tzinfo=UTC)
    channel = InMemoryChannel("email")
    dispatch(engine, [mail(1, "weekly-picks")], {"email": channel}, now=night, rules=QUIET)  # deferred to 08:00
    morning = night + timedelta(hours=9, minutes=30)
    dispatch(engine, [mail(1, "abandoned-cart")], {"email": channel}, now=morning, rules=QUIET)  # takes the slot

    report = finish_unfinished(engine, {"email": channel}, now=morning + timedelta(minutes=5), rules=QUIET)

    assert [m.campaign for m in channel.delivered] == ["abandoned-cart"]
    assert report.channels["email"].suppressed == Counter(frequency_cap=1) and balanced(report)


# --- outcomes -------------------------------------------------------------------------------------------------


def test_an_in_doubt_result_is_failed_in_doubt_and_never_resent(engine: Engine) -> None:
    add_customers(engine, [1, 2])
    lost = InMemoryChannel("email", fail={1: InDoubtChannelError("connection dropped after DATA")})
    first = dispatch(engine, [mail(1), mail(2)], {"email": lost}, now=T0, rules=NO_QUIET)
    assert first.channels["email"].failed == Counter(in_doubt=1) and balanced(first)
    assert by_campaign(engine, 1)["weekly-picks"] == ("failed", "in_doubt")

    channel = InMemoryChannel("email")
    again = dispatch(engine, [mail(1)], {"email": channel}, now=T0 + timedelta(hours=1), rules=NO_QUIET)
    leftovers = finish_unfinished(engine, {"email": channel}, now=T0 + timedelta(hours=1), rules=NO_QUIET)
    assert channel.delivered == [] and again.channels["email"].already_done == 1 and leftovers.total_planned == 0


def test_a_dead_address_lands_on_the_suppression_list_with_the_outcome(engine: Engine) -> None:
    add_customers(engine, [1, 2])
    bounced = InMemoryChannel("email", fail={
        1: PermanentChannelError("550 5.1.1 mailbox unavailable", suppress="smtp_permanent"),
        2: PermanentChannelError("552 message too large"),
    })  # fmt: skip
    report = dispatch(engine, [mail(1), mail(2)], {"email": bounced}, now=T0)

    assert report.channels["email"].failed == Counter(permanent=2) and balanced(report)
    with engine.connect() as conn:
        assert suppression.is_suppressed(conn, "email", "c1@example.com") == "smtp_permanent"
        assert suppression.is_suppressed(conn, "email", "c2@example.com") is None  # the message, not the address
        listed = conn.execute(select(suppression.SUPPRESSIONS)).mappings().one()
    assert (listed["source"], listed["customer_id"]) == ("email", 1)

    channel = InMemoryChannel("email")
    later = dispatch(engine, [mail(1, "birthday"), mail(2, "birthday")], {"email": channel}, now=T0 + timedelta(days=1))
    assert [m.customer_id for m in channel.delivered] == [2]
    assert later.channels["email"].suppressed == Counter(smtp_permanent=1)


def test_an_unknown_suppression_reason_still_records_the_outcome(engine: Engine) -> None:
    add_customers(engine, [1])

    class Odd(InMemoryChannel):
        def send(self, message: OutboundMessage) -> DeliveryResult:
            return DeliveryResult("failed", error="rejected", suppress="not-a-reason")

    report = dispatch(engine, [mail(1)], {"email": Odd("email")}, now=T0)
    assert report.channels["email"].failed == Counter(permanent=1)
    with engine.connect() as conn:
        assert conn.execute(select(suppression.SUPPRESSIONS)).first() is None


# --- in-run retries -------------------------------------------------------------------------------------------


class Flaky(InMemoryChannel):
    """Fails its first ``failures`` hand-overs of each customer with a retryable error."""

    def __init__(self, failures: int, *, whole_batch: bool = False) -> None:
        super().__init__("email")
        self.failures = failures
        self.whole_batch = whole_batch
        self.tries: Counter[int] = Counter()

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[DeliveryResult]:
        if self.whole_batch and self.tries[0] < self.failures:
            self.tries[0] += 1
            raise RetryableChannelError("421 service not available")
        return super().send_batch(messages)

    def send(self, message: OutboundMessage) -> DeliveryResult:
        self.tries[message.customer_id] += 1
        if not self.whole_batch and self.tries[message.customer_id] <= self.failures:
            return DeliveryResult.failed(RetryableChannelError("451 try again later"))
        return super().send(message)


def test_an_in_run_retry_recovers_a_flaky_channel_with_backoff_and_jitter(engine: Engine) -> None:
    add_customers(engine, [1, 2])
    waits: list[float] = []
    rules = DispatchRules(sleep=waits.append, random=lambda: 0.5)
    channel = Flaky(failures=2)

    report = dispatch(engine, [mail(1, occurrence="a"), mail(2, occurrence="b")], {"email": channel}, now=T0,
                      rules=dataclasses.replace(rules, email_daily_cap=0))  # fmt: skip

    assert report.total_sent == 2 and report.total_failed == 0 and balanced(report)
    assert waits == [0.25, 0.5]  # half of 0.5 s, then of 1 s: full jitter of an exponential backoff
    assert {r["attempts"] for r in rows(engine)} == {3} and {r["state"] for r in rows(engine)} == {"sent"}


def test_a_whole_batch_failure_is_retried_in_the_run_too(engine: Engine) -> None:
    add_customers(engine, [1, 2])
    channel = Flaky(failures=1, whole_batch=True)
    report = dispatch(engine, [mail(1, occurrence="a"), mail(2, occurrence="b")], {"email": channel}, now=T0,
                      rules=DispatchRules(email_daily_cap=0, sleep=lambda _: None))  # fmt: skip
    assert report.total_sent == 2 and balanced(report)


def test_after_the_in_run_retries_a_failure_stays_retryable_for_the_next_run(engine: Engine) -> None:
    add_customers(engine, [1])
    rules = DispatchRules(sleep=lambda _: None)
    stubborn = Flaky(failures=5)

    first = dispatch(engine, [mail(1)], {"email": stubborn}, now=T0, rules=rules)

    assert stubborn.tries[1] == 3 and first.channels["email"].failed == Counter(retryable=1) and balanced(first)
    assert first.total_retryable == 1
    row = rows(engine)[0]
    assert (row["state"], row["reason"], row["attempts"]) == ("failed", "retryable", 3) and row["payload"]

    channel = InMemoryChannel("email")
    second = finish_unfinished(engine, {"email": channel}, now=T0 + timedelta(hours=1), rules=rules)
    assert second.total_sent == 1 and rows(engine)[0]["attempts"] == 4


def test_without_rules_a_retryable_failure_waits_for_the_next_run(engine: Engine) -> None:
    add_customers(engine, [1])
    channel = Flaky(failures=1)
    report = dispatch(engine, [mail(1)], {"email": channel}, now=T0)
    assert channel.tries[1] == 1 and report.channels["email"].failed == Counter(retryable=1)


# --- error-rate stop ------------------------------------------------------------------------------------------


def test_a_campaign_failing_past_the_threshold_stops_and_a_later_run_finishes_it(engine: Engine) -> None:
    ids = list(range(1, 14))
    add_customers(engine, ids)
    weekly = ids[:10]
    broken = InMemoryChannel("email", fail={i: RetryableChannelError("503 upstream down") for i in weekly})
    broken.batch_size = 1  # type: ignore[misc]
    rules = DispatchRules(error_min_handovers=4, error_threshold=0.2, in_run_retries=0)
    planned = [mail(i, "weekly-picks") for i in weekly] + [mail(i, "birthday") for i in ids[10:]]

    report = dispatch(engine, planned, {"email": broken}, now=T0, rules=rules)

    tally = report.channels["email"]
    assert tally.sent == 3  # the birthdays, decided first
    assert tally.failed == Counter(retryable=4, campaign_stopped=6) and balanced(report)
    assert set(report.stopped) == {"weekly-picks"}
    why = report.stopped["weekly-picks"]
    assert "4 of 4 hand-overs failed" in why and "retryable=4" in why and "@" not in why
    assert not report.complete and report.total_retryable == 10 and report.total_given_up == 0
    stopped = [r for r in rows(engine) if r["reason"] == "campaign_stopped"]
    assert len(stopped) == 6 and all(r["attempts"] == 0 and r["payload"] for r in stopped)

    healthy = InMemoryChannel("email")
    later = finish_unfinished(engine, {"email": healthy}, now=T0 + timedelta(hours=1), rules=rules)
    assert later.total_sent == 10 and not later.stopped and balanced(later)
    assert sorted(m.customer_id for m in healthy.delivered) == weekly


def test_a_stop_needs_the_minimum_of_hand_overs(engine: Engine) -> None:
    add_customers(engine, [1, 2, 3])
    channel = InMemoryChannel("email", fail={1: PermanentChannelError("rejected")})
    report = dispatch(engine, [mail(i) for i in (1, 2, 3)], {"email": channel}, now=T0,
                      rules=DispatchRules(in_run_retries=0))  # 1 of 3 failed, but 20 hand-overs are needed  # fmt: skip
    assert report.stopped == {} and report.total_sent == 2


def test_a_stop_ends_hand_overs_one_at_a_time_for_a_channel_that_cannot_tell(engine: Engine) -> None:
    add_customers(engine, range(1, 9))
    smtp_like = InMemoryChannel("email", fail={i: PermanentChannelError("554 rejected") for i in range(1, 9)})
    smtp_like.knows_deliveries = False  # type: ignore[misc]
    report = dispatch(engine, [mail(i) for i in range(1, 9)], {"email": smtp_like}, now=T0,
                      rules=DispatchRules(error_min_handovers=3, in_run_retries=0))  # fmt: skip
    assert report.channels["email"].failed == Counter(permanent=3, campaign_stopped=5) and balanced(report)


def test_reports_merge_their_stops_and_deferrals() -> None:
    from channels.report import ChannelTally

    one = DispatchReport({"email": ChannelTally(planned=2, deferred=2)}, stopped={"birthday": "x"})
    two = DispatchReport({"email": ChannelTally(planned=1, sent=1)}, stopped={"birthday": "y", "winback": "z"})
    merged = one.merge(two)
    assert merged.channels["email"].deferred == 2 and merged.balanced
    assert merged.stopped == {"birthday": "x; y", "winback": "z"}
    assert merged.rows()[0]["deferred"] == 2 and not merged.complete
