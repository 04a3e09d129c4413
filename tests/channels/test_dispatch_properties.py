"""Properties of dispatch over random consents, failures, holdouts and reruns (in-memory SQLite, one per example)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from random import Random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, insert
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool
from sqlmodel import SQLModel

import models.schema  # noqa: F401  (tables on the metadata)
from channels.base import ChannelError, InMemoryChannel, PermanentChannelError, RetryableChannelError
from channels.dispatch import dispatch
from channels.rules import DispatchRules
from models.schema import Consent, Customer
from tests.channels.conftest import message

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)

customer = st.fixed_dictionaries(
    {
        "consent": st.sampled_from([None, "granted", "denied", "tie"]),
        "holdout": st.booleans(),
        "copies": st.integers(min_value=1, max_value=2),
        "first_failure": st.sampled_from([None, "retryable", "permanent"]),
        "second_failure": st.sampled_from([None, "retryable", "permanent"]),
    }
)


def fresh_engine(customers: list[dict[str, object]]) -> Engine:
    engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    SQLModel.metadata.create_all(engine)
    with engine.begin() as conn:
        ids = range(1, len(customers) + 1)
        conn.execute(insert(Customer.__table__), [{"id": i, "created_at": T0, "updated_at": T0} for i in ids])
        consents = []
        for i, spec in zip(ids, customers, strict=True):
            if spec["consent"] in ("granted", "denied"):
                consents.append((i, spec["consent"], "shopify"))
            elif spec["consent"] == "tie":  # the same instant from two sources: denial must win
                consents += [(i, "granted", "shopify"), (i, "denied", "crm")]
        if consents:
            conn.execute(
                insert(Consent.__table__),
                [
                    {"customer_id": c, "channel": "email", "state": s, "source": src, "recorded_at": T0}
                    for c, s, src in consents
                ],
            )
    return engine


def failures(customers: list[dict[str, object]], key: str) -> dict[int, ChannelError]:
    kinds = {"retryable": RetryableChannelError("try later"), "permanent": PermanentChannelError("rejected")}
    return {i: kinds[str(spec[key])] for i, spec in enumerate(customers, start=1) if spec[key]}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(customers=st.lists(customer, min_size=1, max_size=25), batch_size=st.integers(min_value=1, max_value=10))
def test_every_planned_message_lands_in_exactly_one_bucket(customers: list[dict[str, object]], batch_size: int) -> None:
    engine = fresh_engine(customers)
    messages = [
        message(i, variant="holdout" if spec["holdout"] else "a")
        for i, spec in enumerate(customers, start=1)
        for _ in range(int(spec["copies"]))  # type: ignore[call-overload]
    ]
    delivered: Counter[int] = Counter()

    for run, key in enumerate(["first_failure", "second_failure"]):
        channel = InMemoryChannel("email", fail=failures(customers, key))
        channel.batch_size = batch_size  # type: ignore[misc]
        report = dispatch(engine, messages, {"email": channel}, now=T0 + timedelta(hours=run))
        tally = report.channels["email"]

        assert tally.planned == len(messages)
        assert tally.planned == tally.sent + tally.suppressed.total() + tally.failed.total() + tally.already_done
        assert report.total_sent == tally.sent == len(channel.delivered)
        delivered.update(m.customer_id for m in channel.delivered)

    for i, spec in enumerate(customers, start=1):
        allowed = spec["consent"] == "granted" and not spec["holdout"]
        assert delivered[i] <= (1 if allowed else 0)
        if allowed and spec["first_failure"] is None:
            assert delivered[i] == 1
    engine.dispose()


CAMPAIGNS = {"abandoned-cart": 1, "replenishment": 2, "birthday": 3, "winback": 4, "weekly-picks": 5, "spring-sale": 2}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plan=st.lists(
        st.tuples(st.integers(min_value=1, max_value=4), st.sampled_from(sorted(CAMPAIGNS))), min_size=1, max_size=14,
        unique=True,
    ),
    order=st.randoms(use_true_random=False),
    batch_size=st.integers(min_value=1, max_value=5),
)
def test_with_a_daily_cap_of_one_each_customer_gets_their_highest_priority_message(
    plan: list[tuple[int, str]], order: Random, batch_size: int
) -> None:
    engine = fresh_engine([{"consent": "granted"}] * 4)
    messages = [
        replace(message(c, occurrence=f"{campaign}:1"), campaign=campaign, priority=CAMPAIGNS[campaign])
        for c, campaign in plan
    ]
    order.shuffle(messages)
    channel = InMemoryChannel("email")
    channel.batch_size = batch_size  # type: ignore[misc]

    report = dispatch(engine, messages, {"email": channel}, now=T0, rules=DispatchRules(sleep=lambda _: None))

    best = {c: min(CAMPAIGNS[cp] for cc, cp in plan if cc == c) for c, _ in plan}
    got = {m.customer_id: m.priority for m in channel.delivered}
    assert len(channel.delivered) == len(got)  # one each
    assert got == best  # the campaign priority the message carries decides, not its name or the input order
    tally = report.channels["email"]
    assert tally.suppressed == (Counter(frequency_cap=len(plan) - len(got)) if len(plan) > len(got) else Counter())
    assert report.balanced and tally.deferred == 0
    engine.dispose()
