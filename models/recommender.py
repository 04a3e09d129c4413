"""Recommendation models with one contract, and the train stage that stores every customer's top picks.

The contract follows RecTools: :meth:`RecommenderModel.fit` takes long DataFrames and owns id mapping;
:meth:`RecommenderModel.recommend` owns filtering, ranking and explanations and returns
``user_id, item_id, rank, score, explanation``. A model implements ``_fit``, ``_score_chunk`` (scores for a block
of users, one matrix product) and ``_explain``. :func:`train_and_recommend` serves warm customers with
:class:`HybridLightFM` and cold ones with :class:`Popularity`, and replaces the ``recommendations`` table.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp
from lightfm import LightFM
from sqlalchemy import delete, insert
from sqlalchemy.engine import Engine

from models.interactions import (
    FEATURE_SEPARATOR,
    Columns,
    IdMap,
    feature_matrix,
    item_features,
    load_catalog,
    load_customer_ids,
    load_interactions,
    owned_gear,
    pair_matrix,
    table_of,
)
from models.schema import Recommendation, utcnow

RESULT_COLUMNS = (Columns.USER, Columns.ITEM, Columns.RANK, Columns.SCORE, Columns.EXPLANATION)
_PAD_SCORE = np.float32(-1e35)  # score of padding columns: far below any real score, still finite for BLAS
_VALID_ABOVE = -1e30


class NotFittedError(RuntimeError):
    """``recommend`` was called before ``fit``."""


class UnsupportedUsersError(ValueError):
    """The model cannot score some users (e.g. a collaborative model and users it never saw)."""


class RecommenderModel(ABC):
    """Base of every recommender: id mapping, validation, exclusion, chunked top-k and the result frame."""

    name: ClassVar[str]
    serves_cold_users: ClassVar[bool]
    chunk_size: ClassVar[int] = 1024

    def __init__(self) -> None:
        self._fitted = False

    # ---- public contract -------------------------------------------------------------------------------------
    def fit(
        self,
        interactions: pd.DataFrame,
        item_features: pd.DataFrame | None = None,
        user_features: pd.DataFrame | None = None,
    ) -> Self:
        """Learn from ``user_id, item_id[, weight][, timestamp][, purchased]`` rows (repeated pairs are summed).

        Items that only appear in ``item_features`` join the catalogue (content can carry them); features are long
        ``item_id|user_id, feature[, value]`` frames.
        """
        frame = _prepared_interactions(interactions)
        _check_features(item_features, Columns.ITEM, "item_features")
        _check_features(user_features, Columns.USER, "user_features")
        feature_items = item_features[Columns.ITEM] if item_features is not None else pd.Series([], dtype=object)
        self.users_ = IdMap(frame[Columns.USER])
        self.items_ = IdMap(pd.concat([frame[Columns.ITEM], feature_items], ignore_index=True))
        self.seen_ = pair_matrix(self.users_, self.items_, frame)
        bought = frame[frame[Columns.PURCHASED]]
        self.purchased_ = pair_matrix(self.users_, self.items_, bought)
        self._fit(frame, item_features, user_features)
        self._fitted = True
        return self

    def is_warm(self, user_ids: Sequence[Any] | np.ndarray) -> np.ndarray:
        """Which of ``user_ids`` have interactions the model learned from."""
        self._require_fitted()
        return self.users_.rows(user_ids) >= 0

    def recommend(
        self,
        user_ids: Sequence[Any] | np.ndarray,
        k: int,
        exclude_seen: bool = True,
        *,
        exclude: pd.DataFrame | None = None,
        item_names: Mapping[Any, str] | None = None,
        on_unsupported: Literal["raise", "skip"] = "raise",
    ) -> pd.DataFrame:
        """Top ``k`` items per user, best first: ``user_id, item_id, rank, score, explanation``.

        ``exclude_seen`` drops every item the user interacted with; ``exclude`` drops further ``user_id, item_id``
        pairs (e.g. gear they own). ``item_names`` lets explanations name items. Users the model cannot serve raise
        :class:`UnsupportedUsersError`, or are left out with ``on_unsupported="skip"``.
        """
        self._require_fitted()
        if k < 1:
            raise ValueError(f"k={k}: ask for at least one recommendation per user")
        users = np.asarray(pd.unique(pd.Series(user_ids, dtype=None if len(user_ids) else object)))
        rows = self.users_.rows(users)
        users, rows = self._supported(users, rows, on_unsupported)
        blocked = self._blocked(users, rows, exclude_seen, exclude)
        items, scores = self.rank_rows(rows, k, blocked)
        names = self._item_name_array(item_names)
        explanations = self._explain(rows, items, names)
        return _result_frame(users, self.items_, items, scores, explanations)

    def rank_rows(
        self, rows: np.ndarray, k: int, blocked: sp.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ranking step of :meth:`recommend` on model rows (-1 = cold): best item positions and scores.

        No id mapping, no explanations: for benchmarks and evaluation. ``blocked`` is rows × items, cells to skip.
        """
        self._require_fitted()
        if blocked is None:
            blocked = sp.csr_matrix((len(rows), len(self.items_)), dtype=np.float32)
        return top_k(self._score_chunk, rows, blocked, min(k, len(self.items_)), self.chunk_size)

    # ---- subclass hooks --------------------------------------------------------------------------------------
    @abstractmethod
    def _fit(
        self, interactions: pd.DataFrame, item_features: pd.DataFrame | None, user_features: pd.DataFrame | None
    ) -> None: ...

    @abstractmethod
    def _score_chunk(self, rows: np.ndarray) -> np.ndarray:
        """Scores of every item for the users at ``rows`` (-1 = cold): float32, ``padded_width(n_items)`` columns."""

    @abstractmethod
    def _explain(self, rows: np.ndarray, items: np.ndarray, names: np.ndarray) -> np.ndarray:
        """One true sentence per recommended item (``items`` is rows × k of item positions, -1 = none)."""

    # ---- helpers ---------------------------------------------------------------------------------------------
    def _require_fitted(self) -> None:
        if not self._fitted:
            raise NotFittedError(
                f"{type(self).__name__} is not fitted yet: call .fit(interactions) before .recommend(...)"
            )

    def _supported(self, users: np.ndarray, rows: np.ndarray, on_unsupported: str) -> tuple[np.ndarray, np.ndarray]:
        if self.serves_cold_users or (rows >= 0).all():
            return users, rows
        if on_unsupported == "skip":
            return users[rows >= 0], rows[rows >= 0]
        cold = users[rows < 0]
        raise UnsupportedUsersError(
            f"{type(self).__name__} serves users it was fitted on; {len(cold)} have no interactions "
            f"(e.g. {list(cold[:3])}): recommend for them with Popularity, or pass on_unsupported='skip'"
        )

    def _blocked(
        self, users: np.ndarray, rows: np.ndarray, exclude_seen: bool, exclude: pd.DataFrame | None
    ) -> sp.csr_matrix:
        """Requested users × items: the cells that must not be recommended."""
        blocked = sp.csr_matrix((len(users), len(self.items_)), dtype=np.float32)
        if exclude_seen:
            warm = np.flatnonzero(rows >= 0)
            picker = sp.csr_matrix(
                (np.ones(len(warm), dtype=np.float32), (warm, rows[warm])), shape=(len(users), len(self.users_))
            )
            blocked = blocked + picker @ self.seen_
        if exclude is not None and len(exclude):
            _require_columns(exclude, (Columns.USER, Columns.ITEM), "exclude")
            blocked = blocked + pair_matrix(IdMap(users, sort=False), self.items_, exclude)
        return blocked.tocsr()

    def _item_name_array(self, item_names: Mapping[Any, str] | None) -> np.ndarray:
        names = item_names or {}
        return np.array([names.get(item, str(item)) for item in self.items_.external], dtype=object)


