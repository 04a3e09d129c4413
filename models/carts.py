"""Abandoned carts: a logged-in customer put items in the cart (or began checkout) and did not buy them.

Window: cart events (``add_to_cart``, ``begin_checkout``) of known customers from 72 h before the start of
``today`` in the store timezone up to that start. A daily run therefore judges whole past days, every cart is at
least a few hours old when judged, and a rerun on the same day sees exactly the same events. An item counts as
abandoned when no order line (any order, whatever its later status: the customer did check out) and no analytics
``purchase`` event of that customer names it at or after its last cart event. One occurrence per customer and day
of their last cart event; inactive products are left out.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import select, union_all
from sqlalchemy.engine import Engine

from models.interactions import CART_EVENTS, EVENTS, ORDER_LINES, ORDERS, PRODUCTS, read_frame

KIND = "abandoned_cart"
WINDOW = timedelta(hours=72)


def cart_window(today: date, store_tz: ZoneInfo) -> tuple[datetime, datetime]:
    """``[start of today − 72 h, start of today)`` in the store timezone, as aware datetimes."""
    end = datetime.combine(today, time(0), tzinfo=store_tz)
    return end - WINDOW, end


def load_cart_events(engine: Engine, start: datetime, end: datetime) -> pd.DataFrame:
    """Cart events of known customers on active products in ``[start, end)``: ``customer_id, product_id, sku,
    occurred_at``."""
    stmt = (
        select(EVENTS.c.customer_id, EVENTS.c.product_id, PRODUCTS.c.sku, EVENTS.c.occurred_at)
        .select_from(EVENTS.join(PRODUCTS, PRODUCTS.c.id == EVENTS.c.product_id))
        .where(
            EVENTS.c.customer_id.is_not(None),
            EVENTS.c.event_name.in_(CART_EVENTS),
            EVENTS.c.occurred_at >= start,
            EVENTS.c.occurred_at < end,
            PRODUCTS.c.active.is_(True),
        )
    )
    return read_frame(engine, stmt, datetimes=["occurred_at"])


def load_purchases_since(engine: Engine, since: datetime) -> pd.DataFrame:
    """``customer_id, product_id, purchased_at`` from order lines and analytics purchase events since ``since``."""
    orders = (
        select(ORDERS.c.customer_id, ORDER_LINES.c.product_id, ORDERS.c.created_at.label("purchased_at"))
        .select_from(ORDER_LINES.join(ORDERS, ORDERS.c.id == ORDER_LINES.c.order_id))
        .where(ORDERS.c.customer_id.is_not(None), ORDER_LINES.c.product_id.is_not(None), ORDERS.c.created_at >= since)
    )
    events = select(EVENTS.c.customer_id, EVENTS.c.product_id, EVENTS.c.occurred_at.label("purchased_at")).where(
        EVENTS.c.customer_id.is_not(None),
        EVENTS.c.product_id.is_not(None),
        EVENTS.c.event_name == "purchase",
        EVENTS.c.occurred_at >= since,
    )
    both = union_all(orders, events).subquery()
    return read_frame(engine, select(both), datetimes=["purchased_at"])


def abandoned_carts(cart_events: pd.DataFrame, purchases: pd.DataFrame) -> pd.DataFrame:
    """Per customer with unbought items: ``product_ids`` and ``skus`` (most recently carted first) and ``cart_at``,
    the customer's last cart event in the window.

    ``cart_at`` counts bought items too, so buying part of a cart later does not turn it into a new moment.
    """
    key = ["customer_id", "product_id"]
    purchases = purchases.astype({"customer_id": "int64", "product_id": "int64"})
    last = (
        cart_events.astype({"customer_id": "int64", "product_id": "int64"})
        .groupby(key, as_index=False)
        .agg(sku=("sku", "first"), carted_at=("occurred_at", "max"))
    )
    bought = last.merge(purchases, on=key, how="inner")
    bought = bought[bought["purchased_at"] >= bought["carted_at"]]
    done = pd.MultiIndex.from_frame(bought[key].drop_duplicates())
    open_items = last[~pd.MultiIndex.from_frame(last[key]).isin(done)]
    open_items = open_items.sort_values(["customer_id", "carted_at", "product_id"], ascending=[True, False, True])
    carts = open_items.groupby("customer_id", sort=True).agg(product_ids=("product_id", list), skus=("sku", list))
    carts = carts.join(last.groupby("customer_id")["carted_at"].max().rename("cart_at"))
    return carts.reset_index()


def find_abandoned_carts(engine: Engine, today: date, store_tz: ZoneInfo) -> pd.DataFrame:
    """Occurrences keyed ``abandoned_cart:{customer_id}:{date of the last cart event}`` (store-local), due today.

    Payload: ``product_ids``, ``skus`` (lists, most recent first) and ``cart_at`` (ISO datetime, UTC).
    """
    start, end = cart_window(today, store_tz)
    events = load_cart_events(engine, start, end)
    if events.empty:
        return pd.DataFrame(columns=["occurrence_key", "customer_id", "due_on", "payload"])
    carts = abandoned_carts(events, load_purchases_since(engine, start))
    cart_days = carts["cart_at"].dt.tz_convert(store_tz).dt.date
    return pd.DataFrame(
        {
            "occurrence_key": [
                f"{KIND}:{c}:{d.isoformat()}" for c, d in zip(carts["customer_id"], cart_days, strict=True)
            ],
            "customer_id": carts["customer_id"].astype(int).to_numpy(),
            "due_on": [today] * len(carts),
            "payload": [
                {"product_ids": [int(p) for p in ids], "skus": [str(s) for s in skus], "cart_at": at.isoformat()}
                for ids, skus, at in zip(carts["product_ids"], carts["skus"], carts["cart_at"], strict=True)
            ],
        }
    )
