"""Shopify admin exports (products, customers, orders as CSV) read into checked, normalized frames.

Each ``read_*`` function returns the rows that passed every check with database-ready columns, and
fills the file's :class:`~sources.validate.Intake` with what it quarantined and skipped. Column names
are Shopify's own (see docs/SOURCE_FORMATS.md).
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sources.validate import (
    ROW,
    Intake,
    blank,
    is_member,
    none_if_blank,
    normalize_emails,
    normalize_phones,
    parse_flags,
    parse_integers,
    parse_numbers,
    parse_timestamps,
    read_csv,
    reject_each,
    strip_apostrophe,
    with_default,
)

PRODUCTS_FILE = "products_export.csv"
CUSTOMERS_FILE = "customers_export.csv"
ORDERS_FILE = "orders_export.csv"

EXPORT_PRODUCTS = "export products from Shopify admin → Products → Export → 'All products', 'CSV for Excel, Numbers…'"
EXPORT_CUSTOMERS = "export customers from Shopify admin → Customers → Export → 'All customers', 'CSV for Excel…'"
EXPORT_ORDERS = "export orders from Shopify admin → Orders → Export → 'All orders', 'CSV for Excel, Numbers…'"

SHOPIFY_TIME = "%Y-%m-%d %H:%M:%S %z"
YES_NO = {"yes": True, "no": False}
CONSUMABLE_TYPES = frozenset({"coffee beans", "tea", "filters & pods"})
PRODUCT_STATUSES = frozenset({"active", "draft", "archived"})
FINANCIAL_STATUSES = frozenset(
    {"paid", "refunded", "partially_refunded", "pending", "voided", "authorized", "partially_paid", "expired"}
)

PRODUCT_REQUIRED = ["Handle", "Title", "Type", "Variant SKU", "Variant Price"]
PRODUCT_LEVEL = ["Title", "Vendor", "Type", "Tags", "Status"]
CUSTOMER_REQUIRED = ["Customer ID", "First Name", "Last Name", "Email", "Accepts Email Marketing", "Phone"]
ORDER_REQUIRED = [
    "Name", "Email", "Financial Status", "Created at", "Currency", "Total",
    "Lineitem quantity", "Lineitem name", "Lineitem price", "Lineitem sku",
]  # fmt: skip
ORDER_USED = [
    *ORDER_REQUIRED, "Paid at", "Cancelled at", "Accepts Marketing", "Subtotal", "Shipping", "Taxes",
    "Discount Amount", "Refunded Amount", "Billing Name", "Billing City", "Billing Zip", "Billing Province",
    "Billing Country",
]  # fmt: skip
ORDER_MONEY = ["Subtotal", "Shipping", "Taxes", "Total", "Discount Amount", "Refunded Amount"]


@dataclass
class Orders:
    """The checked orders file: one row per order and one per line item."""

    orders: pd.DataFrame
    lines: pd.DataFrame


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    """A column that may be absent from an older export: empty strings when missing."""
    if name in frame.columns:
        return frame[name]
    return pd.Series("", index=frame.index, dtype=str)


def _metafield_name(frame: pd.DataFrame, key: str) -> str:
    """The label of a product metafield column (``... (product.metafields.custom.KEY)``), found by its key."""
    for name in frame.columns:
        if str(name).endswith(f"metafields.custom.{key})"):
            return str(name)
    return key


def _inherited(frame: pd.DataFrame, name: str) -> pd.Series:
    """A product-level field after :func:`_inherit_product_fields` (empty when the column is absent)."""
    return _column(frame, f"_{name}")


# --- products -----------------------------------------------------------------------------------------


def read_products(path: Path, intake: Intake) -> pd.DataFrame:
    """Products by SKU. Variant rows inherit the product fields of their handle's first row."""
    frame = read_csv(path, intake, PRODUCT_REQUIRED, EXPORT_PRODUCTS)
    frame = intake.drop_duplicates(frame)
    frame = _inherit_product_fields(frame)
    images_only = blank(frame["Variant SKU"]) & blank(frame["Variant Price"]) & ~blank(_column(frame, "Image Src"))
    image_rows = frame[images_only]
    frame = frame[~images_only]
    price, bad_price = parse_numbers(frame["Variant Price"])
    days_column = _metafield_name(frame, "replenishment_days")
    replenish, bad_days = parse_integers(_inherited(frame, days_column))
    numeric = _numeric_problems(frame, ["Variant Grams", "Variant Inventory Qty", "Variant Compare At Price"])
    status = _inherited(frame, "Status").str.lower()
    frame = reject_each(
        intake,
        frame,
        [
            ("Handle", blank(frame["Handle"]), "missing Handle"),
            ("Variant SKU", blank(frame["Variant SKU"]), "missing Variant SKU"),
            ("Title", blank(_inherited(frame, "Title")), "missing Title"),
            ("Variant Price", bad_price | blank(frame["Variant Price"]), "Variant Price is not a number"),
            (days_column, bad_days | (replenish < 0), "Replenishment days is not a whole number"),
            ("Status", ~status.isin(PRODUCT_STATUSES) & (status != ""), "Status is not active/draft/archived"),
            *numeric,
        ],
    )
    sku = frame["Variant SKU"].str.strip()
    repeated = sku.duplicated(keep="first")
    frame = intake.reject(frame, repeated, "Variant SKU", "Variant SKU already used on an earlier row")
    products = _product_columns(frame, price.loc[frame.index], replenish.loc[frame.index])
    return _with_fallback_images(products, image_rows)


