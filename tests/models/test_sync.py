"""The sync stage end to end: what lands in the database, what a re-sync does, and that nothing is lost."""

from __future__ import annotations

import csv
import shutil
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, inspect, select, text

from models import bulk
from models.consent import consent_states
from models.db import make_engine, upgrade
from models.schema import Consent, Customer, Event, Identity, Order, OrderLine, Product, QuarantineRow, SourceLoad
from models.sync import UNDATED_GRANT, SourceFileError, sync_store

DATA = Path(__file__).resolve().parents[1] / "data" / "sources"
BAD = Path(__file__).resolve().parents[1] / "data" / "bad"
CRM = DATA / "hubspot_contacts.csv"
EVENTS = DATA / "ga4_events.jsonl"
T1 = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)  # the fixture's data ends 2026-11-24
T2 = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
T3 = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)
DATA_TABLES = ["customers", "identities", "consents", "products", "orders", "order_lines", "events"]


def store_copy(tmp_path: Path) -> Path:
    target = tmp_path / "store"
    shutil.copytree(DATA / "store", target)
    return target


def edit(path: Path, old: str, new: str) -> None:
    content = path.read_text(encoding="utf-8")
    assert old in content, f"{old!r} not in {path.name}"
    path.write_text(content.replace(old, new), encoding="utf-8")


def sync(engine: Engine, store: Path = DATA / "store", crm: Path | None = CRM, events: Path | None = EVENTS,
         run_id: str = "run-1", now: datetime = T1):  # type: ignore[no-untyped-def]  # fmt: skip
    return sync_store(engine, store, crm, events, run_id=run_id, now=now)


def customer_of(engine: Engine, source: str, external_id: str) -> int:
    with engine.connect() as conn:
        query = select(Identity.customer_id).where(Identity.source == source, Identity.external_id == external_id)
        return conn.execute(query).scalar_one()


def consents_of(engine: Engine, customer_id: int, channel: str) -> dict[str, tuple[str, datetime]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(Consent.source, Consent.state, Consent.recorded_at).where(
                Consent.customer_id == customer_id, Consent.channel == channel
            )
        ).all()
    return {row.source: (row.state, row.recorded_at) for row in rows}


def snapshot(engine: Engine) -> dict[str, list[tuple]]:
    with engine.connect() as conn:
        return {table: [tuple(row) for row in conn.execute(text(f"SELECT * FROM {table} ORDER BY id"))]
                for table in DATA_TABLES}  # fmt: skip


def count(engine: Engine, model: type) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar_one()


# --- reconciliation -----------------------------------------------------------------------------------


def test_sync_reconciles_every_source_and_records_one_source_load_each(engine: Engine) -> None:
    report = sync(engine)
    assert [c.source for c in report.sources] == ["products", "customers", "orders", "crm", "analytics"]
    assert report.reconciles and report.quarantined == 0
    assert (report.profiles, report.new_profiles, report.orders, report.order_lines, report.events) == (7, 7, 4, 5, 6)
    with engine.connect() as conn:
        loads = conn.execute(select(SourceLoad).where(SourceLoad.run_id == "run-1")).all()
    assert len(loads) == 5
    for stored in loads:
        assert stored.rows_read == stored.rows_loaded + stored.rows_quarantined + stored.duplicates_skipped


def test_quarantined_rows_are_stored_with_run_file_row_and_reason(engine: Engine, tmp_path: Path) -> None:
    store = store_copy(tmp_path)
    shutil.copy(BAD / "orders_dirty.csv", store / "orders_export.csv")
    report = sync(engine, store, None, None, run_id="dirty-run")
    orders = next(c for c in report.sources if c.source == "orders")
    assert (orders.rows_read, orders.rows_loaded, orders.rows_quarantined, orders.duplicates_skipped) == (10, 3, 6, 1)
    with engine.connect() as conn:
        rows = conn.execute(select(QuarantineRow).order_by(QuarantineRow.row_number)).all()
    assert [(q.run_id, q.source, q.file, q.row_number) for q in rows][:2] == [
        ("dirty-run", "orders", "orders_export.csv", 3),
        ("dirty-run", "orders", "orders_export.csv", 4),
    ]
    assert rows[0].reason == "unknown SKU 'BEAN-GONE-404'" and rows[0].column == "Lineitem sku"
    assert count(engine, OrderLine) == orders.rows_loaded


