"""Shopify admin exports (products, customers, orders as CSV) read into checked, normalized frames.

Each ``read_*`` function returns the rows that passed every row-level check with database-ready columns,
and fills the file's :class:`~sources.validate.Intake` with what it quarantined (rows that cannot say who or
what they are about), set aside (bad cells of rows loaded anyway) and skipped. Column names are Shopify's
own (see docs/SOURCE_FORMATS.md, which also lists which problems are row- and which field-level).
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from models.schema import utcnow
from sources.formats import CUSTOMER_REQUIRED, ORDER_REQUIRED, PRODUCT_REQUIRED
from sources.formats import CUSTOMERS_FILE as CUSTOMERS_FILE  # re-exported: the readers' callers name them here
from sources.formats import ORDERS_FILE as ORDERS_FILE
from sources.formats import PRODUCTS_FILE as PRODUCTS_FILE
from sources.validate import (
    ROW,
    Intake,
    blank,
    in_future,
    is_member,
    none_if_blank,
    normalize_emails,
    normalize_phones,
    parse_flags,
    parse_integers,
    parse_numbers,
    parse_timestamps,
    parse_urls,
    read_csv,
    reject_each,
    set_aside_each,
    stated_denials,
    strip_apostrophe,
    with_default,
)

EXPORT_PRODUCTS = "export products from Shopify admin → Products → Export → 'All products', 'CSV for Excel, Numbers…'"
EXPORT_CUSTOMERS = "export customers from Shopify admin → Customers → Export → 'All customers', 'CSV for Excel…'"
EXPORT_ORDERS = "export orders from Shopify admin → Orders → Export → 'All orders', 'CSV for Excel, Numbers…'"

SHOPIFY_TIME = "%Y-%m-%d %H:%M:%S %z"
YES_NO = {"yes": True, "no": False}
TRUE_FALSE = {"true": True, "false": False, "yes": True, "no": False}
CONSUMABLE_TYPES = frozenset({"coffee beans", "tea", "filters & pods"})
PRODUCT_STATUSES = frozenset({"active", "draft", "archived"})
FINANCIAL_STATUSES = frozenset(
    {"paid", "refunded", "partially_refunded", "pending", "voided", "authorized", "partially_paid", "expired"}
)

PRODUCT_LEVEL = ["Title", "Vendor", "Type", "Tags", "Status", "Published", "Gift Card"]
ORDER_USED = [
    *ORDER_REQUIRED, "Paid at", "Cancelled at", "Accepts Marketing", "Subtotal", "Shipping", "Taxes",
    "Discount Amount", "Refunded Amount", "Billing Name", "Billing City", "Billing Zip", "Billing Province",
    "Billing Country",
]  # fmt: skip
ORDER_MONEY = ["Subtotal", "Shipping", "Taxes", "Total", "Discount Amount", "Refunded Amount"]
MAX_AMOUNT = 1_000_000_000.0
"""Above this a price or order amount is no amount of money but a broken cell (a pasted id, an Excel number)."""
UNKNOWN_EMAIL = "_unknown_email"
UNKNOWN_PHONE = "_unknown_phone"
"""Columns of the customers (and CRM contacts) frame: True where the cell was set aside, so a stored value must
not be replaced by "no value" (``sources/load.py`` keeps the stored one)."""


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
    """Products by SKU. Variant rows inherit the product fields of their handle's first row.

    Row-level: no Handle, SKU or Title; a Variant Price that is missing, not a number, negative or absurd; a
    SKU already used. Field-level: a replenishment period, Status or optional number that does not parse, and
    an ``Image Src`` that is not an absolute http(s) URL (``javascript:``, ``data:``, relative): never stored.
    Merchandising (optional columns, defaults when absent): ``Variant Inventory Qty`` (not tracked when the
    ``Variant Inventory Tracker`` cell is blank or the ``Variant Inventory Policy`` is ``continue``: sold regardless),
    ``Published`` and ``Gift Card`` (TRUE/FALSE); a cell that does not parse is set aside, the product loads as not
    tracked, not published, or a gift card (so never recommended on a guess).
    """
    return check_products(read_csv(path, intake, PRODUCT_REQUIRED, EXPORT_PRODUCTS), intake)


def check_products(frame: pd.DataFrame, intake: Intake) -> pd.DataFrame:
    """The checks of :func:`read_products` on rows already read (an export file or an API's records in the
    export's columns, see :func:`sources.validate.raw_frame`)."""
    frame = intake.drop_duplicates(frame)
    frame = _inherit_product_fields(frame)
    images_only = blank(frame["Variant SKU"]) & blank(frame["Variant Price"]) & ~blank(_column(frame, "Image Src"))
    image_rows = frame[images_only]
    frame = frame[~images_only]
    price, bad_price = parse_numbers(frame["Variant Price"])
    frame = reject_each(
        intake,
        frame,
        [
            ("Handle", blank(frame["Handle"]), "missing Handle"),
            ("Variant SKU", blank(frame["Variant SKU"]), "missing Variant SKU"),
            ("Title", blank(_inherited(frame, "Title")), "missing Title"),
            ("Variant Price", bad_price | blank(frame["Variant Price"]), "Variant Price is not a number like 14.50"),
            ("Variant Price", price < 0, "Variant Price is negative"),
            ("Variant Price", price > MAX_AMOUNT, "Variant Price is over 1,000,000,000: not a price"),
        ],
    )
    sku = frame["Variant SKU"].str.strip()
    repeated = sku.duplicated(keep="first")
    frame = intake.reject(frame, repeated, "Variant SKU", "Variant SKU already used on an earlier row")
    days_column = _metafield_name(frame, "replenishment_days")
    replenish, bad_days = parse_integers(_inherited(frame, days_column))
    status = _inherited(frame, "Status").str.strip().str.lower()
    image, bad_image = parse_urls(_column(frame, "Image Src"))
    stock, bad_stock = parse_integers(_column(frame, "Variant Inventory Qty"))
    published, bad_published = parse_flags(_inherited(frame, "Published"), TRUE_FALSE)
    gift_card, bad_gift_card = parse_flags(_inherited(frame, "Gift Card"), TRUE_FALSE)
    unknown = set_aside_each(
        intake,
        frame,
        [
            (days_column, bad_days | (replenish < 0), "Replenishment days is not a whole number: loaded without it"),
            ("Status", ~status.isin(PRODUCT_STATUSES) & (status != ""),
             "Status is not active/draft/archived: loaded as not active"),
            ("Image Src", bad_image, "Image Src is not an absolute http(s) URL: loaded without an image"),
            *_numeric_problems(frame, ["Variant Grams", "Variant Compare At Price"]),
            ("Variant Inventory Qty", bad_stock, "Variant Inventory Qty is not a whole number: loaded as not tracked"),
            ("Published", bad_published, "Published is not TRUE/FALSE: loaded as not published"),
            ("Gift Card", bad_gift_card, "Gift Card is not TRUE/FALSE: loaded as a gift card (never recommended)"),
        ],
    )  # fmt: skip
    products = _product_columns(
        frame,
        price.loc[frame.index],
        replenish.loc[frame.index].where(~unknown[days_column]),
        image.loc[frame.index],
        unknown["Status"],
    )
    products["inventory_quantity"] = _inventory(frame, stock).to_numpy(dtype=object)
    products["published"] = (~published.eq(False) & ~unknown["Published"]).to_numpy(dtype=bool)  # blank: published
    products["gift_card"] = (gift_card.eq(True) | unknown["Gift Card"]).to_numpy(dtype=bool)
    return _with_fallback_images(products, _safe_images(intake, image_rows))


def _inventory(frame: pd.DataFrame, stock: pd.Series) -> pd.Series:
    """Units in stock, or None where Shopify does not track the variant (blank ``Variant Inventory Tracker``, when
    the export has that column), sells it when out of stock (``Variant Inventory Policy: continue``), or the cell is
    blank or unreadable: all of these count as in stock."""
    tracked = stock.notna()
    if "Variant Inventory Tracker" in frame.columns:
        tracked &= ~blank(frame["Variant Inventory Tracker"])
    tracked &= _column(frame, "Variant Inventory Policy").str.strip().str.lower() != "continue"
    return stock.astype(object).where(tracked, None)


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
    """Optional numeric columns that do not hold a number: the cell is set aside (the column is not used)."""
    checks = []
    for name in columns:
        if name in frame.columns:
            _, invalid = parse_numbers(frame[name])
            checks.append((name, invalid, f"{name} is not a number like 14.50"))
    return checks


def _product_columns(
    frame: pd.DataFrame, price: pd.Series, replenish: pd.Series, image: pd.Series, unknown_status: pd.Series
) -> pd.DataFrame:
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
            "image_url": image,
            "flavour_notes": flavour.astype(object),
            "roast": none_if_blank(_inherited(frame, _metafield_name(frame, "roast_level"))),
            "origin": none_if_blank(_inherited(frame, _metafield_name(frame, "origin"))),
            "consumable": consumable.astype(bool),
            "replenish_days": replenish.astype(object).where(replenish.notna(), None),
            "active": status.isin(["active", ""]) & ~unknown_status,
            ROW: frame[ROW],
        }
    ).reset_index(drop=True)


