"""Re-buys: how likely a customer is to buy again an item they already have, learned from the store's own rhythm.

Most of what grocery-like stores sell is bought again, and a collaborative model ranks a customer's own staples
poorly (it learns what is *like* their history, not when they run out). This module scores every (customer, item)
pair the customer already interacted with by a small logistic model over:

* how often they bought it (log count, and recency-weighted counts) and whether they bought it at all (a viewed or
  carted item is a pair too), the pair's summed weight as the store weighs signals (kind × recency) and its recent
  views and carts;
* how long ago the last time was, and that silence relative to the item's typical re-buy gap and to the customer's
  own gap for it ("due-ness", with a square so the odds can peak when it is due and fall long after);
* how repeatable the item is: the share of its buyers who bought it twice or more (smoothed) — a coffee is, a
  grinder is not; and how regular its gaps are;
* how much of a repeat buyer the customer is, and how well the item fits their taste (the hybrid's score).

The model is fitted on a validation split carved from the training data (:mod:`models.recommend.validation`): the
features at the cut predict the pairs bought again after it. Its output is a probability for the same period as
the hybrid's calibrated probability for new items, so the two can be ranked together (:mod:`models.recommend.hybrid`).
:class:`Rebuy` is the same scoring as a stand-alone model (own items by that probability, then popularity), the
"re-buy" baseline grocery stores know.

:func:`infer_consumables` applies the same item statistics to the catalogue: an item is a consumable when enough of
its buyers (among those who had time to) bought it again at a fairly regular rhythm, instead of a hand-kept
category list.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.optimize import minimize
from scipy.special import expit

from models.interactions import Columns, IdMap, pair_matrix
from models.recommend.base import RecommenderModel, utc_timestamp
from models.recommend.popularity import Popularity
from models.recommend.ranking import PAD_SCORE, padded
from models.recommend.validation import Split, holdout_split, purchase_rows

FEATURES = (
    "log_count",
    "log_recent_count_30d",
    "log_recent_count_180d",
    "log_weight",
    "log_recent_interest_30d",
    "bought",
    "log_days_since",
    "due",
    "own_due",
    "own_due_squared",
    "item_repeat_logit",
    "item_gap_regularity",
    "user_repeat_share",
    "log_user_items",
    "taste",
)
MIN_EXPOSED_BUYERS = 30
EXPOSURE_DAYS = 90
CONSUMABLE_REPEAT_RATE = 0.10
CONSUMABLE_MAX_GAP_CV = 1.5
_L2 = 1.0
_MAX_PAIRS = 400_000


def item_statistics(frame: pd.DataFrame, items: IdMap) -> pd.DataFrame:
    """Per item position: ``buyers``, ``repeat_rate`` (smoothed share of buyers who bought it on two or more
    occasions), ``exposed_buyers`` / ``exposed_repeaters`` (the same among buyers whose first purchase of it is at
    least ``EXPOSURE_DAYS`` old: they had time to come back), ``gap_days`` (median gap between one buyer's
    purchases, NaN if unknown) and ``gap_cv`` (how irregular those gaps are: their coefficient of variation)."""
    bought = purchase_rows(frame)
    col = items.rows(bought[Columns.ITEM])
    pairs = pd.DataFrame({"user": bought[Columns.USER].to_numpy(), "item": col})
    if Columns.TIMESTAMP in bought and bought[Columns.TIMESTAMP].notna().all():
        pairs["t"] = pd.to_datetime(bought[Columns.TIMESTAMP], utc=True).to_numpy()
    grouped = pairs.groupby(["user", "item"])
    per_pair = grouped.agg(n=("item", "size"))
    if "t" in pairs:
        first = grouped["t"].min()
        per_pair["span"] = (grouped["t"].max() - first).dt.total_seconds() / 86_400
        per_pair["exposed"] = (pairs["t"].max() - first).dt.total_seconds() / 86_400 >= EXPOSURE_DAYS
    else:
        per_pair["exposed"] = True
    per_pair = per_pair[per_pair.index.get_level_values("item") >= 0]
    per_item = per_pair.groupby(level="item")
    stats = pd.DataFrame(index=pd.RangeIndex(len(items)))
    stats["buyers"] = per_item.size().reindex(stats.index, fill_value=0)
    repeaters = (per_pair["n"] >= 2).groupby(level="item").sum().reindex(stats.index, fill_value=0)
    exposed = per_pair[per_pair["exposed"]]
    stats["exposed_buyers"] = exposed.groupby(level="item").size().reindex(stats.index, fill_value=0)
    stats["exposed_repeaters"] = (exposed["n"] >= 2).groupby(level="item").sum().reindex(stats.index, fill_value=0)
    prior = _population_repeat_rate(stats["buyers"].to_numpy(), repeaters.to_numpy())
    stats["repeat_rate"] = (repeaters + 10 * prior) / (stats["buyers"] + 10)
    stats["repeaters"] = repeaters
    if "span" in per_pair:
        gaps = per_pair.loc[per_pair["n"] >= 2, "span"] / (per_pair.loc[per_pair["n"] >= 2, "n"] - 1)
        by_item = gaps.groupby(level="item")
        stats["gap_days"] = by_item.median().reindex(stats.index)
        spread = by_item.std() / by_item.mean().where(by_item.mean() > 0)
        stats["gap_cv"] = spread.reindex(stats.index)
    else:
        stats["gap_days"] = np.nan
        stats["gap_cv"] = np.nan
    return stats


def _population_repeat_rate(buyers: np.ndarray, repeaters: np.ndarray) -> float:
    total = float(buyers.sum())
    return float(repeaters.sum()) / total if total else 0.0


def infer_consumables(frame: pd.DataFrame, items: IdMap, known: np.ndarray | None = None) -> np.ndarray:
    """Which items are consumables, from purchases. The verdict needs ``MIN_EXPOSED_BUYERS`` buyers who had time to
    come back (first purchase ``EXPOSURE_DAYS`` ago or more); then an item is a consumable when at least
    ``CONSUMABLE_REPEAT_RATE`` of them bought it again at a rhythm that is not wildly irregular. Items without
    enough evidence keep ``known`` (the catalogue's flag) when given, else count as consumable: hiding an item a
    customer may need again is the costlier mistake."""
    stats = item_statistics(frame, items)
    exposed = stats["exposed_buyers"].to_numpy()
    enough = exposed >= MIN_EXPOSED_BUYERS
    regular = ~(stats["gap_cv"].to_numpy() > CONSUMABLE_MAX_GAP_CV)  # NaN (unknown) counts as regular
    rate = stats["exposed_repeaters"].to_numpy() / np.maximum(exposed, 1)
    fallback = known.astype(bool) if known is not None else np.ones(len(items), dtype=bool)
    return np.where(enough, (rate >= CONSUMABLE_REPEAT_RATE) & regular, fallback)


@dataclass
class PairFeatures:
    """The feature matrix of every (user row, item position) pair with history, in ``seen``'s CSR order."""

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray  # pairs × len(FEATURES)


def pair_features(
    frame: pd.DataFrame,
    users: IdMap,
    items: IdMap,
    reference: pd.Timestamp | None,
    taste: np.ndarray | None = None,
    stats: pd.DataFrame | None = None,
) -> PairFeatures:
    """Features (``FEATURES``) of each pair in ``frame`` as of ``reference``; ``taste`` is the hybrid's standardized
    score of each pair in the same (row, col)-sorted order (zeros when absent)."""
    stats = item_statistics(frame, items) if stats is None else stats
    rows, cols = users.rows(frame[Columns.USER]), items.rows(frame[Columns.ITEM])
    flagged = Columns.PURCHASED in frame and bool(frame[Columns.PURCHASED].any())
    is_bought = frame[Columns.PURCHASED].to_numpy(dtype=bool) if flagged else np.ones(len(frame), dtype=bool)
    table = pd.DataFrame({"row": rows, "col": cols, "bought": is_bought.astype(float)})
    with_time = reference is not None and Columns.TIMESTAMP in frame
    if with_time:
        table["age"] = (reference - pd.to_datetime(frame[Columns.TIMESTAMP], utc=True)).dt.total_seconds() / 86_400
        age = table["age"].clip(lower=0).to_numpy()
    else:
        age = np.zeros(len(table))
    for half_life in (30, 180):  # purchases fading with age: recent habits count more than old ones
        table[f"recent_{half_life}"] = table["bought"].to_numpy() * np.exp2(-age / half_life)
    # every signal as the store weighs it (kind × recency), and the recent views and carts on their own
    table["weight"] = frame[Columns.WEIGHT].to_numpy(dtype=float) if Columns.WEIGHT in frame else 1.0
    table["interest_30"] = (1.0 - table["bought"].to_numpy()) * np.exp2(-age / 30)
    table = table[(table["row"] >= 0) & (table["col"] >= 0)]
    grouped = table.groupby(["row", "col"], sort=True)
    per_pair = grouped.agg(
        count=("bought", "sum"), bought=("bought", "max"), recent_30=("recent_30", "sum"),
        recent_180=("recent_180", "sum"), weight=("weight", "sum"), interest_30=("interest_30", "sum"),
    )  # fmt: skip
    per_pair["days_since"] = grouped["age"].min().clip(lower=0) if with_time else 0.0
    if with_time:  # the customer's own rhythm for this item: mean gap between their purchases of it
        bought_rows = table[table["bought"] > 0].groupby(["row", "col"], sort=True)["age"]
        span = (bought_rows.max() - bought_rows.min()).reindex(per_pair.index)
        per_pair["own_gap"] = span / (per_pair["count"] - 1).where(per_pair["count"] >= 2)
    else:
        per_pair["own_gap"] = np.nan
    pair_rows = per_pair.index.get_level_values("row").to_numpy()
    pair_cols = per_pair.index.get_level_values("col").to_numpy()
    repeat = stats["repeat_rate"].to_numpy()[pair_cols].clip(1e-4, 1 - 1e-4)
    gap = stats["gap_days"].to_numpy()[pair_cols]
    cv = stats["gap_cv"].to_numpy()[pair_cols]
    user_pairs = np.bincount(pair_rows, minlength=len(users)).astype(float)
    user_repeats = np.bincount(pair_rows, weights=(per_pair["count"].to_numpy() >= 2), minlength=len(users))
    days_since = per_pair["days_since"].to_numpy(dtype=float)
    due = np.where(np.isfinite(gap), np.log1p(days_since) - np.log1p(np.nan_to_num(gap)), 0.0)
    own_gap = per_pair["own_gap"].to_numpy(dtype=float)
    own_due = np.where(np.isfinite(own_gap), np.log1p(days_since) - np.log1p(np.nan_to_num(own_gap)), due)
    values = np.column_stack(
        [
            np.log1p(per_pair["count"].to_numpy(dtype=float)),
            np.log1p(per_pair["recent_30"].to_numpy(dtype=float)),
            np.log1p(per_pair["recent_180"].to_numpy(dtype=float)),
            np.log1p(per_pair["weight"].clip(lower=0).to_numpy(dtype=float)),
            np.log1p(per_pair["interest_30"].to_numpy(dtype=float)),
            per_pair["bought"].to_numpy(dtype=float),
            np.log1p(days_since),
            due,
            own_due,
            own_due**2,  # lets the odds peak when the item is due, and fall once the silence is long past it
            np.log(repeat / (1 - repeat)),
            np.where(np.isfinite(cv), -np.nan_to_num(cv), 0.0),
            (user_repeats / np.maximum(user_pairs, 1))[pair_rows],
            np.log1p(user_pairs)[pair_rows],
            np.zeros(len(pair_rows)) if taste is None else taste,
        ]
    )
    return PairFeatures(pair_rows, pair_cols, values)


@dataclass
class RebuyLogit:
    """Standardized logistic regression (L2) over :data:`FEATURES`: the log-odds that a pair is bought again."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    intercept: float

    @classmethod
    def fit(cls, values: np.ndarray, labels: np.ndarray, seed: int = 0) -> RebuyLogit | None:
        """None when there is no pair to learn from. When every pair is of one kind (nobody bought anything again,
        as in data where each item is met once) the model is that base rate, smoothed: features cannot rank then."""
        if len(labels) == 0:
            return None
        if labels.min() == labels.max():
            rate = (float(labels.sum()) + 0.5) / (len(labels) + 1)
            width = values.shape[1]
            return cls(np.zeros(width), np.ones(width), np.zeros(width), float(np.log(rate / (1 - rate))))
        if len(labels) > _MAX_PAIRS:
            pick = np.random.default_rng(seed).choice(len(labels), _MAX_PAIRS, replace=False)
            values, labels = values[pick], labels[pick]
        mean, scale = values.mean(axis=0), values.std(axis=0)
        scale = np.where(scale > 1e-9, scale, 1.0)
        x = (values - mean) / scale
        y = labels.astype(float)

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            z = x @ theta[1:] + theta[0]
            p = expit(z)
            nll = np.logaddexp(0, z).sum() - (y * z).sum() + 0.5 * _L2 * (theta[1:] ** 2).sum()
            residual = p - y
            grad = np.concatenate([[residual.sum()], x.T @ residual + _L2 * theta[1:]])
            return float(nll), grad

        start = np.zeros(x.shape[1] + 1)
        start[0] = np.log(y.mean() / (1 - y.mean()))
        solved = minimize(loss, start, jac=True, method="L-BFGS-B")
        return cls(mean, scale, solved.x[1:], float(solved.x[0]))

    def log_odds(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(((values - self.mean) / self.scale) @ self.weights + self.intercept, dtype=np.float64)

    def coefficients(self) -> dict[str, float]:
        """Per feature, the change in log-odds for one standard deviation more of it (for the registry)."""
        return {name: round(float(w), 4) for name, w in zip(FEATURES, self.weights, strict=True)}


def labels_after(split: Split, users: IdMap, items: IdMap, features: PairFeatures) -> np.ndarray:
    """1 for the pairs of ``features`` bought (or met, in interaction files) again in the held-out period."""
    late = purchase_rows(split.late)
    later = sp.csr_matrix(
        (np.ones(len(late)), (users.rows(late[Columns.USER]), items.rows(late[Columns.ITEM]))),
        shape=(len(users), len(items)),
    )
    return np.asarray(later[features.rows, features.cols]).ravel() > 0


def reference_time(frame: pd.DataFrame, now: datetime | None = None) -> pd.Timestamp | None:
    """The moment features are computed at: ``now`` if given, else the frame's latest timestamp (None without)."""
    if now is not None:
        return utc_timestamp(now)
    stamps = frame.get(Columns.TIMESTAMP)
    return None if stamps is None or stamps.isna().all() else pd.to_datetime(stamps, utc=True).max()


class Rebuy(RecommenderModel):
    """The customer's own items by the learned re-buy probability, then popularity for the remaining places.

    Fitted on a validation split of its training data (the module docstring); without one (too little data) the
    probability falls back to the recency-weighted count. A stand-alone model for the contract and as the "re-buy"
    baseline; production blends the same probability into the hybrid instead.
    """

    name = "rebuy"
    serves_cold_users = True

    def __init__(self, *, seed: int = 0) -> None:
        super().__init__()
        self.seed = seed

    def _fit(
        self, interactions: pd.DataFrame, item_features: pd.DataFrame | None, user_features: pd.DataFrame | None
    ) -> None:
        frame = interactions.reset_index(drop=True)
        self.logit_: RebuyLogit | None = None
        split = holdout_split(frame, seed=self.seed)
        if split is not None:
            early = split.early
            past = pair_features(early, self.users_, self.items_, reference_time(early))
            self.logit_ = RebuyLogit.fit(past.values, labels_after(split, self.users_, self.items_, past), self.seed)
        now = pair_features(frame, self.users_, self.items_, reference_time(frame))
        if self.logit_ is not None:
            odds = self.logit_.log_odds(now.values)
        else:  # recency-weighted frequency
            odds = now.values[:, FEATURES.index("log_recent_count_180d")]
        probability = expit(odds)
        self.bought_ = pair_matrix(self.users_, self.items_, purchase_rows(frame))  # purchases per pair
        self.own_ = sp.csr_matrix(
            (probability.astype(np.float32) + 1.0, (now.rows, now.cols)), shape=(len(self.users_), len(self.items_))
        )
        popularity = Popularity().fit(frame)
        fill = popularity._score_chunk(np.zeros(1, dtype=np.int64))[0, : len(self.items_)]
        top = float(fill.max()) if len(fill) else 1.0
        self._fill = padded(np.where(fill > PAD_SCORE, fill / max(top, 1e-12), PAD_SCORE).astype(np.float32), PAD_SCORE)

    def _score_chunk(self, rows: np.ndarray) -> np.ndarray:
        scores = np.tile(self._fill, (len(rows), 1))
        warm = rows >= 0
        own = self.own_[np.maximum(rows, 0)].tocoo()
        keep = warm[own.row]
        scores[own.row[keep], own.col[keep]] = own.data[keep]  # in (1, 2]: above every popularity fill in [0, 1]
        return scores

    def _explain(self, rows: np.ndarray, items: np.ndarray, names: np.ndarray) -> np.ndarray:
        own = self.own_[np.maximum(rows, 0)]
        flat_rows = np.repeat(np.arange(items.shape[0]), items.shape[1])
        flat = np.maximum(items.ravel(), 0)
        warm = np.repeat(rows, items.shape[1]) >= 0
        mine = (np.asarray(own[flat_rows, flat]).ravel() > 0) & warm
        times = np.asarray(self.bought_[np.maximum(rows, 0)][flat_rows, flat]).ravel() * warm
        text = np.select(
            [times >= 2, times >= 1, mine],
            ["You buy this regularly", "You bought this before", "You showed interest in this"],
            "Popular with our customers",
        )
        return np.where(items >= 0, text.reshape(items.shape), "")
