"""Dispatch: ledger claim → consent gate → adapter → outcome, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from channels.base import (
    ChannelConfigError,
    DeliveryResult,
    InMemoryChannel,
    PermanentChannelError,
    RetryableChannelError,
)
from channels.dispatch import MESSAGES, DispatchReport, DispatchRules, dispatch, finish_unfinished
from models.consent import record_unsubscribe
from models.message import OutboundMessage
from tests.channels.conftest import add_customers, grant, message

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def ledger(engine: Engine) -> dict[int, dict[str, object]]:
    with engine.connect() as conn:
        rows = conn.execute(select(MESSAGES)).mappings().all()
    return {row["customer_id"]: dict(row) for row in rows}


def test_consented_customers_get_exactly_one_message_each(engine: Engine) -> None:
    add_customers(engine, [1, 2, 3])
    channel = InMemoryChannel("email")

    report = dispatch(engine, [message(i) for i in (1, 2, 3)], {"email": channel}, now=T0)

    assert report.total_sent == 3
    assert sorted(m.customer_id for m in channel.delivered) == [1, 2, 3]
    rows = ledger(engine)
    assert {row["state"] for row in rows.values()} == {"sent"}
    assert all(row["attempts"] == 1 and row["sent_at"] == T0 and row["provider_id"] for row in rows.values())


def test_unsubscribed_customer_gets_no_email(engine: Engine) -> None:
    add_customers(engine, [1, 2])
    record_unsubscribe(engine, 2, "email")
    channel = InMemoryChannel("email")

    report = dispatch(engine, [message(1), message(2)], {"email": channel})

    assert [m.customer_id for m in channel.delivered] == [1]
    assert report.channels["email"].suppressed == Counter(opted_out=1)
    assert ledger(engine)[2]["state"] == "suppressed" and ledger(engine)[2]["reason"] == "opted_out"


def test_customer_without_any_consent_statement_is_not_contacted(engine: Engine) -> None:
    add_customers(engine, [1], consent=None)
    channel = InMemoryChannel("email")

    report = dispatch(engine, [message(1)], {"email": channel})

    assert channel.delivered == []
    assert report.channels["email"].suppressed == Counter(no_consent=1)


def test_consent_on_another_channel_does_not_count(engine: Engine) -> None:
    add_customers(engine, [1], consent="granted", channel="sms")
    report = dispatch(engine, [message(1)], {"email": InMemoryChannel("email")})
    assert report.channels["email"].suppressed == Counter(no_consent=1)


def test_holdout_is_recorded_but_never_delivered(engine: Engine) -> None:
    add_customers(engine, [1, 2])
    channel = InMemoryChannel("email")

    report = dispatch(engine, [message(1, variant="holdout"), message(2, variant="b")], {"email": channel})

    assert [m.customer_id for m in channel.delivered] == [2]
    assert report.channels["email"].suppressed == Counter(holdout=1)
    assert ledger(engine)[1]["variant"] == "holdout" and ledger(engine)[1]["reason"] == "holdout"


class _NeedsEmail(InMemoryChannel):
    def can_reach(self, message: OutboundMessage) -> str | None:
        return None if message.recipient.email else "no_address"


def test_recipient_without_address_is_suppressed_as_no_address(engine: Engine) -> None:
    add_customers(engine, [1])
    report = dispatch(engine, [message(1, email=None)], {"email": _NeedsEmail("email")})
    assert report.channels["email"].suppressed == Counter(no_address=1)


def test_rerun_sends_nothing_and_counts_already_done(engine: Engine) -> None:
    add_customers(engine, [1, 2])
    record_unsubscribe(engine, 2, "email")
    messages = [message(1), message(2)]
    dispatch(engine, messages, {"email": InMemoryChannel("email")})
    channel = InMemoryChannel("email")

    report = dispatch(engine, messages, {"email": channel})

    assert channel.delivered == []
    assert report.channels["email"].already_done == 2 and report.total_sent == 0
    assert report.balanced


def test_same_key_twice_in_one_run_is_sent_once(engine: Engine) -> None:
    add_customers(engine, [1])
    channel = InMemoryChannel("email")

    report = dispatch(engine, [message(1), message(1)], {"email": channel})

    assert len(channel.delivered) == 1
    assert report.channels["email"].planned == 2 and report.channels["email"].already_done == 1


def test_same_customer_other_occurrence_is_a_new_message(engine: Engine) -> None:
    add_customers(engine, [1])
    channel = InMemoryChannel("email")
    dispatch(engine, [message(1, occurrence="weekly:2026-48")], {"email": channel})
    dispatch(engine, [message(1, occurrence="weekly:2026-49")], {"email": channel})
    assert len(channel.delivered) == 2


def test_retryable_failure_is_retried_on_the_next_run(engine: Engine) -> None:
    add_customers(engine, [1, 2])
    flaky = InMemoryChannel("email", fail={1: RetryableChannelError("SMTP 451 try later")})

    first = dispatch(engine, [message(1), message(2)], {"email": flaky}, now=T0)
    assert first.channels["email"].failed == Counter(retryable=1) and first.total_sent == 1
    assert ledger(engine)[1]["error"] == "RetryableChannelError: SMTP 451 try later"

    healthy = InMemoryChannel("email")
    second = dispatch(engine, [message(1), message(2)], {"email": healthy}, now=T0 + timedelta(hours=1))

    assert [m.customer_id for m in healthy.delivered] == [1]
    assert second.channels["email"].already_done == 1
    row = ledger(engine)[1]
    assert row["state"] == "sent" and row["attempts"] == 2


def test_permanent_failure_is_not_retried(engine: Engine) -> None:
    add_customers(engine, [1])
    dispatch(engine, [message(1)], {"email": InMemoryChannel("email", fail={1: PermanentChannelError("550")})})
    channel = InMemoryChannel("email")

    report = dispatch(engine, [message(1)], {"email": channel})

    assert channel.delivered == []
    assert report.channels["email"].already_done == 1
    assert ledger(engine)[1]["reason"] == "permanent"


def test_retries_stop_after_max_attempts(engine: Engine) -> None:
    add_customers(engine, [1])
    flaky = InMemoryChannel("email", fail={1: RetryableChannelError("timeout")})
    reports = [dispatch(engine, [message(1)], {"email": flaky}, max_attempts=2) for _ in range(3)]
    assert [r.channels["email"].failed.total() for r in reports] == [1, 1, 0]
    assert reports[2].channels["email"].already_done == 1
    assert ledger(engine)[1]["attempts"] == 2


def test_message_handed_over_by_a_crashed_worker_is_redelivered_only_if_the_channel_lacks_it(engine: Engine) -> None:
    add_customers(engine, [1])

    class Crash(InMemoryChannel):
        def send_batch(self, messages: Sequence[OutboundMessage]) -> list[DeliveryResult]:
            raise KeyboardInterrupt  # the worker dies during the hand-over, before anything was delivered

    with pytest.raises(KeyboardInterrupt):
        dispatch(engine, [message(1)], {"email": Crash("email")}, now=T0)
    assert ledger(engine)[1]["state"] == "sending"

    too_soon = InMemoryChannel("email")
    soon = dispatch(engine, [message(1)], {"email": too_soon}, now=T0 + timedelta(minutes=5))
    assert too_soon.delivered == [] and soon.channels["email"].unfinished == 1
    assert soon.channels["email"].already_done == 0 and not soon.complete

    later = InMemoryChannel("email")
    report = dispatch(engine, [message(1)], {"email": later}, now=T0 + timedelta(minutes=30))
    assert len(later.delivered) == 1 and ledger(engine)[1]["state"] == "sent"
    assert report.complete and report.balanced


def test_unsubscribe_between_runs_wins_over_a_pending_retry(engine: Engine) -> None:
    add_customers(engine, [1])
    dispatch(engine, [message(1)], {"email": InMemoryChannel("email", fail={1: RetryableChannelError("busy")})})
    record_unsubscribe(engine, 1, "email")
    channel = InMemoryChannel("email")

    report = dispatch(engine, [message(1)], {"email": channel})

    assert channel.delivered == [] and report.channels["email"].suppressed == Counter(opted_out=1)


def test_config_error_stops_the_run_and_records_nothing_as_sent(engine: Engine) -> None:
    add_customers(engine, [1, 2])

    class Misconfigured(InMemoryChannel):
        def send_batch(self, messages: Sequence[OutboundMessage]) -> list[DeliveryResult]:
            raise ChannelConfigError("OMNICAST_EMAIL_URL points nowhere")

    with pytest.raises(ChannelConfigError, match="OMNICAST_EMAIL_URL"):
        dispatch(engine, [message(1), message(2)], {"email": Misconfigured("email")})
    rows = ledger(engine)
    assert {row["state"] for row in rows.values()} == {"failed"} and {row["attempts"] for row in rows.values()} == {0}

    channel = InMemoryChannel("email")
    dispatch(engine, [message(1), message(2)], {"email": channel})
    assert len(channel.delivered) == 2


def test_unknown_channel_is_a_config_error_naming_the_configured_ones(engine: Engine) -> None:
    with pytest.raises(ChannelConfigError, match="'sms'.*email"):
        dispatch(engine, [message(1, channel="sms")], {"email": InMemoryChannel("email")})


def test_whole_batch_channel_error_fails_each_message(engine: Engine) -> None:
    add_customers(engine, [1, 2])

    class DiskFull(InMemoryChannel):
        def send_batch(self, messages: Sequence[OutboundMessage]) -> list[DeliveryResult]:
            raise RetryableChannelError("disk full")

    report = dispatch(engine, [message(1), message(2)], {"email": DiskFull("email")})
    assert report.channels["email"].failed == Counter(retryable=2)


def test_batches_follow_the_channel_batch_size(engine: Engine) -> None:
    add_customers(engine, range(1, 8))
    seen: list[int] = []

    class Small(InMemoryChannel):
        batch_size = 3

        def send_batch(self, messages: Sequence[OutboundMessage]) -> list[DeliveryResult]:
            seen.append(len(messages))
            return super().send_batch(messages)

    dispatch(engine, (message(i) for i in range(1, 8)), {"email": Small("email")})
    assert seen == [3, 3, 1]


def test_channels_are_gated_by_their_own_consent(engine: Engine) -> None:
    add_customers(engine, [1])
    with engine.begin() as conn:
        grant(conn, [1], "denied", "ads")
    email, meta = InMemoryChannel("email"), InMemoryChannel("meta", consent_channel="ads")

    report = dispatch(engine, [message(1), message(1, channel="meta")], {"email": email, "meta": meta})

    assert len(email.delivered) == 1 and meta.delivered == []
    assert report.channels["meta"].suppressed == Counter(opted_out=1)


@pytest.mark.timeout(60)
def test_two_dispatchers_racing_on_the_same_keys_deliver_once(engine: Engine) -> None:
    ids = list(range(1, 121))
    add_customers(engine, ids)
    messages = [message(i) for i in ids]
    start = threading.Barrier(2)
    reports: list[DispatchReport] = []
    errors: list[BaseException] = []

    class Racing(InMemoryChannel):
        batch_size = 20

    def run(channel: InMemoryChannel) -> None:
        try:
            start.wait()
            reports.append(dispatch(engine, messages, {"email": channel}))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    workers = [Racing("email") for _ in range(2)]
    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    delivered = Counter(m.customer_id for w in workers for m in w.delivered)
    assert set(delivered) == set(ids) and set(delivered.values()) == {1}
    assert sum(r.total_sent for r in reports) == len(ids)
    assert all(r.balanced for r in reports)


def test_report_rows_spell_out_reasons(engine: Engine) -> None:
    add_customers(engine, [1, 2, 3])
    record_unsubscribe(engine, 3, "email")
    channel = InMemoryChannel("email", fail={2: PermanentChannelError("bad address")})

    report = dispatch(engine, [message(1), message(2), message(3)], {"email": channel})

    assert report.rows() == [
        {
            "channel": "email",
            "planned": 3,
            "sent": 1,
            "suppressed": 1,
            "suppressed_by": "opted_out=1",
            "failed": 1,
            "failed_by": "permanent=1",
            "already_done": 0,
            "unfinished": 0,
            "deferred": 0,
        }
    ]
    assert "| email | 3 | 1 |" in report.to_markdown()


def test_stale_sent_rows_are_never_reclaimed(engine: Engine) -> None:
    add_customers(engine, [1])
    dispatch(engine, [message(1)], {"email": InMemoryChannel("email")}, now=T0)
    with engine.begin() as conn:
        conn.execute(update(MESSAGES).values(updated_at=T0 - timedelta(days=30)))
    channel = InMemoryChannel("email")
    dispatch(engine, [message(1)], {"email": channel}, now=T0 + timedelta(days=1))
    assert channel.delivered == []


# --- per campaign and variant, progress ------------------------------------------------------------------------


def _of(campaign: str, customer_id: int, variant: str | None, channel: str = "email") -> OutboundMessage:
    """A message of ``campaign`` with its own occurrence."""
    base = message(customer_id, channel=channel, variant=variant, occurrence=f"{campaign}:2026-W48")
    return replace(base, campaign=campaign)


def test_every_message_is_counted_under_its_campaign_and_variant_as_under_its_channel(engine: Engine) -> None:
    add_customers(engine, range(1, 8))
    record_unsubscribe(engine, 3, "email")
    channel = InMemoryChannel("email", fail={4: PermanentChannelError("550 mailbox unavailable")})
    planned = [
        _of("weekly-picks", 1, "a"), _of("weekly-picks", 2, "b"), _of("weekly-picks", 3, "b"),
        _of("weekly-picks", 4, "a"), _of("weekly-picks", 5, "holdout"), _of("weekly-picks", 5, "holdout"),
        _of("birthday", 6, None), _of("birthday", 7, None, channel="inapp"),
    ]  # fmt: skip

    report = dispatch(engine, planned, {"email": channel, "inapp": InMemoryChannel("inapp")}, now=T0)

    a, b = report.variants[("weekly-picks", "a")], report.variants[("weekly-picks", "b")]
    holdout, birthday = report.variants[("weekly-picks", "holdout")], report.variants[("birthday", "-")]
    assert (a.planned, a.sent, a.failed, a.errors) == (
        2,
        1,
        Counter(permanent=1),
        Counter({("permanent", "PermanentChannelError: 550 mailbox unavailable"): 1}),
    )
    assert (b.planned, b.sent, b.suppressed) == (2, 1, Counter(opted_out=1))
    assert (holdout.planned, holdout.suppressed, holdout.already_done) == (2, Counter(holdout=1), 1)
    assert (birthday.planned, birthday.sent) == (2, 2)  # one email and one in-app card
    assert report.reconciles_by_campaign and report.balanced
    weekly = report.by_campaign()["weekly-picks"]
    assert (weekly.planned, weekly.sent, weekly.suppressed.total(), weekly.failed.total()) == (6, 2, 2, 1)

    again = dispatch(engine, planned, {"email": InMemoryChannel("email"), "inapp": InMemoryChannel("inapp")}, now=T0)
    assert {key: t.already_done for key, t in again.variants.items()} == {
        ("weekly-picks", "a"): 2, ("weekly-picks", "b"): 2, ("weekly-picks", "holdout"): 2, ("birthday", "-"): 2,
    }  # fmt: skip
    assert again.reconciles_by_campaign and report.merge(again).reconciles_by_campaign


def test_failures_keep_their_error_text_and_leftovers_given_up_count_under_their_campaign(engine: Engine) -> None:
    add_customers(engine, [1, 2])
    dispatch(engine, [_of("birthday", 1, None), _of("win-back", 2, "a")],
             {"email": InMemoryChannel("email", fail={1: RetryableChannelError("451 greylisted"),
                                                      2: RetryableChannelError("451 greylisted")})},
             now=T0)  # fmt: skip

    later = finish_unfinished(engine, {"email": InMemoryChannel("email")}, now=T0 + timedelta(days=8))

    assert later.variants[("birthday", "-")].errors == Counter(
        {("expired", "planned more than 7 days, 0:00:00 ago and never delivered"): 1}
    )
    assert later.variants[("win-back", "a")].failed == Counter(expired=1)
    assert later.reconciles_by_campaign and later.balanced


def test_progress_is_reported_after_each_batch_and_adds_up(engine: Engine) -> None:
    add_customers(engine, range(1, 8))
    calls: list[tuple[int, int]] = []

    class Small(InMemoryChannel):
        batch_size = 3

    report = dispatch(
        engine, (message(i) for i in range(1, 8)), {"email": Small("email")}, progress=lambda *a: calls.append(a)
    )

    assert calls == [(3, 7), (6, 7), (7, 7)]  # a generator is read first, to know the total
    assert report.total_planned == calls[-1][0] == report.total_sent


def test_progress_counts_every_channels_batches_with_rules_too(engine: Engine) -> None:
    add_customers(engine, [1, 2])
    calls: list[tuple[int, int]] = []
    planned = [message(1), message(2), message(1, channel="inapp")]

    report = dispatch(engine, planned, {"email": InMemoryChannel("email"), "inapp": InMemoryChannel("inapp")},
                      now=T0, rules=DispatchRules(), progress=lambda *a: calls.append(a))  # fmt: skip

    assert [total for _, total in calls] == [3] * len(calls) and calls[-1] == (3, 3)
    assert report.total_planned == 3 and report.reconciles_by_campaign
