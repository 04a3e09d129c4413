"""Reading and checking source files: the machinery the Shopify, CRM and analytics readers share.

A reader turns a file into a frame of rows that passed every row-level check plus an :class:`Intake`, the
file's accounting: rows read, rows quarantined (row number, column, reason, the raw row), exact duplicates
skipped, and cells set aside. Two scopes of quarantine:

- **row**: the row cannot say who or what it is about (no Customer ID, no SKU, a malformed CSV record, ...)
  and is not loaded. ``rows_read = rows_loaded + rows_quarantined + duplicates_skipped`` holds by
  construction (:meth:`Intake.reject` moves rows out in one pass) and :meth:`Intake.count` verifies it.
- **field**: one cell is bad (a phone, a birthday, a consent word, ...) but the row identifies its person or
  thing, so the row is loaded with that value unknown and the cell is recorded (:meth:`Intake.set_aside`).
  A consent statement is the most important fact in a row: a bad birthday must never cost an opt-out.

Checks are vectorized: each yields a boolean mask over the frame. A row quarantined whole that still states
a consent denial (and says whose) keeps that denial (:meth:`Intake.keep_denials`): never an unconsented send.

Malformed CSV records (too few or too many fields) are found by a csv-module pre-scan: pandas pads short
rows silently. The scan costs ~1.5 s per million rows; pandas then reads the file as strings. Two rarer
problems switch to an exact, record-by-record read (:func:`_read_exact`): a cell over
:data:`MAX_FIELD_CHARS` (the row is quarantined, naming the column) and a stray quote that swallowed the
lines after it into one record (those lines are read one by one).

Normalizers and parsers work on the unique values of a column (a million order rows hold far fewer emails
or prices), with the well-kept libraries as the authority: ``email-validator`` for emails,
``phonenumbers`` for phones.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import phonenumbers
import pyarrow as pa
import pyarrow.csv as pa_csv
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from models.errors import InputError

ROW = "_row"
"""Column added to every frame: the 1-based data row number (header excluded; JSONL: line number)."""

QUARANTINE_COLUMNS = ["row_number", "column", "reason", "scope", "raw"]
DENIAL_COLUMNS = ["external_id", "email", "channel", "recorded_at"]

MAX_FIELD_CHARS = 65_536
"""The longest cell a row may hold (64 KiB). A product description is a few KiB; a cell longer than this is a
pasted file or a broken export, and its row is quarantined naming the column (the rest of the file loads)."""

FUTURE_TOLERANCE = pd.Timedelta(days=1)
"""How far after the sync's clock a timestamp may lie (time zones, clock skew) before it is "in the future"."""

_EXACT_FIELD_LIMIT = 1 << 30  # the csv module's own limit while reading exactly: cells are measured, not refused
_RAW_CELL_CHARS = 1_000  # an oversized cell is kept this long in the quarantined raw row


class SourceFileError(InputError):
    """A whole file is unusable; the message names the file, what is wrong and how to fix it."""


@dataclass
class SourceCount:
    """Reconciliation of one source file in one run: read = loaded + quarantined + duplicates skipped + forgotten.

    ``fields_quarantined`` counts cells set aside in rows that were loaded anyway; it is no part of the equation.
    ``forgotten_skipped`` counts rows of people erased by `omnicast forget` (their address is on the suppression
    list): never loaded again, never kept in quarantine.
    """

    source: str
    file: str
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    duplicates_skipped: int
    fields_quarantined: int = 0
    forgotten_skipped: int = 0

    @property
    def reconciles(self) -> bool:
        """True when every row read is accounted for."""
        accounted = self.rows_loaded + self.rows_quarantined + self.duplicates_skipped + self.forgotten_skipped
        return self.rows_read == accounted


