"""``omnicast sample``: a deterministic, realistic specialty coffee & food store in the formats of
docs/SOURCE_FORMATS.md (Shopify exports, HubSpot contacts, GA4 events, manifest.json).

The store is simulated, not drawn row by row: customers belong to latent taste clusters, buy on seasonal days,
reorder consumables on their replenishment cycle, churn, gift, refund and abandon carts; analytics sessions are
derived from the orders plus browsing. Everything is numpy arrays until the last step, where rows are joined as
text from pre-escaped pieces. Dirt is planted as extra rows (a reader quarantines them) and as bad cells in real
rows (``bad_field``: a reader loads the row without that value), counted in the manifest (docs/SAMPLE_DATA.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.errors import InputError
from sources.sample_catalog import (
    AFFINITY,
    CITIES,
    CLUSTER_SHARE,
    CLUSTERS,
    PAD2,
    PAD3,
    PAD5,
    PRODUCT_COLUMNS,
    STORE_NAME,
    People,
    as_text,
    build_catalogue,
    build_people,
    cluster_cdfs,
    concat,
    csv_escape,
    escape,
    item_blocks,
    item_fragments,
    join_fields,
    join_row,
    malformed_products,
    matrix_text,
    money,
    name_pools,
    note_affinity,
    piece_matrix,
    product_columns,
    product_count,
    retired_products,
)

GENERATOR_VERSION = "1.1.0"
HISTORY_DAYS = 730
STORE_TZ = "America/New_York"
CURRENCY = "USD"
LINES_PER_CUSTOMER = 10
EVENTS_PER_CUSTOMER = 50

PRODUCTS_FILE = "shopify/products_export.csv"
CUSTOMERS_FILE = "shopify/customers_export.csv"
ORDERS_FILE = "shopify/orders_export.csv"
CRM_FILE = "hubspot_contacts.csv"
EVENTS_FILE = "ga4_events.jsonl"

CUSTOMER_COLUMNS = (
    "Customer ID",
    "First Name",
    "Last Name",
    "Email",
    "Accepts Email Marketing",
    "Default Address Company",
    "Default Address Address1",
    "Default Address Address2",
    "Default Address City",
    "Default Address Province Code",
    "Default Address Country Code",
    "Default Address Zip",
    "Default Address Phone",
    "Phone",
    "Accepts SMS Marketing",
    "Total Spent",
    "Total Orders",
    "Note",
    "Tax Exempt",
    "Tags",
)
ORDER_COLUMNS = (
    "Name",
    "Email",
    "Financial Status",
    "Paid at",
    "Fulfillment Status",
    "Fulfilled at",
    "Accepts Marketing",
    "Currency",
    "Subtotal",
    "Shipping",
    "Taxes",
    "Total",
    "Discount Code",
    "Discount Amount",
    "Shipping Method",
    "Created at",
    "Lineitem quantity",
    "Lineitem name",
    "Lineitem price",
    "Lineitem compare at price",
    "Lineitem sku",
    "Lineitem requires shipping",
    "Lineitem taxable",
    "Lineitem fulfillment status",
    "Billing Name",
    "Billing City",
    "Billing Zip",
    "Billing Province",
    "Billing Country",
    "Billing Phone",
    "Shipping Name",
    "Shipping City",
    "Shipping Zip",
    "Shipping Province",
    "Shipping Country",
    "Notes",
    "Cancelled at",
    "Payment Method",
    "Refunded Amount",
    "Vendor",
    "Id",
    "Tags",
    "Source",
    "Phone",
)
CRM_COLUMNS = (
    "Record ID",
    "First Name",
    "Last Name",
    "Email",
    "Phone Number",
    "Date of Birth",
    "Loyalty Tier",
    "Marketing contact status",
    "Email Marketing Consent",
    "Ads Personalization Consent",
    "In-App Messaging Consent",
    "Time Zone",
    "City",
    "State/Region",
    "Country/Region",
    "Postal Code",
    "Create Date",
    "Last Modified Date",
)

# Planted dirt: rate of extra rows per clean row, per file and kind (at least one of each, however small the store).
DIRT_RATES: dict[str, dict[str, float]] = {
    PRODUCTS_FILE: {"malformed_row": 0.006, "bad_field": 0.006},
    CUSTOMERS_FILE: {
        "duplicate_customer": 0.004,
        "invalid_email": 0.002,
        "missing_field": 0.0015,
        "malformed_row": 0.0015,
        "bad_field": 0.002,
    },
    ORDERS_FILE: {"malformed_row": 0.002, "missing_field": 0.002, "unknown_sku": 0.0015, "exact_duplicate": 0.002},
    CRM_FILE: {"invalid_email": 0.004, "malformed_row": 0.003, "bad_field": 0.003},
    EVENTS_FILE: {"missing_field": 0.002, "unknown_sku": 0.0015, "exact_duplicate": 0.002, "bad_json": 0.001},
}
DIRT_KINDS = (
    "duplicate_customer", "invalid_email", "malformed_row", "missing_field", "unknown_sku", "exact_duplicate",
    "bad_json", "bad_field",
)  # fmt: skip
UNSAFE_IMAGES = ("javascript:alert(document.cookie)", "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
                 "/products/no-host.jpg")  # fmt: skip
"""``Image Src`` values a reader must never store (planted as ``bad_field`` in the products export)."""

NONE, ONE_TIME, LOYAL, CHURNED = 0, 1, 2, 3
ARCHETYPES = ("no_orders", "one_time", "loyal", "churned")
REGULAR, STAPLE, GIFT_ORDER = 0, 1, 2
VIEW, CART, CHECKOUT, PURCHASE = 0, 1, 2, 3
EVENT_NAMES = ("view_item", "add_to_cart", "begin_checkout", "purchase")
GIFT = CLUSTERS.index("gift_givers")
US = 1_000_000  # microseconds per second (GA4 timestamps)
NULL_ECOMMERCE = ',"ecommerce":{"transaction_id":null,"purchase_revenue":null}'
GLOBAL = len(CLUSTERS)  # the extra CDF row: plain popularity, for exploring outside one's cluster

MONTH_FACTOR = np.array([0.85, 0.85, 0.95, 0.95, 0.95, 0.85, 0.72, 0.72, 0.95, 1.05, 1.45, 1.75])
WEEKDAY_FACTOR = np.array([1.0, 1.0, 1.0, 1.05, 0.95, 0.85, 1.0])  # Monday first
HOURLY = np.array(
    [0.2, 0.1, 0.05, 0.05, 0.05, 0.1, 0.3, 0.6, 0.9, 1, 1, 1.1, 1.3, 1.2, 1, 1, 1, 1.1, 1.3, 1.5, 1.6, 1.4, 1.0, 0.5]
)
TAX_RATE = {
    "NY": 0.08875,
    "MA": 0.0625,
    "PA": 0.06,
    "GA": 0.089,
    "IL": 0.1025,
    "MN": 0.08025,
    "TX": 0.0825,
    "CO": 0.0881,
    "AZ": 0.086,
    "WA": 0.1035,
    "OR": 0.0,
    "CA": 0.0863,
    "ON": 0.13,
    "BC": 0.12,
    "QC": 0.14975,
    "AB": 0.05,
    "ENG": 0.2,
    "SCT": 0.2,
    "WLS": 0.2,
}
TRAFFIC = (  # (source, medium, campaign name, share)
    ("google", "organic", "(organic)", 0.33),
    ("(direct)", "(none)", "(direct)", 0.24),
    ("newsletter", "email", "weekly_newsletter", 0.10),
    ("instagram.com", "referral", "(referral)", 0.07),
    ("facebook", "cpc", "bfcm_prospecting", 0.06),
    ("google", "cpc", "brand_search", 0.09),
    ("bing", "organic", "(organic)", 0.03),
    ("brewforum.example.org", "referral", "(referral)", 0.03),
    ("tiktok", "cpc", "spring_launch", 0.05),
)
DEVICES = (("mobile", 0.58), ("desktop", 0.37), ("tablet", 0.05))
ORDER_NOTES = (
    "Please leave the parcel with the concierge.",
    "Gift - please don't include the receipt, thanks!",
    "Ground for V60, please",
    'Whole beans please, "extra fresh" if possible :)',
    "Ring the bell twice, the first one is broken",
)
CUSTOMER_NOTES = (
    "Prefers whole beans, no grinding",
    "Wholesale enquiry - call before shipping",
    'Asked for "less packaging"',
    "Allergic to nuts",
)


# ---------------------------------------------------------------- public API


def write_sample(
    out: Path,
    customers: int = 2000,
    seed: int = 7,
    as_of: date | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write a store directory (layout in docs/SOURCE_FORMATS.md) and return the manifest dict (also written to
    out/manifest.json). Same (customers, seed, as_of) give byte-identical files."""
    if customers < 10:
        raise ValueError(f"a sample store needs at least 10 customers (got {customers})")
    as_of = as_of or datetime.now(UTC).date()
    report = progress or (lambda _stage: None)
    out = Path(out)
    try:
        (out / "shopify").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(
            f"sample --out {out}: cannot create the folder there ({exc.strerror}) — choose a folder path that is not "
            "inside a file and that you may write to"
        ) from exc
    store = _Store(out=out, customers=customers, seed=seed, clock=Clock(as_of))
    for stage, step in (
        ("products", store.products),
        ("customers", store.people_and_orders),
        ("orders", store.write_orders),
        ("crm", store.write_crm),
        ("events", store.events),
        ("manifest", store.write_manifest),
    ):
        report(stage)
        step()
    return store.manifest


# ---------------------------------------------------------------- time


