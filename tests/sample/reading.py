"""Plain csv/json readers and checks of a written sample store, for the tests of ``sample/``.

Every count here is re-derived from the written files with plain csv/json code, never read back from the
generator's internals, so the manifest is checked rather than trusted.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import re
from collections import Counter, defaultdict
from datetime import date, datetime
from pathlib import Path

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


def plausible_birthday(text: str, as_of: str) -> bool:
    """Blank, or an ISO date from 1900 up to ``as_of`` (what a reader keeps)."""
    return not text or (parses(text, "%Y-%m-%d") and "1900-01-01" <= text <= as_of)


def documented_columns() -> list[list[str]]:
    """Column lists as written in docs/SOURCE_FORMATS.md: products, customers, orders, HubSpot."""
    text = re.sub(r"```.*?```", "", DOCS.read_text(encoding="utf-8"), flags=re.S)
    lists = [m for m in re.findall(r"`([^`]+)`", text) if m.count(",") >= 10]
    return [[c.strip() for c in m.replace("\n", " ").split(",")] for m in lists]


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
