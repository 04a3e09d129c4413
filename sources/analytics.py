"""GA4 BigQuery export events (newline-delimited JSON or Parquet) read into one row per event item.

A GA4 event names its products in ``items[]``; the ``events`` table keeps one row per item so the
recommender and the cart triggers can read "who looked at which SKU when" without unpacking JSON.
Lines that are not JSON, lack ``user_pseudo_id``/``event_name``/``event_timestamp``, are dated after the
sync's clock (+ 1 day), or name an unknown SKU are quarantined whole; a line repeated byte for byte is
skipped as a duplicate (in Parquet: a row repeating an earlier row in every column read).

Exports run to millions of lines (store-L: 5M lines, 2.4 GB), so they are read in columnar blocks with
pyarrow and memory stays bounded by a few blocks in flight:

- JSONL: blocks of whole lines are parsed by pyarrow's JSON reader against an explicit schema of the fields
  the events table needs (the rest of each line is skipped), on worker threads (the parser runs without the
  GIL), then checked column by column: ``items[]`` flattened with ``list_flatten``/``list_parent_indices``,
  text trimmed once per distinct value. A line pyarrow refuses (not JSON, a field of another type) is found
  where the parse stopped, or by halving the block, and only such lines take the row-by-row path (orjson,
  one dict per line): the reader this module always had, which gives each bad line its reason. Lines pyarrow
  would take but orjson refuses (``NaN``, invalid UTF-8, nesting deeper than orjson's limit, a byte order
  mark) are screened out before the parse and take that path too, so a line is judged the same either way.
- Parquet: ``ParquetFile.iter_batches`` over the columns the events table needs, cast to the same schema;
  the same column checks; ``_row`` is the 1-based row number in the file.
"""

from __future__ import annotations

import gc
import json
import os
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence, Set
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from pathlib import Path
from typing import IO, Any, ClassVar

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq
from pandas.api.types import union_categoricals

from models.schema import utcnow
from sources.base import ReadContext, SourceConfig, SourceRead, path_of
from sources.validate import FUTURE_TOLERANCE, MAX_INTEGER, ROW, Intake, SourceFileError

ANALYTICS_FILE = "ga4_events.jsonl"
HOW_TO_EXPORT = (
    "export GA4 events from BigQuery as newline-delimited JSON (one event object per line) or Parquet, e.g. "
    "bq extract --destination_format NEWLINE_DELIMITED_JSON (or PARQUET)"
)
EVENT_COLUMNS = [
    "user_pseudo_id", "user_id", "event_name", "occurred_at", "sku",
    "quantity", "value", "transaction_id", "traffic_source", ROW,
]  # fmt: skip
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
PARQUET_SUFFIXES = (".parquet",)
BLOCK_BYTES = 16 << 20
"""JSONL read per block (~33k GA4 lines): small enough that a few blocks in flight stay cheap, large enough that
pyarrow's per-call cost vanishes."""
BATCH_ROWS = 65_536
"""Parquet rows per batch."""
_PARSERS = max(1, min(2, os.cpu_count() or 1))
_PROBE_LINES = 20
_MAX_MICROSECONDS = 4_102_444_800_000_000  # 2100-01-01: later stamps are not microseconds
_SLOW_LINES = 50_000  # lines gathered for the row-by-row path before they are checked (memory stays bounded)
_MISSES_PER_BLOCK = 32  # failed parses in one block before the rest of the block goes row by row
_DEEP_LINE = 1024  # bytes: shorter lines cannot nest past orjson's depth limit
_MAX_OPENERS = 500  # brackets a line may open before it is left to orjson's judgement of its depth


