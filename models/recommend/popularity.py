"""Recency-weighted popularity: the cold-start model and the baseline every other model must beat."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from models.interactions import Columns
from models.recommend.base import RecommenderModel, utc_timestamp
from models.recommend.ranking import PAD_SCORE, padded


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
            reference = utc_timestamp(self.now) if self.now is not None else stamps.max()
            if self.half_life_days:
                age = (reference - stamps).dt.total_seconds().clip(lower=0).to_numpy() / 86_400
                weight = weight * np.exp2(-age / self.half_life_days)
        cols = self.items_.rows(interactions[Columns.ITEM])
        popularity = np.bincount(cols, weights=weight, minlength=len(self.items_))
        scores = np.where(popularity > 0, popularity, PAD_SCORE).astype(np.float32)
        self._scores = padded(scores, PAD_SCORE)
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