def _inherit_product_fields(frame: pd.DataFrame) -> pd.DataFrame:
    """Shopify writes product-level fields only on a handle's first row; copy them to its other rows.

    The inherited values go to ``_<column>`` so the columns as read stay untouched for quarantine.
    """
    handle = frame["Handle"].str.strip()
    names = [name for name in frame.columns if name in PRODUCT_LEVEL or "metafields.custom." in name]
    for name in names:
        values = frame[name].str.strip()
        first = values.where(values != "").groupby(handle).transform("first")
        frame[f"_{name}"] = values.where(values != "", first).fillna("")
    return frame


def _numeric_problems(frame: pd.DataFrame, columns: list[str]) -> list[tuple[str, pd.Series, str]]:
    """Checks that optional numeric columns hold numbers (a typo there means the row is suspect)."""
    checks = []
    for name in columns:
        if name in frame.columns:
            _, invalid = parse_numbers(frame[name])
            checks.append((name, invalid, f"{name} is not a number"))
    return checks


def _product_columns(frame: pd.DataFrame, price: pd.Series, replenish: pd.Series) -> pd.DataFrame:
    product_type = _inherited(frame, "Type").str.strip()
    consumable = product_type.str.lower().isin(CONSUMABLE_TYPES) | replenish.notna()
    notes = _inherited(frame, _metafield_name(frame, "flavour_notes")).str.split(";")
    flavour = notes.map(lambda parts: "|".join(p.strip() for p in parts if p.strip()) or None)
    status = _inherited(frame, "Status").str.strip().str.lower()
    return pd.DataFrame(
        {
            "sku": frame["Variant SKU"].str.strip(),
            "handle": frame["Handle"].str.strip(),
            "title": _inherited(frame, "Title"),
            "product_type": none_if_blank(product_type),
            "vendor": none_if_blank(_inherited(frame, "Vendor")),
            "tags": none_if_blank(_inherited(frame, "Tags")),
            "price": price.astype(float),
            "image_url": none_if_blank(_column(frame, "Image Src")),
            "flavour_notes": flavour.astype(object),
            "roast": none_if_blank(_inherited(frame, _metafield_name(frame, "roast_level"))),
            "origin": none_if_blank(_inherited(frame, _metafield_name(frame, "origin"))),
            "consumable": consumable.astype(bool),
            "replenish_days": replenish.astype(object).where(replenish.notna(), None),
            "active": status.isin(["active", ""]),
            ROW: frame[ROW],
        }
    ).reset_index(drop=True)


def _with_fallback_images(products: pd.DataFrame, image_rows: pd.DataFrame) -> pd.DataFrame:
    """Image-only rows (extra product images) give a product without a variant image its picture."""
    if image_rows.empty:
        products.attrs["image_rows"] = 0
        return products
    first_image = image_rows.groupby(image_rows["Handle"].str.strip())["Image Src"].first().str.strip()
    missing = products["image_url"].isna()
    products.loc[missing, "image_url"] = products.loc[missing, "handle"].map(first_image)
    products["image_url"] = products["image_url"].astype(object).where(products["image_url"].notna(), None)
    products.attrs["image_rows"] = len(image_rows)
    return products