class _NotJson:
    """Stands in for a line that failed to parse (or holds what no database stores), carrying the reason."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


_STORED_TEXT = ["user_pseudo_id", "user_id", "event_name", "transaction_id", "traffic_source"]
NUL_REASON = "holds a NUL character (\\u0000): binary data, not text a database can store"

_ITEM = pa.struct([("item_id", pa.string()), ("quantity", pa.float64()), ("price", pa.float64())])
SCHEMA = pa.schema(
    [
        ("user_pseudo_id", pa.string()),
        ("user_id", pa.string()),
        ("event_name", pa.string()),
        ("event_timestamp", pa.int64()),
        ("items", pa.list_(_ITEM)),
        ("ecommerce", pa.struct([("transaction_id", pa.string())])),
        ("traffic_source", pa.struct([("source", pa.string()), ("medium", pa.string())])),
    ]
)
"""The fields of a GA4 event the events table is made of: what the JSON parser reads (the rest is skipped) and
what a Parquet batch is cast to."""
_PARSE = pj.ParseOptions(explicit_schema=SCHEMA, unexpected_field_behavior="ignore")


def read_events(
    path: Path,
    intake: Intake,
    known_skus: Set[str],
    now: datetime | None = None,
    *,
    block_bytes: int = BLOCK_BYTES,
    batch_rows: int = BATCH_ROWS,
    row_by_row: bool = False,
) -> pd.DataFrame:
    """Events flattened to one row per item, ``occurred_at`` as aware UTC; see the module docstring.

    ``now`` is the sync's clock: events stamped more than a day after it are quarantined. A ``.parquet`` file is
    read as Parquet, any other as JSONL. ``block_bytes``/``batch_rows`` size the blocks; ``row_by_row`` sends
    every JSONL line through the row-by-row path (the tests compare both paths).
    """
    if not path.exists():
        raise SourceFileError(f"{path.name}: file not found at {path} — {HOW_TO_EXPORT}")
    if path.is_dir():
        raise SourceFileError(f"{path.name}: {path} is a directory, not a file — {HOW_TO_EXPORT}")
    latest = int((pd.Timestamp(now or utcnow()) + FUTURE_TOLERANCE).value // 1_000)  # µs since the epoch
    known = pd.Index(sorted(known_skus))
    if path.suffix.lower() in PARQUET_SUFFIXES:
        parts = list(_parquet_parts(path, intake, known, latest, batch_rows))
    else:
        parts = list(_jsonl_parts(path, intake, known, latest, block_bytes, row_by_row))
    parts = [part for part in parts if len(part)]
    if not parts:
        return _empty_frame()
    events = _concat(parts)
    if not events[ROW].is_monotonic_increasing:  # rows of lines read row by row come after their blocks
        events = events.iloc[np.argsort(events[ROW].to_numpy(), kind="stable")].reset_index(drop=True)
    return events


def events_per_line(events: pd.DataFrame) -> int:
    """How many source lines the item rows came from (the rows loaded, for reconciliation)."""
    return int(events[ROW].nunique())


class Ga4File:
    """Web analytics from a GA4 BigQuery export file: newline-delimited JSON (``.jsonl``, ``.ndjson``, ``.json``)
    or Parquet (``.parquet``), read whole every run (no watermark: the sync replaces the span the file covers)."""

    role: ClassVar[str] = "analytics"
    platform: ClassVar[str] = "ga4"

    def __init__(self, config: SourceConfig) -> None:
        self.config = config
        self.file = path_of(config.url)

    @property
    def location(self) -> str:
        return str(self.file)

    def check(self) -> None:
        """The file exists and is named as a JSONL or Parquet export: else one line naming the setting, what was
        found there and how to export the right thing."""
        setting, file = self.config.setting, self.file
        if not file.is_file():
            found = "a directory" if file.is_dir() else "nothing"
            raise SourceFileError(
                f"{setting} points at {found} ({file}), not a file — give the events file itself: {HOW_TO_EXPORT}"
            )
        if file.suffix.lower() not in JSONL_SUFFIXES + PARQUET_SUFFIXES:
            raise SourceFileError(
                f"{setting} ({file}): not a .jsonl, .ndjson, .json or .parquet file — give the events file itself: "
                f"{HOW_TO_EXPORT}"
            )

    def read(self, context: ReadContext) -> SourceRead:
        self.check()
        intake = Intake("analytics", self.file.name)
        events = read_events(self.file, intake, context.known_skus, context.now)
        context.say(f"analytics: {len(events)} event items read")
        return SourceRead(self.role, self.platform, self.location, {"events": events}, {"analytics": intake})


# --- JSONL: blocks of lines ----------------------------------------------------------------------------


_WHITESPACE = np.zeros(256, dtype=bool)
_WHITESPACE[list(b" \t\r\n\x0b\x0c")] = True  # what bytes.strip() strips
_OPEN, _CLOSE, _NEWLINE = ord("{"), ord("}"), ord("\n")


@dataclass
class _Block:
    """Whole lines of the file as read (``data[:size]``, each line ended by a newline), located rather than
    split: the non-blank lines' stripped bounds, their 1-based line numbers, their raw bounds (before
    stripping), how many lines (blank ones too) the block holds and where ``data`` starts in the file. No line
    becomes a Python object unless it has to."""

    data: bytes
    size: int
    offset: int
    line_count: int
    numbers: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    raw_starts: np.ndarray
    raw_ends: np.ndarray

    def line(self, i: int) -> bytes:
        return self.data[int(self.starts[i]) : int(self.ends[i])]

    def lines(self, positions: np.ndarray) -> list[bytes]:
        data = self.data
        return [data[a:b] for a, b in zip(self.starts[positions].tolist(), self.ends[positions].tolist(), strict=True)]

    @property
    def lengths(self) -> np.ndarray:
        return self.ends - self.starts


class _BlockLines(Sequence[bytes]):
    """Some lines of a block, made into bytes only when asked (quarantine stores the raw line)."""

    def __init__(self, block: _Block, positions: np.ndarray) -> None:
        self.block, self.positions = block, positions

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: Any) -> Any:
        return self.block.line(int(self.positions[int(index)]))


def _opened(path: Path) -> IO[bytes]:
    try:
        return path.open("rb")
    except OSError as exc:
        raise SourceFileError(f"{path.name}: cannot be read ({exc.strerror}) — check its permissions") from exc


def _chunks(handle: IO[bytes], block_bytes: int) -> Iterator[tuple[bytes, int, int]]:
    """The file in blocks of whole lines: (data, how many of its bytes are whole lines, where it starts in the file).
    A line longer than a block makes its block longer; a last line without its newline gets one."""
    carry, offset = b"", 0
    while True:
        chunk = handle.read(block_bytes)
        data = carry + chunk if carry else chunk
        if not chunk:
            if data:
                yield data + b"\n", len(data) + 1, offset
            return
        size = data.rfind(b"\n") + 1
        if not size:
            carry = data
            continue
        yield data, size, offset
        carry, offset = data[size:], offset + size


def _scanned(data: bytes, size: int, offset: int, before: int) -> _Block:
    """Locate the lines of ``data[:size]`` with numpy: newlines, then whitespace stripped from both ends."""
    view = np.frombuffer(data, dtype=np.uint8, count=size)
    newlines = _newlines(view)
    raw_starts = np.empty(len(newlines), dtype=np.int64)
    raw_starts[:1] = 0
    raw_starts[1:] = newlines[:-1] + 1
    raw_ends = newlines.astype(np.int64)
    starts, ends = raw_starts.copy(), raw_ends.copy()
    for _ in range(4):  # a few padding bytes are stripped column-wise, more line by line below
        lead = (starts < ends) & _WHITESPACE[view[np.minimum(starts, size - 1)]]
        trail = (starts < ends) & _WHITESPACE[view[np.maximum(ends - 1, 0)]]
        if not (lead.any() or trail.any()):
            break
        starts += lead
        ends -= trail
    padded = (starts < ends) & (_WHITESPACE[view[np.minimum(starts, size - 1)]] | _WHITESPACE[view[ends - 1]])
    for i in np.flatnonzero(padded).tolist():
        line = data[starts[i] : ends[i]]
        starts[i] += len(line) - len(line.lstrip())
        ends[i] -= len(line) - len(line.rstrip())
    kept = np.flatnonzero(starts < ends)
    return _Block(
        data, size, offset, len(newlines), before + 1 + kept, starts[kept], ends[kept], raw_starts[kept], raw_ends[kept]
    )


def _newlines(view: np.ndarray) -> np.ndarray:
    """Positions of the newline bytes: found a word of 8 bytes at a time, then within the words that hold one."""
    hits = view == _NEWLINE
    whole = len(hits) // 8 * 8
    words = np.flatnonzero(hits[:whole].view(np.uint64))
    inside = (words[:, None] * 8 + np.arange(8)).ravel()
    found = inside[hits[inside]]
    tail = whole + np.flatnonzero(hits[whole:])
    return np.concatenate([found, tail]) if len(tail) else found


@dataclass
class _Prepared:
    """A block as a worker thread leaves it: its lines located (numbered from 1 within the block), which of them
    pyarrow was given, and what it made of them."""

    block: _Block
    candidates: np.ndarray
    parsed: _Parsed


def _prepared(data: bytes, size: int, offset: int, row_by_row: bool) -> _Prepared:
    """Everything a block needs before its lines meet the lines before it (a worker thread's job: the numpy and
    pyarrow parts run without the GIL, beside the main thread's checks of the block before)."""
    block = _scanned(data, size, offset, 0)
    candidates = np.zeros(len(block.numbers), dtype=bool) if row_by_row else _candidates(block)
    parsed = _parse_block(*_parse_input(block, candidates)) if candidates.any() else _Parsed([], [])
    return _Prepared(block, candidates, parsed)


def _jsonl_parts(
    path: Path, intake: Intake, known: pd.Index, latest: int, block_bytes: int, row_by_row: bool
) -> Iterator[pd.DataFrame]:
    """The rows of the file's blocks: read here and prepared on worker threads (a few ahead), then checked here in
    order, once the first lines have shown the file is JSONL. The lines that go row by row come in parts of their
    own (``read_events`` puts all rows in line order)."""
    pending: deque[Future[_Prepared]] = deque()
    held: list[_Prepared] = []
    probe: list[bytes] = []
    decided, lines_before = False, 0
    slow = _SlowLines([], [], [])
    with _opened(path) as handle, ThreadPoolExecutor(max_workers=_PARSERS, thread_name_prefix="ga4") as pool:
        seen = _SeenLines(handle.fileno())
        chunks = _chunks(handle, block_bytes)
        while True:
            for data, size, offset in chunks:
                pending.append(pool.submit(_prepared, data, size, offset, row_by_row))
                if len(pending) > _PARSERS:
                    break
            if not pending:
                break
            ready = pending.popleft().result()
            block = ready.block
            block.numbers += lines_before
            lines_before += block.line_count
            intake.rows_read += len(block.numbers)
            if not decided:
                probe += block.lines(np.arange(min(len(block.numbers), _PROBE_LINES - len(probe))))
                decided = _is_jsonl(path, probe, complete=len(probe) >= _PROBE_LINES)
            held.append(ready)
            if decided:
                for each in held:
                    yield _block_rows(each, seen, slow, intake, known, latest)
                held = []
            if len(slow.lines) >= _SLOW_LINES:
                yield slow.rows(intake, known, latest)
        _is_jsonl(path, probe, complete=True)
        for each in held:
            yield _block_rows(each, seen, slow, intake, known, latest)
        if slow.lines:
            yield slow.rows(intake, known, latest)


def _is_jsonl(path: Path, lines: list[bytes], complete: bool) -> bool:
    """Refuse a file that is not JSONL (a CSV, a JSON array…): it must start like a JSON object, or at least one
    of its first lines must be one (a cut-off object line is a bad row, not a bad file). False while undecided:
    fewer lines than are looked at, none of them an object yet, and more may come (not ``complete``)."""
    if lines and lines[0].startswith(b"{"):
        return True
    for line in lines[:_PROBE_LINES]:
        try:
            if isinstance(orjson.loads(line), dict):
                return True
        except orjson.JSONDecodeError:
            continue
    if not lines or not complete:
        return complete
    raise SourceFileError(
        f"{path.name}: not JSONL — none of its first {min(len(lines), _PROBE_LINES)} lines is a JSON object; "
        f"{HOW_TO_EXPORT}"
    )


_SPECIAL_NUMBER = re.compile(rb"[:,\[]\s*-?(?:NaN|Inf)")  # pyarrow reads NaN, Inf, Infinity; JSON has none


def _candidates(block: _Block) -> np.ndarray:
    """The lines pyarrow may parse: they begin with ``{`` and end with ``}``, and hold nothing pyarrow would take
    but orjson (the row-by-row path) refuses: ``NaN``/``Infinity`` values, invalid UTF-8 (pyarrow does not
    check the fields it skips), nesting deeper than orjson allows."""
    view = np.frombuffer(block.data, dtype=np.uint8, count=block.size)
    braced = (view[block.starts] == _OPEN) & (view[block.ends - 1] == _CLOSE)
    data = memoryview(block.data)[: block.size]
    suspects: set[int] = set()
    hits = np.flatnonzero((view == ord("N")) | (view == ord("I")))  # numpy, not bytes.find: 2x faster, no GIL
    hits = hits[hits + 2 < block.size]
    special = np.zeros(len(hits), dtype=bool)
    for token in (b"NaN", b"Inf"):
        special |= (view[hits] == token[0]) & (view[hits + 1] == token[1]) & (view[hits + 2] == token[2])
    for line in np.unique(np.searchsorted(block.ends, hits[special])).tolist():
        if line < len(block.ends) and _SPECIAL_NUMBER.search(block.line(line)):
            suspects.add(line)
    if not block.data.isascii() and not _is_utf8(data):  # pure ASCII is UTF-8 (checked a word at a time)
        mark = np.frombuffer(block.data, dtype=np.uint8, count=block.size) >= 0x80
        for foreign in np.flatnonzero(np.logical_or.reduceat(mark, block.raw_starts)).tolist():
            if not _is_utf8(data[block.raw_starts[foreign] : block.raw_ends[foreign]]):
                suspects.add(foreign)
    for line in np.flatnonzero(block.lengths > _DEEP_LINE).tolist():
        text = block.line(line)
        if text.count(b"[") + text.count(b"{") > _MAX_OPENERS:
            suspects.add(line)
    if suspects:
        braced[[line for line in suspects if line < len(braced)]] = False
    return braced


def _is_utf8(data: memoryview) -> bool:
    try:
        str(data, "utf-8")
    except UnicodeDecodeError:
        return False
    return True


class _SeenLines:
    """Every distinct line read so far, by a key made of the line's length and what it parses to, with where the
    line lies in the file: a line whose key met an earlier line's is compared byte for byte with it (read back
    from the file), so a repeat is exactly a line repeated byte for byte. Keys are kept in sorted runs merged like
    a binary counter (a run is merged when the next grows as large), so each key moves O(log blocks) times."""

    def __init__(self, fileno: int) -> None:
        self.fileno = fileno
        self.runs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # keys, file offsets, lengths

    def first_seen(
        self, keys: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, line: Callable[[int], bytes]
    ) -> np.ndarray:
        """Mask of the lines (keys, their file offsets and lengths; ``line(i)``: the bytes of line ``i``) not seen
        before, in earlier blocks or earlier in this one."""
        order = np.argsort(keys, kind="stable")  # of equal keys, the earliest line comes first
        ordered = keys[order]  # sorted needles: the searches walk each run once
        met = np.zeros(len(keys), dtype=bool)
        met[order[1:][ordered[1:] == ordered[:-1]]] = True
        for run_keys, _, _ in self.runs:
            at = np.minimum(np.searchsorted(run_keys, ordered), len(run_keys) - 1)
            met[order[run_keys[at] == ordered]] = True
        fresh = np.ones(len(keys), dtype=bool)
        if met.any():
            self._compare(keys, met, fresh, line)
        self._remember(keys[fresh], offsets[fresh], lengths[fresh])
        return fresh

    def _compare(self, keys: np.ndarray, met: np.ndarray, fresh: np.ndarray, line: Callable[[int], bytes]) -> None:
        """Mark as repeats the lines whose key met another's and whose bytes equal an earlier line's."""
        shared = np.unique(keys[met])
        earlier: dict[int, list[bytes]] = {}
        for i in np.flatnonzero(np.isin(keys, shared)).tolist():
            key = int(keys[i])
            texts = earlier.get(key)
            if texts is None:
                texts = earlier[key] = self._stored(key)
            text = line(i)
            if text in texts:
                fresh[i] = False
            else:
                texts.append(text)

    def _stored(self, key: int) -> list[bytes]:
        texts = []
        for run_keys, offsets, lengths in self.runs:
            low = np.searchsorted(run_keys, np.uint64(key), "left")
            high = np.searchsorted(run_keys, np.uint64(key), "right")
            for offset, length in zip(offsets[low:high].tolist(), lengths[low:high].tolist(), strict=True):
                texts.append(os.pread(self.fileno, length, offset))
        return texts

    def _remember(self, keys: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> None:
        if not len(keys):
            return
        order = np.argsort(keys, kind="stable")
        run = (keys[order], offsets[order], lengths[order])
        while self.runs and len(self.runs[-1][0]) <= 2 * len(run[0]):
            older = self.runs.pop()
            merged = np.concatenate([older[0], run[0]])
            order = np.argsort(merged, kind="stable")  # two sorted runs: a linear merge
            run = (merged[order], np.concatenate([older[1], run[1]])[order], np.concatenate([older[2], run[2]])[order])
        self.runs.append(run)


_NO_STAMP = np.uint64(0x2545F4914F6CDD1D)
_KEY_MIX = np.uint64(0x9E3779B97F4A7C15)


def _line_keys(lengths: np.ndarray, stamps: np.ndarray, pseudo: np.ndarray, names: np.ndarray) -> np.ndarray:
    """A key per line from its length, ``event_timestamp``, and the hashes of ``user_pseudo_id`` and
    ``event_name`` (all uint64): byte-identical lines have equal keys (whichever path read them); the converse
    is checked byte for byte."""
    with np.errstate(over="ignore"):
        key = lengths.astype(np.uint64)
        for part in (stamps, pseudo, names):
            key = key * _KEY_MIX + part
        key ^= key >> np.uint64(31)
        return key * _KEY_MIX


def _string_hashes(array: pa.Array) -> np.ndarray:
    """Python's hash of each string (a constant where null), found once per distinct value."""
    encoded = pc.dictionary_encode(array)
    distinct = np.array([hash(value) for value in encoded.dictionary.to_pylist()] + [1], dtype=np.int64)
    return distinct[pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)].view(np.uint64)


def _value_keys(lines: list[bytes], parsed: list[Any]) -> np.ndarray:
    """The keys of lines read row by row: from what orjson made of them, as the columns give them for lines
    pyarrow read; a line that is not a JSON object is keyed by its bytes."""
    stamps, pseudo, names = [], [], []
    for line, value in zip(lines, parsed, strict=True):
        if type(value) is dict:
            stamp = value.get("event_timestamp")
            stamps.append(stamp if type(stamp) is int and -(2**63) <= stamp < 2**63 else None)
            pseudo.append(_hash_of_text(value.get("user_pseudo_id")))
            names.append(_hash_of_text(value.get("event_name")))
        else:
            stamps.append(None)
            pseudo.append(hash(line))
            names.append(2)
    stamp_keys = np.array([_NO_STAMP if s is None else np.int64(s).view(np.uint64) for s in stamps], dtype=np.uint64)
    return _line_keys(
        np.fromiter(map(len, lines), dtype=np.int64, count=len(lines)),
        stamp_keys,
        np.array(pseudo, dtype=np.int64).view(np.uint64),
        np.array(names, dtype=np.int64).view(np.uint64),
    )


def _hash_of_text(value: Any) -> int:
    return hash(value) if type(value) is str else 1


def _table_keys(table: pa.Table, lengths: np.ndarray) -> np.ndarray:
    stamp = table.column("event_timestamp").combine_chunks()
    stamps = np.where(stamp.is_null().to_numpy(zero_copy_only=False), _NO_STAMP,
                      pc.fill_null(stamp, 0).to_numpy().view(np.uint64))  # fmt: skip
    return _line_keys(
        lengths,
        stamps,
        _string_hashes(table.column("user_pseudo_id").combine_chunks()),
        _string_hashes(table.column("event_name").combine_chunks()),
    )


# --- JSONL: parsing a block ----------------------------------------------------------------------------


@dataclass
class _Parsed:
    """A block's candidate lines as parsed: tables of consecutive candidates (by the index of their first
    candidate) and the candidates that take the row-by-row path."""

    tables: list[tuple[int, pa.Table]]
    refused: list[int]


_ROW_OF_ERROR = re.compile(r"\bin row (\d+)\b")


def _parse_input(block: _Block, candidates: np.ndarray) -> tuple[pa.Buffer, np.ndarray, np.ndarray]:
    """The block's bytes with every other line blanked (pyarrow skips whitespace, so the n-th value parsed is the
    n-th candidate) and the candidates' raw bounds."""
    others = np.flatnonzero(~candidates)
    if len(others):
        buffer = bytearray(block.data[: block.size])
        view = np.frombuffer(buffer, dtype=np.uint8)
        for start, end in zip(block.raw_starts[others].tolist(), block.raw_ends[others].tolist(), strict=True):
            view[start:end] = 32
        data = pa.py_buffer(buffer)
    else:
        data = pa.py_buffer(block.data)
    chosen = np.flatnonzero(candidates)
    return data, block.raw_starts[chosen], block.raw_ends[chosen]


def _parse_block(data: pa.Buffer, starts: np.ndarray, ends: np.ndarray) -> _Parsed:
    """Parse the candidate lines with pyarrow (a worker thread's job). A failed parse names the row it stopped at:
    the lines before it are parsed again, that line is refused, the rest go on; a failure without a row (a
    value of the wrong type is found after the parse) halves the span. After ``_MISSES_PER_BLOCK`` failures the
    rest of the block is refused (a block riddled with bad lines is the row-by-row path's job)."""
    tables: list[tuple[int, pa.Table]] = []
    refused: list[int] = []
    spans = [(0, len(starts))]
    misses = 0
    while spans:
        first, stop = spans.pop()
        if first >= stop:
            continue
        if misses >= _MISSES_PER_BLOCK:
            refused.extend(range(first, stop))
            continue
        table, row = _parse_span(data, int(starts[first]), int(ends[stop - 1]) + 1, stop - first)
        if table is not None:
            tables.append((first, table))
            continue
        misses += 1
        if stop - first == 1:
            refused.append(first)
        elif row is not None and 0 <= row < stop - first:
            refused.append(first + row)
            spans += [(first + row + 1, stop), (first, first + row)]
        else:
            middle = (first + stop) // 2
            spans += [(middle, stop), (first, middle)]
    tables.sort(key=lambda piece: piece[0])
    return _Parsed(tables, sorted(refused))


def _parse_span(data: pa.Buffer, start: int, end: int, lines: int) -> tuple[pa.Table | None, int | None]:
    """``data[start:end]`` as one table of ``lines`` rows, or None and the row the parser stopped at (if said)."""
    options = pj.ReadOptions(use_threads=False, block_size=end - start + 1)  # one block: rows count from 0
    try:
        table = pj.read_json(pa.BufferReader(data.slice(start, end - start)), read_options=options,
                             parse_options=_PARSE)  # fmt: skip
    except pa.ArrowException as exc:
        found = _ROW_OF_ERROR.search(str(exc))
        return None, int(found.group(1)) if found else None
    if table.num_rows != lines:  # a line holding two objects
        return None, None
    return table, None


@dataclass
class _SlowLines:
    """Lines for the row-by-row path, gathered across blocks and checked together (the path has a fixed cost per
    call that a block's few bad lines would pay again and again); their rows are put in line order at the end."""

    numbers: list[np.ndarray]
    lines: list[bytes]
    values: list[Any]

    def add(self, numbers: np.ndarray, lines: list[bytes], values: list[Any]) -> None:
        self.numbers.append(numbers)
        self.lines += lines
        self.values += values

    def rows(self, intake: Intake, known: pd.Index, latest: int) -> pd.DataFrame:
        """The gathered lines checked and flattened (then forgotten)."""
        numbers = np.concatenate(self.numbers) if self.numbers else np.zeros(0, dtype=np.int64)
        rows = _chunk_rows(numbers, self.lines, intake, known, latest, self.values)
        self.numbers, self.lines, self.values = [], [], []
        return rows


def _block_rows(
    ready: _Prepared, seen: _SeenLines, slow: _SlowLines, intake: Intake, known: pd.Index, latest: int
) -> pd.DataFrame:
    """One block's parsed lines checked column-wise, once repeats are skipped; its other lines join ``slow``."""
    block, parsed = ready.block, ready.parsed
    chosen = np.flatnonzero(ready.candidates)
    tables = [table for _, table in parsed.tables]
    pieces = [chosen[start : start + table.num_rows] for start, table in parsed.tables]
    parsed_at = np.concatenate(pieces).astype(np.int64) if pieces else np.zeros(0, dtype=np.int64)
    table = pa.concat_tables(tables) if tables else None
    others = np.ones(len(block.numbers), dtype=bool)
    others[parsed_at] = False
    slow_at = np.flatnonzero(others)
    slow_lines = block.lines(slow_at)
    with _collector_paused():
        slow_values = [_loads(line) for line in slow_lines]
    keys = np.zeros(len(block.numbers), dtype=np.uint64)
    lengths = block.lengths
    if table is not None:
        keys[parsed_at] = _table_keys(table, lengths[parsed_at])
    if len(slow_at):
        keys[slow_at] = _value_keys(slow_lines, slow_values)
    fresh = seen.first_seen(keys, block.offset + block.starts, lengths, block.line)
    intake.duplicates_skipped += int((~fresh).sum())
    kept = fresh[slow_at]
    if kept.any():
        slow.add(
            block.numbers[slow_at[kept]],
            [line for line, keep in zip(slow_lines, kept.tolist(), strict=True) if keep],
            [value for value, keep in zip(slow_values, kept.tolist(), strict=True) if keep],
        )
    if table is None:
        return _empty_frame()
    kept = fresh[parsed_at]
    if not kept.all():
        table, parsed_at = table.filter(pa.array(kept)), parsed_at[kept]
    chunk = _Chunk(block.numbers[parsed_at], _BlockLines(block, parsed_at), intake, parsed=True)
    return _columnar_rows(chunk, table, known, latest)


# --- Parquet -------------------------------------------------------------------------------------------


_NEEDED = {
    "user_pseudo_id": None,
    "user_id": None,
    "event_name": None,
    "event_timestamp": None,
    "items": ("item_id", "quantity", "price"),
    "ecommerce": ("transaction_id",),
    "traffic_source": ("source", "medium"),
}
_REQUIRED = ("user_pseudo_id", "event_name", "event_timestamp")


def _parquet_parts(path: Path, intake: Intake, known: pd.Index, latest: int, batch_rows: int) -> Iterator[pd.DataFrame]:
    """Each batch's rows; rows repeating an earlier row in every column read are skipped as duplicates."""
    try:
        file = pq.ParquetFile(path)
    except OSError as exc:
        raise SourceFileError(f"{path.name}: cannot be read ({exc.strerror}) — check its permissions") from exc
    except pa.ArrowException as exc:
        raise SourceFileError(f"{path.name}: not a Parquet file ({exc}) — {HOW_TO_EXPORT}") from exc
    names = set(file.schema_arrow.names)
    missing = [name for name in _REQUIRED if name not in names]
    if missing:
        columns = ", ".join(missing)
        raise SourceFileError(f"{path.name}: not a GA4 events export — no column {columns}; {HOW_TO_EXPORT}")
    repeats = _RepeatFilter()
    first_row = 1
    for batch in file.iter_batches(batch_size=batch_rows, columns=_leaves(file)):
        table = _conformed(path, pa.Table.from_batches([batch]))
        numbers = np.arange(first_row, first_row + table.num_rows, dtype=np.int64)
        first_row += table.num_rows
        intake.rows_read += table.num_rows
        fresh = repeats.first_seen(*_row_keys(table))
        intake.duplicates_skipped += int((~fresh).sum())
        if not fresh.all():
            table = table.filter(pa.array(fresh))
            numbers = numbers[fresh]
        yield _columnar_rows(_Chunk(numbers, _RowTexts(table), intake), table, known, latest)


def _leaves(file: pq.ParquetFile) -> list[str]:
    """The file's columns the events table is made of, nested ones down to the fields read (an export's items
    carry names, categories and parameters no event row keeps)."""
    chosen = []
    for i in range(len(file.schema)):
        path = file.schema.column(i).path
        top, leaf = path.split(".")[0], path.split(".")[-1]
        if top not in _NEEDED:
            continue
        fields = _NEEDED[top]
        if (fields is None and path == top) or (fields is not None and path != top and leaf in fields):
            chosen.append(path)
    return chosen


class _RowTexts(Sequence[bytes]):
    """A Parquet batch's rows as JSON (what quarantine stores as the raw row), made only for the rows asked."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table

    def __len__(self) -> int:
        return self.table.num_rows

    def __getitem__(self, index: Any) -> Any:
        return self.many(np.array([int(index)]))[0]

    def many(self, positions: np.ndarray) -> list[bytes]:
        """The rows at ``positions`` as JSON, converted in one go."""
        return [orjson.dumps(row, default=str) for row in self.table.take(pa.array(positions)).to_pylist()]


def _conformed(path: Path, table: pa.Table) -> pa.Table:
    """The batch in :data:`SCHEMA`: absent columns null, numbers as the schema wants them, text from text or
    whole numbers (as JSON's numbers become text); a column of another kind refuses the file."""
    count = table.num_rows
    columns: dict[str, pa.Array] = {}
    for field in SCHEMA:
        found = table.column(field.name).combine_chunks() if field.name in table.column_names else None
        columns[field.name] = _as_type(path, field.name, found, field.type, count)
    return pa.Table.from_pydict(columns, schema=SCHEMA)


def _as_type(path: Path, name: str, array: pa.Array | None, wanted: pa.DataType, count: int) -> pa.Array:
    if array is None:
        return pa.nulls(count, wanted)
    kind = array.type
    if kind == wanted:
        return array
    if pa.types.is_struct(wanted):
        if not pa.types.is_struct(kind):
            raise _wrong_kind(path, name, kind)
        children = [
            _as_type(path, f"{name}.{child.name}", _child(array, child.name), child.type, count) for child in wanted
        ]
        return pa.StructArray.from_arrays(children, fields=list(wanted), mask=array.is_null())
    if pa.types.is_list(wanted):
        if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)):
            raise _wrong_kind(path, name, kind)
        values = pc.list_flatten(array)
        inner = _as_type(path, f"{name}[]", values, wanted.value_type, len(values))
        lengths = pc.fill_null(pc.list_value_length(array), 0).to_numpy(zero_copy_only=False)
        offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
        return pa.ListArray.from_arrays(offsets, inner, type=wanted, mask=array.is_null())
    if pa.types.is_string(wanted) and (pa.types.is_string(kind) or pa.types.is_large_string(kind)
                                       or pa.types.is_string_view(kind) or pa.types.is_integer(kind)):  # fmt: skip
        return pc.cast(array, wanted)
    if pa.types.is_integer(wanted) and pa.types.is_timestamp(kind):
        return pc.cast(pc.cast(array, pa.timestamp("us", tz=kind.tz)), wanted)
    if pa.types.is_integer(wanted) and pa.types.is_integer(kind):
        return pc.cast(array, wanted, safe=False)  # an unsigned stamp past 2^63 wraps negative: not microseconds
    if pa.types.is_floating(wanted) and (pa.types.is_integer(kind) or pa.types.is_floating(kind)
                                         or pa.types.is_decimal(kind)):  # fmt: skip
        return pc.cast(array, wanted, safe=False)
    raise _wrong_kind(path, name, kind)


