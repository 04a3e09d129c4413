"""Text for the sample store's files, built column-wise: CSV quoting, numbers and money as text, and rows joined
from pre-escaped pieces in one pass (a store-L run writes ~2.7 GB, so no per-row Python formatting).

Values that go into a CSV are escaped once per pool value or column, so the big tables are joined without looking
at each row again.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

PAD2 = np.array([f"{i:02d}" for i in range(100)], dtype=object)
PAD3 = np.array([f"{i:03d}" for i in range(1000)], dtype=object)
PAD5 = np.array([f"{i:05d}" for i in range(100000)], dtype=object)
ROW_END = "\x1f"  # unit separator: never in the data, splits joined text back into rows


def as_text(values: np.ndarray) -> np.ndarray:
    """Integers as an object array of decimal strings (C-speed conversion, object dtype for concatenation)."""
    return np.asarray(values).astype(str).astype(object)


def csv_escape(values: Sequence[str]) -> np.ndarray:
    """RFC 4180 quoting, applied once to a pool of values (object array), so rows built from it need no quoting."""
    out = [f'"{v.replace(chr(34), chr(34) * 2)}"' if re.search(r'[",\r\n]', v) else v for v in values]
    return np.array(out, dtype=object)


def slugify(text: str) -> str:
    """A Shopify-style handle or e-mail local part: lowercase ASCII letters, digits and dashes."""
    text = text.replace("ß", "ss").replace("ä", "ae").replace("ö", "oe").replace("ü", "ue")
    text = text.replace("Ä", "Ae").replace("Ö", "Oe").replace("Ü", "Ue").replace("&", "and")
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


def money(cents: np.ndarray) -> np.ndarray:
    """Integer cents as decimal strings with a dot (``1450`` → ``14.50``)."""
    cents = np.asarray(cents, dtype=np.int64)
    return np.asarray(as_text(cents // 100) + "." + PAD2[cents % 100])


def escape(values: np.ndarray) -> np.ndarray:
    """RFC 4180 quoting for a column of raw text (quotes only the cells that need it)."""
    series = pd.Series(values, dtype=object)
    needs = series.str.contains(r'[",\r\n]', regex=True).to_numpy(dtype=bool)
    out = series.to_numpy(dtype=object).copy()
    out[needs] = '"' + series[needs].str.replace('"', '""', regex=False).to_numpy(dtype=object) + '"'
    return np.asarray(out)


def piece_matrix(pieces: Sequence[np.ndarray | str], sep: str | None = None, end: str = "") -> np.ndarray:
    """A (rows, pieces) object matrix whose row-wise concatenation is each row's text. Joining one flat list
    of references once is several times faster than concatenating strings column by column."""
    n = max(len(p) for p in pieces if not isinstance(p, str))
    step = 1 if sep is None else 2
    width = step * len(pieces) + (sep is None and end != "")
    matrix = np.empty((n, width), dtype=object)
    for i, piece in enumerate(pieces):
        matrix[:, step * i] = piece
    if sep is not None:
        matrix[:, 1::2] = sep
    if end:
        matrix[:, -1] = end
    return matrix


def matrix_text(matrix: np.ndarray) -> str:
    return "".join(matrix.ravel().tolist())


def concat(pieces: Sequence[np.ndarray | str], sep: str | None = None, end: str = "") -> np.ndarray:
    """Row-wise concatenation of pieces (arrays or constants) into one string per row."""
    matrix = piece_matrix(pieces, sep, end + ROW_END)
    if len(matrix) == 0:
        return np.empty(0, dtype=object)
    return np.array(matrix_text(matrix).split(ROW_END)[:-1], dtype=object)


def join_fields(fields: Sequence[np.ndarray | str]) -> np.ndarray:
    """Comma-joined text from already-escaped columns (arrays or constants), one string per row."""
    return concat(fields, sep=",")


def join_row(fields: Sequence[np.ndarray | str]) -> np.ndarray:
    """CSV lines (with newline) from already-escaped columns."""
    return concat(fields, sep=",", end="\n")


def insert_after(lines: np.ndarray, after: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Insert ``new[i]`` right after row ``after[i]`` (positions refer to the original rows)."""
    return np.insert(lines, np.asarray(after, dtype=np.int64) + 1, new)


def write_csv(path: Path, columns: Sequence[str], lines: np.ndarray) -> int:
    """Header plus rows; returns the number of data rows."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(",".join(columns) + "\n")
        for start in range(0, len(lines), 200_000):
            handle.write("".join(lines[start : start + 200_000].tolist()))
    return len(lines)


def rows_of(columns: Sequence[np.ndarray | str], rows: np.ndarray) -> list[np.ndarray | str]:
    """The given rows of each column (a constant stays a constant), to join them again after changing cells."""
    return [c if isinstance(c, str) else c[rows] for c in columns]
