"""Content-based related products: TF-IDF over what the catalogue says of each product, cosine similarity.

A product's document is its item features (``kind=value``, see :func:`content_features` for the catalogue's): each
feature gives one whole-value token (``roast=dark``, ``vendor=bean & leaf``) and the words of its value (``dark``,
``ethiopia``, ``yirgacheffe``), so a title that names an origin meets the origin field. scikit-learn's
``TfidfVectorizer`` weighs them (sublinear tf, smoothed idf: a word every product has says little) and normalises
each document to unit length, so the dot product of two documents is their cosine similarity.

Needs no purchases: a product nobody bought yet has neighbours from the day it is listed, and is a neighbour of the
products it resembles (cold items). :class:`ContentBased` recommends for a user what resembles their history
("Similar to X", naming the history item that contributed most).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer

from models.interactions import FEATURE_SEPARATOR, Columns, IdMap, features_from_wide
from models.recommend.item_to_item import ItemSimilarityModel

_WORD = re.compile(r"[^\W_]+")
CONTENT_COLUMNS = ("title", "product_type", "vendor", "tags", "roast", "origin", "flavour_notes", "options")
_FEATURE_NAMES = {"flavour_notes": "note", "tags": "tag", "options": "option"}


def content_features(catalog: pd.DataFrame) -> pd.DataFrame:
    """Long ``item_id, feature, value`` rows from the catalogue's descriptive columns (those it has): title, product
    type, vendor, tags (comma-separated, as Shopify exports them), roast, origin, flavour notes and options
    (``|``-separated)."""
    wide = pd.DataFrame({Columns.ITEM: catalog[Columns.ITEM]})
    for column in CONTENT_COLUMNS:
        if column not in catalog.columns:
            continue
        values = catalog[column]
        if column == "tags":
            values = values.where(values.isna(), values.astype(str).str.replace(",", "|", regex=False))
        if column == "title":
            values = values.where(values.isna(), values.astype(str).str.replace("|", " ", regex=False))
        wide[_FEATURE_NAMES.get(column, column)] = values
    return features_from_wide(wide, Columns.ITEM)


def feature_tokens(features: Iterable[str]) -> list[str]:
    """The TF-IDF tokens of one product: each ``kind=value`` feature, lower-cased, and its value's words (no
    English stop words, no single characters)."""
    tokens: list[str] = []
    for feature in features:
        kind, separator, value = str(feature).partition(FEATURE_SEPARATOR)
        text = (value if separator else kind).casefold().strip()
        if not text:
            continue
        whole = f"{kind.casefold()}{FEATURE_SEPARATOR}{text}" if separator else text
        tokens.append(whole)
        tokens.extend(w for w in _WORD.findall(text) if len(w) > 1 and w not in ENGLISH_STOP_WORDS and w != whole)
    return tokens


def tfidf_vectors(items: IdMap, features: pd.DataFrame | None) -> sp.csr_matrix:
    """Unit-length TF-IDF rows, one per item of ``items`` (a zero row for an item without features)."""
    empty = sp.csr_matrix((len(items), 0), dtype=np.float32)
    if features is None or features.empty:
        return empty
    rows = items.rows(features[Columns.ITEM])
    known = features[rows >= 0]
    documents: list[list[str]] = [[] for _ in range(len(items))]
    for row, feature in zip(rows[rows >= 0], known[Columns.FEATURE].astype(str), strict=True):
        documents[row].append(feature)
    vectorizer = TfidfVectorizer(analyzer=feature_tokens, sublinear_tf=True, norm="l2", dtype=np.float32)
    try:
        matrix = vectorizer.fit_transform(documents)
    except ValueError:  # no document has a token: nothing to compare
        return empty
    return sp.csr_matrix(matrix, dtype=np.float32)


class ContentBased(ItemSimilarityModel):
    """TF-IDF cosine over item features; recommends what resembles a user's history ("Similar to X").

    Items only in ``item_features`` (nobody interacted with them yet) are scored and related like any other.
    """

    name = "content"
    reason_template = "Similar to {}"

    def _fit_similarity(self, interactions: pd.DataFrame, item_features: pd.DataFrame | None) -> None:
        self.vectors_ = tfidf_vectors(self.items_, item_features)
        self._vectors_t = self.vectors_.T.tocsr()
        self._self_similarity = np.asarray(self.vectors_.multiply(self.vectors_).sum(axis=1), dtype=np.float32).ravel()

    def _propagate(self, history: sp.csr_matrix) -> np.ndarray:
        scores = np.asarray(((history @ self.vectors_) @ self._vectors_t).toarray(), dtype=np.float32)
        own = history.multiply(self._self_similarity[None, :]).tocoo()  # a history item does not vouch for itself
        scores[own.row, own.col] -= own.data
        return scores

    def pair_similarity(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        if not len(first):
            return np.zeros(0, dtype=np.float32)
        dots = np.asarray(self.vectors_[first].multiply(self.vectors_[second]).sum(axis=1), dtype=np.float32).ravel()
        return np.where(first == second, 0.0, dots).astype(np.float32)

    def _similar_rows(self, positions: np.ndarray) -> np.ndarray:
        sims = np.asarray((self.vectors_[positions] @ self._vectors_t).toarray(), dtype=np.float32)
        sims[np.arange(len(positions)), positions] = 0.0
        return sims
