"""Identity resolution: source records (Shopify customers, CRM contacts, guest checkouts, analytics
users) become one golden ``Customer`` per person, each record kept as an ``Identity``.

Matching (emails are normalized lowercase, phones E.164, before they get here):

1. Shopify customers with the same email are one person (duplicates differing in case/spaces); a
   customer without email is a person of their own.
2. Guest-checkout order emails (identity source ``shopify_order``) are people too, joined by email.
3. A CRM contact joins a store person by email, else by phone (when exactly one store customer has
   it); otherwise it is a CRM-only person.
4. An analytics ``user_id`` is a Shopify Customer ID and joins that customer; unknown ones are dropped.

Stability: the send ledger references customer ids, so a record already stored as an identity keeps
its customer forever, and a new record joins the profile its match already has (the oldest one if
its matches point at several). Stored identities absent from today's files still take part in matching: all of
them, or (an incremental day) those :func:`stored_identities` finds from the day's ids, emails and phones, which
resolve the day's records exactly as all of them would.
Profiles are never merged or split automatically.

Survivorship of golden fields (non-empty beats empty; within a source the newest record wins —
highest Shopify Customer ID, latest CRM modification, latest guest order):

- email, phone, first and last name: Shopify, then CRM, then guest checkout;
- address (city, region, country, zip) as one block, from the first of those sources that has one;
- birthday, loyalty tier, timezone: CRM, the only source that knows them;
- a field no record of this sync fills keeps its stored value (a thinner export never erases data);
- a profile whose records in this sync all rank below a source it is already known from (an incremental read brought
  only its CRM contact or a guest order, while its Shopify customer is stored) only *fills* empty contact fields: a
  lower-ranked record never overwrites what a better source said.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, bindparam, select, update

from models.bulk import READ_ALL_FROM, bulk_insert, reserve_ids, rows_where_in
from models.schema import Customer, Identity

SHOPIFY = "shopify"
GUEST = "shopify_order"
CRM = "crm"
ANALYTICS = "analytics"
STORE_SOURCES = (SHOPIFY, GUEST)

NAME_FIELDS = ["first_name", "last_name"]
ADDRESS_FIELDS = ["city", "region", "country", "zip"]
PROFILE_FIELDS = ["birthday", "loyalty_tier", "timezone"]
GOLDEN_FIELDS = ["email", "phone", *NAME_FIELDS, *ADDRESS_FIELDS, *PROFILE_FIELDS]
RECORD_COLUMNS = ["source", "external_id", "email", "phone", *NAME_FIELDS, *ADDRESS_FIELDS, *PROFILE_FIELDS]

CONTACT_ORDER = {SHOPIFY: 0, CRM: 1, GUEST: 2}
PROFILE_ORDER = {CRM: 0}

_customers = Customer.__table__  # type: ignore[attr-defined]
_identities = Identity.__table__  # type: ignore[attr-defined]


@dataclass
class Resolution:
    """Every record of this sync with the customer it belongs to (negative ids: profiles to create)."""

    records: pd.DataFrame
    golden: pd.DataFrame
    fill_only: frozenset[int] = frozenset()
    """Stored profiles this sync knows only from sources ranked below one they are stored from: their contact
    fields are filled where empty, never overwritten."""

    def customer_of(self, source: str) -> pd.Series:
        """external_id → customer_id for one source's records."""
        picked = self.records[self.records["source"] == source]
        return picked.set_index("external_id")["customer_id"]

    def customer_by_email(self) -> pd.Series:
        """Normalized email → customer_id, a Shopify customer's profile first."""
        known = self.records[self.records["email"].notna()]
        ranked = known.assign(_rank=known["source"].map(CONTACT_ORDER).fillna(9)).sort_values("_rank", kind="stable")
        return ranked.drop_duplicates("email").set_index("email")["customer_id"]


def records_frame(source: str, frame: pd.DataFrame, recency: pd.Series | None = None) -> pd.DataFrame:
    """A reader's frame reshaped into identity records (missing fields empty)."""
    records = pd.DataFrame(index=frame.index)
    records["source"] = source
    for name in RECORD_COLUMNS[1:]:
        records[name] = frame[name] if name in frame.columns else None
    records["recency"] = (recency if recency is not None else pd.Series(0.0, index=frame.index)).astype(float)
    return records.reset_index(drop=True)


