"""Tiny store builder for model tests: insert customers, products, orders and events straight into the tables.

The loaders are written elsewhere; these tests only need rows that obey the schema. Every helper returns the new
row's id and fills the required columns with harmless defaults.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import insert
from sqlalchemy.engine import Engine

from models.interactions import features_from_wide
from models.schema import Customer, Event, Order, OrderLine, Product

Line = tuple[int, int]  # (product_id, quantity)


def at(day: date | str, hour: int = 12, minute: int = 0) -> datetime:
    """An aware UTC datetime on ``day`` (ISO string or date) at ``hour:minute``."""
    day = date.fromisoformat(day) if isinstance(day, str) else day
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


class StoreBuilder:
    """Inserts rows into one database with unique SKUs, order numbers and analytics ids."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._serial = itertools.count(1)

    def _insert(self, table: Any, values: dict[str, Any]) -> int:
        with self.engine.begin() as conn:
            result = conn.execute(insert(table.__table__).values(**values))
            return int(result.inserted_primary_key[0])

    def customer(self, *, birthday: date | None = None, timezone: str | None = None, **extra: Any) -> int:
        n = next(self._serial)
        values = {"email": f"customer{n}@example.com", "birthday": birthday, "timezone": timezone, **extra}
        values.setdefault("created_at", at("2024-01-01"))
        values.setdefault("updated_at", at("2024-01-01"))
        return self._insert(Customer, values)

    def product(
        self,
        title: str | None = None,
        *,
        consumable: bool = True,
        replenish_days: int | None = None,
        product_type: str | None = "Coffee",
        roast: str | None = None,
        origin: str | None = None,
        flavour_notes: str | None = None,
        tags: str | None = None,
        price: float = 10.0,
        active: bool = True,
    ) -> int:
        n = next(self._serial)
        values = {
            "sku": f"SKU-{n}",
            "handle": f"product-{n}",
            "title": title or f"Product {n}",
            "product_type": product_type,
            "roast": roast,
            "origin": origin,
            "flavour_notes": flavour_notes,
            "tags": tags,
            "price": price,
            "consumable": consumable,
            "replenish_days": replenish_days,
            "active": active,
        }
        return self._insert(Product, values)

    def order(
        self,
        customer_id: int | None,
        created_at: datetime,
        lines: Sequence[Line],
        *,
        financial_status: str = "paid",
        refunded_amount: float = 0.0,
        cancelled_at: datetime | None = None,
    ) -> int:
        """An order with ``lines`` of (product_id, quantity); total = 10 per unit."""
        n = next(self._serial)
        total = 10.0 * sum(quantity for _, quantity in lines)
        order_id = self._insert(
            Order,
            {
                "external_id": f"#{1000 + n}",
                "customer_id": customer_id,
                "created_at": created_at,
                "total": total,
                "financial_status": financial_status,
                "refunded_amount": refunded_amount,
                "cancelled_at": cancelled_at,
            },
        )
        rows = [
            {"order_id": order_id, "line_number": i, "product_id": pid, "quantity": qty, "price": 10.0}
            for i, (pid, qty) in enumerate(lines, start=1)
        ]
        with self.engine.begin() as conn:
            conn.execute(insert(OrderLine.__table__), rows)  # type: ignore[attr-defined]
        return order_id

    def event(self, customer_id: int | None, event_name: str, product_id: int | None, occurred_at: datetime) -> int:
        return self._insert(
            Event,
            {
                "customer_id": customer_id,
                "user_pseudo_id": f"pseudo-{customer_id}",
                "event_name": event_name,
                "occurred_at": occurred_at,
                "product_id": product_id,
            },
        )


def taste_clusters(
    users: int = 300, items: int = 60, clusters: int = 4, per_user: int = 10, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    """Synthetic interactions with taste clusters: 90% of a user's items come from their cluster.

    Returns ``(interactions, item_features, user_cluster, item_cluster)``; features name the cluster's roast and notes.
    """
    rng = np.random.default_rng(seed)
    item_cluster = np.arange(items) % clusters
    user_cluster = rng.integers(0, clusters, users)
    rows = []
    for user in range(users):
        own = np.flatnonzero(item_cluster == user_cluster[user])
        weights = 1.0 / np.arange(1, len(own) + 1)
        picks = set(rng.choice(own, min(per_user, len(own)), replace=False, p=weights / weights.sum()))
        if rng.random() < 0.1:
            picks.add(int(rng.integers(0, items)))
        rows += [(user, int(item)) for item in sorted(picks)]
    interactions = pd.DataFrame(rows, columns=["user_id", "item_id"])
    interactions["purchased"] = rng.random(len(interactions)) < 0.5
    roasts = ("light", "medium", "dark", "espresso")
    wide = pd.DataFrame(
        {
            "item_id": np.arange(items),
            "roast": [roasts[c % len(roasts)] for c in item_cluster],
            "note": [f"note{c}|shared{c % 2}" for c in item_cluster],
        }
    )
    return interactions, features_from_wide(wide, "item_id"), user_cluster, item_cluster


def baskets(
    users: int = 400, items: int = 80, days: int = 240, seed: int = 0
) -> tuple[pd.DataFrame, np.ndarray]:
    """Timestamped purchases of a grocery-like store: each customer re-buys a few staples at their own rhythm (the
    even items are consumables; an odd item is bought once) and discovers others by popularity.

    Returns ``(interactions, consumable)``: rows ``user_id, item_id, timestamp`` and which items are consumables.
    """
    rng = np.random.default_rng(seed)
    consumable = np.arange(items) % 2 == 0
    popularity = 1.0 / np.arange(1, items + 1)
    popularity /= popularity.sum()
    start = pd.Timestamp("2026-01-01", tz="UTC")
    rows = []
    for user in range(users):
        staples = rng.choice(items, 5, replace=False, p=popularity)
        rate = np.where(consumable[staples], rng.uniform(0.3, 0.8, 5), 0.0)
        owned: set[int] = set()
        for day in np.sort(rng.choice(days, int(rng.integers(6, 20)), replace=False)):
            basket = {int(i) for i in staples[rng.random(5) < rate]}
            basket |= {int(i) for i in rng.choice(items, 2, p=popularity) if consumable[i] or i not in owned}
            owned |= basket
            rows += [(user, item, start + pd.Timedelta(days=int(day))) for item in sorted(basket)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]), consumable
