"""Replenishment moments: a customer is about to run out of a consumable they bought.

Rule. For each (customer, consumable product with ``replenish_days``, still active), take the customer's last
counted purchase of it (same-day orders add up): it runs out on ``order date + replenish_days × quantity``. Remind
when that day is within ``[today − 3 days, today + 5 days]`` (5 days' lead for shipping, 3 days' grace for a late
run), unless the customer bought a consumable of the same ``product_type`` on a later day: someone who switched from
one coffee to another is not running out of coffee (their new product gets its own reminder). A product type is one
consumption stream: when several products of one type were bought on that last day, only the one that runs out last
is reminded (until then the customer still has some; three coffees in one order make one reminder, not three).
Order dates are in the store timezone, which keeps the occurrence key stable.
"""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.engine import Engine

from models.interactions import ORDER_LINES, ORDERS, PRODUCTS, counted_order, read_frame

KIND = "replenishment"
LEAD_DAYS = 5
GRACE_DAYS = 3


def load_consumables(engine: Engine) -> pd.DataFrame:
    """Consumable products: ``product_id, sku, product_type, replenish_days, active``."""
    stmt = select(
        PRODUCTS.c.id.label("product_id"),
        PRODUCTS.c.sku,
        PRODUCTS.c.product_type,
        PRODUCTS.c.replenish_days,
        PRODUCTS.c.active,
    ).where(PRODUCTS.c.consumable.is_(True))
    products = read_frame(engine, stmt)
    products["active"] = products["active"].astype(bool)
    return products


def load_consumable_purchases(engine: Engine, store_tz: ZoneInfo) -> pd.DataFrame:
    """Counted purchase lines of consumables: ``customer_id, product_id, order_date`` (store-local day, as a
    midnight timestamp) and ``quantity`` (at least 1)."""
    stmt = (
        select(ORDERS.c.customer_id, ORDER_LINES.c.product_id, ORDERS.c.created_at, ORDER_LINES.c.quantity)
        .select_from(
            ORDER_LINES.join(ORDERS, ORDERS.c.id == ORDER_LINES.c.order_id).join(
                PRODUCTS, PRODUCTS.c.id == ORDER_LINES.c.product_id
            )
        )
        .where(ORDERS.c.customer_id.is_not(None), PRODUCTS.c.consumable.is_(True), counted_order())
    )
    lines = read_frame(engine, stmt, datetimes=["created_at"])
    lines["order_date"] = lines["created_at"].dt.tz_convert(store_tz).dt.tz_localize(None).dt.normalize()
    lines["quantity"] = pd.to_numeric(lines["quantity"]).fillna(1).clip(lower=1).astype(int)
    return lines.drop(columns="created_at")


def due_replenishments(
    purchases: pd.DataFrame,
    products: pd.DataFrame,
    today: date,
    *,
    lead_days: int = LEAD_DAYS,
    grace_days: int = GRACE_DAYS,
) -> pd.DataFrame:
    """Reminders due on ``today``: ``customer_id, product_id, sku, last_ordered, runs_out_on`` (see module rule).

    ``purchases`` as from :func:`load_consumable_purchases`, ``products`` as from :func:`load_consumables`.
    """
    ends = _stream_ends(purchases, products)
    runs_out = ends["runs_out_on"]
    day = pd.Timestamp(today)
    due = (runs_out >= day - pd.Timedelta(days=grace_days)) & (runs_out <= day + pd.Timedelta(days=lead_days))
    found = ends[due].sort_values(["customer_id", "product_id"])
    return pd.DataFrame(
        {
            "customer_id": found["customer_id"].astype(int),
            "product_id": found["product_id"].astype(int),
            "sku": found["sku"].astype(str),
            "last_ordered": found["order_date"].dt.date,
            "runs_out_on": found["runs_out_on"].dt.date,
        }
    ).reset_index(drop=True)


def find_replenishments(engine: Engine, today: date, store_tz: ZoneInfo) -> pd.DataFrame:
    """Occurrences keyed ``replenishment:{customer_id}:{sku}:{last_order_date}``, due today.

    Payload: ``product_id``, ``sku``, ``last_ordered`` and ``runs_out_on`` (ISO dates).
    """
    due = due_replenishments(load_consumable_purchases(engine, store_tz), load_consumables(engine), today)
    return pd.DataFrame(
        {
            "occurrence_key": [
                f"{KIND}:{c}:{s}:{d.isoformat()}"
                for c, s, d in zip(due["customer_id"], due["sku"], due["last_ordered"], strict=True)
            ],
            "customer_id": due["customer_id"].to_numpy(),
            "due_on": [today] * len(due),
            "payload": [
                {"product_id": int(p), "sku": s, "last_ordered": d.isoformat(), "runs_out_on": r.isoformat()}
                for p, s, d, r in zip(
                    due["product_id"], due["sku"], due["last_ordered"], due["runs_out_on"], strict=True
                )
            ],
        }
    )


def _stream_ends(purchases: pd.DataFrame, products: pd.DataFrame) -> pd.DataFrame:
    """Per (customer, product type): the remindable product of their last purchase day that runs out last, with
    ``order_date``, ``quantity``, ``sku`` and ``runs_out_on``. Streams whose last day holds nothing remindable
    (inactive, no ``replenish_days``) have none."""
    catalog = products.set_index("product_id").assign(type_key=_type_keys(products))
    lines = purchases.assign(type_key=purchases["product_id"].map(catalog["type_key"]))
    last = _last_purchases(lines).join(catalog[["sku", "replenish_days", "active"]], on="product_id")
    latest = lines.groupby(["customer_id", "type_key"])["order_date"].max().rename("type_latest")
    last = last.join(latest, on=["customer_id", "type_key"])
    remindable = (last["replenish_days"].fillna(0) > 0) & last["active"] & (last["type_latest"] <= last["order_date"])
    last = last[remindable]
    runs_out = last["order_date"] + pd.to_timedelta(last["replenish_days"] * last["quantity"], unit="D")
    last = last.assign(runs_out_on=runs_out).sort_values(["customer_id", "type_key", "runs_out_on", "product_id"])
    return last.drop_duplicates(["customer_id", "type_key"], keep="last")


def _last_purchases(lines: pd.DataFrame) -> pd.DataFrame:
    """Each (customer, product)'s last order day, with the quantity bought that day (same-day orders add up)."""
    per_day = lines.groupby(["customer_id", "product_id", "order_date"], as_index=False).agg(
        quantity=("quantity", "sum"), type_key=("type_key", "first")
    )
    return per_day.drop_duplicates(["customer_id", "product_id"], keep="last")  # groupby sorted by day


def _type_keys(products: pd.DataFrame) -> np.ndarray:
    """One integer per product: shared by products of the same type (case-insensitive), own key when untyped."""
    names = products["product_type"].fillna("").astype(str).str.strip().str.casefold()
    codes, _ = pd.factorize(names)
    return np.where(names != "", codes, -1 - products["product_id"].to_numpy(dtype=np.int64))