def resolve(records: pd.DataFrame, stored: pd.DataFrame) -> Resolution:
    """Assign every record a customer id: stored ones keep theirs, new ones join their match or a new profile.

    ``stored`` holds the identities already in the database (source, external_id, email, phone, customer_id).
    """
    records = records.drop_duplicates(["source", "external_id"], keep="last").reset_index(drop=True)
    keyed = stored.set_index(["source", "external_id"])["customer_id"]
    index = pd.MultiIndex.from_frame(records[["source", "external_id"]])
    records["known"] = keyed.reindex(index).to_numpy(dtype=float)  # float: grouped in C, not object by object
    ghosts = _ghosts(stored, index)
    everyone = pd.concat([records.assign(ghost=False), ghosts], ignore_index=True)
    everyone["key"] = _cluster_keys(everyone)
    everyone = everyone[everyone["key"].notna() | everyone["known"].notna()]
    cluster_customer = everyone.groupby("key")["known"].min()
    new_ids = _new_profile_ids(cluster_customer, everyone["key"])
    chosen = cluster_customer.fillna(new_ids)
    everyone["customer_id"] = everyone["known"].fillna(everyone["key"].map(chosen)).astype("int64")
    batch = everyone[~everyone["ghost"]].drop(columns=["ghost", "known", "key"]).reset_index(drop=True)
    return Resolution(records=batch, golden=golden_fields(batch), fill_only=_outranked(batch, stored))


def _outranked(batch: pd.DataFrame, stored: pd.DataFrame) -> frozenset[int]:
    """Stored customers whose best record in this sync ranks below their best stored identity."""
    if stored.empty:
        return frozenset()
    best_stored = stored.assign(_rank=stored["source"].map(CONTACT_ORDER)).groupby("customer_id")["_rank"].min()
    best_now = batch.assign(_rank=batch["source"].map(CONTACT_ORDER)).groupby("customer_id")["_rank"].min()
    both = pd.concat({"now": best_now, "stored": best_stored}, axis=1, join="inner")
    return frozenset(int(customer) for customer in both.index[both["now"].fillna(9) > both["stored"].fillna(9)])


def _ghosts(stored: pd.DataFrame, batch_index: pd.MultiIndex) -> pd.DataFrame:
    """Stored identities not in today's files: they match new records but change nothing themselves."""
    stored_index = pd.MultiIndex.from_frame(stored[["source", "external_id"]])
    absent = stored[~stored_index.isin(batch_index)]
    ghosts = absent[["source", "external_id", "email", "phone"]].copy()
    ghosts["known"] = absent["customer_id"].to_numpy(dtype=float)
    ghosts["ghost"] = True
    return ghosts


def _cluster_keys(everyone: pd.DataFrame) -> pd.Series:
    """One matching key per record (records with the same key are the same person); None = no person."""
    source, email = everyone["source"], everyone["email"]
    own = source + ":" + everyone["external_id"].astype(str)
    by_email = ("e:" + email).where(email.notna())
    keys = pd.Series(None, index=everyone.index, dtype=object)
    store = source.isin(STORE_SOURCES)
    keys[store] = by_email[store].fillna(own[store])
    keys[source == CRM] = _crm_keys(everyone, keys, by_email, own)[source == CRM]
    shopify_keys = keys[source == SHOPIFY].set_axis(everyone.loc[source == SHOPIFY, "external_id"])
    shopify_keys = shopify_keys[~shopify_keys.index.duplicated()]
    analytics = source == ANALYTICS
    keys[analytics] = everyone.loc[analytics, "external_id"].map(shopify_keys)
    return keys


def _crm_keys(everyone: pd.DataFrame, keys: pd.Series, by_email: pd.Series, own: pd.Series) -> pd.Series:
    """CRM contacts: a store person's email, else the one store customer with their phone, else their own."""
    store_keys = set(keys[everyone["source"].isin(STORE_SOURCES)].dropna())
    shopify = everyone[(everyone["source"] == SHOPIFY) & everyone["phone"].notna()]
    pairs = pd.DataFrame({"phone": shopify["phone"], "key": keys[shopify.index]}).drop_duplicates()
    phone_keys = pairs[~pairs["phone"].duplicated(keep=False)].set_index("phone")["key"]
    by_store_email = by_email.where(by_email.isin(store_keys))
    by_phone = everyone["phone"].map(phone_keys)
    return by_store_email.fillna(by_phone).fillna(by_email).fillna(own)


def _new_profile_ids(cluster_customer: pd.Series, keys: pd.Series) -> pd.Series:
    """Placeholder ids (-1, -2, …) for clusters without a stored profile, in the order records came."""
    missing = cluster_customer[cluster_customer.isna()].index
    order = keys[keys.isin(missing)].drop_duplicates()
    return pd.Series(-np.arange(1, len(order) + 1, dtype=float), index=order.to_numpy())