def _safe_images(intake: Intake, image_rows: pd.DataFrame) -> pd.DataFrame:
    """Extra-image rows whose ``Image Src`` is a safe URL; an unsafe one is set aside (the row counts as loaded)."""
    if image_rows.empty:
        return image_rows.assign(_image=pd.Series(dtype=object))
    image, bad = parse_urls(image_rows["Image Src"])
    intake.set_aside(image_rows, bad, "Image Src", "Image Src is not an absolute http(s) URL: not used")
    return image_rows.assign(_image=image)


def _with_fallback_images(products: pd.DataFrame, image_rows: pd.DataFrame) -> pd.DataFrame:
    """Image-only rows (extra product images) give a product without a variant image its picture."""
    products.attrs["image_rows"] = len(image_rows)
    usable = image_rows[image_rows["_image"].notna()]
    if usable.empty:
        return products
    first_image = usable.groupby(usable["Handle"].str.strip())["_image"].first()
    missing = products["image_url"].isna()
    products.loc[missing, "image_url"] = products.loc[missing, "handle"].map(first_image)
    products["image_url"] = products["image_url"].astype(object).where(products["image_url"].notna(), None)
    return products


# --- customers ----------------------------------------------------------------------------------------


def read_customers(path: Path, intake: Intake, default_country: str) -> pd.DataFrame:
    """Customers with normalized email (lowercase) and phone (E.164), and their marketing consents.

    A customer is identified by its Customer ID: a row without one, or repeating an earlier row's, is
    quarantined; every other bad cell (email, phone, a consent word, a total) is set aside and the row loads,
    so an ``Accepts Email Marketing: no`` is never lost to a bad phone. A quarantined row's denial still
    counts: a repeated Customer ID's for that customer, a row without Customer ID's for its (valid) email.
    """
    return check_customers(read_csv(path, intake, CUSTOMER_REQUIRED, EXPORT_CUSTOMERS), intake, default_country)


