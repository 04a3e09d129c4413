"""Fill the Shopify Admin stand-in (``tests.peers.shopify_admin.ShopifyAdmin``) from a folder of Shopify admin exports
(``products_export.csv``, ``customers_export.csv``, ``orders_export.csv``, as ``omnicast sample`` writes them), so
the same store can be read through the API reader (``sources.shopify_api.ShopifyApi``) and from the files
(``sources.exports.ShopifyExport``) and give the same checked frames (tests only).

The export is what Shopify's admin wrote from the shop's own records, so every row whose values the Admin API's types
can carry becomes a record, shaped as the API returns it:

* **products**: one product per ``Handle`` (its fields from the handle's first row), one variant per row (SKU,
  price, compare-at price, stock: ``inventoryItem.tracked`` when ``Variant Inventory Qty`` is not blank, options),
  the four ``custom`` metafields (flavour notes as a list metafield), ``Published`` as ``publishedAt``;
* **customers**: the ``Customer ID`` as the gid's number, the phone without the export's leading apostrophe,
  ``Accepts Email/SMS Marketing`` yes/no as ``SUBSCRIBED``/``NOT_SUBSCRIBED`` (blank: no consent object), with a
  ``consentUpdatedAt`` of null: the export does not date consents, and Shopify answers null for consents it holds
  no date for (so the reader's statements are as undated as the file's);
* **orders**: the rows of one ``Name`` make one order (its fields from its first row, the ``Created at`` and other
  times in UTC, ``Refunded Amount`` as one refund with ``totalRefundedSet``, ``Financial Status`` as
  ``displayFinancialStatus``), each row a line item.

Values the API's types can carry are put in even when the checks refuse them (an unsafe ``Image Src``, an email
with two ``@``, a phone cut short, a duplicate customer's email in other case, a line item without SKU — a custom
item — or with a retired SKU): the reader quarantines or sets them aside as the file reader does.

Rows that cannot be records are **skipped** and counted in :attr:`Filled.skipped` (file → reason → rows):

* any file: a row with a different number of fields than the header (``malformed``: its cells are shifted), a row
  repeating the row before it byte for byte (``repeated row``: one record exported twice);
* products: a ``Variant Price`` that is blank or not a number (``price not a number``: ``Money`` holds numbers);
  an image-only row (``image row``: an extra product image, not a variant; it gives the product its image when its
  variant rows have none);
* customers: a blank or non-numeric ``Customer ID`` (``no Customer ID``: every customer has a gid);
* orders: a blank ``Name`` (``no Name``: a line item belongs to an order), a ``Lineitem quantity`` that is not a
  whole number or a ``Lineitem price`` that is not a number (``Int``/``Money``), a ``Created at`` that is not the
  export's timestamp or differs from the order's first row (``Created at unreadable``: an order has one
  ``createdAt``).

The file reader quarantines every skipped row too (a repeated row it skips as a duplicate), so the checked frames agree
on every valid row; what differs is counted: rows read, rows quarantined, and the numbering of an order's lines (the
file numbers a quarantined line too, so a later line's ``line_number`` there is one higher).

``updatedAt``: an order's is its latest time (created, paid, fulfilled, cancelled); a customer's the latest
``Created at`` of the orders with their email, else the shop's first order time plus their row number in seconds; a
product's the shop's first order time minus a day plus its row number in seconds (the export dates neither). After
filling, the stand-in stamps its own changes later than every record (:meth:`ShopifyAdmin.stamp_after`).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from sources.formats import CUSTOMERS_FILE, ORDERS_FILE, PRODUCTS_FILE
from tests.peers.shopify_admin import ShopifyAdmin, gid, iso, money

__all__ = ["MALFORMED", "REPEATED", "Filled", "fill_from_exports"]

EXPORT_TIME = "%Y-%m-%d %H:%M:%S %z"
METAFIELDS = {
    "flavour_notes": "list.single_line_text_field",
    "roast_level": "single_line_text_field",
    "origin": "single_line_text_field",
    "replenishment_days": "number_integer",
}
MALFORMED = "malformed"
REPEATED = "repeated row"


@dataclass
class Filled:
    """What :func:`fill_from_exports` put in the stand-in (records by resource, with their line items and variants)
    and what it left out (file → reason → rows)."""

    products: int = 0
    variants: int = 0
    customers: int = 0
    orders: int = 0
    line_items: int = 0
    skipped: dict[str, Counter[str]] = field(default_factory=dict)
    latest: datetime | None = None
    """The newest ``updatedAt`` filled."""


def fill_from_exports(peer: ShopifyAdmin, folder: Path, currency: str = "USD") -> Filled:
    """Put the export folder's products, customers and orders in ``peer`` (see the module docstring)."""
    filled = Filled(skipped={name: Counter() for name in (PRODUCTS_FILE, CUSTOMERS_FILE, ORDERS_FILE)})
    orders = _orders(_rows(folder / ORDERS_FILE, filled.skipped[ORDERS_FILE]), filled.skipped[ORDERS_FILE], currency)
    opening = min((_instant(order["createdAt"]) for order in orders), default=datetime(2025, 1, 1, tzinfo=UTC))
    last_order: dict[str, datetime] = {}
    for order in orders:
        key = str(order.get("email") or "").strip().lower()
        if key:
            last_order[key] = max(last_order.get(key, opening), _instant(order["createdAt"]))
    products = _products(_rows(folder / PRODUCTS_FILE, filled.skipped[PRODUCTS_FILE]), filled.skipped[PRODUCTS_FILE],
                         opening - timedelta(days=1))  # fmt: skip
    customers = _customers(_rows(folder / CUSTOMERS_FILE, filled.skipped[CUSTOMERS_FILE]),
                           filled.skipped[CUSTOMERS_FILE], opening, last_order, currency)  # fmt: skip
    for resource, records in (("products", products), ("customers", customers), ("orders", orders)):
        for record in records:
            peer.put(resource, record, updated_at=record["updatedAt"])
    filled.products, filled.customers, filled.orders = len(products), len(customers), len(orders)
    filled.variants = sum(len(product["variants"]) for product in products)
    filled.line_items = sum(len(order["lineItems"]) for order in orders)
    stamps = [_instant(record["updatedAt"]) for record in (*products, *customers, *orders)]
    filled.latest = max(stamps, default=None)
    if filled.latest is not None:
        peer.stamp_after(filled.latest)
    return filled


