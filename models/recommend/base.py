"""The one model contract (after RecTools): :meth:`RecommenderModel.fit` takes long DataFrames and owns id mapping;
:meth:`RecommenderModel.recommend` owns filtering, ranking and explanations and returns
``user_id, item_id, rank, score, explanation``. A model implements ``_fit``, ``_score_chunk`` (scores for a block
of users, one matrix product) and ``_explain``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar, Literal, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.interactions import Columns, IdMap, pair_matrix
from models.recommend.ranking import top_k

RESULT_COLUMNS = (Columns.USER, Columns.ITEM, Columns.RANK, Columns.SCORE, Columns.EXPLANATION)


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
        check_features(user_features, Columns.USER, "user_features")
        frame = self.prepare_ids(interactions, item_features)
        self._fit(frame, item_features, user_features)
        self._fitted = True
        return self

    def prepare_ids(self, interactions: pd.DataFrame, item_features: pd.DataFrame | None = None) -> pd.DataFrame:
        """The id maps and the seen / purchased matrices of :meth:`fit`, without fitting; the checked frame."""
        frame = prepared_interactions(interactions)
        check_features(item_features, Columns.ITEM, "item_features")
        feature_items = item_features[Columns.ITEM] if item_features is not None else pd.Series([], dtype=object)
        self.users_ = IdMap(frame[Columns.USER])
        self.items_ = IdMap(pd.concat([frame[Columns.ITEM], feature_items], ignore_index=True))
        self.seen_ = pair_matrix(self.users_, self.items_, frame)
        bought = frame[frame[Columns.PURCHASED]]
        self.purchased_ = pair_matrix(self.users_, self.items_, bought)
        return frame

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
        return result_frame(users, self.items_, items, scores, explanations)

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
            require_columns(exclude, (Columns.USER, Columns.ITEM), "exclude")
            blocked = blocked + pair_matrix(IdMap(users, sort=False), self.items_, exclude)
        return blocked.tocsr()

    def _item_name_array(self, item_names: Mapping[Any, str] | None) -> np.ndarray:
        names = item_names or {}
        return np.array([names.get(item, str(item)) for item in self.items_.external], dtype=object)


# ---- input checks and output -------------------------------------------------------------------------------------
def require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; it has {list(frame.columns)}")


def prepared_interactions(interactions: pd.DataFrame) -> pd.DataFrame:
    require_columns(interactions, (Columns.USER, Columns.ITEM), "interactions")
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


def utc_timestamp(moment: datetime) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def check_features(features: pd.DataFrame | None, id_column: str, what: str) -> None:
    if features is not None:
        require_columns(features, (id_column, Columns.FEATURE), what)


def result_frame(
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
