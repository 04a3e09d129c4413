"""The pull in-app adapter (``OMNICAST_INAPP_URL=pull://``): cards stored once in ``inapp_cards``, retractions mark
them, ``already_delivered`` answers from the table; and the channel contract suite, run on it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from channels.base import ChannelConfigError
from channels.dispatch import dispatch
from channels.inapp import card_errors
from channels.inapp_store import CARDS, InAppStore
from channels.outbox import ledger_hash
from channels.registry import open_channel
from channels.render import CardRenderer
from channels.spec import BY_NAME, ChannelResources, ChannelSpec
from flows.settings import Settings
from models.message import OutboundMessage
from tests.channels.conftest import add_customers, message
from tests.channels.test_contract import Case
from tests.channels.test_contract import test_a_channel_that_knows_its_deliveries_answers_exactly as test_contract_knows
from tests.channels.test_contract import test_closing_twice_is_harmless as test_contract_close
from tests.channels.test_contract import test_declares_what_the_gate_needs as test_contract_declares
from tests.channels.test_contract import (
    test_each_message_reaches_the_peer_once_and_a_rerun_adds_nothing as test_contract_once,
)
from tests.channels.test_contract import test_one_result_per_message_in_order as test_contract_results

__all__ = ["test_contract_close", "test_contract_declares", "test_contract_knows", "test_contract_once",
           "test_contract_results"]  # fmt: skip

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
def inapp_spec() -> ChannelSpec:
    return BY_NAME["inapp"]


def store(engine: Engine, clock: datetime = NOW) -> InAppStore:
    return InAppStore(engine, CardRenderer(), clock=lambda: clock)


def card_message(customer_id: int, occurrence: str = "weekly:2026-48", **changes: Any) -> OutboundMessage:
    base = message(customer_id, channel="inapp", occurrence=occurrence)
    return replace(base, **changes) if changes else base


def retraction(customer_id: int, occurrence: str = "weekly:2026-48") -> OutboundMessage:
    return replace(message(customer_id, channel="inapp", occurrence=f"{occurrence}:retract"), retract=True,
                   context={"retracts": occurrence})  # fmt: skip


def rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(select(CARDS).order_by(CARDS.c.customer_id))]


def settings_for(engine: Engine, tmp_path: Path) -> Settings:
    url = engine.url.render_as_string(hide_password=False)
    return Settings(_env_file=None, secret_key="store-secret", outbox_dir=tmp_path / "outbox",  # type: ignore[call-arg]
                    database_url=url)  # fmt: skip


# --- storing -------------------------------------------------------------------------------------------------------


def test_each_card_is_stored_valid_with_its_identity_and_expiry(engine: Engine) -> None:
    results = store(engine).send_batch([card_message(5), card_message(6, variant="b")])
    assert [r.status for r in results] == ["sent", "sent"], results

    five, six = rows(engine)
    card_id = ledger_hash(card_message(5).ledger_key)
    assert five["id"] == card_id and results[0].provider_id == f"inapp_cards#{card_id}"
    assert five["customer_id"] == 5 and five["campaign"] == "weekly-picks" and five["retracted_at"] is None
    assert five["created_at"] == NOW and five["expires_at"] == NOW + timedelta(days=14)
    assert (
        five["card"]["id"] == card_id and five["card"]["customer_id"] == 5 and card_errors(five["card"], now=NOW) == []
    )
    assert six["card"]["variant"] == "b"


def test_a_rerun_or_a_retry_stores_a_card_once(engine: Engine) -> None:
    add_customers(engine, [1, 2, 3], channel="inapp")
    messages = [card_message(i) for i in (1, 2, 3)]
    first = dispatch(engine, messages, {"inapp": store(engine)})
    again = dispatch(engine, messages, {"inapp": store(engine)})
    assert first.total_sent == 3 and again.total_sent == 0 and again.channels["inapp"].already_done == 3

    later = store(engine, NOW + timedelta(hours=5))  # a retry of the same message by another process
    assert later.send(card_message(2)).status == "sent"
    stored = rows(engine)
    assert [row["customer_id"] for row in stored] == [1, 2, 3]
    assert stored[1]["created_at"] == NOW  # the first version stays


def test_a_retraction_marks_the_card_and_only_that_customers_card(engine: Engine) -> None:
    channel = store(engine)
    channel.send_batch([card_message(1), card_message(2)])
    later = store(engine, NOW + timedelta(days=1))
    forged = replace(retraction(2), context={"card_id": ledger_hash(card_message(1).ledger_key)})  # 1's card, 2's id

    results = later.send_batch([retraction(1), forged])
    assert [r.status for r in results] == ["sent", "sent"]
    assert results[0].provider_id == f"inapp_cards#{ledger_hash(card_message(1).ledger_key)}:retracted"
    one, two = rows(engine)
    assert one["retracted_at"] == NOW + timedelta(days=1) and one["updated_at"] == NOW + timedelta(days=1)
    assert two["retracted_at"] is None

    again = store(engine, NOW + timedelta(days=2)).send(retraction(1))  # retried: the first date stays
    assert again.status == "sent" and rows(engine)[0]["retracted_at"] == NOW + timedelta(days=1)


def test_a_retraction_naming_no_card_fails_for_good_and_an_unknown_card_withdraws_nothing(engine: Engine) -> None:
    unnamed = replace(retraction(1), context={})
    failed, unknown = store(engine).send_batch([unnamed, retraction(3)])
    assert failed.status == "failed" and not failed.retryable and "must name the card" in (failed.error or "")
    assert unknown.status == "sent" and rows(engine) == []


def test_an_invalid_card_fails_alone_and_stores_nothing_for_it(engine: Engine) -> None:
    bad = card_message(2, template=None)
    results = store(engine).send_batch([card_message(1), bad, card_message(3)])
    assert [r.status for r in results] == ["sent", "failed", "sent"]
    assert results[1].error and results[1].error.startswith("PermanentChannelError") and not results[1].retryable
    assert [row["customer_id"] for row in rows(engine)] == [1, 3]


def test_already_delivered_answers_from_the_table(engine: Engine) -> None:
    channel = store(engine)
    channel.send_batch([card_message(1), card_message(2), retraction(1)])
    asked = [card_message(i) for i in (1, 2, 3)] + [retraction(1), retraction(2), replace(retraction(4), context={})]
    found = channel.already_delivered(asked)
    assert found == {
        card_message(1).ledger_key: f"inapp_cards#{ledger_hash(card_message(1).ledger_key)}",
        card_message(2).ledger_key: f"inapp_cards#{ledger_hash(card_message(2).ledger_key)}",
        retraction(1).ledger_key: f"inapp_cards#{ledger_hash(card_message(1).ledger_key)}:retracted",
    }


def test_a_database_error_fails_the_batch_as_retryable_without_its_text(sqlite_engine: Engine) -> None:
    with sqlite_engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE inapp_cards")
    result = store(sqlite_engine).send(card_message(1))
    assert result.status == "failed" and result.retryable
    assert result.error == "RetryableChannelError: could not store in-app cards (OperationalError)"


# --- opening through the channel table ------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["pull://", "pull://cards", "PULL://cards/?ttl_days=2"])
def test_pull_urls_open_the_store_on_the_run_database(sqlite_engine: Engine, tmp_path: Path, url: str) -> None:
    channel = open_channel(inapp_spec(), url, ChannelResources(settings_for(sqlite_engine, tmp_path)))
    try:
        assert isinstance(channel, InAppStore) and channel.engine.url == sqlite_engine.url
        assert channel.ttl == timedelta(days=2 if "ttl_days" in url else 14)
        assert "sqlite" in repr(channel) and str(tmp_path) not in repr(channel)
    finally:
        channel.close()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("pull://db.example/cards", "write it as pull://"),
        ("pull://user:pw@cards", "write it as pull://"),
        ("pull://?ttl_days=45", "ttl_days"),
        ("pull://?table=x", "unknown option 'table'"),
    ],
)
def test_other_pull_urls_are_configuration_errors(
    sqlite_engine: Engine, tmp_path: Path, url: str, problem: str
) -> None:
    with pytest.raises(ChannelConfigError, match=problem) as caught:
        open_channel(inapp_spec(), url, ChannelResources(settings_for(sqlite_engine, tmp_path)))
    assert "OMNICAST_INAPP_URL" in str(caught.value) and "pw" not in str(caught.value)


# --- the channel contract suite ---------------------------------------------------------------------------------------


@pytest.fixture
def case(sqlite_engine: Engine, tmp_path: Path) -> Iterator[Case]:
    """The contract suite's case for ``pull://``: opened the way a run opens it, its peer the table."""
    spec = inapp_spec()
    url = "pull://"
    channel = open_channel(spec, url, ChannelResources(settings_for(sqlite_engine, tmp_path)))

    def held() -> int:
        with sqlite_engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(CARDS)).scalar_one())

    adapter = spec.adapter_for("pull")
    assert adapter is not None
    yield Case(channel, held, "inapp", adapter=adapter.load(), label="inapp-pull")
    channel.close()
