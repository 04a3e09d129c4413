"""Bad source files and fields, each one a test: what a store owner could hand to ``omnicast sync``.

Every case ends one of two ways, and the case says which:

- a :class:`SourceFileError` whose message is one line naming the file (or the setting) and what to do, with
  nothing written;
- a sync whose counts reconcile (rows read = loaded + quarantined + duplicates, per source, as reported and as
  stored) with exactly the expected rows or cells quarantined, each with its column and reason — and, for every
  case whose bad row carries a consent denial, that denial in force afterwards (the customer's latest email
  statement is ``denied``). The hostile run lost such opt-outs: a bad birthday cost a whole CRM row.

No traceback (any other exception fails the case), no silent drop (the quarantine holds exactly what the case
expects). Cases build their files in ``tmp_path`` from the clean fixtures in ``tests/data/sources``; they run on
SQLite, and the ones that once broke PostgreSQL (NUL bytes, denials, quotes) also on PostgreSQL.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from models.consent import consent_states
from models.schema import Consent, Customer, Identity, Order, Product, QuarantineRow, SourceLoad
from models.sync import UNDATED_GRANT, SyncReport, sync_store
from sources.validate import MAX_FIELD_CHARS, SourceFileError

DATA = Path(__file__).resolve().parents[1] / "data" / "sources"
BAD = Path(__file__).resolve().parents[1] / "data" / "bad"
NOW = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)  # the fixtures' data ends 2026-11-24
JANE = ("shopify", "7012345678901")  # Shopify yes (undated); CRM 501 Subscribed on 2026-11-01
ERIKA = ("shopify", "7012345678904")
GUEST = ("shopify_order", "guest@example.net")  # order #1002 said yes to marketing; CRM 505 Subscribed
PHIL = ("crm", "field", "Email", "kept, its phone identifies the contact")
"""In every clean sync: CRM contact 504's email is invalid, so it loads by its phone and the cell is set aside."""


@dataclass
class Files:
    """One case's sources: a private copy of the fixture store, CRM contacts and GA4 events."""

    store: Path
    crm: Path | None
    events: Path | None

    @property
    def products(self) -> Path:
        return self.store / "products_export.csv"

    @property
    def customers(self) -> Path:
        return self.store / "customers_export.csv"

    @property
    def orders(self) -> Path:
        return self.store / "orders_export.csv"


def fresh(folder: Path) -> Files:
    store = shutil.copytree(DATA / "store", folder / "store")
    crm = shutil.copy(DATA / "hubspot_contacts.csv", folder / "hubspot_contacts.csv")
    events = shutil.copy(DATA / "ga4_events.jsonl", folder / "ga4_events.jsonl")
    return Files(Path(store), Path(crm), Path(events))


# --- editing the files --------------------------------------------------------------------------------


def text(path: Path | None) -> str:
    assert path is not None
    return path.read_text(encoding="utf-8")


def write(path: Path | None, content: str | bytes) -> None:
    assert path is not None
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))


