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
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, Table, bindparam, delete, insert, select, update

from models.bulk import bulk_insert, clean_row, recycled_ids, reserve_ids, rows_where_in
from models.consent import UNDATED_GRANT, save_statements, statements_from, withdraw_grants
from models.identity import (
    ANALYTICS,
    CONTACT_ORDER,
    CRM,
    GUEST,
    SHOPIFY,
    Resolution,
    Touched,
    records_frame,
    resolve,
    save_profiles,
    stored_identities,
)
from models.schema import (
    Consent,
    Event,
    Identity,
    Order,
    OrderLine,
    Product,
    QuarantineRow,
    SourceLoad,
    SourceWatermark,
    utcnow,
)
from models.suppression import suppressed
from sources.analytics import events_per_line
from sources.base import ROLES, ReadContext, Reader, SourceConfig, SourceRead, SourceRefused
from sources.crm import CONSENT_COLUMNS, HUBSPOT, CrmMapping
from sources.registry import reader_for
from sources.shopify import UNKNOWN_EMAIL, UNKNOWN_PHONE
from sources.validate import ROW, Intake, SourceCount, SourceFileError

__all__ = [
    "UNDATED_GRANT", "SourceCount", "SourceFileError", "SourceSummary", "SyncReport", "sync_sources", "sync_store",
    "unlink_records",
]  # fmt: skip

log = logging.getLogger(__name__)

_products: Table = Product.__table__  # type: ignore[attr-defined]
_orders: Table = Order.__table__  # type: ignore[attr-defined]
_lines: Table = OrderLine.__table__  # type: ignore[attr-defined]
_events: Table = Event.__table__  # type: ignore[attr-defined]
_consents: Table = Consent.__table__  # type: ignore[attr-defined]
_quarantine: Table = QuarantineRow.__table__  # type: ignore[attr-defined]
_source_loads: Table = SourceLoad.__table__  # type: ignore[attr-defined]
_watermarks: Table = SourceWatermark.__table__  # type: ignore[attr-defined]
_identities: Table = Identity.__table__  # type: ignore[attr-defined]

PRODUCT_FIELDS = [
    "handle", "title", "product_type", "vendor", "tags", "price", "image_url",
    "flavour_notes", "roast", "origin", "consumable", "replenish_days", "active",
    "inventory_quantity", "published", "gift_card",
]  # fmt: skip


@dataclass
class SourceSummary:
    """One configured source in one sync (``omnicast sync --json`` gives one per role: ``store``, ``crm``,
    ``analytics``): where it was read from, whether only changes were asked for, the reconciliation summed over its
    resources (read = loaded + quarantined + duplicates skipped + forgotten), records the platform deleted, the
    watermarks reached, and the error that stopped it part-way (None when it read everything)."""

    platform: str
    location: str
    mode: str
    read: int
    loaded: int
    quarantined: int
    duplicates_skipped: int
    forgotten_skipped: int
    fields_quarantined: int
    deleted: int
    watermarks: dict[str, str]
    error: str | None = None


