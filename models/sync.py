"""The ``sync`` stage: read every source, unify identities, and write it all in one transaction.

``sync_store`` reads and checks all files first (a :class:`SourceFileError` stops the run before anything
is written), then in one transaction: upserts products by SKU, resolves and saves golden profiles and
identities, upserts consent statements, replaces the orders (ids kept) and lines of the orders in the
file, replaces the events in the time span the analytics file covers, and records quarantined rows and
cells and one ``SourceLoad`` per source. Syncing the same files again leaves the data tables identical.

A cell set aside by a reader is unknown, not empty: a stored email or phone is kept (a bad cell never
erases what a profile knows), and a consent denial stated by a row quarantined whole still counts when the
row says whose it is (a repeated Customer/Record ID, or a valid email).

Large tables (orders, lines, events, quarantine) go in through :func:`bulk_insert`: PostgreSQL's COPY,
or one driver-level executemany on SQLite; per-row ORM objects would be ~10x slower.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, Table, bindparam, delete, insert, select, update

from models.bulk import bulk_insert, clean_row, recycled_ids, reserve_ids
from models.consent import UNDATED_GRANT, save_statements, statements_from
from models.identity import (
    ANALYTICS,
    CRM,
    GUEST,
    SHOPIFY,
    Resolution,
    records_frame,
    resolve,
    save_profiles,
    stored_identities,
)
from models.schema import Consent, Event, Order, OrderLine, Product, QuarantineRow, SourceLoad, utcnow
from models.suppression import suppressed
from sources.analytics import HOW_TO_EXPORT as EXPORT_EVENTS
from sources.analytics import events_per_line, read_events
from sources.crm import CONSENT_COLUMNS, HUBSPOT, CrmMapping, read_contacts
from sources.shopify import (
    CUSTOMERS_FILE,
    ORDERS_FILE,
    PRODUCTS_FILE,
    UNKNOWN_EMAIL,
    UNKNOWN_PHONE,
    read_customers,
    read_orders,
    read_products,
)
from sources.validate import ROW, Intake, SourceCount, SourceFileError

__all__ = ["UNDATED_GRANT", "SourceCount", "SourceFileError", "SyncReport", "sync_store"]

log = logging.getLogger(__name__)

_products: Table = Product.__table__  # type: ignore[attr-defined]
_orders: Table = Order.__table__  # type: ignore[attr-defined]
_lines: Table = OrderLine.__table__  # type: ignore[attr-defined]
_events: Table = Event.__table__  # type: ignore[attr-defined]
_consents: Table = Consent.__table__  # type: ignore[attr-defined]
_quarantine: Table = QuarantineRow.__table__  # type: ignore[attr-defined]
_source_loads: Table = SourceLoad.__table__  # type: ignore[attr-defined]

PRODUCT_FIELDS = [
    "handle", "title", "product_type", "vendor", "tags", "price", "image_url",
    "flavour_notes", "roast", "origin", "consumable", "replenish_days", "active",
    "inventory_quantity", "published", "gift_card",
]  # fmt: skip


@dataclass
class SyncReport:
    """What one sync did: per-source reconciliation and what the unified data now holds.

    ``profiles``: golden customers this sync's records belong to (``new_profiles`` of them created now);
    ``identities``: source records resolved; ``consents``: consent statements the files made (after merging);
    ``orders``/``order_lines``/``events``: rows written; ``quarantined``: rows set aside, all sources;
    ``fields_quarantined``: cells set aside in rows that were loaded anyway, all sources.
    """

    run_id: str
    sources: list[SourceCount]
    profiles: int
    identities: int
    consents: int
    new_profiles: int = 0
    products: int = 0
    orders: int = 0
    order_lines: int = 0
    events: int = 0
    seconds: float = 0.0
    quarantined: int = field(init=False)
    fields_quarantined: int = field(init=False)

    def __post_init__(self) -> None:
        self.quarantined = sum(count.rows_quarantined for count in self.sources)
        self.fields_quarantined = sum(count.fields_quarantined for count in self.sources)

    @property
    def reconciles(self) -> bool:
        """Every source's rows read = loaded + quarantined + duplicates skipped."""
        return all(count.reconciles for count in self.sources)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form (for ``omnicast sync --json`` and Prefect artifacts)."""
        return asdict(self)


@dataclass
class _Read:
    """Everything read from the files, checked, before any write."""

    intakes: dict[str, Intake]
    products: pd.DataFrame
    customers: pd.DataFrame
    orders: pd.DataFrame
    lines: pd.DataFrame
    contacts: pd.DataFrame | None
    events: pd.DataFrame | None


def sync_store(
    engine: Engine,
    store_dir: Path,
    crm_file: Path | None,
    analytics_file: Path | None,
    *,
    run_id: str,
    default_country: str = "US",
    now: datetime | None = None,
    progress: Callable[[str], None] | None = None,
    crm_mapping: CrmMapping = HUBSPOT,
) -> SyncReport:
    """Load a Shopify store export directory plus optional CRM and GA4 files; see the module docstring."""
    started = time.perf_counter()
    now = now or utcnow()
    say = progress or (lambda _message: None)
    _check_files_exist(store_dir, crm_file, analytics_file)
    with engine.connect() as conn:
        stored_skus = set(conn.execute(select(_products.c.sku)).scalars())
    read = _read_all(store_dir, crm_file, analytics_file, stored_skus, default_country, crm_mapping, now, say)
    with engine.begin() as conn:
        report = _write_all(conn, read, run_id, now, say)
    report.seconds = round(time.perf_counter() - started, 3)
    log.info("sync %s: %d profiles, %d rows and %d cells quarantined, %.1fs", run_id, report.profiles,
             report.quarantined, report.fields_quarantined, report.seconds)  # fmt: skip
    return report


STORE_SETTING = "OMNICAST_STORE_PATH (--store)"
CRM_SETTING = "OMNICAST_CRM_PATH (--crm)"
ANALYTICS_SETTING = "OMNICAST_ANALYTICS_PATH (--analytics)"
EXPORT_STORE = (
    "it must be the folder holding products_export.csv, customers_export.csv and orders_export.csv from "
    "Shopify admin → Products/Customers/Orders → Export"
)
EXPORT_CRM = f"give the contacts CSV file itself: {HUBSPOT.how_to_export}"
EXPORT_ANALYTICS = f"give the events file itself: {EXPORT_EVENTS}"


def _check_files_exist(store_dir: Path, crm_file: Path | None, analytics_file: Path | None) -> None:
    """Fail before reading anything when a source is missing or is not what its setting needs: one line naming
    each setting (and its CLI flag), what was found there, and how to export the right thing."""
    problems = []
    if store_dir.is_file():
        problems.append(f"{STORE_SETTING} is a file ({store_dir}), not a folder — {EXPORT_STORE}")
    elif not store_dir.is_dir():
        problems.append(f"{STORE_SETTING}: nothing at {store_dir} — {EXPORT_STORE}")
    else:
        missing = [store_dir / name for name in (PRODUCTS_FILE, CUSTOMERS_FILE, ORDERS_FILE)]
        missing = [path for path in missing if not path.is_file()]
        if missing:
            names = ", ".join(f"{path.name} (looked at {path})" for path in missing)
            problems.append(f"{STORE_SETTING}: missing source file(s) {names} — {EXPORT_STORE}")
    for path, setting, how in ((crm_file, CRM_SETTING, EXPORT_CRM), (analytics_file, ANALYTICS_SETTING,
                                                                     EXPORT_ANALYTICS)):  # fmt: skip
        if path is None or path.is_file():
            continue
        found = "a directory" if path.is_dir() else "nothing"
        problems.append(f"{setting} points at {found} ({path}), not a file — {how}")
    if problems:
        raise SourceFileError("; ".join(problems))


def _read_all(
    store_dir: Path,
    crm_file: Path | None,
    analytics_file: Path | None,
    stored_skus: set[str],
    default_country: str,
    crm_mapping: CrmMapping,
    now: datetime,
    say: Callable[[str], None],
) -> _Read:
    intakes = {
        "products": Intake("products", PRODUCTS_FILE),
        "customers": Intake("customers", CUSTOMERS_FILE),
        "orders": Intake("orders", ORDERS_FILE),
    }
    products = read_products(store_dir / PRODUCTS_FILE, intakes["products"])
    intakes["products"].release()
    known_skus = stored_skus | set(products["sku"])
    say(f"products: {len(products)} read")
    customers = read_customers(store_dir / CUSTOMERS_FILE, intakes["customers"], default_country)
    intakes["customers"].release()
    say(f"customers: {len(customers)} read")
    orders = read_orders(store_dir / ORDERS_FILE, intakes["orders"], known_skus, now)
    intakes["orders"].release()
    say(f"orders: {len(orders.orders)} orders, {len(orders.lines)} lines read")
    contacts = events = None
    if crm_file is not None:
        intakes["crm"] = Intake("crm", crm_file.name)
        contacts = read_contacts(crm_file, intakes["crm"], default_country, crm_mapping, now)
        intakes["crm"].release()
        say(f"crm: {len(contacts)} contacts read")
    if analytics_file is not None:
        intakes["analytics"] = Intake("analytics", analytics_file.name)
        events = read_events(analytics_file, intakes["analytics"], known_skus, now)
        say(f"analytics: {len(events)} event items read")
    return _Read(intakes, products, customers, orders.orders, orders.lines, contacts, events)


def _write_all(conn: Connection, read: _Read, run_id: str, now: datetime, say: Callable[[str], None]) -> SyncReport:
    product_ids = _upsert_products(conn, read.products)
    read = _without_forgotten(conn, read)
    stored = stored_identities(conn)
    read = _keep_stored_contacts(read, stored)
    resolution = resolve(_identity_records(read), stored)
    new_profiles = int((resolution.golden.index < 0).sum())
    resolution = save_profiles(conn, resolution, now)
    say(f"profiles: {resolution.golden.shape[0]} ({new_profiles} new)")
    consents = save_statements(conn, _consent_statements(read, resolution, stored), now)
    order_count = _replace_orders(conn, read.orders, read.lines, resolution, product_ids)
    say(f"orders: {order_count} orders, {len(read.lines)} lines written")
    event_count = _replace_events(conn, read.events, resolution, product_ids) if read.events is not None else 0
    say(f"analytics: {event_count} event rows written")
    counts = _reconcile(read)
    _save_quarantine(conn, read.intakes, run_id, now)
    _save_source_loads(conn, counts, run_id, now)
    return SyncReport(
        run_id=run_id,
        sources=counts,
        profiles=int(resolution.records["customer_id"].nunique()),
        identities=len(resolution.records),
        consents=consents,
        new_profiles=new_profiles,
        products=len(read.products),
        orders=order_count,
        order_lines=len(read.lines),
        events=event_count,
    )


def _without_forgotten(conn: Connection, read: _Read) -> _Read:
    """Leave out everyone `omnicast forget` erased: their customer and contact rows are skipped (counted, never
    quarantined: that would keep their data), their orders load without the address (anonymous sales)."""
    frames = [read.customers["email"], read.orders["email"]]
    if read.contacts is not None:
        frames.append(read.contacts["email"])
    addresses = sorted({str(value) for frame in frames for value in frame.dropna().unique()})
    if not addresses:
        return read
    listed = suppressed(conn, "email", dict(enumerate(addresses)))
    forgotten = {addresses[i] for i, reason in listed.items() if reason == "erased"}
    if not forgotten:
        return read
    customers = read.customers[~read.customers["email"].isin(forgotten)]
    read.intakes["customers"].forgotten_skipped += len(read.customers) - len(customers)
    contacts = read.contacts
    if contacts is not None:
        contacts = contacts[~contacts["email"].isin(forgotten)]
        read.intakes["crm"].forgotten_skipped += len(read.contacts) - len(contacts)  # type: ignore[arg-type]
    orders = read.orders.assign(email=read.orders["email"].where(~read.orders["email"].isin(forgotten), None))
    log.info("left out %d customer and %d contact rows of people erased earlier", len(read.customers) - len(customers),
             (len(read.contacts) - len(contacts)) if read.contacts is not None and contacts is not None else 0)
    return replace(read, customers=customers, orders=orders, contacts=contacts)


def _reconcile(read: _Read) -> list[SourceCount]:
    loaded = {
        "products": len(read.products) + int(read.products.attrs.get("image_rows", 0)),
        "customers": len(read.customers),
        "orders": len(read.lines),
        "crm": len(read.contacts) if read.contacts is not None else 0,
        "analytics": events_per_line(read.events) if read.events is not None else 0,
    }
    return [intake.count(loaded[name]) for name, intake in read.intakes.items()]


# --- identities and consents --------------------------------------------------------------------------


def _keep_stored_contacts(read: _Read, stored: pd.DataFrame) -> _Read:
    """A set-aside email or phone is unknown, not empty: the record keeps the value its identity has stored."""
    customers = _with_stored(read.customers, SHOPIFY, stored)
    contacts = _with_stored(read.contacts, CRM, stored) if read.contacts is not None else None
    return _Read(read.intakes, read.products, customers, read.orders, read.lines, contacts, read.events)


def _with_stored(frame: pd.DataFrame, source: str, stored: pd.DataFrame) -> pd.DataFrame:
    flags = {"email": frame[UNKNOWN_EMAIL], "phone": frame[UNKNOWN_PHONE]}
    if not any(flag.any() for flag in flags.values()):
        return frame
    known = stored[stored["source"] == source].drop_duplicates("external_id").set_index("external_id")
    frame = frame.copy()
    for name, unknown in flags.items():
        if unknown.any():
            frame.loc[unknown, name] = frame.loc[unknown, "external_id"].map(known[name])
            frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
    return frame


def _identity_records(read: _Read) -> pd.DataFrame:
    """Every person-like record of this sync, in the shape :func:`models.identity.resolve` wants."""
    customers = read.customers
    parts = [records_frame(SHOPIFY, customers, pd.to_numeric(customers["external_id"], errors="coerce"))]
    guests = _guests(read.orders, set(customers["email"].dropna()))
    parts.append(records_frame(GUEST, guests, _epoch_seconds(guests["created_at"])))
    if read.contacts is not None:
        parts.append(records_frame(CRM, read.contacts, _epoch_seconds(read.contacts["modified_at"])))
    if read.events is not None:
        users = pd.DataFrame({"external_id": read.events["user_id"].dropna().astype(object).unique()})
        parts.append(records_frame(ANALYTICS, users))
    return pd.concat(parts, ignore_index=True)


def _epoch_seconds(stamps: pd.Series) -> pd.Series:
    """Seconds since 1970 (NaN where unknown): a recency to rank records of one source by."""
    return (stamps - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)


def _guests(orders: pd.DataFrame, customer_emails: set[str]) -> pd.DataFrame:
    """Guest checkouts: order emails no Shopify customer has, described by their latest order."""
    guest_orders = orders[orders["email"].notna() & ~orders["email"].isin(customer_emails)]
    latest = guest_orders.sort_values("created_at", kind="stable").drop_duplicates("email", keep="last")
    return latest.assign(external_id=latest["email"]).reset_index(drop=True)


def _consent_statements(read: _Read, resolution: Resolution, stored: pd.DataFrame) -> pd.DataFrame:
    """Every (customer, channel, source, state, recorded_at) statement the files make; blank = none.

    CRM "Marketing contact status" becomes channel ``marketing`` (granted: marketing contact; denied:
    non-marketing contact, who gets no marketing message on any channel). Denials kept from rows quarantined
    whole are added; :func:`models.consent.combine_statements` lets a denial beat a grant of the same source.
    """
    parts = []
    shopify = read.customers.assign(customer_id=read.customers["external_id"].map(resolution.customer_of(SHOPIFY)))
    parts += [statements_from(shopify, "accepts_email", "email", SHOPIFY, None),
              statements_from(shopify, "accepts_sms", "sms", SHOPIFY, None)]  # fmt: skip
    if read.contacts is not None:
        crm = read.contacts.assign(customer_id=read.contacts["external_id"].map(resolution.customer_of(CRM)))
        for channel, column in CONSENT_COLUMNS.items():
            parts.append(statements_from(crm, column, channel, CRM, "modified_at"))
    guests = _guest_marketing(read.orders, resolution)
    parts.append(statements_from(guests, "accepts_marketing", "email", GUEST, "created_at"))
    parts += _kept_denials(read, resolution, stored)
    return pd.concat(parts, ignore_index=True)


def _kept_denials(read: _Read, resolution: Resolution, stored: pd.DataFrame) -> list[pd.DataFrame]:
    """Denials stated by quarantined rows, as statements of whoever the row names: by its external id (a
    repeated Customer/Record ID; a guest's email for an order that could not be loaded), else by its email
    (this sync's records first, then stored identities). Nobody named: nobody to deny."""
    parts = []
    for name, source in (("customers", SHOPIFY), ("crm", CRM), ("orders", GUEST)):
        intake = read.intakes.get(name)
        denials = intake.kept_denials() if intake is not None else None
        if denials is None or denials.empty:
            continue
        customer = denials["external_id"].map(_customer_ids(resolution.customer_of(source), stored, source))
        customer = customer.fillna(denials["email"].map(_customer_ids(resolution.customer_by_email(), stored)))
        named = customer.notna()
        parts.append(
            pd.DataFrame(
                {
                    "customer_id": customer[named].astype("int64"),
                    "channel": denials.loc[named, "channel"],
                    "source": source,
                    "state": "denied",
                    "recorded_at": pd.to_datetime(denials.loc[named, "recorded_at"], utc=True),
                }
            )
        )
    return parts


def _customer_ids(batch: pd.Series, stored: pd.DataFrame, source: str | None = None) -> pd.Series:
    """key → customer id from this sync's records, completed by stored identities (keyed by external id of
    ``source``, or by email when no source is given)."""
    known = stored[stored["source"] == source] if source else stored[stored["email"].notna()]
    key = "external_id" if source else "email"
    known = known.drop_duplicates(key).set_index(key)["customer_id"]
    return pd.concat([batch[~batch.index.duplicated()], known[~known.index.isin(batch.index)]])


def _guest_marketing(orders: pd.DataFrame, resolution: Resolution) -> pd.DataFrame:
    """A guest's latest stated 'Accepts Marketing' at checkout, dated by that order."""
    guest_ids = resolution.customer_of(GUEST)
    stated = orders[orders["accepts_marketing"].notna() & orders["email"].isin(guest_ids.index)]
    latest = stated.sort_values("created_at", kind="stable").drop_duplicates("email", keep="last")
    return latest.assign(customer_id=latest["email"].map(guest_ids))


# --- products -----------------------------------------------------------------------------------------


def _upsert_products(conn: Connection, products: pd.DataFrame) -> pd.Series:
    """Insert new SKUs, update changed ones (ids stay); returns sku → product id for every stored SKU."""
    stored = pd.DataFrame(conn.execute(select(_products)).mappings().all(), columns=[c.name for c in _products.c])
    stored = stored.set_index("sku")
    incoming = products.drop(columns=[ROW]).set_index("sku")
    new = incoming[~incoming.index.isin(stored.index)]
    if not new.empty:
        conn.execute(insert(_products), [clean_row(row) for row in new.reset_index().to_dict("records")])
    old = incoming[incoming.index.isin(stored.index)]
    before = stored.reindex(old.index)[PRODUCT_FIELDS].astype(object)
    after = old[PRODUCT_FIELDS].astype(object)
    same = (after == before) | (after.isna() & before.isna())
    changed = after[~same.all(axis=1)]
    if not changed.empty:
        records = changed.to_dict("records")
        rows = [{**clean_row(row), "_sku": sku} for sku, row in zip(changed.index, records, strict=True)]
        values: dict[str, Any] = {name: bindparam(name) for name in PRODUCT_FIELDS}
        conn.execute(update(_products).where(_products.c.sku == bindparam("_sku")).values(values), rows)
    ids = conn.execute(select(_products.c.sku, _products.c.id)).all()
    return pd.Series({sku: pid for sku, pid in ids}, dtype="int64")


# --- orders and lines ---------------------------------------------------------------------------------


def _replace_orders(
    conn: Connection, orders: pd.DataFrame, lines: pd.DataFrame, resolution: Resolution, product_ids: pd.Series
) -> int:
    """Replace the file's orders and their lines; an order keeps the id it had."""
    if orders.empty:
        return 0
    stored = pd.Series(dict(conn.execute(select(_orders.c.external_id, _orders.c.id)).all()), dtype="int64")
    ids = stored.reindex(orders["external_id"]).to_numpy(dtype="float64", copy=True)
    missing = np.isnan(ids)
    ids[missing] = reserve_ids(conn, _orders, int(missing.sum()))
    replaced = stored.reindex(orders["external_id"]).dropna().astype("int64").tolist()
    old_line_ids: list[int] = []
    for start in range(0, len(replaced), 5_000):
        chunk = replaced[start : start + 5_000]
        old_line_ids += conn.execute(select(_lines.c.id).where(_lines.c.order_id.in_(chunk))).scalars().all()
        conn.execute(delete(_lines).where(_lines.c.order_id.in_(chunk)))
        conn.execute(delete(_orders).where(_orders.c.id.in_(chunk)))
    frame = orders.assign(
        id=ids.astype("int64"), customer_id=orders["email"].map(resolution.customer_by_email()).astype("Int64")
    )
    bulk_insert(conn, _orders, frame)
    order_ids = pd.Series(frame["id"].to_numpy(), index=frame["external_id"])
    line_rows = lines.assign(
        id=recycled_ids(conn, _lines, old_line_ids, len(lines)),
        order_id=lines["order_external_id"].map(order_ids),
        product_id=lines["sku"].map(product_ids).astype("Int64"),
    )
    bulk_insert(conn, _lines, line_rows)
    return len(frame)


# --- events -------------------------------------------------------------------------------------------


def _replace_events(conn: Connection, events: pd.DataFrame, resolution: Resolution, product_ids: pd.Series) -> int:
    """Replace the stored events in the span the file covers by the file's events."""
    if events.empty:
        return 0
    first, last = events["occurred_at"].min().to_pydatetime(), events["occurred_at"].max().to_pydatetime()
    in_span = (_events.c.occurred_at >= first) & (_events.c.occurred_at <= last)
    old_ids = conn.execute(select(_events.c.id).where(in_span)).scalars().all()
    conn.execute(delete(_events).where(in_span))
    customer = events["user_id"].map(resolution.customer_of(ANALYTICS))
    by_device = _customer_by_device(events.assign(customer_id=customer))
    customer = customer.fillna(events["user_pseudo_id"].map(by_device))
    frame = events.assign(
        id=recycled_ids(conn, _events, old_ids, len(events)),
        customer_id=customer.astype("Int64"),
        product_id=events["sku"].map(product_ids).astype("Int64"),
    )
    bulk_insert(conn, _events, frame)
    return len(frame)


def _customer_by_device(events: pd.DataFrame) -> pd.Series:
    """user_pseudo_id → the customer last seen logged in on it (so anonymous browsing is theirs too)."""
    logged_in = events[events["customer_id"].notna()].sort_values("occurred_at", kind="stable")
    return logged_in.drop_duplicates("user_pseudo_id", keep="last").set_index("user_pseudo_id")["customer_id"]


# --- quarantine and source loads ----------------------------------------------------------------------


def _save_quarantine(conn: Connection, intakes: dict[str, Intake], run_id: str, now: datetime) -> None:
    parts = [intake.quarantine().assign(source=intake.source, file=intake.file) for intake in intakes.values()]
    rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if rows.empty:
        return
    bulk_insert(conn, _quarantine, rows.assign(run_id=run_id, created_at=now))


def _save_source_loads(conn: Connection, counts: list[SourceCount], run_id: str, now: datetime) -> None:
    rows = [{**asdict(count), "run_id": run_id, "loaded_at": now} for count in counts]
    conn.execute(insert(_source_loads), rows)