def test_source_file_error_stops_the_sync_before_anything_is_written(engine: Engine, tmp_path: Path) -> None:
    store = store_copy(tmp_path)
    shutil.copy(BAD / "orders_export_without_sku.csv", store / "orders_export.csv")
    with pytest.raises(SourceFileError, match="orders_export.csv: missing column 'Lineitem sku'"):
        sync(engine, store)
    assert count(engine, Customer) == count(engine, Product) == count(engine, SourceLoad) == 0


def test_missing_store_file_lists_what_is_missing(engine: Engine, tmp_path: Path) -> None:
    store = store_copy(tmp_path)
    (store / "customers_export.csv").unlink()
    with pytest.raises(SourceFileError, match=r"customers_export.csv \(looked at .*\)"):
        sync(engine, store)


def test_cells_set_aside_are_counted_apart_from_quarantined_rows(engine: Engine) -> None:
    report = sync(engine)  # CRM contact 504 has an invalid email: loaded by its phone, the email set aside
    crm = next(c for c in report.sources if c.source == "crm")
    assert (crm.rows_quarantined, crm.fields_quarantined, crm.rows_loaded) == (0, 1, 5) and crm.reconciles
    assert report.as_dict()["fields_quarantined"] == 1 and report.as_dict()["sources"][3]["fields_quarantined"] == 1
    with engine.connect() as conn:
        stored = conn.execute(select(SourceLoad).where(SourceLoad.source == "crm")).one()
        cell = conn.execute(select(QuarantineRow)).one()
    assert (stored.rows_quarantined, stored.fields_quarantined) == (0, 1)
    assert (cell.scope, cell.row_number, cell.column) == ("field", 4, "Email")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"store": "customers_export.csv"}, r"^OMNICAST_STORE_URL \(--store\) is a file \("),
        ({"store": "nowhere"}, r"^OMNICAST_STORE_URL \(--store\): nothing at .*nowhere — it must be the folder"),
        ({"crm": "."}, r"^OMNICAST_CRM_URL \(--crm\) points at a directory .* HubSpot → Contacts → Export"),
        ({"events": "gone.jsonl"}, r"^OMNICAST_ANALYTICS_URL \(--analytics\) points at nothing .* bq extract"),
    ],
)
def test_a_source_setting_pointing_at_the_wrong_thing_names_itself(
    engine: Engine, tmp_path: Path, change: dict[str, str], expected: str
) -> None:
    store = store_copy(tmp_path)
    paths = {"store": store, "crm": CRM, "events": EVENTS}
    for name, value in change.items():
        paths[name] = store / value if name == "store" and value != "nowhere" else tmp_path / value
    with pytest.raises(SourceFileError, match=expected):
        sync(engine, paths["store"], paths["crm"], paths["events"])


# --- re-sync ------------------------------------------------------------------------------------------


def test_resync_changes_nothing(engine: Engine) -> None:
    sync(engine, run_id="run-1", now=T1)
    before = snapshot(engine)
    report = sync(engine, run_id="run-2", now=T2)
    assert report.new_profiles == 0
    assert snapshot(engine) == before


def test_products_are_upserted_by_sku_and_keep_their_ids(engine: Engine, tmp_path: Path) -> None:
    store = store_copy(tmp_path)
    sync(engine, store, None, None)
    with engine.connect() as conn:
        before = dict(conn.execute(select(Product.sku, Product.id)).all())
    edit(store / "products_export.csv", "BEAN-ETH-001,250,40,14.50", "BEAN-ETH-001,250,40,15.25")
    sync(engine, store, None, None, run_id="run-2", now=T2)
    with engine.connect() as conn:
        after = dict(conn.execute(select(Product.sku, Product.id)).all())
        price = conn.execute(select(Product.price).where(Product.sku == "BEAN-ETH-001")).scalar_one()
    assert after == before and price == 15.25


def test_big_loads_rebuild_the_indexes_they_drop(sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bulk, "REBUILD_INDEXES_FROM", 1)  # treat every insert as a big one
    before = {table: inspect(sqlite_engine).get_indexes(table) for table in ("events", "order_lines")}
    sync(sqlite_engine)
    sync(sqlite_engine, run_id="run-2", now=T2)
    assert {table: inspect(sqlite_engine).get_indexes(table) for table in before} == before
    assert count(sqlite_engine, Event) == 6