@dataclass
class SyncReport:
    """What one sync did: per-source reconciliation and what the unified data now holds.

    ``profiles``: golden customers this sync's records belong to (``new_profiles`` of them created now);
    ``identities``: source records resolved; ``consents``: consent statements the sources made (after merging);
    ``orders``/``order_lines``/``events``: rows written; ``quarantined``: rows set aside, all sources;
    ``fields_quarantined``: cells set aside in rows that were loaded anyway, all sources; ``deleted``: source
    records the platforms said no longer exist, unlinked. ``configured``: one :class:`SourceSummary` per configured
    source, by role (in the JSON as the keys ``store``, ``crm``, ``analytics``).
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
    deleted: int = 0
    configured: dict[str, SourceSummary] = field(default_factory=dict)
    quarantined: int = field(init=False)
    fields_quarantined: int = field(init=False)

    def __post_init__(self) -> None:
        self.quarantined = sum(count.rows_quarantined for count in self.sources)
        self.fields_quarantined = sum(count.fields_quarantined for count in self.sources)

    @property
    def reconciles(self) -> bool:
        """Every source's rows read = loaded + quarantined + duplicates skipped."""
        return all(count.reconciles for count in self.sources)

    @property
    def errors(self) -> dict[str, str]:
        """Role → what stopped that source part-way (its complete pages were written, its watermark kept)."""
        return {role: summary.error for role, summary in self.configured.items() if summary.error}

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form (for ``omnicast sync --json`` and Prefect artifacts): the report's fields, and one
        key per configured source (``store``, ``crm``, ``analytics``)."""
        result = asdict(self)
        configured = result.pop("configured")
        return {**result, **configured}


@dataclass
class _Read:
    """Everything read from the sources, checked, before any write."""

    intakes: dict[str, Intake]
    products: pd.DataFrame
    customers: pd.DataFrame
    orders: pd.DataFrame
    lines: pd.DataFrame
    contacts: pd.DataFrame | None
    events: pd.DataFrame | None
    reads: list[SourceRead] = field(default_factory=list)


ROLE_ORDER = {role: index for index, role in enumerate(ROLES)}
RESOURCE_OF_INTAKE = {"crm": "contacts", "analytics": "events"}
"""An intake's watermark resource where the names differ (the store's intakes are its resources)."""

STORE_SETTING = "OMNICAST_STORE_URL (--store)"
CRM_SETTING = "OMNICAST_CRM_URL (--crm)"
ANALYTICS_SETTING = "OMNICAST_ANALYTICS_URL (--analytics)"


def sync_sources(
    engine: Engine,
    readers: Sequence[Reader],
    *,
    run_id: str,
    default_country: str = "US",
    now: datetime | None = None,
    progress: Callable[[str], None] | None = None,
    full: bool = False,
) -> SyncReport:
    """Read every source (the store first: its SKUs are what orders and events may name), then write it all in
    one transaction; see the module docstring. ``full``: ignore stored watermarks and read everything."""
    started = time.perf_counter()
    now = now or utcnow()
    say = progress or (lambda _message: None)
    if not any(reader.role == "store" for reader in readers):
        raise SourceRefused(f"no store source is configured: set {STORE_SETTING} to a folder of Shopify exports, "
                            "shopify://SHOP.myshopify.com or woocommerce://HOST")  # fmt: skip
    check_sources(readers)
    with engine.connect() as conn:
        stored_skus = set(conn.execute(select(_products.c.sku)).scalars())
        watermarks = {} if full else stored_watermarks(conn)
    reads = _read_sources(readers, stored_skus, watermarks, default_country, now, say)
    with engine.begin() as conn:
        report = _write_all(conn, _combined(reads), run_id, now, say)
    report.seconds = round(time.perf_counter() - started, 3)
    log.info("sync %s: %d profiles, %d rows and %d cells quarantined, %.1fs", run_id, report.profiles,
             report.quarantined, report.fields_quarantined, report.seconds)  # fmt: skip
    return report


def sync_store(
    engine: Engine,
    store: Path | Reader,
    crm: Path | Reader | None,
    analytics: Path | Reader | None,
    *,
    run_id: str,
    default_country: str = "US",
    now: datetime | None = None,
    progress: Callable[[str], None] | None = None,
    crm_mapping: CrmMapping = HUBSPOT,
    full: bool = False,
) -> SyncReport:
    """:func:`sync_sources` with a path (an export folder or file) or a reader per role."""
    readers: list[Reader] = []
    for role, source, setting in (("store", store, STORE_SETTING), ("crm", crm, CRM_SETTING),
                                  ("analytics", analytics, ANALYTICS_SETTING)):  # fmt: skip
        if source is None:
            continue
        if isinstance(source, Path):
            options: dict[str, Any] = {"mapping": crm_mapping} if role == "crm" else {}
            readers.append(reader_for(SourceConfig(role, str(source), setting), **options))
        else:
            readers.append(source)
    return sync_sources(engine, readers, run_id=run_id, default_country=default_country, now=now,
                        progress=progress, full=full)  # fmt: skip


def check_sources(readers: Sequence[Reader]) -> None:
    """Every source's own check, before anything is read: all problems in one line (each naming its setting)."""
    problems = []
    for reader in readers:
        try:
            reader.check()
        except (SourceFileError, SourceRefused) as exc:
            problems.append(str(exc))
    if problems:
        raise SourceFileError("; ".join(problems))


def stored_watermarks(conn: Connection) -> dict[str, dict[str, str]]:
    """Source key (:func:`source_key`) → resource → watermark of the last committed read."""
    result: dict[str, dict[str, str]] = {}
    query = select(_watermarks.c.source, _watermarks.c.resource, _watermarks.c.watermark)
    for source, resource, mark in conn.execute(query):
        result.setdefault(source, {})[resource] = mark
    return result


def source_key(role: str, location: str) -> str:
    """Whose watermarks these are: the role and where it reads from (pointing a role elsewhere starts afresh)."""
    return f"{role} {location}"


def _read_sources(
    readers: Sequence[Reader],
    stored_skus: set[str],
    watermarks: dict[str, dict[str, str]],
    default_country: str,
    now: datetime,
    say: Callable[[str], None],
) -> list[SourceRead]:
    known = set(stored_skus)
    reads = []
    for reader in sorted(readers, key=lambda r: ROLE_ORDER[r.role]):
        marks = dict(watermarks.get(source_key(reader.role, reader.location), {}))
        context = ReadContext(known_skus=set(known), default_country=default_country, now=now, watermarks=marks,
                              say=say)  # fmt: skip
        read = reader.read(context)
        if read.error:
            log.warning("source %s (%s) stopped part-way; its complete pages are kept", read.role, read.platform)
        if read.role == "store":
            known |= set(read.frames["products"]["sku"])
        reads.append(read)
    return reads


