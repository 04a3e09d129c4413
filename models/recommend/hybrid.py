"""The hybrid collaborative + content model: LightFM (WARP) over item identities and features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from lightfm import LightFM

from models.interactions import Columns, feature_matrix, pair_matrix
from models.recommend.base import RecommenderModel
from models.recommend.explain import TasteFeatures, best_anchors, contains, stack_rows
from models.recommend.ranking import PAD_SCORE, padded_width


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
        self._taste = TasteFeatures.from_columns(item_matrix, item_columns, len(self.items_))

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
        pad_rows[:, -1] = PAD_SCORE
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
        candidates = stack_rows(purchased, self.seen_[rows], has_purchases)
        anchor, similarity = best_anchors(candidates, items, self.item_unit_vectors_)
        taste = self._taste.explain(self.seen_[rows], items)
        bought_before = contains(purchased, items)
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
