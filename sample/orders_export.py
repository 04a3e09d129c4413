"""The sample store's Shopify orders export: a row per line item, the order-level fields on an order's first row
only (as Shopify writes them), addresses from the people, money and statuses from the order facts.

An order's text is built once per order in blocks (:class:`OrderText`), and a row is its blocks joined, so planted
rows (``sample/dirt.py``) reuse the same blocks with one part changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sample.catalogue import CURRENCY, Catalogue
from sample.clock import Clock
from sample.customers import Accounts
from sample.orders import GIFT_ORDER, Orders
from sample.people import Population, address_fields
from sample.text import as_text, csv_escape, escape, join_fields, join_row, money

ORDER_NOTES = (
    "Please leave the parcel with the concierge.",
    "Gift - please don't include the receipt, thanks!",
    "Ground for V60, please",
    'Whole beans please, "extra fresh" if possible :)',
    "Ring the bell twice, the first one is broken",
)


@dataclass(frozen=True)
class OrderText:
    """Per order, the CSV text of its blocks: ``head`` (Name, Email), ``a`` (Financial Status … Shipping Method),
    ``created``, ``b`` (Billing Name … Refunded Amount), ``id``, ``c`` (Tags, Source, Phone); ``lfs`` the line
    fulfillment status, ``name`` the order name. Per product: ``items`` (Lineitem name … Lineitem taxable) and
    ``vendors``."""

    head: np.ndarray
    a: np.ndarray
    created: np.ndarray
    b: np.ndarray
    id: np.ndarray
    c: np.ndarray
    lfs: np.ndarray
    name: np.ndarray
    items: np.ndarray
    vendors: np.ndarray


def item_blocks(cat: Catalogue, name: np.ndarray | None = None, price: np.ndarray | None = None) -> np.ndarray:
    """Per product, the order row's ``Lineitem name … Lineitem taxable`` fields (name and price overridable)."""
    ships = np.where(cat.gift_card, "false", "true")
    return join_fields(
        [
            escape(cat.title) if name is None else name,
            money(cat.price_cents) if price is None else price,
            np.where(cat.compare_cents > 0, money(cat.compare_cents), ""),
            cat.sku,
            ships,
            ships,
        ]
    )


def order_text(
    orders: Orders,
    facts: pd.DataFrame,
    cat: Catalogue,
    population: Population,
    accounts: Accounts,
    clock: Clock,
    guest_rng: np.random.Generator,
    rng: np.random.Generator,
) -> OrderText:
    """The blocks of every order. ``guest_rng`` draws the guests' ``Accepts Marketing`` (accounts state their own);
    ``rng`` draws gift shipping addresses, notes and order ids."""
    o, f, p, n = orders, facts, population.people, population.accounts
    n_orders = len(o.buyer)
    name = "#" + as_text(1001 + np.arange(n_orders))
    fulfilled = f["fulfilled_ts"].to_numpy() >= 0
    accepts = np.where(
        o.buyer < n, accounts.accepts_email[np.minimum(o.buyer, n - 1)], guest_rng.random(n_orders) < 0.4
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
    gift_elsewhere = (o.kind == GIFT_ORDER) & (rng.random(n_orders) < 0.5)
    ship_to = np.where(gift_elsewhere, rng.integers(0, population.buyers, n_orders), o.buyer)
    has_phone = (o.buyer < n) & accounts.shop_phone[np.minimum(o.buyer, n - 1)]
    notes = np.where(
        rng.random(n_orders) < 0.03, csv_escape(ORDER_NOTES)[rng.integers(0, len(ORDER_NOTES), n_orders)], ""
    )
    block_b = join_fields(
        address_fields(full_name, p, o.buyer)
        + [np.where(has_phone, p.phone[o.buyer], "")]
        + address_fields(full_name, p, ship_to)
        + [
            notes,
            stamp(f["cancelled_ts"]),
            f["payment"].to_numpy(dtype=object),
            np.where(f["refund"] > 0, money(f["refund"]), ""),
        ]
    )
    block_c = join_fields([np.where(o.kind == GIFT_ORDER, "gift", ""), f["source"].to_numpy(dtype=object), ""])
    return OrderText(
        head=name + "," + p.email[o.buyer],
        a=block_a,
        created=clock.shopify_time(o.ts),
        b=block_b,
        id=as_text(5_601_000_000_000 + np.cumsum(rng.integers(1_000, 90_000, n_orders))),
        c=block_c,
        lfs=np.where(fulfilled, "fulfilled", "pending").astype(object),
        name=name,
        items=item_blocks(cat),
        vendors=escape(cat.vendor),
    )


def order_rows(
    text: OrderText,
    order: np.ndarray,
    first: np.ndarray,
    qty: np.ndarray,
    item: np.ndarray,
    vendor: np.ndarray,
    head: np.ndarray | None = None,
    created: np.ndarray | None = None,
    truncate: bool = False,
) -> np.ndarray:
    """Rows for line items of the given orders; order-level blocks only where ``first`` (``truncate``: the row
    cut short after the line fulfillment status)."""
    head = text.head[order] if head is None else head
    created = text.created[order] if created is None else created
    a = np.where(first, text.a[order], "," * 12)
    start = [head, a, created, qty, item, text.lfs[order]]
    if truncate:
        return join_row(start)
    b = np.where(first, text.b[order], "," * 14)
    c = np.where(first, text.c[order], "," * 2)
    return join_row(start + [b, vendor, text.id[order], c])


def line_rows(orders: Orders, text: OrderText) -> np.ndarray:
    """The export's clean rows: every line item of every order, in order."""
    o = orders
    return order_rows(
        text, o.line_order, o.line_first, as_text(o.line_qty), text.items[o.line_product], text.vendors[o.line_product]
    )
