"""Explanation pieces: the nearest bought item in embedding space ("Because you bought …") and shared taste
features ("Matches your taste for …")."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from models.interactions import FEATURE_SEPARATOR
from models.recommend.ranking import rank_within_groups

_TASTE_PHRASES = {"note": "{} notes", "roast": "{} roasts", "origin": "products from {}"}
_TASTE_PRIORITY = {"note": 3, "roast": 3, "origin": 2}
_UNEXPLAINED_KINDS = {"price_band", "product_type"}  # "matches your taste for coffee" says nothing in a coffee shop


@dataclass
class TasteFeatures:
    """The item features an explanation may name (not identities, product types or price bands), with priority."""

    matrix: sp.csr_matrix  # items × explainable features, binary
    phrases_: np.ndarray
    priority: np.ndarray

    @classmethod
    def from_columns(cls, item_matrix: sp.csr_matrix, columns: list[str], n_items: int) -> TasteFeatures:
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
        rank = rank_within_groups(pair, len(flat))
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


def stack_rows(first: sp.csr_matrix, second: sp.csr_matrix, use_first: np.ndarray) -> sp.csr_matrix:
    """Row i from ``first`` where ``use_first[i]`` else from ``second``."""
    pick = sp.diags(use_first.astype(np.float32))
    other = sp.diags((~use_first).astype(np.float32))
    merged = (pick @ first + other @ second).tocsr()
    merged.eliminate_zeros()
    merged.sort_indices()
    return merged


def contains(matrix: sp.csr_matrix, items: np.ndarray) -> np.ndarray:
    """Whether ``matrix[row, item]`` is set, for each row's items (-1 = False)."""
    rows = np.repeat(np.arange(items.shape[0]), items.shape[1])
    flat = items.ravel()
    values = np.asarray(matrix[rows, np.maximum(flat, 0)]).ravel() if len(flat) else np.zeros(0)
    return ((values > 0) & (flat >= 0)).reshape(items.shape)