# ---- the models --------------------------------------------------------------------------------------------------
class Popularity(RecommenderModel):
    """Recency-weighted popularity: the sum of interaction weights per item (optionally decayed once more).

    Explains itself truthfully: "Popular this month" only for items with interactions in the last ``recent_days``
    before ``now`` (default: the latest interaction), otherwise "A customer favourite".
    """

    name = "popularity"
    serves_cold_users = True

    def __init__(self, *, half_life_days: float | None = None, recent_days: int = 30, now: datetime | None = None):
        super().__init__()
        self.half_life_days = half_life_days
        self.recent_days = recent_days
        self.now = now

    def _fit(
        self, interactions: pd.DataFrame, item_features: pd.DataFrame | None, user_features: pd.DataFrame | None
    ) -> None:
        weight = interactions[Columns.WEIGHT].to_numpy(dtype=float)
        stamps = interactions.get(Columns.TIMESTAMP)
        reference = None
        if stamps is not None and stamps.notna().any():
            reference = _utc_timestamp(self.now) if self.now is not None else stamps.max()
            if self.half_life_days:
                age = (reference - stamps).dt.total_seconds().clip(lower=0).to_numpy() / 86_400
                weight = weight * np.exp2(-age / self.half_life_days)
        cols = self.items_.rows(interactions[Columns.ITEM])
        popularity = np.bincount(cols, weights=weight, minlength=len(self.items_))
        scores = np.where(popularity > 0, popularity, _PAD_SCORE).astype(np.float32)
        self._scores = _padded(scores, _PAD_SCORE)
        self._reasons = self._reason_per_item(interactions, cols, reference)

    def _reason_per_item(self, interactions: pd.DataFrame, cols: np.ndarray, reference: Any) -> np.ndarray:
        if reference is None:
            return np.full(len(self.items_), "Popular with our customers", dtype=object)
        recent = (interactions[Columns.TIMESTAMP] >= reference - timedelta(days=self.recent_days)).to_numpy()
        is_recent = np.bincount(cols[recent], minlength=len(self.items_)) > 0
        this_period = "Popular this month" if self.recent_days == 30 else f"Popular in the last {self.recent_days} days"
        return np.where(is_recent, this_period, "A customer favourite").astype(object)

    def _score_chunk(self, rows: np.ndarray) -> np.ndarray:
        return np.tile(self._scores, (len(rows), 1))

    def _explain(self, rows: np.ndarray, items: np.ndarray, names: np.ndarray) -> np.ndarray:
        return np.where(items >= 0, self._reasons[np.maximum(items, 0)], "")