def _combined(reads: list[SourceRead]) -> _Read:
    by_role = {read.role: read for read in reads}
    store = by_role["store"]
    intakes = {name: intake for read in reads for name, intake in read.intakes.items()}
    crm, analytics = by_role.get("crm"), by_role.get("analytics")
    return _Read(
        intakes,
        store.frames["products"],
        store.frames["customers"],
        store.frames["orders"],
        store.frames["lines"],
        crm.frames["contacts"] if crm is not None else None,
        analytics.frames["events"] if analytics is not None else None,
        reads,
    )


def _write_all(conn: Connection, read: _Read, run_id: str, now: datetime, say: Callable[[str], None]) -> SyncReport:
    product_ids = _upsert_products(conn, read.products)
    read = _without_forgotten(conn, read)
    stored = stored_identities(conn, _touched(read))
    read = _keep_stored_contacts(read, stored)
    resolution = resolve(_identity_records(read, stored), stored)
    new_profiles = int((resolution.golden.index < 0).sum())
    resolution = save_profiles(conn, resolution, now, stored)
    say(f"profiles: {resolution.golden.shape[0]} ({new_profiles} new)")
    consents = save_statements(conn, _consent_statements(read, resolution, stored), now)
    deleted = _unlink_deleted(conn, read.reads)
    order_count = _replace_orders(conn, read.orders, read.lines, resolution, product_ids, stored)
    say(f"orders: {order_count} orders, {len(read.lines)} lines written")
    event_count = _replace_events(conn, read.events, resolution, product_ids) if read.events is not None else 0
    say(f"analytics: {event_count} event rows written")
    counts = _reconcile(read)
    _save_quarantine(conn, read.intakes, run_id, now)
    _save_source_loads(conn, counts, read.reads, run_id, now)
    _save_watermarks(conn, read.reads, run_id, now)
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
        deleted=sum(deleted.values()),
        configured=_summaries(read.reads, counts, deleted),
    )


def _summaries(reads: list[SourceRead], counts: list[SourceCount], deleted: dict[str, int]) -> dict[str, SourceSummary]:
    by_name = {count.source: count for count in counts}
    result = {}
    for read in reads:
        mine = [by_name[name] for name in read.intakes if name in by_name]
        result[read.role] = SourceSummary(
            platform=read.platform,
            location=read.location,
            mode="incremental" if read.incremental else "full",
            read=sum(c.rows_read for c in mine),
            loaded=sum(c.rows_loaded for c in mine),
            quarantined=sum(c.rows_quarantined for c in mine),
            duplicates_skipped=sum(c.duplicates_skipped for c in mine),
            forgotten_skipped=sum(c.forgotten_skipped for c in mine),
            fields_quarantined=sum(c.fields_quarantined for c in mine),
            deleted=deleted.get(read.role, 0),
            watermarks=dict(read.watermarks),
            error=read.error,
        )
    return result


# --- records the platforms deleted --------------------------------------------------------------------


IDENTITY_SOURCE = {"store": SHOPIFY, "crm": CRM}
"""The identity source a role's people records are stored under."""


def _unlink_deleted(conn: Connection, reads: list[SourceRead]) -> dict[str, int]:
    """Records a platform says it deleted (``deleted``), or that a complete listing no longer holds (``present``),
    unlinked (:func:`unlink_records`); role → how many."""
    unlinked: dict[str, int] = {}
    for read in reads:
        source = IDENTITY_SOURCE.get(read.role)
        if source is None:
            continue
        gone = set(read.deleted)
        if read.present is not None:
            stored = conn.execute(select(_identities.c.external_id).where(_identities.c.source == source)).scalars()
            gone |= {external_id for external_id in stored if external_id not in read.present}
        if gone:
            unlinked[read.role] = unlink_records(conn, source, sorted(gone))
    return unlinked


def unlink_records(conn: Connection, source: str, external_ids: Sequence[str]) -> int:
    """Source records the platform deleted: their identity is unlinked from the profile (the record no longer
    vouches for anyone) and that source's consent grants for the profile are taken back; its denials stay, and so do
    the orders (the sales happened). The profile stays while any other source knows the person; erasing a person is
    ``omnicast forget``'s job. Returns how many identities were unlinked."""
    ids = sorted({str(external_id) for external_id in external_ids})
    unlinked = 0
    customers: list[int] = []
    for start in range(0, len(ids), 5_000):
        chunk = ids[start : start + 5_000]
        where = (_identities.c.source == source) & (_identities.c.external_id.in_(chunk))
        customers += conn.execute(select(_identities.c.customer_id).where(where)).scalars().all()
        unlinked += conn.execute(delete(_identities).where(where)).rowcount or 0
    withdraw_grants(conn, customers, source)
    return unlinked


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