@dataclass
class Intake:
    """The accounting of one file while it is read and checked."""

    source: str
    file: str
    columns: list[str] = field(default_factory=list)
    rows_read: int = 0
    duplicates_skipped: int = 0
    forgotten_skipped: int = 0
    rejected: list[pd.DataFrame] = field(default_factory=list)
    set_aside_cells: list[pd.DataFrame] = field(default_factory=list)
    denials: list[pd.DataFrame] = field(default_factory=list)
    original: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def rows_quarantined(self) -> int:
        return sum(len(part) for part in self.rejected)

    @property
    def fields_quarantined(self) -> int:
        return sum(len(part) for part in self.set_aside_cells)

    def reject(
        self,
        frame: pd.DataFrame,
        mask: pd.Series,
        column: str | None | pd.Series,
        reason: str | pd.Series,
    ) -> pd.DataFrame:
        """Quarantine the rows of ``frame`` where ``mask`` holds; return the others.

        ``column`` and ``reason`` are one value for all rows or Series aligned with ``frame``. The raw row
        stored is the row as read (all its columns), whatever columns ``frame`` still carries.
        """
        mask = _aligned(mask, frame)
        if not mask.any():
            return frame
        bad = frame.loc[mask, [ROW]]
        self.add_rejected(
            bad[ROW].to_numpy(),
            column[mask] if isinstance(column, pd.Series) else column,
            reason[mask] if isinstance(reason, pd.Series) else reason,
            self.raw_rows(bad.index),
        )
        return frame[~mask]

    def set_aside(self, frame: pd.DataFrame, mask: pd.Series, column: str, reason: str | pd.Series) -> pd.Series:
        """Record the cells of ``column`` where ``mask`` holds as field-level quarantine; the rows stay loaded.

        Returns the mask aligned with ``frame``: the caller treats those values as unknown (None).
        """
        mask = _aligned(mask, frame)
        if mask.any():
            bad = frame.loc[mask, [ROW]]
            reasons = reason[mask] if isinstance(reason, pd.Series) else reason
            self.set_aside_cells.append(
                _entries(bad[ROW].to_numpy(), column, reasons, self.raw_rows(bad.index), "field")
            )
        return mask

    def keep_denials(self, denials: pd.DataFrame) -> None:
        """Consent denials stated by rows quarantined whole: they still count (see :func:`stated_denials`)."""
        if not denials.empty:
            self.denials.append(denials[DENIAL_COLUMNS])

    def kept_denials(self) -> pd.DataFrame:
        """Every denial kept from quarantined rows (columns :data:`DENIAL_COLUMNS`)."""
        if not self.denials:
            return pd.DataFrame({name: pd.Series(dtype=object) for name in DENIAL_COLUMNS})
        return pd.concat(self.denials, ignore_index=True)

    def release(self) -> None:
        """Forget the rows as read once the checks are done (a big export holds a lot of text)."""
        self.original = None

    def raw_rows(self, index: pd.Index) -> list[str]:
        """The rows as read (JSON objects of the original columns) for these frame labels."""
        source = self.original if self.original is not None else pd.DataFrame(index=index)
        columns = [name for name in self.columns if name in source.columns]
        records = source.loc[index, columns].to_dict("records")
        return [json.dumps(row, ensure_ascii=False) for row in records]

    def add_rejected(
        self,
        rows: Sequence[int] | np.ndarray,
        column: str | None | pd.Series,
        reason: str | pd.Series,
        raw: Sequence[str],
    ) -> None:
        """Record already-separated bad rows (e.g. lines that are not even parseable)."""
        self.rejected.append(_entries(rows, column, reason, raw, "row"))

    def drop_duplicates(
        self, frame: pd.DataFrame, subset: list[str] | None = None, keep: list[str] | None = None
    ) -> pd.DataFrame:
        """Skip rows repeated field for field (an exact duplicate of an earlier row); count them. ``keep``: only
        these columns of the rows left are wanted (the others are not copied).

        Rows are hashed first and only rows sharing a hash compared field by field: the same answer as comparing
        every row, without factorizing every column of a wide export at once (-350 MB on a 1M-line orders file)."""
        columns = subset or self.columns
        hashes = pd.util.hash_pandas_object(frame.loc[:, columns], index=False)
        candidates = hashes.duplicated(keep=False).to_numpy()
        dup = np.zeros(len(frame), dtype=bool)
        if candidates.any():
            dup[candidates] = frame.loc[candidates, columns].duplicated(keep="first").to_numpy()
        self.duplicates_skipped += int(dup.sum())
        if keep is not None:
            frame = frame.loc[:, keep]
        return frame[~dup] if dup.any() else frame

    def quarantine(self) -> pd.DataFrame:
        """All quarantined rows and set-aside cells so far, ordered by row number (``scope`` tells which)."""
        parts = self.rejected + self.set_aside_cells
        if not parts:
            return pd.DataFrame({name: pd.Series(dtype=object) for name in QUARANTINE_COLUMNS})
        return pd.concat(parts, ignore_index=True).sort_values("row_number", kind="stable")

    def count(self, rows_loaded: int) -> SourceCount:
        """The reconciliation for this file; raises if a row went missing (a bug, never bad input)."""
        result = SourceCount(
            self.source,
            self.file,
            self.rows_read,
            rows_loaded,
            self.rows_quarantined,
            self.duplicates_skipped,
            self.fields_quarantined,
            self.forgotten_skipped,
        )
        if not result.reconciles:
            raise RuntimeError(
                f"{self.file}: {self.rows_read} rows read but {rows_loaded} loaded + {result.rows_quarantined} "
                f"quarantined + {self.duplicates_skipped} duplicates: rows were lost, please report this"
            )
        return result


