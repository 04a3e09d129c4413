"""Related products for the product page and the cart: co-purchase where baskets support it, content elsewhere.

For a product ``p`` and a candidate ``j`` the score is a blend ``α_p · copurchase(p, j) + (1 − α_p) · like(p, j)``
where ``copurchase`` is :mod:`models.recommend.item_to_item`'s shrunk cosine and ``α_p = n_p / (n_p + support_prior)``
grows with the baskets ``n_p`` that hold ``p``: a best seller's neighbours are what is bought with it, a new
product's (no baskets, ``α = 0``) are the products it resembles. ``like(p, j)`` is the TF-IDF cosine of
:mod:`models.recommend.content` weighed by how well ``j`` sells, ``content(p, j) · (1 − s + s · popularity(j))``
with ``s = popularity_share`` and ``popularity`` ``j``'s baskets over the best seller's (a new product counts as the
median product): of two products as similar, the one that sells counts up to ``1 / (1 − s)`` times as much, and
nothing that shares no word with ``p`` is ever suggested for it. Both parts lie in [0, 1]. A new product shows up
next to the ones it resembles once their co-purchase neighbours are thin.

Each row says what it mostly rests on (``kind``: ``co_purchase`` when the co-purchase part is at least two thirds of
the score, ``content`` when at most a third, else ``blend``) and explains itself: "Pairs with {p}" when the
co-purchase part counts (the cart email's "Pairs with …"), "Similar to {p}" otherwise. Gift cards and unpublished
products (when the catalogue says so) are never related; out-of-stock ones are left to the serving rules.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sqlalchemy import ColumnElement, and_, delete, insert, or_, select, true
from sqlalchemy.engine import Connection, Engine

from models.interactions import PRODUCTS, Columns, IdMap, read_frame, table_of
from models.recommend.content import CONTENT_COLUMNS, content_features, tfidf_vectors
from models.recommend.item_to_item import RELATED, co_purchase_similarity
from models.schema import RelatedProduct

KIND = "kind"
RELATED_FRAME_COLUMNS = (Columns.ITEM, RELATED, Columns.RANK, Columns.SCORE, KIND, Columns.EXPLANATION)
RELATED_TABLE = table_of(RelatedProduct)
_CHUNK = 512


@dataclass(frozen=True)
class RelatedSettings:
    """How the blend is made: co-purchase shrinkage and minimum support, how many baskets a product needs before
    co-purchase counts as much as content (``support_prior``), and how much popularity weighs among similar products
    (``popularity_share`` in [0, 1): 0 = similarity alone)."""

    shrinkage: float = 5.0
    min_support: int = 1
    support_prior: float = 2.0
    popularity_share: float = 0.5


def related_products(
    catalog: pd.DataFrame, interactions: pd.DataFrame, k: int = 10, settings: RelatedSettings = RelatedSettings()
) -> pd.DataFrame:
    """The ``k`` best related products of every catalogue product (never itself, only scores above 0):
    ``item_id, related_item_id, rank, score, kind, explanation``, best first; deterministic."""
    if k < 1:
        raise ValueError(f"k={k}: ask for at least one related product")
    items = IdMap(catalog[Columns.ITEM])
    n = len(items)
    ordered = catalog.set_index(Columns.ITEM).loc[items.external]
    titles = ordered["title"].fillna("").astype(str).to_numpy()
    vectors = tfidf_vectors(items, content_features(catalog))
    vectors_t = vectors.T.tocsr()
    copurchase, support, popularity = _copurchase(interactions, items, settings)
    alpha = np.where(support > 0, support / np.maximum(support + settings.support_prior, 1e-9), 0.0).astype(np.float32)
    sells = _popularity(support)
    nudge = (1e-6 * popularity / max(float(popularity.max(initial=0.0)), 1.0)).astype(np.float32)
    eligible = _eligible(ordered)
    parts = []
    for start in range(0, n, _CHUNK):
        rows = np.arange(start, min(start + _CHUNK, n))
        content = np.asarray((vectors[rows] @ vectors_t).toarray(), dtype=np.float32).reshape(len(rows), n)
        co = np.asarray(copurchase[rows].toarray(), dtype=np.float32)
        part_co = alpha[rows, None] * co
        like = content * (1 - settings.popularity_share + settings.popularity_share * sells[None, :])
        blend = part_co + (1 - alpha[rows, None]) * like
        blend[np.arange(len(rows)), rows] = 0.0
        blend[:, ~eligible] = 0.0
        blend = np.where(blend > 0, blend + nudge, 0.0)
        order = np.argsort(-blend, axis=1, kind="stable")[:, : min(k, n)]
        values = np.take_along_axis(blend, order, axis=1)
        row, rank = np.nonzero(values > 0)
        source, target = rows[row], order[row, rank]
        co_share = part_co[row, target] / np.maximum(values[row, rank], 1e-30)
        kind = np.where(co_share >= 2 / 3, "co_purchase", np.where(co_share <= 1 / 3, "content", "blend"))
        says = np.where(kind == "content", "Similar to ", "Pairs with ")
        says = np.where(titles[source] == "", np.where(kind == "content", "Similar", "Often bought together"), says)
        parts.append(
            pd.DataFrame(
                {
                    Columns.ITEM: items.external.to_numpy()[source],
                    RELATED: items.external.to_numpy()[target],
                    Columns.RANK: rank + 1,
                    Columns.SCORE: values[row, rank].astype(float),
                    KIND: kind,
                    Columns.EXPLANATION: np.char.add(says.astype(str), titles[source].astype(str)).astype(object),
                }
            )
        )
    if not parts:
        return pd.DataFrame({column: [] for column in RELATED_FRAME_COLUMNS})
    return pd.concat(parts, ignore_index=True)[list(RELATED_FRAME_COLUMNS)]


def _copurchase(
    interactions: pd.DataFrame, items: IdMap, settings: RelatedSettings
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Co-purchase similarity over the catalogue's items, each item's basket count, and its interaction count."""
    n = len(items)
    if interactions.empty:
        return sp.csr_matrix((n, n), dtype=np.float32), np.zeros(n), np.zeros(n)
    purchased = interactions.get(Columns.PURCHASED)
    bought = interactions[purchased.fillna(False).astype(bool)] if purchased is not None else interactions
    rows = bought if len(bought) else interactions
    similarity, support = co_purchase_similarity(rows, items, settings.shrinkage, settings.min_support)
    positions = items.rows(interactions[Columns.ITEM])
    popularity = np.bincount(positions[positions >= 0], minlength=n).astype(np.float64)
    return similarity, support.astype(np.float64), popularity