def test_order_ids_survive_a_resync_with_a_new_order(engine: Engine, tmp_path: Path) -> None:
    store = store_copy(tmp_path)
    sync(engine, store, None, None)
    with engine.connect() as conn:
        before = dict(conn.execute(select(Order.external_id, Order.id)).all())
    orders = store / "orders_export.csv"
    last = orders.read_text(encoding="utf-8").splitlines()[-1]
    with orders.open("a", encoding="utf-8") as handle:
        handle.write(last.replace("#1004", "#1005").replace("2026-11-15 08:05:30", "2026-11-24 10:00:00") + "\n")
    sync(engine, store, None, None, run_id="run-2", now=T2)
    with engine.connect() as conn:
        after = dict(conn.execute(select(Order.external_id, Order.id)).all())
    assert {name: after[name] for name in before} == before
    assert after["#1005"] not in before.values()
    assert count(engine, OrderLine) == 6


# --- orders, events -----------------------------------------------------------------------------------


def test_orders_link_to_customers_by_normalized_email(engine: Engine) -> None:
    sync(engine)
    jane = customer_of(engine, "shopify", "7012345678901")
    with engine.connect() as conn:
        owners = dict(conn.execute(select(Order.external_id, Order.customer_id)).all())
    assert owners["#1001"] == owners["#1004"] == jane  # #1004 was placed as JANE.DOE@example.com
    assert owners["#1002"] == customer_of(engine, "shopify_order", "guest@example.net")


def test_anonymous_browsing_belongs_to_the_customer_once_seen_logged_in(engine: Engine) -> None:
    sync(engine)
    jane = customer_of(engine, "shopify", "7012345678901")
    with engine.connect() as conn:
        by_device = dict(conn.execute(select(Event.user_pseudo_id, Event.customer_id).distinct()).all())
    assert by_device["1111111111.1700000000"] == jane
    assert by_device["2222222222.1700000000"] is None  # never logged in
    assert customer_of(engine, "analytics", "7012345678901") == jane


# --- consents -----------------------------------------------------------------------------------------


def test_consents_are_recorded_per_channel_and_source(engine: Engine) -> None:
    sync(engine, now=T1)
    jane = customer_of(engine, "shopify", "7012345678901")
    assert consents_of(engine, jane, "email") == {
        "shopify": ("granted", UNDATED_GRANT),  # Shopify's export carries no date
        "crm": ("granted", datetime(2026, 11, 1, 10, 0, tzinfo=UTC)),
    }
    assert consents_of(engine, jane, "ads")["crm"][0] == "granted"
    assert consents_of(engine, jane, "sms")["shopify"][0] == "granted"
    guest = customer_of(engine, "shopify_order", "guest@example.net")
    assert consents_of(engine, guest, "email")["shopify_order"] == ("granted", datetime(2026, 10, 20, 17, 40, 12,
                                                                                       tzinfo=UTC))  # fmt: skip


def test_unsubscribe_from_crm_beats_older_shopify_grant(engine: Engine, tmp_path: Path) -> None:
    crm = tmp_path / "hubspot_contacts.csv"
    shutil.copy(CRM, crm)
    edit(crm, "Gold,Marketing contact,Subscribed,true,true", "Gold,Marketing contact,,true,true")
    sync(engine, crm=crm, now=T1)  # Shopify says yes; the CRM says nothing about email yet
    edit(crm, "Gold,Marketing contact,,true,true", "Gold,Marketing contact,Unsubscribed,true,true")
    edit(crm, "2025-03-01 10:00,2026-11-01 10:00", "2025-03-01 10:00,2026-11-21 18:30")
    sync(engine, crm=crm, run_id="run-2", now=T3)  # the daily export still says yes in Shopify
    jane = customer_of(engine, "shopify", "7012345678901")
    statements = consents_of(engine, jane, "email")
    assert statements["shopify"] == ("granted", UNDATED_GRANT)  # undated, unchanged: its date did not move to T3
    assert statements["crm"] == ("denied", datetime(2026, 11, 21, 18, 30, tzinfo=UTC))
    latest = max(statements.values(), key=lambda statement: statement[1])
    assert latest[0] == "denied"


def test_undated_shopify_grant_does_not_beat_an_older_dated_crm_unsubscribe(engine: Engine, tmp_path: Path) -> None:
    crm = tmp_path / "hubspot_contacts.csv"
    shutil.copy(CRM, crm)
    edit(crm, "Gold,Marketing contact,Subscribed,true,true", "Gold,Marketing contact,Unsubscribed,true,true")
    sync(engine, crm=crm, now=T1)  # first sync ever: Shopify (no date) says yes, the CRM said no on 2026-11-01
    jane = customer_of(engine, "shopify", "7012345678901")
    with engine.connect() as conn:
        assert consent_states(conn, [jane], "email") == {jane: "denied"}


