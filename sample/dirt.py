"""Dirt planted on purpose in the sample store, counted for manifest.json (docs/SAMPLE_DATA.md, "Planted dirt").

Two sorts: extra rows a reader must quarantine (malformed, an invalid e-mail, no id, a retired SKU, repeated rows,
broken JSON), and ``bad_field`` cells in real rows, which a reader loads without that one value (an unsafe image
URL, a phone cut short, a birthday before 1900, a time zone with spaces, a US-format date). Each file's share of
each kind is :data:`DIRT_RATES` (at least one row, however small the store). The clean rows come from the modules
that make each file; here they are spoiled, and each function returns the file's rows with the dirt in place and
what it planted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sample.catalogue import STORE_NAME, Catalogue
from sample.clock import Clock
from sample.crm import Contacts, contact_columns
from sample.customers import Accounts, customer_columns
from sample.events import NULL_ECOMMERCE, PURCHASE, VIEW, Events, EventText, event_lines
from sample.layout import CRM_PATH, CUSTOMERS_PATH, EVENTS_PATH, ORDERS_PATH, PRODUCTS_PATH
from sample.orders import Orders
from sample.orders_export import OrderText, item_blocks, order_rows
from sample.people import Census, People, Population, city_field, city_names, email_variant
from sample.text import as_text, escape, insert_after, join_fields, join_row, money, rows_of
from sources.formats import PRODUCT_COLUMNS

DIRT_RATES: dict[str, dict[str, float]] = {
    PRODUCTS_PATH: {"malformed_row": 0.006, "bad_field": 0.006},
    CUSTOMERS_PATH: {
        "duplicate_customer": 0.004,
        "invalid_email": 0.002,
        "missing_field": 0.0015,
        "malformed_row": 0.0015,
        "bad_field": 0.002,
    },
    ORDERS_PATH: {"malformed_row": 0.002, "missing_field": 0.002, "unknown_sku": 0.0015, "exact_duplicate": 0.002},
    CRM_PATH: {"invalid_email": 0.004, "malformed_row": 0.003, "bad_field": 0.003},
    EVENTS_PATH: {"missing_field": 0.002, "unknown_sku": 0.0015, "exact_duplicate": 0.002, "bad_json": 0.001},
}
"""Rate of planted rows per clean row, per file and kind."""
DIRT_KINDS = (
    "duplicate_customer", "invalid_email", "malformed_row", "missing_field", "unknown_sku", "exact_duplicate",
    "bad_json", "bad_field",
)  # fmt: skip
UNSAFE_IMAGES = ("javascript:alert(document.cookie)", "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
                 "/products/no-host.jpg")  # fmt: skip
"""``Image Src`` values a reader must never store (planted as ``bad_field`` in the products export)."""
_EXTRA_CUSTOMER_KINDS = ("invalid_email", "missing_field", "malformed_row")  # rows of people found nowhere else


def dirt_count(path: str, kind: str, clean_rows: int) -> int:
    """How many rows of dirt ``kind`` the file at ``path`` gets for its ``clean_rows``."""
    return max(1, int(round(DIRT_RATES[path][kind] * clean_rows)))


def customer_extra_people(accounts: int) -> int:
    """People who only appear in the customers export's planted rows (invalid e-mail, no id, malformed)."""
    return sum(dirt_count(CUSTOMERS_PATH, kind, accounts) for kind in _EXTRA_CUSTOMER_KINDS)


def crm_extra_people(census: Census) -> int:
    """People who only appear in the CRM export's malformed rows."""
    return dirt_count(CRM_PATH, "malformed_row", census.crm_rows)


@dataclass(frozen=True)
class Planted:
    """A file's rows with the dirt in place, the rows planted per kind, and the counts the dirt itself sets for
    manifest.expected."""

    lines: np.ndarray
    dirt: dict[str, int]
    expected: dict[str, Any]


