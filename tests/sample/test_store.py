"""The sample store generator: determinism, the documented formats, and planted dirt that independent checks find.

Every count here is re-derived from the written files with plain csv/json code, never read back from the
generator's internals, so the manifest is checked rather than trusted.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import re
import statistics
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.errors import InputError
from sources.sample import write_sample

AS_OF = date(2026, 11, 27)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "SOURCE_FORMATS.md"
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
PRICE = re.compile(r"\d+\.\d{2}")
SHOPIFY_PHONE = re.compile(r"'\+\d{8,15}")
SHOPIFY_TIME = "%Y-%m-%d %H:%M:%S %z"
SHOPIFY_STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}")
FILES = {
    "products": "shopify/products_export.csv",
    "customers": "shopify/customers_export.csv",
    "orders": "shopify/orders_export.csv",
    "crm": "hubspot_contacts.csv",
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("store")
    return out, write_sample(out, customers=2000, seed=7, as_of=AS_OF)


@functools.cache
def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV (read once per file; callers must not modify them)."""
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


@functools.cache
def records(store_dir: Path, name: str) -> list[dict[str, str]]:
    """Well-formed rows as dicts (rows with the wrong field count left out); read once per store."""
    header, rows = read_csv(store_dir / FILES[name])
    return [dict(zip(header, row, strict=True)) for row in rows if len(row) == len(header)]


def parses(value: str, fmt: str) -> bool:
    """Whether ``value`` is a timestamp in ``fmt`` (the Shopify format is checked strictly but fast)."""
    if fmt == SHOPIFY_TIME:
        return SHOPIFY_STAMP.fullmatch(value) is not None and _shopify_ok(value)
    try:
        datetime.strptime(value, fmt)
    except ValueError:
        return False
    return True


def _shopify_ok(value: str) -> bool:
    try:
        shopify_time(value)
    except ValueError:
        return False
    return True


def shopify_time(value: str) -> datetime:
    """``2026-11-20 14:03:11 -0500`` (fromisoformat wants the offset as ``-05:00``; strptime is 20x slower)."""
    return datetime.fromisoformat(f"{value[:19]}{value[20:23]}:{value[23:]}")


def documented_columns() -> list[list[str]]:
    """Column lists as written in docs/SOURCE_FORMATS.md: products, customers, orders, HubSpot."""
    text = re.sub(r"```.*?```", "", DOCS.read_text(encoding="utf-8"), flags=re.S)
    lists = [m for m in re.findall(r"`([^`]+)`", text) if m.count(",") >= 10]
    return [[c.strip() for c in m.replace("\n", " ").split(",")] for m in lists]


def audit(store_dir: Path) -> dict[str, dict[str, int]]:
    """Dirt found by simple independent checks, in the manifest's shape (kind → file → count)."""
    found: dict[str, Counter] = defaultdict(Counter)
    header, rows = read_csv(store_dir / FILES["products"])
    skus = set()
    for row in rows:
        rec = dict(zip(header, row, strict=False))
        if len(row) != len(header) or not PRICE.fullmatch(rec["Variant Price"]):
            found["malformed_row"][FILES["products"]] += 1
            continue
        skus.add(rec["Variant SKU"])
        if not rec["Image Src"].startswith("https://"):
            found["bad_field"][FILES["products"]] += 1
    _audit_customers(store_dir, found)
    _audit_orders(store_dir, skus, found)
    _audit_crm(store_dir, found)
    _audit_events(store_dir, skus, found)
    return {kind: dict(files) for kind, files in found.items()}


def _audit_customers(store_dir: Path, found: dict[str, Counter]) -> None:
    header, rows = read_csv(store_dir / FILES["customers"])
    seen = set()
    for row in rows:
        rec = dict(zip(header, row, strict=False))
        email = rec.get("Email", "")
        if len(row) != len(header):
            found["malformed_row"][FILES["customers"]] += 1
        elif not rec["Customer ID"].lstrip("'"):
            found["missing_field"][FILES["customers"]] += 1
        elif not EMAIL.fullmatch(email.strip()):
            found["invalid_email"][FILES["customers"]] += 1
        else:
            if rec["Phone"] and not SHOPIFY_PHONE.fullmatch(rec["Phone"]):
                found["bad_field"][FILES["customers"]] += 1
            if email.strip().lower() in seen:
                found["duplicate_customer"][FILES["customers"]] += 1
        seen.add(email.strip().lower())