@cache
def _clock_tables() -> tuple[np.ndarray, np.ndarray]:
    """Lookup tables: "HH:MM:SS" for each second of a day and "HH:MM" for each minute."""
    s = np.arange(86400)
    hms = PAD2[s // 3600] + ":" + PAD2[s // 60 % 60] + ":" + PAD2[s % 60]
    m = np.arange(1440)
    return hms, PAD2[m // 60] + ":" + PAD2[m % 60]


@dataclass(frozen=True)
class Clock:
    """The store's calendar: HISTORY_DAYS days ending the day before ``as_of``; timestamps are UTC epoch seconds."""

    as_of: date
    days: int = HISTORY_DAYS

    @property
    def start(self) -> date:
        return self.as_of - timedelta(days=self.days)

    @property
    def start_epoch(self) -> int:
        return int(datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC).timestamp())

    @property
    def end_epoch(self) -> int:
        """as_of 00:00 UTC: every timestamp in the data is before it."""
        return self.start_epoch + self.days * 86400

    @property
    def _table_epoch(self) -> int:
        return self.start_epoch - 7 * 86400

    @cached_property
    def _dates(self) -> pd.DatetimeIndex:
        return pd.date_range(self.start - timedelta(days=7), periods=self.days + 21, freq="D")

    @cached_property
    def _dashed(self) -> np.ndarray:
        return np.array(self._dates.strftime("%Y-%m-%d"), dtype=object)

    @cached_property
    def _compact(self) -> np.ndarray:
        return np.array(self._dates.strftime("%Y%m%d"), dtype=object)

    @cached_property
    def _offsets(self) -> np.ndarray:
        """Store-local UTC offset (seconds) for each hour of the tables' range."""
        hours = pd.date_range(self._dates[0], periods=len(self._dates) * 24, freq="h", tz="UTC")
        local = hours.tz_convert(STORE_TZ).tz_localize(None)
        return np.asarray(((local - hours.tz_localize(None)).total_seconds()).to_numpy().astype(np.int64))

    def offset(self, ts: np.ndarray) -> np.ndarray:
        return np.asarray(self._offsets[(ts - self._table_epoch) // 3600])

    def shopify_time(self, ts: np.ndarray) -> np.ndarray:
        """Store-local time with offset, as Shopify exports it: ``2026-11-20 09:03:11 -0500``."""
        offset = self.offset(ts)
        local = ts + offset - self._table_epoch
        uniq, inverse = np.unique(offset, return_inverse=True)
        labels = np.array(
            [f" {'-' if o < 0 else '+'}{abs(o) // 3600:02d}{abs(o) % 3600 // 60:02d}" for o in uniq], dtype=object
        )
        return np.asarray(self._dashed[local // 86400] + " " + _clock_tables()[0][local % 86400] + labels[inverse])

    def crm_time(self, ts: np.ndarray) -> np.ndarray:
        """UTC ``YYYY-MM-DD HH:MM``, as HubSpot exports dates."""
        rel = ts - self._table_epoch
        return np.asarray(self._dashed[rel // 86400] + " " + _clock_tables()[1][rel % 86400 // 60])

    def shopify_time_or_blank(self, ts: np.ndarray | pd.Series) -> np.ndarray:
        """``shopify_time`` where ``ts >= 0``, blank elsewhere (an order not paid, fulfilled or cancelled)."""
        ts = np.asarray(ts, dtype=np.int64)
        out = np.full(len(ts), "", dtype=object)
        out[ts >= 0] = self.shopify_time(ts[ts >= 0])
        return out

    def local_day_index(self, ts: np.ndarray) -> np.ndarray:
        """Index of the store-local day of each timestamp into ``ga4_dates``."""
        return np.asarray((ts + self.offset(ts) - self._table_epoch) // 86400)

    @property
    def ga4_dates(self) -> np.ndarray:
        """GA4's ``event_date`` strings (``YYYYMMDD``), indexed by ``local_day_index``."""
        return self._compact

    @cached_property
    def calendar(self) -> pd.DataFrame:
        """Per history day: month (0 = January), day of month, weekday (0 = Monday), ISO date."""
        days = pd.date_range(self.start, periods=self.days, freq="D")
        return pd.DataFrame({"month": days.month - 1, "dom": days.day, "weekday": days.weekday, "date": days})

    @cached_property
    def bfcm(self) -> np.ndarray:
        """True from Black Friday to Cyber Monday (the Friday to Monday after the 4th Thursday of November)."""
        cal = self.calendar
        thanksgiving = np.flatnonzero((cal.month == 10) & (cal.weekday == 3) & (cal.dom >= 22) & (cal.dom <= 28))
        mask = np.zeros(self.days, dtype=bool)
        for shift in range(1, 5):
            mask[(thanksgiving + shift)[thanksgiving + shift < self.days]] = True
        return mask

    @cached_property
    def summer(self) -> np.ndarray:
        return np.asarray(self.calendar.month.isin([6, 7]).to_numpy())

    @cached_property
    def season(self) -> np.ndarray:
        """Relative order volume per day: growth, month (gift peak, summer dip), weekday, BFCM, shipping cut-off."""
        cal = self.calendar
        growth = 0.75 + 0.5 * np.arange(self.days) / self.days
        weight = MONTH_FACTOR[cal.month] * WEEKDAY_FACTOR[cal.weekday] * growth
        weight[((cal.month == 11) & (cal.dom > 22)).to_numpy()] *= 0.55
        weight[self.bfcm] *= 2.5
        return np.asarray(weight / weight.sum())

    def times_of_day(self, days: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """UTC epoch seconds on the given history days, at store-local hours people shop."""
        hour = rng.choice(24, size=len(days), p=HOURLY / HOURLY.sum())
        seconds = hour * 3600 + rng.integers(0, 3600, len(days)) + 5 * 3600
        return self.start_epoch + days.astype(np.int64) * 86400 + seconds % 86400


# ---------------------------------------------------------------- small helpers


def choose(options: Sequence[str], p: Sequence[float], n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` labels drawn with the given shares, as an object array."""
    return np.array(options, dtype=object)[rng.choice(len(options), size=n, p=np.asarray(p) / np.sum(p))]


def sample_products(cdfs: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One product per draw, from the CDF row (taste cluster) each draw names."""
    out = np.empty(len(rows), dtype=np.int64)
    u = rng.random(len(rows))
    for row in np.unique(rows):
        mask = rows == row
        out[mask] = np.searchsorted(cdfs[row], u[mask], side="right")
    return np.asarray(np.minimum(out, cdfs.shape[1] - 1))


def dirt_count(path: str, kind: str, clean_rows: int) -> int:
    return max(1, int(round(DIRT_RATES[path][kind] * clean_rows)))


def insert_after(lines: np.ndarray, after: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Insert ``new[i]`` right after row ``after[i]`` (positions refer to the original rows)."""
    return np.insert(lines, np.asarray(after, dtype=np.int64) + 1, new)


def write_csv(path: Path, columns: Sequence[str], lines: np.ndarray) -> int:
    """Header plus rows; returns the number of data rows."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(",".join(columns) + "\n")
        for start in range(0, len(lines), 200_000):
            handle.write("".join(lines[start : start + 200_000].tolist()))
    return len(lines)


def email_variant(email: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same address as someone else typed it: other case and/or surrounding spaces (never identical)."""
    s = pd.Series(email, dtype=object)
    kind = rng.integers(0, 4, len(email))
    variants = [s.str.title(), s.str.upper(), " " + s + " ", s.str.title() + "  "]
    return np.choose(kind, [v.to_numpy(dtype=object) for v in variants])


# ---------------------------------------------------------------- the store


@dataclass
class Orders:
    """Orders sorted by creation time, plus their line items (sorted by order, staple line first)."""

    buyer: np.ndarray
    ts: np.ndarray
    day: np.ndarray
    kind: np.ndarray
    line_order: np.ndarray
    line_product: np.ndarray
    line_qty: np.ndarray
    line_first: np.ndarray
    first_line: np.ndarray  # index of each order's first line
    n_lines: np.ndarray


class _Store:
    """One generation run: the stages in order, sharing arrays; files are written as soon as they are known."""

    def __init__(self, out: Path, customers: int, seed: int, clock: Clock) -> None:
        self.out, self.n, self.seed, self.clock = out, customers, seed, clock
        self.files: dict[str, dict[str, int]] = {}
        self.dirt: dict[str, dict[str, int]] = {}
        self.expected: dict[str, Any] = {}
        self.manifest: dict[str, Any] = {}

    def rng(self, stage: int) -> np.random.Generator:
        """A generator per stage, so changing one stage leaves the others' draws alone."""
        return np.random.default_rng([self.seed, stage])

    def plant(self, path: str, kind: str, count: int) -> None:
        """Record ``count`` rows of dirt ``kind`` written to ``path`` (for manifest.dirt)."""
        self.dirt.setdefault(kind, {})[path] = int(count)

    # -------------------------------------------------- products

    def products(self) -> None:
        """The catalogue, its taste-cluster sampling tables, and the products export (with malformed rows)."""
        rng = self.rng(1)
        self.cat = build_catalogue(product_count(self.n), self.clock.days, rng)
        cdfs = cluster_cdfs(self.cat)
        self.cdfs = np.vstack([cdfs, np.cumsum(self.cat.popularity) / self.cat.popularity.sum()])
        consumable = (self.cat.replenish_days > 0) & (self.cat.status == "active")
        weights = self.cat.popularity[None, :] * AFFINITY[self.cat.kind].T * note_affinity(self.cat) * consumable
        self.staple_cdfs = np.cumsum(weights, axis=1) / weights.sum(axis=1, keepdims=True)
        cols = product_columns(self.cat, rng)
        lines = join_row([cols[c] for c in PRODUCT_COLUMNS])
        bad = malformed_products(cols, self.cat, dirt_count(PRODUCTS_FILE, "malformed_row", len(self.cat)), rng)
        self._unsafe_images(cols, lines)
        positions = rng.integers(0, len(lines), len(bad))
        lines = insert_after(lines, np.sort(positions), bad)
        self.plant(PRODUCTS_FILE, "malformed_row", len(bad))
        self.files[PRODUCTS_FILE] = {"rows": write_csv(self.out / PRODUCTS_FILE, PRODUCT_COLUMNS, lines)}
        status = pd.Series(self.cat.status).value_counts()
        self.expected["products"] = len(self.cat)
        self.expected["products_by_status"] = {s: int(status.get(s, 0)) for s in ("active", "draft", "archived")}

    def _unsafe_images(self, cols: dict[str, np.ndarray], lines: np.ndarray) -> None:
        """``bad_field``: real products whose ``Image Src`` is no web URL (``javascript:``, ``data:``, relative).
        A reader loads them without an image; no channel may ever see the URL."""
        rng, n = self.rng(21), len(self.cat)
        chosen = np.sort(rng.choice(n, size=min(n, dirt_count(PRODUCTS_FILE, "bad_field", n)), replace=False))
        rows = {c: np.broadcast_to(np.asarray(v, dtype=object), (n,))[chosen].copy() for c, v in cols.items()}
        rows["Image Src"] = escape(np.array(UNSAFE_IMAGES, dtype=object)[np.arange(len(chosen)) % len(UNSAFE_IMAGES)])
        lines[chosen] = join_row([rows[c] for c in PRODUCT_COLUMNS])
        self.plant(PRODUCTS_FILE, "bad_field", len(chosen))
        self.expected["products_with_unsafe_image"] = len(chosen)

    # -------------------------------------------------- people and their orders

    def people_and_orders(self) -> None:
        """Everyone (accounts, guests, newsletter contacts, dirt-only extras), their segments and orders, and the
        customers export."""
        rng = self.rng(2)
        n = self.n
        self.n_guests = max(1, int(round(0.10 * n)))
        self.n_crm_only = max(1, int(round(0.25 * n)))
        self.n_customer_extras = sum(
            dirt_count(CUSTOMERS_FILE, k, n) for k in ("invalid_email", "missing_field", "malformed_row")
        )
        self.crm_members = self._crm_membership(rng)
        crm_rows = len(self.crm_members[0]) + len(self.crm_members[1]) + self.n_crm_only
        self.n_crm_extras = dirt_count(CRM_FILE, "malformed_row", crm_rows)
        total = n + self.n_guests + self.n_crm_only + self.n_customer_extras + self.n_crm_extras
        self.people = build_people(total, name_pools(self.seed, size=int(np.clip(total // 4, 40, 400))), rng)
        self.cluster = rng.choice(len(CLUSTERS), size=total, p=CLUSTER_SHARE)
        self._segments(self.rng(3))
        self.orders = self._simulate_orders(self.rng(4))
        self._write_customers(self.rng(5))

    def _crm_membership(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Which accounts (85%) and guests (30%) also sit in the CRM."""
        accounts = np.sort(rng.permutation(self.n)[: int(round(0.85 * self.n))])
        guests = np.sort(self.n + rng.permutation(self.n_guests)[: int(round(0.30 * self.n_guests))])
        return accounts, guests

    def _segments(self, rng: np.random.Generator) -> None:
        """Per buyer (accounts then guests): archetype, first order day, last possible day, staple consumable."""
        n_buyers = self.n + self.n_guests
        cluster = self.cluster[:n_buyers]
        probs = np.where((cluster == GIFT)[:, None], [[0.10, 0.60, 0.15, 0.15]], [[0.10, 0.34, 0.31, 0.25]])
        probs[self.n :] = [0.0, 0.88, 0.06, 0.06]
        self.archetype = np.minimum((rng.random(n_buyers)[:, None] > probs.cumsum(axis=1)).sum(axis=1), CHURNED)
        season = self.clock.season
        sharp = season**3 / (season**3).sum()
        ramp = np.linspace(1.0, 0.0, self.clock.days)  # repeat buyers still around tend to be older customers
        loyal, churned = season * (0.5 + 1.5 * ramp), season * (0.6 + ramp)
        draws = [rng.choice(self.clock.days, n_buyers, p=w / w.sum()) for w in (season, sharp, loyal, churned)]
        self.first_day = np.select(
            [self.archetype == LOYAL, self.archetype == CHURNED, cluster == GIFT], draws[2:] + draws[1:2], draws[0]
        )
        life = 30 + rng.exponential(220, n_buyers)
        stop = self.clock.days - 60 - rng.exponential(60, n_buyers)
        churned = self.archetype == CHURNED
        self.end_day = np.where(churned, np.minimum(self.first_day + life, stop), self.clock.days)
        self.staple = np.where(self.archetype >= LOYAL, sample_products(self.staple_cdfs, cluster, rng), -1)
        qty = rng.choice([1, 2, 3], size=n_buyers, p=[0.6, 0.3, 0.1])
        days = np.maximum(self.cat.replenish_days[np.maximum(self.staple, 0)], 1)
        self.staple_qty = np.minimum(np.maximum(qty, np.ceil(21 / days)), 3).astype(np.int64)

    def _simulate_orders(self, rng: np.random.Generator) -> Orders:
        """Order days (one-time, replenishment cycles, gift season), then line items and their products."""
        buyers, days, kinds = [], [], []
        single = np.flatnonzero(self.archetype == ONE_TIME)
        groups = [(single, self.first_day[single], REGULAR)]
        groups += [(b, d, STAPLE) for b, d in self._replenishment_days(rng)]
        groups.append((*self._gift_days(rng), GIFT_ORDER))
        for b, d, k in groups:
            buyers.append(b)
            days.append(d)
            kinds.append(np.full(len(b), k))
        buyer, day, kind = np.concatenate(buyers), np.concatenate(days).astype(np.int64), np.concatenate(kinds)
        ts = self.clock.times_of_day(day, rng)
        order = np.argsort(ts, kind="stable")
        buyer, day, kind, ts = buyer[order], day[order], kind[order], ts[order]
        return self._order_lines(buyer, ts, day, kind, rng)

    def _replenishment_days(self, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
        """Repeat buyers reorder their staple every replenishment days × quantity, with noise, until they stop."""
        rep = np.flatnonzero(self.archetype >= LOYAL)
        cycle = self.cat.replenish_days[self.staple[rep]] * self.staple_qty[rep] * rng.lognormal(0, 0.12, len(rep))
        day = self.first_day[rep].astype(float)
        end = self.end_day[rep]
        out = [(rep, self.first_day[rep])]
        alive = np.ones(len(rep), dtype=bool)
        while True:
            idle = np.where(rng.random(len(rep)) < 0.06, 2.0, 1.0)  # a holiday, a forgotten order
            summer = np.where(self.clock.summer[np.minimum(day.astype(int), self.clock.days - 1)], 1.3, 1.0)
            day = day + cycle * rng.lognormal(0, 0.15, len(rep)) * idle * summer
            alive &= day < end
            if not alive.any():
                return out
            out.append((rep[alive], day[alive].astype(np.int64)))

    def _gift_days(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Extra orders from repeat buyers between Nov 10 and Dec 22 (gift givers nearly always)."""
        cal = self.clock.calendar
        window = (((cal.month == 10) & (cal.dom >= 10)) | ((cal.month == 11) & (cal.dom <= 22))).to_numpy()
        buyers, days = [], []
        for year in np.unique(cal.date.dt.year[window]):
            span = np.flatnonzero(window & (cal.date.dt.year == year).to_numpy())
            alive = (self.archetype >= LOYAL) & (self.first_day <= span[0]) & (self.end_day >= span[-1])
            p = np.where(self.cluster[: len(alive)] == GIFT, 0.85, 0.35)
            chosen = np.flatnonzero(alive & (rng.random(len(alive)) < p))
            weights = self.clock.season[span] / self.clock.season[span].sum()
            buyers.append(chosen)
            days.append(rng.choice(span, size=len(chosen), p=weights))
        return np.concatenate(buyers).astype(np.int64), np.concatenate(days).astype(np.int64)

    def _order_lines(
        self, buyer: np.ndarray, ts: np.ndarray, day: np.ndarray, kind: np.ndarray, rng: np.random.Generator
    ) -> Orders:
        """Line items: the staple first on reorders, then Poisson-many picks from the buyer's taste (or gifts)."""
        n_orders = len(buyer)
        lam = max(0.1, (LINES_PER_CUSTOMER * self.n * 1.03 - n_orders) / n_orders)
        staple = kind == STAPLE
        extra = np.minimum(rng.poisson(lam, n_orders) + ~staple, 7)
        e_order = np.repeat(np.arange(n_orders), extra)
        rows = self.cluster[buyer[e_order]]
        rows = np.where((kind[e_order] == GIFT_ORDER) & (rng.random(len(e_order)) < 0.7), GIFT, rows)
        rows = np.where(rng.random(len(e_order)) < 0.05, GLOBAL, rows)
        e_product = sample_products(self.cdfs, rows, rng)
        archived = day[e_order] > self.cat.archive_day[e_product]
        e_product = np.where(archived, self.cat.replacement[e_product], e_product)
        e_qty = np.where(self.cat.gift_card[e_product], 1, rng.choice([1, 2, 3], len(e_order), p=[0.85, 0.12, 0.03]))
        s_order = np.flatnonzero(staple)
        order = np.concatenate([s_order, e_order])
        product = np.concatenate([self.staple[buyer[s_order]], e_product])
        qty = np.concatenate([self.staple_qty[buyer[s_order]], e_qty])
        position = np.concatenate([np.zeros(len(s_order)), np.arange(len(e_order)) + 1])
        sort = np.lexsort((position, order))
        order, product, qty = order[sort], product[sort], qty[sort]
        keep = ~pd.DataFrame({"o": order, "p": product}).duplicated().to_numpy()
        order, product, qty = order[keep], product[keep], qty[keep]
        first = np.r_[True, order[1:] != order[:-1]]
        return Orders(
            buyer=buyer,
            ts=ts,
            day=day,
            kind=kind,
            line_order=order,
            line_product=product,
            line_qty=qty.astype(np.int64),
            line_first=first,
            first_line=np.flatnonzero(first),
            n_lines=np.bincount(order, minlength=n_orders),
        )

    # -------------------------------------------------- what happened to each order

    def _order_facts(self, rng: np.random.Generator) -> pd.DataFrame:
        """Per order: money (cents), discount, shipping, taxes, status, payment, refund and fulfilment times."""
        o, cat, people = self.orders, self.cat, self.people
        n_orders = len(o.buyer)
        line_cents = cat.price_cents[o.line_product] * o.line_qty
        gift_card = cat.gift_card[o.line_product]
        subtotal = np.bincount(o.line_order, weights=line_cents, minlength=n_orders).astype(np.int64)
        cards = np.bincount(o.line_order, weights=line_cents * gift_card, minlength=n_orders).astype(np.int64)
        ships = np.bincount(o.line_order, weights=~gift_card, minlength=n_orders) > 0
        code, discount = self._discounts(subtotal - cards, rng)
        goods = subtotal - cards - discount
        city = people.city[o.buyer]
        domestic = people.country[o.buyer] == "US"
        express = domestic & (rng.random(n_orders) < 0.07)
        free = np.where(domestic, goods >= 5000, goods >= 10000)
        shipping = np.where(express, 1295, np.where(free, 0, np.where(domestic, 595, 1495))) * ships
        method = np.where(
            express,
            "Express Shipping",
            np.where(free, "Free Shipping", np.where(domestic, "Standard Shipping", "International Shipping")),
        )
        rate = np.array([TAX_RATE.get(c.province, 0.19) for c in CITIES])[city]
        taxes = np.round(np.maximum(goods, 0) * rate).astype(np.int64)
        facts = pd.DataFrame(
            {
                "subtotal": subtotal,
                "discount_code": code,
                "discount": discount,
                "shipping": shipping,
                "method": np.where(ships, method, ""),
                "taxes": taxes,
                "total": subtotal - discount + shipping + taxes,
                "ships": ships,
                "cards_only": ~ships,
            }
        )
        self._order_fate(facts, rng)
        return facts

    def _discounts(self, eligible: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Discount codes: BFCM20 in Black Friday week, WELCOME10 on first orders, SUMMER15, FRIENDS5."""
        o = self.orders
        n_orders = len(o.buyer)
        first_of_buyer = ~pd.Series(o.buyer).duplicated().to_numpy() & (o.buyer < self.n)
        u = rng.random(n_orders)
        bfcm = self.clock.bfcm[o.day] & (u < 0.45)
        welcome = first_of_buyer & (u < 0.25)
        summer = self.clock.summer[o.day] & (u < 0.08)
        friends = (u > 0.97) & (eligible >= 2000)
        code = np.select([bfcm, welcome, summer, friends], ["BFCM20", "WELCOME10", "SUMMER15", "FRIENDS5"], "")
        pct = np.select([bfcm, welcome, summer], [0.20, 0.10, 0.15], 0.0)
        amount = np.where(friends & (code == "FRIENDS5"), 500, np.round(eligible * pct)).astype(np.int64)
        return code.astype(object), amount

    def _order_fate(self, facts: pd.DataFrame, rng: np.random.Generator) -> None:
        """Financial status (refunds, voids, pending), payment and fulfilment times, all before as_of."""
        o, end = self.orders, self.clock.end_epoch
        n_orders = len(o.buyer)
        u = rng.random(n_orders)
        recent = o.ts >= end - 3 * 86400
        status = np.select(
            [u < 0.008, u < 0.026, u < 0.048, recent & (u > 0.9)],
            ["voided", "refunded", "partially_refunded", "pending"],
            "paid",
        )
        cancelled = (status == "voided") | ((status == "refunded") & (rng.random(n_orders) < 0.5))
        cancel_ts = np.minimum(o.ts + rng.integers(1800, 3 * 86400, n_orders), end - 1)
        unit = self.cat.price_cents[o.line_product[o.first_line]]
        total = facts["total"].to_numpy()
        refund = np.select(
            [status == "refunded", status == "partially_refunded"],
            [total, np.clip(np.minimum(unit, total // 2), 1, None)],
            0,
        )
        paid = np.isin(status, ["paid", "refunded", "partially_refunded"])
        fulfil_ts = o.ts + np.where(facts["cards_only"], 5, rng.integers(8 * 3600, 3 * 86400, n_orders))
        fulfilled = np.isin(status, ["paid", "partially_refunded"]) | ((status == "refunded") & ~cancelled)
        fulfilled &= fulfil_ts < end
        facts["status"] = status
        facts["refund"] = refund.astype(np.int64)
        facts["paid_ts"] = np.where(paid, np.minimum(o.ts + rng.integers(2, 40, n_orders), end - 1), -1)
        facts["fulfilled_ts"] = np.where(fulfilled, fulfil_ts, -1)
        facts["cancelled_ts"] = np.where(cancelled, cancel_ts, -1)
        facts["payment"] = choose(
            ["Shopify Payments", "PayPal Express Checkout", "gift_card", "Manual"],
            [0.74, 0.2, 0.04, 0.02],
            n_orders,
            rng,
        )
        facts["source"] = choose(["web", "shopify_draft_order", "pos"], [0.95, 0.03, 0.02], n_orders, rng)
        facts["net"] = np.where(paid, total - refund, 0)

    # -------------------------------------------------- customers export

    def _write_customers(self, rng: np.random.Generator) -> None:
        """The Shopify customers export: one row per account, plus planted duplicates and broken rows."""
        n, o = self.n, self.orders
        self.facts = self._order_facts(self.rng(6))
        account = o.buyer < n
        self.spent = np.bincount(o.buyer[account], weights=self.facts["net"][account], minlength=n).astype(np.int64)
        self.order_count = np.bincount(o.buyer[account], minlength=n)
        self.signup_ts = self._signups(rng)
        ids = 7_012_000_000_000 + np.cumsum(rng.integers(1, 40_000, n))
        self.customer_id = np.empty(n, dtype=np.int64)
        self.customer_id[np.argsort(self.signup_ts, kind="stable")] = ids
        self.accepts_email = rng.random(n) < 0.55
        self.shop_phone = rng.random(n) < 0.55
        cols = self._customer_columns(
            np.arange(n), as_text(self.customer_id), self.people.email[:n], self.spent, self.order_count, rng
        )
        lines = join_row(cols)
        self._broken_phones(cols, lines)
        lines, extra_rows = self._customer_dirt(lines, int(ids[-1]), rng)
        self.files[CUSTOMERS_FILE] = {"rows": write_csv(self.out / CUSTOMERS_FILE, CUSTOMER_COLUMNS, lines)}
        self.expected["customers"] = n
        self.expected["customer_rows_loadable"] = n + extra_rows
        self.expected["buyers"] = {name: int((self.archetype[:n] == i).sum()) for i, name in enumerate(ARCHETYPES)}
        self.expected["taste_clusters"] = {c: int((self.cluster[:n] == i).sum()) for i, c in enumerate(CLUSTERS)}

    def _broken_phones(self, cols: list[np.ndarray | str], lines: np.ndarray) -> None:
        """``bad_field``: accounts that said no to e-mail marketing, with a malformed ``Phone`` (cut short). A reader
        must load the row without the phone and keep the opt-out (the hostile run lost it)."""
        rng, n = self.rng(22), self.n
        said_no = np.flatnonzero(self.shop_phone & ~self.accepts_email)
        candidates = said_no if len(said_no) else np.flatnonzero(self.shop_phone)
        k = min(len(candidates), dirt_count(CUSTOMERS_FILE, "bad_field", n))
        chosen = np.sort(rng.choice(candidates, size=k, replace=False))
        self.phone_broken = np.zeros(n, dtype=bool)
        self.phone_broken[chosen] = True
        if not k:
            return
        phone = np.array(cols[13], dtype=object)
        phone[chosen] = "'" + pd.Series(self.people.phone[chosen], dtype=object).str[:7].to_numpy(dtype=object)
        cols[13] = phone
        lines[chosen] = join_row([c if isinstance(c, str) else c[chosen] for c in cols])
        self.plant(CUSTOMERS_FILE, "bad_field", k)
        self.expected["opt_outs_with_a_bad_phone"] = int((~self.accepts_email[chosen]).sum())

    def _signups(self, rng: np.random.Generator) -> np.ndarray:
        """Account creation: at the first checkout for most, days or weeks before it for some; never after it."""
        n, o = self.n, self.orders
        first_ts = np.full(n, self.clock.end_epoch - 1, dtype=np.int64)
        account = o.buyer < n
        np.minimum.at(first_ts, o.buyer[account], o.ts[account])
        lead = np.where(rng.random(n) < 0.7, 0, rng.integers(1, 60, n))
        day = np.clip(self.first_day[:n] - lead, 0, self.clock.days - 1)
        return np.asarray(np.minimum(self.clock.times_of_day(day, rng), first_ts - 60))

    def _customer_columns(
        self,
        who: np.ndarray,
        ids: np.ndarray,
        email: np.ndarray,
        spent: np.ndarray,
        count: np.ndarray,
        rng: np.random.Generator,
    ) -> list[np.ndarray | str]:
        """The export's columns for the given people, in CUSTOMER_COLUMNS order (escaped)."""
        p, k = self.people, len(who)
        city = p.city[who]
        accepts = np.where(who < self.n, self.accepts_email[np.minimum(who, self.n - 1)], rng.random(k) < 0.5)
        has_phone = (who < self.n) & self.shop_phone[np.minimum(who, self.n - 1)]
        sms = has_phone & (rng.random(k) < 0.3)
        exempt = (p.company[who] != "") & (rng.random(k) < 0.2)
        tags = pd.Series(np.where(accepts & (rng.random(k) < 0.4), "newsletter", ""), dtype=object)
        tags = (
            tags.str.cat(np.where(spent >= 50000, "vip", ""), sep=", ")
            .str.cat(np.where(exempt, "wholesale", ""), sep=", ")
            .str.replace(r"^(, )+|(, )+$", "", regex=True)
            .str.replace(r"(, )+", ", ", regex=True)
        )
        note = np.where(
            rng.random(k) < 0.02, np.array(CUSTOMER_NOTES, dtype=object)[rng.integers(0, len(CUSTOMER_NOTES), k)], ""
        )
        address_phone = np.where(has_phone & (rng.random(k) < 0.3), p.phone_national[who], "")
        yes_no = np.array(["no", "yes"], dtype=object)
        return [
            np.where(ids == "", "", "'" + ids),
            escape(p.first[who]),
            escape(p.last[who]),
            email,
            yes_no[accepts * 1],
            escape(p.company[who]),
            escape(p.street[who]),
            p.address2[who],
            escape(_city_names()[city]),
            _city_field("province")[city],
            p.country[who],
            p.zip[who],
            address_phone,
            np.where(has_phone, "'" + p.phone[who], ""),
            yes_no[sms * 1],
            money(spent),
            as_text(count),
            escape(note),
            yes_no[exempt * 1],
            escape(tags.to_numpy(dtype=object)),
        ]

    def _customer_dirt(self, lines: np.ndarray, last_id: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        """Duplicate accounts (e-mail in other case/spacing), invalid e-mails, rows without Customer ID, and
        malformed rows; the last three are extra people who appear nowhere else."""
        n = self.n
        k_dup = dirt_count(CUSTOMERS_FILE, "duplicate_customer", n)
        dup = np.sort(rng.choice(n, size=min(k_dup, n), replace=False))
        k_bad, k_missing, k_malformed = (
            dirt_count(CUSTOMERS_FILE, kind, n) for kind in ("invalid_email", "missing_field", "malformed_row")
        )
        base = n + self.n_guests + self.n_crm_only
        extras = np.arange(base, base + k_bad + k_missing + k_malformed)
        self.n_invalid_email_accounts = k_bad  # loaded without an e-mail: profiles of their own
        who = np.concatenate([dup, extras])
        ids = as_text(last_id + np.cumsum(rng.integers(1, 40_000, len(who))))
        email = np.concatenate([email_variant(self.people.email[dup], rng), self.people.email[extras]])
        email[len(dup) : len(dup) + k_bad] = invalid_email(self.people.email[extras[:k_bad]])
        ids[len(dup) + k_bad : len(dup) + k_bad + k_missing] = ""
        zeros = np.zeros(len(who), dtype=np.int64)
        cols = self._customer_columns(who, ids, email, zeros, zeros, rng)
        rows = join_row(cols)
        broken = np.arange(len(who) - k_malformed, len(who))
        rows[broken[0::2]] = join_row([c if isinstance(c, str) else c[broken[0::2]] for c in cols[:14]])
        street = self.people.street[who[broken[1::2]]] + ", Unit " + as_text(rng.integers(1, 30, len(broken[1::2])))
        address = np.array(cols[6], dtype=object)
        address[broken[1::2]] = street
        cols[6] = address  # an address with a comma the exporter forgot to quote: one field too many
        rows[broken[1::2]] = join_row([c if isinstance(c, str) else c[broken[1::2]] for c in cols])
        for kind, count in (
            ("duplicate_customer", len(dup)),
            ("invalid_email", k_bad),
            ("missing_field", k_missing),
            ("malformed_row", k_malformed),
        ):
            self.plant(CUSTOMERS_FILE, kind, count)
        after = np.sort(rng.integers(0, len(lines), len(rows)))
        return insert_after(lines, after, rows[rng.permutation(len(rows))]), len(dup) + k_bad

    # -------------------------------------------------- orders export

    def write_orders(self) -> None:
        """The Shopify orders export: a row per line item, order-level fields on the first row only."""
        rng = self.rng(8)
        o = self.orders
        text = self._order_text()
        self.order_text = text
        self.items, self.vendors = item_blocks(self.cat), escape(self.cat.vendor)
        lines = self._order_rows(
            o.line_order, o.line_first, as_text(o.line_qty), self.items[o.line_product], self.vendors[o.line_product]
        )
        lines = self._order_dirt(lines, rng)
        self.files[ORDERS_FILE] = {"rows": write_csv(self.out / ORDERS_FILE, ORDER_COLUMNS, lines)}
        status = self.facts["status"].value_counts()
        month = pd.Series(self.clock._dashed[(o.ts - self.clock._table_epoch) // 86400]).str[:7].value_counts()
        self.expected.update(
            {
                "orders": len(o.buyer),
                "order_lines": len(o.line_order),
                "orders_by_status": {
                    s: int(status.get(s, 0)) for s in ("paid", "pending", "refunded", "partially_refunded", "voided")
                },
                "cancelled_orders": int((self.facts["cancelled_ts"] >= 0).sum()),
                "guest_emails": int(len(np.unique(o.buyer[o.buyer >= self.n]))),
                "orders_by_month": {m: int(c) for m, c in sorted(month.items())},
            }
        )
        self._replenishment_expectations()

    def _order_text(self) -> dict[str, np.ndarray]:
        """Per order, the CSV text of its blocks: head (Name, Email), A (Financial Status … Shipping Method),
        Created at, B (Billing Name … Refunded Amount), Id, C (Tags, Source, Phone); plus the line status."""
        o, f, p, clock = self.orders, self.facts, self.people, self.clock
        n_orders = len(o.buyer)
        name = "#" + as_text(1001 + np.arange(n_orders))
        fulfilled = f["fulfilled_ts"].to_numpy() >= 0
        accepts = np.where(
            o.buyer < self.n,
            self.accepts_email[np.minimum(o.buyer, self.n - 1)],
            self.rng(9).random(n_orders) < 0.4,
        )
        stamp = clock.shopify_time_or_blank
        block_a = join_fields(
            [
                f["status"].to_numpy(dtype=object),
                stamp(f["paid_ts"]),
                np.where(fulfilled, "fulfilled", "unfulfilled"),
                stamp(f["fulfilled_ts"]),
                np.where(accepts, "yes", "no"),
                CURRENCY,
                money(f["subtotal"]),
                money(f["shipping"]),
                money(f["taxes"]),
                money(f["total"]),
                f["discount_code"].to_numpy(dtype=object),
                np.where(f["discount"] > 0, money(f["discount"]), ""),
                f["method"].to_numpy(dtype=object),
            ]
        )
        full_name = escape(p.first + " " + p.last)
        rng = self.rng(10)
        gift_elsewhere = (o.kind == GIFT_ORDER) & (rng.random(n_orders) < 0.5)
        ship_to = np.where(gift_elsewhere, rng.integers(0, self.n + self.n_guests, n_orders), o.buyer)
        has_phone = (o.buyer < self.n) & self.shop_phone[np.minimum(o.buyer, self.n - 1)]
        notes = np.where(
            rng.random(n_orders) < 0.03, csv_escape(ORDER_NOTES)[rng.integers(0, len(ORDER_NOTES), n_orders)], ""
        )
        block_b = join_fields(
            _address(full_name, p, o.buyer)
            + [np.where(has_phone, p.phone[o.buyer], "")]
            + _address(full_name, p, ship_to)
            + [
                notes,
                stamp(f["cancelled_ts"]),
                f["payment"].to_numpy(dtype=object),
                np.where(f["refund"] > 0, money(f["refund"]), ""),
            ]
        )
        block_c = join_fields([np.where(o.kind == GIFT_ORDER, "gift", ""), f["source"].to_numpy(dtype=object), ""])
        return {
            "head": name + "," + p.email[o.buyer],
            "a": block_a,
            "created": clock.shopify_time(o.ts),
            "b": block_b,
            "id": as_text(5_601_000_000_000 + np.cumsum(rng.integers(1_000, 90_000, n_orders))),
            "c": block_c,
            "lfs": np.where(fulfilled, "fulfilled", "pending").astype(object),
            "name": name,
        }

    def _order_rows(
        self,
        order: np.ndarray,
        first: np.ndarray,
        qty: np.ndarray,
        item: np.ndarray,
        vendor: np.ndarray,
        head: np.ndarray | None = None,
        created: np.ndarray | None = None,
        truncate: bool = False,
    ) -> np.ndarray:
        """Rows for line items of the given orders; order-level blocks only where ``first``."""
        t = self.order_text
        head = t["head"][order] if head is None else head
        created = t["created"][order] if created is None else created
        a = np.where(first, t["a"][order], "," * 12)
        start = [head, a, created, qty, item, t["lfs"][order]]
        if truncate:
            return join_row(start)
        b = np.where(first, t["b"][order], "," * 14)
        c = np.where(first, t["c"][order], "," * 2)
        return join_row(start + [b, vendor, t["id"][order], c])

    def _order_dirt(self, lines: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Extra line rows inside real orders (malformed, no Name / no SKU, retired SKU) and repeated rows."""
        o, n_lines = self.orders, len(lines)
        counts = {k: dirt_count(ORDERS_FILE, k, n_lines) for k in ("malformed_row", "missing_field", "unknown_sku")}
        hosts = rng.permutation(len(o.buyer))[: sum(counts.values())]
        k_bad, k_missing = counts["malformed_row"], counts["missing_field"]
        groups = {
            "malformed_row": hosts[:k_bad],
            "missing_field": hosts[k_bad : k_bad + k_missing],
            "unknown_sku": hosts[k_bad + k_missing :],
        }
        rows = [
            self._malformed_order_rows(groups["malformed_row"], rng),
            self._missing_field_rows(groups["missing_field"]),
            self._unknown_sku_rows(groups["unknown_sku"]),
        ]
        after = [o.first_line[g] for g in groups.values()]
        dup = rng.choice(n_lines, size=min(dirt_count(ORDERS_FILE, "exact_duplicate", n_lines), n_lines), replace=False)
        rows.append(lines[dup])
        after.append(dup)
        for kind, planted in zip(list(groups) + ["exact_duplicate"], rows, strict=True):
            self.plant(ORDERS_FILE, kind, len(planted))
        return insert_after(lines, np.concatenate(after), np.concatenate(rows))

    def _host_item(self, host: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The first product of each host order, as an item block and a vendor field."""
        product = self.orders.line_product[self.orders.first_line[host]]
        return self.items[product], self.vendors[product]

    def _malformed_order_rows(self, host: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Rows a reader must refuse: cut short, one field too many, quantity ``two``, a US-style date, ``14,50``."""
        item, vendor = self._host_item(host)
        product = self.orders.line_product[self.orders.first_line[host]]
        not_first = np.zeros(len(host), dtype=bool)
        one = np.full(len(host), "1", dtype=object)
        variant = np.arange(len(host)) % 5
        rows = np.empty(len(host), dtype=object)
        cut = variant == 0
        rows[cut] = self._order_rows(host[cut], not_first[cut], one[cut], item[cut], vendor[cut], truncate=True)
        wide = variant == 1
        unquoted = item_blocks(self.cat, name=self.cat.title + ", gift wrapped")[product[wide]]
        rows[wide] = self._order_rows(host[wide], not_first[wide], one[wide], unquoted, vendor[wide])
        word = variant == 2
        rows[word] = self._order_rows(
            host[word], not_first[word], np.full(word.sum(), "two", dtype=object), item[word], vendor[word]
        )
        us_date = variant == 3
        ts = self.orders.ts[host[us_date]] + self.clock.offset(self.orders.ts[host[us_date]])
        stamp = pd.to_datetime(ts, unit="s").strftime("%m/%d/%Y %I:%M %p").to_numpy(dtype=object)
        rows[us_date] = self._order_rows(
            host[us_date], not_first[us_date], one[us_date], item[us_date], vendor[us_date], created=stamp
        )
        comma = variant == 4
        price = np.array([f'"{c // 100},{c % 100:02d}"' for c in self.cat.price_cents], dtype=object)
        rows[comma] = self._order_rows(
            host[comma], not_first[comma], one[comma], item_blocks(self.cat, price=price)[product[comma]], vendor[comma]
        )
        return rows

    def _missing_field_rows(self, host: np.ndarray) -> np.ndarray:
        """Half without ``Name`` (a real item), half a custom line without ``Lineitem sku`` (a tip, an engraving)."""
        item, vendor = self._host_item(host)
        not_first = np.zeros(len(host), dtype=bool)
        one = np.full(len(host), "1", dtype=object)
        no_name = np.arange(len(host)) % 2 == 0
        email = self.people.email[self.orders.buyer[host]]
        custom = np.where(np.arange(len(host)) % 4 == 1, "Tip,2.00,,,false,false", "Custom engraving,5.00,,,true,true")
        rows = np.empty(len(host), dtype=object)
        rows[no_name] = self._order_rows(
            host[no_name], not_first[no_name], one[no_name], item[no_name], vendor[no_name], head="," + email[no_name]
        )
        rows[~no_name] = self._order_rows(
            host[~no_name],
            not_first[~no_name],
            one[~no_name],
            custom[~no_name].astype(object),
            np.full((~no_name).sum(), STORE_NAME, dtype=object),
        )
        return rows

    def _unknown_sku_rows(self, host: np.ndarray) -> np.ndarray:
        """Line items whose SKU the catalogue no longer has (retired products)."""
        sku, name, price = retired_products(len(host))
        item = join_fields([escape(name), money(price), "", sku, "true", "true"])
        return self._order_rows(
            host,
            np.zeros(len(host), dtype=bool),
            np.full(len(host), "1", dtype=object),
            item,
            np.full(len(host), STORE_NAME, dtype=object),
        )

    def _replenishment_expectations(self) -> None:
        """How many active repeat buyers are overdue / due within 7 days for their staple, by the data itself."""
        o, n = self.orders, self.n
        staple_line = (self.staple[o.buyer[o.line_order]] == o.line_product) & (o.buyer[o.line_order] < n)
        buyer = o.buyer[o.line_order[staple_line]]
        last_day = np.full(n, -1)
        np.maximum.at(last_day, buyer, o.day[o.line_order[staple_line]])
        times = np.bincount(buyer, minlength=n)
        loyal = (self.archetype[:n] == LOYAL) & (times >= 2)
        due = last_day + self.cat.replenish_days[np.maximum(self.staple[:n], 0)] * self.staple_qty[:n]
        h = self.clock.days
        self.expected["repeat_buyers_with_cycles"] = int(((self.archetype[:n] >= LOYAL) & (times >= 2)).sum())
        self.expected["replenishment_overdue"] = int((loyal & (due < h)).sum())
        self.expected["replenishment_due_next_7_days"] = int((loyal & (due >= h) & (due <= h + 7)).sum())

    # -------------------------------------------------- HubSpot contacts

    def write_crm(self) -> None:
        """The HubSpot export: most accounts (e-mail written differently for some), some guests, newsletter-only
        contacts; consents, birthdays, loyalty tiers, time zones."""
        rng = self.rng(11)
        accounts, guests = self.crm_members
        only = np.arange(self.n + self.n_guests, self.n + self.n_guests + self.n_crm_only)
        who = np.concatenate([accounts, guests, only])
        created = self._crm_created(who, rng)
        order = np.argsort(created, kind="stable")
        who, created = who[order], created[order]
        record = as_text(51_000_000_000 + np.cumsum(rng.integers(1, 5_000, len(who))))
        cols, has_phone, dob = self._crm_columns(who, record, created, rng)
        lines = join_row(cols)
        lines, kept, bad_birthday = self._crm_dirt(lines, cols, who, has_phone, rng)
        self.files[CRM_FILE] = {"rows": write_csv(self.out / CRM_FILE, CRM_COLUMNS, lines)}
        self._birthday_expectations(dob, kept & ~bad_birthday)
        status = np.asarray(cols[7], dtype=object)
        non_marketing = kept & (status == "Non-marketing contact")
        opted_in = (who < self.n) & self.accepts_email[np.minimum(who, self.n - 1)]
        self.expected.update(
            {
                "crm_contacts": len(who),
                "crm_store_customers": len(accounts),
                "crm_guests": len(guests),
                "crm_only_contacts": len(only),
                "crm_non_marketing_contacts": int(non_marketing.sum()),
                "crm_non_marketing_shopify_opt_ins": int((non_marketing & opted_in).sum()),
                "distinct_people": self.n + self.n_guests + self.n_crm_only + self.n_invalid_email_accounts,
            }
        )

    def _crm_created(self, who: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Contact creation: after sign-up (accounts), after the first order (guests), any day (newsletter)."""
        o, end = self.orders, self.clock.end_epoch
        first_order = np.full(self.n + self.n_guests, end - 1, dtype=np.int64)
        np.minimum.at(first_order, o.buyer, o.ts)
        since = np.where(
            who < self.n,
            self.signup_ts[np.minimum(who, self.n - 1)],
            first_order[np.minimum(who, len(first_order) - 1)],
        )
        newsletter = who >= self.n + self.n_guests
        since = np.where(
            newsletter, self.clock.times_of_day(rng.choice(self.clock.days, len(who), p=self.clock.season), rng), since
        )
        return np.asarray(np.minimum(since + np.where(newsletter, 0, rng.integers(60, 2 * 86400, len(who))), end - 60))

    def _crm_columns(
        self, who: np.ndarray, record: np.ndarray, created: np.ndarray, rng: np.random.Generator
    ) -> tuple[list[np.ndarray | str], np.ndarray, np.ndarray]:
        """The export's columns (escaped), which rows carry a phone, and the dates of birth (NaT when blank)."""
        p, k, n = self.people, len(who), self.n
        account = who < n
        guest = (who >= n) & (who < n + self.n_guests)
        acc = np.minimum(who, n - 1)
        shop_phone = account & self.shop_phone[acc]
        email = np.where((account | guest) & (rng.random(k) < 0.35), email_variant(p.email[who], rng), p.email[who])
        phone_share = np.select([shop_phone, account, guest], [0.8, 0.3, 0.4], 0.35)
        has_phone = rng.random(k) < phone_share
        dob = birth_dates(k, self.clock.as_of, rng)
        spent = np.where(account, self.spent[acc], 0)
        tier = np.select([spent >= 50000, spent >= 20000, spent > 0], ["Gold", "Silver", "Bronze"], "")
        tier = np.where(account & (rng.random(k) > 0.1), tier, "")
        accepts = account & self.accepts_email[acc]
        email_consent = np.empty(k, dtype=object)
        for mask, shares in (
            (accepts, [0.8, 0.08, 0.12]),
            (account & ~accepts, [0.3, 0.45, 0.25]),
            (guest, [0.5, 0.2, 0.3]),
            (~account & ~guest, [0.85, 0.1, 0.05]),
        ):
            email_consent[mask] = choose(["Subscribed", "Unsubscribed", ""], shares, int(mask.sum()), rng)
        marketing = (email_consent == "Subscribed") | (rng.random(k) < 0.3)
        tz = np.where(rng.random(k) < 0.12, "", _city_field("tz")[p.city[who]])
        modified = created + (rng.random(k) * (self.clock.end_epoch - 60 - created)).astype(np.int64)
        cols: list[np.ndarray | str] = [
            record,
            escape(p.first[who]),
            escape(p.last[who]),
            email,
            np.where(has_phone, p.phone_national[who], ""),
            np.where(pd.isna(dob), "", pd.Series(dob).dt.strftime("%Y-%m-%d").to_numpy(dtype=object)),
            tier.astype(object),
            np.where(marketing, "Marketing contact", "Non-marketing contact"),
            email_consent,
            choose(["true", "false", ""], [0.45, 0.3, 0.25], k, rng),
            choose(["true", "false", ""], [0.5, 0.2, 0.3], k, rng),
            tz.astype(object),
            escape(_city_names()[p.city[who]]),
            escape(_city_field("region")[p.city[who]]),
            p.country[who],
            p.zip[who],
            self.clock.crm_time(created),
            self.clock.crm_time(modified),
        ]
        return cols, has_phone, dob

    def _crm_dirt(
        self,
        lines: np.ndarray,
        cols: list[np.ndarray | str],
        who: np.ndarray,
        has_phone: np.ndarray,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Invalid e-mails on store customers' contacts (half of them with a phone, so a reader keeps them), bad
        cells in real contacts, and malformed extra rows. Returns the lines, which contact rows a correct reader
        keeps, and which of them had their birthday broken."""
        k_bad = dirt_count(CRM_FILE, "invalid_email", len(lines))
        account = who < self.n
        acc = np.minimum(who, self.n - 1)
        shop_phone = account & self.shop_phone[acc] & ~self.phone_broken[acc]  # the phone must link them
        with_phone = rng.permutation(np.flatnonzero(account & has_phone & shop_phone))
        without = rng.permutation(np.flatnonzero(account & ~has_phone))
        take_with = min(len(with_phone), (k_bad + 1) // 2)
        take_without = min(len(without), k_bad - take_with)
        bad = np.concatenate([with_phone[:take_with], without[:take_without]])
        email = np.array(cols[3], dtype=object)
        email[bad] = invalid_email(self.people.email[who[bad]])
        cols[3] = email
        lines[bad] = join_row([c if isinstance(c, str) else c[bad] for c in cols])
        kept = np.ones(len(lines), dtype=bool)
        kept[without[:take_without]] = False
        self.plant(CRM_FILE, "invalid_email", len(bad))
        self.expected["crm_invalid_email_with_phone"] = int(take_with)
        bad_birthday = self._bad_contact_cells(lines, cols, who, kept, bad)
        extra = np.arange(len(self.people) - self.n_crm_extras, len(self.people))
        created = self.clock.end_epoch - rng.integers(86400, 300 * 86400, len(extra))
        record = as_text(61_000_000_000 + np.cumsum(rng.integers(1, 5_000, len(extra))))
        xcols, _, _ = self._crm_columns(extra, record, created, rng)
        rows = malformed_crm_rows(xcols, self.people, extra)
        self.plant(CRM_FILE, "malformed_row", len(rows))
        return insert_after(lines, np.sort(rng.integers(0, len(lines), len(rows))), rows), kept, bad_birthday

    def _bad_contact_cells(
        self, lines: np.ndarray, cols: list[np.ndarray | str], who: np.ndarray, kept: np.ndarray, taken: np.ndarray
    ) -> np.ndarray:
        """``bad_field``: real contacts with one bad cell, in turn a ``Date of Birth`` before 1900 on an
        unsubscribed contact (whose Shopify account says yes, when there is one: the opt-out must still win), a
        ``Time Zone`` with spaces (``Europe / Berlin``), a ``Create Date`` in US format. Returns the rows whose
        birthday was broken."""
        rng, k_rows = self.rng(23), len(lines)
        free = kept.copy()
        free[taken] = False
        k = min(int(free.sum()), dirt_count(CRM_FILE, "bad_field", k_rows))
        variant = np.arange(k) % 3
        account = who < self.n
        accepts = account & self.accepts_email[np.minimum(who, self.n - 1)]
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
        lines[chosen] = join_row([c if isinstance(c, str) else c[chosen] for c in fixed])
        if k:
            self.plant(CRM_FILE, "bad_field", k)
        self.expected["crm_opt_outs_with_a_bad_birthday"] = int((consent[chosen[variant == 0]] == "Unsubscribed").sum())
        broken = np.zeros(k_rows, dtype=bool)
        broken[chosen[variant == 0]] = True
        return broken

    def _birthday_expectations(self, dob: np.ndarray, kept: np.ndarray) -> None:
        """Counts over the contacts a correct reader keeps: Feb 29 birthdays, birthdays in the next 7 days."""
        births = pd.Series(dob)[kept]
        md = births.dt.strftime("%m-%d")
        upcoming = [(self.clock.as_of + timedelta(days=d)).strftime("%m-%d") for d in range(1, 8)]
        self.expected["contacts_with_birthday"] = int(births.notna().sum())
        self.expected["feb29_birthdays"] = int((md == "02-29").sum())
        self.expected["birthdays_next_7_days"] = int(md.isin(upcoming).sum())

    # -------------------------------------------------- GA4 events

    def events(self) -> None:
        """GA4 rows: a session per order (views, carts, checkout, purchase), browsing without purchase, and
        recent abandoned carts; sorted by time, written in chunks with the planted dirt next to its source."""
        rng = self.rng(12)
        self.vis = self._visitors(rng)
        sessions = self._purchase_sessions(rng)
        recent = self._recent_carts(rng)
        budget = EVENTS_PER_CUSTOMER * self.n - len(sessions["ts"]) - len(recent["ts"])
        parts = [sessions, self._browse_sessions(budget, rng), recent]
        ev = {key: np.concatenate([part[key] for part in parts]) for key in sessions}
        order = np.argsort(ev["ts"], kind="stable")
        ev = {key: values[order] for key, values in ev.items()}
        step = np.arange(len(order))
        ev["ts"] = np.maximum.accumulate(ev["ts"] - step) + step  # strictly increasing: no two lines identical
        self.ev = ev
        self._event_tables(rng)
        sources, dirt = self._event_dirt(rng)
        self.files[EVENTS_FILE] = {"rows": self._write_events(sources, dirt)}
        self._event_expectations()

    def _visitors(self, rng: np.random.Generator) -> Visitors:
        """Browsers (GA4 ``user_pseudo_id``): 1–3 devices per account, one per guest, and anonymous visitors."""
        n, g, days = self.n, self.n_guests, self.clock.days
        n_dev = np.concatenate([1 + (rng.random(n) < 0.35) + (rng.random(n) < 0.10), np.ones(g, dtype=np.int64)])
        owner = np.concatenate([np.repeat(np.arange(n + g), n_dev), np.full(max(10, round(1.2 * n)), -1)])
        total = len(owner)
        cluster = np.where(
            owner >= 0, self.cluster[np.maximum(owner, 0)], rng.choice(len(CLUSTERS), total, p=CLUSTER_SHARE)
        )
        return Visitors(
            owner=owner,
            n_dev=n_dev,
            dev_start=np.cumsum(n_dev) - n_dev,
            anon_start=int(n_dev.sum()),
            cluster=cluster,
            device=rng.choice(len(DEVICES), total, p=[d[1] for d in DEVICES]),
            traffic=rng.choice(len(TRAFFIC), total, p=[t[3] for t in TRAFFIC]),
            anon_day=rng.choice(days, total, p=self.clock.season),
        )

    def _device_of(self, buyer: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.asarray(self.vis.dev_start[buyer] + (rng.random(len(buyer)) * self.vis.n_dev[buyer]).astype(np.int64))

    def _browsed(self, visitor: np.ndarray, day: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Products a visitor looks at: mostly from their taste cluster; archived ones give way to successors."""
        rows = np.where(rng.random(len(visitor)) < 0.1, GLOBAL, self.vis.cluster[visitor])
        product = sample_products(self.cdfs, rows, rng)
        return np.where(day > self.cat.archive_day[product], self.cat.replacement[product], product)

    def _purchase_sessions(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Per order: view_item and add_to_cart per line, a few other views, begin_checkout, purchase."""
        o, end_us = self.orders, self.clock.end_epoch * US
        n_orders = len(o.buyer)
        visitor = self._device_of(o.buyer, rng)
        user = np.where((o.buyer < self.n) & (rng.random(n_orders) < 0.92), o.buyer, -1)
        created = o.ts * US
        purchase = np.minimum(created + rng.integers(1 * US, 6 * US, n_orders), end_us - 2 * US)
        checkout = created - rng.integers(60 * US, 600 * US, n_orders)
        lo = o.line_order
        position = np.arange(len(lo)) - o.first_line[lo]
        cart = checkout[lo] - (o.n_lines[lo] - position) * rng.integers(20 * US, 180 * US, len(lo))
        view = cart - rng.integers(10 * US, 120 * US, len(lo))
        extra = np.repeat(np.arange(n_orders), rng.poisson(0.8, n_orders))
        extra_product = self._browsed(visitor[extra], o.day[extra], rng)
        extra_ts = checkout[extra] - (o.n_lines[extra] + 1) * 200 * US - rng.integers(0, 1200 * US, len(extra))
        single = o.line_product * 3
        return _events(
            ts=[view, cart, extra_ts, checkout, purchase],
            visitor=[visitor[lo], visitor[lo], visitor[extra], visitor, visitor],
            user=[user[lo], user[lo], user[extra], user, user],
            name=[VIEW, CART, VIEW, CHECKOUT, PURCHASE],
            item=[single, single + o.line_qty - 1, extra_product * 3, -1, -1],
            order=[-1, -1, -1, np.arange(n_orders), np.arange(n_orders)],
        )

    def _browse_sessions(self, budget: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Sessions without purchase (about ``budget`` events): views, sometimes a cart, sometimes a checkout."""
        n, g, vis, days = self.n, self.n_guests, self.vis, self.clock.days
        sessions = max(0, int(round(budget / 3.19)))
        who = rng.choice(3, sessions, p=[0.55, 0.05, 0.40])  # account, guest, anonymous
        weight = self.order_count + 1.0
        account = rng.choice(n, sessions, p=weight / weight.sum())
        buyer = np.where(who == 0, account, n + rng.integers(0, g, sessions))
        anonymous = vis.anon_start + rng.integers(0, len(vis.owner) - vis.anon_start, sessions)
        visitor = np.where(who == 2, anonymous, self._device_of(buyer, rng))
        lo = np.maximum(np.where(who == 0, self.first_day[buyer] - 30, self.first_day[buyer] - 10), 0)
        hi = np.minimum(np.where(who == 0, self.end_day[buyer] + 60, self.first_day[buyer] + 30), days - 1)
        day = (lo + rng.random(sessions) * (np.maximum(hi, lo) - lo + 1)).astype(np.int64)
        wander = vis.anon_day[visitor] + np.round(rng.normal(0, 10, sessions)).astype(np.int64)
        wander = np.where((wander >= 0) & (wander < days), wander, vis.anon_day[visitor])
        day = np.where(who == 2, wander, day)
        user = np.where((who == 0) & (rng.random(sessions) < 0.55), account, -1)
        start = self.clock.times_of_day(day, rng) * US + rng.integers(0, US, sessions)
        start = np.minimum(start, (self.clock.end_epoch - 7200) * US)
        n_views = np.minimum(1 + rng.poisson(1.8, sessions), 8)
        cart = rng.random(sessions) < 0.28
        checkout = cart & (rng.random(sessions) < 0.4)
        return self._session_events(start, visitor, user, day, n_views, cart, checkout, rng)

    def _session_events(
        self,
        start: np.ndarray,
        visitor: np.ndarray,
        user: np.ndarray,
        day: np.ndarray,
        n_views: np.ndarray,
        cart: np.ndarray,
        checkout: np.ndarray,
        rng: np.random.Generator,
    ) -> dict[str, np.ndarray]:
        """Expand sessions into views a minute apart, then add_to_cart of the last item viewed, then checkout."""
        s = np.repeat(np.arange(len(start)), n_views)
        step = np.arange(len(s)) - np.repeat(np.cumsum(n_views) - n_views, n_views)
        view_ts = start[s] + step * 60 * US + rng.integers(0, 50 * US, len(s))
        product = self._browsed(visitor[s], day[s], rng)
        last = product[np.cumsum(n_views) - 1]
        qty = np.where(rng.random(len(start)) < 0.1, 2, 1)
        item = np.where(self.cat.gift_card[last], last * 3, last * 3 + qty - 1)
        cart_ts = start + n_views * 60 * US + rng.integers(0, 50 * US, len(start))
        checkout_ts = cart_ts + rng.integers(30, 300, len(start)) * US
        return _events(
            ts=[view_ts, cart_ts[cart], checkout_ts[checkout]],
            visitor=[visitor[s], visitor[cart], visitor[checkout]],
            user=[user[s], user[cart], user[checkout]],
            name=[VIEW, CART, CHECKOUT],
            item=[product * 3, item[cart], item[checkout]],
            order=[-1, -1, -1],
        )

    def _recent_carts(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Logged-in customers who put something in the cart in the last 3 days and have not ordered since a week."""
        n, o, days = self.n, self.orders, self.clock.days
        last_day = np.full(n, -1)
        account = o.buyer < n
        np.maximum.at(last_day, o.buyer[account], o.day[account])
        candidates = np.flatnonzero((last_day >= 0) & (last_day < days - 7))
        if len(candidates) == 0:
            candidates = np.arange(n)
        chosen = rng.choice(candidates, size=min(len(candidates), max(1, round(0.015 * n))), replace=False)
        k = len(chosen)
        start = (self.clock.end_epoch - rng.integers(3600, 3 * 86400 - 600, k)) * US
        visitor = self._device_of(chosen, rng)
        n_views = 1 + (rng.random(k) < 0.5)
        return self._session_events(
            start, visitor, chosen, np.full(k, days - 1), n_views, np.ones(k, dtype=bool), rng.random(k) < 0.6, rng
        )

    def _event_tables(self, rng: np.random.Generator) -> None:
        """Pre-built JSON fragments, so an event line is ten looked-up pieces, joined once per chunk."""
        o = self.orders
        fragments = item_fragments(self.cat)
        line_fragment = fragments[o.line_product * 3 + o.line_qty - 1]
        last = np.r_[o.line_order[1:] != o.line_order[:-1], True]
        items = "[" + np.add.reduceat(line_fragment + np.where(last, "", ","), o.first_line) + "]"
        revenue = ',"ecommerce":{"transaction_id":"' + self.order_text["name"] + '","purchase_revenue":'
        high = self.ev["ts"] // US // 100_000  # event_timestamp = high digits + 5 + 3 + 3 padded digits
        self.seconds_base = int(high.min()) if len(high) else 0
        self.lut = {
            "date": '{"event_date":"' + self.clock.ga4_dates + '","event_timestamp":',
            "seconds_high": as_text(np.arange(self.seconds_base, int(high.max()) + 1 if len(high) else 1)),
            "name": np.array([f',"event_name":"{name}"' for name in EVENT_NAMES], dtype=object),
            "pseudo": self._pseudo_ids(rng),
            "user": np.concatenate(
                [[',"user_id":null,"items":'], ',"user_id":"' + as_text(self.customer_id) + '","items":']
            ).astype(object),
            "single": "[" + fragments + "]" + NULL_ECOMMERCE,
            "checkout": items + NULL_ECOMMERCE,
            "purchase": items + revenue + money(self.facts["total"]) + "}",
            "tail": _traffic_and_device()[self.vis.traffic * len(DEVICES) + self.vis.device],
        }

    def _pseudo_ids(self, rng: np.random.Generator) -> np.ndarray:
        """Per visitor, the ``user_pseudo_id`` piece: GA4's ``<random>.<first seen, epoch seconds>``."""
        first_seen = np.full(len(self.vis.owner), self.clock.start_epoch, dtype=np.int64)
        first_seen[np.unique(self.ev["visitor"])] = self.clock.end_epoch
        np.minimum.at(first_seen, self.ev["visitor"], self.ev["ts"] // US)
        random_part = as_text(1_000_000_000 + rng.choice(9_000_000_000, len(self.vis.owner), replace=False))
        return np.asarray(',"user_pseudo_id":"' + random_part + "." + as_text(first_seen) + '"')

    def _event_lines(
        self, idx: np.ndarray, pseudo: np.ndarray | None = None, body: np.ndarray | None = None
    ) -> np.ndarray:
        """JSONL lines (one string each) for the events at ``idx``; see ``_event_pieces``."""
        return concat(list(self._event_pieces(idx, pseudo, body).T))

    def _event_pieces(
        self, idx: np.ndarray, pseudo: np.ndarray | None = None, body: np.ndarray | None = None
    ) -> np.ndarray:
        """The events at ``idx`` as a piece matrix (optionally another user_pseudo_id piece or items body)."""
        ev, lut = self.ev, self.lut
        ts, name, order, visitor = ev["ts"][idx], ev["name"][idx], ev["order"][idx], ev["visitor"][idx]
        if body is None:
            body = np.empty(len(idx), dtype=object)
            single, purchase = order < 0, name == PURCHASE
            body[single] = lut["single"][ev["item"][idx][single]]
            body[~single & ~purchase] = lut["checkout"][order[~single & ~purchase]]
            body[purchase] = lut["purchase"][order[purchase]]
        pseudo = lut["pseudo"][visitor] if pseudo is None else pseudo
        seconds, micros = ts // US, ts % US
        return piece_matrix(
            [
                lut["date"][self.clock.local_day_index(seconds)],
                lut["seconds_high"][seconds // 100_000 - self.seconds_base],
                PAD5[seconds % 100_000],
                PAD3[micros // 1000],
                PAD3[micros % 1000],
                lut["name"][name],
                pseudo,
                lut["user"][ev["user"][idx] + 1],
                body,
                lut["tail"][visitor],
            ]
        )

    def _event_dirt(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Copies of real events with a flaw (no user_pseudo_id, a retired SKU, cut short) or none (repeated);
        returns the source event of each dirty line and the lines, ordered by source."""
        ev, n_events = self.ev, len(self.ev["ts"])
        used = np.zeros(n_events, dtype=bool)

        def pick(mask: np.ndarray, kind: str) -> np.ndarray:
            candidates = np.flatnonzero(mask & ~used)
            chosen = np.sort(
                rng.choice(candidates, min(len(candidates), dirt_count(EVENTS_FILE, kind, n_events)), replace=False)
            )
            used[chosen] = True
            self.plant(EVENTS_FILE, kind, len(chosen))
            return chosen

        not_purchase = ev["name"] != PURCHASE
        missing = pick(not_purchase, "missing_field")
        unknown = pick(ev["name"] == VIEW, "unknown_sku")
        duplicate = pick(np.ones(n_events, dtype=bool), "exact_duplicate")
        bad = pick(not_purchase, "bad_json")
        sku, title, price = retired_products(len(unknown))
        retired = np.array(
            [
                json.dumps(
                    [
                        {
                            "item_id": s,
                            "item_name": t,
                            "item_category": "Coffee Beans",
                            "price": int(c) / 100,
                            "quantity": 1,
                        }
                    ],
                    separators=(",", ":"),
                    ensure_ascii=True,
                )
                for s, t, c in zip(sku, title, price, strict=True)
            ],
            dtype=object,
        )
        absent_or_null = np.where(np.arange(len(missing)) % 2 == 0, "", ',"user_pseudo_id":null')
        lines = [
            self._event_lines(missing, pseudo=absent_or_null.astype(object)),
            self._event_lines(unknown, body=retired + NULL_ECOMMERCE),
            self._event_lines(duplicate),
            (pd.Series(self._event_lines(bad), dtype=object).str[:-31] + "\n").to_numpy(dtype=object),
        ]
        sources = np.concatenate([missing, unknown, duplicate, bad])
        order = np.argsort(sources, kind="stable")
        return sources[order], np.concatenate(lines)[order]

    def _write_events(self, sources: np.ndarray, dirt: np.ndarray, chunk: int = 1_000_000) -> int:
        """Stream the JSONL in chunks (bounded memory), each dirty line right after its source event."""
        n_events = len(self.ev["ts"])
        with (self.out / EVENTS_FILE).open("w", encoding="utf-8", newline="") as handle:
            for start in range(0, n_events, chunk):
                stop = min(start + chunk, n_events)
                pieces = self._event_pieces(np.arange(start, stop))
                here = (sources >= start) & (sources < stop)
                rows = sources[here] - start  # one dirty line at most per source: append it to the source's last piece
                pieces[rows, -1] = pieces[rows, -1] + dirt[here]
                handle.write(matrix_text(pieces))
        return n_events + len(dirt)

    def _event_expectations(self) -> None:
        """Event counts, and the customers with an abandoned cart in the last 3 days (no purchase after it)."""
        ev, o, n = self.ev, self.orders, self.n
        names = np.bincount(ev["name"], minlength=len(EVENT_NAMES))
        recent = (ev["name"] == CART) & (ev["user"] >= 0) & (ev["ts"] >= (self.clock.end_epoch - 3 * 86400) * US)
        latest_cart = np.full(n, -1, dtype=np.int64)
        np.maximum.at(latest_cart, ev["user"][recent], ev["ts"][recent])
        bought = (ev["name"] == PURCHASE) & (o.buyer[np.maximum(ev["order"], 0)] < n)
        last_purchase = np.full(n, -1, dtype=np.int64)
        np.maximum.at(last_purchase, o.buyer[ev["order"][bought]], ev["ts"][bought])
        self.expected.update(
            {
                "events": len(ev["ts"]),
                "events_by_name": {e: int(c) for e, c in zip(EVENT_NAMES, names, strict=True)},
                "anonymous_events": int((ev["user"] < 0).sum()),
                "logged_in_customers": int(len(np.unique(ev["user"][ev["user"] >= 0]))),
                "recent_abandoned_carts": int(((latest_cart >= 0) & (latest_cart > last_purchase)).sum()),
            }
        )

    # -------------------------------------------------- manifest

    def write_manifest(self) -> None:
        """manifest.json: seed, as_of, rows per file, planted dirt per kind and file, expected counts."""
        files = (PRODUCTS_FILE, CUSTOMERS_FILE, ORDERS_FILE, CRM_FILE, EVENTS_FILE)
        kinds = DIRT_KINDS
        store = {
            "name": STORE_NAME,
            "currency": CURRENCY,
            "timezone": STORE_TZ,
            "history_start": self.clock.start.isoformat(),
            "history_end": (self.clock.as_of - timedelta(days=1)).isoformat(),
        }
        self.manifest = {
            "seed": self.seed,
            "as_of": self.clock.as_of.isoformat(),
            "customers": self.n,
            "generator_version": GENERATOR_VERSION,
            "files": {f: self.files[f] for f in files},
            "dirt": {k: {f: self.dirt[k][f] for f in files if f in self.dirt.get(k, {})} for k in kinds},
            "expected": {"store": store, **self.expected},
        }
        text = json.dumps(self.manifest, indent=2, ensure_ascii=False) + "\n"
        (self.out / "manifest.json").write_text(text, encoding="utf-8")


@cache
def _traffic_and_device() -> np.ndarray:
    """The line's last piece per (traffic source, device) pair: ``traffic_source`` and ``device`` objects."""
    return np.array(
        [
            f',"traffic_source":{json.dumps({"source": s, "medium": m, "name": c}, separators=(",", ":"))}'
            f',"device":{{"category":"{d}"}}}}\n'
            for s, m, c, _ in TRAFFIC
            for d, _ in DEVICES
        ],
        dtype=object,
    )


@cache
def _city_names() -> np.ndarray:
    return np.array([c.name for c in CITIES], dtype=object)


@cache
def _city_field(name: str) -> np.ndarray:
    return np.array([getattr(c, name) for c in CITIES], dtype=object)


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


@dataclass
class Visitors:
    """GA4 browsers: who owns each ``user_pseudo_id`` (person or -1), its device, traffic source and taste."""

    owner: np.ndarray
    n_dev: np.ndarray  # per buyer (accounts, then guests)
    dev_start: np.ndarray  # per buyer: their first visitor index
    anon_start: int
    cluster: np.ndarray
    device: np.ndarray
    traffic: np.ndarray
    anon_day: np.ndarray  # the day an anonymous visitor is around


def _events(**columns: list[Any]) -> dict[str, np.ndarray]:
    """Stack event columns given per group (arrays, or constants broadcast to the group's length)."""
    sizes = [len(ts) for ts in columns["ts"]]
    out = {}
    for key, groups in columns.items():
        dtype = np.int8 if key == "name" else np.int64
        out[key] = np.concatenate(
            [np.broadcast_to(np.asarray(g, dtype=dtype), (size,)) for g, size in zip(groups, sizes, strict=True)]
        )
    return out


def _address(full_name: np.ndarray, people: People, who: np.ndarray) -> list[np.ndarray]:
    """Name, City, Zip, Province, Country of the given people (order billing/shipping columns)."""
    city = people.city[who]
    return [
        full_name[who],
        escape(_city_names())[city],
        people.zip[who],
        _city_field("province")[city],
        people.country[who],
    ]


def birth_dates(k: int, as_of: date, rng: np.random.Generator) -> np.ndarray:
    """Dates of birth for 55% of contacts (NaT for the rest), with some on Feb 29 and some in the next 7 days."""
    low = np.datetime64("1950-01-01")
    dob = low + rng.integers(0, (np.datetime64("2006-12-31") - low).astype(int) + 1, k)
    present = rng.random(k) < 0.55
    chosen = rng.permutation(np.flatnonzero(present))
    n_leap = max(1, round(0.002 * len(chosen)))
    n_soon = max(2, round(0.01 * len(chosen)))
    leap_years = rng.choice(np.arange(1952, 2005, 4), n_leap)
    dob[chosen[:n_leap]] = np.array([f"{y}-02-29" for y in leap_years], dtype="datetime64[D]")
    soon = [as_of + timedelta(days=int(d)) for d in rng.integers(1, 8, n_soon)]
    years = rng.integers(1955, 2005, n_soon)
    dob[chosen[n_leap : n_leap + n_soon]] = np.array(
        [
            f"{(y - y % 4) if (d.month, d.day) == (2, 29) else y}-{d.month:02d}-{d.day:02d}"
            for y, d in zip(years, soon, strict=True)
        ][: len(chosen[n_leap : n_leap + n_soon])],
        dtype="datetime64[D]",
    )
    out = dob.astype("datetime64[ns]")
    out[~present] = np.datetime64("NaT")
    return out


def malformed_crm_rows(cols: list[np.ndarray | str], people: People, who: np.ndarray) -> np.ndarray:
    """Contact rows a reader must refuse: cut short, or ``Portland, Oregon`` unquoted (one field too many)."""
    variant = np.arange(len(who)) % 2
    rows = join_row(cols)
    cut = variant == 0
    rows[cut] = join_row([c if isinstance(c, str) else c[cut] for c in cols[:12]])
    wide = variant == 1
    city = people.city[who[wide]]
    unquoted = [c if isinstance(c, str) else c[wide] for c in cols]
    unquoted[12] = _city_names()[city] + ", " + _city_field("region")[city]
    rows[wide] = join_row(unquoted)
    return rows
