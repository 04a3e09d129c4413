"""`omnicast forget`: afterwards the person's address, names and numbers are nowhere in the database, the ledger keeps
its rows without them, and the address stays recognisable (salted hash) so it is never mailed again."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from models.consent import consent_states
from models.erasure import ErasureReport, forget, is_erased
from models.errors import InputError
from models.schema import (
    Consent,
    Customer,
    Event,
    Identity,
    InAppCard,
    Message,
    Order,
    QuarantineRow,
    Suppression,
    TriggerOccurrence,
)
from models.suppression import is_suppressed

NOW = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)
BEFORE = datetime(2026, 10, 1, tzinfo=UTC)
ADDRESS = "ann.lee+vip@example.com"
WORK = "ann.work@example.org"
PHONE = "+15035550101"
SECRETS = [ADDRESS, WORK, "annabelle", "zylstra", "5035550101", "portlandia", "97299", "dev-ann-7f3", "1987", "11-23",
           "hunter lane"]  # fmt: skip
"""Everything that points at Ann: none of it may survive (lower-cased)."""


def table(model: Any) -> Any:
    return model.__table__


def add(conn: Any, model: Any, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        conn.execute(insert(table(model)).values(**row))


def populate(engine: Engine) -> None:
    """Ann (customer 10) everywhere a person can be; Bo (customer 11) beside her, to be left alone."""
    stamp = {"created_at": BEFORE, "updated_at": BEFORE}
    with engine.begin() as conn:
        add(conn, InAppCard, [  # a card held for the app to fetch, with her name in its title
            {"id": "a" * 32, "customer_id": 10, "card": {"title": "Annabelle, your picks"}, "campaign": "weekly-picks",
             "expires_at": NOW, **stamp},
            {"id": "b" * 32, "customer_id": 11, "card": {"title": "Bo, your picks"}, "campaign": "weekly-picks",
             "expires_at": NOW, **stamp},
        ])  # fmt: skip
        add(conn, Customer, [
            {"id": 10, "email": ADDRESS, "phone": PHONE, "first_name": "Annabelle", "last_name": "Zylstra",
             "city": "Portlandia", "region": "OR", "country": "US", "zip": "97299", "birthday": date(1987, 11, 23),
             "loyalty_tier": "gold", "timezone": "America/Los_Angeles", **stamp},
            {"id": 11, "email": "bo@example.com", "first_name": "Bo", "city": "Salem", **stamp},
        ])  # fmt: skip
        add(conn, Identity, [
            {"customer_id": 10, "source": "shopify", "external_id": "5001", "email": ADDRESS, "phone": PHONE,
             "seen_at": BEFORE},
            {"customer_id": 10, "source": "crm", "external_id": "crm-77", "email": WORK, "seen_at": BEFORE},
            {"customer_id": 10, "source": "shopify_order", "external_id": ADDRESS, "email": ADDRESS, "seen_at": BEFORE},
            {"customer_id": 11, "source": "shopify", "external_id": "5002", "email": "bo@example.com",
             "seen_at": BEFORE},
        ])  # fmt: skip
        add(conn, Order, [
            {"external_id": "#1001", "customer_id": 10, "email": ADDRESS, "created_at": BEFORE, "total": 30.0},
            {"external_id": "#1002", "customer_id": None, "email": ADDRESS.upper(), "created_at": BEFORE, "total": 9.0},
            {"external_id": "#1003", "customer_id": 11, "email": "bo@example.com", "created_at": BEFORE, "total": 5.0},
        ])  # fmt: skip
        add(conn, Event, [
            {"customer_id": 10, "user_pseudo_id": "dev-ann-7f3", "event_name": "view_item", "occurred_at": BEFORE},
            {"customer_id": None, "user_pseudo_id": "dev-ann-7f3", "event_name": "page_view", "occurred_at": BEFORE},
            {"customer_id": 11, "user_pseudo_id": "dev-bo-1", "event_name": "view_item", "occurred_at": BEFORE},
        ])  # fmt: skip
        add(conn, Consent, [
            {"customer_id": 10, "channel": "email", "state": "granted", "source": "shopify", "recorded_at": BEFORE},
            {"customer_id": 10, "channel": "email:weekly-picks", "state": "denied", "source": "preference_centre",
             "recorded_at": BEFORE},
            {"customer_id": 11, "channel": "email", "state": "granted", "source": "shopify", "recorded_at": BEFORE},
        ])  # fmt: skip
        add(conn, TriggerOccurrence, [
            {"occurrence_key": "birthday:2026:10", "kind": "birthday", "customer_id": 10, "due_on": date(2026, 11, 23),
             "detected_at": BEFORE, "payload": {"birthday": "11-23"}},
        ])  # fmt: skip
        message = {"channel": "email", "campaign": "weekly-picks", "template": "weekly_picks", "attempts": 0, **stamp}
        add(conn, Message, [
            {**message, "occurrence_key": "weekly-picks:2026-W40", "customer_id": 10, "state": "sent",
             "provider_id": "abc@beanandleaf.example", "sent_at": BEFORE, "payload": None},
            {**message, "occurrence_key": "weekly-picks:2026-W49", "customer_id": 10, "state": "pending",
             "payload": {"context": {"note": f"for {ADDRESS} at Hunter Lane"}}},
            {**message, "occurrence_key": "birthday:2026:10", "customer_id": 10, "state": "failed",
             "reason": "retryable", "payload": {"context": {"trigger": {"birthday": "11-23"}}}},
            {**message, "occurrence_key": "weekly-picks:2026-W49", "customer_id": 11, "state": "pending",
             "payload": {"context": {"note": "Bo's picks"}}},
        ])  # fmt: skip
        quarantine = {"run_id": "r1", "file": "customers_export.csv", "reason": "bad", "created_at": BEFORE}
        add(conn, QuarantineRow, [
            {**quarantine, "source": "customers", "row_number": 1,
             "raw": json.dumps({"Email": "ANN.Lee+VIP@Example.com", "First Name": "Annabelle", "Last Name": "Zylstra",
                                "Address1": "1 Hunter Lane", "City": "Portlandia", "Zip": "97299"})},
            {**quarantine, "source": "crm", "row_number": 2,
             "raw": json.dumps({"email": WORK, "firstname": "Annabelle", "birthday": "1987-11-23"})},
            {**quarantine, "source": "customers", "row_number": 3,
             "raw": json.dumps({"Phone": PHONE, "First Name": "Annabelle", "Last Name": "Zylstra", "Zip": "97299"})},
            {**quarantine, "source": "customers", "row_number": 4, "raw": json.dumps({"Email": "bo@example.com"})},
        ])  # fmt: skip


def dump(engine: Engine) -> dict[str, list[tuple[str, ...]]]:
    """Every row of every table, each value as text (JSON for JSON columns)."""
    found: dict[str, list[tuple[str, ...]]] = {}
    with engine.connect() as conn:
        for tbl in SQLModel.metadata.sorted_tables:
            rows = conn.execute(select(tbl)).all()
            found[tbl.name] = sorted(
                tuple(json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else str(v) for v in row)
                for row in rows
            )
    return found


def leftovers(engine: Engine) -> list[tuple[str, str]]:
    return [
        (name, secret)
        for name, rows in dump(engine).items()
        for row in rows
        for value in row
        for secret in SECRETS
        if secret in value.lower()
    ]


def test_forget_leaves_nothing_of_the_person_anywhere(engine: Engine) -> None:
    populate(engine)
    assert leftovers(engine)  # the check sees her before

    report = forget(engine, "  Ann.Lee+VIP@Example.com ", now=NOW)

    assert leftovers(engine) == []
    assert report.found and report.customer_ids == [10]
    assert report.identities_deleted == 3
    assert report.orders_blanked == 2
    assert report.events_blanked == 2
    assert report.quarantine_deleted == 3
    assert report.triggers_deleted == 1
    assert report.cards_deleted == 1
    assert report.messages_suppressed == 2 and report.payloads_cleared == 2
    assert "erased 1 customer profile(s)" in report.summary() and ADDRESS not in report.summary()
    with engine.connect() as conn:
        ann = conn.execute(select(table(Customer)).where(table(Customer).c.id == 10)).one()._mapping
        assert ann["erased_at"] == NOW
        assert all(ann[c] is None for c in ("email", "phone", "first_name", "last_name", "city", "zip", "birthday"))
        # The ledger keeps what happened, without content.
        rows = conn.execute(
            select(table(Message).c.occurrence_key, table(Message).c.state, table(Message).c.reason,
                   table(Message).c.provider_id, table(Message).c.payload)
            .where(table(Message).c.customer_id == 10).order_by(table(Message).c.occurrence_key)
        ).all()  # fmt: skip
        assert [tuple(r) for r in rows] == [
            ("birthday:2026:10", "suppressed", "erased", None, None),
            ("weekly-picks:2026-W40", "sent", None, "abc@beanandleaf.example", None),
            ("weekly-picks:2026-W49", "suppressed", "erased", None, None),
        ]
        # Both of her addresses and her phone stay recognisable, by hash only; every channel and topic says no.
        assert is_erased(conn, ADDRESS) and is_erased(conn, WORK.upper())
        assert is_suppressed(conn, "sms", PHONE) == "erased"
        for channel in ("email", "sms", "ads", "inapp", "marketing", "email:weekly-picks"):
            assert consent_states(conn, [10], channel) == {10: "denied"}, channel
        # Bo is untouched.
        assert consent_states(conn, [11], "email") == {11: "granted"}
        assert conn.execute(select(table(Customer).c.email).where(table(Customer).c.id == 11)).scalar() == (
            "bo@example.com"
        )
        bo = conn.execute(select(table(Message).c.state, table(Message).c.payload)
                          .where(table(Message).c.customer_id == 11)).one()  # fmt: skip
        assert tuple(bo) == ("pending", {"context": {"note": "Bo's picks"}})
        assert conn.execute(select(table(QuarantineRow).c.row_number)).scalars().all() == [4]
        assert not is_erased(conn, "bo@example.com")


def test_forget_twice_changes_nothing_the_second_time(engine: Engine) -> None:
    populate(engine)
    forget(engine, ADDRESS, now=NOW)
    before = dump(engine)
    again = forget(engine, ADDRESS, now=datetime(2027, 1, 1, tzinfo=UTC))
    assert again == ErasureReport(found=False, already_erased=True)
    assert "already erased" in again.summary()
    assert dump(engine) == before


def test_an_unknown_address_is_still_listed_so_no_import_brings_it_back(engine: Engine) -> None:
    populate(engine)
    report = forget(engine, "Nobody@Example.com", now=NOW)
    assert report == ErasureReport(found=False, newly_suppressed=1)
    assert report.summary().startswith("not found")
    with engine.connect() as conn:
        assert is_erased(conn, "nobody@example.com")
        (row,) = conn.execute(select(table(Suppression))).all()
        assert row.reason == "erased" and row.source == "forget" and row.customer_id is None
        assert "nobody" not in " ".join(map(str, row)).lower()


def test_an_address_that_bounced_before_is_recorded_as_erased(engine: Engine) -> None:
    from models.suppression import suppress

    populate(engine)
    with engine.begin() as conn:
        suppress(conn, "email", ADDRESS, "hard_bounce", "postmark", detail="HardBounce")
    forget(engine, ADDRESS, now=NOW)
    with engine.connect() as conn:
        assert is_erased(conn, ADDRESS)
        assert conn.execute(select(table(Suppression).c.detail).where(table(Suppression).c.channel == "email")
                            .order_by(table(Suppression).c.id)).scalars().all() == [None, None]  # fmt: skip


@pytest.mark.parametrize("bad", ["", "   ", "no-at-sign", "@example.com", "ann@", "a b@example.com"])
def test_something_that_is_not_an_address_is_refused(sqlite_engine: Engine, bad: str) -> None:
    with pytest.raises(InputError, match="not an email address") as caught:
        forget(sqlite_engine, bad)
    assert repr(bad) not in str(caught.value)