def check_customers(frame: pd.DataFrame, intake: Intake, default_country: str) -> pd.DataFrame:
    """The checks of :func:`read_customers` on rows already read (file or API records in the export's columns)."""
    frame = intake.drop_duplicates(frame)
    customer_id = strip_apostrophe(frame["Customer ID"])
    country = _column(frame, "Default Address Country Code").str.strip().str.upper()
    countries = with_default(country, default_country)
    email, bad_email = normalize_emails(frame["Email"])
    phone, bad_phone = normalize_phones(frame["Phone"], countries)
    address_phone, bad_address_phone = normalize_phones(_column(frame, "Default Address Phone"), countries)
    accepts_email, bad_accepts_email = parse_flags(frame["Accepts Email Marketing"], YES_NO)
    accepts_sms, bad_accepts_sms = parse_flags(_column(frame, "Accepts SMS Marketing"), YES_NO)
    statements = {"email": accepts_email, "sms": accepts_sms}
    missing_id = customer_id == ""
    repeated = customer_id.duplicated(keep="first") & ~missing_id
    intake.keep_denials(stated_denials(_only(statements, missing_id), email=email))
    intake.keep_denials(stated_denials(_only(statements, repeated), external_id=customer_id))
    frame = reject_each(
        intake,
        frame,
        [
            ("Customer ID", missing_id, "missing Customer ID"),
            ("Customer ID", repeated, "Customer ID already used on an earlier row"),
        ],
    )
    unknown = set_aside_each(
        intake,
        frame,
        [
            ("Email", bad_email, "not a valid email address: loaded without one"),
            ("Phone", bad_phone, "not a valid phone number: loaded without one"),
            ("Default Address Phone", bad_address_phone, "not a valid phone number: not used"),
            ("Accepts Email Marketing", bad_accepts_email, "not yes/no: no email consent statement from this row"),
            ("Accepts SMS Marketing", bad_accepts_sms, "not yes/no: no SMS consent statement from this row"),
            *_numeric_problems(frame, ["Total Spent", "Total Orders"]),
        ],
    )
    index = frame.index
    phone = phone.loc[index].where(phone.loc[index].notna(), address_phone.loc[index])
    return pd.DataFrame(
        {
            "external_id": customer_id.loc[index],
            "email": email.loc[index],
            "phone": phone,
            "first_name": none_if_blank(frame["First Name"]),
            "last_name": none_if_blank(frame["Last Name"]),
            "city": none_if_blank(_column(frame, "Default Address City")),
            "region": none_if_blank(_column(frame, "Default Address Province Code")),
            "country": none_if_blank(country.loc[index]),
            "zip": none_if_blank(_column(frame, "Default Address Zip")),
            "accepts_email": accepts_email.loc[index],
            "accepts_sms": accepts_sms.loc[index],
            UNKNOWN_EMAIL: unknown["Email"],
            UNKNOWN_PHONE: unknown["Phone"] & phone.isna(),
            ROW: frame[ROW],
        }
    ).reset_index(drop=True)