def _audit_crm(store_dir: Path, found: dict[str, Counter]) -> None:
    as_of = json.loads((store_dir / "manifest.json").read_text(encoding="utf-8"))["as_of"]
    header, rows = read_csv(store_dir / FILES["crm"])
    for row in rows:
        rec = dict(zip(header, row, strict=False))
        if len(row) != len(header):
            found["malformed_row"][FILES["crm"]] += 1
        elif not EMAIL.fullmatch(rec["Email"].strip()):
            found["invalid_email"][FILES["crm"]] += 1
        elif (
            not plausible_birthday(rec["Date of Birth"], as_of)
            or " " in rec["Time Zone"]
            or not parses(rec["Create Date"], "%Y-%m-%d %H:%M")
        ):
            found["bad_field"][FILES["crm"]] += 1


def plausible_birthday(text: str, as_of: str) -> bool:
    """Blank, or an ISO date from 1900 up to ``as_of`` (what a reader keeps)."""
    return not text or (parses(text, "%Y-%m-%d") and "1900-01-01" <= text <= as_of)


def _audit_orders(store_dir: Path, skus: set[str], found: dict[str, Counter]) -> None:
    header, rows = read_csv(store_dir / FILES["orders"])
    seen = set()
    for row in rows:
        rec = dict(zip(header, row, strict=False))
        path = FILES["orders"]
        if (
            len(row) != len(header)
            or not rec["Lineitem quantity"].isdigit()
            or not PRICE.fullmatch(rec["Lineitem price"])
            or not parses(rec["Created at"], SHOPIFY_TIME)
        ):
            found["malformed_row"][path] += 1
        elif not rec["Name"] or not rec["Lineitem sku"]:
            found["missing_field"][path] += 1
        elif rec["Lineitem sku"] not in skus:
            found["unknown_sku"][path] += 1
        elif tuple(row) in seen:
            found["exact_duplicate"][path] += 1
        seen.add(tuple(row))