# --- customers ----------------------------------------------------------------------------------------


def read_customers(path: Path, intake: Intake, default_country: str) -> pd.DataFrame:
    """Customers with normalized email (lowercase) and phone (E.164), and their marketing consents."""
    frame = read_csv(path, intake, CUSTOMER_REQUIRED, EXPORT_CUSTOMERS)
    frame = intake.drop_duplicates(frame)
    customer_id = strip_apostrophe(frame["Customer ID"])
    country = _column(frame, "Default Address Country Code").str.strip().str.upper()
    email, bad_email = normalize_emails(frame["Email"])
    phone, bad_phone = normalize_phones(frame["Phone"], with_default(country, default_country))
    accepts_email, bad_accepts_email = parse_flags(frame["Accepts Email Marketing"], YES_NO)
    accepts_sms, bad_accepts_sms = parse_flags(_column(frame, "Accepts SMS Marketing"), YES_NO)
    frame = reject_each(
        intake,
        frame,
        [
            ("Customer ID", customer_id == "", "missing Customer ID"),
            ("Email", bad_email, "not a valid email address"),
            ("Phone", bad_phone, "not a valid phone number"),
            ("Accepts Email Marketing", bad_accepts_email, "Accepts Email Marketing is not yes/no"),
            ("Accepts SMS Marketing", bad_accepts_sms, "Accepts SMS Marketing is not yes/no"),
            *_numeric_problems(frame, ["Total Spent", "Total Orders"]),
        ],
    )
    repeated = customer_id.loc[frame.index].duplicated(keep="first")
    frame = intake.reject(frame, repeated, "Customer ID", "Customer ID already used on an earlier row")
    address_phone, _ = normalize_phones(_column(frame, "Default Address Phone"), with_default(country, default_country))
    index = frame.index
    return pd.DataFrame(
        {
            "external_id": customer_id.loc[index],
            "email": email.loc[index],
            "phone": phone.loc[index].where(phone.loc[index].notna(), address_phone),
            "first_name": none_if_blank(frame["First Name"]),
            "last_name": none_if_blank(frame["Last Name"]),
            "city": none_if_blank(_column(frame, "Default Address City")),
            "region": none_if_blank(_column(frame, "Default Address Province Code")),
            "country": none_if_blank(country.loc[index]),
            "zip": none_if_blank(_column(frame, "Default Address Zip")),
            "accepts_email": accepts_email.loc[index],
            "accepts_sms": accepts_sms.loc[index],
            ROW: frame[ROW],
        }
    ).reset_index(drop=True)


# --- orders -------------------------------------------------------------------------------------------


def read_orders(path: Path, intake: Intake, known_skus: Set[str]) -> Orders:
    """Orders (order-level fields from each order's first row) and their line items.

    A line whose SKU is not in ``known_skus`` is quarantined; the order itself is still loaded from
    its other rows. When an order's first row is quarantined, its order-level fields (total, status…)
    stay empty until that row is fixed and the file synced again.
    """
    frame = read_csv(path, intake, ORDER_REQUIRED, EXPORT_ORDERS)
    frame = intake.drop_duplicates(frame)
    frame = frame[[name for name in ORDER_USED if name in frame.columns] + [ROW]]  # narrow: cheaper copies
    frame = intake.reject(frame, blank(frame["Name"]), "Name", "missing Name (the order number)")
    frame["_name"] = frame["Name"].str.strip()
    frame["_line"] = frame.groupby("_name").cumcount() + 1
    frame["_created"], _ = parse_timestamps(frame["Created at"], SHOPIFY_TIME)
    frame = _reject_bad_order_fields(intake, frame, frame["_line"] == 1)
    orders = _order_rows(frame)
    lines = _line_rows(intake, frame, known_skus)
    return Orders(orders=orders, lines=lines)


