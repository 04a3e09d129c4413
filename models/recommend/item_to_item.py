"""Item-to-item co-purchase ("customers who bought this also bought", "Pairs with …").

Two items are related when the same baskets hold them: a basket is one order when the interactions carry a
``basket_id`` column, else one customer's purchases. The association is the cosine of the two items' basket sets,
shrunk by the pair's support (Koren's significance weighting, ``c / (c + shrinkage)``, with ``c`` the baskets that
hold both): a single shared basket of two niche items has cosine 1 but counts ``1 / (1 + shrinkage)`` of it, so a
pair seen in many baskets ranks above it. ``min_support`` drops rarer pairs outright.

:class:`ItemSimilarityModel` is the part shared with the content-based model (:mod:`models.recommend.content`): a
user's score for an item is the sum of the item's similarities to the items in their history (weighted by how
strong and recent each interaction is), items with no similarity to the history are ranked by popularity after the
ones with some, and the explanation names the history item that contributed most.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.interactions import Columns, IdMap, pair_matrix
from models.recommend.base import RecommenderModel
from models.recommend.ranking import PAD_SCORE, padded_width

BASKET = "basket_id"
RELATED = "related_item_id"
RELATED_COLUMNS = (Columns.ITEM, RELATED, Columns.RANK, Columns.SCORE)
BACKFILL_SCALE = 1e-6  # popularity only orders items the history says nothing about, never outranks a similarity
POPULAR_REASON = "Popular with our customers"


class ItemSimilarityModel(RecommenderModel):
    """A recommender over an item × item similarity: history-weighted sums, popularity after, and ``related``.

    A user's history is their ``history_items`` strongest interactions (weight: kind and recency, as
    ``load_interactions`` gives it), scaled so the strongest counts 1.
    """

    serves_cold_users = False
    reason_template: ClassVar[str]  # "… {} …", filled with the name of the history item that contributed most

    def __init__(self, *, history_items: int = 20) -> None:
        super().__init__()
        self.history_items = history_items

    # ---- fitting --------------------------------------------------------------------------------------------------
    def _fit(
        self, interactions: pd.DataFrame, item_features: pd.DataFrame | None, user_features: pd.DataFrame | None
    ) -> None:
        self._fit_similarity(interactions, item_features)
        history = strongest_per_row(
            pair_matrix(self.users_, self.items_, interactions, interactions[Columns.WEIGHT]), self.history_items
        )
        self.history_ = scaled_to_row_max(history)
        counts = np.bincount(self.items_.rows(interactions[Columns.ITEM]), minlength=len(self.items_))
        top = counts.max() if len(counts) and counts.max() > 0 else 1
        backfill = np.full(padded_width(len(self.items_)), PAD_SCORE, dtype=np.float32)
        backfill[: len(self.items_)] = BACKFILL_SCALE * (counts / top)
        self._backfill = backfill

    @abstractmethod
    def _fit_similarity(self, interactions: pd.DataFrame, item_features: pd.DataFrame | None) -> None:
        """Learn the item × item similarity (self-similarity is never counted)."""

    similarity_: sp.csr_matrix  # items × items, each row its strongest neighbours, set by _fit_similarity

    def _propagate(self, history: sp.csr_matrix) -> np.ndarray:
        """``history @ similarity`` as a dense float32 rows × items array (a history item adds nothing to itself)."""
        return np.asarray((history @ self.similarity_).toarray(), dtype=np.float32)

    def pair_similarity(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """Similarity of item positions ``first[i]`` and ``second[i]`` (0 for an item and itself)."""
        if not len(first):
            return np.zeros(0, dtype=np.float32)
        return np.asarray(self.similarity_[first, second], dtype=np.float32).ravel()

    def _similar_rows(self, positions: np.ndarray) -> np.ndarray:
        """Dense similarity rows (to every item) of the items at ``positions``, self-similarity 0."""
        return np.asarray(self.similarity_[positions].toarray(), dtype=np.float32)

    # ---- scoring ----------------------------------------------------------------------------------------------------
    def _history_rows(self, rows: np.ndarray) -> sp.csr_matrix:
        """The history of the users at ``rows``; an empty row for -1 (a user the model never saw)."""
        known = np.flatnonzero(rows >= 0)
        picker = sp.csr_matrix(
            (np.ones(len(known), dtype=np.float32), (known, rows[known])), shape=(len(rows), len(self.users_))
        )
        return (picker @ self.history_).tocsr()

    def _score_chunk(self, rows: np.ndarray) -> np.ndarray:
        scores = np.tile(self._backfill, (len(rows), 1))
        scores[:, : len(self.items_)] += self._propagate(self._history_rows(rows))
        return scores

    def _explain(self, rows: np.ndarray, items: np.ndarray, names: np.ndarray) -> np.ndarray:
        out = np.full(items.shape, "", dtype=object)
        reasons = np.array([self.reason_template.format(name) for name in names], dtype=object)
        for start in range(0, len(rows), 4096):
            stop = start + 4096
            anchor = self.anchors(self._history_rows(rows[start:stop]), items[start:stop])
            text = np.where(anchor >= 0, reasons[np.maximum(anchor, 0)], POPULAR_REASON)
            out[start:stop] = np.where(items[start:stop] >= 0, text, "")
        return out

    def anchors(self, history: sp.csr_matrix, items: np.ndarray) -> np.ndarray:
        """For each recommended item, the history item with the largest contribution (weight × similarity) to its
        score, ties to the lower position; -1 where no history item contributes."""
        n_rows, k = items.shape
        pair_row = np.repeat(np.arange(n_rows), k)
        pair_item = items.ravel()
        counts = np.diff(history.indptr)[pair_row] * (pair_item >= 0)
        triple_pair = np.repeat(np.arange(len(pair_item)), counts)
        offsets = np.arange(len(triple_pair)) - np.repeat(np.cumsum(counts) - counts, counts)
        at = np.repeat(history.indptr[pair_row], counts) + offsets
        source, weight = history.indices[at], history.data[at]
        contribution = weight * self.pair_similarity(source, pair_item[triple_pair])
        keep = contribution > 0
        triple_pair, source, contribution = triple_pair[keep], source[keep], contribution[keep]
        anchor = np.full(len(pair_item), -1, dtype=np.int64)
        order = np.lexsort((source, -contribution, triple_pair))
        first = order[np.r_[True, triple_pair[order][1:] != triple_pair[order][:-1]]] if len(order) else order
        anchor[triple_pair[first]] = source[first]
        return anchor.reshape(n_rows, k)

    # ---- related items --------------------------------------------------------------------------------------------
    def related(self, item_ids: Sequence[Any] | np.ndarray, k: int) -> pd.DataFrame:
        """The ``k`` items most similar to each of ``item_ids`` (never itself; only items with a similarity above
        0, so fewer when there are fewer): ``item_id, related_item_id, rank, score``, best first."""
        self._require_fitted()
        if k < 1:
            raise ValueError(f"k={k}: ask for at least one related item")
        ids = np.asarray(pd.unique(pd.Series(list(item_ids), dtype=object).infer_objects()))
        positions = self.items_.rows(ids)
        ids, positions = ids[positions >= 0], positions[positions >= 0]
        parts = []
        for start in range(0, len(positions), 1024):
            chunk = positions[start : start + 1024]
            sims = self._similar_rows(chunk)
            sims[np.arange(len(chunk)), chunk] = 0.0
            order = np.argsort(-sims, axis=1, kind="stable")[:, : min(k, len(self.items_))]
            values = np.take_along_axis(sims, order, axis=1)
            row, rank = np.nonzero(values > 0)
            parts.append(
                pd.DataFrame(
                    {
                        Columns.ITEM: ids[start:][row],
                        RELATED: self.items_.external.to_numpy()[order[row, rank]],
                        Columns.RANK: rank + 1,
                        Columns.SCORE: values[row, rank].astype(float),
                    }
                )
            )
        if not parts:
            return pd.DataFrame({column: [] for column in RELATED_COLUMNS})
        frame = pd.concat(parts, ignore_index=True)
        frame[Columns.ITEM] = frame[Columns.ITEM].infer_objects()
        return frame[list(RELATED_COLUMNS)]


class ItemToItem(ItemSimilarityModel):
    """Co-purchase item-to-item: shrunk cosine over baskets (orders, or customers), ``neighbours`` kept per item.

    Recommends for a user what pairs with their history; "Pairs with X" names the history item that contributed
    most. Baskets are the purchases (``purchased`` rows) when there are any, else every interaction.
    """

    name = "item_to_item"
    reason_template = "Pairs with {}"

    def __init__(
        self, *, shrinkage: float = 5.0, min_support: int = 1, neighbours: int = 200, history_items: int = 20
    ) -> None:
        super().__init__(history_items=history_items)
        if shrinkage < 0 or min_support < 1 or neighbours < 1:
            raise ValueError("shrinkage must be ≥ 0, min_support and neighbours ≥ 1")
        self.shrinkage = shrinkage
        self.min_support = min_support
        self.neighbours = neighbours

    def _fit_similarity(self, interactions: pd.DataFrame, item_features: pd.DataFrame | None) -> None:
        bought = interactions[interactions[Columns.PURCHASED]]
        rows = bought if len(bought) else interactions
        similarity, support = co_purchase_similarity(rows, self.items_, self.shrinkage, self.min_support)
        self.item_support_ = support
        self.similarity_ = strongest_per_row(similarity, self.neighbours)


def co_purchase_similarity(
    rows: pd.DataFrame, items: IdMap, shrinkage: float, min_support: int
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Items × items shrunk cosine of co-occurrence in baskets (diagonal 0), and each item's basket count.

    ``sim(i, j) = c_ij / sqrt(n_i n_j) · c_ij / (c_ij + shrinkage)`` for ``c_ij ≥ min_support``, else 0, where
    ``n_i`` counts the baskets holding ``i`` and ``c_ij`` those holding both. Symmetric.
    """
    key = BASKET if BASKET in rows.columns else Columns.USER
    baskets = IdMap(rows[key])
    basket_rows, item_cols = baskets.rows(rows[key]), items.rows(rows[Columns.ITEM])
    known = item_cols >= 0
    membership = sp.csr_matrix(
        (np.ones(int(known.sum()), dtype=np.float32), (basket_rows[known], item_cols[known])),
        shape=(len(baskets), len(items)),
    )
    membership.sum_duplicates()
    membership.data[:] = 1.0  # a basket holds an item or not
    support = np.asarray(membership.sum(axis=0)).ravel()
    together = (membership.T @ membership).tocoo()
    off_diagonal = (together.row != together.col) & (together.data >= min_support)
    i, j, c = together.row[off_diagonal], together.col[off_diagonal], together.data[off_diagonal].astype(np.float64)
    cosine = c / np.sqrt(support[i] * support[j])
    values = (cosine * c / (c + shrinkage)).astype(np.float32)
    return sp.csr_matrix((values, (i, j)), shape=(len(items), len(items))), support


