"""The files are in the documented formats (docs/SOURCE_FORMATS.md, sources/formats.py): headers, Shopify's quirks,
every timestamp before as_of."""

from __future__ import annotations

import re
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path

from sources import formats
from sources.crm import HUBSPOT
from sources.shopify import ORDER_USED, PRODUCT_LEVEL
from tests.sample.reading import (
    FILES,
    SHOPIFY_PHONE,
    SHOPIFY_TIME,
    clean_events,
    documented_columns,
    parses,
    read_csv,
    records,
    shopify_time,
)


def test_headers_are_exactly_the_documented_columns(store: tuple[Path, dict]) -> None:
    out, _ = store
    documented = documented_columns()
    for name, columns in zip(("products", "customers", "orders", "crm"), documented, strict=True):
        header, _ = read_csv(out / FILES[name])
        assert header == columns, name


def test_the_generator_writes_what_the_readers_read(store: tuple[Path, dict]) -> None:
    """One set of names (sources/formats.py) for the written headers and the readers' required columns."""
    out, _ = store
    written = {
        "products": formats.PRODUCT_COLUMNS,
        "customers": formats.CUSTOMER_COLUMNS,
        "orders": formats.ORDER_COLUMNS,
        "crm": formats.CRM_COLUMNS,
    }
    for name, columns in written.items():
        assert read_csv(out / FILES[name])[0] == list(columns), name
    read = {
        "products": [*formats.PRODUCT_REQUIRED, *PRODUCT_LEVEL],
        "customers": formats.CUSTOMER_REQUIRED,
        "orders": ORDER_USED,
        "crm": [getattr(HUBSPOT, f.name) for f in fields(HUBSPOT) if f.name != "how_to_export" and f.type == "str"],
    }
    for name, needed in read.items():
        assert set(needed) <= set(written[name]), name


def test_shopify_quirks_apostrophes_offsets_and_first_row_fields(store: tuple[Path, dict]) -> None:
    out, manifest = store
    customers = [c for c in records(out, "customers") if c["Customer ID"]]
    assert all(re.fullmatch(r"'\d{13}", c["Customer ID"]) for c in customers)
    phones = [c["Phone"] for c in customers if c["Phone"]]
    broken = manifest["dirt"]["bad_field"]["shopify/customers_export.csv"]  # cut short on purpose
    assert len(phones) > 500 and sum(not SHOPIFY_PHONE.fullmatch(p) for p in phones) == broken
    header, rows = read_csv(out / FILES["orders"])
    unique = list(dict.fromkeys(tuple(r) for r in rows if len(r) == len(header)))  # repeated rows are dirt
    first_rows: dict[str, dict] = {}
    for row in (dict(zip(header, r, strict=True)) for r in unique if r[0]):
        first = row["Name"] not in first_rows
        first_rows.setdefault(row["Name"], row)
        assert bool(row["Total"]) == first and bool(row["Currency"]) == first
        assert row["Email"] and row["Id"] and row["Created at"]
    assert all(re.search(r" [+-]\d{4}$", o["Created at"]) for o in first_rows.values() if o["Created at"][0] == "2")


def test_every_timestamp_is_before_as_of(store: tuple[Path, dict]) -> None:
    out, _ = store
    limit = datetime(2026, 11, 27, tzinfo=UTC)
    for row in records(out, "orders"):
        for column in ("Created at", "Paid at", "Fulfilled at", "Cancelled at"):
            if row[column] and parses(row[column], SHOPIFY_TIME):
                assert shopify_time(row[column]) < limit
    events = clean_events(out)
    assert max(e["event_timestamp"] for e in events) < limit.timestamp() * 1_000_000
    assert max(row["Last Modified Date"] for row in records(out, "crm")) < "2026-11-27"