def _reject_bad_order_fields(intake: Intake, frame: pd.DataFrame, first: pd.Series) -> pd.DataFrame:
    """Order-level values are read from the first row only; quarantine a first row whose values are bad."""
    firsts = frame[first]
    checks: list[tuple[str, pd.Series, str]] = []
    for name in ORDER_MONEY:
        if name in frame.columns:
            _, invalid = parse_numbers(firsts[name])
            checks.append((name, invalid, f"{name} is not a number"))
    for name in ["Paid at", "Cancelled at"]:
        if name in frame.columns:
            _, invalid = parse_timestamps(firsts[name], SHOPIFY_TIME)
            checks.append((name, invalid, f"{name} is not a timestamp like 2026-11-20 14:03:11 +0100"))
    status = firsts["Financial Status"].str.strip().str.lower()
    unknown = (status != "") & ~status.isin(FINANCIAL_STATUSES)
    checks.append(("Financial Status", unknown, "unknown Financial Status"))
    return reject_each(intake, frame, checks)


def _order_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per order: identity fields from any row, order-level fields from its first row."""
    valid_time = frame[frame["_created"].notna()]
    head = valid_time.drop_duplicates("_name", keep="first").set_index("_name")
    first_rows = frame[frame["_line"] == 1].set_index("_name")
    email, _ = normalize_emails(head["Email"])
    total, _ = parse_numbers(_column(first_rows, "Total"))
    refunded, _ = parse_numbers(_column(first_rows, "Refunded Amount"))
    cancelled, _ = parse_timestamps(_column(first_rows, "Cancelled at"), SHOPIFY_TIME)
    accepts, _ = parse_flags(_column(first_rows, "Accepts Marketing"), YES_NO)
    orders = pd.DataFrame({"email": email, "created_at": head["_created"]})
    level = pd.DataFrame(
        {
            "currency": none_if_blank(_column(first_rows, "Currency").str.upper()),
            "total": total.fillna(0.0),
            "financial_status": none_if_blank(_column(first_rows, "Financial Status").str.lower()),
            "refunded_amount": refunded.fillna(0.0),
            "cancelled_at": cancelled,
            "accepts_marketing": accepts,
            **_billing(first_rows),
        }
    )
    orders = orders.join(level, how="left")
    orders["total"] = orders["total"].fillna(0.0)
    orders["refunded_amount"] = orders["refunded_amount"].fillna(0.0)
    return orders.rename_axis("external_id").reset_index()


def _billing(first_rows: pd.DataFrame) -> dict[str, pd.Series]:
    """Who a guest checkout is: name and place from the billing address."""
    name = _column(first_rows, "Billing Name").str.strip()
    parts = name.str.split(" ", n=1, expand=True).reindex(columns=[0, 1]).fillna("")
    return {
        "first_name": none_if_blank(parts[0].astype(str)),
        "last_name": none_if_blank(parts[1].astype(str)),
        "city": none_if_blank(_column(first_rows, "Billing City")),
        "region": none_if_blank(_column(first_rows, "Billing Province")),
        "country": none_if_blank(_column(first_rows, "Billing Country").str.upper()),
        "zip": none_if_blank(_column(first_rows, "Billing Zip")),
    }


def _line_rows(intake: Intake, frame: pd.DataFrame, known_skus: Set[str]) -> pd.DataFrame:
    """Line items that pass their checks, numbered by their position in the order."""
    sku = frame["Lineitem sku"].str.strip()
    quantity, bad_quantity = parse_integers(frame["Lineitem quantity"])
    price, bad_price = parse_numbers(frame["Lineitem price"])
    bad_created = frame["_created"].isna()
    unknown = (sku != "") & ~is_member(sku, known_skus)
    frame = reject_each(
        intake,
        frame,
        [
            ("Created at", bad_created, "Created at is not a timestamp like 2026-11-20 14:03:11 +0100"),
            ("Lineitem sku", sku == "", "missing Lineitem sku"),
            ("Lineitem quantity", bad_quantity | (quantity < 1), "Lineitem quantity is not a positive number"),
            ("Lineitem price", bad_price | blank(frame["Lineitem price"]), "Lineitem price is not a number"),
            ("Lineitem sku", unknown, lambda values: "unknown SKU " + values.str.strip().map(repr)),
        ],
    )
    index = frame.index
    return pd.DataFrame(
        {
            "order_external_id": frame["_name"],
            "line_number": frame["_line"].astype("int64"),
            "sku": sku.loc[index],
            "name": none_if_blank(frame["Lineitem name"]),
            "quantity": quantity.loc[index].astype("int64"),
            "price": price.loc[index].astype(float),
            ROW: frame[ROW],
        }
    ).reset_index(drop=True)