def _child(array: pa.StructArray, name: str) -> pa.Array | None:
    if array.type.get_field_index(name) < 0:
        return None
    return pc.struct_field(array, name)


def _wrong_kind(path: Path, name: str, kind: pa.DataType) -> SourceFileError:
    return SourceFileError(f"{path.name}: column {name} holds {kind}, not what a GA4 export holds — {HOW_TO_EXPORT}")


class _RepeatFilter:
    """Remembers every row key seen (two 64-bit hashes) to skip exact repeats across batches, in sorted runs
    merged like a binary counter (a run is merged when the next grows as large)."""

    def __init__(self) -> None:
        self.runs: list[tuple[np.ndarray, np.ndarray]] = []

    def first_seen(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """Mask of keys not seen before (in earlier batches or earlier in this one)."""
        order = np.lexsort((second, first))  # stable: of equal keys, the earliest row comes first
        ones, twos = first[order], second[order]
        repeated = np.zeros(len(order), dtype=bool)
        repeated[1:] = (ones[1:] == ones[:-1]) & (twos[1:] == twos[:-1])
        for run_first, run_second in self.runs:
            at = np.minimum(np.searchsorted(run_first, ones), len(run_first) - 1)  # sorted needles: one walk
            repeated |= (run_first[at] == ones) & (run_second[at] == twos)
        fresh = np.ones(len(order), dtype=bool)
        fresh[order[repeated]] = False
        run = (ones[~repeated], twos[~repeated])
        while len(run[0]) and self.runs and len(self.runs[-1][0]) <= 2 * len(run[0]):
            older = self.runs.pop()
            merged = np.concatenate([older[0], run[0]])
            by = np.argsort(merged, kind="stable")  # two sorted runs: a linear merge
            run = (merged[by], np.concatenate([older[1], run[1]])[by])
        if len(run[0]):
            self.runs.append(run)
        return fresh


_HASH_KEY = "omnicast-dedup-1"  # 16 bytes, as pandas wants
_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F))
_NULL = (np.uint64(0x5BD1E9955BD1E995), np.uint64(0x27D4EB2F165667C5))