def invalid_email(email: np.ndarray) -> np.ndarray:
    """Addresses broken the ways forms break them: ``@@``, no ``@``, a space, a domain without a dot."""
    s = pd.Series(email, dtype=object)
    variants = [
        s.str.replace("@", "@@", regex=False),
        s.str.replace("@", ".", regex=False),
        s.str.replace("@", " @", regex=False),
        s.str.split("@").str[0] + "@example",
    ]
    kind = np.arange(len(email)) % len(variants)
    return np.choose(kind, [v.to_numpy(dtype=object) for v in variants])


def retired_products(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SKUs the catalogue no longer has (``BEAN-RET-001`` …), with a name and a price in cents."""
    i = np.arange(k)
    prefix = np.array(["BEAN", "TEA", "GEAR", "FOOD"], dtype=object)[i % 4]
    sku = prefix + "-RET-" + np.array([f"{v + 1:03d}" for v in i], dtype=object)
    name = "Retired " + np.array(["House Blend", "Tea Sampler", "Dripper", "Biscotti"], dtype=object)[i % 4] + " No. "
    return sku, name + as_text(i + 1), 999 + 250 * (i % 8)


# ---------------------------------------------------------------- products export


def spoil_products(
    columns: dict[str, np.ndarray],
    lines: np.ndarray,
    cat: Catalogue,
    rng: np.random.Generator,
    image_rng: np.random.Generator,
) -> Planted:
    """Malformed extra products at random places (``rng``) and real products with an unsafe image (``image_rng``)."""
    bad = _malformed_products(columns, cat, dirt_count(PRODUCTS_PATH, "malformed_row", len(cat)), rng)
    chosen, unsafe = _unsafe_images(columns, len(cat), image_rng)
    lines = lines.copy()
    lines[chosen] = unsafe
    positions = rng.integers(0, len(lines), len(bad))
    return Planted(
        lines=insert_after(lines, np.sort(positions), bad),
        dirt={"bad_field": len(chosen), "malformed_row": len(bad)},
        expected={"products_with_unsafe_image": len(chosen)},
    )


def _malformed_products(columns: dict[str, np.ndarray], cat: Catalogue, k: int, rng: np.random.Generator) -> np.ndarray:
    """Extra product rows a reader must refuse (never sold): a Title with an unquoted comma, a row cut short,
    ``Variant Price`` of ``N/A`` or ``14,50``. Their SKUs (``…-IMP-…``) appear nowhere else."""
    source = rng.choice(len(cat), size=k, replace=k > len(cat))
    rows = {c: np.broadcast_to(v, (len(cat),))[source].astype(object) for c, v in columns.items()}
    number = np.array([f"{i + 1:03d}" for i in range(k)], dtype=object)
    rows["Variant SKU"] = pd.Series(cat.sku[source]).str.split("-").str[0].to_numpy(dtype=object) + "-IMP-" + number
    rows["Handle"] = rows["Handle"] + "-import-" + number
    variant = np.arange(k) % 4
    rows["Title"] = np.where(variant == 0, cat.title[source] + ", imported", rows["Title"])
    rows["Variant Price"] = np.select(
        [variant == 2, variant == 3],
        ["N/A", '"' + pd.Series(money(cat.price_cents[source])).str.replace(".", ",").to_numpy(dtype=object) + '"'],
        rows["Variant Price"],
    )
    lines = join_row([rows[c] for c in PRODUCT_COLUMNS])
    cut = variant == 1
    lines[cut] = join_row([rows[c][cut] for c in PRODUCT_COLUMNS[:22]])
    return lines


def _unsafe_images(columns: dict[str, np.ndarray], n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``bad_field``: real products whose ``Image Src`` is no web URL (``javascript:``, ``data:``, relative).
    A reader loads them without an image; no channel may ever see the URL. Returns the rows and their new text."""
    chosen = np.sort(rng.choice(n, size=min(n, dirt_count(PRODUCTS_PATH, "bad_field", n)), replace=False))
    rows = {c: np.broadcast_to(np.asarray(v, dtype=object), (n,))[chosen].copy() for c, v in columns.items()}
    rows["Image Src"] = escape(np.array(UNSAFE_IMAGES, dtype=object)[np.arange(len(chosen)) % len(UNSAFE_IMAGES)])
    return chosen, join_row([rows[c] for c in PRODUCT_COLUMNS])


# ---------------------------------------------------------------- customers export


@dataclass(frozen=True)
class PlantedCustomers(Planted):
    """Also: which accounts' ``Phone`` was broken (their phone cannot link them elsewhere), how many planted rows
    carry an invalid e-mail (each loads as a profile of its own), and how many planted rows a reader loads."""

    phone_broken: np.ndarray
    invalid_email_accounts: int
    loadable_extra_rows: int


def spoil_customers(
    columns: list[np.ndarray | str],
    lines: np.ndarray,
    population: Population,
    accounts: Accounts,
    rng: np.random.Generator,
    phone_rng: np.random.Generator,
) -> PlantedCustomers:
    """Broken phones on real accounts (``phone_rng``), then duplicate accounts, invalid e-mails, rows without
    Customer ID and malformed rows (``rng``), placed at random."""
    lines = lines.copy()
    phone_broken, opt_outs = _broken_phones(columns, lines, population, accounts, phone_rng)
    lines, rows_by_kind = _extra_customers(lines, population, accounts, rng)
    k_phones = int(phone_broken.sum())  # none when no account has a phone: then neither is counted
    return PlantedCustomers(
        lines=lines,
        dirt={**({"bad_field": k_phones} if k_phones else {}), **rows_by_kind},
        expected={"opt_outs_with_a_bad_phone": opt_outs} if k_phones else {},
        phone_broken=phone_broken,
        invalid_email_accounts=rows_by_kind["invalid_email"],
        loadable_extra_rows=rows_by_kind["duplicate_customer"] + rows_by_kind["invalid_email"],
    )


def _broken_phones(
    columns: list[np.ndarray | str],
    lines: np.ndarray,
    population: Population,
    accounts: Accounts,
    rng: np.random.Generator,
) -> tuple[np.ndarray, int]:
    """``bad_field``: accounts that said no to e-mail marketing, with a malformed ``Phone`` (cut short). A reader
    must load the row without the phone and keep the opt-out (the hostile run lost it). Rewrites those ``lines``;
    returns which accounts were broken and how many of them opted out."""
    n = population.accounts
    said_no = np.flatnonzero(accounts.shop_phone & ~accounts.accepts_email)
    candidates = said_no if len(said_no) else np.flatnonzero(accounts.shop_phone)
    k = min(len(candidates), dirt_count(CUSTOMERS_PATH, "bad_field", n))
    chosen = np.sort(rng.choice(candidates, size=k, replace=False))
    broken = np.zeros(n, dtype=bool)
    broken[chosen] = True
    if k:
        columns = list(columns)
        phone = np.array(columns[13], dtype=object)
        phone[chosen] = "'" + pd.Series(population.people.phone[chosen], dtype=object).str[:7].to_numpy(dtype=object)
        columns[13] = phone
        lines[chosen] = join_row(rows_of(columns, chosen))
    return broken, int((~accounts.accepts_email[chosen]).sum())


def _extra_customers(
    lines: np.ndarray, population: Population, accounts: Accounts, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, int]]:
    """Duplicate accounts (e-mail in other case/spacing), invalid e-mails, rows without Customer ID, and
    malformed rows; the last three are extra people who appear nowhere else. Returns the lines with the rows
    inserted at random, and the rows per kind."""
    n, people = population.accounts, population.people
    k_dup = dirt_count(CUSTOMERS_PATH, "duplicate_customer", n)
    dup = np.sort(rng.choice(n, size=min(k_dup, n), replace=False))
    k_bad, k_missing, k_malformed = (dirt_count(CUSTOMERS_PATH, kind, n) for kind in _EXTRA_CUSTOMER_KINDS)
    extras = population.customer_extra_people
    who = np.concatenate([dup, extras])
    ids = as_text(accounts.last_id + np.cumsum(rng.integers(1, 40_000, len(who))))
    email = np.concatenate([email_variant(people.email[dup], rng), people.email[extras]])
    email[len(dup) : len(dup) + k_bad] = invalid_email(people.email[extras[:k_bad]])
    ids[len(dup) + k_bad : len(dup) + k_bad + k_missing] = ""
    zeros = np.zeros(len(who), dtype=np.int64)
    cols = customer_columns(who, ids, email, zeros, zeros, population, accounts, rng)
    rows = join_row(cols)
    broken = np.arange(len(who) - k_malformed, len(who))
    rows[broken[0::2]] = join_row(rows_of(cols[:14], broken[0::2]))
    street = people.street[who[broken[1::2]]] + ", Unit " + as_text(rng.integers(1, 30, len(broken[1::2])))
    address = np.array(cols[6], dtype=object)
    address[broken[1::2]] = street
    cols[6] = address  # an address with a comma the exporter forgot to quote: one field too many
    rows[broken[1::2]] = join_row(rows_of(cols, broken[1::2]))
    after = np.sort(rng.integers(0, len(lines), len(rows)))
    counts = {
        "duplicate_customer": len(dup),
        "invalid_email": k_bad,
        "missing_field": k_missing,
        "malformed_row": k_malformed,
    }
    return insert_after(lines, after, rows[rng.permutation(len(rows))]), counts


