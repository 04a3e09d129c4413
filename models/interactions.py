"""Customer–product interactions and item features, read from the database as DataFrames.

The recommender and the triggers share these reads so that one rule decides what counts as a purchase (an order
that was neither cancelled nor fully refunded) and what can be sold (active products). Frames use the column names
in :class:`Columns`; feature frames are long: one ``(id, feature, value)`` row per feature an entity has.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sqlalchemy import ColumnElement, Table, and_, not_, or_, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql import Select
from sqlmodel import SQLModel

from models.schema import Customer, Event, Order, OrderLine, Product


def table_of(model: type[SQLModel]) -> Table:
    """The Core table behind a SQLModel class: typed columns for Core queries."""
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table


CUSTOMERS, PRODUCTS, ORDERS, ORDER_LINES, EVENTS = (table_of(m) for m in (Customer, Product, Order, OrderLine, Event))


class Columns:
    """Column names of the frames the recommender reads and writes."""

    USER = "user_id"
    ITEM = "item_id"
    WEIGHT = "weight"
    TIMESTAMP = "timestamp"
    PURCHASED = "purchased"
    FEATURE = "feature"
    VALUE = "value"
    RANK = "rank"
    SCORE = "score"
    EXPLANATION = "explanation"
    MODEL = "model"


FEATURE_SEPARATOR = "="
"""Item feature names are ``kind=value`` (``roast=dark``, ``note=chocolate``), so explanations can phrase them."""

CANCELLED_STATUSES = ("refunded", "voided")
CART_EVENTS = ("add_to_cart", "begin_checkout")


@dataclass(frozen=True)
class InteractionWeights:
    """How much each signal counts, how fast it fades (weight halves every ``half_life_days``), and how far back
    analytics events are read: views are many and go stale fast, so they look back less far than carts."""

    purchase: float = 5.0
    cart: float = 2.0
    view: float = 0.5
    half_life_days: float = 90.0
    cart_lookback_days: int = 180
    view_lookback_days: int = 90


def counted_order() -> ColumnElement[bool]:
    """SQL condition for an order that counts as a purchase: not cancelled, not voided, not fully refunded.

    Partially refunded orders count: order lines carry no refund of their own, so we cannot tell which line went back.
    """
    fully_refunded = and_(ORDERS.c.refunded_amount > 0, ORDERS.c.refunded_amount >= ORDERS.c.total - 0.005)
    return and_(
        ORDERS.c.cancelled_at.is_(None),
        or_(ORDERS.c.financial_status.is_(None), not_(ORDERS.c.financial_status.in_(CANCELLED_STATUSES))),
        not_(fully_refunded),
    )


def read_frame(
    connectable: Engine | Connection,
    stmt: Select[Any],
    *,
    datetimes: Sequence[str] = (),
    dates: Sequence[str] = (),
) -> pd.DataFrame:
    """Run ``stmt`` and return its rows as a DataFrame.

    Rows are taken from the driver as they come, without SQLAlchemy's per-row conversions (at a million rows those
    cost seconds): ``datetimes`` columns are then parsed in one vectorised step into UTC ``datetime64`` (SQLite
    holds UTC text, PostgreSQL returns aware datetimes), ``dates`` columns into ``date`` objects. Booleans arrive
    as 0/1 on SQLite: callers cast them.
    """
    if isinstance(connectable, Engine):
        with connectable.connect() as conn:
            return read_frame(conn, stmt, datetimes=datetimes, dates=dates)
    result = connectable.execute(stmt)
    keys = list(result.keys())
    try:
        rows = result.cursor.fetchall()
    finally:
        result.close()
    frame = pd.DataFrame.from_records(rows, columns=keys) if rows else pd.DataFrame({key: [] for key in keys})
    for column in datetimes:
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    for column in dates:
        frame[column] = [_as_date(value) for value in frame[column]]
    return frame


def _as_date(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def load_customer_ids(engine: Engine) -> np.ndarray:
    """Every customer id, ascending."""
    with engine.connect() as conn:
        ids = conn.execute(select(CUSTOMERS.c.id).order_by(CUSTOMERS.c.id)).scalars().all()
    return np.asarray(ids, dtype=np.int64)


def load_catalog(engine: Engine) -> pd.DataFrame:
    """Active products: ``item_id, sku, title, product_type, roast, origin, flavour_notes, price, consumable``, and
    what the recommendation rules match and exclude on: ``handle, vendor, tags, inventory_quantity, published,
    gift_card``."""
    stmt = (
        select(
            PRODUCTS.c.id.label(Columns.ITEM),
            PRODUCTS.c.sku,
            PRODUCTS.c.title,
            PRODUCTS.c.product_type,
            PRODUCTS.c.roast,
            PRODUCTS.c.origin,
            PRODUCTS.c.flavour_notes,
            PRODUCTS.c.price,
            PRODUCTS.c.consumable,
            PRODUCTS.c.handle,
            PRODUCTS.c.vendor,
            PRODUCTS.c.tags,
            PRODUCTS.c.inventory_quantity,
            PRODUCTS.c.published,
            PRODUCTS.c.gift_card,
        )
        .where(PRODUCTS.c.active.is_(True))
        .order_by(PRODUCTS.c.id)
    )
    frame = read_frame(engine, stmt)
    for flag in ("consumable", "published", "gift_card"):
        frame[flag] = frame[flag].astype(bool)
    frame["inventory_quantity"] = frame["inventory_quantity"].astype("Int64")
    return frame


def item_features(catalog: pd.DataFrame) -> pd.DataFrame:
    """Long item features from the catalog: product type, roast, origin, each flavour note and a price band."""
    wide = pd.DataFrame(
        {
            Columns.ITEM: catalog[Columns.ITEM],
            "product_type": catalog["product_type"],
            "roast": catalog["roast"],
            "origin": catalog["origin"],
            "note": catalog["flavour_notes"],
            "price_band": price_bands(catalog),
        }
    )
    return features_from_wide(wide, Columns.ITEM)


def price_bands(catalog: pd.DataFrame) -> pd.Series:
    """``budget`` / ``mid`` / ``premium``: the price tercile within the product's type (unknown prices get none)."""
    price = catalog["price"].astype(float)
    group = catalog["product_type"].fillna("")
    known = price.where(price > 0)
    low = known.groupby(group).transform(lambda p: p.quantile(1 / 3))
    high = known.groupby(group).transform(lambda p: p.quantile(2 / 3))
    bands = np.where(known <= low, "budget", np.where(known <= high, "mid", "premium"))
    return pd.Series(bands, index=catalog.index).where(known.notna())


