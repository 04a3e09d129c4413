"""Offline evaluation of the recommender on files of interactions: ``omnicast evaluate recommendations``.

Inputs (CSV with a header): train and test interactions ``user_id,item_id[,timestamp][,weight]``; optional item and
user feature files with an id column (``item_id`` / ``user_id``) and any other columns. Feature columns are
categorical; a ``|``-separated cell is multi-valued; a numeric column is binned into (up to) four quantile bins
``q1`` … ``q4``. Every column becomes ``column=value`` features (``models.interactions.features_from_wide``).

Protocol (LightFM's): the catalogue is the items of train plus those of the item features; users present in both train
and test are evaluated. By default the items a user interacted with in train are removed from that user's ranking and
from credit (a test item seen in train earns nothing); ``include_seen=True`` keeps them rankable and creditable
(re-buys). Test pairs with items outside the catalogue cannot be ranked by any model and are dropped; users left with
no creditable test item are not counted.

Models, one key each in the result:

* ``hybrid``: what production serves warm customers (``models/recommend/``): :class:`HybridLightFM` (WARP,
  identity + item features [+ user features], the train file's weights as sample weights) with the components and
  epochs :func:`train_and_recommend` uses as a start. It validates its own choices on a split carved from train
  (:mod:`models.recommend.validation`): how much weight features get (LightFM's equal split, identity-heavy, or
  none), how many epochs, and a learned re-buy probability for the user's own items blended with calibrated scores
  of new items (:mod:`models.recommend.rebuy`); ``settings`` reports what it chose. With ``tune`` its
  hyperparameters come from a random search on the same kind of split first (:mod:`models.recommend.tuning`;
  ``tuning`` reports the trials, the budget and the winner). Every evaluated user is warm, so production's
  popularity fallback for cold customers does not apply. Fitted with one thread so that a seed gives one answer.
* ``popularity``: production's :class:`Popularity` (the sum of interaction weights per item in train).
* ``rebuy``: the user's own train items ranked by recency-weighted frequency (weights halve every
  ``InteractionWeights.half_life_days`` before the latest train timestamp), then popularity to fill. Only meaningful
  with ``include_seen``: without it the own items are excluded and it ranks like popularity. It does not score all
  items in a comparable way, so its ``auc`` is ``None``.
* ``lightfm_default``: plain ``LightFM()`` (logistic loss, 10 components, the library's defaults) fitted for
  :data:`DEFAULT_EPOCHS` epochs on the same binary user × item matrix, no features, no weights.

Per model: ``precision_at_k``, ``recall_at_k``, ``ndcg_at_k`` (binary relevance, log2 discount, ideal DCG over
min(k, |relevant|)), ``auc`` (per user, the share of (relevant, non-relevant) pairs of rankable items ordered right,
ties half; averaged over users with both kinds), each computed per user and averaged; ``coverage`` (share of catalogue
items in anyone's top k); ``fit_seconds``; and ``users``, ``k``, ``include_seen``. ``hybrid`` also says ``tuned``,
``settings`` and (with ``tune``) ``tuning``.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from lightfm import LightFM
from scipy.stats import rankdata

from models.errors import InputError
from models.interactions import Columns, IdMap, InteractionWeights, features_from_wide, pair_matrix
from models.recommend import HybridLightFM, Popularity, train_and_recommend
from models.recommend.tuning import DEFAULT_BUDGET_SECONDS, tune_hybrid

DEFAULT_EPOCHS = 30
"""Epochs of ``lightfm_default`` (LightFM's quickstart uses 30; ``fit``'s own default of 1 is no model)."""
QUANTILE_BINS = 4
CHUNK_USERS = 1024
MODELS = ("hybrid", "popularity", "rebuy", "lightfm_default")
_PRODUCTION = inspect.signature(train_and_recommend).parameters
PRODUCTION_COMPONENTS: int = _PRODUCTION["components"].default
PRODUCTION_EPOCHS: int = _PRODUCTION["epochs"].default


# ---- files -------------------------------------------------------------------------------------------------------
def _read_csv(path: Path, what: str, shape: str) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, low_memory=False)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; give {what} a CSV of {shape}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable CSV ({type(exc).__name__}); give {what} a CSV of {shape}") from None


def _first_bad_row(bad: np.ndarray) -> int:
    return int(np.flatnonzero(bad)[0]) + 2  # 1-based, after the header


def _ids(frame: pd.DataFrame, column: str, path: Path) -> pd.Series:
    ids = frame[column].astype(str).str.strip()
    empty = (ids == "").to_numpy()
    if empty.any():
        raise InputError(f"{path}, row {_first_bad_row(empty)}, column {column}: empty; every row needs an id")
    return ids


def read_interactions(path: Path, what: str = "--train") -> pd.DataFrame:
    """``user_id, item_id[, timestamp][, weight]`` from a CSV with a header (ids as text); a missing file, a missing
    column, an empty id, a bad timestamp or a bad weight stops with an :class:`InputError` naming file, row and
    column."""
    shape = "user_id,item_id[,timestamp][,weight]"
    frame = _read_csv(path, what, shape)
    missing = [c for c in (Columns.USER, Columns.ITEM) if c not in frame.columns]
    if missing:
        raise InputError(
            f"{path}: no {missing[0]!r} column (columns: {', '.join(map(str, frame.columns)) or 'none'}); the header "
            f"must be {shape}"
        )
    if frame.empty:
        raise InputError(f"{path}: no rows; {what} needs at least one user_id,item_id row")
    out = pd.DataFrame({Columns.USER: _ids(frame, Columns.USER, path), Columns.ITEM: _ids(frame, Columns.ITEM, path)})
    if Columns.TIMESTAMP in frame:
        raw = frame[Columns.TIMESTAMP].str.strip()
        stamps = pd.to_datetime(raw, errors="coerce", utc=True, format="mixed")
        bad = stamps.isna().to_numpy()
        if bad.any():
            raise InputError(
                f"{path}, row {_first_bad_row(bad)}, column timestamp: not a date or time ({raw.iloc[bad.argmax()]!r}, "
                f"{int(bad.sum()):,} such rows); use ISO 8601, e.g. 2025-03-01 or 2025-03-01T14:30:00"
            )
        out[Columns.TIMESTAMP] = stamps
    if Columns.WEIGHT in frame:
        weights = pd.to_numeric(frame[Columns.WEIGHT].str.strip(), errors="coerce")
        bad = (weights.isna() | (weights < 0) | ~np.isfinite(weights)).to_numpy()
        if bad.any():
            raise InputError(
                f"{path}, row {_first_bad_row(bad)}, column weight: {frame[Columns.WEIGHT].iloc[bad.argmax()]!r} is "
                "not a number ≥ 0; a weight says how strong the signal is (leave the column out for 1)"
            )
        out[Columns.WEIGHT] = weights.to_numpy(dtype=float)
    else:
        out[Columns.WEIGHT] = 1.0
    return out


def read_features(path: Path, id_column: str, what: str) -> pd.DataFrame:
    """Long ``id, feature, value`` rows (``column=value``) from a wide CSV with ``id_column`` and feature columns:
    categorical, ``|`` for several values, numeric columns in quantile bins ``q1`` … ``q4``."""
    shape = f"{id_column},<feature columns>"
    frame = _read_csv(path, what, shape)
    if id_column not in frame.columns:
        raise InputError(
            f"{path}: no {id_column!r} column (columns: {', '.join(map(str, frame.columns)) or 'none'}); the header "
            f"must be {shape}"
        )
    columns = [c for c in frame.columns if c != id_column]
    if not columns:
        raise InputError(f"{path}: only the {id_column!r} column; add at least one feature column")
    wide = pd.DataFrame({id_column: _ids(frame, id_column, path)})
    for column in columns:
        cells = frame[column].str.strip()
        wide[column] = _binned(cells) if _is_numeric(cells) else cells.replace("", np.nan)
    return features_from_wide(wide, id_column)


def _is_numeric(cells: pd.Series) -> bool:
    filled = cells[cells != ""]
    return bool(len(filled)) and bool(pd.to_numeric(filled, errors="coerce").notna().all())


def _binned(cells: pd.Series) -> pd.Series:
    numbers = pd.to_numeric(cells.replace("", np.nan), errors="coerce")
    if numbers.nunique() <= QUANTILE_BINS:
        return numbers.map(lambda v: np.nan if pd.isna(v) else f"{v:g}")
    codes = pd.qcut(numbers, QUANTILE_BINS, labels=False, duplicates="drop")
    return codes.map(lambda c: np.nan if pd.isna(c) else f"q{int(c) + 1}")


# ---- metrics -----------------------------------------------------------------------------------------------------
def ranking_metrics(
    scores: np.ndarray, relevant: sp.csr_matrix, excluded: sp.csr_matrix, k: int, *, with_auc: bool = True
) -> dict[str, np.ndarray]:
    """Per user (row): ``precision``, ``recall``, ``ndcg`` at ``k``, ``auc`` (nan where undefined) and ``top`` (the k
    best rankable item columns, best first, ties to the lower column; -1 where fewer).

    ``scores`` is users × items; ``relevant`` and ``excluded`` are users × items sparse (excluded cells are neither
    ranked nor credited nor counted as negatives). Rows must have at least one relevant, non-excluded item.
    """
    n_users, n_items = scores.shape
    masked = np.array(scores, dtype=np.float64)
    blocked = excluded.toarray() > 0
    masked[blocked] = -np.inf
    positive = (relevant.toarray() > 0) & ~blocked
    n_pos = positive.sum(axis=1)
    width = min(k, n_items)
    top = np.argsort(-masked, axis=1, kind="stable")[:, :width]
    valid = np.isfinite(np.take_along_axis(masked, top, axis=1))
    hits = np.take_along_axis(positive, top, axis=1) & valid
    discount = 1.0 / np.log2(np.arange(2, width + 2))
    ideal = np.cumsum(discount)[np.minimum(n_pos, width) - 1]
    result = {
        "precision": hits.sum(axis=1) / k,
        "recall": hits.sum(axis=1) / n_pos,
        "ndcg": (hits * discount).sum(axis=1) / ideal,
        "top": np.where(valid, top, -1),
        "auc": np.full(n_users, np.nan),
    }
    if with_auc:
        # excluded cells are -inf, below every real score: they take the lowest ranks, shifting the others by n_ex
        n_ex = blocked.sum(axis=1)
        ranks = rankdata(masked, axis=1)
        n_neg = n_items - n_ex - n_pos
        pos_rank_sum = (ranks * positive).sum(axis=1) - n_pos * n_ex
        defined = (n_pos > 0) & (n_neg > 0)
        pairs = np.where(defined, n_pos * n_neg, 1)
        result["auc"] = np.where(defined, (pos_rank_sum - n_pos * (n_pos + 1) / 2) / pairs, np.nan)
    return result


def _summary(parts: list[dict[str, np.ndarray]], n_items: int, with_auc: bool) -> dict[str, Any]:
    def mean(name: str) -> float | None:
        values = np.concatenate([p[name] for p in parts]) if parts else np.zeros(0)
        values = values[~np.isnan(values)]
        return float(values.mean()) if len(values) else None

    top = np.concatenate([p["top"].ravel() for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    return {
        "precision_at_k": mean("precision"),
        "recall_at_k": mean("recall"),
        "ndcg_at_k": mean("ndcg"),
        "auc": mean("auc") if with_auc else None,
        "coverage": len(np.unique(top[top >= 0])) / n_items if n_items else None,
    }


# ---- the harness -------------------------------------------------------------------------------------------------
def evaluate_recommendations(
    train: pd.DataFrame,
    test: pd.DataFrame,
    item_features: pd.DataFrame | None = None,
    user_features: pd.DataFrame | None = None,
    k: int = 10,
    include_seen: bool = False,
    *,
    seed: int = 0,
    tune: bool = False,
    tune_budget_seconds: float = DEFAULT_BUDGET_SECONDS,
) -> dict[str, dict[str, Any]]:
    """Fit every model on ``train`` and score its top ``k`` on ``test`` (module docstring); one dict per model."""
    fitted = fit_models(train, item_features, user_features, k, seed=seed, tune=tune,
                        tune_budget_seconds=tune_budget_seconds)  # fmt: skip
    return fitted.score(test, include_seen)


def evaluate_both_protocols(
    train: pd.DataFrame,
    test: pd.DataFrame,
    item_features: pd.DataFrame | None = None,
    k: int = 10,
    *,
    seed: int = 0,
    hybrid: HybridLightFM | None = None,
) -> dict[str, dict[str, dict[str, Any]] | dict[str, str]]:
    """:func:`evaluate_recommendations` in both protocols from one fit of every model: ``{"exclude_seen": …,
    "include_seen": …}``; a protocol with nobody to judge says why (``{"not_evaluated": …}``). ``hybrid``: the
    production model already fitted on ``train`` (the registry's candidate), used instead of fitting it again."""
    fitted = fit_models(train, item_features, None, k, seed=seed, hybrid=hybrid)
    out: dict[str, dict[str, dict[str, Any]] | dict[str, str]] = {}
    for protocol, include_seen in (("exclude_seen", False), ("include_seen", True)):
        try:
            out[protocol] = fitted.score(test, include_seen)
        except InputError as exc:
            out[protocol] = {"not_evaluated": str(exc)}
    return out


class FittedModels:
    """Every model of the harness fitted on one train file, ready to be scored on a test file in either protocol."""

    def __init__(
        self,
        train: pd.DataFrame,
        item_features: pd.DataFrame | None,
        user_features: pd.DataFrame | None,
        k: int,
        *,
        seed: int,
        tune: bool,
        tune_budget_seconds: float,
        hybrid: HybridLightFM | None = None,
    ) -> None:
        self.k = k
        self.timings: dict[str, float] = {}
        self.tune = tune
        self.tuning = None
        if tune:
            self.tuning = tune_hybrid(train, item_features, user_features, budget_seconds=tune_budget_seconds,
                                      seed=seed)  # fmt: skip
        settings = self.tuning.best if self.tuning is not None else {
            "components": PRODUCTION_COMPONENTS, "epochs": PRODUCTION_EPOCHS,
        }  # fmt: skip
        started = time.perf_counter()
        lent = hybrid is not None
        if hybrid is None:
            hybrid = HybridLightFM(**settings, seed=seed, num_threads=1).fit(train, item_features, user_features)
        self.hybrid = hybrid
        self.timings["hybrid"] = float("nan") if lent else time.perf_counter() - started  # lent: timed by its owner
        self.users, self.items = self.hybrid.users_, self.hybrid.items_
        n_items = len(self.items)

        started = time.perf_counter()
        popularity = Popularity().fit(train, item_features)
        self.timings["popularity"] = time.perf_counter() - started

        started = time.perf_counter()
        self.own = _recency_weighted(train, self.users, self.items)
        self.popularity_scores = popularity._score_chunk(np.zeros(1, dtype=np.int64))[0, :n_items].astype(np.float64)
        self.fill = np.maximum(self.popularity_scores, 0) / max(float(self.popularity_scores.max()), 1e-12)
        self.timings["rebuy"] = time.perf_counter() - started + self.timings["popularity"]

        started = time.perf_counter()
        self.seen = pair_matrix(self.users, self.items, train)
        self.default = LightFM(random_state=np.random.RandomState(seed))
        self.default.fit((self.seen > 0).astype(np.float32).tocoo(), epochs=DEFAULT_EPOCHS, num_threads=1)
        self.default_item_bias, self.default_item_vectors = self.default.get_item_representations()
        self.default_user_bias, self.default_user_vectors = self.default.get_user_representations()
        self.timings["lightfm_default"] = time.perf_counter() - started
        self.item_features, self.user_features = item_features is not None, user_features is not None

    def _scorers(self) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
        n_items, own, fill = len(self.items), self.own, self.fill
        return {
            # production's scoring step: one product per chunk (padding columns cut off)
            "hybrid": lambda r: self.hybrid._score_chunk(r)[:, :n_items],
            "popularity": lambda r: np.tile(self.popularity_scores, (len(r), 1)),
            "rebuy": lambda r: np.where(own[r].toarray() > 0, 2.0 + own[r].toarray(), fill[None, :]),
            "lightfm_default": lambda r: (
                self.default_user_vectors[r] @ self.default_item_vectors.T
                + self.default_user_bias[r, None]
                + self.default_item_bias[None, :]
            ),
        }

    def score(self, test: pd.DataFrame, include_seen: bool) -> dict[str, dict[str, Any]]:
        """Every model's figures on ``test`` in one protocol (the module docstring)."""
        k, n_items = self.k, len(self.items)
        rows, relevant = _test_matrix(test, self.users, self.items, self.seen, include_seen)
        excluded_all = (
            sp.csr_matrix(self.seen.shape, dtype=np.float32) if include_seen else (self.seen > 0).astype(np.float32)
        )
        scorers = self._scorers()
        result: dict[str, dict[str, Any]] = {}
        for name in MODELS:
            with_auc = name != "rebuy"
            parts = []
            for start in range(0, len(rows), CHUNK_USERS):
                chunk = rows[start : start + CHUNK_USERS]
                parts.append(
                    ranking_metrics(
                        scorers[name](chunk), relevant[start : start + CHUNK_USERS], excluded_all[chunk], k,
                        with_auc=with_auc,
                    )
                )  # fmt: skip
            result[name] = {
                **_summary(parts, n_items, with_auc),
                "fit_seconds": round(self.timings[name], 3),
                "users": int(len(rows)),
                "k": k,
                "include_seen": include_seen,
            }
        result["hybrid"]["tuned"] = self.tuning is not None
        if self.tuning is not None:
            result["hybrid"]["tuning"] = self.tuning.summary()
        elif self.tune:
            result["hybrid"]["tuning"] = {"skipped": "too little data to carve a validation split from train"}
        result["hybrid"]["settings"] = {
            **self.hybrid.settings(), "item_features": self.item_features, "user_features": self.user_features,
        }  # fmt: skip
        result["lightfm_default"]["settings"] = {"loss": self.default.loss, "components": self.default.no_components,
                                                 "epochs": DEFAULT_EPOCHS}  # fmt: skip
        return result


def fit_models(
    train: pd.DataFrame,
    item_features: pd.DataFrame | None,
    user_features: pd.DataFrame | None,
    k: int = 10,
    *,
    seed: int = 0,
    tune: bool = False,
    tune_budget_seconds: float = DEFAULT_BUDGET_SECONDS,
    hybrid: HybridLightFM | None = None,
) -> FittedModels:
    """Every model of the harness fitted on ``train`` (``k`` checked first: a bad value costs no fit); ``hybrid``
    already fitted on ``train`` is used as it is."""
    if k < 1:
        raise InputError(f"--k {k}: ask for at least one recommendation per user")
    return FittedModels(train, item_features, user_features, k, seed=seed, tune=tune,
                        tune_budget_seconds=tune_budget_seconds, hybrid=hybrid)  # fmt: skip


def _test_matrix(
    test: pd.DataFrame, users: IdMap, items: IdMap, seen: sp.csr_matrix, include_seen: bool
) -> tuple[np.ndarray, sp.csr_matrix]:
    """Model rows of the evaluated users and their creditable test items (users × catalogue, binary)."""
    matrix = (pair_matrix(users, items, test) > 0).astype(np.float32)
    if not include_seen:
        matrix = (matrix - matrix.multiply(seen > 0)).tocsr()
        matrix.eliminate_zeros()
    rows = np.flatnonzero(np.diff(matrix.indptr) > 0)
    if not len(rows):
        what = "" if include_seen else " that they did not already have in train (or pass --include-seen)"
        raise InputError(f"no user of the test file has a test item in the catalogue{what}: nothing to evaluate")
    return rows, matrix[rows]


def _recency_weighted(train: pd.DataFrame, users: IdMap, items: IdMap) -> sp.csr_matrix:
    """Users × items: the sum of weights, each halved every ``half_life_days`` before the latest train timestamp."""
    weight = train[Columns.WEIGHT].to_numpy(dtype=float) if Columns.WEIGHT in train else np.ones(len(train))
    if Columns.TIMESTAMP in train:
        stamps = pd.to_datetime(train[Columns.TIMESTAMP], utc=True)
        age = (stamps.max() - stamps).dt.total_seconds().to_numpy() / 86_400
        weight = weight * np.exp2(-age / InteractionWeights().half_life_days)
    return pair_matrix(users, items, train, weight)