# ---------------------------------------------------------------- orders export


def spoil_orders(
    lines: np.ndarray,
    orders: Orders,
    text: OrderText,
    cat: Catalogue,
    people: People,
    clock: Clock,
    rng: np.random.Generator,
) -> Planted:
    """Extra line rows inside real orders (malformed, no Name / no SKU, retired SKU) and repeated rows."""
    o, n_lines = orders, len(lines)
    counts = {k: dirt_count(ORDERS_PATH, k, n_lines) for k in ("malformed_row", "missing_field", "unknown_sku")}
    hosts = rng.permutation(len(o.buyer))[: sum(counts.values())]
    k_bad, k_missing = counts["malformed_row"], counts["missing_field"]
    groups = {
        "malformed_row": hosts[:k_bad],
        "missing_field": hosts[k_bad : k_bad + k_missing],
        "unknown_sku": hosts[k_bad + k_missing :],
    }
    rows = [
        _malformed_order_rows(groups["malformed_row"], orders, text, cat, clock),
        _missing_field_rows(groups["missing_field"], orders, text, people),
        _unknown_sku_rows(groups["unknown_sku"], text),
    ]
    after = [o.first_line[g] for g in groups.values()]
    dup = rng.choice(n_lines, size=min(dirt_count(ORDERS_PATH, "exact_duplicate", n_lines), n_lines), replace=False)
    rows.append(lines[dup])
    after.append(dup)
    planted = {kind: len(r) for kind, r in zip([*groups, "exact_duplicate"], rows, strict=True)}
    return Planted(insert_after(lines, np.concatenate(after), np.concatenate(rows)), planted, {})


