"""Identity resolution: one golden profile per person, and customer ids that never move."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, event, func, insert, select

from models.identity import (
    ANALYTICS,
    CRM,
    GUEST,
    SHOPIFY,
    Touched,
    golden_fields,
    records_frame,
    resolve,
    stored_identities,
)
from models.schema import Customer, Identity
from models.sync import sync_store

DATA = Path(__file__).resolve().parents[1] / "data" / "sources"
NOW = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
NO_STORED = pd.DataFrame(columns=["source", "external_id", "email", "phone", "customer_id"])


def records(source: str, *rows: dict[str, object]) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows))
    return records_frame(source, frame, frame.get("recency"))


def people(*parts: pd.DataFrame, stored: pd.DataFrame = NO_STORED) -> dict[tuple[str, str], int]:
    resolution = resolve(pd.concat(parts, ignore_index=True), stored)
    return {(r.source, r.external_id): r.customer_id for r in resolution.records.itertuples()}


def customer_of(engine: Engine, source: str, external_id: str) -> int:
    with engine.connect() as conn:
        query = select(Identity.customer_id).where(Identity.source == source, Identity.external_id == external_id)
        return conn.execute(query).scalar_one()


def test_duplicate_customers_differing_in_case_become_one_profile(engine: Engine) -> None:
    report = sync_store(engine, DATA / "store", None, None, run_id="run-1", now=NOW)
    assert customer_of(engine, SHOPIFY, "7012345678901") == customer_of(engine, SHOPIFY, "7012345678903")
    with engine.connect() as conn:
        customers = conn.execute(select(func.count()).select_from(Customer)).scalar_one()
        emails = conn.execute(select(Customer.email).where(Customer.email.like("jane%"))).scalars().all()
    assert emails == ["jane.doe@example.com"]
    assert customers == report.profiles == 5  # 5 customer rows, one a duplicate, plus one guest checkout


def test_guest_checkout_email_becomes_a_profile() -> None:
    ids = people(
        records(SHOPIFY, {"external_id": "1", "email": "ann@example.com"}),
        records(GUEST, {"external_id": "guest@example.net", "email": "guest@example.net"}),
    )
    assert ids[(GUEST, "guest@example.net")] != ids[(SHOPIFY, "1")]


def test_analytics_user_joins_the_shopify_customer_with_that_id_and_strangers_are_dropped() -> None:
    ids = people(
        records(SHOPIFY, {"external_id": "7012345678901", "email": "ann@example.com"}),
        records(ANALYTICS, {"external_id": "7012345678901"}, {"external_id": "999"}),
    )
    assert ids[(ANALYTICS, "7012345678901")] == ids[(SHOPIFY, "7012345678901")]
    assert (ANALYTICS, "999") not in ids


def test_crm_contact_prefers_email_over_phone_and_skips_ambiguous_phones() -> None:
    ids = people(
        records(SHOPIFY, {"external_id": "1", "email": "a@example.com", "phone": "+14155550100"},
                {"external_id": "2", "email": "b@example.com", "phone": "+14155550100"},  # shared household phone
                {"external_id": "3", "email": "c@example.com", "phone": "+14155550111"}),
        records(CRM, {"external_id": "c1", "email": "b@example.com", "phone": "+14155550111"},
                {"external_id": "c2", "email": "x@example.com", "phone": "+14155550100"},
                {"external_id": "c3", "email": "y@example.com", "phone": "+14155550111"}),
    )  # fmt: skip
    assert ids[(CRM, "c1")] == ids[(SHOPIFY, "2")]  # email first, although the phone is customer 3's
    assert ids[(CRM, "c2")] not in {ids[(SHOPIFY, "1")], ids[(SHOPIFY, "2")]}  # which of the two? neither
    assert ids[(CRM, "c3")] == ids[(SHOPIFY, "3")]


def test_a_later_guest_order_with_a_crm_email_joins_the_person_that_contact_belongs_to() -> None:
    stored = pd.DataFrame(
        [
            {"source": SHOPIFY, "external_id": "1", "email": "erika@example.de", "phone": "+49301234567",
             "customer_id": 5},
            {"source": CRM, "external_id": "c1", "email": "erika.privat@web.example", "phone": "+49301234567",
             "customer_id": 5},  # joined Erika by phone in an earlier sync
        ]
    )  # fmt: skip
    ids = people(records(GUEST, {"external_id": "erika.privat@web.example", "email": "erika.privat@web.example"}),
                 stored=stored)  # fmt: skip
    assert ids[(GUEST, "erika.privat@web.example")] == 5


def test_new_record_joins_a_stored_profile_missing_from_todays_files() -> None:
    stored = pd.DataFrame(
        [{"source": SHOPIFY, "external_id": "1", "email": "a@example.com", "phone": None, "customer_id": 41}]
    )
    ids = people(records(CRM, {"external_id": "c9", "email": "a@example.com"}), stored=stored)
    assert ids[(CRM, "c9")] == 41


def test_stored_records_keep_their_profile_and_newcomers_join_the_oldest() -> None:
    stored = pd.DataFrame(
        [
            {"source": SHOPIFY, "external_id": "1", "email": "old@example.com", "phone": None, "customer_id": 7},
            {"source": CRM, "external_id": "c1", "email": "same@example.com", "phone": None, "customer_id": 3},
        ]
    )
    ids = people(
        records(SHOPIFY, {"external_id": "1", "email": "same@example.com"}),  # changed email, now like c1's
        records(GUEST, {"external_id": "same@example.com", "email": "same@example.com"}),
        stored=stored,
    )
    assert ids[(SHOPIFY, "1")] == 7  # never re-pointed: the send ledger references it
    assert ids[(GUEST, "same@example.com")] == 3


def test_shopify_wins_contact_fields_crm_fills_birthday_and_non_empty_beats_empty() -> None:
    resolution = resolve(
        pd.concat(
            [
                records(SHOPIFY, {"external_id": "1", "email": "a@example.com", "first_name": "Ann", "city": None,
                                  "last_name": None}),
                records(CRM, {"external_id": "c1", "email": "a@example.com", "first_name": "Annie",
                              "last_name": "Lee", "city": "Boston", "country": "US", "birthday": date(1990, 1, 2),
                              "loyalty_tier": "Gold"}),
            ],
            ignore_index=True,
        ),
        NO_STORED,
    )  # fmt: skip
    golden = resolution.golden.iloc[0]
    assert (golden["first_name"], golden["last_name"]) == ("Ann", "Lee")
    assert (golden["city"], golden["country"]) == ("Boston", "US")  # Shopify has no address: CRM's block
    assert (golden["birthday"], golden["loyalty_tier"]) == (date(1990, 1, 2), "Gold")


def test_newest_crm_contact_wins_among_merged_contacts() -> None:
    merged = records(
        CRM,
        {"external_id": "c1", "email": "a@example.com", "loyalty_tier": "Bronze", "recency": 100.0},
        {"external_id": "c2", "email": "a@example.com", "loyalty_tier": "Gold", "recency": 200.0},
    )
    golden = golden_fields(merged.assign(customer_id=1))
    assert golden.loc[1, "loyalty_tier"] == "Gold"


def test_customer_ids_stay_when_a_customer_changes_email(engine: Engine, tmp_path: Path) -> None:
    store = shutil.copytree(DATA / "store", tmp_path / "store")
    sync_store(engine, store, DATA / "hubspot_contacts.csv", None, run_id="run-1", now=NOW)
    before = customer_of(engine, SHOPIFY, "7012345678902")
    customers = store / "customers_export.csv"
    customers.write_text(customers.read_text().replace("john@example.com", "john.smith@example.com"))
    sync_store(engine, store, DATA / "hubspot_contacts.csv", None, run_id="run-2", now=NOW)
    assert customer_of(engine, SHOPIFY, "7012345678902") == before
    with engine.connect() as conn:
        email = conn.execute(select(Customer.email).where(Customer.id == before)).scalar_one()
    assert email == "john.smith@example.com"


def test_a_thinner_export_does_not_erase_what_the_profile_knows(engine: Engine) -> None:
    sync_store(engine, DATA / "store", DATA / "hubspot_contacts.csv", None, run_id="run-1", now=NOW)
    sync_store(engine, DATA / "store", None, None, run_id="run-2", now=NOW)  # no CRM file today
    with engine.connect() as conn:
        jane = conn.execute(select(Customer).where(Customer.id == customer_of(engine, CRM, "501"))).one()
    assert (jane.birthday, jane.loyalty_tier) == (date(1990, 2, 28), "Gold")


# --- order independence (property) ---------------------------------------------------------------------------------

_EMAILS = [f"p{n}@example.com" for n in range(6)]
_PHONES = [f"+1415555010{n}" for n in range(4)]
_record = st.fixed_dictionaries({
    "source": st.sampled_from([SHOPIFY, CRM, GUEST]),
    "key": st.integers(0, 7),
    "email": st.one_of(st.none(), st.sampled_from(_EMAILS)),
    "phone": st.one_of(st.none(), st.sampled_from(_PHONES)),
})  # fmt: skip


def _frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    parts = []
    for row in rows:
        external = str(row["email"]) if row["source"] == GUEST else f"{row['source']}-{row['key']}"
        if row["source"] == GUEST and row["email"] is None:
            continue  # a guest is known only by an order's email
        parts.append(records(str(row["source"]), {"external_id": external, "email": row["email"],
                                                  "phone": row["phone"]}))  # fmt: skip
    if not parts:
        return records(SHOPIFY)
    return pd.concat(parts, ignore_index=True).drop_duplicates(["source", "external_id"], keep="first")


def _partition(mapping: dict[tuple[str, str], int]) -> set[frozenset[tuple[str, str]]]:
    groups: dict[int, set[tuple[str, str]]] = {}
    for record, customer in mapping.items():
        groups.setdefault(customer, set()).add(record)
    return {frozenset(group) for group in groups.values()}


@hyp_settings(max_examples=30, deadline=None)
@given(st.lists(_record, max_size=14), st.randoms(use_true_random=False))
def test_who_is_who_does_not_depend_on_the_order_records_arrive_in(rows: list[dict[str, object]], rng: Any) -> None:
    batch = _frame(rows)
    shuffled = batch.sample(frac=1.0, random_state=rng.randint(0, 2**31)).reset_index(drop=True)
    assert _partition(people(batch)) == _partition(people(shuffled))


@hyp_settings(max_examples=30, deadline=None)
@given(st.lists(_record, max_size=14))
def test_store_records_then_crm_records_in_two_syncs_group_people_as_one_sync_does(
    rows: list[dict[str, object]],
) -> None:
    """An incremental day brings the store's records first and the CRM's later: the stored identities of the first
    sync take part in matching the second, so the people come out the same."""
    batch = _frame(rows)
    store, crm = batch[batch["source"] != CRM], batch[batch["source"] == CRM]
    first = resolve(store.reset_index(drop=True), NO_STORED).records
    first = first.assign(customer_id=1000 - first["customer_id"])  # saved: placeholders become database ids
    stored = first[["source", "external_id", "email", "phone", "customer_id"]].astype(object)
    second = people(crm.reset_index(drop=True), stored=stored) if not crm.empty else {}
    together = {**{(r.source, r.external_id): r.customer_id for r in first.itertuples()}, **second}
    assert _partition(together) == _partition(people(batch))


# --- an incremental sync reads only the stored identities its records touch (property) -----------------------------

def _any_record(first_key: int, last_key: int) -> st.SearchStrategy[dict[str, object]]:
    return st.fixed_dictionaries({
        "source": st.sampled_from([SHOPIFY, CRM, GUEST, ANALYTICS]),
        "key": st.integers(first_key, last_key),
        "email": st.one_of(st.none(), st.sampled_from(_EMAILS)),
        "phone": st.one_of(st.none(), st.sampled_from(_PHONES)),
    })  # fmt: skip


_anything = _any_record(0, 7)
_newer = _any_record(4, 11)
"""Today: half the records are new to the store (ids 8-11), so they match stored people by email or phone."""


def _with_analytics(rows: list[dict[str, object]]) -> pd.DataFrame:
    """Like :func:`_frame`, an analytics user being a Shopify customer id (no email, no phone)."""
    people_rows = [row for row in rows if row["source"] != ANALYTICS]
    users = [records(ANALYTICS, {"external_id": f"{SHOPIFY}-{row['key']}"}) for row in rows
             if row["source"] == ANALYTICS]  # fmt: skip
    frame = pd.concat([_frame(people_rows), *users], ignore_index=True)
    return frame.drop_duplicates(["source", "external_id"], keep="first").reset_index(drop=True)


def _touched_by(batch: pd.DataFrame) -> Touched:
    def values(name: str) -> frozenset[str]:
        return frozenset(str(value) for value in batch[name].dropna())

    return Touched(values("external_id"), values("email"), values("phone"))


@hyp_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_anything, max_size=14), st.lists(_newer, max_size=8))
def test_resolving_against_the_touched_identities_gives_what_resolving_against_all_gives(
    sqlite_engine: Engine, history: list[dict[str, object]], today: list[dict[str, object]]
) -> None:
    """Yesterday's people are stored; today's records are resolved once against every stored identity and once
    against only those :func:`stored_identities` reads for them: same profiles, golden fields and fill-only set."""
    with sqlite_engine.begin() as conn:
        conn.execute(delete(Identity.__table__))  # type: ignore[attr-defined]
        conn.execute(delete(Customer.__table__))  # type: ignore[attr-defined]
        earlier = resolve(_with_analytics(history), NO_STORED).records
        if not earlier.empty:
            ids = 100 - earlier["customer_id"]  # placeholders -1, -2 … become database ids 101, 102 …
            conn.execute(insert(Customer.__table__), [{"id": int(cid)} for cid in sorted(set(ids))])  # type: ignore[attr-defined]
            rows = earlier.assign(customer_id=ids)[["source", "external_id", "email", "phone", "customer_id"]]
            conn.execute(insert(Identity.__table__), [{**row, "customer_id": int(row["customer_id"])}  # type: ignore[attr-defined]
                                                       for row in rows.astype(object).where(rows.notna(), None)
                                                       .to_dict("records")])  # fmt: skip
        batch = _with_analytics(today)
        everyone = stored_identities(conn)
        touched = stored_identities(conn, _touched_by(batch))
    assert len(touched) <= len(everyone)
    full, targeted = resolve(batch.copy(), everyone), resolve(batch.copy(), touched)
    pd.testing.assert_frame_equal(full.records, targeted.records)
    pd.testing.assert_frame_equal(full.golden, targeted.golden)
    assert full.fill_only == targeted.fill_only


def test_a_first_load_reads_every_identity_once(sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """With as many keys as reading the whole table costs, the whole table is read (one query, not one per kind of
    key and round): the same identities as reading all of them."""
    import models.identity as identity

    with sqlite_engine.begin() as conn:
        conn.execute(insert(Customer.__table__), [{"id": 1}, {"id": 2}])  # type: ignore[attr-defined]
        conn.execute(insert(Identity.__table__), [  # type: ignore[attr-defined]
            {"source": SHOPIFY, "external_id": "1", "email": "a@example.com", "phone": None, "customer_id": 1},
            {"source": CRM, "external_id": "c", "email": "b@example.com", "phone": None, "customer_id": 2},
        ])  # fmt: skip
    monkeypatch.setattr(identity, "READ_ALL_FROM", 2)
    statements: list[str] = []
    event.listen(sqlite_engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    with sqlite_engine.connect() as conn:
        touched = stored_identities(conn, Touched(frozenset({"1"}), frozenset({"a@example.com"}), frozenset()))
        everyone = stored_identities(conn)
    assert sorted(touched["external_id"]) == sorted(everyone["external_id"]) == ["1", "c"]
    assert len([sql for sql in statements if "FROM identities" in sql]) == 2