def test_shopify_resubscribe_seen_between_syncs_beats_an_older_crm_unsubscribe(engine: Engine, tmp_path: Path) -> None:
    store, crm = store_copy(tmp_path), tmp_path / "hubspot_contacts.csv"
    shutil.copy(CRM, crm)
    edit(crm, "Gold,Marketing contact,Subscribed,true,true", "Gold,Marketing contact,Unsubscribed,true,true")
    edit(store / "customers_export.csv", " Jane.Doe@Example.com ,yes", " Jane.Doe@Example.com ,no")
    sync(engine, store, crm, None, now=T1)
    edit(store / "customers_export.csv", " Jane.Doe@Example.com ,no", " Jane.Doe@Example.com ,yes")
    sync(engine, store, crm, None, run_id="run-2", now=T2)  # she opted in again at checkout, after the CRM no
    jane = customer_of(engine, "shopify", "7012345678901")
    with engine.connect() as conn:
        assert consent_states(conn, [jane], "email") == {jane: "granted"}


def test_consent_date_moves_only_when_the_state_changes(engine: Engine, tmp_path: Path) -> None:
    store = store_copy(tmp_path)
    sync(engine, store, None, None, now=T1)
    john = customer_of(engine, "shopify", "7012345678902")
    sync(engine, store, None, None, run_id="run-2", now=T2)
    assert consents_of(engine, john, "email")["shopify"] == ("denied", T1)
    edit(store / "customers_export.csv", "john@example.com,no", "john@example.com,yes")
    sync(engine, store, None, None, run_id="run-3", now=T3)
    assert consents_of(engine, john, "email")["shopify"] == ("granted", T3)


def test_most_restrictive_statement_wins_when_duplicates_merge(engine: Engine, tmp_path: Path) -> None:
    store = store_copy(tmp_path)
    edit(store / "customers_export.csv", " Jane.Doe@Example.com ,yes", " Jane.Doe@Example.com ,no")
    sync(engine, store, None, None)
    jane = customer_of(engine, "shopify", "7012345678901")
    assert customer_of(engine, "shopify", "7012345678903") == jane
    assert consents_of(engine, jane, "email") == {"shopify": ("denied", T1)}


def test_marketing_contact_status_becomes_a_marketing_statement(engine: Engine, tmp_path: Path) -> None:
    crm = tmp_path / "hubspot_contacts.csv"
    shutil.copy(CRM, crm)
    edit(crm, "Erika,Mustermann,erika.privat@web.example,030 1234567,1985-07-14,Silver,Marketing contact,",
         "Erika,Mustermann,erika.privat@web.example,030 1234567,1985-07-14,Silver,Non-marketing contact,")  # fmt: skip
    sync(engine, crm=crm, now=T1)
    jane, erika = customer_of(engine, "crm", "501"), customer_of(engine, "crm", "502")
    assert consents_of(engine, jane, "marketing") == {"crm": ("granted", datetime(2026, 11, 1, 10, 0, tzinfo=UTC))}
    assert consents_of(engine, erika, "marketing") == {"crm": ("denied", datetime(2026, 11, 10, 16, 45, tzinfo=UTC))}


def test_unknown_email_keeps_the_stored_one(engine: Engine, tmp_path: Path) -> None:
    store = store_copy(tmp_path)
    sync(engine, store, CRM, None, now=T1)
    edit(store / "customers_export.csv", "john@example.com,no", "john@@example.com,no")
    report = sync(engine, store, CRM, None, run_id="run-2", now=T2)
    john = customer_of(engine, "shopify", "7012345678902")
    with engine.connect() as conn:
        stored = conn.execute(select(Identity.email).where(Identity.external_id == "7012345678902")).scalar_one()
        golden = conn.execute(select(Customer.email).where(Customer.id == john)).scalar_one()
        order = conn.execute(select(Order.customer_id).where(Order.external_id == "#1003")).scalar_one()
    assert stored == golden == "john@example.com" and order == john
    assert report.new_profiles == 0


def test_blank_consent_is_no_statement(engine: Engine) -> None:
    sync(engine)
    nora = customer_of(engine, "crm", "503")
    assert consents_of(engine, nora, "ads") == {}


