"""The consent gate's rule (newest statement wins, denial wins ties, nothing means no) and unsubscribes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.engine import Engine

from models.consent import (
    CONSENTS,
    consent_states,
    consent_states_on,
    latest_state,
    record_unsubscribe,
    suppression_reason,
    topic_channel,
)
from tests.channels.conftest import add_customers, grant

T = datetime(2026, 6, 1, tzinfo=UTC)

statement = st.tuples(
    st.sampled_from(["granted", "denied"]),
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)),
)


def test_no_statement_means_no_consent() -> None:
    assert latest_state([]) is None
    assert suppression_reason(None) == "no_consent"


def test_newest_statement_wins() -> None:
    assert latest_state([("denied", T), ("granted", T + timedelta(seconds=1))]) == "granted"
    assert latest_state([("granted", T), ("denied", T + timedelta(seconds=1))]) == "denied"


def test_denial_wins_a_tie() -> None:
    assert latest_state([("granted", T), ("denied", T), ("granted", T)]) == "denied"


@given(st.lists(statement, min_size=1, max_size=8))
def test_latest_state_is_order_independent_and_follows_the_newest(statements: list[tuple[str, datetime]]) -> None:
    newest = max(at for _, at in statements)
    states_at_newest = {state for state, at in statements if at == newest}
    expected = "denied" if "denied" in states_at_newest else "granted"
    assert latest_state(statements) == expected
    assert latest_state(list(reversed(statements))) == expected


def test_consent_states_reads_a_whole_batch_in_one_query(engine: Engine) -> None:
    add_customers(engine, [1, 2, 3, 4], consent=None)
    with engine.begin() as conn:
        grant(conn, [1, 2], "granted", "email")
        grant(conn, [2], "denied", "email", source="crm")  # same instant as shopify's grant
        grant(conn, [3], "granted", "sms")
        states = consent_states(conn, [1, 2, 3, 4], "email")
    assert states == {1: "granted", 2: "denied"}


def test_unsubscribe_beats_an_older_grant_that_keeps_being_re_exported(engine: Engine) -> None:
    add_customers(engine, [1])  # shopify granted LONG_AGO
    record_unsubscribe(engine, 1, "email")
    with engine.begin() as conn:
        assert consent_states(conn, [1], "email") == {1: "denied"}


def test_record_unsubscribe_is_idempotent_and_moves_the_date_forward(engine: Engine) -> None:
    add_customers(engine, [1])
    record_unsubscribe(engine, 1, "email", at=T)
    record_unsubscribe(engine, 1, "email", at=T + timedelta(days=1))
    with engine.connect() as conn:
        rows = conn.execute(select(CONSENTS).where(CONSENTS.c.source == "unsubscribe")).mappings().all()
    assert len(rows) == 1
    assert rows[0]["state"] == "denied" and rows[0]["recorded_at"] == T + timedelta(days=1)


def test_erasure_is_a_denial_from_its_own_source(engine: Engine) -> None:
    add_customers(engine, [1], channel="ads")
    record_unsubscribe(engine, 1, "ads", source="erasure")
    with engine.begin() as conn:
        assert consent_states(conn, [1], "ads") == {1: "denied"}
        sources = {row.source for row in conn.execute(select(CONSENTS.c.source))}
    assert sources == {"shopify", "erasure"}


def test_topic_statements_live_on_their_own_consent_channel(engine: Engine) -> None:
    add_customers(engine, [1, 2, 3])
    with engine.begin() as conn:
        grant(conn, [1, 2], "denied", topic_channel("email", "weekly-picks"), source="preference_centre")
        grant(conn, [3], "denied", "marketing", source="crm")
        states = consent_states_on(conn, [1, 2, 3], ["email", "marketing", "email:weekly-picks"])
        assert consent_states_on(conn, [], ["email"]) == {} and consent_states_on(conn, [1], []) == {}
    assert states == {
        (1, "email"): "granted", (2, "email"): "granted", (3, "email"): "granted",
        (1, "email:weekly-picks"): "denied", (2, "email:weekly-picks"): "denied", (3, "marketing"): "denied",
    }  # fmt: skip


def test_an_opt_out_of_all_wins_over_the_topic_and_the_topic_over_marketing_status() -> None:
    assert suppression_reason("granted", None, "denied") == "opted_out_topic"
    assert suppression_reason("denied", None, "granted") == "opted_out"
    assert suppression_reason("granted", "denied", "denied") == "opted_out_topic"
    assert suppression_reason("granted", "granted", "granted") is None
    assert suppression_reason("granted", None, None) is None  # no topic statement: the channel's consent decides
    assert suppression_reason(None, None, "granted") == "no_consent"  # a topic grant is no consent to the channel