def _aligned(mask: pd.Series, frame: pd.DataFrame) -> pd.Series:
    """``mask`` over exactly ``frame``'s rows, missing labels False."""
    return mask.reindex(frame.index, fill_value=False).fillna(False).astype(bool)


def _entries(
    rows: Sequence[int] | np.ndarray,
    column: str | None | pd.Series,
    reason: str | pd.Series,
    raw: Sequence[str],
    scope: str,
) -> pd.DataFrame:
    reasons = list(reason) if isinstance(reason, pd.Series) else [reason] * len(raw)
    columns = list(column) if isinstance(column, pd.Series) else [column] * len(raw)
    return pd.DataFrame(
        {
            "row_number": np.asarray(rows, dtype="int64"),
            "column": pd.Series(columns, dtype=object),
            "reason": pd.Series(reasons, dtype=object),
            "scope": scope,
            "raw": pd.Series(list(raw), dtype=object),
        }
    )


def set_aside_each(
    intake: Intake, frame: pd.DataFrame, checks: Sequence[tuple[str, pd.Series, str | pd.Series]]
) -> dict[str, pd.Series]:
    """Apply field-level (column, invalid mask, reason) checks: each bad cell is recorded once, for the first
    check it fails; returns column → mask of the cells now unknown (aligned with ``frame``)."""
    unknown: dict[str, pd.Series] = {}
    for column, invalid, reason in checks:
        mask = _aligned(invalid, frame)
        if column in unknown:
            mask = mask & ~unknown[column]
        if isinstance(reason, pd.Series):
            reason = reason.reindex(frame.index)
        mask = intake.set_aside(frame, mask, column, reason)
        unknown[column] = unknown[column] | mask if column in unknown else mask
    return unknown


def stated_denials(
    statements: Mapping[str, pd.Series],
    external_id: pd.Series | None = None,
    email: pd.Series | None = None,
    recorded_at: pd.Series | None = None,
) -> pd.DataFrame:
    """The denials (``False`` flags) these rows state, one per row and channel, keyed by the rows' external id
    and/or (valid, normalized) email, dated by ``recorded_at`` (NaT: undated)."""
    parts = []
    for channel, flags in statements.items():
        denied = flags == False  # noqa: E712  (object flags: True/False/None)
        if not denied.any():
            continue
        index = flags.index[denied]
        parts.append(
            pd.DataFrame(
                {
                    "external_id": external_id.loc[index] if external_id is not None else None,
                    "email": email.loc[index] if email is not None else None,
                    "channel": channel,
                    "recorded_at": pd.to_datetime(
                        recorded_at.loc[index] if recorded_at is not None else pd.NaT, utc=True
                    ),
                },
                index=index,
            )
        )
    if not parts:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in DENIAL_COLUMNS})
    return pd.concat(parts, ignore_index=True)[DENIAL_COLUMNS]


# --- reading CSV --------------------------------------------------------------------------------------


@dataclass
class _Scan:
    """What a csv-module pass learns: the header and which records have the wrong number of fields."""

    header: list[str]
    records: int = 0
    blank_lines: int = 0
    bad: list[tuple[int, list[str]]] = field(default_factory=list)  # (1-based row, fields)
    first_fields: list[str] = field(default_factory=list)  # first field of every record of the right width
    exact: bool = False  # an oversized cell, a NUL byte or a record swallowed by a stray quote: read exactly