def scaled_to_row_max(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Each row divided by its largest entry (rows of zeros stay zero): a user's strongest interaction weighs 1."""
    lengths = np.diff(matrix.indptr)
    maxima = np.zeros(matrix.shape[0], dtype=np.float32)
    nonempty = lengths > 0
    maxima[nonempty] = np.maximum.reduceat(matrix.data, matrix.indptr[:-1][nonempty]) if matrix.nnz else 0
    scaled = matrix.copy().astype(np.float32)
    scaled.data /= np.repeat(np.where(maxima > 0, maxima, 1.0), lengths).astype(np.float32)
    scaled.eliminate_zeros()
    return scaled


def strongest_per_row(matrix: sp.csr_matrix, keep: int) -> sp.csr_matrix:
    """``matrix`` with only each row's ``keep`` largest entries (ties to the lower column); rows stay sorted."""
    matrix = matrix.tocsr()
    matrix.sum_duplicates()
    lengths = np.diff(matrix.indptr)
    if not len(lengths) or lengths.max(initial=0) <= keep:
        matrix.sort_indices()
        return matrix
    row = np.repeat(np.arange(matrix.shape[0]), lengths)
    order = np.lexsort((matrix.indices, -matrix.data, row))
    rank = np.arange(len(order)) - np.repeat(matrix.indptr[:-1], lengths)
    chosen = order[rank < keep]
    pruned = sp.csr_matrix((matrix.data[chosen], (row[chosen], matrix.indices[chosen])), shape=matrix.shape)
    pruned.sort_indices()
    return pruned
