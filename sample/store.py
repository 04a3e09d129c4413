"""``omnicast sample``: one generation run, stage by stage. Each stage takes what earlier stages made as arguments,
writes its file as soon as it is known (clean rows from the module that makes them, dirt from ``sample/dirt.py``)
and returns what later stages need plus a :class:`~sample.manifest.FileWritten` for the manifest.

Every stage draws from its own random streams (``sample/draws.py``), so the same (customers, seed, as_of) gives
byte-identical files.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.errors import InputError
from sample.catalogue import Catalogue, Taste, build_catalogue, catalogue_counts, product_count, taste_of
from sample.clock import Clock
from sample.crm import contact_counts, contacts
from sample.customers import Accounts, account_columns, customer_counts, open_accounts
from sample.dirt import (
    PlantedCustomers,
    crm_extra_people,
    customer_extra_people,
    spoil_contacts,
    spoil_customers,
    spoil_events,
    spoil_orders,
    spoil_products,
)
from sample.draws import Stream, rng_for
from sample.events import event_counts, event_text, simulate_events, write_events
from sample.layout import CRM_PATH, CUSTOMERS_PATH, EVENTS_PATH, ORDERS_PATH, PRODUCTS_PATH
from sample.manifest import FileWritten, manifest, write_manifest
from sample.orders import (
    Orders,
    Segments,
    order_counts,
    order_facts,
    replenishment_counts,
    segment,
    segment_counts,
    simulate_orders,
)
from sample.orders_export import OrderText, line_rows, order_text
from sample.people import Population, populate, take_census
from sample.products import product_columns
from sample.text import join_row, write_csv
from sources.formats import CRM_COLUMNS, CUSTOMER_COLUMNS, ORDER_COLUMNS, PRODUCT_COLUMNS, SHOPIFY_FOLDER


def write_sample(
    out: Path,
    customers: int = 2000,
    seed: int = 7,
    as_of: date | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write a store directory (layout in docs/SOURCE_FORMATS.md) and return the manifest dict (also written to
    out/manifest.json). Same (customers, seed, as_of) give byte-identical files. ``progress`` is called with each
    stage's name as it starts: products, customers, orders, crm, events, manifest."""
    if customers < 10:
        raise ValueError(f"a sample store needs at least 10 customers (got {customers})")
    clock = Clock(as_of or datetime.now(UTC).date())
    report = progress or (lambda _stage: None)
    out = Path(out)
    try:
        (out / SHOPIFY_FOLDER).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(
            f"sample --out {out}: cannot create the folder there ({exc.strerror}) — choose a folder path that is not "
            "inside a file and that you may write to"
        ) from exc
    report("products")
    cat, products_written = _products(out, customers, seed, clock)
    taste = taste_of(cat)
    report("customers")
    population = _population(customers, seed)
    segments = segment(population, cat, taste, clock, rng_for(seed, Stream.SEGMENTS))
    orders = simulate_orders(population, segments, cat, taste, clock, rng_for(seed, Stream.ORDERS))
    facts = order_facts(orders, cat, population, clock, rng_for(seed, Stream.ORDER_FACTS))
    accounts, customer_dirt, customers_written = _customers(out, population, segments, orders, facts, clock, seed)
    report("orders")
    text, orders_written = _orders(out, population, segments, orders, facts, accounts, cat, clock, seed)
    report("crm")
    crm_written = _crm(out, population, accounts, orders, customer_dirt, clock, seed)
    report("events")
    events_written = _events(out, population, segments, accounts, orders, facts, text, cat, taste, clock, seed)
    report("manifest")
    written = [products_written, customers_written, orders_written, crm_written, events_written]
    content = manifest(seed, clock, customers, written)
    write_manifest(out, content)
    return content


def _products(out: Path, customers: int, seed: int, clock: Clock) -> tuple[Catalogue, FileWritten]:
    """The catalogue and the products export (with malformed rows and unsafe images)."""
    rng = rng_for(seed, Stream.CATALOGUE)
    cat = build_catalogue(product_count(customers), clock.days, rng)
    columns = product_columns(cat, rng)
    lines = join_row([columns[c] for c in PRODUCT_COLUMNS])
    planted = spoil_products(columns, lines, cat, rng, rng_for(seed, Stream.UNSAFE_IMAGES))
    rows = write_csv(out / PRODUCTS_PATH, PRODUCT_COLUMNS, planted.lines)
    return cat, FileWritten(PRODUCTS_PATH, rows, planted.dirt, {**planted.expected, **catalogue_counts(cat)})