# --- survivorship -------------------------------------------------------------------------------------


def golden_fields(records: pd.DataFrame) -> pd.DataFrame:
    """Golden field values per customer_id from this sync's records (see the module docstring)."""
    people = records[records["source"] != ANALYTICS]
    contact = _ranked(people, CONTACT_ORDER)
    golden = contact.groupby("customer_id", sort=True)[["email", "phone", *NAME_FIELDS]].first()
    has_address = contact[ADDRESS_FIELDS].notna().any(axis=1)
    address = contact[has_address].drop_duplicates("customer_id").set_index("customer_id")[ADDRESS_FIELDS]
    profile = _ranked(people[people["source"].isin(PROFILE_ORDER)], PROFILE_ORDER)
    extra = profile.groupby("customer_id")[PROFILE_FIELDS].first()
    golden = golden.join(address, how="left").join(extra, how="left")
    golden = golden.reindex(columns=GOLDEN_FIELDS)
    return golden.astype(object).where(golden.notna(), None)


def _ranked(records: pd.DataFrame, order: dict[str, int]) -> pd.DataFrame:
    ranked = records.assign(_rank=records["source"].map(order))
    return ranked.sort_values(["customer_id", "_rank", "recency"], ascending=[True, True, False], kind="stable")


# --- storage ------------------------------------------------------------------------------------------


IDENTITY_COLUMNS = ["source", "external_id", "email", "phone", "customer_id"]


@dataclass(frozen=True)
class Touched:
    """What a sync's records can match stored identities by: their external ids (an analytics user id is a Shopify
    customer id), emails and phones."""

    external_ids: frozenset[str]
    emails: frozenset[str]
    phones: frozenset[str]


def stored_identities(conn: Connection, touched: Touched | None = None) -> pd.DataFrame:
    """The identities already in the database, for :func:`resolve`: all of them, or (``touched`` given) those that
    can take part in resolving this sync's records. That is the records themselves, every identity sharing an
    external id, email or phone with them, and every identity of the profiles found, repeated until nothing new
    turns up: a profile comes whole, and a match made through a stored record is made. Resolving against these
    gives what resolving against every identity gives; an incremental sync reads a few thousand rows, not all."""
    query = select(_identities.c.id, *(_identities.c[name] for name in IDENTITY_COLUMNS))
    rows = conn.execute(query).all() if touched is None else _touched_rows(conn, query, touched)
    return pd.DataFrame([row[1:] for row in rows], columns=IDENTITY_COLUMNS, dtype=object)


def _touched_rows(conn: Connection, query: Any, touched: Touched) -> list[Any]:
    """The fixpoint of :func:`stored_identities`. When a round has as many keys to look up as reading the whole table
    costs (a first load, ``--full``), the whole table is read once instead: it holds the fixpoint."""
    found: dict[int, Any] = {}
    asked: dict[str, set[Any]] = {"external_id": set(), "email": set(), "phone": set(), "customer_id": set()}
    pending: dict[str, set[Any]] = {"external_id": set(touched.external_ids), "email": set(touched.emails),
                                    "phone": set(touched.phones), "customer_id": set()}  # fmt: skip
    while any(pending.values()):
        if sum(len(values) for values in pending.values()) >= READ_ALL_FROM:
            return list(conn.execute(query).all())
        fresh = []
        for name, values in pending.items():
            for row in rows_where_in(conn, query, _identities.c[name], values):
                if row.id not in found:
                    found[row.id] = row
                    fresh.append(row)
            asked[name] |= values
        pending = {
            "external_id": set(),
            "email": {row.email for row in fresh if row.email is not None} - asked["email"],
            "phone": {row.phone for row in fresh if row.phone is not None} - asked["phone"],
            "customer_id": {row.customer_id for row in fresh} - asked["customer_id"],
        }
    return list(found.values())


def save_profiles(
    conn: Connection, resolution: Resolution, now: datetime, stored: pd.DataFrame | None = None
) -> Resolution:
    """Create new profiles, update changed golden fields and identities; returns real customer ids. ``stored``: the
    identities :func:`resolve` was given (read again when not passed)."""
    ids = _insert_new_customers(conn, resolution.golden, now)
    _update_customers(conn, resolution.golden[resolution.golden.index > 0], now, resolution.fill_only)
    placeholder = resolution.records["customer_id"]
    records = resolution.records.assign(customer_id=placeholder.map(ids).fillna(placeholder).astype("int64"))
    _save_identities(conn, records, now, stored if stored is not None else stored_identities(conn))
    return Resolution(records=records, golden=resolution.golden.rename(index=ids))