def read_csv(path: Path, intake: Intake, required: Sequence[str], how_to_fix: str) -> pd.DataFrame:
    """Read a CSV file as strings, quarantining records with the wrong number of fields or an oversized cell.

    Raises :class:`SourceFileError` when the file is missing, not UTF-8 CSV, has a duplicated column name or
    lacks a required column. The returned frame has the file's columns (header names trimmed) plus ``ROW``.
    """
    scan = _scan_csv(path, how_to_fix)
    _check_header(path, scan.header, required, how_to_fix)
    intake.columns = scan.header
    frame = None if scan.exact else _read_frame(path, scan)
    if frame is None:
        frame = _read_exact(path, scan.header, intake, how_to_fix)
    else:
        intake.rows_read = scan.records
        _reject_records(intake, [(row, None, _malformed(fields, scan.header), fields) for row, fields in scan.bad])
    intake.original = frame
    return frame


def raw_frame(intake: Intake, records: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    """Records an API returned, put in an export's columns, as :func:`read_csv` would have read them: every cell a
    string (``None`` → ``""``, ``True``/``False`` → ``"true"``/``"false"``), ``ROW`` numbering the records from 1
    in the order given, ``intake`` counting them and keeping them as read (its quarantine shows the raw record).

    API readers build these frames and pass them to the same ``check_*`` functions the file readers use, so one
    record breaks the same rule in the same way whichever way it came in.
    """
    frame = pd.DataFrame.from_records(list(records), columns=list(columns))
    for name in frame.columns:
        frame[name] = pd.Series([_cell_text(value) for value in frame[name].tolist()], index=frame.index, dtype=object)
    frame[ROW] = np.arange(1, len(frame) + 1)
    intake.columns = list(columns)
    intake.rows_read += len(frame)
    intake.original = frame
    return frame


def _cell_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _check_header(path: Path, header: list[str], required: Sequence[str], how_to_fix: str) -> None:
    if len(header) == 1:
        for separator, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "pipes")):
            if separator in header[0]:
                raise SourceFileError(
                    f"{path.name}: the columns are separated by {name}, not commas — save it as comma-separated "
                    f"CSV (UTF-8); {how_to_fix}"
                )
    first: dict[str, int] = {}
    for position, name in enumerate(header, start=1):
        if name in first:
            raise SourceFileError(
                f"{path.name}: column {name!r} appears twice in the header (columns {first[name]} and {position}) — "
                f"rename or delete one of them, or export the file again; {how_to_fix}"
            )
        first[name] = position
    missing = [name for name in required if name not in first]
    if missing:
        names = ", ".join(repr(name) for name in missing)
        plural = "columns" if len(missing) > 1 else "column"
        raise SourceFileError(f"{path.name}: missing {plural} {names} — {how_to_fix}")


def _header_names(fields: list[str]) -> list[str]:
    """Trimmed header names; an empty one (a trailing comma) is named by its position."""
    names = [name.strip() for name in fields]
    return [name or f"(column {position})" for position, name in enumerate(names, start=1)]


def _malformed(fields: list[str], header: list[str]) -> str:
    return f"malformed row: {len(fields)} fields, expected {len(header)}"


def _reject_records(intake: Intake, bad: list[tuple[int, str | None, str, list[str]]]) -> None:
    """Quarantine unreadable records (row, column, reason, fields); a repeat of one is skipped as a duplicate."""
    if not bad:
        return
    seen: set[tuple[str, ...]] = set()
    first = []
    for entry in bad:
        key = tuple(entry[3])
        if key not in seen:
            seen.add(key)
            first.append(entry)
    intake.duplicates_skipped += len(bad) - len(first)
    intake.add_rejected(
        [row for row, _, _, _ in first],
        pd.Series([column for _, column, _, _ in first], dtype=object),
        pd.Series([reason for _, _, reason, _ in first], dtype=object),
        [_raw_fields(fields) for _, _, _, fields in first],
    )


def _raw_fields(fields: list[str]) -> str:
    """A record as stored in quarantine (JSON list of its fields, an oversized cell cut short)."""
    shown = [
        value if len(value) <= _RAW_CELL_CHARS else f"{value[:_RAW_CELL_CHARS]}… ({len(value):,} characters)"
        for value in fields
    ]
    return json.dumps(shown, ensure_ascii=False)