def features_from_wide(frame: pd.DataFrame, id_column: str, *, separator: str = "|") -> pd.DataFrame:
    """Turn one-row-per-entity columns into long ``(id, feature, value)`` rows named ``column=value``.

    Multi-valued cells (``chocolate|cherry``) give one feature per value; empty cells give none.
    """
    parts = []
    for column in frame.columns.drop(id_column):
        values = frame[[id_column, column]].dropna()
        cells = values[column].astype(str).str.split(separator)
        exploded = pd.DataFrame({id_column: values[id_column], "raw": cells}).explode("raw")
        exploded["raw"] = exploded["raw"].str.strip()
        exploded = exploded[exploded["raw"].fillna("") != ""]
        parts.append(
            pd.DataFrame(
                {id_column: exploded[id_column], Columns.FEATURE: column + FEATURE_SEPARATOR + exploded["raw"]}
            )
        )
    long = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[id_column, Columns.FEATURE])
    long = long.drop_duplicates().reset_index(drop=True)
    long[Columns.VALUE] = 1.0
    return long


def load_interactions(
    engine: Engine, now: datetime, weights: InteractionWeights = InteractionWeights()
) -> pd.DataFrame:
    """One row per (customer, active product): decayed ``weight``, last ``timestamp`` and whether it was ``purchased``.

    Purchases come from counted orders up to ``now`` (all history: the weight decay makes old ones matter
    little, and the ``purchased`` flag must remember owned gear for ever). Analytics add_to_cart/begin_checkout
    events (last ``cart_lookback_days``) and view_item events (last ``view_lookback_days``) add medium and low
    weight; analytics purchase events are ignored because orders are the record of purchases.
    """
    return aggregate_interactions(load_signals(engine, now, weights))