# --- the invariant, on random mixes of good and bad rows ----------------------------------------------

_ORDERS_HEADER, *_ORDER_ROWS = (DATA / "store" / "orders_export.csv").read_text(encoding="utf-8").splitlines()
_BAD_ORDER_ROWS = [
    "#1009,kim@example.com,paid",  # too few fields
    _ORDER_ROWS[2].replace("TEA-SEN-001", "TEA-GONE-404"),  # unknown SKU
    _ORDER_ROWS[3].replace("#1003", ""),  # no Name
    _ORDER_ROWS[1].replace(",2,V60", ",2.5,V60"),  # quantity is no whole number
    _ORDER_ROWS[0] + ",surplus",  # too many fields
]


@pytest.fixture(scope="module")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file that every hypothesis example copies (migrating each time is slow)."""
    path = tmp_path_factory.mktemp("template") / "omnicast.db"
    upgrade(f"sqlite:///{path}")
    return path


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.sampled_from(_ORDER_ROWS), st.sampled_from(_BAD_ORDER_ROWS)), max_size=25))
def test_rows_read_equal_loaded_plus_quarantined_plus_duplicates(migrated_template: Path, rows: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = shutil.copytree(DATA / "store", Path(folder) / "store")
        (store / "orders_export.csv").write_text("\n".join([_ORDERS_HEADER, *rows]) + "\n", encoding="utf-8")
        database = Path(folder) / "omnicast.db"
        shutil.copy(migrated_template, database)
        engine = make_engine(f"sqlite:///{database}")
        try:
            report = sync(engine, store, None, None)
            with engine.connect() as conn:
                stored = conn.execute(select(SourceLoad).where(SourceLoad.source == "orders")).one()
            lines = count(engine, OrderLine)
        finally:
            engine.dispose()
    orders = next(c for c in report.sources if c.source == "orders")
    assert orders.rows_read == len(rows) == stored.rows_read
    assert orders.rows_read == orders.rows_loaded + orders.rows_quarantined + orders.duplicates_skipped
    assert lines == orders.rows_loaded == stored.rows_loaded
    first_seen = list(dict.fromkeys(rows))
    assert orders.duplicates_skipped == len(rows) - len(first_seen)
    assert orders.rows_quarantined == sum(row in _BAD_ORDER_ROWS for row in first_seen)


def test_birthday_and_tier_come_from_the_crm(engine: Engine) -> None:
    sync(engine)
    with engine.connect() as conn:
        jane = conn.execute(select(Customer).where(Customer.id == customer_of(engine, "crm", "501"))).one()
    assert (jane.birthday, jane.loyalty_tier, jane.timezone) == (date(1990, 2, 28), "Gold", "America/Los_Angeles")
    assert (jane.first_name, jane.city, jane.phone) == ("Jane", "San Francisco", "+14155550123")


# --- a generated store: the loaders catch exactly the planted dirt ------------------------------------


def test_generated_store_quarantine_matches_the_planted_dirt(sqlite_engine: Engine, tmp_path: Path) -> None:
    sample = pytest.importorskip("sample")
    out = tmp_path / "sample"
    manifest = sample.write_sample(out, customers=300, seed=11, as_of=date(2026, 11, 27))
    report = sync_store(sqlite_engine, out / "shopify", out / "hubspot_contacts.csv", out / "ga4_events.jsonl",
                        run_id="sample", now=datetime(2026, 11, 27, tzinfo=UTC))  # fmt: skip
    dirt, expected = manifest["dirt"], manifest["expected"]
    counts = {c.source: c for c in report.sources}

    def planted(path: str, *kinds: str) -> int:
        return sum(dirt.get(kind, {}).get(path, 0) for kind in kinds)

    products = "shopify/products_export.csv"
    assert counts["products"].rows_quarantined == planted(products, "malformed_row")
    assert counts["products"].fields_quarantined == planted(products, "bad_field")  # unsafe Image Src
    customers = "shopify/customers_export.csv"
    assert counts["customers"].rows_quarantined == planted(customers, "missing_field", "malformed_row")
    assert counts["customers"].fields_quarantined == planted(customers, "invalid_email", "bad_field")
    orders = "shopify/orders_export.csv"
    assert counts["orders"].rows_quarantined == planted(orders, "malformed_row", "missing_field", "unknown_sku")
    assert counts["orders"].duplicates_skipped == planted(orders, "exact_duplicate")
    assert counts["orders"].fields_quarantined == 0
    crm_kept = expected["crm_invalid_email_with_phone"]  # invalid email but a valid phone: kept
    crm = "hubspot_contacts.csv"
    assert counts["crm"].rows_quarantined == planted(crm, "malformed_row", "invalid_email") - crm_kept
    assert counts["crm"].fields_quarantined == crm_kept + planted(crm, "bad_field")
    events = "ga4_events.jsonl"
    assert counts["analytics"].rows_quarantined == planted(events, "missing_field", "unknown_sku", "bad_json")
    assert counts["analytics"].duplicates_skipped == planted(events, "exact_duplicate")
    assert report.reconciles
    assert report.fields_quarantined == sum(c.fields_quarantined for c in report.sources)
    assert counts["customers"].rows_loaded == expected["customer_rows_loadable"]
    assert (report.orders, report.order_lines) == (expected["orders"], expected["order_lines"])
    assert counts["analytics"].rows_loaded == expected["events"]
    assert report.profiles == expected["distinct_people"]  # duplicate customers unified, guests and CRM-only added
    with sqlite_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Product).where(~Product.image_url.like("https://%"))
                            ).scalar_one() == 0  # fmt: skip
        scopes = dict(conn.execute(select(QuarantineRow.scope, func.count()).group_by(QuarantineRow.scope)).all())
    assert scopes == {"row": report.quarantined, "field": report.fields_quarantined}


def test_generated_opt_outs_with_a_bad_cell_are_in_force(sqlite_engine: Engine, tmp_path: Path) -> None:
    """The planted opt-outs whose phone or birthday is broken: each customer's email consent ends denied."""
    sample = pytest.importorskip("sample")
    out = tmp_path / "sample"
    sample.write_sample(out, customers=300, seed=11, as_of=date(2026, 11, 27))
    sync_store(sqlite_engine, out / "shopify", out / "hubspot_contacts.csv", None, run_id="sample",
               now=datetime(2026, 11, 27, tzinfo=UTC))  # fmt: skip
    with (out / "shopify" / "customers_export.csv").open(encoding="utf-8", newline="") as handle:
        shopify = [row["Customer ID"].lstrip("'") for row in csv.DictReader(handle)
                   if row["Phone"] and len(row["Phone"]) < 9 and row["Accepts Email Marketing"] == "no"]  # fmt: skip
    with (out / "hubspot_contacts.csv").open(encoding="utf-8", newline="") as handle:
        crm = [row["Record ID"] for row in csv.DictReader(handle)
               if row["Date of Birth"][:2] == "18" and row["Email Marketing Consent"] == "Unsubscribed"]  # fmt: skip
    people = [customer_of(sqlite_engine, "shopify", i) for i in shopify]
    people += [customer_of(sqlite_engine, "crm", i) for i in crm]
    assert shopify and crm
    with sqlite_engine.connect() as conn:
        states = consent_states(conn, people, "email")
    assert states == {person: "denied" for person in people}