@contextmanager
def _field_limit(limit: int) -> Iterator[None]:
    """The csv module's per-cell limit for a while (it is process-wide state)."""
    previous = csv.field_size_limit(limit)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _open_text(path: Path, how_to_fix: str) -> Any:
    if not path.exists():
        raise SourceFileError(f"{path.name}: file not found at {path} — {how_to_fix}")
    if path.is_dir():
        raise SourceFileError(f"{path.name}: {path} is a directory, not a file — {how_to_fix}")
    try:
        return path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise SourceFileError(f"{path.name}: cannot be read ({exc.strerror}) — check its permissions") from exc


def _scan_csv(path: Path, how_to_fix: str) -> _Scan:
    try:
        with _field_limit(MAX_FIELD_CHARS), _open_text(path, how_to_fix) as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if not header or not any(name.strip() for name in header):
                raise SourceFileError(f"{path.name}: the file is empty (no header row) — {how_to_fix}")
            scan = _Scan(header=_header_names(header))
            _scan_records(reader, scan)
    except UnicodeDecodeError as exc:
        raise SourceFileError(f"{path.name}: {_not_utf8(path, exc)} — {how_to_fix}") from exc
    except csv.Error as exc:
        if "field larger than field limit" not in str(exc):
            raise SourceFileError(f"{path.name}: not a readable CSV file ({exc}) — {how_to_fix}") from exc
        scan = _Scan(header=_exact_header(path), exact=True)
    if not scan.exact and _contains_nul(path):
        scan.exact = True
    return scan


def _contains_nul(path: Path) -> bool:
    """Whether the file holds a NUL byte (binary debris PostgreSQL cannot store in text): ~0.1 s per 300 MB."""
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 24):
            if b"\x00" in chunk:
                return True
    return False


def _not_utf8(path: Path, exc: UnicodeDecodeError) -> str:
    with path.open("rb") as handle:
        start = handle.read(2)
    if start in (b"\xff\xfe", b"\xfe\xff"):
        return "UTF-16 text, not UTF-8; save it as 'CSV UTF-8 (comma delimited)'"
    return f"not UTF-8 text (byte {exc.start}); this does not look like a CSV export"


def _exact_header(path: Path) -> list[str]:
    with _field_limit(_EXACT_FIELD_LIMIT), path.open(newline="", encoding="utf-8-sig") as handle:
        return _header_names(next(csv.reader(handle)))


def _scan_records(reader: Any, scan: _Scan) -> None:
    expected = len(scan.header)
    for fields in reader:
        if not fields:
            scan.blank_lines += 1
            continue
        scan.records += 1
        if len(fields) != expected:
            if any("\n" in value or "\r" in value for value in fields):
                scan.exact = True  # a quote left open swallowed the lines after it: read them one by one
                return
            scan.bad.append((scan.records, fields))
            continue
        scan.first_fields.append(fields[0])


def _read_frame(path: Path, scan: _Scan) -> pd.DataFrame | None:
    """The records of the right width as a frame of strings, aligned with the scan's row numbers, read by Arrow's
    CSV reader (multi-threaded, ~4x faster than pandas' on a 1M-line export; it splits fields as the csv module does,
    quotes, doubled quotes and line breaks in quoted cells alike). Large strings are what pandas keeps text in, so
    the frame shares Arrow's memory instead of copying it. None when the two disagree on where records start (then
    :func:`_read_exact` reads the file)."""
    names = [f"c{position}" for position in range(len(scan.header))]
    try:
        table = pa_csv.read_csv(
            path,
            read_options=pa_csv.ReadOptions(skip_rows=1, column_names=names),  # the header: read by the scan
            parse_options=pa_csv.ParseOptions(newlines_in_values=True, invalid_row_handler=lambda _row: "skip"),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.large_string()), strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )  # fmt: skip
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None
    frame = table.to_pandas()
    frame.columns = scan.header
    rows = np.arange(1, scan.records + 1)
    if scan.bad:
        rows = np.delete(rows, [row - 1 for row, _ in scan.bad])
    if len(frame) != len(rows) or not np.array_equal(frame.iloc[:, 0].to_numpy(dtype=object), scan.first_fields):
        return None
    frame[ROW] = rows
    return frame


class _Lines:
    """The lines a csv reader consumed for its last record (it reads no further than one record)."""

    def __init__(self, handle: Iterable[str]) -> None:
        self._lines = iter(handle)
        self.taken: list[str] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.taken.append(line)
        return line

    def take(self) -> list[str]:
        taken, self.taken = self.taken, []
        return taken