def _touched(read: _Read) -> Touched:
    """Every external id, email and phone this sync's records (and the denials of its quarantined rows) can match
    stored identities by: all an incremental sync needs to read of them."""
    external_ids: set[str] = set()
    emails: set[str] = set()
    phones: set[str] = set()
    people = [read.customers, read.orders[["email"]], *([read.contacts] if read.contacts is not None else [])]
    people += [intake.kept_denials() for intake in read.intakes.values()]
    for frame in people:
        for name, keys in (("external_id", external_ids), ("email", emails), ("phone", phones)):
            if name in frame.columns:
                keys.update(str(value) for value in frame[name].dropna().unique())
    if read.events is not None:
        external_ids.update(str(value) for value in read.events["user_id"].dropna().unique())
    return Touched(frozenset(external_ids), frozenset(emails), frozenset(phones))


def _keep_stored_contacts(read: _Read, stored: pd.DataFrame) -> _Read:
    """A set-aside email or phone is unknown, not empty: the record keeps the value its identity has stored."""
    customers = _with_stored(read.customers, SHOPIFY, stored)
    contacts = _with_stored(read.contacts, CRM, stored) if read.contacts is not None else None
    return replace(read, customers=customers, contacts=contacts)


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


def _identity_records(read: _Read, stored: pd.DataFrame) -> pd.DataFrame:
    """Every person-like record of this sync, in the shape :func:`models.identity.resolve` wants."""
    customers = read.customers
    parts = [records_frame(SHOPIFY, customers, pd.to_numeric(customers["external_id"], errors="coerce"))]
    store_customers = stored.loc[stored["source"] == SHOPIFY, "email"].dropna()
    guests = _guests(read.orders, set(customers["email"].dropna()) | set(store_customers))
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
    """Guest checkouts: order emails no store customer has (read now or stored: an incremental read brings orders
    of customers it does not re-read), described by their latest order."""
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
    for column, channel in (("accepts_email", "email"), ("accepts_sms", "sms")):
        dated_by = f"{column}_at" if f"{column}_at" in shopify.columns else None  # the API dates them, exports do not
        parts.append(statements_from(shopify, column, channel, SHOPIFY, dated_by))
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
    if source is None:  # an email several records share: the store customer's profile first
        known = known.assign(_rank=known["source"].map(CONTACT_ORDER).fillna(9)).sort_values("_rank", kind="stable")
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
    conn: Connection,
    orders: pd.DataFrame,
    lines: pd.DataFrame,
    resolution: Resolution,
    product_ids: pd.Series,
    identities: pd.DataFrame,
) -> int:
    """Replace the file's orders and their lines; an order keeps the id it had."""
    if orders.empty:
        return 0
    known = rows_where_in(conn, select(_orders.c.external_id, _orders.c.id), _orders.c.external_id,
                          orders["external_id"].tolist())  # fmt: skip
    stored = pd.Series(dict(known), dtype="int64")
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
        id=ids.astype("int64"),
        customer_id=orders["email"].map(_customer_ids(resolution.customer_by_email(), identities)).astype("Int64"),
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


def _save_source_loads(
    conn: Connection, counts: list[SourceCount], reads: list[SourceRead], run_id: str, now: datetime
) -> None:
    """One row per intake: its reconciliation, its source's platform, and the watermark its resource reached."""
    platform = {name: read.platform for read in reads for name in read.intakes}
    mark = {name: read.watermarks.get(RESOURCE_OF_INTAKE.get(name, name)) for read in reads for name in read.intakes}
    rows = [
        {**asdict(count), "platform": platform.get(count.source, ""), "watermark": mark.get(count.source),
         "run_id": run_id, "loaded_at": now}
        for count in counts
    ]  # fmt: skip
    conn.execute(insert(_source_loads), rows)


def _save_watermarks(conn: Connection, reads: list[SourceRead], run_id: str, now: datetime) -> None:
    """Each read's watermarks replace the stored ones of its source, in the sync's transaction: they move only
    when the rows they cover are written."""
    for read in reads:
        key = source_key(read.role, read.location)
        for resource, mark in read.watermarks.items():
            where = (_watermarks.c.source == key) & (_watermarks.c.resource == resource)
            conn.execute(delete(_watermarks).where(where))
            conn.execute(insert(_watermarks).values(source=key, resource=resource, watermark=mark, run_id=run_id,
                                                    updated_at=now))  # fmt: skip


