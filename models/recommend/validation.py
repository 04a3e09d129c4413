"""A validation split carved from the training data, and the quick ranking measure choices are made on.

Every choice the hybrid makes from data (feature weights, epochs, the re-buy blend, ``--tune``'s hyperparameters)
is judged on this split, never on the data it is evaluated on:

* with timestamps, the last ``share`` of the interactions in time are held out (what the model will face: the
  next period), users judged are those with history before the cut;
* without timestamps, a random ``share`` of each user's rows (users with at least two rows), like the random
  split of the public explicit-feedback datasets;

and at most ``MAX_VALIDATION_USERS`` users (a seeded sample) take part.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.interactions import Columns, IdMap, pair_matrix

HOLDOUT_SHARE = 0.2
MIN_USERS = 20
MAX_JUDGED_USERS = 3000
MAX_VALIDATION_USERS = 10_000
"""Validation fits see at most this many users' histories: choices are made on a sample, so a store-L fit with
validation stays within its time budget (about 1.4× a plain fit instead of 4×)."""


@dataclass(frozen=True)
class Split:
    """``early`` (fit on it) and ``late`` (judge on it) rows of one interactions frame; ``by_time`` says how."""

    early: pd.DataFrame
    late: pd.DataFrame
    by_time: bool

    @property
    def horizon_days(self) -> float | None:
        """How long the held-out period lasts (None without timestamps)."""
        if not self.by_time:
            return None
        early, late = self.early[Columns.TIMESTAMP], self.late[Columns.TIMESTAMP]
        return max((late.max() - early.max()).total_seconds() / 86_400, 1.0)


def holdout_split(frame: pd.DataFrame, *, share: float = HOLDOUT_SHARE, seed: int = 0) -> Split | None:
    """Carve ``share`` of ``frame`` out as a validation period (module docstring); None when too small to judge."""
    stamps = frame.get(Columns.TIMESTAMP)
    if stamps is not None and stamps.notna().all() and stamps.nunique() > 1:
        cut = stamps.quantile(1 - share)
        late_mask = (stamps > cut).to_numpy()
        by_time = True
    else:
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(frame))
        shuffled = frame[Columns.USER].to_numpy()[order]
        position = pd.Series(shuffled).groupby(shuffled).cumcount().to_numpy()
        size = pd.Series(shuffled).groupby(shuffled).transform("size").to_numpy()
        late_sorted = (position < np.floor(size * share)) & (size >= 2)
        late_mask = np.zeros(len(frame), dtype=bool)
        late_mask[order] = late_sorted
        by_time = False
    early, late = frame[~late_mask], frame[late_mask]
    late = late[late[Columns.USER].isin(early[Columns.USER])]
    users = early[Columns.USER].unique()
    if len(users) > MAX_VALIDATION_USERS:
        kept = np.random.default_rng(seed).choice(users, MAX_VALIDATION_USERS, replace=False)
        early, late = early[early[Columns.USER].isin(kept)], late[late[Columns.USER].isin(kept)]
    if early.empty or late[Columns.USER].nunique() < MIN_USERS:
        return None
    return Split(early.reset_index(drop=True), late.reset_index(drop=True), by_time)


def purchase_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows that are purchases: flagged ones when the frame says, else every row (interaction files)."""
    if Columns.PURCHASED in frame and frame[Columns.PURCHASED].any():
        return frame[frame[Columns.PURCHASED].astype(bool)]
    return frame


@dataclass(frozen=True)
class Judge:
    """The held-out new items of up to ``MAX_JUDGED_USERS`` users, as model rows: ``relevant`` (every interaction:
    what the collaborative part's choices are judged on, the most signal there is) and ``bought`` (purchases only:
    what the new-item probabilities are calibrated on, the same event the re-buy model predicts); ``seen`` is
    every user's early history."""

    rows: np.ndarray
    relevant: sp.csr_matrix
    bought: sp.csr_matrix
    seen: sp.csr_matrix

    @classmethod
    def of(cls, split: Split, users: IdMap, items: IdMap, seed: int = 0) -> Judge | None:
        seen = (pair_matrix(users, items, split.early) > 0).astype(np.float32)
        new = _new_items(pair_matrix(users, items, split.late), seen)
        bought = _new_items(pair_matrix(users, items, purchase_rows(split.late)), seen)
        rows = np.flatnonzero(np.diff(new.indptr) > 0)
        if len(rows) < MIN_USERS:
            return None
        if len(rows) > MAX_JUDGED_USERS:
            rows = np.sort(np.random.default_rng(seed).choice(rows, MAX_JUDGED_USERS, replace=False))
        return cls(rows, new[rows], bought[rows], seen)


def _new_items(late: sp.csr_matrix, seen: sp.csr_matrix) -> sp.csr_matrix:
    met = (late > 0).astype(np.float32)
    new = (met - met.multiply(seen)).tocsr()
    new.eliminate_zeros()
    return new


def ndcg_at_k(scores: np.ndarray, relevant: sp.csr_matrix, blocked: sp.csr_matrix, k: int = 10) -> float:
    """Mean NDCG@k (binary relevance) of score rows against ``relevant`` rows, ``blocked`` cells never ranked."""
    scores = np.array(scores, dtype=np.float32, copy=True)
    coo = blocked.tocoo()
    scores[coo.row, coo.col] = -np.inf
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1), axis=1)
    hits = np.asarray(relevant[np.arange(len(top))[:, None], top].todense()) > 0
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * discount).sum(axis=1)
    ideal = np.cumsum(discount)[np.minimum(np.diff(relevant.indptr), k) - 1]
    return float(np.mean(dcg / ideal))