UNTERMINATED = 'unterminated quote: a field opened with " is never closed (the lines it swallowed were read one by one)'


def _read_exact(path: Path, header: list[str], intake: Intake, how_to_fix: str) -> pd.DataFrame:
    """Read record by record with the csv module: exact but slow, so only for files the fast path cannot read.

    A cell over :data:`MAX_FIELD_CHARS` quarantines its row (naming the column). A record of several physical
    lines with the wrong number of fields is a quote left open that swallowed the lines after it: its lines are
    parsed one by one, the one with the open quote is quarantined and every other line is a row of its own.
    A legitimate multi-line quoted cell (a product description) has the right field count and stays one row.
    """
    expected = len(header)
    good: list[list[str]] = []
    numbers: list[int] = []
    bad: list[tuple[int, str | None, str, list[str]]] = []
    row = 0

    def classify(fields: list[str], line: str | None = None) -> None:
        if len(fields) != expected:
            reason = UNTERMINATED if line is not None and _parse_alone(line)[1] else _malformed(fields, header)
            bad.append((row, None, reason, fields))
            return
        nul = next((position for position, value in enumerate(fields) if "\x00" in value), None)
        if nul is not None:
            bad.append((row, header[nul], f"{header[nul]} holds a NUL character (binary data): not text", fields))
            return
        longest = max(range(expected), key=lambda position: len(fields[position]))
        if len(fields[longest]) > MAX_FIELD_CHARS:
            size = len(fields[longest])
            reason = f"{header[longest]} holds {size:,} characters, over the {MAX_FIELD_CHARS:,} a cell may hold"
            bad.append((row, header[longest], reason, fields))
            return
        good.append(fields)
        numbers.append(row)

    try:
        with _field_limit(_EXACT_FIELD_LIMIT), _open_text(path, how_to_fix) as handle:
            lines = _Lines(handle)
            reader = csv.reader(lines)
            next(reader)
            lines.take()
            for fields in reader:
                physical = lines.take()
                if not fields:
                    continue
                if len(fields) == expected or len(physical) == 1:
                    row += 1
                    classify(fields, physical[0] if len(physical) == 1 else None)
                    continue
                for line in physical:
                    if not line.strip():
                        continue
                    row += 1
                    alone, open_quote = _parse_alone(line)
                    if open_quote:
                        bad.append((row, None, UNTERMINATED, [line.rstrip("\r\n")]))
                    else:
                        classify(alone)
    except UnicodeDecodeError as exc:
        raise SourceFileError(f"{path.name}: {_not_utf8(path, exc)} — {how_to_fix}") from exc
    except csv.Error as exc:
        raise SourceFileError(f"{path.name}: not a readable CSV file ({exc}) — {how_to_fix}") from exc
    intake.rows_read = row
    _reject_records(intake, bad)
    frame = pd.DataFrame(good, columns=header, dtype=str) if good else _empty(header)
    frame[ROW] = np.asarray(numbers, dtype="int64")
    return frame.reset_index(drop=True)


def _parse_alone(line: str) -> tuple[list[str], bool]:
    """One physical line as a record of its own, and whether it leaves a quoted field open."""
    try:
        return next(csv.reader([line], strict=True), []), False
    except csv.Error as exc:
        return next(csv.reader([line]), []), "unexpected end of data" in str(exc)


def _empty(header: list[str]) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=str) for name in header})


# --- value checks -------------------------------------------------------------------------------------


def blank(values: pd.Series) -> pd.Series:
    """True where a cell is empty or only whitespace."""
    return values.str.strip() == ""


def strip_apostrophe(values: pd.Series) -> pd.Series:
    """Shopify prefixes ids and phones with ``'`` so spreadsheets keep them as text; drop it."""
    return values.str.strip().str.removeprefix("'").str.strip()


def none_if_blank(values: pd.Series) -> pd.Series:
    """Trimmed values with empty cells as None (how the database should see "no value")."""
    stripped = values.str.strip()
    return stripped.astype(object).where(stripped != "", None)


_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")