def _host_item(host: np.ndarray, orders: Orders, text: OrderText) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first product of each host order: its number, item block and vendor field."""
    product = orders.line_product[orders.first_line[host]]
    return product, text.items[product], text.vendors[product]


def _malformed_order_rows(
    host: np.ndarray, orders: Orders, text: OrderText, cat: Catalogue, clock: Clock
) -> np.ndarray:
    """Rows a reader must refuse: cut short, one field too many, quantity ``two``, a US-style date, ``14,50``."""
    product, item, vendor = _host_item(host, orders, text)
    not_first = np.zeros(len(host), dtype=bool)
    one = np.full(len(host), "1", dtype=object)
    variant = np.arange(len(host)) % 5
    rows = np.empty(len(host), dtype=object)
    cut = variant == 0
    rows[cut] = order_rows(text, host[cut], not_first[cut], one[cut], item[cut], vendor[cut], truncate=True)
    wide = variant == 1
    unquoted = item_blocks(cat, name=cat.title + ", gift wrapped")[product[wide]]
    rows[wide] = order_rows(text, host[wide], not_first[wide], one[wide], unquoted, vendor[wide])
    word = variant == 2
    two = np.full(word.sum(), "two", dtype=object)
    rows[word] = order_rows(text, host[word], not_first[word], two, item[word], vendor[word])
    us_date = variant == 3
    ts = orders.ts[host[us_date]] + clock.offset(orders.ts[host[us_date]])
    stamp = pd.to_datetime(ts, unit="s").strftime("%m/%d/%Y %I:%M %p").to_numpy(dtype=object)
    rows[us_date] = order_rows(
        text, host[us_date], not_first[us_date], one[us_date], item[us_date], vendor[us_date], created=stamp
    )
    comma = variant == 4
    price = np.array([f'"{c // 100},{c % 100:02d}"' for c in cat.price_cents], dtype=object)
    decimal_comma = item_blocks(cat, price=price)[product[comma]]
    rows[comma] = order_rows(text, host[comma], not_first[comma], one[comma], decimal_comma, vendor[comma])
    return rows


def _missing_field_rows(host: np.ndarray, orders: Orders, text: OrderText, people: People) -> np.ndarray:
    """Half without ``Name`` (a real item), half a custom line without ``Lineitem sku`` (a tip, an engraving)."""
    _, item, vendor = _host_item(host, orders, text)
    not_first = np.zeros(len(host), dtype=bool)
    one = np.full(len(host), "1", dtype=object)
    no_name = np.arange(len(host)) % 2 == 0
    email = people.email[orders.buyer[host]]
    custom = np.where(np.arange(len(host)) % 4 == 1, "Tip,2.00,,,false,false", "Custom engraving,5.00,,,true,true")
    rows = np.empty(len(host), dtype=object)
    rows[no_name] = order_rows(
        text,
        host[no_name],
        not_first[no_name],
        one[no_name],
        item[no_name],
        vendor[no_name],
        head="," + email[no_name],
    )
    rows[~no_name] = order_rows(
        text,
        host[~no_name],
        not_first[~no_name],
        one[~no_name],
        custom[~no_name].astype(object),
        np.full((~no_name).sum(), STORE_NAME, dtype=object),
    )
    return rows


def _unknown_sku_rows(host: np.ndarray, text: OrderText) -> np.ndarray:
    """Line items whose SKU the catalogue no longer has (retired products)."""
    sku, name, price = retired_products(len(host))
    item = join_fields([escape(name), money(price), "", sku, "true", "true"])
    return order_rows(
        text,
        host,
        np.zeros(len(host), dtype=bool),
        np.full(len(host), "1", dtype=object),
        item,
        np.full(len(host), STORE_NAME, dtype=object),
    )


# ---------------------------------------------------------------- CRM export


@dataclass(frozen=True)
class PlantedContacts(Planted):
    """Also, per clean contact row: whether a correct reader keeps it, and whether its birthday was broken."""

    kept: np.ndarray
    bad_birthday: np.ndarray


def spoil_contacts(
    lines: np.ndarray,
    contacts: Contacts,
    population: Population,
    accounts: Accounts,
    phone_broken: np.ndarray,
    clock: Clock,
    rng: np.random.Generator,
    cell_rng: np.random.Generator,
) -> PlantedContacts:
    """Invalid e-mails on store customers' contacts (half of them with a phone, so a reader keeps them), bad
    cells in real contacts (``cell_rng``), and malformed extra rows placed at random."""
    who, n, people = contacts.who, population.accounts, population.people
    k_bad = dirt_count(CRM_PATH, "invalid_email", len(lines))
    account = who < n
    acc = np.minimum(who, n - 1)
    shop_phone = account & accounts.shop_phone[acc] & ~phone_broken[acc]  # the phone must link them
    with_phone = rng.permutation(np.flatnonzero(account & contacts.has_phone & shop_phone))
    without = rng.permutation(np.flatnonzero(account & ~contacts.has_phone))
    take_with = min(len(with_phone), (k_bad + 1) // 2)
    take_without = min(len(without), k_bad - take_with)
    bad = np.concatenate([with_phone[:take_with], without[:take_without]])
    cols = list(contacts.columns)
    email = np.array(cols[3], dtype=object)
    email[bad] = invalid_email(people.email[who[bad]])
    cols[3] = email
    lines = lines.copy()
    lines[bad] = join_row(rows_of(cols, bad))
    kept = np.ones(len(lines), dtype=bool)
    kept[without[:take_without]] = False
    bad_birthday, k_cells, bad_birthday_opt_outs = _bad_contact_cells(
        lines, cols, who, kept, bad, population, accounts, cell_rng
    )
    extra = population.crm_extra_people
    created = clock.end_epoch - rng.integers(86400, 300 * 86400, len(extra))
    record = as_text(61_000_000_000 + np.cumsum(rng.integers(1, 5_000, len(extra))))
    extra_cols, _, _ = contact_columns(extra, record, created, population, accounts, clock, rng)
    rows = _malformed_contact_rows(extra_cols, people, extra)
    dirt = {"invalid_email": len(bad), **({"bad_field": k_cells} if k_cells else {}), "malformed_row": len(rows)}
    return PlantedContacts(
        lines=insert_after(lines, np.sort(rng.integers(0, len(lines), len(rows))), rows),
        dirt=dirt,
        expected={
            "crm_invalid_email_with_phone": int(take_with),
            "crm_opt_outs_with_a_bad_birthday": bad_birthday_opt_outs,
        },
        kept=kept,
        bad_birthday=bad_birthday,
    )


def _bad_contact_cells(
    lines: np.ndarray,
    cols: list[np.ndarray | str],
    who: np.ndarray,
    kept: np.ndarray,
    taken: np.ndarray,
    population: Population,
    accounts: Accounts,
    rng: np.random.Generator,
) -> tuple[np.ndarray, int, int]:
    """``bad_field``: real contacts with one bad cell, in turn a ``Date of Birth`` before 1900 on an
    unsubscribed contact (whose Shopify account says yes, when there is one: the opt-out must still win), a
    ``Time Zone`` with spaces (``Europe / Berlin``), a ``Create Date`` in US format. Rewrites those ``lines``;
    returns the rows whose birthday was broken, how many rows were spoiled, and how many broken birthdays are
    on unsubscribed contacts."""
    k_rows, n = len(lines), population.accounts
    free = kept.copy()
    free[taken] = False
    k = min(int(free.sum()), dirt_count(CRM_PATH, "bad_field", k_rows))
    variant = np.arange(k) % 3
    accepts = (who < n) & accounts.accepts_email[np.minimum(who, n - 1)]
    consent = np.asarray(cols[8], dtype=object)
    chosen = np.empty(k, dtype=np.int64)
    picked = np.zeros(k_rows, dtype=bool)
    for i in range(k):  # a few rows: the best candidates for each variant, never a row twice
        if variant[i] == 0:
            pools = [free & (consent == "Unsubscribed") & accepts, free & (consent == "Unsubscribed"), free]
        elif variant[i] == 1:
            pools = [free & (np.asarray(cols[11], dtype=object) != ""), free]
        else:
            pools = [free]
        pool = next(np.flatnonzero(p & ~picked) for p in pools if (p & ~picked).any())
        chosen[i] = rng.choice(pool)
        picked[chosen[i]] = True
    birth, zones, created = (np.array(cols[i], dtype=object) for i in (5, 11, 16))
    rows = chosen[variant == 0]
    birth[rows] = "18" + as_text(rng.integers(10, 99, len(rows))) + "-01-01"
    rows = chosen[variant == 1]
    zone = pd.Series(zones[rows], dtype=object)
    zones[rows] = zone.str.replace("/", " / ").where(zone != "", "Mars / Olympus").to_numpy(dtype=object)
    rows = chosen[variant == 2]
    stamps = pd.to_datetime(pd.Series(created[rows], dtype=object), format="%Y-%m-%d %H:%M")
    created[rows] = stamps.dt.strftime("%m/%d/%Y %H:%M").to_numpy(dtype=object)
    fixed = list(cols)
    fixed[5], fixed[11], fixed[16] = birth, zones, created
    lines[chosen] = join_row(rows_of(fixed, chosen))
    broken = np.zeros(k_rows, dtype=bool)
    broken[chosen[variant == 0]] = True
    return broken, k, int((consent[chosen[variant == 0]] == "Unsubscribed").sum())


def _malformed_contact_rows(cols: list[np.ndarray | str], people: People, who: np.ndarray) -> np.ndarray:
    """Contact rows a reader must refuse: cut short, or ``Portland, Oregon`` unquoted (one field too many)."""
    variant = np.arange(len(who)) % 2
    rows = join_row(cols)
    cut = variant == 0
    rows[cut] = join_row(rows_of(cols[:12], cut))
    wide = variant == 1
    city = people.city[who[wide]]
    unquoted = rows_of(cols, wide)
    unquoted[12] = city_names()[city] + ", " + city_field("region")[city]
    rows[wide] = join_row(unquoted)
    return rows


# ---------------------------------------------------------------- GA4 events


@dataclass(frozen=True)
class PlantedEvents:
    """Dirty lines (each to be written right after its source event, ordered by source) and rows per kind."""

    sources: np.ndarray
    lines: np.ndarray
    dirt: dict[str, int]


def spoil_events(events: Events, text: EventText, rng: np.random.Generator) -> PlantedEvents:
    """Copies of real events with a flaw (no user_pseudo_id, a retired SKU, cut short) or none (repeated)."""
    n_events = len(events)
    used = np.zeros(n_events, dtype=bool)
    dirt: dict[str, int] = {}

    def pick(mask: np.ndarray, kind: str) -> np.ndarray:
        candidates = np.flatnonzero(mask & ~used)
        chosen = np.sort(
            rng.choice(candidates, min(len(candidates), dirt_count(EVENTS_PATH, kind, n_events)), replace=False)
        )
        used[chosen] = True
        dirt[kind] = len(chosen)
        return chosen

    not_purchase = events.name != PURCHASE
    missing = pick(not_purchase, "missing_field")
    unknown = pick(events.name == VIEW, "unknown_sku")
    duplicate = pick(np.ones(n_events, dtype=bool), "exact_duplicate")
    bad = pick(not_purchase, "bad_json")
    absent_or_null = np.where(np.arange(len(missing)) % 2 == 0, "", ',"user_pseudo_id":null')
    lines = [
        event_lines(events, text, missing, pseudo=absent_or_null.astype(object)),
        event_lines(events, text, unknown, body=_retired_items(len(unknown)) + NULL_ECOMMERCE),
        event_lines(events, text, duplicate),
        (pd.Series(event_lines(events, text, bad), dtype=object).str[:-31] + "\n").to_numpy(dtype=object),
    ]
    sources = np.concatenate([missing, unknown, duplicate, bad])
    order = np.argsort(sources, kind="stable")
    return PlantedEvents(sources[order], np.concatenate(lines)[order], dirt)


def _retired_items(k: int) -> np.ndarray:
    """``items[]`` of one retired product each (a view of a SKU the catalogue no longer has)."""
    sku, title, price = retired_products(k)
    return np.array(
        [
            json.dumps(
                [{"item_id": s, "item_name": t, "item_category": "Coffee Beans", "price": int(c) / 100, "quantity": 1}],
                separators=(",", ":"),
                ensure_ascii=True,
            )
            for s, t, c in zip(sku, title, price, strict=True)
        ],
        dtype=object,
    )