def _only(statements: dict[str, pd.Series], rows: pd.Series) -> dict[str, pd.Series]:
    return {channel: flags[rows] for channel, flags in statements.items()}


# --- orders -------------------------------------------------------------------------------------------


def read_orders(path: Path, intake: Intake, known_skus: Set[str], now: datetime | None = None) -> Orders:
    """Orders (order-level fields from each order's first row) and their line items.

    Row-level (the line is quarantined): no Name, a Created at that does not parse or lies after ``now`` (the
    sync's clock) + 1 day, no or an unknown SKU, a quantity or price that is not a positive number. A line
    whose SKU is not in ``known_skus`` is quarantined; the order itself is still loaded from its other rows.
    Field-level (the order loads without the value): an invalid Email (the order is not linked to anyone),
    order amounts that do not parse or are negative, Paid/Cancelled at, Financial Status, Accepts Marketing.
    An order none of whose rows can be dated is not loaded; a guest's "Accepts Marketing: no" on it still counts.
    """
    return check_orders(read_csv(path, intake, ORDER_REQUIRED, EXPORT_ORDERS), intake, known_skus, now)


def check_orders(frame: pd.DataFrame, intake: Intake, known_skus: Set[str], now: datetime | None = None) -> Orders:
    """The checks of :func:`read_orders` on rows already read (file or API records in the export's columns)."""
    used = [name for name in ORDER_USED if name in frame.columns] + [ROW]  # narrow: cheaper copies
    frame = intake.drop_duplicates(frame, keep=used)
    frame = intake.reject(frame, blank(frame["Name"]), "Name", "missing Name (the order number)")
    frame["_name"] = frame["Name"].str.strip()
    frame["_line"] = frame.groupby("_name").cumcount() + 1
    created, _ = parse_timestamps(frame["Created at"], SHOPIFY_TIME)
    frame["_future"] = in_future(created, now or utcnow())
    frame["_created"] = created.where(~frame["_future"])
    level = _order_level(intake, frame, frame["_line"] == 1)
    orders = _order_rows(frame, level)
    lost = level[~level.index.isin(orders["external_id"]) & level["email"].notna()]
    intake.keep_denials(stated_denials({"email": lost["accepts_marketing"]}, external_id=lost["email"]))
    lines = _line_rows(intake, frame, known_skus)
    return Orders(orders=orders, lines=lines)