def distinct(values: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """(codes, distinct values as strings) of a column: check the few distinct values of a million rows, then
    spread verdicts back with ``verdict.to_numpy()[codes]`` (~8x faster than checking every row)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    texts = pd.Series(np.asarray(uniques, dtype=object), dtype=object).fillna("").astype(str)
    return codes, texts


def parse_numbers(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Plain decimals with a dot (``14.50``, ``-3``). Returns (floats, NaN where blank), invalid mask (non-blank
    but not such a number: ``14,50``, ``N/A``, and the ``1E+10``/``inf``/``NaN`` a spreadsheet writes)."""
    codes, texts = distinct(values)
    stripped = texts.str.strip()
    plain = stripped.str.fullmatch(_DECIMAL).fillna(False).astype(bool)
    numbers = pd.to_numeric(stripped.where(plain), errors="coerce").to_numpy(dtype="float64")
    invalid = ((stripped != "") & ~plain).to_numpy(dtype=bool)
    return pd.Series(numbers[codes], index=values.index), pd.Series(invalid[codes], index=values.index)


MAX_INTEGER = 2_147_483_647
"""The largest whole number a source cell may hold: the database's INTEGER columns stop here."""


def parse_integers(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Whole numbers within ±:data:`MAX_INTEGER`. Returns (nullable Int64, invalid mask)."""
    numbers, invalid = parse_numbers(values)
    fractional = numbers.notna() & ((numbers != numbers.round()) | (numbers.abs() > MAX_INTEGER))
    invalid = invalid | fractional
    return numbers.where(~invalid).round().astype("Int64"), invalid


def parse_timestamps(values: pd.Series, fmt: str, assume_utc: bool = False) -> tuple[pd.Series, pd.Series]:
    """Timestamps in ``fmt`` (with ``%z`` offsets, or naive and declared UTC). Returns (aware UTC, invalid)."""
    if not assume_utc and "%z" not in fmt:
        raise ValueError("a timestamp format without an offset needs assume_utc=True")
    codes, texts = distinct(values)
    stripped = texts.str.strip()
    present = stripped != ""
    parsed = pd.to_datetime(stripped.where(present), format=fmt, errors="coerce", utc=True)
    invalid = (present & parsed.isna()).to_numpy(dtype=bool)
    stamps = pd.Series(pd.DatetimeIndex(parsed).take(codes), index=values.index)
    return stamps, pd.Series(invalid[codes], index=values.index)


def in_future(stamps: pd.Series, now: datetime) -> pd.Series:
    """True where an (aware) timestamp lies more than :data:`FUTURE_TOLERANCE` after ``now``."""
    return (stamps > pd.Timestamp(now) + FUTURE_TOLERANCE).fillna(False).astype(bool)


def parse_flags(values: pd.Series, meaning: Mapping[str, bool]) -> tuple[pd.Series, pd.Series]:
    """Map words such as yes/no to True/False (case-insensitive); blank → None. Returns (flags, invalid)."""
    codes, texts = distinct(values)
    lowered = texts.str.strip().str.lower()
    known = {key.lower(): value for key, value in meaning.items()}
    mapped = lowered.map(known)
    flags = mapped.astype(object).where(mapped.notna(), None).to_numpy(dtype=object)
    invalid = ((lowered != "") & mapped.isna()).to_numpy(dtype=bool)
    return pd.Series(flags[codes], index=values.index, dtype=object), pd.Series(invalid[codes], index=values.index)


_UNSAFE_IN_URL = re.compile(r"[\x00-\x20\x7f<>\"'`\\]")


def web_url(text: str) -> str | None:
    """``text`` when it is an absolute http(s) URL with a host and nothing a browser or mail client would read
    differently (spaces, control characters, quotes, angle brackets, backslashes); else None.

    ``javascript:``, ``data:``, ``vbscript:`` and relative URLs are refused at the door, so no stored product
    can put one into an ``<img src>`` (the channels check again when they render: defence in depth).
    """
    stripped = text.strip()
    if not stripped or _UNSAFE_IN_URL.search(stripped):
        return None
    try:
        parts = urlsplit(stripped)
        parts.port  # noqa: B018  (raises on a malformed port)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return stripped


def parse_urls(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Absolute http(s) URLs (None where blank or unsafe, see :func:`web_url`) and the mask of unsafe ones."""
    codes, texts = distinct(values)
    checked = texts.map(web_url)
    urls = checked.astype(object).where(checked.notna(), None).to_numpy(dtype=object)
    invalid = ((texts.str.strip() != "") & checked.isna()).to_numpy(dtype=bool)
    return pd.Series(urls[codes], index=values.index, dtype=object), pd.Series(invalid[codes], index=values.index)


# --- emails -------------------------------------------------------------------------------------------

_ATOM = r"[a-z0-9_+-]+"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_PLAIN_EMAIL = re.compile(rf"{_ATOM}(?:\.{_ATOM}){{0,20}}@(?:{_LABEL}\.){{1,8}}[a-z]{{2,24}}")


def plainly_valid_email(text: str) -> bool:
    """A fast pre-check for the common case: a plain ASCII address email-validator certainly accepts as is.

    Anything else (unicode, quotes, special-use domains, punycode, odd lengths) goes to email-validator.
    ``tests/sources/test_shopify.py`` checks with hypothesis that the two agree on what passes here.
    """
    if len(text) > 254 or _PLAIN_EMAIL.fullmatch(text) is None:
        return False
    local, domain = text.rsplit("@", 1)
    if len(local) > 64 or "--" in domain:
        return False
    labels = domain.split(".")
    return not any(".".join(labels[i:]) in SPECIAL_USE_DOMAIN_NAMES for i in range(len(labels)))


def normalize_email(text: str) -> str | None:
    """The normalized address (trimmed, lowercase) or None when it is not a valid email."""
    lowered = text.strip().lower()
    if plainly_valid_email(lowered):
        return lowered
    try:
        return validate_email(lowered, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None


def normalize_emails(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Normalized emails (None where blank or invalid) and the mask of non-blank invalid ones."""
    lowered = values.str.strip().str.lower()
    present = lowered != ""
    verdicts = {text: normalize_email(text) for text in lowered[present].unique()}
    normalized = lowered.map(verdicts).astype(object)
    normalized = normalized.where(present & normalized.notna(), None)
    return normalized, present & normalized.isna()


# --- phones -------------------------------------------------------------------------------------------


def normalize_phone(text: str, country: str) -> str | None:
    """E.164 for a phone written in any format; national formats are read with ``country``."""
    try:
        number = phonenumbers.parse(text, country or None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_phones(values: pd.Series, countries: pd.Series | str) -> tuple[pd.Series, pd.Series]:
    """E.164 phones (None where blank or invalid) and the mask of non-blank invalid ones.

    ``countries`` holds each row's ISO alpha-2 country (or one default) for numbers written nationally.
    """
    cleaned = values.str.strip().str.removeprefix("'").str.strip()
    present = cleaned != ""
    if isinstance(countries, str):
        regions = pd.Series(countries, index=values.index)
    else:
        regions = countries.str.strip().str.upper()
    international = cleaned.str.startswith("+")
    keys = cleaned.where(international, cleaned + "|" + regions)
    verdicts = {key: _phone_from_key(key) for key in keys[present].unique()}
    normalized = keys.map(verdicts).astype(object)
    normalized = normalized.where(present & normalized.notna(), None)
    return normalized, present & normalized.isna()


def _phone_from_key(key: str) -> str | None:
    text, _, country = key.partition("|")
    return normalize_phone(text, country)


def with_default(values: pd.Series, default: str) -> pd.Series:
    """Blank cells replaced by ``default`` (e.g. the store's country)."""
    stripped = values.str.strip()
    return stripped.where(stripped != "", default)


def reject_each(
    intake: Intake,
    frame: pd.DataFrame,
    checks: Sequence[tuple[str, pd.Series, str | Callable[[pd.Series], pd.Series]]],
) -> pd.DataFrame:
    """Apply (column, invalid mask, reason) checks; a row is quarantined once, for the first check it fails.

    ``reason`` may be a function of the failing values, to quote them (e.g. the unknown SKU).
    """
    column = pd.Series(None, index=frame.index, dtype=object)
    reason = pd.Series(None, index=frame.index, dtype=object)
    for name, invalid, text in checks:
        failing = invalid.reindex(frame.index, fill_value=False).fillna(False).astype(bool) & column.isna()
        if failing.any():
            column[failing] = name
            reason[failing] = text(frame.loc[failing, name]) if callable(text) else text
    return intake.reject(frame, column.notna(), column, reason)


def is_member(values: pd.Series, allowed: Iterable[str]) -> pd.Series:
    """``values.isin(allowed)`` that stays fast for large ``allowed`` whatever the string storage."""
    known = pd.Index(list(allowed), dtype=object)
    found = known.get_indexer(values.to_numpy(dtype=object)) >= 0
    return pd.Series(found, index=values.index)