def load_signals(engine: Engine, now: datetime, weights: InteractionWeights = InteractionWeights()) -> pd.DataFrame:
    """The rows :func:`load_interactions` adds up, one per order line or event: ``user_id, item_id, timestamp,
    weight, purchased, kind``. The recommender fits on these so that it can see when each purchase happened (its
    validation split is by time, and the re-buy model learns from repeat purchases)."""
    purchases = _purchase_signals(engine, now)
    events = _event_signals(engine, now, weights)
    signals = pd.concat([purchases, events], ignore_index=True)
    kind_weight = signals["kind"].map({"purchase": weights.purchase, "cart": weights.cart, "view": weights.view})
    kind_weight = kind_weight.astype("float64")  # an empty text column maps to text (Arrow strings), not to numbers
    age_days = (pd.Timestamp(now) - signals[Columns.TIMESTAMP]).dt.total_seconds().clip(lower=0) / 86_400
    signals[Columns.WEIGHT] = kind_weight * np.exp2(-age_days / weights.half_life_days)
    signals[Columns.PURCHASED] = signals["kind"] == "purchase"
    return signals


def aggregate_interactions(signals: pd.DataFrame) -> pd.DataFrame:
    """Collapse repeated (user, item) rows: weights add up, the latest timestamp wins, purchased if ever purchased."""
    columns = [Columns.USER, Columns.ITEM, Columns.WEIGHT, Columns.TIMESTAMP, Columns.PURCHASED]
    if signals.empty:
        empty = pd.DataFrame({c: pd.Series(dtype="int64") for c in columns[:2]})
        empty[Columns.WEIGHT] = pd.Series(dtype=float)
        empty[Columns.TIMESTAMP] = pd.Series(dtype="datetime64[us, UTC]")
        empty[Columns.PURCHASED] = pd.Series(dtype=bool)
        return empty
    grouped = signals.groupby([Columns.USER, Columns.ITEM], sort=True).agg(
        **{
            Columns.WEIGHT: (Columns.WEIGHT, "sum"),
            Columns.TIMESTAMP: (Columns.TIMESTAMP, "max"),
            Columns.PURCHASED: (Columns.PURCHASED, "any"),
        }
    )
    return grouped.reset_index()[columns]


def _purchase_signals(engine: Engine, now: datetime) -> pd.DataFrame:
    stmt = (
        select(
            ORDERS.c.customer_id.label(Columns.USER),
            ORDER_LINES.c.product_id.label(Columns.ITEM),
            ORDERS.c.created_at.label(Columns.TIMESTAMP),
        )
        .select_from(_lines_with_orders_and_products())
        .where(
            ORDERS.c.customer_id.is_not(None),
            ORDERS.c.created_at <= now,
            PRODUCTS.c.active.is_(True),
            counted_order(),
        )
    )
    frame = read_frame(engine, stmt, datetimes=[Columns.TIMESTAMP])
    frame["kind"] = "purchase"
    return frame


def _lines_with_orders_and_products() -> Any:
    return ORDER_LINES.join(ORDERS, ORDERS.c.id == ORDER_LINES.c.order_id).join(
        PRODUCTS, PRODUCTS.c.id == ORDER_LINES.c.product_id
    )


def _event_signals(engine: Engine, now: datetime, weights: InteractionWeights) -> pd.DataFrame:
    cart_since = now - timedelta(days=weights.cart_lookback_days)
    view_since = now - timedelta(days=weights.view_lookback_days)
    is_cart = EVENTS.c.event_name.in_(CART_EVENTS)
    stmt = (
        select(
            EVENTS.c.customer_id.label(Columns.USER),
            EVENTS.c.product_id.label(Columns.ITEM),
            EVENTS.c.occurred_at.label(Columns.TIMESTAMP),
            EVENTS.c.event_name,
        )
        .select_from(EVENTS.join(PRODUCTS, PRODUCTS.c.id == EVENTS.c.product_id))
        .where(
            EVENTS.c.customer_id.is_not(None),
            EVENTS.c.occurred_at >= min(cart_since, view_since),
            EVENTS.c.occurred_at <= now,
            or_(
                and_(is_cart, EVENTS.c.occurred_at >= cart_since),
                and_(EVENTS.c.event_name == "view_item", EVENTS.c.occurred_at >= view_since),
            ),
            PRODUCTS.c.active.is_(True),
        )
    )
    frame = read_frame(engine, stmt, datetimes=[Columns.TIMESTAMP])
    frame["kind"] = np.where(frame["event_name"].isin(CART_EVENTS), "cart", "view")
    return frame.drop(columns="event_name")


