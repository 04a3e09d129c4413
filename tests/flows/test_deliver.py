"""The delivery step of every sending flow: earlier runs' leftovers first (of the campaigns asked for), then the
messages planned now, through the channels the settings open, with the lease the settings give."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from prefect.logging import disable_run_logger
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from channels.base import InMemoryChannel, RetryableChannelError
from channels.dispatch import MESSAGES, dispatch
from flows.deliver import deliver
from flows.runtime import Resources
from flows.settings import Settings
from tests.channels.conftest import add_customers, message


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(outbox_dir=tmp_path / "outbox", secret_key="k" * 32, claim_lease_seconds=60)


def test_delivery_finishes_this_campaigns_leftovers_then_sends_what_was_planned(
    sqlite_engine: Engine, settings: Settings
) -> None:
    add_customers(sqlite_engine, [1, 2, 3])
    flaky = InMemoryChannel("email", fail={1: RetryableChannelError("451"), 2: RetryableChannelError("451")})
    birthday = replace(message(2, occurrence="birthday:2026:2"), campaign="birthday")
    dispatch(sqlite_engine, [message(1), birthday], {"email": flaky})  # two retryable failures are left

    with disable_run_logger():
        delivery = deliver.fn(Resources(settings, sqlite_engine), [message(3)], campaigns=["weekly-picks"])

    assert delivery.leftovers.total_sent == 1 and delivery.planned.total_sent == 1
    assert len(list((settings.outbox_dir / "email").glob("*.eml"))) == 2
    with sqlite_engine.connect() as conn:
        states = dict(conn.execute(select(MESSAGES.c.customer_id, MESSAGES.c.state)).all())
    assert states == {1: "sent", 2: "failed", 3: "sent"}  # the birthday leftover waits for its own campaign run


def test_delivery_takes_over_a_crashed_runs_claims_only_after_the_settings_lease(
    sqlite_engine: Engine, settings: Settings
) -> None:
    add_customers(sqlite_engine, [1])
    dispatch(sqlite_engine, [message(1)], {"email": InMemoryChannel("email", fail={1: RetryableChannelError("x")})})
    with sqlite_engine.begin() as conn:  # as a run killed right after its claim leaves it
        conn.execute(update(MESSAGES).values(state="pending"))

    with disable_run_logger():
        soon = deliver.fn(Resources(settings.model_copy(update={"claim_lease_seconds": 3600}), sqlite_engine), [])
        later = deliver.fn(Resources(settings.model_copy(update={"claim_lease_seconds": 0.001}), sqlite_engine), [])

    assert soon.leftovers.total_planned == 0
    assert later.leftovers.total_sent == 1
