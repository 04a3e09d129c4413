"""BASELINE for bench/bench_ingest.py only: the GA4 reader as it was before issue 10 (orjson line by line in
chunks, column-wise checks with pandas), kept unchanged to measure the columnar reader against. Not imported by the
product.

GA4 BigQuery export rows (JSONL) read into one row per event item.

A GA4 event names its products in ``items[]``; the ``events`` table keeps one row per item so the
recommender and the cart triggers can read "who looked at which SKU when" without unpacking JSON.
Lines that are not JSON, lack ``user_pseudo_id``/``event_name``/``event_timestamp``, are dated after the
sync's clock (+ 1 day), or name an unknown SKU are quarantined whole; a line repeated byte for byte is
skipped as a duplicate.

Exports run to millions of lines, so the file is read in chunks (memory stays bounded), each chunk is
parsed with orjson while the garbage collector rests (it would rescan every new dict), and all checks
run column-wise with pandas.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterator, Set
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
from pandas.api.types import union_categoricals

from models.schema import utcnow
from sources.validate import FUTURE_TOLERANCE, MAX_INTEGER, ROW, Intake, SourceFileError

ANALYTICS_FILE = "ga4_events.jsonl"
HOW_TO_EXPORT = (
    "export GA4 events from BigQuery as newline-delimited JSON (one event object per line), e.g. "
    "bq extract --destination_format NEWLINE_DELIMITED_JSON"
)
EVENT_COLUMNS = [
    "user_pseudo_id", "user_id", "event_name", "occurred_at", "sku",
    "quantity", "value", "transaction_id", "traffic_source", ROW,
]  # fmt: skip
CHUNK_LINES = 250_000
_PROBE_LINES = 20
_MAX_MICROSECONDS = 4_102_444_800_000_000  # 2100-01-01: later stamps are not microseconds
_HASH_KEYS = ("omnicast-dedup-1", "omnicast-dedup-2")


class _NotJson:
    """Stands in for a line that failed to parse (or holds what no database stores), carrying the reason."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


_STORED_TEXT = ["user_pseudo_id", "user_id", "event_name", "transaction_id", "traffic_source"]
NUL_REASON = "holds a NUL character (\\u0000): binary data, not text a database can store"


