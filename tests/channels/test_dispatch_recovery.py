"""A run that dies at any moment: the next run finishes its work, never sends a message twice, and says so.

Crashes are simulated by ``KeyboardInterrupt`` (nothing in dispatch catches it, like a SIGKILL leaves the ledger as
it was); the real SIGKILL test of the whole day is in tests/hostile/test_crash_recovery.py.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool
from sqlmodel import SQLModel

from channels.base import DeliveryResult, InMemoryChannel, RetryableChannelError
from channels.dispatch import MESSAGES, _BatchRun, dispatch, finish_unfinished
from models.consent import record_unsubscribe
from models.message import OutboundMessage
from models.schema import Consent, Customer
from tests.channels.conftest import LONG_AGO, add_customers, message

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=15)
LATER = T0 + timedelta(minutes=30)


class DiesAfter(InMemoryChannel):
    """Delivers into ``sink`` (the outbox that survives the crash) and dies after ``after`` deliveries this run."""

    def __init__(self, sink: InMemoryChannel, after: int, *, knows: bool = True, batch_size: int = 100) -> None:
        super().__init__(sink.name)
        self.sink = sink
        self.after = after
        self.count = 0
        self.knows_deliveries = knows  # type: ignore[misc]
        self.batch_size = batch_size  # type: ignore[misc]
        self.delivered = sink.delivered

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[DeliveryResult]:
        results = []
        for item in messages:
            if self.count >= self.after:
                raise KeyboardInterrupt("killed")
            self.count += 1
            results.append(self.sink.send(item))
        return results

    def already_delivered(self, messages: Sequence[OutboundMessage]) -> dict[tuple[str, int, str], str] | None:
        return self.sink.already_delivered(messages) if self.knows_deliveries else None


def states(engine: Engine) -> dict[int, tuple[str, str | None]]:
    with engine.connect() as conn:
        return {r.customer_id: (r.state, r.reason) for r in conn.execute(select(MESSAGES))}


def test_message_delivered_just_before_a_crash_is_recorded_as_sent_not_delivered_again(engine: Engine) -> None:
    add_customers(engine, [1, 2, 3])
    sink = InMemoryChannel("email")
    with pytest.raises(KeyboardInterrupt):
        dispatch(engine, [message(i) for i in (1, 2, 3)], {"email": DiesAfter(sink, after=2)}, now=T0)
    assert {s for s, _ in states(engine).values()} == {"sending"}

    report = dispatch(engine, [message(i) for i in (1, 2, 3)], {"email": DiesAfter(sink, after=99)}, now=LATER)

    assert Counter(m.customer_id for m in sink.delivered) == {1: 1, 2: 1, 3: 1}
    tally = report.channels["email"]
    assert tally.recovered == 2 and tally.already_done == 2 and tally.sent == 1 and report.complete
    assert {s for s, _ in states(engine).values()} == {"sent"}


def test_a_channel_that_cannot_tell_gets_one_message_at_a_time_so_at_most_one_is_in_doubt(engine: Engine) -> None:
    add_customers(engine, [1, 2, 3, 4])
    sink = InMemoryChannel("email")
    with pytest.raises(KeyboardInterrupt):
        dispatch(engine, [message(i) for i in (1, 2, 3, 4)], {"email": DiesAfter(sink, 2, knows=False)}, now=T0)
    assert sorted(s for s, _ in states(engine).values()) == ["pending", "sending", "sent", "sent"]

    report = dispatch(engine, [message(i) for i in (1, 2, 3, 4)], {"email": DiesAfter(sink, 99, knows=False)},
                      now=LATER)  # fmt: skip

    assert Counter(m.customer_id for m in sink.delivered) == {1: 1, 2: 1, 4: 1}
    assert states(engine)[3] == ("failed", "in_doubt")
    assert report.channels["email"].failed == Counter(in_doubt=1) and not report.complete


def test_claimed_but_never_handed_over_messages_are_finished_after_the_lease(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_customers(engine, [1, 2])

    def killed(self: _BatchRun, ids: Sequence[int]) -> set[int]:
        raise KeyboardInterrupt("killed between claim and hand-over")

    with monkeypatch.context() as patch:
        patch.setattr(_BatchRun, "_mark_sending", killed)
        with pytest.raises(KeyboardInterrupt):
            dispatch(engine, [message(1), message(2)], {"email": InMemoryChannel("email")}, now=T0)
    assert {s for s, _ in states(engine).values()} == {"pending"}

    too_soon = dispatch(engine, [message(1), message(2)], {"email": InMemoryChannel("email")},
                        now=T0 + timedelta(minutes=1))  # fmt: skip
    assert too_soon.channels["email"].unfinished == 2 and too_soon.channels["email"].already_done == 0
    assert too_soon.balanced and not too_soon.complete

    channel = InMemoryChannel("email")
    dispatch(engine, [message(1), message(2)], {"email": channel}, now=LATER)
    assert len(channel.delivered) == 2 and {s for s, _ in states(engine).values()} == {"sent"}


def test_leftovers_are_finished_from_their_payload_without_being_planned_again(engine: Engine) -> None:
    add_customers(engine, [1, 2])
    planned = [message(1), message(2)]
    with pytest.raises(KeyboardInterrupt):
        dispatch(engine, planned, {"email": DiesAfter(InMemoryChannel("email"), after=0)}, now=T0)
    with engine.begin() as conn:  # the customer changed address since: the leftover goes to the new one
        conn.execute(update(Customer.__table__).where(Customer.__table__.c.id == 2).values(email="new2@example.com"))

    channel = InMemoryChannel("email")
    report = finish_unfinished(engine, {"email": channel}, now=LATER)

    assert report.total_sent == 2 and report.complete
    by_customer = {m.customer_id: m for m in channel.delivered}
    assert by_customer[2].recipient.email == "new2@example.com"
    assert by_customer[1].context["products"] == planned[0].context["products"]
    assert by_customer[1].context["customer"] == {"first_name": None}  # from the profile, not the old plan
    assert (by_customer[1].campaign, by_customer[1].template) == ("weekly-picks", "weekly_picks")
    with engine.connect() as conn:
        assert conn.execute(select(MESSAGES.c.payload)).scalars().all() == [None, None]  # finished: nothing kept


def test_a_retryable_failure_is_retried_by_the_next_run_even_when_nobody_plans_it_again(engine: Engine) -> None:
    add_customers(engine, [1])
    flaky = InMemoryChannel("email", fail={1: RetryableChannelError("451 try later")})
    dispatch(engine, [message(1)], {"email": flaky}, now=T0)
    assert states(engine)[1] == ("failed", "retryable")

    channel = InMemoryChannel("email")
    report = finish_unfinished(engine, {"email": channel}, now=T0 + timedelta(hours=1))

    assert len(channel.delivered) == 1 and report.total_sent == 1 and states(engine)[1] == ("sent", None)


def test_leftovers_planned_long_ago_are_closed_as_expired_not_sent(engine: Engine) -> None:
    add_customers(engine, [1])
    dispatch(engine, [message(1)], {"email": InMemoryChannel("email", fail={1: RetryableChannelError("x")})}, now=T0)

    channel = InMemoryChannel("email")
    report = finish_unfinished(engine, {"email": channel}, now=T0 + timedelta(days=8))

    assert channel.delivered == [] and report.channels["email"].failed == Counter(expired=1)
    assert states(engine)[1] == ("failed", "expired") and report.balanced


def test_an_unsubscribe_after_the_crash_wins_over_finishing_the_message(engine: Engine) -> None:
    add_customers(engine, [1])
    with pytest.raises(KeyboardInterrupt):
        dispatch(engine, [message(1)], {"email": DiesAfter(InMemoryChannel("email"), after=0)}, now=T0)
    record_unsubscribe(engine, 1, "email", at=T0 + timedelta(minutes=5))

    channel = InMemoryChannel("email")
    report = finish_unfinished(engine, {"email": channel}, now=LATER)

    assert channel.delivered == [] and report.channels["email"].suppressed == Counter(opted_out=1)


def test_finishing_leftovers_touches_only_the_campaigns_asked_for(engine: Engine) -> None:
    add_customers(engine, [1])
    dispatch(engine, [message(1)], {"email": InMemoryChannel("email", fail={1: RetryableChannelError("x")})}, now=T0)
    channel = InMemoryChannel("email")
    report = finish_unfinished(engine, {"email": channel}, now=LATER, campaigns=["birthday"])
    assert channel.delivered == [] and report.total_planned == 0


def test_a_non_marketing_contact_gets_no_marketing_message_on_any_channel(engine: Engine) -> None:
    add_customers(engine, [1, 2])
    with engine.begin() as conn:
        rows = [{"customer_id": 1, "channel": c, "state": "granted", "source": "shopify", "recorded_at": LONG_AGO}
                for c in ("ads", "inapp")]  # fmt: skip
        rows.append({"customer_id": 1, "channel": "marketing", "state": "denied", "source": "crm",
                     "recorded_at": LONG_AGO})  # fmt: skip
        conn.execute(insert(Consent.__table__), rows)
    channels = {
        "email": InMemoryChannel("email"),
        "meta": InMemoryChannel("meta", consent_channel="ads"),
        "inapp": InMemoryChannel("inapp", consent_channel="inapp"),
    }
    messages = [message(1, channel=c) for c in channels] + [message(2)]
    receipt = OutboundMessage("order:1001", "email", message(1).recipient, "receipts", "weekly_picks", marketing=False)

    report = dispatch(engine, [*messages, receipt], channels)

    for name in channels:
        assert report.channels[name].suppressed["non_marketing"] == 1, name
    assert [m.customer_id for m in channels["email"].delivered] == [2, 1]  # the marketing contact, then the receipt
    assert channels["email"].delivered[1].campaign == "receipts"


@pytest.mark.timeout(60)
def test_a_run_waits_for_messages_another_run_is_delivering_and_counts_them_done(engine: Engine) -> None:
    ids = list(range(1, 21))
    add_customers(engine, ids)
    started = threading.Event()

    class Slow(InMemoryChannel):
        def send_batch(self, messages: Sequence[OutboundMessage]) -> list[DeliveryResult]:
            started.set()
            time.sleep(1.5)
            return super().send_batch(messages)

    slow, fast = Slow("email"), InMemoryChannel("email")
    first = threading.Thread(target=lambda: dispatch(engine, [message(i) for i in ids], {"email": slow}))
    first.start()
    assert started.wait(10)
    report = dispatch(engine, [message(i) for i in ids], {"email": fast}, wait=timedelta(seconds=20))
    first.join()

    assert fast.delivered == [] and len(slow.delivered) == 20
    assert report.channels["email"].already_done == 20 and report.complete and report.balanced


crash_plan = st.lists(st.one_of(st.none(), st.integers(min_value=0, max_value=12)), min_size=1, max_size=4)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    customers=st.integers(min_value=1, max_value=12),
    crashes=crash_plan,
    knows=st.booleans(),
    batch_size=st.integers(min_value=1, max_value=5),
)
def test_any_sequence_of_crashes_then_one_clean_run_delivers_each_message_at_most_once(
    customers: int, crashes: list[int | None], knows: bool, batch_size: int
) -> None:
    """Runs die after k deliveries (None: the run completes); the lease passes between runs. Whatever happens:
    no message is delivered twice, and after one clean run every message is sent or, only for a channel that
    cannot tell what it delivered, recorded in doubt (at most one per crash)."""
    engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    SQLModel.metadata.create_all(engine)
    ids = list(range(1, customers + 1))
    with engine.begin() as conn:
        conn.execute(insert(Customer.__table__), [{"id": i, "created_at": T0, "updated_at": T0} for i in ids])
        conn.execute(insert(Consent.__table__), [
            {"customer_id": i, "channel": "email", "state": "granted", "source": "shopify", "recorded_at": LONG_AGO}
            for i in ids
        ])  # fmt: skip
    sink = InMemoryChannel("email")
    messages = [message(i) for i in ids]
    clock = T0
    for after in [*crashes, None]:
        channel = DiesAfter(sink, after=10**6 if after is None else after, knows=knows, batch_size=batch_size)
        clock += LEASE + timedelta(minutes=1)
        try:
            finish_unfinished(engine, {"email": channel}, now=clock, lease=LEASE)
            dispatch(engine, messages, {"email": channel}, now=clock, lease=LEASE)
        except KeyboardInterrupt:
            pass
        assert max(Counter(m.customer_id for m in sink.delivered).values(), default=0) <= 1

    final = states(engine)
    delivered = {m.customer_id for m in sink.delivered}
    assert set(final) == set(ids)
    for customer_id, (state, reason) in final.items():
        assert state in ("sent", "failed"), final
        assert (state == "sent") == (customer_id in delivered) or reason == "in_doubt"
    in_doubt = sum(1 for state, reason in final.values() if reason == "in_doubt")
    assert in_doubt == 0 if knows else in_doubt <= sum(1 for c in crashes if c is not None)
    engine.dispose()


def test_a_leftover_that_cannot_be_rebuilt_is_given_up_never_guessed(engine: Engine) -> None:
    add_customers(engine, [1, 2])
    with pytest.raises(KeyboardInterrupt):  # 1 is handed over, 2 only claimed, when the run dies
        dispatch(engine, [message(1), message(2)], {"email": DiesAfter(InMemoryChannel("email"), after=0,
                                                                       knows=False)}, now=T0)  # fmt: skip
    assert states(engine) == {1: ("sending", None), 2: ("pending", None)}
    with engine.begin() as conn:  # e.g. rows planned before payloads were kept
        conn.execute(update(MESSAGES).values(payload=None))

    channel = InMemoryChannel("email")
    report = finish_unfinished(engine, {"email": channel}, now=LATER)

    assert channel.delivered == [] and report.balanced
    assert states(engine) == {1: ("failed", "in_doubt"), 2: ("failed", "permanent")}