def owned_gear(interactions: pd.DataFrame, catalog: pd.DataFrame) -> pd.DataFrame:
    """(user, item) pairs already bought that are not consumable: never worth recommending again."""
    consumable = catalog.set_index(Columns.ITEM)["consumable"]
    bought = interactions[interactions[Columns.PURCHASED]]
    keep = ~bought[Columns.ITEM].map(consumable).fillna(False).astype(bool)
    return bought.loc[keep, [Columns.USER, Columns.ITEM]].reset_index(drop=True)


class IdMap:
    """External ids ↔ dense row numbers; ascending id order by default, so results do not depend on input order."""

    def __init__(self, ids: Iterable[Any], *, sort: bool = True) -> None:
        values = ids if isinstance(ids, pd.Series) else pd.Series(list(ids), dtype=object).infer_objects()
        index = pd.Index(pd.unique(values))
        self.external = index.sort_values() if sort else index

    def __len__(self) -> int:
        return len(self.external)

    def rows(self, ids: Iterable[Any]) -> np.ndarray:
        """Row numbers of ``ids``; -1 where an id is unknown."""
        target = ids if isinstance(ids, pd.Series | np.ndarray | pd.Index) else list(ids)
        return np.asarray(self.external.get_indexer(target), dtype=np.int64)


def pair_matrix(users: IdMap, items: IdMap, frame: pd.DataFrame, values: np.ndarray | None = None) -> sp.csr_matrix:
    """Sparse users × items matrix of ``values`` (1 by default) at the frame's (user, item) pairs; unknown ids drop."""
    rows = users.rows(frame[Columns.USER])
    cols = items.rows(frame[Columns.ITEM])
    data = np.ones(len(frame), dtype=np.float32) if values is None else np.asarray(values, dtype=np.float32)
    known = (rows >= 0) & (cols >= 0)
    matrix = sp.csr_matrix((data[known], (rows[known], cols[known])), shape=(len(users), len(items)))
    matrix.sum_duplicates()
    return matrix


def feature_matrix(
    ids: IdMap, features: pd.DataFrame | None, id_column: str, identity_weight: float | None = None
) -> tuple[sp.csr_matrix, list[str]]:
    """Identity + ``features`` for each id, each row summing to 1 (LightFM's convention); and the column names.

    The identity block lets the model learn what is particular to one item (or user) beyond its features. With
    ``identity_weight`` None every column of a row weighs the same (an item with three features keeps a quarter of
    its weight on its own identity); with a number, the identity keeps that share and the features share the rest
    (1.0: features ignored). Rows without features keep all weight on the identity either way.
    """
    names = [f"{id_column}:{i}" for i in ids.external]
    identity = sp.identity(len(ids), dtype=np.float32, format="csr")
    if features is None or features.empty or identity_weight == 1.0:
        return identity.tocsr(), names
    rows = ids.rows(features[id_column])
    known = features[rows >= 0]
    vocabulary = IdMap(known[Columns.FEATURE].astype(str))
    values = known[Columns.VALUE] if Columns.VALUE in known else np.ones(len(known))
    block = sp.csr_matrix(
        (np.asarray(values, dtype=np.float32), (rows[rows >= 0], vocabulary.rows(known[Columns.FEATURE]))),
        shape=(len(ids), len(vocabulary)),
    )
    if identity_weight is None:
        matrix = sp.hstack([identity, block], format="csr", dtype=np.float32)
        sums = np.asarray(matrix.sum(axis=1)).ravel()
        matrix = sp.diags(1.0 / np.where(sums > 0, sums, 1.0)).astype(np.float32) @ matrix
    else:
        feature_sums = np.asarray(block.sum(axis=1)).ravel()
        has = feature_sums > 0
        block = sp.diags(np.where(has, (1 - identity_weight) / np.where(has, feature_sums, 1.0), 0.0)) @ block
        identity = sp.diags(np.where(has, identity_weight, 1.0)) @ identity
        matrix = sp.hstack([identity, block], format="csr", dtype=np.float32)
    return matrix.tocsr(), names + [str(f) for f in vocabulary.external]