def _insert_new_customers(conn: Connection, golden: pd.DataFrame, now: datetime) -> dict[int, int]:
    """Insert profiles with placeholder ids (-1 first: the order records came in); map placeholder → database id."""
    new = golden[golden.index < 0].sort_index(ascending=False)
    if new.empty:
        return {}
    created = reserve_ids(conn, _customers, len(new))
    bulk_insert(conn, _customers, new.reset_index(drop=True).assign(id=created, created_at=now, updated_at=now))
    return dict(zip(new.index.tolist(), created.tolist(), strict=True))


def _update_customers(conn: Connection, golden: pd.DataFrame, now: datetime, fill_only: frozenset[int]) -> int:
    """Write golden fields that differ from the stored profile; empty batch values keep stored ones, and a
    ``fill_only`` profile's stored contact fields stay whatever this sync says."""
    if golden.empty:
        return 0
    stored = _stored_customers(conn, golden.index)
    current = stored.reindex(golden.index)
    merged = golden.where(golden.notna(), current)
    thin = golden.index.isin(list(fill_only))
    if thin.any():
        contact = [name for name in GOLDEN_FIELDS if name not in PROFILE_FIELDS]
        kept = current.loc[thin, contact]
        merged.loc[thin, contact] = kept.where(kept.notna(), merged.loc[thin, contact])
    differs = ~((merged == current) | (merged.isna() & current.isna()))
    changed = merged[differs.any(axis=1)]
    if changed.empty:
        return 0
    rows = [{**_clean(row), "_id": int(cid), "updated_at": now} for cid, row in changed.iterrows()]
    values: dict[str, Any] = {name: bindparam(name) for name in [*GOLDEN_FIELDS, "updated_at"]}
    conn.execute(update(_customers).where(_customers.c.id == bindparam("_id")).values(values), rows)
    return len(rows)


def _stored_customers(conn: Connection, ids: pd.Index) -> pd.DataFrame:
    """The stored golden fields of these profiles (or more: see :func:`models.bulk.rows_where_in`)."""
    columns = [_customers.c.id, *(_customers.c[name] for name in GOLDEN_FIELDS)]
    rows = rows_where_in(conn, select(*columns), _customers.c.id, ids.tolist())
    frame = pd.DataFrame(rows, columns=["id", *GOLDEN_FIELDS], dtype=object).set_index("id")
    return frame.astype(object).where(frame.notna(), None)


def _save_identities(conn: Connection, records: pd.DataFrame, now: datetime, stored: pd.DataFrame) -> None:
    """Insert new identities; update email/phone of stored ones that changed (``seen_at`` moves then). ``stored``
    holds at least every stored identity among ``records``."""
    stored = stored.drop_duplicates(["source", "external_id"]).set_index(["source", "external_id"])
    batch = records.set_index(["source", "external_id"])[["email", "phone", "customer_id"]]
    is_new = ~batch.index.isin(stored.index)
    new = batch[is_new].reset_index()
    if not new.empty:
        bulk_insert(conn, _identities, new.assign(seen_at=now))
    old = batch[~is_new]
    before = stored.reindex(old.index)
    same = (old[["email", "phone"]] == before[["email", "phone"]]) | (
        old[["email", "phone"]].isna() & before[["email", "phone"]].isna()
    )
    changed = old[~same.all(axis=1)].reset_index()
    if not changed.empty:
        rows = [
            {"_source": r["source"], "_external_id": r["external_id"], "email": r["email"], "phone": r["phone"],
             "seen_at": now}
            for r in (_clean(row) for row in changed.to_dict("records"))
        ]  # fmt: skip
        statement = (
            update(_identities)
            .where(_identities.c.source == bindparam("_source"))
            .where(_identities.c.external_id == bindparam("_external_id"))
            .values(email=bindparam("email"), phone=bindparam("phone"), seen_at=bindparam("seen_at"))
        )
        conn.execute(statement, rows)


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    """Database-ready values: pandas missing markers become None, numpy scalars become Python ones."""
    clean: dict[str, Any] = {}
    for name, value in row.items():
        if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT or value is pd.NA:
            clean[name] = None
        elif isinstance(value, np.generic):
            clean[name] = value.item()
        else:
            clean[name] = value
    return clean