def _popularity(support: np.ndarray) -> np.ndarray:
    """Each product's baskets over the best seller's, in [0, 1]; a product in no basket yet counts as the median
    product (a new product is not presumed unpopular)."""
    sold = support[support > 0]
    if not len(sold):
        return np.zeros(len(support), dtype=np.float32)
    scaled = support / sold.max()
    return np.where(support > 0, scaled, np.median(scaled[support > 0])).astype(np.float32)


def _eligible(ordered: pd.DataFrame) -> np.ndarray:
    """Which products may be shown as related: not gift cards, not unpublished (when the catalogue says)."""
    eligible = np.ones(len(ordered), dtype=bool)
    if "gift_card" in ordered.columns:
        eligible &= ~ordered["gift_card"].fillna(False).astype(bool).to_numpy()
    if "published" in ordered.columns:
        eligible &= ordered["published"].fillna(True).astype(bool).to_numpy()
    return eligible


def with_content_columns(engine: Engine | Connection, catalog: pd.DataFrame) -> pd.DataFrame:
    """``catalog`` with the descriptive columns content needs (vendor, tags, …) read from ``products`` when the
    catalogue frame lacks them."""
    columns = PRODUCTS.c
    missing = [name for name in CONTENT_COLUMNS if name not in catalog.columns and name in columns]
    if not missing or catalog.empty:
        return catalog
    stmt = select(columns.id.label(Columns.ITEM), *(columns[name] for name in missing)).where(
        columns.id.in_([int(item) for item in catalog[Columns.ITEM]])
    )
    return catalog.merge(read_frame(engine, stmt), on=Columns.ITEM, how="left")


def write_related_products(
    engine: Engine,
    catalog: pd.DataFrame,
    interactions: pd.DataFrame,
    now: datetime,
    k: int = 10,
    settings: RelatedSettings = RelatedSettings(),
) -> int:
    """Replace ``related_products`` with the ``k`` best related products of every catalogue product (one
    transaction: readers see the old table or the new one); returns the rows written."""
    frame = related_products(with_content_columns(engine, catalog), interactions, k, settings)
    rows = [
        {
            "product_id": int(item),
            "rank": int(rank),
            "related_product_id": int(related),
            "score": float(score),
            "kind": str(kind),
            "explanation": str(text),
            "trained_at": now,
        }
        for item, related, rank, score, kind, text in frame[list(RELATED_FRAME_COLUMNS)].itertuples(index=False)
    ]
    with engine.begin() as conn:
        conn.execute(delete(RELATED_TABLE))
        for start in range(0, len(rows), 5_000):
            conn.execute(insert(RELATED_TABLE), rows[start : start + 5_000])
    return len(rows)


@dataclass(frozen=True)
class Pairing:
    """A stored related product of one product."""

    product_id: int
    related_product_id: int
    rank: int
    score: float
    kind: str
    explanation: str


def suggestable() -> ColumnElement[bool]:
    """SQL condition for a product a placement may show now: active, published, not a gift card, in stock (or stock
    not tracked). Stock changes between trainings, so placements check it when they read."""
    stock = PRODUCTS.c.inventory_quantity
    return and_(
        PRODUCTS.c.active == true(),
        PRODUCTS.c.published == true(),
        PRODUCTS.c.gift_card.is_not(true()),
        or_(stock.is_(None), stock > 0),
    )


def load_related(
    conn: Connection | Engine, product_ids: Iterable[int], per_product: int = 10
) -> dict[int, list[Pairing]]:
    """The stored related products (:func:`suggestable` ones, best first, at most ``per_product``) of each of
    ``product_ids``."""
    if isinstance(conn, Engine):
        with conn.connect() as connection:
            return load_related(connection, product_ids, per_product)
    ids = sorted({int(pid) for pid in product_ids})
    found: dict[int, list[Pairing]] = defaultdict(list)
    table = RELATED_TABLE.c
    for start in range(0, len(ids), 5_000):
        rows = conn.execute(
            select(table.product_id, table.related_product_id, table.rank, table.score, table.kind, table.explanation)
            .join(PRODUCTS, PRODUCTS.c.id == table.related_product_id)
            .where(table.product_id.in_(ids[start : start + 5_000]), suggestable())
            .order_by(table.product_id, table.rank)
        )
        for row in rows:
            if len(found[row.product_id]) < per_product:
                found[row.product_id].append(Pairing(*(value for value in row)))
    return dict(found)