def read_events(path: Path, intake: Intake, known_skus: Set[str], now: datetime | None = None) -> pd.DataFrame:
    """Events flattened to one row per item, ``occurred_at`` as aware UTC; see the module docstring.

    ``now`` is the sync's clock: events stamped more than a day after it are quarantined.
    """
    if not path.exists():
        raise SourceFileError(f"{path.name}: file not found at {path} — {HOW_TO_EXPORT}")
    if path.is_dir():
        raise SourceFileError(f"{path.name}: {path} is a directory, not a file — {HOW_TO_EXPORT}")
    latest = int((pd.Timestamp(now or utcnow()) + FUTURE_TOLERANCE).value // 1_000)  # µs since the epoch
    repeats = _RepeatFilter()
    known = pd.Index(sorted(known_skus))
    parts = []
    for index, (numbers, lines) in enumerate(_line_chunks(path)):
        if index == 0:
            _check_is_jsonl(path, lines)
        intake.rows_read += len(lines)
        fresh = repeats.first_seen(lines)
        intake.duplicates_skipped += int((~fresh).sum())
        kept = [line for line, keep in zip(lines, fresh, strict=True) if keep]
        parts.append(_chunk_rows(numbers[fresh], kept, intake, known, latest))
    if not parts:
        return _empty_frame()
    return _concat(parts)


def events_per_line(events: pd.DataFrame) -> int:
    """How many source lines the item rows came from (the rows loaded, for reconciliation)."""
    return int(events[ROW].nunique())


# --- lines --------------------------------------------------------------------------------------------


def _line_chunks(path: Path) -> Iterator[tuple[np.ndarray, list[bytes]]]:
    """Non-blank lines in chunks, with their 1-based line numbers."""
    numbers: list[int] = []
    lines: list[bytes] = []
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise SourceFileError(f"{path.name}: cannot be read ({exc.strerror}) — check its permissions") from exc
    with handle:
        for number, line in enumerate(handle, start=1):
            stripped = line.strip()
            if stripped:
                numbers.append(number)
                lines.append(stripped)
            if len(lines) >= CHUNK_LINES:
                yield np.asarray(numbers, dtype="int64"), lines
                numbers, lines = [], []
    if lines:
        yield np.asarray(numbers, dtype="int64"), lines


def _check_is_jsonl(path: Path, lines: list[bytes]) -> None:
    """Refuse a file that is not JSONL (a CSV, a JSON array…): it must start like a JSON object, or at
    least one of its first lines must be one. A cut-off object line is a bad row, not a bad file."""
    if not lines or lines[0].startswith(b"{"):
        return
    for line in lines[:_PROBE_LINES]:
        try:
            if isinstance(orjson.loads(line), dict):
                return
        except orjson.JSONDecodeError:
            continue
    raise SourceFileError(
        f"{path.name}: not JSONL — none of its first {min(len(lines), _PROBE_LINES)} lines is a JSON object; "
        f"{HOW_TO_EXPORT}"
    )


class _RepeatFilter:
    """Remembers every line seen (as two independent 64-bit hashes) to skip exact repeats across chunks."""

    def __init__(self) -> None:
        self.first = np.empty(0, dtype="uint64")
        self.second = np.empty(0, dtype="uint64")

    def first_seen(self, lines: list[bytes]) -> np.ndarray:
        """Mask of lines not seen before (in earlier chunks or earlier in this one)."""
        values = np.asarray(lines, dtype=object)
        first = pd.util.hash_array(values, hash_key=_HASH_KEYS[0], categorize=False)
        second = pd.util.hash_array(values, hash_key=_HASH_KEYS[1], categorize=False)
        earlier = self._seen(first, second)
        within = pd.DataFrame({"a": first, "b": second}).duplicated().to_numpy()
        fresh = np.asarray(~earlier & ~within, dtype=bool)
        self._remember(first[fresh], second[fresh])
        return fresh

    def _seen(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        if not len(self.first):
            return np.zeros(len(first), dtype=bool)
        at = np.minimum(np.searchsorted(self.first, first), len(self.first) - 1)
        return np.asarray((self.first[at] == first) & (self.second[at] == second), dtype=bool)

    def _remember(self, first: np.ndarray, second: np.ndarray) -> None:
        merged = np.concatenate([self.first, first])
        order = np.argsort(merged, kind="stable")  # two sorted runs: a linear merge
        self.first = merged[order]
        self.second = np.concatenate([self.second, second])[order]


# --- one chunk ----------------------------------------------------------------------------------------


@contextmanager
def _collector_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _loads(line: bytes) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return _NotJson(f"not valid JSON ({exc})")


@dataclass
class _Chunk:
    """The parsed events of one chunk, column-wise, with what to quarantine."""

    numbers: np.ndarray
    lines: list[bytes]
    intake: Intake

    def reject(self, positions: np.ndarray, column: str | None, reasons: list[str] | str) -> None:
        if len(positions):
            raw = [_raw_text(self.lines[i]) for i in positions]
            texts = reasons if isinstance(reasons, list) else [reasons] * len(positions)
            self.intake.add_rejected(self.numbers[positions], column, pd.Series(texts, dtype=object), raw)


def _chunk_rows(numbers: np.ndarray, lines: list[bytes], intake: Intake, known: pd.Index, latest: int) -> pd.DataFrame:
    """Parse, check and flatten one chunk of lines (``latest``: the last acceptable event_timestamp, µs)."""
    chunk = _Chunk(numbers, lines, intake)
    with _collector_paused():
        parsed = [_loads(line) for line in lines]
    objects = np.fromiter((type(value) is dict for value in parsed), dtype=bool, count=len(parsed))
    not_json = [i for i, value in enumerate(parsed) if type(value) is _NotJson]
    chunk.reject(np.asarray(not_json, dtype="int64"), None, [parsed[i].reason for i in not_json])
    other = np.flatnonzero(~objects & np.fromiter((type(v) is not _NotJson for v in parsed), dtype=bool))
    chunk.reject(other, None, "not a JSON object")
    positions = np.flatnonzero(objects)
    events = [parsed[i] for i in positions]
    frame = _event_columns(events, positions)
    frame = _reject_bad_events(chunk, frame, latest)
    rows = _item_rows(chunk, frame, [events[i] for i in frame["_at"]], known)
    rows[ROW] = numbers[rows["_position"].to_numpy()]
    return _without_nul(chunk, _compact(rows[EVENT_COLUMNS].reset_index(drop=True)))


def _field(values: list[Any], key: str) -> list[Any]:
    """``value[key]`` for each value that is an object, else None."""
    return [value.get(key) if type(value) is dict else None for value in values]


def _text(value: Any) -> str | None:
    if type(value) is str:
        return value.strip() or None
    return None if value is None else str(value).strip() or None


def _text_column(values: list[Any]) -> pd.Series:
    """Trimmed text, None where missing or empty (numbers become their text)."""
    return pd.Series([_text(value) for value in values], dtype=object)


def _event_columns(events: list[dict[str, Any]], positions: np.ndarray) -> pd.DataFrame:
    traffic = [event.get("traffic_source") for event in events]
    source, medium = _text_column(_field(traffic, "source")), _text_column(_field(traffic, "medium"))
    label = source.fillna("(none)") + " / " + medium.fillna("(none)")
    return pd.DataFrame(
        {
            "_position": positions,
            "_at": np.arange(len(events)),
            "user_pseudo_id": _text_column([event.get("user_pseudo_id") for event in events]),
            "user_id": _text_column([event.get("user_id") for event in events]),
            "event_name": _text_column([event.get("event_name") for event in events]),
            "event_timestamp": pd.array([_microseconds(e.get("event_timestamp")) for e in events], dtype="Int64"),
            "transaction_id": _text_column(_field([event.get("ecommerce") for event in events], "transaction_id")),
            "traffic_source": label.where(source.notna() | medium.notna(), None),
        }
    )


def _microseconds(value: Any) -> int | None:
    if type(value) is str and value.strip().isdigit():
        value = int(value)
    if type(value) is int and 0 < value < _MAX_MICROSECONDS:
        return value
    return None


def _reject_bad_events(chunk: _Chunk, frame: pd.DataFrame, latest: int) -> pd.DataFrame:
    stamp = frame["event_timestamp"]
    future = (stamp > latest).fillna(False)
    checks = [
        ("user_pseudo_id", frame["user_pseudo_id"].isna(), "missing user_pseudo_id"),
        ("event_name", frame["event_name"].isna(), "missing event_name"),
        ("event_timestamp", stamp.isna(), "event_timestamp is not microseconds since the epoch"),
        ("event_timestamp", future, "event_timestamp is in the future (after the sync's clock + 1 day)"),
    ]
    for column, invalid, reason in checks:
        invalid = invalid.reindex(frame.index)
        chunk.reject(frame.loc[invalid, "_position"].to_numpy(), column, reason)
        frame = frame[~invalid]
    return frame


def _without_nul(chunk: _Chunk, rows: pd.DataFrame) -> pd.DataFrame:
    """Quarantine the events whose stored text holds NUL (JSON ``\\u0000``), which PostgreSQL refuses. The text
    columns are categories by now, so only their distinct values are searched (~10 ms a 250k-line chunk)."""
    bad = np.zeros(len(rows), dtype=bool)
    for name in _STORED_TEXT:
        holds = rows[name].cat.categories.str.contains("\x00", regex=False)
        if not holds.any():
            continue
        nul = np.flatnonzero(holds)
        hit = np.isin(rows[name].cat.codes.to_numpy(), nul) & ~bad
        lines = np.unique(rows.loc[hit, ROW].to_numpy())
        chunk.reject(np.searchsorted(chunk.numbers, lines), name, f"{name} {NUL_REASON}")
        bad |= rows[ROW].isin(lines).to_numpy()
    if not bad.any():
        return rows
    kept = rows[~bad].reset_index(drop=True)
    for name in _REPEATED:
        kept[name] = kept[name].cat.remove_unused_categories()
    return kept


def _item_rows(chunk: _Chunk, frame: pd.DataFrame, events: list[dict[str, Any]], known: pd.Index) -> pd.DataFrame:
    """One row per item (one without SKU for an event naming none); events with a bad item are quarantined."""
    lists = [event.get("items") or [] for event in events]
    not_list = np.fromiter((type(items) is not list for items in lists), dtype=bool, count=len(lists))
    lists = [[] if bad else items for items, bad in zip(lists, not_list, strict=True)]
    counts = np.fromiter((len(items) for items in lists), dtype="int64", count=len(lists))
    flat = list(chain.from_iterable(lists))
    owner = np.repeat(np.arange(len(lists)), counts)
    items = _item_columns(flat, owner, known)
    problem = items.dropna(subset=["_problem"]).drop_duplicates("_owner")
    reasons = pd.Series(None, index=np.arange(len(lists)), dtype=object)
    reasons[not_list] = "items is not a list"
    reasons[problem["_owner"].to_numpy()] = problem["_problem"].to_numpy()
    bad = reasons.notna().to_numpy()
    chunk.reject(frame["_position"].to_numpy()[bad], "items", reasons[bad].tolist())
    keep = items[~bad[owner]]
    with_items = frame.iloc[keep["_owner"].to_numpy()].reset_index(drop=True)
    with_items["sku"] = keep["sku"].to_numpy()
    with_items["quantity"] = keep["quantity"].array
    with_items["value"] = keep["value"].to_numpy()
    bare = frame[(counts == 0) & ~bad]
    bare = bare.assign(sku=None, quantity=pd.array([None] * len(bare), dtype="Int64"), value=np.nan)
    rows = pd.concat([with_items, bare]).sort_values(["_position"], kind="stable")
    rows["occurred_at"] = pd.to_datetime(rows["event_timestamp"].astype("int64"), unit="us", utc=True)
    return rows


def _item_columns(flat: list[Any], owner: np.ndarray, known: pd.Index) -> pd.DataFrame:
    """SKU, quantity and value per item, with the first problem (if any) in ``_problem``."""
    is_object = pd.Series([type(item) is dict for item in flat], dtype=bool)
    sku = _text_column(_field(flat, "item_id"))
    quantity = pd.Series(_field(flat, "quantity"), dtype=object)
    price = pd.Series(_field(flat, "price"), dtype=object)
    bad_quantity = pd.Series([not _is_count(value) for value in quantity], dtype=bool) & quantity.notna()
    bad_price = pd.Series([not _is_number(value) for value in price], dtype=bool) & price.notna()
    count = pd.to_numeric(quantity.where(~bad_quantity), errors="coerce")
    value = pd.to_numeric(price.where(~bad_price), errors="coerce") * count.fillna(1)
    problem = pd.Series(None, index=sku.index, dtype=object)
    checks: list[tuple[pd.Series, Callable[[pd.Series], pd.Series | str]]] = [  # later checks take precedence
        (bad_price, lambda quoted: "price of " + quoted + " is not a number"),
        (bad_quantity, lambda quoted: "quantity of " + quoted + " is not a number (or is too large)"),
        (sku.notna() & ~sku.isin(known), lambda quoted: "unknown SKU " + quoted),
        (sku.isna(), lambda _: "an item has no item_id (SKU)"),
        (~is_object, lambda _: "an item is not an object"),
    ]
    for invalid, describe in checks:
        if invalid.any():
            problem[invalid] = describe(sku[invalid].map(repr))
    return pd.DataFrame(
        {"_owner": owner, "sku": sku, "quantity": count.round().astype("Int64"), "value": value, "_problem": problem}
    )


def _is_number(value: Any) -> bool:
    return value is None or type(value) is int or type(value) is float


def _is_count(value: Any) -> bool:
    """A quantity the database can store (an INTEGER column)."""
    return _is_number(value) and (value is None or abs(value) <= MAX_INTEGER)


_REPEATED = ["user_pseudo_id", "user_id", "event_name", "sku", "transaction_id", "traffic_source"]


def _compact(rows: pd.DataFrame) -> pd.DataFrame:
    """Repeated strings as categories: millions of event rows hold few distinct names, SKUs and devices."""
    for name in _REPEATED:
        rows[name] = rows[name].astype("category")
    return rows


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Chunks glued together, keeping the category columns compact."""
    frame = pd.concat([part.drop(columns=_REPEATED) for part in parts], ignore_index=True)
    for name in _REPEATED:
        frame[name] = union_categoricals([part[name] for part in parts]).astype("category")
    return frame[EVENT_COLUMNS]


def _raw_text(line: bytes) -> str:
    """The line as stored in quarantine: itself when it is JSON, else JSON-encoded as a string."""
    text = line.decode("utf-8", errors="replace").strip()
    try:
        orjson.loads(line)
        return text
    except orjson.JSONDecodeError:
        return json.dumps(text, ensure_ascii=False)


def _empty_frame() -> pd.DataFrame:
    frame = pd.DataFrame({name: pd.Series(dtype=object) for name in EVENT_COLUMNS})
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True)
    frame[ROW] = frame[ROW].astype("int64")
    return frame