class HybridLightFM(RecommenderModel):
    """LightFM (WARP) over identity + item features (and optional user features); serves warm users.

    Explanations, first that holds: the item was bought before; "Because you bought X" where X is the user's bought
    (else browsed) item most similar to it in the learned item embedding space, when the cosine similarity reaches
    ``anchor_threshold``; "Matches your taste for …" naming features it shares with the user's history; else
    "Picked for you from your shopping history".
    """

    name = "hybrid"
    serves_cold_users = False

    def __init__(
        self,
        *,
        components: int = 32,
        epochs: int = 15,
        learning_rate: float = 0.05,
        item_alpha: float = 1e-6,
        user_alpha: float = 1e-6,
        max_sampled: int = 10,
        seed: int = 0,
        num_threads: int = 2,
        anchor_threshold: float = 0.5,
    ):
        super().__init__()
        self.components = components
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.item_alpha = item_alpha
        self.user_alpha = user_alpha
        self.max_sampled = max_sampled
        self.seed = seed
        self.num_threads = num_threads
        self.anchor_threshold = anchor_threshold

    def _fit(
        self, interactions: pd.DataFrame, item_features: pd.DataFrame | None, user_features: pd.DataFrame | None
    ) -> None:
        item_matrix, item_columns = feature_matrix(self.items_, item_features, Columns.ITEM)
        user_matrix, _ = feature_matrix(self.users_, user_features, Columns.USER)
        matrix, weights = self._training_matrices(interactions)
        self.lightfm_ = LightFM(
            no_components=self.components,
            loss="warp",
            learning_rate=self.learning_rate,
            item_alpha=self.item_alpha,
            user_alpha=self.user_alpha,
            max_sampled=self.max_sampled,
            random_state=np.random.RandomState(self.seed),
        )
        self.lightfm_.fit(
            matrix,
            user_features=user_matrix,
            item_features=item_matrix,
            sample_weight=weights,
            epochs=self.epochs,
            num_threads=self.num_threads,
        )
        self.item_matrix_, self.user_matrix_ = item_matrix, user_matrix
        self._prepare_scoring(item_matrix, user_matrix)
        self._taste = _TasteFeatures.from_columns(item_matrix, item_columns, len(self.items_))

    def _training_matrices(self, interactions: pd.DataFrame) -> tuple[sp.coo_matrix, sp.coo_matrix]:
        """Binary interactions and their weights (scaled to mean 1 so the learning rate keeps its meaning)."""
        values = pair_matrix(self.users_, self.items_, interactions, interactions[Columns.WEIGHT]).tocoo()
        scale = float(values.data.mean()) if values.nnz and values.data.mean() > 0 else 1.0
        ones = sp.coo_matrix((np.ones(values.nnz, dtype=np.float32), (values.row, values.col)), shape=values.shape)
        scaled = sp.coo_matrix((values.data / scale, (values.row, values.col)), shape=values.shape)
        return ones, scaled

    def _prepare_scoring(self, item_matrix: sp.csr_matrix, user_matrix: sp.csr_matrix) -> None:
        """Fold biases into the factors so that one product gives LightFM's score: u·i + b_u + b_i."""
        item_bias, item_vectors = self.lightfm_.get_item_representations(item_matrix)
        user_bias, user_vectors = self.lightfm_.get_user_representations(user_matrix)
        ones_items = np.ones((len(item_bias), 1), dtype=np.float32)
        ones_users = np.ones((len(user_bias), 1), dtype=np.float32)
        items = np.hstack([item_vectors, ones_items, item_bias[:, None]]).astype(np.float32)
        pad = padded_width(len(items)) - len(items)
        pad_rows = np.zeros((pad, items.shape[1]), dtype=np.float32)
        pad_rows[:, -1] = _PAD_SCORE
        self._item_factors_t = np.ascontiguousarray(np.vstack([items, pad_rows]).T)
        self._user_factors = np.hstack([user_vectors, user_bias[:, None], ones_users]).astype(np.float32)
        norms = np.linalg.norm(item_vectors, axis=1, keepdims=True)
        self.item_unit_vectors_ = (item_vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)

    def _score_chunk(self, rows: np.ndarray) -> np.ndarray:
        return self._user_factors[rows] @ self._item_factors_t

    def _explain(self, rows: np.ndarray, items: np.ndarray, names: np.ndarray) -> np.ndarray:
        out = np.full(items.shape, "", dtype=object)
        for start in range(0, len(rows), 8192):
            stop = start + 8192
            out[start:stop] = self._explain_chunk(rows[start:stop], items[start:stop], names)
        return out

    def _explain_chunk(self, rows: np.ndarray, items: np.ndarray, names: np.ndarray) -> np.ndarray:
        purchased = self.purchased_[rows]
        has_purchases = np.diff(purchased.indptr) > 0
        candidates = _stack_rows(purchased, self.seen_[rows], has_purchases)
        anchor, similarity = best_anchors(candidates, items, self.item_unit_vectors_)
        taste = self._taste.explain(self.seen_[rows], items)
        bought_before = _contains(purchased, items)
        because_bought = "Because you bought " + names  # one string per item, not per recommendation
        because_browsed = "Because you showed interest in " + names
        anchor_text = np.where(
            has_purchases[:, None], because_bought[np.maximum(anchor, 0)], because_browsed[np.maximum(anchor, 0)]
        )
        anchored = (anchor >= 0) & (similarity >= self.anchor_threshold)
        text = np.where(anchored, anchor_text, taste)
        text = np.where(text == "", "Picked for you from your shopping history", text)
        text = np.where(bought_before, "You bought this before", text)
        return np.where(items >= 0, text, "")