def _population(customers: int, seed: int) -> Population:
    """Everyone: the census of accounts, guests and newsletter contacts, plus the people of planted rows."""
    rng = rng_for(seed, Stream.PEOPLE)
    census = take_census(customers, rng)
    return populate(census, customer_extra_people(customers), crm_extra_people(census), seed, rng)


def _customers(
    out: Path,
    population: Population,
    segments: Segments,
    orders: Orders,
    facts: pd.DataFrame,
    clock: Clock,
    seed: int,
) -> tuple[Accounts, PlantedCustomers, FileWritten]:
    """The accounts and the customers export (with duplicates, broken rows and broken phones)."""
    rng = rng_for(seed, Stream.ACCOUNTS)
    accounts = open_accounts(population, segments, orders, facts, clock, rng)
    columns = account_columns(population, accounts, rng)
    planted = spoil_customers(
        columns, join_row(columns), population, accounts, rng, rng_for(seed, Stream.BROKEN_PHONES)
    )
    rows = write_csv(out / CUSTOMERS_PATH, CUSTOMER_COLUMNS, planted.lines)
    expected = {
        **planted.expected,
        **customer_counts(population, planted.loadable_extra_rows),
        **segment_counts(population, segments),
    }
    return accounts, planted, FileWritten(CUSTOMERS_PATH, rows, planted.dirt, expected)


def _orders(
    out: Path,
    population: Population,
    segments: Segments,
    orders: Orders,
    facts: pd.DataFrame,
    accounts: Accounts,
    cat: Catalogue,
    clock: Clock,
    seed: int,
) -> tuple[OrderText, FileWritten]:
    """The orders export: a row per line item, with planted rows inside real orders."""
    guest_rng, text_rng = rng_for(seed, Stream.GUEST_CONSENT), rng_for(seed, Stream.ORDER_TEXT)
    text = order_text(orders, facts, cat, population, accounts, clock, guest_rng, text_rng)
    planted = spoil_orders(
        line_rows(orders, text), orders, text, cat, population.people, clock, rng_for(seed, Stream.ORDER_DIRT)
    )
    rows = write_csv(out / ORDERS_PATH, ORDER_COLUMNS, planted.lines)
    expected = {
        **order_counts(orders, facts, population, clock),
        **replenishment_counts(population, segments, orders, cat, clock),
    }
    return text, FileWritten(ORDERS_PATH, rows, planted.dirt, expected)


def _crm(
    out: Path,
    population: Population,
    accounts: Accounts,
    orders: Orders,
    customer_dirt: PlantedCustomers,
    clock: Clock,
    seed: int,
) -> FileWritten:
    """The HubSpot contacts export (with invalid e-mails, bad cells and malformed rows)."""
    rng = rng_for(seed, Stream.CRM)
    found = contacts(population, accounts, orders, clock, rng)
    planted = spoil_contacts(
        join_row(found.columns),
        found,
        population,
        accounts,
        customer_dirt.phone_broken,
        clock,
        rng,
        rng_for(seed, Stream.BAD_CONTACT_CELLS),
    )
    rows = write_csv(out / CRM_PATH, CRM_COLUMNS, planted.lines)
    counts = contact_counts(
        found, planted.kept, planted.bad_birthday, population, accounts, customer_dirt.invalid_email_accounts, clock
    )
    return FileWritten(CRM_PATH, rows, planted.dirt, {**planted.expected, **counts})


def _events(
    out: Path,
    population: Population,
    segments: Segments,
    accounts: Accounts,
    orders: Orders,
    facts: pd.DataFrame,
    text: OrderText,
    cat: Catalogue,
    taste: Taste,
    clock: Clock,
    seed: int,
) -> FileWritten:
    """GA4 events, sorted by time, written in chunks with the planted dirt next to its source."""
    rng = rng_for(seed, Stream.EVENTS)
    visitors, events = simulate_events(population, segments, accounts, orders, cat, taste, clock, rng)
    totals = np.asarray(facts["total"])
    lines = event_text(events, visitors, orders, text.name, totals, accounts, cat, clock, rng)
    planted = spoil_events(events, lines, rng)
    rows = write_events(out / EVENTS_PATH, events, lines, planted.sources, planted.lines)
    return FileWritten(EVENTS_PATH, rows, planted.dirt, event_counts(events, orders, population, clock))
