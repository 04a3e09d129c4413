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
from models.recommend.item_to_item import ItemSimilarityModel, strongest_per_row

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

    Items only in ``item_features`` (nobody interacted with them yet) are scored and related like any other. The
    item × item similarity keeps each item's ``neighbours`` most similar items (scoring is then one sparse product
    per chunk of users, as for co-purchase); ``related`` reads the full cosine.
    """

    name = "content"
    reason_template = "Similar to {}"

    def __init__(self, *, neighbours: int = 200, history_items: int = 20) -> None:
        super().__init__(history_items=history_items)
        if neighbours < 1:
            raise ValueError("neighbours must be ≥ 1")
        self.neighbours = neighbours

    def _fit_similarity(self, interactions: pd.DataFrame, item_features: pd.DataFrame | None) -> None:
        self.vectors_ = tfidf_vectors(self.items_, item_features)
        self._vectors_t = self.vectors_.T.tocsr()
        n = len(self.items_)
        keep = min(self.neighbours, n)
        parts = []
        for start in range(0, n, 512):
            rows = np.arange(start, min(start + 512, n))
            sims = self._similar_rows(rows)
            if keep < n:  # the neighbours: a partition, then only those sorted (deterministic for a given input)
                top = np.argpartition(-sims, keep - 1, axis=1)[:, :keep]
                values = np.take_along_axis(sims, top, axis=1)
                row = np.repeat(np.arange(len(rows)), keep)
                sims = sp.csr_matrix((values.ravel(), (row, top.ravel())), shape=sims.shape)
            parts.append(strongest_per_row(sp.csr_matrix(sims), self.neighbours))
        self.similarity_ = sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, 0), dtype=np.float32)

    def _similar_rows(self, positions: np.ndarray) -> np.ndarray:  # exact rows, not only the kept neighbours
        sims = np.asarray((self.vectors_[positions] @ self._vectors_t).toarray(), dtype=np.float32)
        sims = sims.reshape(len(positions), len(self.items_))
        sims[np.arange(len(positions)), positions] = 0.0
        return sims