# --- reading the files ------------------------------------------------------------------------------------------


def _rows(path: Path, skipped: Counter[str]) -> Iterator[dict[str, str]]:
    """The file's rows as dicts; a row of the wrong width or repeating the one before is counted and left out."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader)]
        previous: list[str] | None = None
        for fields in reader:
            if not fields:
                continue
            if len(fields) != len(header):
                skipped[MALFORMED] += 1
            elif fields == previous:
                skipped[REPEATED] += 1
            else:
                yield dict(zip(header, fields, strict=True))
            previous = fields


def _blank(value: str | None) -> bool:
    return value is None or not value.strip()


def _text(value: str | None) -> str | None:
    return None if _blank(value) else str(value)


def _decimal(value: str | None) -> str | None:
    """A money amount as the API writes it (a decimal string), None when blank or not a number."""
    if _blank(value):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return str(number) if number.is_finite() else None


def _whole(value: str | None) -> int | None:
    text = str(value or "").strip()
    return int(text) if text.lstrip("-").isdigit() else None


def _time(value: str | None) -> datetime | None:
    if _blank(value):
        return None
    try:
        return datetime.strptime(str(value).strip(), EXPORT_TIME)
    except ValueError:
        return None


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _iso(moment: datetime | None) -> str | None:
    return iso(moment) if moment is not None else None


def _list(value: str | None, separator: str = ",") -> list[str]:
    return [part.strip() for part in str(value or "").split(separator) if part.strip()]


def _flag(value: str | None, words: dict[str, bool]) -> bool | None:
    return words.get(str(value or "").strip().lower())


YES_NO = {"yes": True, "no": False}
TRUE_FALSE = {"true": True, "false": False}


# --- products -------------------------------------------------------------------------------------------------


def _products(rows: Iterator[dict[str, str]], skipped: Counter[str], base: datetime) -> list[dict[str, Any]]:
    products: dict[str, dict[str, Any]] = {}
    images: dict[str, str] = {}
    for number, row in enumerate(rows, start=1):
        handle = str(row.get("Handle") or "").strip()
        if _blank(row.get("Variant SKU")) and _blank(row.get("Variant Price")) and not _blank(row.get("Image Src")):
            skipped["image row"] += 1
            images.setdefault(handle, str(row["Image Src"]).strip())
            continue
        price = _decimal(row.get("Variant Price"))
        if price is None:
            skipped["price not a number"] += 1
            continue
        product = products.get(handle)
        if product is None:
            product = products[handle] = _product(row, len(products) + 1, base + timedelta(seconds=number))
        product["variants"].append(_variant(row, product, price))
    for handle, url in images.items():
        product = products.get(handle)
        if product is not None and product["featuredImage"] is None:
            product["featuredImage"] = {"id": gid("ProductImage", number_of_product(product)), "url": url,
                                        "altText": None}  # fmt: skip
    return list(products.values())


def number_of_product(product: dict[str, Any]) -> int:
    return int(str(product["id"]).rsplit("/", 1)[-1])


def _product(row: dict[str, str], number: int, updated: datetime) -> dict[str, Any]:
    metafields = {}
    for key, kind in METAFIELDS.items():
        value = next((v for name, v in row.items() if name.endswith(f"metafields.custom.{key})")), "")
        if _blank(value):
            continue
        if kind.startswith("list."):
            value = json.dumps([part.strip() for part in value.split(";") if part.strip()])
        metafields[f"custom.{key}"] = {"value": value.strip(), "type": kind}
    image = _text(row.get("Image Src"))
    published = _flag(row.get("Published"), TRUE_FALSE)
    return {
        "id": gid("Product", number), "handle": str(row.get("Handle") or "").strip(), "title": _text(row.get("Title")),
        "descriptionHtml": row.get("Body (HTML)") or "", "vendor": _text(row.get("Vendor")),
        "productType": row.get("Type") or "", "tags": _list(row.get("Tags")),
        "status": str(row.get("Status") or "").strip().upper() or None,
        "publishedAt": _iso(updated) if published is not False else None,
        "isGiftCard": _flag(row.get("Gift Card"), TRUE_FALSE),
        "createdAt": _iso(updated), "updatedAt": _iso(updated),
        "featuredImage": {"id": gid("ProductImage", number), "url": image.strip(), "altText": None} if image else None,
        "metafields": metafields, "variants": [],
    }  # fmt: skip


def _variant(row: dict[str, str], product: dict[str, Any], price: str) -> dict[str, Any]:
    number = number_of_product(product) * 100 + len(product["variants"])
    stock = _whole(row.get("Variant Inventory Qty"))
    policy = str(row.get("Variant Inventory Policy") or "deny").strip().upper()
    tracker = row.get("Variant Inventory Tracker", "shopify")  # an export without the column: tracked by stock
    return {
        "id": gid("ProductVariant", number), "sku": str(row.get("Variant SKU") or ""),
        "title": row.get("Option1 Value"),
        "price": price, "compareAtPrice": _decimal(row.get("Variant Compare At Price")),
        "inventoryQuantity": stock, "inventoryPolicy": policy,
        "inventoryItem": {"id": gid("InventoryItem", number), "tracked": stock is not None and not _blank(tracker),
                          "requiresShipping": _flag(row.get("Variant Requires Shipping"), TRUE_FALSE) is not False},
        "selectedOptions": [{"name": row.get("Option1 Name") or "Title", "value": row.get("Option1 Value") or ""}],
        "image": None, "createdAt": product["createdAt"], "updatedAt": product["updatedAt"],
    }  # fmt: skip


# --- customers ------------------------------------------------------------------------------------------------


def _customers(rows: Iterator[dict[str, str]], skipped: Counter[str], opening: datetime,
               last_order: dict[str, datetime], currency: str) -> list[dict[str, Any]]:  # fmt: skip
    customers = []
    for number, row in enumerate(rows, start=1):
        customer_id = str(row.get("Customer ID") or "").strip().removeprefix("'")
        if not customer_id.isdigit():
            skipped["no Customer ID"] += 1
            continue
        email = _text(row.get("Email"))
        updated = last_order.get(str(email or "").strip().lower(), opening + timedelta(seconds=number))
        customers.append({
            "id": gid("Customer", int(customer_id)), "firstName": _text(row.get("First Name")),
            "lastName": _text(row.get("Last Name")), "email": email, "phone": _phone(row.get("Phone")),
            "emailMarketingConsent": _consent(row.get("Accepts Email Marketing")),
            "smsMarketingConsent": _consent(row.get("Accepts SMS Marketing"), sms=True),
            "defaultAddress": {
                "company": _text(row.get("Default Address Company")),
                "address1": _text(row.get("Default Address Address1")),
                "address2": _text(row.get("Default Address Address2")),
                "city": _text(row.get("Default Address City")),
                "provinceCode": _text(row.get("Default Address Province Code")),
                "countryCodeV2": _text(row.get("Default Address Country Code")),
                "zip": _text(row.get("Default Address Zip")), "phone": _phone(row.get("Default Address Phone")),
            },
            "amountSpent": {"amount": _decimal(row.get("Total Spent")) or "0.0", "currencyCode": currency},
            "numberOfOrders": str(_whole(row.get("Total Orders")) or 0), "note": _text(row.get("Note")),
            "taxExempt": _flag(row.get("Tax Exempt"), YES_NO) is True, "tags": _list(row.get("Tags")),
            "createdAt": _iso(opening), "updatedAt": _iso(updated),
        })  # fmt: skip
    return customers


def _phone(value: str | None) -> str | None:
    """The export's phone without Shopify's leading apostrophe (written so spreadsheets keep the ``+``)."""
    return _text(str(value or "").strip().removeprefix("'"))


def _consent(word: str | None, sms: bool = False) -> dict[str, Any] | None:
    accepts = _flag(word, YES_NO)
    if accepts is None:
        return None
    consent: dict[str, Any] = {"marketingState": "SUBSCRIBED" if accepts else "NOT_SUBSCRIBED",
                               "marketingOptInLevel": "SINGLE_OPT_IN", "consentUpdatedAt": None}  # fmt: skip
    if sms:
        consent["consentCollectedFrom"] = "OTHER"
    return consent


# --- orders ---------------------------------------------------------------------------------------------------


def _orders(rows: Iterator[dict[str, str]], skipped: Counter[str], currency: str) -> list[dict[str, Any]]:
    orders: dict[str, dict[str, Any]] = {}
    line_number = 0
    for row in rows:
        name = str(row.get("Name") or "").strip()
        if not name:
            skipped["no Name"] += 1
            continue
        quantity, price = _whole(row.get("Lineitem quantity")), _decimal(row.get("Lineitem price"))
        if quantity is None:
            skipped["quantity not a whole number"] += 1
            continue
        if price is None:
            skipped["price not a number"] += 1
            continue
        created = _time(row.get("Created at"))
        order = orders.get(name)
        if created is None or (order is not None and _instant(order["createdAt"]) != created):
            skipped["Created at unreadable"] += 1
            continue
        if order is None:
            order = orders[name] = _order(row, created, row.get("Currency") or currency)
        line_number += 1
        order["lineItems"].append({
            "id": gid("LineItem", line_number), "sku": _text(row.get("Lineitem sku")),
            "name": row.get("Lineitem name") or "", "title": row.get("Lineitem name") or "", "quantity": quantity,
            "currentQuantity": quantity, "vendor": _text(row.get("Vendor")),
            "originalUnitPriceSet": money(price, order["currencyCode"]),
            "requiresShipping": _flag(row.get("Lineitem requires shipping"), TRUE_FALSE) is not False,
            "taxable": _flag(row.get("Lineitem taxable"), TRUE_FALSE) is not False,
        })  # fmt: skip
    return list(orders.values())


def _money(value: str | None, currency: str) -> dict[str, Any] | None:
    amount = _decimal(value)
    return money(amount, currency) if amount is not None else None


def _order(row: dict[str, str], created: datetime, currency: str) -> dict[str, Any]:
    """An order from its first row (the order's own fields are only there)."""
    currency = currency.strip().upper()
    times = [created, *(t for t in (_time(row.get(name)) for name in ("Paid at", "Fulfilled at", "Cancelled at")) if t)]
    updated = max(times)
    refunded = _decimal(row.get("Refunded Amount"))
    refunds = []
    if refunded is not None and Decimal(refunded) > 0:
        refunds.append({"id": gid("Refund", int(_whole(row.get("Id")) or 0)), "createdAt": _iso(updated), "note": None,
                        "totalRefundedSet": money(refunded, currency)})  # fmt: skip
    billing_name = _text(row.get("Billing Name"))
    status = str(row.get("Financial Status") or "").strip().upper() or None
    fulfillment = str(row.get("Fulfillment Status") or "").strip().upper() or "UNFULFILLED"
    return {
        "id": gid("Order", int(_whole(row.get("Id")) or 0)), "name": str(row.get("Name")).strip(),
        "email": _text(row.get("Email")), "phone": _phone(row.get("Phone")),
        "createdAt": _iso(created), "updatedAt": _iso(updated), "processedAt": _iso(created),
        "cancelledAt": _iso(_time(row.get("Cancelled at"))), "closedAt": None,
        "displayFinancialStatus": status, "displayFulfillmentStatus": fulfillment, "currencyCode": currency,
        "customerAcceptsMarketing": _flag(row.get("Accepts Marketing"), YES_NO),
        "subtotalPriceSet": _money(row.get("Subtotal"), currency),
        "totalShippingPriceSet": _money(row.get("Shipping"), currency),
        "totalTaxSet": _money(row.get("Taxes"), currency), "totalPriceSet": _money(row.get("Total"), currency),
        "totalDiscountsSet": _money(row.get("Discount Amount"), currency),
        "totalRefundedSet": money(refunded or "0.00", currency),
        "discountCodes": _list(row.get("Discount Code")), "note": _text(row.get("Notes")),
        "tags": _list(row.get("Tags")), "sourceName": _text(row.get("Source")),
        "paymentGatewayNames": _list(row.get("Payment Method"), "+"),
        "billingAddress": None if billing_name is None and _blank(row.get("Billing City")) else {
            "name": billing_name, "city": _text(row.get("Billing City")), "zip": _text(row.get("Billing Zip")),
            "provinceCode": _text(row.get("Billing Province")), "countryCodeV2": _text(row.get("Billing Country")),
            "phone": _phone(row.get("Billing Phone"))},
        "shippingAddress": None, "refunds": refunds, "customer": None, "lineItems": [],
    }  # fmt: skip