def replace(path: Path | None, old: str, new: str) -> None:
    """Replace text exactly (the bytes a case feeds the loader stay visible in the case)."""
    content = text(path)
    assert old in content, f"{old!r} not in {path}"
    write(path, content.replace(old, new))


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def _write_rows(path: Path, header: list[str], rows: list[list[str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write(path, buffer.getvalue())


def _key(value: str) -> str:
    return value.strip().lstrip("'")


def set_cells(path: Path | None, key_column: str, key: str, **changes: str) -> None:
    """Change cells (keyword = column name with spaces as underscores) of the rows whose ``key_column`` is ``key``."""
    assert path is not None
    header, rows = _rows(path)
    position = header.index(key_column)
    hits = 0
    for row in rows:
        if _key(row[position]) == key:
            hits += 1
            for name, value in changes.items():
                row[header.index(name.replace("_", " "))] = value
    assert hits, f"no row with {key_column} {key} in {path.name}"
    _write_rows(path, header, rows)


def add_copy(path: Path | None, key_column: str, key: str, **changes: str) -> None:
    """Append a copy of the row whose ``key_column`` is ``key``, with some cells changed."""
    assert path is not None
    header, rows = _rows(path)
    original = next(row for row in rows if _key(row[header.index(key_column)]) == key)
    copy = list(original)
    for name, value in changes.items():
        copy[header.index(name.replace("_", " "))] = value
    _write_rows(path, header, [*rows, copy])


def rename_column(path: Path | None, old: str, new: str) -> None:
    content = text(path)
    header, rest = content.split("\n", 1)
    assert old in header.split(",")
    write(path, ",".join(new if name == old else name for name in header.split(",")) + "\n" + rest)


def drop_column(path: Path | None, name: str) -> None:
    assert path is not None
    header, rows = _rows(path)
    position = header.index(name)
    _write_rows(path, header[:position] + header[position + 1 :], [r[:position] + r[position + 1 :] for r in rows])


def event_line(files: Files, number: int, old: str, new: str) -> None:
    """Change one GA4 line (1-based) by plain text replacement."""
    lines = text(files.events).splitlines()
    assert old in lines[number - 1]
    lines[number - 1] = lines[number - 1].replace(old, new)
    write(files.events, "\n".join(lines) + "\n")


# --- reading the outcome ------------------------------------------------------------------------------


def customer_of(engine: Engine, who: tuple[str, str]) -> int:
    with engine.connect() as conn:
        query = select(Identity.customer_id).where(Identity.source == who[0], Identity.external_id == who[1])
        return conn.execute(query).scalar_one()


def email_state(engine: Engine, who: tuple[str, str]) -> str | None:
    customer = customer_of(engine, who)
    with engine.connect() as conn:
        return consent_states(conn, [customer], "email").get(customer)


def statements(engine: Engine, who: tuple[str, str], channel: str) -> dict[str, tuple[str, datetime]]:
    customer = customer_of(engine, who)
    with engine.connect() as conn:
        rows = conn.execute(
            select(Consent.source, Consent.state, Consent.recorded_at).where(
                Consent.customer_id == customer, Consent.channel == channel
            )
        ).all()
    return {row.source: (row.state, row.recorded_at) for row in rows}


def scalar(engine: Engine, query) -> object:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.execute(query).scalar_one()


def product(engine: Engine, sku: str) -> Product:
    with engine.connect() as conn:
        return conn.execute(select(Product).where(Product.sku == sku)).one()


def order(engine: Engine, name: str) -> Order | None:
    with engine.connect() as conn:
        return conn.execute(select(Order).where(Order.external_id == name)).one_or_none()


# --- the cases ----------------------------------------------------------------------------------------

Expect = tuple[str, str, str | None, str]  # (source, scope 'row'|'field', column, part of the reason)


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[Files], Files | None]
    error: str | None = None  # regex the one-line message matches
    quarantined: tuple[Expect, ...] = ()  # exactly what lands in quarantine
    denied: tuple[tuple[str, str], ...] = ()  # whose latest email statement must be 'denied'
    read: dict[str, int] = field(default_factory=dict)  # rows_read per source, where the case counts them
    check: Callable[[Engine, SyncReport], None] | None = None
    day_before: bool = False  # the clean files were synced the day before the bad one arrived


def _store_is_a_file(files: Files) -> Files:
    return Files(files.customers, files.crm, files.events)


def _crm_is_a_folder(files: Files) -> Files:
    assert files.crm is not None
    folder = files.crm.parent / "exports"
    folder.mkdir()
    return Files(files.store, folder, files.events)


def _no_events_file(files: Files) -> Files:
    assert files.events is not None
    return Files(files.store, files.crm, files.events.parent / "ga4_events_2026.jsonl")


def _latin1(files: Files) -> None:
    write(files.customers, text(files.customers).replace("Mustermann", "Müller").encode("latin-1"))


def _nothing_for(source: str, channel: str, who: tuple[str, str]) -> Callable[[Engine, SyncReport], None]:
    def check(engine: Engine, _report: SyncReport) -> None:
        assert source not in statements(engine, who, channel)

    return check


def _check_jane_marketing_denied(engine: Engine, _report: SyncReport) -> None:
    assert statements(engine, JANE, "marketing") == {"crm": ("denied", datetime(2026, 11, 1, 10, 0, tzinfo=UTC))}


def _check_future_grant_ranks_oldest(engine: Engine, _report: SyncReport) -> None:
    state, recorded_at = statements(engine, JANE, "email")["crm"]
    assert (state, recorded_at) == ("granted", UNDATED_GRANT)  # not 2099: a later unsubscribe will beat it


def _check_future_denial_dated_by_sync(engine: Engine, _report: SyncReport) -> None:
    assert statements(engine, JANE, "email")["crm"] == ("denied", NOW)


def _check_email_kept(engine: Engine, report: SyncReport) -> None:
    assert report.new_profiles == 0  # her orders did not become a stranger's guest checkouts
    with engine.connect() as conn:
        query = select(Identity.email).where(Identity.source == JANE[0], Identity.external_id == JANE[1])
        stored = conn.execute(query).scalar_one()
        golden = conn.execute(select(Customer.email).where(Customer.id == customer_of(engine, JANE))).scalar_one()
    assert stored == golden == "jane.doe@example.com"  # an unknown email erases nothing


def _check_unlinked_order(engine: Engine, _report: SyncReport) -> None:
    placed = order(engine, "#1002")
    assert placed is not None and placed.customer_id is None and placed.email is None


def _check_order_gone(name: str) -> Callable[[Engine, SyncReport], None]:
    def check(engine: Engine, _report: SyncReport) -> None:
        assert order(engine, name) is None

    return check


def _check_unknown_total(engine: Engine, _report: SyncReport) -> None:
    placed = order(engine, "#1003")
    assert placed is not None and placed.total == 0.0 and placed.financial_status == "refunded"


def _check_no_image(engine: Engine, _report: SyncReport) -> None:
    assert product(engine, "BEAN-ETH-001").image_url is None
    assert scalar(engine, select(func.count()).select_from(Product).where(~Product.image_url.like("https://%"))) == 0


def _check_inactive(engine: Engine, _report: SyncReport) -> None:
    assert not product(engine, "GEAR-V60-01").active


def _check_no_replenishment(engine: Engine, _report: SyncReport) -> None:
    assert product(engine, "BEAN-ETH-001").replenish_days is None


def _check_names(first: str, last: str) -> Callable[[Engine, SyncReport], None]:
    def check(engine: Engine, _report: SyncReport) -> None:
        with engine.connect() as conn:
            person = conn.execute(select(Customer).where(Customer.id == customer_of(engine, JANE))).one()
        assert (person.first_name, person.last_name) == (first, last)
        assert scalar(engine, select(func.count()).select_from(Customer)) == 7  # the table is still there

    return check


def _check_loaded(source: str, loaded: int) -> Callable[[Engine, SyncReport], None]:
    def check(_engine: Engine, report: SyncReport) -> None:
        assert next(c for c in report.sources if c.source == source).rows_loaded == loaded

    return check


BODY = "<p>Ethiopia Yirgacheffe</p>"
GIFT_BODY = "<p>Holiday Gift Box</p>"  # a draft product nobody bought or viewed
JANE_NEWEST = "7012345678903"  # her newest Shopify record: its name is the profile's
BIG = "x" * 200_000
IMAGE = "https://cdn.example.com/ethiopia-yirgacheffe.jpg"
GIFT_PRICE = ",GIFT-BOX-01,250,40,39.00,"
JANE_NOTE = "94103,,'+14155550123,yes,54.00,2,,"
DEVICE = '"1111111111.1700000000"'


def image(value: str) -> Callable[[Files], None]:
    return lambda f: replace(f.products, IMAGE, value)


def gift_price(value: str) -> Callable[[Files], None]:
    return lambda f: replace(f.products, GIFT_PRICE, f",GIFT-BOX-01,250,40,{value},")


CASES = [
    # ---- whole files that cannot be read: one line, the file, what to do
    Case("empty-customers-file", lambda f: write(f.customers, ""), error=r"^customers_export\.csv: the file is empty"),
    Case("excel-workbook-as-products", lambda f: write(f.products, (BAD / "customers_export.xlsx.csv").read_bytes()),
         error=r"^products_export\.csv: not UTF-8 text .*Products → Export"),
    Case("png-as-products", lambda f: write(f.products, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xd8"),
         error=r"^products_export\.csv: not UTF-8 text"),
    Case("utf16-customers", lambda f: write(f.customers, text(f.customers).encode("utf-16")),
         error=r"^customers_export\.csv: UTF-16 text, not UTF-8; save it as 'CSV UTF-8"),
    Case("latin1-customers", _latin1, error=r"^customers_export\.csv: not UTF-8 text .*Customers → Export"),
    Case("semicolon-separated-customers", lambda f: write(f.customers, text(f.customers).replace(",", ";")),
         error=r"^customers_export\.csv: the columns are separated by semicolons, not commas"),
    Case("tab-separated-hubspot", lambda f: write(f.crm, text(f.crm).replace(",", "\t")),
         error=r"^hubspot_contacts\.csv: the columns are separated by tabs.*HubSpot → Contacts → Export"),
    Case("duplicated-column-in-customers", lambda f: rename_column(f.customers, "Tags", "Email"),
         error=r"^customers_export\.csv: column 'Email' appears twice in the header \(columns 4 and 20\) — rename"),
    Case("duplicated-column-in-hubspot", lambda f: rename_column(f.crm, "Postal Code", "City"),
         error=r"^hubspot_contacts\.csv: column 'City' appears twice in the header \(columns 13 and 16\)"),
    Case("duplicated-column-in-orders", lambda f: rename_column(f.orders, "Phone", "Email"),
         error=r"^orders_export\.csv: column 'Email' appears twice"),
    Case("orders-without-lineitem-sku",
         lambda f: write(f.orders, (BAD / "orders_export_without_sku.csv").read_bytes()),
         error=r"^orders_export\.csv: missing column 'Lineitem sku' — export orders from Shopify admin"),
    Case("json-array-as-ga4-export", lambda f: write(f.events, (BAD / "ga4_events_array.json").read_bytes()),
         error=r"^ga4_events\.jsonl: not JSONL .*NEWLINE_DELIMITED_JSON"),
    Case("csv-as-ga4-export", lambda f: write(f.events, text(f.customers)), error=r"^ga4_events\.jsonl: not JSONL"),
    Case("crm-setting-points-at-a-folder", _crm_is_a_folder,
         error=r"^OMNICAST_CRM_URL \(--crm\) points at a directory \(.*exports\), not a file — give the contacts "
               r"CSV file itself: export contacts from HubSpot"),
    Case("analytics-setting-points-at-nothing", _no_events_file,
         error=r"^OMNICAST_ANALYTICS_URL \(--analytics\) points at nothing \(.*ga4_events_2026\.jsonl\), not a file "
               r"— give the events file itself: export GA4 events"),
    Case("store-setting-points-at-a-file", _store_is_a_file,
         error=r"^OMNICAST_STORE_URL \(--store\) is a file \(.*customers_export\.csv\), not a folder — it must be "
               r"the folder holding products_export\.csv"),
    Case("store-without-orders-export", lambda f: f.orders.unlink(),
         error=r"^OMNICAST_STORE_URL \(--store\): missing source file\(s\) orders_export\.csv \(looked at .*\)"),
    # ---- the hostile run's defect 2: a consent statement survives any other bad cell of its row
    Case("crm-opt-out-with-an-impossible-birth-date",
         lambda f: set_cells(f.crm, "Record ID", "501", Email_Marketing_Consent="Unsubscribed",
                             Date_of_Birth="2001-02-29"),
         quarantined=(("crm", "field", "Date of Birth", "not a date like 1990-02-28"),), denied=(JANE,)),
    Case("crm-opt-out-with-a-time-zone-with-a-space",
         lambda f: set_cells(f.crm, "Record ID", "501", Email_Marketing_Consent="Unsubscribed",
                             Time_Zone="America/Los Angeles"),
         quarantined=(("crm", "field", "Time Zone", "IANA time zone"),), denied=(JANE,)),
    Case("crm-opt-out-born-in-1800",
         lambda f: set_cells(f.crm, "Record ID", "501", Email_Marketing_Consent="Unsubscribed",
                             Date_of_Birth="1800-01-01"),
         quarantined=(("crm", "field", "Date of Birth", "before 1900 or in the future"),), denied=(JANE,)),
    Case("crm-opt-out-born-in-the-future",
         lambda f: set_cells(f.crm, "Record ID", "501", Email_Marketing_Consent="Unsubscribed",
                             Date_of_Birth="2090-01-01"),
         quarantined=(("crm", "field", "Date of Birth", "before 1900 or in the future"),), denied=(JANE,)),
    Case("crm-opt-out-with-an-unknown-tier",
         lambda f: set_cells(f.crm, "Record ID", "501", Email_Marketing_Consent="Unsubscribed", Loyalty_Tier="Diamond"),
         quarantined=(("crm", "field", "Loyalty Tier", "not one of"),), denied=(JANE,)),
    Case("crm-opt-out-with-a-phone-in-words",
         lambda f: set_cells(f.crm, "Record ID", "501", Email_Marketing_Consent="Unsubscribed",
                             Phone_Number="call me after 6"),
         quarantined=(("crm", "field", "Phone Number", "not a valid phone number: kept"),), denied=(JANE,)),
    Case("crm-opt-out-with-an-excel-mangled-modification-date",
         lambda f: set_cells(f.crm, "Record ID", "501", Email_Marketing_Consent="Unsubscribed",
                             Last_Modified_Date="11/01/2026 10:00"),
         quarantined=(("crm", "field", "Last Modified Date", "statements are undated"),), denied=(JANE,),
         check=_check_future_denial_dated_by_sync),
    Case("crm-opt-out-dated-2099",
         lambda f: set_cells(f.crm, "Record ID", "501", Email_Marketing_Consent="Unsubscribed",
                             Last_Modified_Date="2099-01-01 00:00"),
         quarantined=(("crm", "field", "Last Modified Date", "in the future"),), denied=(JANE,),
         check=_check_future_denial_dated_by_sync),
    Case("crm-grant-dated-2099-ranks-oldest",
         lambda f: set_cells(f.crm, "Record ID", "501", Last_Modified_Date="2099-01-01 00:00"),
         quarantined=(("crm", "field", "Last Modified Date", "in the future"),),
         check=_check_future_grant_ranks_oldest),
    Case("crm-opt-out-with-an-invalid-email-and-a-valid-phone",
         lambda f: set_cells(f.crm, "Record ID", "504", Email_Marketing_Consent="Unsubscribed"),
         quarantined=(PHIL,), denied=(("crm", "504"),)),
    Case("crm-repeated-record-id-with-an-opt-out",
         lambda f: add_copy(f.crm, "Record ID", "501", First_Name="Janet", Email_Marketing_Consent="Unsubscribed"),
         quarantined=(("crm", "row", "Record ID", "already used on an earlier row"),), denied=(JANE,)),
    Case("crm-row-without-record-id-with-an-opt-out",
         lambda f: add_copy(f.crm, "Record ID", "501", Record_ID="", Email_Marketing_Consent="Unsubscribed"),
         quarantined=(("crm", "row", "Record ID", "missing Record ID"),), denied=(JANE,)),
    Case("crm-unknown-consent-word",
         lambda f: set_cells(f.crm, "Record ID", "503", Email_Marketing_Consent="Opted out"),
         quarantined=(("crm", "field", "Email Marketing Consent", "no email statement"),),
         check=_nothing_for("crm", "email", ("crm", "503"))),
    Case("crm-non-marketing-contact",
         lambda f: set_cells(f.crm, "Record ID", "501", Marketing_contact_status="Non-marketing contact"),
         check=_check_jane_marketing_denied),
    Case("crm-unknown-marketing-status",
         lambda f: set_cells(f.crm, "Record ID", "501", Marketing_contact_status="Maybe later"),
         quarantined=(("crm", "field", "Marketing contact status", "no marketing statement"),),
         check=_nothing_for("crm", "marketing", JANE)),
    Case("crm-without-the-optional-marketing-status-column",
         lambda f: drop_column(f.crm, "Marketing contact status"), check=_nothing_for("crm", "marketing", JANE)),
    Case("crm-unterminated-quote-mid-file", lambda f: replace(f.crm, ",Berlin,Berlin,DE,", ',"Berlin,Berlin,DE,'),
         quarantined=(("crm", "row", None, "unterminated quote"),), read={"crm": 5}, check=_check_loaded("crm", 4)),
    Case("shopify-opt-out-with-a-malformed-phone",
         lambda f: set_cells(f.customers, "Customer ID", JANE[1], Accepts_Email_Marketing="no", Phone="'+1 415 55"),
         quarantined=(("customers", "field", "Phone", "not a valid phone number"),), denied=(JANE,)),
    Case("shopify-opt-out-with-an-invalid-email-a-day-later", day_before=True,
         make=lambda f: set_cells(f.customers, "Customer ID", JANE[1], Accepts_Email_Marketing="no",
                                  Email="jane.doe@@example.com"),
         quarantined=(("customers", "field", "Email", "not a valid email address"),), denied=(JANE,),
         check=_check_email_kept),
    Case("shopify-opt-out-with-a-total-in-words",
         lambda f: set_cells(f.customers, "Customer ID", JANE[1], Accepts_Email_Marketing="no", Total_Spent="abc"),
         quarantined=(("customers", "field", "Total Spent", "not a number"),), denied=(JANE,)),
    Case("shopify-opt-out-with-an-unknown-sms-word",
         lambda f: set_cells(f.customers, "Customer ID", JANE[1], Accepts_Email_Marketing="no",
                             Accepts_SMS_Marketing="maybe"),
         quarantined=(("customers", "field", "Accepts SMS Marketing", "not yes/no"),), denied=(JANE,)),
    Case("shopify-unknown-consent-word",
         lambda f: set_cells(f.customers, "Customer ID", ERIKA[1], Accepts_Email_Marketing="nein"),
         quarantined=(("customers", "field", "Accepts Email Marketing", "not yes/no"),),
         check=_nothing_for("shopify", "email", ERIKA)),
    Case("shopify-repeated-customer-id-with-an-opt-out",
         lambda f: add_copy(f.customers, "Customer ID", JANE[1], Accepts_Email_Marketing="no"),
         quarantined=(("customers", "row", "Customer ID", "already used on an earlier row"),), denied=(JANE,)),
    Case("shopify-row-without-customer-id-saying-no",
         lambda f: add_copy(f.customers, "Customer ID", JANE[1], Customer_ID="", Accepts_Email_Marketing="no"),
         quarantined=(("customers", "row", "Customer ID", "missing Customer ID"),), denied=(JANE,)),
    # ---- defect 8: silent and lax validation
    Case("order-with-an-invalid-email",
         lambda f: replace(f.orders, "#1002,guest@example.net,", "#1002,guest@@example.net,"),
         quarantined=(("orders", "field", "Email", "loaded without a customer"),), check=_check_unlinked_order),
    Case("order-dated-2099",
         lambda f: replace(f.orders, "2026-11-15 08:05:30 +0000", "2099-11-15 08:05:30 +0000"),
         quarantined=(("orders", "row", "Created at", "in the future"),), check=_check_order_gone("#1004")),
    Case("guest-opt-out-on-an-order-dated-2099",
         lambda f: add_copy(f.orders, "Name", "#1002", Name="#1005", Accepts_Marketing="no",
                            Created_at="2099-01-01 10:00:00 +0000"),
         quarantined=(("orders", "row", "Created at", "in the future"),), denied=(GUEST,),
         check=_check_order_gone("#1005")),
    Case("order-date-mangled-by-excel", lambda f: replace(f.orders, "2026-11-15 08:05:30 +0000", "11/15/2026 8:05"),
         quarantined=(("orders", "row", "Created at", "not a timestamp"),), check=_check_order_gone("#1004")),
    Case("negative-line-price", lambda f: replace(f.orders, ",Hario V60 Dripper,25.00,", ",Hario V60 Dripper,-25.00,"),
         quarantined=(("orders", "row", "Lineitem price", "negative"),)),
    Case("line-price-in-scientific-notation", lambda f: replace(f.orders, ",Sencha,9.50,", ",Sencha,1e10,"),
         quarantined=(("orders", "row", "Lineitem price", "not a number"),)),
    Case("line-price-nan", lambda f: replace(f.orders, ",Sencha,9.50,", ",Sencha,NaN,"),
         quarantined=(("orders", "row", "Lineitem price", "not a number"),)),
    Case("line-quantity-of-three-billion", lambda f: replace(f.orders, ",1,Sencha,", ",3000000000,Sencha,"),
         quarantined=(("orders", "row", "Lineitem quantity", "not a positive number"),)),
    Case("negative-order-total", lambda f: replace(f.orders, ",0.00,0.00,25.00,,", ",0.00,0.00,-25.00,,"),
         quarantined=(("orders", "field", "Total", "negative"),), check=_check_unknown_total),
    Case("guest-order-with-an-unknown-marketing-word",
         lambda f: replace(f.orders, ",fulfilled,,yes,USD,", ",fulfilled,,si,USD,"),
         quarantined=(("orders", "field", "Accepts Marketing", "not yes/no"),),
         check=_nothing_for("shopify_order", "email", GUEST)),
    Case("unterminated-quote-on-the-last-order-line",
         lambda f: replace(f.orders, ",1,Colombia Huila,", ',1,"Colombia Huila,'),
         quarantined=(("orders", "row", None, "unterminated quote"),), read={"orders": 5}),
    Case("negative-product-price", gift_price("-39.00"),
         quarantined=(("products", "row", "Variant Price", "negative"),)),
    Case("product-price-1e10", gift_price("1E+10"),
         quarantined=(("products", "row", "Variant Price", "not a number"),)),
    Case("product-status-deleted", lambda f: replace(f.products, ",,,,,active\ngift-box", ",,,,,deleted\ngift-box"),
         quarantined=(("products", "field", "Status", "loaded as not active"),), check=_check_inactive),
    Case("replenishment-days-in-words",
         lambda f: replace(f.products, ",light,Ethiopia,30,", ",light,Ethiopia,monthly,"),
         quarantined=(("products", "field", "Replenishment days (product.metafields.custom.replenishment_days)",
                       "not a whole number"),), check=_check_no_replenishment),
    Case("200-kb-product-description", lambda f: replace(f.products, GIFT_BODY, BIG),
         quarantined=(("products", "row", "Body (HTML)", f"200,000 characters, over the {MAX_FIELD_CHARS:,}"),),
         read={"products": 6}, check=_check_loaded("products", 5)),
    Case("multi-line-product-description",
         lambda f: replace(f.products, BODY, '"<p>Bright and floral.</p>\r\n<p>Notes: jasmine, lime</p>"'),
         read={"products": 6}, check=_check_loaded("products", 6)),
    Case("one-megabyte-customer-note",
         lambda f: replace(f.customers, JANE_NOTE, JANE_NOTE[:-1] + "n" * 1_000_000 + ","),
         quarantined=(("customers", "row", "Note", "1,000,000 characters"),)),
    # ---- defect 9 at the door: no unsafe URL is ever stored
    Case("javascript-image-url",
         image("javascript:alert(document.cookie)"),
         quarantined=(("products", "field", "Image Src", "not an absolute http(s) URL"),), check=_check_no_image),
    Case("data-image-url",
         image('"data:text/html,<script>alert(1)</script>"'),
         quarantined=(("products", "field", "Image Src", "not an absolute http(s) URL"),), check=_check_no_image),
    Case("relative-image-url", image("/files/beans.jpg"),
         quarantined=(("products", "field", "Image Src", "not an absolute http(s) URL"),), check=_check_no_image),
    Case("protocol-relative-image-url",
         image("//evil.example/beans.jpg"),
         quarantined=(("products", "field", "Image Src", "not an absolute http(s) URL"),), check=_check_no_image),
    # ---- everything else a real export does
    Case("bom-and-crlf-customers",
         lambda f: write(f.customers, ("\ufeff" + text(f.customers).replace("\n", "\r\n")).encode()),
         check=_check_loaded("customers", 5)),
    Case("header-only-customers", lambda f: write(f.customers, text(f.customers).split("\n", 1)[0] + "\n"),
         read={"customers": 0}),
    Case("blank-lines-between-rows", lambda f: write(f.customers, text(f.customers).replace("\n'", "\n\n\n'")),
         read={"customers": 5}, check=_check_loaded("customers", 5)),
    Case("trailing-comma-on-every-line", lambda f: write(f.customers, text(f.customers).replace("\n", ",,\n")),
         read={"customers": 5}, check=_check_loaded("customers", 5)),
    Case("truncated-last-customer-row", lambda f: write(f.customers, text(f.customers)[:-40]),
         quarantined=(("customers", "row", None, "malformed row"),)),
    Case("unterminated-quote-swallowing-the-customers-after-it",
         lambda f: replace(f.customers, "'7012345678902,John,", "'7012345678902,\"John,"),
         quarantined=(("customers", "row", None, "unterminated quote"),), read={"customers": 5},
         check=_check_loaded("customers", 4)),
    Case("nul-byte-in-a-customer-name", lambda f: replace(f.customers, ",Erika,", ",Eri\x00ka,"),
         quarantined=(("customers", "row", "First Name", "NUL character"),)),
    Case("emoji-and-right-to-left-names",
         lambda f: set_cells(f.customers, "Customer ID", JANE_NEWEST, First_Name="Jäné 🌸", Last_Name="דוד"),
         check=_check_names("Jäné 🌸", "דוד")),
    Case("sql-ish-text-in-a-name",
         lambda f: set_cells(f.customers, "Customer ID", JANE_NEWEST, Last_Name="Doe'); DROP TABLE customers;--"),
         check=_check_names("Jane", "Doe'); DROP TABLE customers;--")),
    Case("ga4-event-dated-2096", lambda f: event_line(f, 5, "1795253400123456", "3976502400123456"),
         quarantined=(("analytics", "row", "event_timestamp", "in the future"),)),
    Case("ga4-truncated-last-line", lambda f: write(f.events, text(f.events).rstrip("\n")[:-25]),
         quarantined=(("analytics", "row", None, "not valid JSON"),)),
    Case("ga4-nul-in-a-device-id", lambda f: event_line(f, 1, DEVICE, '"11111\\u00001111.1700000000"'),
         quarantined=(("analytics", "row", "user_pseudo_id", "NUL character"),)),
    Case("ga4-item-quantity-1e30", lambda f: event_line(f, 1, '"quantity": 1}', '"quantity": 1e30}'),
         quarantined=(("analytics", "row", "items", "too large"),)),
]  # fmt: skip

ON_POSTGRES = {
    "crm-opt-out-with-an-impossible-birth-date", "crm-repeated-record-id-with-an-opt-out",
    "crm-row-without-record-id-with-an-opt-out", "shopify-opt-out-with-a-malformed-phone",
    "shopify-opt-out-with-an-invalid-email-a-day-later", "shopify-row-without-customer-id-saying-no",
    "unterminated-quote-swallowing-the-customers-after-it", "200-kb-product-description", "nul-byte-in-a-customer-name",
    "ga4-nul-in-a-device-id", "duplicated-column-in-hubspot", "crm-non-marketing-contact",
}  # fmt: skip


def sync(engine: Engine, files: Files, run_id: str) -> SyncReport:
    return sync_store(engine, files.store, files.crm, files.events, run_id=run_id, now=NOW)


def run_case(case: Case, engine: Engine, folder: Path) -> None:
    files = fresh(folder)
    if case.day_before:
        sync(engine, files, "day-before")
    files = case.make(files) or files
    loads_before = scalar(engine, select(func.count()).select_from(SourceLoad))
    if case.error is not None:
        with pytest.raises(SourceFileError) as caught:
            sync(engine, files, "bad-day")
        message = str(caught.value)
        assert "\n" not in message and "Traceback" not in message, message
        assert re.search(case.error, message), message
        assert scalar(engine, select(func.count()).select_from(SourceLoad)) == loads_before  # nothing written
        return
    report = sync(engine, files, "bad-day")
    _assert_reconciled(engine, report)
    _assert_quarantine_is(engine, case.quarantined if PHIL in case.quarantined else (*case.quarantined, PHIL))
    for source, rows in case.read.items():
        assert next(c for c in report.sources if c.source == source).rows_read == rows
    for who in case.denied:
        assert email_state(engine, who) == "denied", who
    if case.check is not None:
        case.check(engine, report)


def _assert_reconciled(engine: Engine, report: SyncReport) -> None:
    assert report.reconciles
    with engine.connect() as conn:
        loads = conn.execute(select(SourceLoad).where(SourceLoad.run_id == "bad-day")).all()
        scopes = Counter(
            conn.execute(
                select(QuarantineRow.source, QuarantineRow.scope).where(QuarantineRow.run_id == "bad-day")
            ).all()
        )
    assert len(loads) == len(report.sources)
    for stored, count in zip(sorted(loads, key=lambda s: s.source), sorted(report.sources, key=lambda c: c.source),
                             strict=True):  # fmt: skip
        assert (stored.rows_read, stored.rows_loaded, stored.rows_quarantined, stored.duplicates_skipped,
                stored.fields_quarantined) == (count.rows_read, count.rows_loaded, count.rows_quarantined,
                                               count.duplicates_skipped, count.fields_quarantined)  # fmt: skip
        assert stored.rows_read == stored.rows_loaded + stored.rows_quarantined + stored.duplicates_skipped
        assert scopes[(count.source, "row")] == count.rows_quarantined
        assert scopes[(count.source, "field")] == count.fields_quarantined
    assert report.as_dict()["fields_quarantined"] == sum(c.fields_quarantined for c in report.sources)


def _assert_quarantine_is(engine: Engine, expected: tuple[Expect, ...]) -> None:
    with engine.connect() as conn:
        rows = conn.execute(
            select(QuarantineRow.source, QuarantineRow.scope, QuarantineRow.column, QuarantineRow.reason).where(
                QuarantineRow.run_id == "bad-day"
            )
        ).all()
    found = sorted((r.source, r.scope, r.column or "") for r in rows)
    assert found == sorted((source, scope, column or "") for source, scope, column, _ in expected), rows
    for source, scope, column, reason in expected:
        reasons = [r.reason for r in rows if (r.source, r.scope, r.column) == (source, scope, column)]
        assert any(reason in text for text in reasons), (reason, reasons)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_source_input_is_refused_in_one_line_or_quarantined_and_counted(
    case: Case, sqlite_engine: Engine, tmp_path: Path
) -> None:
    run_case(case, sqlite_engine, tmp_path)


@pytest.mark.postgres
@pytest.mark.parametrize("case", [c for c in CASES if c.id in ON_POSTGRES], ids=lambda case: case.id)
def test_bad_source_input_on_postgresql(case: Case, postgres_engine: Engine, tmp_path: Path) -> None:
    run_case(case, postgres_engine, tmp_path)


def test_every_case_is_distinct_and_the_corpus_is_big_enough() -> None:
    assert len({case.id for case in CASES}) == len(CASES) >= 35
    assert {case.id for case in CASES} >= ON_POSTGRES