# --- erasure ------------------------------------------------------------------------------------------


def test_a_forgotten_person_is_not_brought_back_by_the_next_import(engine: Engine) -> None:
    """`omnicast forget` keeps a salted hash of the address; the next sync of files that still hold the person
    skips their rows (counted as forgotten, never quarantined) and loads their orders without the address."""
    from models.erasure import forget
    from models.schema import Customer

    sync(engine)
    forget(engine, "Jane.Doe@example.com", now=T2)
    report = sync(engine, run_id="run-2", now=T3)

    assert report.reconciles
    shopify = next(c for c in report.sources if c.source == "customers")
    lines = (DATA / "store" / "customers_export.csv").read_text().lower().splitlines()
    assert shopify.forgotten_skipped == sum("jane.doe@example.com" in line for line in lines) >= 1
    assert shopify.rows_quarantined == 0
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).where(Customer.email == "jane.doe@example.com")).scalar_one() == 0
        rows = conn.execute(select(Order.external_id, Order.customer_id, Order.email))
        orders = {row.external_id: row for row in rows}
        quarantined = conn.execute(text("SELECT raw FROM quarantine")).scalars().all()
    for name in ("#1001", "#1004"):  # her orders stay, without her address and without an owner
        assert orders[name].email is None and orders[name].customer_id is None
    assert not any("jane.doe" in raw.lower() for raw in quarantined)
