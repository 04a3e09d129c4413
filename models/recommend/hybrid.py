"""The hybrid collaborative + content model: LightFM (WARP) over item identities and features."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from lightfm import LightFM

from models.interactions import Columns, IdMap, feature_matrix, pair_matrix
from models.recommend.base import RecommenderModel
from models.recommend.explain import TasteFeatures, best_anchors, contains, stack_rows
from models.recommend.ranking import PAD_SCORE, padded_width
from models.recommend.rebuy import RebuyLogit, item_statistics, labels_after, pair_features, reference_time
from models.recommend.validation import Judge, Split, holdout_split, ndcg_at_k

POPULARITY_WEIGHTS = (0.0, 0.1, 0.25, 0.5, 1.0)
"""Popularity blends validation chooses from (0: none), in units of each user's score spread."""
WEIGHTINGS = ("given", "log", "binary")
"""How interaction weights enter LightFM, chosen on validation (see ``HybridLightFM._training_matrices``)."""
IDENTITY_WEIGHTS: tuple[float | None, ...] = (None, 0.8, 1.0)
"""Feature weightings validation chooses from: LightFM's equal split, identity-heavy, and features ignored."""
MAX_EPOCHS = 60
MIN_EPOCHS = 5
FIT_BUDGET_SECONDS = 60.0
"""A fit (validation included) aims to end within this: the final fit stops before an epoch that would overrun it
(store-L, 1M interactions on 2 cores: see docs/BENCHMARKS.md)."""


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
        loss: str = "warp",
        seed: int = 0,
        num_threads: int = 2,
        anchor_threshold: float = 0.5,
        validate: bool = True,
        identity_weights: tuple[float | None, ...] = IDENTITY_WEIGHTS,
        weightings: tuple[str, ...] = WEIGHTINGS,
        max_epochs: int = MAX_EPOCHS,
        blend_rebuys: bool = True,
        fit_budget_seconds: float | None = FIT_BUDGET_SECONDS,
    ):
        super().__init__()
        self.components = components
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.item_alpha = item_alpha
        self.user_alpha = user_alpha
        self.max_sampled = max_sampled
        self.loss = loss
        self.seed = seed
        self.num_threads = num_threads
        self.anchor_threshold = anchor_threshold
        self.validate = validate
        self.identity_weights = identity_weights
        self.weightings = weightings
        self.max_epochs = max_epochs
        self.blend_rebuys = blend_rebuys
        self.fit_budget_seconds = fit_budget_seconds

    def settings(self) -> dict[str, Any]:
        """The hyperparameters, and what validation chose (``choices_``) once fitted."""
        return {**self.hyperparameters(), **getattr(self, "choices_", {})}

    def hyperparameters(self) -> dict[str, Any]:
        """The constructor's LightFM settings (what ``--tune`` chooses)."""
        return {
            "loss": self.loss, "components": self.components, "epochs": self.epochs,
            "learning_rate": self.learning_rate, "item_alpha": self.item_alpha, "user_alpha": self.user_alpha,
            "max_sampled": self.max_sampled,
        }  # fmt: skip

    def _new_lightfm(self) -> LightFM:
        return LightFM(
            no_components=self.components,
            loss=self.loss,
            learning_rate=self.learning_rate,
            item_alpha=self.item_alpha,
            user_alpha=self.user_alpha,
            max_sampled=self.max_sampled,
            random_state=np.random.RandomState(self.seed),
        )

    def _fit(
        self, interactions: pd.DataFrame, item_features: pd.DataFrame | None, user_features: pd.DataFrame | None
    ) -> None:
        started = time.perf_counter()
        frame = interactions.reset_index(drop=True)
        self.choices_: dict[str, Any] = {"validated": False}
        # without a split to judge on: the settings as given, LightFM's equal feature split, no blends
        chosen = Chosen(self.weightings[0], None, None, self.epochs, 0.0, None, None)
        split = holdout_split(frame, seed=self.seed) if self.validate else None
        judge = Judge.of(split, self.users_, self.items_, self.seed) if split is not None else None
        if split is not None and judge is not None:
            chosen = self._validate(split, judge, item_features, user_features)
        item_matrix, _ = feature_matrix(self.items_, item_features, Columns.ITEM, chosen.item_weight)
        user_matrix, _ = feature_matrix(self.users_, user_features, Columns.USER, chosen.user_weight)
        matrix, weights = self._training_matrices(frame, chosen.weighting)
        self.lightfm_ = self._new_lightfm()
        self._fit_within_budget(matrix, weights, user_matrix, item_matrix, chosen.epochs, started)
        self.item_matrix_, self.user_matrix_ = item_matrix, user_matrix
        blend = Blend(chosen.popularity_weight, _popularity_z(frame, self.items_))
        self._prepare_scoring(item_matrix, user_matrix, blend)
        explained, item_columns = feature_matrix(self.items_, item_features, Columns.ITEM)
        self._taste = TasteFeatures.from_columns(explained, item_columns, len(self.items_))
        self._owned_scores: sp.csr_matrix | None = None
        if chosen.calibration is not None and chosen.rebuy is not None:
            self._owned_scores = self._rebuy_scores(frame, chosen.calibration, chosen.rebuy)

    # ---- validation: what the data chooses ------------------------------------------------------------------
    def _validate(
        self, split: Split, judge: Judge, item_features: pd.DataFrame | None, user_features: pd.DataFrame | None
    ) -> Chosen:
        """Weighting, feature weights, epochs, popularity blend, the new-item calibration and the re-buy model, all
        chosen on ``split``.

        The first three by a coordinate search (each dimension in turn, the others held at their best so far, a
        fit of ``epochs`` each: 3 to 7 fits, not the full grid), then epochs by early stopping on the winner."""
        dimensions: list[tuple[str, tuple[Any, ...]]] = [
            ("weighting", self.weightings),
            ("items", self.identity_weights if item_features is not None else (1.0,)),
            ("users", self.identity_weights if user_features is not None else (1.0,)),
        ]
        current = {name: options[0] for name, options in dimensions}
        if user_features is not None:
            current["users"] = 1.0  # user features are tried once items are settled
        trials: dict[tuple[Any, ...], float] = {}
        best: tuple[float, dict[str, Any], LightFM, sp.csr_matrix, sp.csr_matrix] | None = None
        for name, options in dimensions:
            for option in options:
                config = {**(best[1] if best else current), name: option}
                key = (config["weighting"], config["items"], config["users"])
                if key in trials:
                    continue
                matrix, weights = self._training_matrices(split.early, config["weighting"])
                model, items_m, users_m = self._early_model(matrix, weights, item_features, user_features,
                                                            config["items"], config["users"])  # fmt: skip
                score = ndcg_at_k(_scores(model, users_m, items_m, judge.rows), judge.relevant, judge.seen[judge.rows])
                trials[key] = score
                if best is None or score > best[0]:
                    best = (score, config, model, items_m, users_m)
        assert best is not None
        score, config, model, items_m, users_m = best
        matrix, weights = self._training_matrices(split.early, config["weighting"])
        item_weight, user_weight = config["items"], config["users"]
        epochs, score = self._more_epochs(model, matrix, weights, items_m, users_m, judge, score)
        blend, score, blend_trials = self._popularity_blend(model, items_m, users_m, judge, split.early, score)
        calibration = _calibrate_new_items(model, users_m, items_m, judge, self.seed, blend)
        rebuy_logit = None
        if self.blend_rebuys and calibration is not None:
            stats = item_statistics(split.early, self.items_)
            taste = _pair_taste(model, users_m, items_m, split.early, self.users_, self.items_, blend)
            past = pair_features(split.early, self.users_, self.items_, reference_time(split.early), taste, stats)
            rebuy_logit = RebuyLogit.fit(past.values, labels_after(split, self.users_, self.items_, past), self.seed)
        self.choices_ = {
            "validated": True,
            "validation": "time" if split.by_time else "random",
            "item_identity_weight": item_weight,
            "user_identity_weight": user_weight,
            "epochs": epochs,
            "validation_ndcg_at_10": round(score, 4),
            "weighting": config["weighting"],
            "feature_trials": {f"weighting={w},items={i},users={u}": round(v, 4) for (w, i, u), v in trials.items()},
            "popularity_weight": blend.weight,
            "popularity_trials": blend_trials,
            "rebuy_blend": rebuy_logit is not None,
            "rebuy_coefficients": rebuy_logit.coefficients() if rebuy_logit is not None else None,
        }
        return Chosen(config["weighting"], item_weight, user_weight, epochs, blend.weight, calibration, rebuy_logit)

    def _popularity_blend(
        self,
        model: LightFM,
        items_m: sp.csr_matrix,
        users_m: sp.csr_matrix,
        judge: Judge,
        early: pd.DataFrame,
        score: float,
    ) -> tuple[Blend, float, dict[str, float]]:
        """How much popularity to add to the collaborative score (:class:`Blend`), chosen on the validation users:
        where LightFM's item biases under-rate what sells, a little popularity lifts every ranking."""
        item_z = _popularity_z(early, self.items_)
        users, items = _representations(model, users_m, items_m)
        base = users[judge.rows] @ items.T
        _, spread = _row_moments(users[judge.rows], items)
        best, trials = Blend(0.0, item_z), {"0.0": round(score, 4)}
        for weight in POPULARITY_WEIGHTS[1:]:
            now = ndcg_at_k(base + weight * spread[:, None] * item_z[None, :], judge.relevant, judge.seen[judge.rows])
            trials[str(weight)] = round(now, 4)
            if now > score * 1.002:
                best, score = Blend(weight, item_z), now
        return best, score, trials

    def _fit_within_budget(
        self,
        matrix: sp.coo_matrix,
        weights: sp.coo_matrix,
        user_matrix: sp.csr_matrix,
        item_matrix: sp.csr_matrix,
        epochs: int,
        started: float,
    ) -> None:
        """The final fit, one epoch at a time (what ``LightFM.fit`` does inside): it stops before an epoch that
        would end past 95% of ``fit_budget_seconds`` since ``started`` (judged by the slowest epoch so far; the rest
        is for the re-buy scores and explanations), never below ``MIN_EPOCHS``; a cut is recorded in ``choices_``."""
        done, slowest = 0, 0.0
        while done < epochs:
            elapsed = time.perf_counter() - started
            budget = self.fit_budget_seconds
            if budget is not None and done >= MIN_EPOCHS and elapsed + slowest > 0.95 * budget:  # 5% to finish
                self.choices_.update(epochs=done, epochs_validated=epochs, epochs_capped_by_budget=budget)
                return
            begun = time.perf_counter()
            fit = self.lightfm_.fit if done == 0 else self.lightfm_.fit_partial
            fit(matrix, user_features=user_matrix, item_features=item_matrix, sample_weight=weights,
                epochs=1, num_threads=self.num_threads)  # fmt: skip
            slowest = max(slowest, time.perf_counter() - begun)
            done += 1

    def _early_model(
        self,
        matrix: sp.coo_matrix,
        weights: sp.coo_matrix,
        item_features: pd.DataFrame | None,
        user_features: pd.DataFrame | None,
        item_weight: float | None,
        user_weight: float | None,
    ) -> tuple[LightFM, sp.csr_matrix, sp.csr_matrix]:
        items_m, _ = feature_matrix(self.items_, item_features, Columns.ITEM, item_weight)
        users_m, _ = feature_matrix(self.users_, user_features, Columns.USER, user_weight)
        model = self._new_lightfm()
        model.fit(matrix, user_features=users_m, item_features=items_m, sample_weight=weights,
                  epochs=self.epochs, num_threads=self.num_threads)  # fmt: skip
        return model, items_m, users_m

    def _more_epochs(
        self,
        model: LightFM,
        matrix: sp.coo_matrix,
        weights: sp.coo_matrix,
        items_m: sp.csr_matrix,
        users_m: sp.csr_matrix,
        judge: Judge,
        score: float,
    ) -> tuple[int, float]:
        """Train on in steps while the validation NDCG improves (two steps without gain stop it); the best count."""
        best_epochs, epochs, misses = self.epochs, self.epochs, 0
        step = max(self.epochs // 3, 1)
        while epochs + step <= self.max_epochs and misses < 2:
            model.fit_partial(matrix, user_features=users_m, item_features=items_m, sample_weight=weights,
                              epochs=step, num_threads=self.num_threads)  # fmt: skip
            epochs += step
            now = ndcg_at_k(_scores(model, users_m, items_m, judge.rows), judge.relevant, judge.seen[judge.rows])
            if now > score * 1.002:
                score, best_epochs, misses = now, epochs, 0
            else:
                misses += 1
        return best_epochs, score

    def _training_matrices(
        self, interactions: pd.DataFrame, weighting: str = "given"
    ) -> tuple[sp.coo_matrix, sp.coo_matrix]:
        """Binary interactions and their sample weights, scaled to mean 1 so the learning rate keeps its meaning.

        ``weighting``: ``given`` (the summed weights: kind, recency and repeats), ``log`` (log(1 + summed): repeats
        count, but a staple bought 30 times does not drown the rest) or ``binary`` (every pair alike)."""
        values = pair_matrix(self.users_, self.items_, interactions, interactions[Columns.WEIGHT]).tocoo()
        data = values.data.astype(np.float64)
        if weighting == "log":
            data = np.log1p(np.maximum(data, 0) / max(float(np.median(data)) if len(data) else 1.0, 1e-12))
        elif weighting == "binary":
            data = np.ones_like(data)
        elif weighting != "given":
            raise ValueError(f"weighting={weighting!r}: one of {WEIGHTINGS}")
        scale = float(data.mean()) if len(data) and data.mean() > 0 else 1.0
        ones = sp.coo_matrix((np.ones(values.nnz, dtype=np.float32), (values.row, values.col)), shape=values.shape)
        scaled = sp.coo_matrix(((data / scale).astype(np.float32), (values.row, values.col)), shape=values.shape)
        return ones, scaled

    def _prepare_scoring(self, item_matrix: sp.csr_matrix, user_matrix: sp.csr_matrix, blend: Blend) -> None:
        """Fold biases (and the popularity blend) into the factors so that one product gives the score."""
        self._user_factors, items = _representations(self.lightfm_, user_matrix, item_matrix, blend)
        pad = padded_width(len(items)) - len(items)
        pad_rows = np.zeros((pad, items.shape[1]), dtype=np.float32)
        pad_rows[:, self.components + 1] = PAD_SCORE  # the item-bias column (the user side holds a 1 there)
        self._item_factors_t = np.ascontiguousarray(np.vstack([items, pad_rows]).T)
        self._item_factors_real = items
        item_vectors = items[:, : self.components]
        norms = np.linalg.norm(item_vectors, axis=1, keepdims=True)
        self.item_unit_vectors_ = (item_vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)

    def _rebuy_scores(self, frame: pd.DataFrame, calibration: tuple[float, float], logit: RebuyLogit) -> sp.csr_matrix:
        """Each owned pair's re-buy probability, expressed as the hybrid score a new item with that probability of
        being bought would have for that user: owned and new items then rank on one scale."""
        mean, std = _row_moments(self._user_factors, self._item_factors_real)
        reference = reference_time(frame)
        pairs = pair_features(frame, self.users_, self.items_, reference)
        raw = np.einsum("ij,ij->i", self._user_factors[pairs.rows], self._item_factors_real[pairs.cols])
        pairs.values[:, -1] = (raw - mean[pairs.rows]) / std[pairs.rows]
        intercept, slope = calibration
        z_equivalent = (logit.log_odds(pairs.values) - intercept) / slope
        values = (mean[pairs.rows] + std[pairs.rows] * z_equivalent).astype(np.float32)
        values[values == 0] = np.float32(1e-30)  # a stored zero would vanish from the sparse matrix
        return sp.csr_matrix((values, (pairs.rows, pairs.cols)), shape=(len(self.users_), len(self.items_)))

    def _score_chunk(self, rows: np.ndarray) -> np.ndarray:
        scores = self._user_factors[rows] @ self._item_factors_t
        if self._owned_scores is not None:  # own items at their re-buy probability, on the same scale
            owned = self._owned_scores[rows].tocoo()
            scores[owned.row, owned.col] = owned.data
        return scores

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


# ---- helpers for validation and the blend ------------------------------------------------------------------------
def _representations(
    model: LightFM, users_m: sp.csr_matrix, items_m: sp.csr_matrix, popularity: Blend | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """User and item factors with the biases (and the popularity blend) folded in: ``users @ items.T`` is the
    hybrid's score."""
    item_bias, item_vectors = model.get_item_representations(items_m)
    user_bias, user_vectors = model.get_user_representations(users_m)
    items = np.hstack([item_vectors, np.ones((len(item_bias), 1)), item_bias[:, None]]).astype(np.float32)
    users = np.hstack([user_vectors, user_bias[:, None], np.ones((len(user_bias), 1))]).astype(np.float32)
    return _with_popularity(users, items, popularity)


@dataclass(frozen=True)
class Chosen:
    """What validation chose (:meth:`HybridLightFM._validate`)."""

    weighting: str
    item_weight: float | None
    user_weight: float | None
    epochs: int
    popularity_weight: float
    calibration: tuple[float, float] | None
    rebuy: RebuyLogit | None


@dataclass(frozen=True)
class Blend:
    """Popularity added to the collaborative score: ``weight`` × each user's score spread × the item's standardized
    log popularity (``item_z``). Weight 0 is no blend."""

    weight: float
    item_z: np.ndarray


def _with_popularity(users: np.ndarray, items: np.ndarray, blend: Blend | None) -> tuple[np.ndarray, np.ndarray]:
    """One more factor column each: the user's ``weight × spread`` and the item's popularity z-score."""
    if blend is None or blend.weight == 0:
        return users, items
    _, spread = _row_moments(users, items)
    users = np.hstack([users, (blend.weight * spread)[:, None]]).astype(np.float32)
    items = np.hstack([items, blend.item_z[: len(items), None]]).astype(np.float32)
    return users, items


def _popularity_z(frame: pd.DataFrame, items: IdMap) -> np.ndarray:
    """Each item's log(1 + summed weight), standardized over the catalogue."""
    weight = np.bincount(items.rows(frame[Columns.ITEM]), weights=frame[Columns.WEIGHT], minlength=len(items))
    logged = np.log1p(np.maximum(weight, 0))
    spread = logged.std()
    return np.asarray((logged - logged.mean()) / (spread if spread > 0 else 1.0), dtype=np.float32)


def _scores(
    model: LightFM, users_m: sp.csr_matrix, items_m: sp.csr_matrix, rows: np.ndarray, popularity: Blend | None = None
) -> np.ndarray:
    users, items = _representations(model, users_m, items_m, popularity)
    return users[rows] @ items.T


def _row_moments(users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each user's mean and standard deviation of scores over all items, without scoring them: the mean is
    ``u · mean(items)`` and the variance ``u Σ u`` with Σ the items' covariance."""
    mean = users.astype(np.float64) @ items.mean(axis=0).astype(np.float64)
    covariance = np.cov(items.astype(np.float64), rowvar=False, bias=True)
    variance = np.einsum("ij,jk,ik->i", users.astype(np.float64), covariance, users.astype(np.float64))
    return mean, np.sqrt(np.maximum(variance, 1e-12))


def _calibrate_new_items(
    model: LightFM, users_m: sp.csr_matrix, items_m: sp.csr_matrix, judge: Judge, seed: int, popularity: Blend | None
) -> tuple[float, float] | None:
    """Log-odds that a user buys a new item in the held-out period, as ``intercept + slope · z`` of the item's
    standardized score for that user; None when the scores do not rank new items (slope not positive)."""
    users, items = _representations(model, users_m, items_m, popularity)
    mean, std = _row_moments(users[judge.rows], items)
    z = (users[judge.rows] @ items.T - mean[:, None]) / std[:, None]
    open_cells = np.asarray(judge.seen[judge.rows].todense()) == 0
    labels = np.asarray(judge.bought.todense()) > 0
    positive = z[labels & open_cells]
    negatives = z[~labels & open_cells]
    if len(positive) == 0 or len(negatives) == 0:
        return None
    rate = min(1.0, 20 * len(positive) / len(negatives))
    negatives = np.random.default_rng(seed).choice(negatives, max(int(len(negatives) * rate), 1), replace=False)
    fitted = RebuyLogit.fit(
        np.concatenate([positive, negatives])[:, None], np.r_[np.ones(len(positive)), np.zeros(len(negatives))]
    )
    if fitted is None:
        return None
    slope = float(fitted.weights[0] / fitted.scale[0])
    intercept = float(fitted.intercept - fitted.weights[0] * fitted.mean[0] / fitted.scale[0]) + np.log(rate)
    return (intercept, slope) if slope > 0 else None


def _pair_taste(
    model: LightFM,
    users_m: sp.csr_matrix,
    items_m: sp.csr_matrix,
    frame: pd.DataFrame,
    users: IdMap,
    items: IdMap,
    popularity: Blend | None,
) -> np.ndarray:
    """The standardized score of each (user, item) pair of ``frame`` in (row, col) order, as pair_features sorts."""
    user_f, item_f = _representations(model, users_m, items_m, popularity)
    mean, std = _row_moments(user_f, item_f)
    pairs = pd.DataFrame({"row": users.rows(frame[Columns.USER]), "col": items.rows(frame[Columns.ITEM])})
    pairs = pairs[(pairs["row"] >= 0) & (pairs["col"] >= 0)].drop_duplicates().sort_values(["row", "col"])
    rows, cols = pairs["row"].to_numpy(), pairs["col"].to_numpy()
    raw = np.einsum("ij,ij->i", user_f[rows], item_f[cols])
    return np.asarray((raw - mean[rows]) / std[rows])