def _row_keys(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Two independent 64-bit hashes of each row's values in every column read (items in order), for finding
    repeats: text hashed by Python's SipHash and by pandas' keyed hash, numbers mixed in as they are (two rows
    that differ in a number never share a key)."""
    items = table.column("items").combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(items), -1).to_numpy(zero_copy_only=False).astype(np.int64)
    counts = np.maximum(lengths, 0)  # -1: no list at all, apart from an empty one
    owner = np.repeat(np.arange(table.num_rows), counts)
    position = (np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)).astype(np.uint64)
    elements = pc.list_flatten(items)
    nulls = elements.is_null().to_numpy(zero_copy_only=False).astype(np.uint64)
    per_item = [pc.struct_field(elements, name) for name in ("item_id", "quantity", "price")]
    per_row = [table.column(name).combine_chunks() for name in ("user_pseudo_id", "user_id", "event_name",
                                                                 "event_timestamp")]  # fmt: skip
    for nested in ("ecommerce", "traffic_source"):
        struct = table.column(nested).combine_chunks()
        per_row += [pc.struct_field(struct, struct.type.field(i).name) for i in range(struct.type.num_fields)]
    with np.errstate(over="ignore"):
        rows = [lengths.view(np.uint64), lengths.view(np.uint64) * _MIX[1]]
        cells = [position + nulls * _NULL[0], position * _MIX[0] + nulls]
        for arrays, keys in ((per_row, rows), (per_item, cells)):
            for array in arrays:
                for k, hashed in enumerate(_hashed(array)):
                    keys[k] = keys[k] * _MIX[k] + hashed
        keys = []
        for k in range(2):
            summed = np.zeros(table.num_rows, dtype=np.uint64)
            np.add.at(summed, owner, pd.util.hash_array(cells[k]))  # hashed again: a sum of linear mixes would
            keys.append(rows[k] * _MIX[k] + summed)  # not tell two items swapped
    return keys[0], keys[1]


def _hashed(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Two hashes per value (nulls hash alike, apart from every value): text by two keyed hash functions, once per
    distinct value; a number by its own bits."""
    null = array.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_string(array.type):
        encoded = pc.dictionary_encode(array)
        values = encoded.dictionary.to_pylist()
        first = np.fromiter(map(hash, values), dtype=np.int64, count=len(values)).view(np.uint64)
        second = pd.util.hash_array(np.asarray(values, dtype=object), hash_key=_HASH_KEY, categorize=False)
        indices = pc.fill_null(encoded.indices, 0).to_numpy(zero_copy_only=False)
        pair = (first[indices], second[indices]) if len(values) else (np.zeros(len(null), np.uint64),) * 2
    else:
        bits = pc.fill_null(array, 0).to_numpy(zero_copy_only=False)
        bits = bits.astype(np.float64 if bits.dtype.kind == "f" else np.int64).view(np.uint64)
        pair = (bits, bits)
    return np.where(null, _NULL[0], pair[0]), np.where(null, _NULL[1], pair[1])


# --- column-wise checks (JSONL blocks and Parquet batches alike) ----------------------------------------


@dataclass
class _Chunk:
    """A block's lines (or a batch's rows) with their line numbers, to quarantine by position. ``parsed``: every
    line is known to be JSON (pyarrow read it), so its raw text is itself."""

    numbers: np.ndarray
    lines: Sequence[bytes]
    intake: Intake
    parsed: bool = False

    def reject(self, positions: np.ndarray, column: str | None, reasons: list[str] | str) -> None:
        if len(positions):
            many = isinstance(self.lines, _RowTexts)
            lines = self.lines.many(positions) if many else [self.lines[i] for i in positions]  # type: ignore[attr-defined]
            if self.parsed:
                raw = [line.decode("utf-8", errors="replace").strip() for line in lines]
            else:
                raw = [_raw_text(line) for line in lines]
            texts = reasons if isinstance(reasons, list) else [reasons] * len(positions)
            self.intake.add_rejected(self.numbers[positions], column, pd.Series(texts, dtype=object), raw)


_PYTHON_SPACE = r"[\t-\r\x1c-\x20\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]"
_UNTRIMMED = f"^{_PYTHON_SPACE}|{_PYTHON_SPACE}$"
"""A value ``str.strip`` would change: one starting or ending with what ``str.isspace`` calls whitespace."""


@dataclass
class _Text:
    """A text column as category codes (-1: missing) into trimmed, distinct values."""

    codes: np.ndarray
    categories: pa.Array

    @property
    def missing(self) -> np.ndarray:
        return np.asarray(self.codes < 0)

    def categorical(self, rows: np.ndarray) -> pd.Categorical:
        """The values at ``rows`` as a categorical holding only the categories they use."""
        codes = self.codes[rows]
        used = np.bincount(codes + 1, minlength=len(self.categories) + 1)[1:] > 0
        renumbered = np.append(np.cumsum(used) - 1, -1)  # code -1 (missing) finds the -1 appended
        categories = pd.Index(pd.array(self.categories.filter(pa.array(used)), dtype="str"))
        return pd.Categorical.from_codes(renumbered[codes], dtype=pd.CategoricalDtype(categories), validate=False)


def _text(array: pa.Array | pa.ChunkedArray) -> _Text:
    """Trimmed text, missing where null or empty, like the row path's ``_text_of``: distinct values are found
    with pyarrow, and the few that need trimming are trimmed in Python (so whitespace means what it means to
    ``str.strip``)."""
    encoded = pc.dictionary_encode(array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array)
    values = encoded.dictionary
    indices = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    odd = pc.or_(pc.match_substring_regex(values, _UNTRIMMED), pc.equal(pc.binary_length(values), 0))
    if not pc.any(odd).as_py():
        return _Text(indices, values)
    trimmed = [value.strip() for value in values.to_pylist()]
    distinct = list(dict.fromkeys(value for value in trimmed if value))
    where = {value: code for code, value in enumerate(distinct)}
    lookup = np.array([where.get(value, -1) for value in trimmed] + [-1], dtype=np.int64)
    return _Text(lookup[indices], pa.array(distinct, type=pa.string()))  # index -1 (null) finds the -1 appended


def _traffic(source: _Text, medium: _Text) -> _Text:
    """``source / medium`` (either as ``(none)`` when missing), missing when both are."""
    width = len(medium.categories) + 1
    pairs = (source.codes + 1) * width + (medium.codes + 1)
    if (len(source.categories) + 1) * width <= 1 << 20:  # few sources and media: a dense table
        present = np.flatnonzero(np.bincount(pairs, minlength=(len(source.categories) + 1) * width))
        position = np.zeros((len(source.categories) + 1) * width, dtype=np.int64)
        position[present] = np.arange(len(present))
        distinct, codes = present, position[pairs]
    else:
        distinct, codes = np.unique(pairs, return_inverse=True)
    sources, media = source.categories.to_pylist(), medium.categories.to_pylist()
    labels: dict[str, int] = {}
    lookup = np.full(len(distinct) + 1, -1, dtype=np.int64)
    for at, pair in enumerate(distinct.tolist()):
        s, m = divmod(pair, width)
        if s or m:
            label = f"{sources[s - 1] if s else '(none)'} / {media[m - 1] if m else '(none)'}"
            lookup[at] = labels.setdefault(label, len(labels))
    return _Text(lookup[codes], pa.array(list(labels), type=pa.string()))


def _columnar_rows(chunk: _Chunk, table: pa.Table, known: pd.Index, latest: int) -> pd.DataFrame:
    """The checks of the row path (same reasons, same order), column by column on a parsed table."""
    ecommerce, traffic = table.column("ecommerce").combine_chunks(), table.column("traffic_source").combine_chunks()
    text = {
        "user_pseudo_id": _text(table.column("user_pseudo_id")),
        "user_id": _text(table.column("user_id")),
        "event_name": _text(table.column("event_name")),
        "transaction_id": _text(pc.struct_field(ecommerce, "transaction_id")),
        "traffic_source": _traffic(
            _text(pc.struct_field(traffic, "source")), _text(pc.struct_field(traffic, "medium"))
        ),
    }
    stamp = pc.fill_null(table.column("event_timestamp"), 0).to_numpy()
    bad_stamp = (stamp <= 0) | (stamp >= _MAX_MICROSECONDS)
    alive = np.ones(table.num_rows, dtype=bool)
    future = ~bad_stamp & (stamp > latest)
    for column, invalid, reason in (
        ("user_pseudo_id", text["user_pseudo_id"].missing, "missing user_pseudo_id"),
        ("event_name", text["event_name"].missing, "missing event_name"),
        ("event_timestamp", bad_stamp, "event_timestamp is not microseconds since the epoch"),
        ("event_timestamp", future, "event_timestamp is in the future (after the sync's clock + 1 day)"),
    ):
        hit = alive & invalid
        chunk.reject(np.flatnonzero(hit), column, reason)
        alive &= ~hit
    items = table.column("items").combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(items), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    elements = pc.list_flatten(items)
    sku = _text(pc.struct_field(elements, "item_id"))
    quantity = pc.struct_field(elements, "quantity").to_numpy(zero_copy_only=False)
    price = pc.struct_field(elements, "price").to_numpy(zero_copy_only=False)
    problem = _item_problems(sku, quantity, elements.is_null().to_numpy(zero_copy_only=False), known)
    first_item = np.cumsum(lengths) - lengths
    bad_events, reasons = _first_problems(problem, sku, lengths, first_item, alive)
    alive[bad_events] = False
    chunk.reject(bad_events, "items", reasons)
    events = np.flatnonzero(alive)
    per_event = np.maximum(lengths[events], 1)
    at = np.repeat(events, per_event)
    has_item = np.repeat(lengths[events] > 0, per_event)
    within = np.arange(len(at)) - np.repeat(np.cumsum(per_event) - per_event, per_event)
    item = np.where(has_item, np.repeat(first_item[events], per_event) + within, len(quantity))
    count = np.append(quantity, np.nan)[item]  # a row without an item finds the NaN appended
    value = np.append(price, np.nan)[item] * np.where(np.isnan(count), 1.0, count)
    rows = pd.DataFrame(
        {
            "user_pseudo_id": text["user_pseudo_id"].categorical(at),
            "user_id": text["user_id"].categorical(at),
            "event_name": text["event_name"].categorical(at),
            "occurred_at": pd.to_datetime(pd.Series(stamp[at]), unit="us", utc=True),
            "sku": _Text(np.append(sku.codes, -1), sku.categories).categorical(item),
            "quantity": pd.arrays.IntegerArray(
                np.where(np.isnan(count), 0, np.round(count)).astype(np.int64), np.isnan(count)
            ),
            "value": value,
            "transaction_id": text["transaction_id"].categorical(at),
            "traffic_source": text["traffic_source"].categorical(at),
            ROW: chunk.numbers[at],
        }
    )
    return _without_nul(chunk, rows)


_NO_PROBLEM, _BAD_QUANTITY, _UNKNOWN_SKU, _NO_SKU, _NOT_OBJECT = range(5)


def _item_problems(sku: _Text, quantity: np.ndarray, null: np.ndarray, known: pd.Index) -> np.ndarray:
    """Each item's problem, the row path's precedence (not an object > no SKU > unknown SKU > quantity)."""
    problem = np.full(len(null), _NO_PROBLEM, dtype=np.int8)
    with np.errstate(invalid="ignore"):
        problem[np.abs(quantity) > MAX_INTEGER] = _BAD_QUANTITY
    listed = pc.is_in(sku.categories, value_set=pa.array(known.to_numpy(dtype=object), type=pa.string()))
    known_category = np.append(listed.to_numpy(zero_copy_only=False), False)  # code -1 finds the False appended
    problem[(sku.codes >= 0) & ~known_category[sku.codes]] = _UNKNOWN_SKU
    problem[sku.codes < 0] = _NO_SKU
    problem[null] = _NOT_OBJECT
    return problem


def _first_problems(
    problem: np.ndarray, sku: _Text, lengths: np.ndarray, first_item: np.ndarray, alive: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """The live events with a bad item, and for each the reason of its first bad item."""
    bad = np.flatnonzero(problem != _NO_PROBLEM)
    owner = np.searchsorted(first_item + lengths, bad, side="right")
    live = alive[owner]
    bad, owner = bad[live], owner[live]
    events, first = np.unique(owner, return_index=True)
    items = bad[first]
    reasons = []
    for kind, code in zip(problem[items].tolist(), sku.codes[items].tolist(), strict=True):
        quoted = repr(sku.categories[code].as_py()) if code >= 0 else "None"
        if kind == _BAD_QUANTITY:
            reasons.append(f"quantity of {quoted} is not a number (or is too large)")
        elif kind == _UNKNOWN_SKU:
            reasons.append(f"unknown SKU {quoted}")
        elif kind == _NO_SKU:
            reasons.append("an item has no item_id (SKU)")
        else:
            reasons.append("an item is not an object")
    return events, reasons


# --- the row-by-row path: lines pyarrow refused -----------------------------------------------------------


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


def _chunk_rows(
    numbers: np.ndarray,
    lines: list[bytes],
    intake: Intake,
    known: pd.Index,
    latest: int,
    parsed: list[Any] | None = None,
) -> pd.DataFrame:
    """Parse (unless ``parsed`` holds what orjson made of each line), check and flatten lines one by one
    (``latest``: the last acceptable event_timestamp, µs)."""
    chunk = _Chunk(numbers, lines, intake)
    if parsed is None:
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


def _text_of(value: Any) -> str | None:
    if type(value) is str:
        return value.strip() or None
    return None if value is None else str(value).strip() or None


def _text_column(values: Iterable[Any]) -> pd.Series:
    """Trimmed text, None where missing or empty (numbers become their text)."""
    return pd.Series([_text_of(value) for value in values], dtype=object)


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
    with_items["value"] = keep["value"].to_numpy(dtype="float64")
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
    """Blocks glued together, keeping the category columns compact; categories sorted, so the frame is the same
    however the file was cut into blocks."""
    frame = pd.concat([part.drop(columns=_REPEATED) for part in parts], ignore_index=True)
    for name in _REPEATED:
        frame[name] = union_categoricals([_text_categories(part[name]) for part in parts], sort_categories=True)
    return frame[EVENT_COLUMNS]


def _text_categories(column: pd.Series) -> pd.Series:
    """A category column whose categories are text (one without any value has untyped categories)."""
    if column.cat.categories.dtype == "str":
        return column
    return column.cat.set_categories(pd.Index(column.cat.categories.astype(str), dtype="str"))


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