def _order_level(intake: Intake, frame: pd.DataFrame, first: pd.Series) -> pd.DataFrame:
    """Order-level values from each order's first row, bad cells set aside (the order loads without them)."""
    firsts = frame[first]
    email, bad_email = normalize_emails(firsts["Email"])
    money = {name: parse_numbers(_column(firsts, name)) for name in ORDER_MONEY}
    paid, bad_paid = parse_timestamps(_column(firsts, "Paid at"), SHOPIFY_TIME)
    cancelled, bad_cancelled = parse_timestamps(_column(firsts, "Cancelled at"), SHOPIFY_TIME)
    status = firsts["Financial Status"].str.strip().str.lower()
    accepts, bad_accepts = parse_flags(_column(firsts, "Accepts Marketing"), YES_NO)
    checks: list[tuple[str, pd.Series, str]] = [
        ("Email", bad_email, "not a valid email address: the order is loaded without a customer"),
    ]
    for name, (values, invalid) in money.items():
        if name in firsts.columns:
            checks.append((name, invalid, f"{name} is not a number like 14.50: loaded without it"))
            absurd = (values < 0) | (values > MAX_AMOUNT)
            checks.append((name, absurd, f"{name} is negative or absurd: loaded without it"))
    checks += [
        ("Paid at", bad_paid, "Paid at is not a timestamp like 2026-11-20 14:03:11 +0100"),
        ("Cancelled at", bad_cancelled, "Cancelled at is not a timestamp like 2026-11-20 14:03:11 +0100"),
        ("Financial Status", (status != "") & ~status.isin(FINANCIAL_STATUSES), "unknown Financial Status"),
        ("Accepts Marketing", bad_accepts, "not yes/no: no email consent statement from this order"),
    ]
    unknown = set_aside_each(intake, firsts, checks)

    def known(name: str, values: pd.Series) -> pd.Series:
        return values.where(~unknown[name]) if name in unknown else values

    return pd.DataFrame(
        {
            "email": email,
            "currency": none_if_blank(_column(firsts, "Currency").str.upper()),
            "total": known("Total", money["Total"][0]),
            "financial_status": none_if_blank(status.where(~unknown["Financial Status"], "")),
            "refunded_amount": known("Refunded Amount", money["Refunded Amount"][0]),
            "cancelled_at": cancelled,
            "accepts_marketing": accepts,
            **_billing(firsts),
        }
    ).set_axis(firsts["_name"].to_numpy())


def _order_rows(frame: pd.DataFrame, level: pd.DataFrame) -> pd.DataFrame:
    """One row per order: created from its first row with a valid time, order-level fields from its first row.

    Every row of an order carries its Email; the first row's (normalized) is the order's.
    """
    valid_time = frame[frame["_created"].notna()]
    head = valid_time.drop_duplicates("_name", keep="first").set_index("_name")
    orders = pd.DataFrame({"created_at": head["_created"]}).join(level, how="left")
    orders["total"] = orders["total"].fillna(0.0)
    orders["refunded_amount"] = orders["refunded_amount"].fillna(0.0)
    orders = orders[["email", "created_at", *[name for name in orders.columns if name not in ("email", "created_at")]]]
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
    future = frame["_future"]
    bad_created = frame["_created"].isna() & ~future
    unknown = (sku != "") & ~is_member(sku, known_skus)
    frame = reject_each(
        intake,
        frame,
        [
            ("Created at", bad_created, "Created at is not a timestamp like 2026-11-20 14:03:11 +0100"),
            ("Created at", future, "Created at is in the future (after the sync's clock + 1 day)"),
            ("Lineitem sku", sku == "", "missing Lineitem sku"),
            ("Lineitem quantity", bad_quantity | (quantity < 1), "Lineitem quantity is not a positive number"),
            ("Lineitem price", bad_price | blank(frame["Lineitem price"]), "Lineitem price is not a number"),
            ("Lineitem price", (price < 0) | (price > MAX_AMOUNT), "Lineitem price is negative or absurd"),
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