# ---- explanation pieces ------------------------------------------------------------------------------------------
_TASTE_PHRASES = {"note": "{} notes", "roast": "{} roasts", "origin": "products from {}"}
_TASTE_PRIORITY = {"note": 3, "roast": 3, "origin": 2}
_UNEXPLAINED_KINDS = {"price_band", "product_type"}  # "matches your taste for coffee" says nothing in a coffee shop


@dataclass
class _TasteFeatures:
    """The item features an explanation may name (not identities, product types or price bands), with priority."""

    matrix: sp.csr_matrix  # items × explainable features, binary
    phrases_: np.ndarray
    priority: np.ndarray

    @classmethod
    def from_columns(cls, item_matrix: sp.csr_matrix, columns: list[str], n_items: int) -> _TasteFeatures:
        keep = [
            j for j, c in enumerate(columns) if j >= n_items and c.split(FEATURE_SEPARATOR)[0] not in _UNEXPLAINED_KINDS
        ]
        matrix = (item_matrix[:, keep] > 0).astype(np.float32).tocsr()
        kinds = [columns[j].split(FEATURE_SEPARATOR, 1) for j in keep]
        phrases = [_phrase(kind_value) for kind_value in kinds]
        priority = [_TASTE_PRIORITY.get(kv[0], 1) for kv in kinds]
        return cls(matrix, np.array(phrases, dtype=object), np.array(priority, dtype=np.int64))

    def explain(self, history: sp.csr_matrix, items: np.ndarray) -> np.ndarray:
        """For each recommended item: "Matches your taste for …" naming up to two features it shares with the user's
        history ('' if none)."""
        out = np.full(items.shape, "", dtype=object)
        if self.matrix.shape[1] == 0:
            return out
        profile = ((history > 0).astype(np.float32) @ self.matrix).tocsr()
        pair_rows = np.repeat(np.arange(items.shape[0]), items.shape[1])
        flat = items.ravel()
        shared = self.matrix[np.maximum(flat, 0)].multiply(profile[pair_rows]).tocoo()
        pair, feature, count = shared.row, shared.col, shared.data
        order = np.lexsort((feature, -count, -self.priority[feature], pair))
        pair, feature = pair[order], feature[order]
        rank = _rank_within_groups(pair, len(flat))
        first = np.full(len(flat), -1)
        second = np.full(len(flat), -1)
        first[pair[rank == 0]] = feature[rank == 0]
        second[pair[rank == 1]] = feature[rank == 1]
        words = self._join(first, second)
        words[flat < 0] = ""
        return words.reshape(items.shape)

    def _join(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        width = len(self.phrases_) + 1
        codes, inverse = np.unique((first + 1) * width + (second + 1), return_inverse=True)
        texts = []
        for code in codes:
            picked = [f for f in (code // width - 1, code % width - 1) if f >= 0]
            texts.append("Matches your taste for " + " and ".join(self.phrases_[f] for f in picked) if picked else "")
        return np.array(texts, dtype=object)[inverse]


def _phrase(kind_value: list[str]) -> str:
    if len(kind_value) == 1:
        return kind_value[0]
    kind, value = kind_value
    template = _TASTE_PHRASES.get(kind)
    if template is None:
        return f"{kind.replace('_', ' ')} {value}"
    return template.format(value.lower() if kind in ("note", "roast") else value)


def best_anchors(
    candidates: sp.csr_matrix, items: np.ndarray, unit_vectors: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each recommended item, the candidate (row's history item, never itself) with the highest cosine similarity.

    Returns item positions (-1 when there is none) and the similarities.
    """
    n_rows, k = items.shape
    pair_row = np.repeat(np.arange(n_rows), k)
    pair_item = items.ravel()
    counts = np.diff(candidates.indptr)[pair_row] * (pair_item >= 0)
    triple_pair = np.repeat(np.arange(len(pair_item)), counts)
    starts = np.repeat(candidates.indptr[pair_row] - np.cumsum(counts) + counts, counts)
    triple_candidate = candidates.indices[starts + np.arange(len(triple_pair))]
    target = pair_item[triple_pair]
    keep = triple_candidate != target
    triple_pair, triple_candidate, target = triple_pair[keep], triple_candidate[keep], target[keep]
    sims = np.einsum("ij,ij->i", unit_vectors[target], unit_vectors[triple_candidate])
    anchor = np.full(len(pair_item), -1, dtype=np.int64)
    similarity = np.full(len(pair_item), -np.inf, dtype=np.float32)
    if len(sims):
        # triples are grouped by pair, candidates ascending: the first maximum per pair is the anchor
        group_starts = np.flatnonzero(np.r_[True, triple_pair[1:] != triple_pair[:-1]])
        best = np.maximum.reduceat(sims, group_starts)
        pairs = triple_pair[group_starts]
        hits = np.flatnonzero(sims == np.repeat(best, np.diff(np.r_[group_starts, len(sims)])))
        firsts = hits[np.r_[True, triple_pair[hits][1:] != triple_pair[hits][:-1]]]
        anchor[pairs] = triple_candidate[firsts]
        similarity[pairs] = best
    return anchor.reshape(n_rows, k), similarity.reshape(n_rows, k)


def _stack_rows(first: sp.csr_matrix, second: sp.csr_matrix, use_first: np.ndarray) -> sp.csr_matrix:
    """Row i from ``first`` where ``use_first[i]`` else from ``second``."""
    pick = sp.diags(use_first.astype(np.float32))
    other = sp.diags((~use_first).astype(np.float32))
    merged = (pick @ first + other @ second).tocsr()
    merged.eliminate_zeros()
    merged.sort_indices()
    return merged


def _contains(matrix: sp.csr_matrix, items: np.ndarray) -> np.ndarray:
    """Whether ``matrix[row, item]`` is set, for each row's items (-1 = False)."""
    rows = np.repeat(np.arange(items.shape[0]), items.shape[1])
    flat = items.ravel()
    values = np.asarray(matrix[rows, np.maximum(flat, 0)]).ravel() if len(flat) else np.zeros(0)
    return ((values > 0) & (flat >= 0)).reshape(items.shape)


# ---- ranking --------------------------------------------------------------------------------------------------
def padded_width(n_items: int) -> int:
    """Score matrices are this wide: ``n_items`` rounded up to whole blocks for the blockwise top-k."""
    block = _block_size(n_items)
    return -(-n_items // block) * block


def _block_size(n_items: int) -> int:
    """Items per block of the blockwise top-k (1 = plain sort, fine for small catalogues): about 40+ blocks."""
    return 1 if n_items <= 400 else min(100, n_items // 40)


def top_k(
    score_chunk: Any, rows: np.ndarray, blocked: sp.csr_matrix, k: int, chunk_size: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` item positions and scores per row, skipping ``blocked`` cells; -1 / -inf where there are fewer.

    Users are scored in chunks, one matrix product each; the top k of a chunk comes from :func:`_chunk_top_k`.
    """
    n_items = blocked.shape[1]
    items = np.full((len(rows), k), -1, dtype=np.int64)
    scores = np.full((len(rows), k), -np.inf, dtype=np.float32)
    for start in range(0, len(rows), chunk_size):
        stop = min(start + chunk_size, len(rows))
        chunk = score_chunk(rows[start:stop])
        part = blocked[start:stop]
        chunk[np.repeat(np.arange(stop - start), np.diff(part.indptr)), part.indices] = -np.inf
        top, values = _chunk_top_k(chunk, k, _block_size(n_items))
        valid = values > _VALID_ABOVE
        items[start:stop] = np.where(valid, top, -1)
        scores[start:stop] = np.where(valid, values, -np.inf)
    return items, scores


def _chunk_top_k(scores: np.ndarray, k: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Top k per row, best first, ties to the lower column.

    With blocks: the k best values lie in the k blocks with the largest maxima, and the k-th largest block maximum
    is a lower bound for the k-th best value, so only those blocks are compared to that bound and sorted. This
    avoids a partition over whole rows, which dominates naive scoring.
    """
    n_rows, width = scores.shape
    if block == 1 or width // block < 2 * k:
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return order, np.take_along_axis(scores, order, axis=1)
    blocks = scores.reshape(n_rows, width // block, block)
    maxima = blocks.max(axis=2)
    best_blocks = np.argpartition(maxima, -k, axis=1)[:, -k:]
    bound = np.take_along_axis(maxima, best_blocks, axis=1).min(axis=1)
    gathered = blocks[np.arange(n_rows)[:, None], best_blocks]
    row, which, offset = np.nonzero(gathered >= bound[:, None, None])
    values = gathered[row, which, offset]
    column = best_blocks[row, which] * block + offset
    order = np.lexsort((column, -values, row))
    row, column, values = row[order], column[order], values[order]
    keep = _rank_within_groups(row, n_rows) < k
    return column[keep].reshape(n_rows, k), values[keep].reshape(n_rows, k)


def _rank_within_groups(groups: np.ndarray, n_groups: int) -> np.ndarray:
    """0, 1, 2… within each run of equal values of the sorted ``groups``."""
    counts = np.bincount(groups, minlength=n_groups)
    return np.arange(len(groups)) - np.repeat(np.cumsum(counts) - counts, counts)


def _padded(vector: np.ndarray, fill: np.float32) -> np.ndarray:
    out = np.full(padded_width(len(vector)), fill, dtype=np.float32)
    out[: len(vector)] = vector
    return out


# ---- input checks and output -------------------------------------------------------------------------------------
def _require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; it has {list(frame.columns)}")


def _prepared_interactions(interactions: pd.DataFrame) -> pd.DataFrame:
    _require_columns(interactions, (Columns.USER, Columns.ITEM), "interactions")
    if interactions.empty:
        raise ValueError("interactions is empty: a recommender needs at least one (user_id, item_id) row to fit")
    frame = interactions.copy()
    if Columns.WEIGHT not in frame:
        frame[Columns.WEIGHT] = 1.0
    if Columns.PURCHASED not in frame:
        frame[Columns.PURCHASED] = False
    frame[Columns.PURCHASED] = frame[Columns.PURCHASED].fillna(False).astype(bool)
    if Columns.TIMESTAMP in frame:
        frame[Columns.TIMESTAMP] = pd.to_datetime(frame[Columns.TIMESTAMP], utc=True)
    if (frame[Columns.WEIGHT] < 0).any():
        raise ValueError("interactions has negative weights; weights say how strong a positive signal is")
    return frame


def _utc_timestamp(moment: datetime) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _check_features(features: pd.DataFrame | None, id_column: str, what: str) -> None:
    if features is not None:
        _require_columns(features, (id_column, Columns.FEATURE), what)


def _result_frame(
    users: np.ndarray, item_map: IdMap, items: np.ndarray, scores: np.ndarray, explanations: np.ndarray
) -> pd.DataFrame:
    k = items.shape[1] if items.ndim == 2 else 0
    valid = (items >= 0).ravel()
    flat_items = items.ravel()[valid]
    frame = pd.DataFrame(
        {
            Columns.USER: np.repeat(np.asarray(users, dtype=object), k)[valid],
            Columns.ITEM: item_map.external.to_numpy()[flat_items] if len(flat_items) else [],
            Columns.RANK: np.tile(np.arange(1, k + 1), len(users))[valid],
            Columns.SCORE: scores.ravel()[valid].astype(float),
            Columns.EXPLANATION: explanations.ravel()[valid],
        }
    )
    frame[Columns.USER] = frame[Columns.USER].infer_objects()
    return frame[list(RESULT_COLUMNS)]


# ---- the train stage ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainReport:
    """What one training run did, for the flow's artifact and the day summary."""

    customers: int
    warm_customers: int
    cold_customers: int
    items: int
    interactions: int
    recommendations: int
    fit_seconds: float
    score_seconds: float
    load_seconds: float = 0.0
    write_seconds: float = 0.0

    def __str__(self) -> str:
        return (
            f"customers scored: {self.customers} ({self.warm_customers} warm → hybrid, "
            f"{self.cold_customers} cold → popularity)\n"
            f"items: {self.items}, interactions: {self.interactions}, recommendations: {self.recommendations}\n"
            f"load: {self.load_seconds:.2f} s, fit: {self.fit_seconds:.2f} s, scoring: {self.score_seconds:.2f} s, "
            f"write: {self.write_seconds:.2f} s"
        )


def train_and_recommend(
    engine: Engine,
    *,
    k: int = 10,
    now: datetime | None = None,
    seed: int = 0,
    epochs: int = 15,
    components: int = 32,
    num_threads: int = 2,
) -> TrainReport:
    """Fit on the database, recommend ``k`` active products to every customer and replace ``recommendations``.

    Customers with interactions get :class:`HybridLightFM` picks (bought gear excluded; consumables may return);
    the others get :class:`Popularity`. Deterministic for a ``seed`` when ``num_threads=1``.
    """
    now = now or utcnow()
    started = time.perf_counter()
    catalog = load_catalog(engine)
    interactions = load_interactions(engine, now)
    customers = load_customer_ids(engine)
    names = dict(zip(catalog[Columns.ITEM], catalog["title"], strict=True))
    loaded = time.perf_counter()
    models = _fit_models(interactions, item_features(catalog), now, seed, epochs, components, num_threads)
    fitted = time.perf_counter()
    picks = _recommend_all(models, customers, interactions, catalog, names, k)
    scored = time.perf_counter()
    write_recommendations(engine, picks, now)
    warm = int(models[0].is_warm(customers).sum()) if models else 0
    return TrainReport(
        customers=len(customers),
        warm_customers=warm,
        cold_customers=len(customers) - warm,
        items=len(catalog),
        interactions=len(interactions),
        recommendations=len(picks),
        fit_seconds=round(fitted - loaded, 3),
        score_seconds=round(scored - fitted, 3),
        load_seconds=round(loaded - started, 3),
        write_seconds=round(time.perf_counter() - scored, 3),
    )


def _fit_models(
    interactions: pd.DataFrame,
    features: pd.DataFrame,
    now: datetime,
    seed: int,
    epochs: int,
    components: int,
    num_threads: int,
) -> tuple[HybridLightFM, Popularity] | None:
    if interactions.empty:
        return None
    hybrid = HybridLightFM(components=components, epochs=epochs, seed=seed, num_threads=num_threads)
    return hybrid.fit(interactions, features), Popularity(now=now).fit(interactions, features)


def _recommend_all(
    models: tuple[HybridLightFM, Popularity] | None,
    customers: np.ndarray,
    interactions: pd.DataFrame,
    catalog: pd.DataFrame,
    names: dict[Any, str],
    k: int,
) -> pd.DataFrame:
    """Hybrid picks for warm customers, popularity for cold ones, with a ``model`` column saying which."""
    if models is None or len(customers) == 0:
        return pd.DataFrame(columns=[*RESULT_COLUMNS, Columns.MODEL])
    hybrid, popularity = models
    warm = hybrid.is_warm(customers)
    owned = owned_gear(interactions, catalog)
    warm_picks = hybrid.recommend(customers[warm], k, exclude_seen=False, exclude=owned, item_names=names)
    cold_picks = popularity.recommend(customers[~warm], k, exclude_seen=False, item_names=names)
    warm_picks[Columns.MODEL] = hybrid.name
    cold_picks[Columns.MODEL] = popularity.name
    return pd.concat([warm_picks, cold_picks], ignore_index=True)


def write_recommendations(engine: Engine, picks: pd.DataFrame, trained_at: datetime) -> None:
    """Replace every stored recommendation with ``picks`` in one transaction (readers see old or new, never half)."""
    table = table_of(Recommendation)
    rows = [
        {
            "customer_id": int(user),
            "product_id": int(item),
            "rank": int(rank),
            "score": float(score),
            "model": str(model),
            "explanation": str(text),
            "trained_at": trained_at,
        }
        for user, item, rank, score, model, text in zip(
            picks[Columns.USER],
            picks[Columns.ITEM],
            picks[Columns.RANK],
            picks[Columns.SCORE],
            picks[Columns.MODEL],
            picks[Columns.EXPLANATION],
            strict=True,
        )
    ]
    with engine.begin() as conn:
        conn.execute(delete(table))
        if rows:
            conn.execute(insert(table), rows)