@functools.cache
def event_lines(store_dir: Path) -> list[tuple[str, dict | None]]:
    """Each line of the events file with its parsed object (None when it is not JSON); read once per store."""
    out: list[tuple[str, dict | None]] = []
    for line in (store_dir / "ga4_events.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            out.append((line, json.loads(line)))
        except json.JSONDecodeError:
            out.append((line, None))
    return out


def _audit_events(store_dir: Path, skus: set[str], found: dict[str, Counter]) -> None:
    seen = set()
    path = "ga4_events.jsonl"
    for line, event in event_lines(store_dir):
        if event is None:
            found["bad_json"][path] += 1
            continue
        if not event.get("user_pseudo_id"):
            found["missing_field"][path] += 1
        elif any(item["item_id"] not in skus for item in event["items"]):
            found["unknown_sku"][path] += 1
        elif line in seen:
            found["exact_duplicate"][path] += 1
        seen.add(line)


@functools.cache
def clean_events(store_dir: Path) -> list[dict]:
    """Events an ingest keeps: valid JSON, with a user_pseudo_id, first occurrence only; read once per store."""
    seen, out = set(), []
    for line, event in event_lines(store_dir):
        if line not in seen and event is not None and event.get("user_pseudo_id"):
            out.append(event)
        seen.add(line)
    return out


def digest(store_dir: Path) -> dict[str, str]:
    return {
        p.relative_to(store_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(store_dir.rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------- determinism and API


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    first = write_sample(tmp_path / "a", customers=60, seed=3, as_of=AS_OF)
    second = write_sample(tmp_path / "b", customers=60, seed=3, as_of=AS_OF)
    other = write_sample(tmp_path / "c", customers=60, seed=4, as_of=AS_OF)
    assert first == second
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    theirs = digest(tmp_path / "c")
    assert all(theirs[name] != ours for name, ours in digest(tmp_path / "a").items())
    assert other["seed"] == 4


def test_fewer_than_ten_customers_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 10 customers"):
        write_sample(tmp_path, customers=9)


def test_an_output_folder_under_a_file_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "report.txt").write_text("not a folder", encoding="utf-8")
    with pytest.raises(InputError, match=r"^sample --out .*report\.txt/store: cannot create the folder there"):
        write_sample(tmp_path / "report.txt" / "store", customers=10)


def test_progress_names_each_stage(tmp_path: Path) -> None:
    stages: list[str] = []
    write_sample(tmp_path, customers=10, seed=1, as_of=AS_OF, progress=stages.append)
    assert stages[:2] == ["products", "customers"] and "events" in stages


def test_manifest_is_written_and_returned(store: tuple[Path, dict]) -> None:
    out, manifest = store
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["as_of"] == "2026-11-27" and manifest["customers"] == 2000 and manifest["seed"] == 7
    assert set(manifest) >= {"files", "dirt", "expected", "generator_version"}


# ---------------------------------------------------------------- formats


def test_headers_are_exactly_the_documented_columns(store: tuple[Path, dict]) -> None:
    out, _ = store
    documented = documented_columns()
    for name, columns in zip(("products", "customers", "orders", "crm"), documented, strict=True):
        header, _ = read_csv(out / FILES[name])
        assert header == columns, name


def test_manifest_row_counts_equal_the_files(store: tuple[Path, dict]) -> None:
    out, manifest = store
    for name, info in manifest["files"].items():
        if name.endswith(".csv"):
            assert len(read_csv(out / name)[1]) == info["rows"], name
        else:
            assert len((out / name).read_text(encoding="utf-8").splitlines()) == info["rows"], name


def test_dirt_in_the_manifest_is_exactly_what_independent_checks_find(store: tuple[Path, dict]) -> None:
    out, manifest = store
    assert audit(out) == manifest["dirt"]
    for path, info in manifest["files"].items():
        dirty = sum(files.get(path, 0) for files in manifest["dirt"].values())
        assert 0.003 <= dirty / info["rows"] <= 0.02, path


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


def test_catalogue_has_every_type_consumables_and_plausible_prices(store: tuple[Path, dict]) -> None:
    out, _ = store
    products = [p for p in records(out, "products") if PRICE.fullmatch(p["Variant Price"])]
    by_type = defaultdict(list)
    for p in products:
        by_type[p["Type"]].append(Decimal(p["Variant Price"]))
    assert set(by_type) == {"Coffee Beans", "Brewing Gear", "Filters & Pods", "Tea", "Food", "Gifts"}
    assert statistics.median(by_type["Brewing Gear"]) > statistics.median(by_type["Coffee Beans"])
    assert statistics.median(by_type["Food"]) < statistics.median(by_type["Coffee Beans"])
    beans = [p for p in products if p["Type"] == "Coffee Beans"]
    assert all(p["Roast level (product.metafields.custom.roast_level)"] in {"light", "medium", "dark"} for p in beans)
    replenish = "Replenishment days (product.metafields.custom.replenishment_days)"
    consumable = {"Coffee Beans", "Tea", "Filters & Pods"}
    assert all(bool(p[replenish]) == (p["Type"] in consumable) for p in products)
    assert {"draft", "archived"} <= {p["Status"] for p in products}
    assert len({p["Variant SKU"] for p in products}) == len(products)


# ---------------------------------------------------------------- behaviour the later stages rely on


def test_each_order_has_one_purchase_event_with_its_total(store: tuple[Path, dict]) -> None:
    out, manifest = store
    totals = {o["Name"]: Decimal(o["Total"]) for o in records(out, "orders") if o["Name"] and o["Total"]}
    purchases = [e for e in clean_events(out) if e["event_name"] == "purchase"]
    assert sorted(e["ecommerce"]["transaction_id"] for e in purchases) == sorted(totals)
    assert all(
        Decimal(str(e["ecommerce"]["purchase_revenue"])) == totals[e["ecommerce"]["transaction_id"]] for e in purchases
    )
    assert len(totals) == manifest["expected"]["orders"]


def test_funnel_and_logged_in_vs_anonymous_events(store: tuple[Path, dict]) -> None:
    out, _ = store
    events = clean_events(out)
    names = Counter(e["event_name"] for e in events)
    assert names["view_item"] > names["add_to_cart"] > names["begin_checkout"] > names["purchase"] > 0
    ids = {c["Customer ID"].lstrip("'") for c in records(out, "customers")}
    logged_in = [e for e in events if e["user_id"] is not None]
    assert 0.2 < len(logged_in) / len(events) < 0.9
    assert {e["user_id"] for e in logged_in} <= ids


def test_customer_totals_add_up_from_their_orders(store: tuple[Path, dict]) -> None:
    out, _ = store
    header, rows = read_csv(out / FILES["orders"])
    firsts = {r[0]: dict(zip(header, r, strict=True)) for r in rows if len(r) == len(header) and r[0] and r[11]}
    spent: Counter = Counter()
    count: Counter = Counter()
    for order in firsts.values():
        count[order["Email"]] += 1
        if order["Financial Status"] in {"paid", "refunded", "partially_refunded"}:
            spent[order["Email"]] += Decimal(order["Total"]) - Decimal(order["Refunded Amount"] or "0")
    customers = [c for c in records(out, "customers") if c["Total Orders"] != "0"]
    assert len(customers) > 1500
    for customer in customers:
        assert int(customer["Total Orders"]) == count[customer["Email"]]
        assert Decimal(customer["Total Spent"]) == spent[customer["Email"]]


def test_guest_checkouts_use_emails_the_customers_export_lacks(store: tuple[Path, dict]) -> None:
    out, manifest = store
    known = {c["Email"].strip().lower() for c in records(out, "customers")}
    guests = {o["Email"] for o in records(out, "orders") if o["Email"].lower() not in known}
    assert len(guests) == manifest["expected"]["guest_emails"] > 0


def test_consumables_are_reordered_on_their_replenishment_cycle(store: tuple[Path, dict]) -> None:
    out, manifest = store
    replenish = "Replenishment days (product.metafields.custom.replenishment_days)"
    days = {p["Variant SKU"]: int(p[replenish]) for p in records(out, "products") if p[replenish]}
    buys = defaultdict(list)
    for row in records(out, "orders"):
        if (
            row["Name"]
            and row["Lineitem sku"] in days
            and row["Lineitem quantity"].isdigit()
            and parses(row["Created at"], SHOPIFY_TIME)
        ):
            when = shopify_time(row["Created at"])
            buys[row["Email"], row["Lineitem sku"]].append((when, int(row["Lineitem quantity"])))
    ratios, due = [], 0
    as_of = datetime(2026, 11, 27, tzinfo=UTC)
    for (_, sku), history in buys.items():
        history.sort()
        if len(history) < 3:
            continue
        ratios += [(b[0] - a[0]).days / (days[sku] * a[1]) for a, b in zip(history, history[1:], strict=False)]
        last, qty = history[-1]
        due += -14 <= (last + timedelta(days=days[sku] * qty) - as_of).days <= 7
    assert len(ratios) > 1000
    assert 0.9 < statistics.median(ratios) < 1.5
    assert due > 20
    assert manifest["expected"]["replenishment_due_next_7_days"] > 0


def test_some_birthdays_are_feb_29_and_some_in_the_next_7_days(store: tuple[Path, dict]) -> None:
    out, manifest = store
    kept = [c for c in records(out, "crm") if EMAIL.fullmatch(c["Email"].strip()) or c["Phone Number"]]
    births = [
        c["Date of Birth"] for c in kept if c["Date of Birth"] and plausible_birthday(c["Date of Birth"], "2026-11-27")
    ]
    assert all(date.fromisoformat(b) for b in births)
    upcoming = {(AS_OF + timedelta(days=d)).strftime("%m-%d") for d in range(1, 8)}
    assert sum(b.endswith("02-29") for b in births) == manifest["expected"]["feb29_birthdays"] > 0
    assert sum(b[5:] in upcoming for b in births) == manifest["expected"]["birthdays_next_7_days"] > 0


def test_logged_in_carts_abandoned_in_the_last_three_days(store: tuple[Path, dict]) -> None:
    out, manifest = store
    email_of = {c["Customer ID"].lstrip("'"): c["Email"] for c in records(out, "customers")}
    last_order: dict[str, float] = {}
    for row in records(out, "orders"):
        if row["Name"] and parses(row["Created at"], SHOPIFY_TIME):
            ts = shopify_time(row["Created at"]).timestamp()
            last_order[row["Email"]] = max(ts, last_order.get(row["Email"], 0))
    since = (datetime(2026, 11, 27, tzinfo=UTC) - timedelta(days=3)).timestamp() * 1_000_000
    latest_cart: dict[str, int] = {}
    for e in clean_events(out):
        if e["event_name"] == "add_to_cart" and e["user_id"] and e["event_timestamp"] >= since:
            latest_cart[e["user_id"]] = max(e["event_timestamp"], latest_cart.get(e["user_id"], 0))
    abandoned = [u for u, ts in latest_cart.items() if last_order.get(email_of[u], 0) + 10 < ts / 1_000_000]
    assert len(abandoned) == manifest["expected"]["recent_abandoned_carts"] > 10


def test_crm_holds_most_customers_written_differently_plus_newsletter_contacts(store: tuple[Path, dict]) -> None:
    out, manifest = store
    customers = {c["Email"].strip().lower(): c for c in records(out, "customers")}
    contacts = [c for c in records(out, "crm") if EMAIL.fullmatch(c["Email"].strip())]
    matched = [c for c in contacts if c["Email"].strip().lower() in customers]
    assert len(matched) > 0.8 * manifest["customers"]
    assert sum(c["Email"] != c["Email"].strip().lower() for c in matched) > 0.2 * len(matched)
    assert len(contacts) - len(matched) > manifest["expected"]["crm_only_contacts"]  # newsletter + guests
    consent = Counter(c["Email Marketing Consent"] for c in contacts)
    assert 0.5 < consent["Subscribed"] / len(contacts) < 0.7 and consent[""] > 0 and consent["Unsubscribed"] > 0
    assert {c["Loyalty Tier"] for c in contacts} == {"Bronze", "Silver", "Gold", ""}
    for contact in contacts[:300]:
        if contact["Phone Number"]:
            number = phonenumbers.parse(contact["Phone Number"], contact["Country/Region"])
            assert phonenumbers.is_valid_number(number), contact["Phone Number"]


def test_seasonal_peak_in_november_and_december(store: tuple[Path, dict]) -> None:
    _, manifest = store
    months = manifest["expected"]["orders_by_month"]
    assert months["2025-12"] > 1.2 * months["2025-09"] and months["2025-12"] > months["2026-01"]
    assert months["2026-08"] < months["2026-06"]


def test_taste_clusters_steer_what_customers_buy(store: tuple[Path, dict]) -> None:
    """People who buy tea buy more tea-adjacent things than coffee people do: the signal a recommender learns."""
    out, _ = store
    types = {p["Variant SKU"]: p["Type"] for p in records(out, "products")}
    baskets = defaultdict(Counter)
    for row in records(out, "orders"):
        if row["Lineitem sku"] in types:
            baskets[row["Email"]][types[row["Lineitem sku"]]] += 1
    tea_people = [b for b in baskets.values() if b["Tea"] >= 2]
    others = [b for b in baskets.values() if b["Tea"] == 0 and sum(b.values()) >= 2]
    tea_share = sum(b["Coffee Beans"] for b in tea_people) / sum(sum(b.values()) for b in tea_people)
    other_share = sum(b["Coffee Beans"] for b in others) / sum(sum(b.values()) for b in others)
    assert tea_share < other_share


def test_a_recommender_can_learn_the_tastes(store: tuple[Path, dict]) -> None:
    """Leave each buyer's last new product out: items bought together beat plain popularity at finding it."""
    out, _ = store
    skus = sorted({p["Variant SKU"] for p in records(out, "products") if PRICE.fullmatch(p["Variant Price"])})
    column = {sku: i for i, sku in enumerate(skus)}
    history = defaultdict(list)
    for row in records(out, "orders"):
        if row["Name"] and row["Lineitem sku"] in column and parses(row["Created at"], SHOPIFY_TIME):
            history[row["Email"]].append((shopify_time(row["Created at"]), column[row["Lineitem sku"]]))
    seen = np.zeros((len(history), len(skus)))
    held_out = {}
    for user, bought in enumerate(history.values()):
        distinct = list(dict.fromkeys(item for _, item in sorted(bought)))
        if len(distinct) >= 3:
            held_out[user] = distinct.pop()
        seen[user, distinct] = 1
    popularity = seen.sum(axis=0)
    together = seen.T @ seen
    np.fill_diagonal(together, 0)
    together /= np.sqrt(np.outer(popularity + 1, popularity + 1))
    hits = Counter()
    for user, item in held_out.items():
        for model, scores in (("popularity", popularity.copy()), ("together", together @ seen[user])):
            scores[seen[user] > 0] = -1
            hits[model] += item in np.argsort(-scores)[:10]
    assert len(held_out) > 500
    assert hits["together"] > 1.15 * hits["popularity"]


# ---------------------------------------------------------------- for every seed


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    customers=st.integers(min_value=10, max_value=60),
    seed=st.integers(min_value=0, max_value=2**31),
    as_of=st.dates(min_value=date(2020, 1, 1), max_value=date(2035, 12, 31)),
)
def test_small_stores_are_consistent_for_any_seed_and_day(
    tmp_path_factory: pytest.TempPathFactory, customers: int, seed: int, as_of: date
) -> None:
    out = tmp_path_factory.mktemp("small")
    manifest = write_sample(out, customers=customers, seed=seed, as_of=as_of)
    assert audit(out) == manifest["dirt"]
    limit = datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC).timestamp() * 1_000_000
    assert all(e["event_timestamp"] < limit for e in clean_events(out))
    for name, info in manifest["files"].items():
        lines = len((out / name).read_text(encoding="utf-8").splitlines())
        assert info["rows"] == (lines if name.endswith(".jsonl") else len(read_csv(out / name)[1]))
    names = {o["Name"] for o in records(out, "orders") if o["Name"] and o["Total"]}
    purchases = [e["ecommerce"]["transaction_id"] for e in clean_events(out) if e["event_name"] == "purchase"]
    assert sorted(purchases) == sorted(names)


# ---------------------------------------------------------------- cells a reader sets aside (bad_field)


def test_bad_cells_are_planted_where_they_hurt_most(store: tuple[Path, dict]) -> None:
    """The hostile run's cases, in the demo: unsafe image URLs, opt-outs whose phone or birthday is broken."""
    out, manifest = store
    images = [p["Image Src"] for p in records(out, "products") if not p["Image Src"].startswith("https://")]
    assert len(images) == manifest["dirt"]["bad_field"]["shopify/products_export.csv"]
    assert all(url.split(":")[0] in {"javascript", "data"} or url.startswith("/") for url in images)
    broken = [c for c in records(out, "customers") if c["Phone"] and not SHOPIFY_PHONE.fullmatch(c["Phone"])]
    assert broken and all(c["Accepts Email Marketing"] == "no" for c in broken)
    assert len(broken) == manifest["expected"]["opt_outs_with_a_bad_phone"]
    old = [c for c in records(out, "crm") if c["Date of Birth"] and c["Date of Birth"] < "1900"]
    assert old and all(c["Email Marketing Consent"] == "Unsubscribed" for c in old)
    opted_in = {c["Email"].strip().lower() for c in records(out, "customers") if c["Accepts Email Marketing"] == "yes"}
    assert any(c["Email"].strip().lower() in opted_in for c in old)  # Shopify says yes: the CRM no must still win


def test_some_non_marketing_contacts_opted_in_on_shopify(store: tuple[Path, dict]) -> None:
    out, manifest = store
    opted_in = {c["Email"].strip().lower() for c in records(out, "customers") if c["Accepts Email Marketing"] == "yes"}
    contacts = records(out, "crm")
    non_marketing = [c for c in contacts if c["Marketing contact status"] == "Non-marketing contact"]
    found = sum(c["Email"].strip().lower() in opted_in for c in non_marketing)
    expected = manifest["expected"]
    assert len(non_marketing) >= expected["crm_non_marketing_contacts"] > 0
    assert expected["crm_non_marketing_shopify_opt_ins"] - expected["crm_invalid_email_with_phone"] <= found
    assert 0 < found <= expected["crm_non_marketing_shopify_opt_ins"]
