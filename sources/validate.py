"""Reading and checking source files: the machinery the Shopify, CRM and analytics readers share.

A reader turns a file into a frame of rows that passed every check plus an :class:`Intake`, the file's
accounting: rows read, rows quarantined (row number, column, reason, the raw row) and exact duplicates
skipped. Checks are vectorized: each yields a boolean mask over the frame, :func:`reject_each` gives every
row its first failing check and :meth:`Intake.reject` moves those rows to quarantine in one pass, so
``rows_read = rows_loaded + rows_quarantined + duplicates_skipped`` holds by construction; :meth:`Intake.count`
verifies it again before anything is committed.

Malformed CSV records (too few or too many fields) are found by a csv-module pre-scan: pandas pads short
rows silently. The scan costs ~1.5 s per million rows; pandas then reads the file as strings.

Normalizers work on the unique values of a column (a million order rows hold far fewer emails), with the
well-kept libraries as the authority: ``email-validator`` for emails, ``phonenumbers`` for phones.
"""

from __future__ import annotations

import csv
import json
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import phonenumbers
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from models.errors import InputError

ROW = "_row"
"""Column added to every frame: the 1-based data row number (header excluded; JSONL: line number)."""

QUARANTINE_COLUMNS = ["row_number", "column", "reason", "raw"]


class SourceFileError(InputError):
    """A whole file is unusable; the message names the file, what is wrong and how to fix it."""


@dataclass
class SourceCount:
    """Reconciliation of one source file in one run: read = loaded + quarantined + duplicates skipped."""

    source: str
    file: str
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    duplicates_skipped: int

    @property
    def reconciles(self) -> bool:
        """True when every row read is accounted for."""
        return self.rows_read == self.rows_loaded + self.rows_quarantined + self.duplicates_skipped


@dataclass
class Intake:
    """The accounting of one file while it is read and checked."""

    source: str
    file: str
    columns: list[str] = field(default_factory=list)
    rows_read: int = 0
    duplicates_skipped: int = 0
    rejected: list[pd.DataFrame] = field(default_factory=list)
    original: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def rows_quarantined(self) -> int:
        return sum(len(part) for part in self.rejected)

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
        mask = mask.fillna(False).astype(bool)
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

    def release(self) -> None:
        """Forget the rows as read once the checks are done (a big export holds a lot of text)."""
        self.original = None

    def raw_rows(self, index: pd.Index) -> list[str]:
        """The rows as read (JSON objects of the original columns) for these frame labels."""
        source = self.original if self.original is not None else pd.DataFrame(index=index)
        records = source.loc[index, self.columns].to_dict("records")
        return [json.dumps(row, ensure_ascii=False) for row in records]

    def add_rejected(
        self,
        rows: Sequence[int] | np.ndarray,
        column: str | None | pd.Series,
        reason: str | pd.Series,
        raw: Sequence[str],
    ) -> None:
        """Record already-separated bad rows (e.g. lines that are not even parseable)."""
        reasons = list(reason) if isinstance(reason, pd.Series) else [reason] * len(raw)
        columns = list(column) if isinstance(column, pd.Series) else [column] * len(raw)
        part = pd.DataFrame(
            {"row_number": np.asarray(rows, dtype="int64"), "column": columns, "reason": reasons, "raw": list(raw)}
        )
        self.rejected.append(part)

    def drop_duplicates(self, frame: pd.DataFrame, subset: list[str] | None = None) -> pd.DataFrame:
        """Skip rows repeated field for field (an exact duplicate of an earlier row); count them."""
        dup = frame.duplicated(subset=subset or self.columns, keep="first")
        self.duplicates_skipped += int(dup.sum())
        return frame[~dup]

    def quarantine(self) -> pd.DataFrame:
        """All quarantined rows so far, ordered by row number."""
        if not self.rejected:
            return pd.DataFrame({name: pd.Series(dtype=object) for name in QUARANTINE_COLUMNS})
        return pd.concat(self.rejected, ignore_index=True).sort_values("row_number", kind="stable")

    def count(self, rows_loaded: int) -> SourceCount:
        """The reconciliation for this file; raises if a row went missing (a bug, never bad input)."""
        result = SourceCount(
            self.source, self.file, self.rows_read, rows_loaded, self.rows_quarantined, self.duplicates_skipped
        )
        if not result.reconciles:
            raise RuntimeError(
                f"{self.file}: {self.rows_read} rows read but {rows_loaded} loaded + {result.rows_quarantined} "
                f"quarantined + {self.duplicates_skipped} duplicates: rows were lost, please report this"
            )
        return result


# --- reading CSV --------------------------------------------------------------------------------------


@dataclass
class _Scan:
    """What a csv-module pass learns: the header and which records have the wrong number of fields."""

    header: list[str]
    records: int = 0
    blank_lines: int = 0
    bad: list[tuple[int, list[str]]] = field(default_factory=list)  # (1-based row, fields)
    too_long: list[int] = field(default_factory=list)  # 0-based record index among non-blank records
    first_fields: list[str] = field(default_factory=list)  # first field of every record pandas keeps


def read_csv(path: Path, intake: Intake, required: Sequence[str], how_to_fix: str) -> pd.DataFrame:
    """Read a CSV file as strings, quarantining records with the wrong number of fields.

    Raises :class:`SourceFileError` when the file is missing, not UTF-8 CSV, or lacks a required column.
    The returned frame has the file's columns (header names trimmed) plus ``ROW``.
    """
    scan = _scan_csv(path, how_to_fix)
    missing = [name for name in required if name not in scan.header]
    if missing:
        names = ", ".join(repr(name) for name in missing)
        plural = "columns" if len(missing) > 1 else "column"
        raise SourceFileError(f"{path.name}: missing {plural} {names} — {how_to_fix}")
    intake.columns = scan.header
    intake.rows_read = scan.records
    if scan.bad:
        _reject_malformed(intake, scan)
    frame = _read_frame(path, scan)
    intake.original = frame
    return frame


def _reject_malformed(intake: Intake, scan: _Scan) -> None:
    """Quarantine records with the wrong number of fields (a repeat of one is skipped as a duplicate)."""
    seen: set[tuple[str, ...]] = set()
    first = []
    for row, fields in scan.bad:
        if tuple(fields) not in seen:
            seen.add(tuple(fields))
            first.append((row, fields))
    intake.duplicates_skipped += len(scan.bad) - len(first)
    intake.add_rejected(
        [row for row, _ in first],
        None,
        pd.Series([f"malformed row: {len(fields)} fields, expected {len(scan.header)}" for _, fields in first]),
        [json.dumps(fields, ensure_ascii=False) for _, fields in first],
    )


def _scan_csv(path: Path, how_to_fix: str) -> _Scan:
    if not path.is_file():
        raise SourceFileError(f"{path.name}: file not found at {path} — {how_to_fix}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if not header or not any(name.strip() for name in header):
                raise SourceFileError(f"{path.name}: the file is empty (no header row) — {how_to_fix}")
            scan = _Scan(header=[name.strip() for name in header])
            _scan_records(reader, scan)
    except UnicodeDecodeError as exc:
        raise SourceFileError(
            f"{path.name}: not UTF-8 text (byte {exc.start}); this does not look like a CSV export — {how_to_fix}"
        ) from exc
    except csv.Error as exc:
        raise SourceFileError(f"{path.name}: not a readable CSV file ({exc}) — {how_to_fix}") from exc
    return scan


def _scan_records(reader: Any, scan: _Scan) -> None:
    expected = len(scan.header)
    kept = 0
    for fields in reader:
        if not fields:
            scan.blank_lines += 1
            continue
        scan.records += 1
        if len(fields) != expected:
            scan.bad.append((scan.records, fields))
            if len(fields) > expected:
                scan.too_long.append(kept)
                kept += 1
                continue
        scan.first_fields.append(fields[0])
        kept += 1


def _read_frame(path: Path, scan: _Scan) -> pd.DataFrame:
    """The good records as a frame of strings, aligned with the scan's row numbers."""
    with warnings.catch_warnings():  # rows with too many fields are skipped here, quarantined by the scan
        warnings.simplefilter("ignore", pd.errors.ParserWarning)
        frame = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            encoding="utf-8-sig",
            on_bad_lines="skip",
            index_col=False,
        )
    frame.columns = scan.header
    rows = np.arange(1, scan.records + 1)
    if scan.too_long:
        rows = np.delete(rows, scan.too_long)
    if len(frame) != len(rows) or not np.array_equal(frame.iloc[:, 0].to_numpy(dtype=object), scan.first_fields):
        frame = _frame_from_csv_module(path, scan)  # pandas split records differently: trust the csv module
        rows = rows[: len(frame)]
    frame[ROW] = rows
    short = [row for row, fields in scan.bad if len(fields) < len(scan.header)]
    if short:
        frame = frame[~frame[ROW].isin(short)]
    return frame.reset_index(drop=True)


def _frame_from_csv_module(path: Path, scan: _Scan) -> pd.DataFrame:
    """Slow but exact fallback: build the frame from the csv module's own records."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        next(reader)
        records = [fields for fields in reader if fields and len(fields) <= len(scan.header)]
    padded = [fields + [""] * (len(scan.header) - len(fields)) for fields in records]
    return pd.DataFrame(padded, columns=scan.header, dtype=str)


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


def parse_numbers(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Decimals with a dot. Returns (floats, NaN where blank), invalid mask (non-blank but not a number)."""
    stripped = values.str.strip()
    numbers = pd.to_numeric(stripped.where(stripped != ""), errors="coerce")
    invalid = (stripped != "") & ~np.isfinite(numbers.astype("float64"))
    return numbers.astype("float64").where(~invalid), invalid


def parse_integers(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Whole numbers. Returns (nullable Int64, invalid mask)."""
    numbers, invalid = parse_numbers(values)
    fractional = numbers.notna() & (numbers != numbers.round())
    invalid = invalid | fractional
    return numbers.where(~invalid).round().astype("Int64"), invalid


def parse_timestamps(values: pd.Series, fmt: str, assume_utc: bool = False) -> tuple[pd.Series, pd.Series]:
    """Timestamps in ``fmt`` (with ``%z`` offsets, or naive and declared UTC). Returns (aware UTC, invalid)."""
    stripped = values.str.strip()
    present = stripped != ""
    parsed = pd.to_datetime(stripped.where(present), format=fmt, errors="coerce", utc=True)
    invalid = present & parsed.isna()
    if not assume_utc and "%z" not in fmt:
        raise ValueError("a timestamp format without an offset needs assume_utc=True")
    return parsed, invalid


def parse_flags(values: pd.Series, meaning: Mapping[str, bool]) -> tuple[pd.Series, pd.Series]:
    """Map words such as yes/no to True/False (case-insensitive); blank → None. Returns (flags, invalid)."""
    lowered = values.str.strip().str.lower()
    known = {key.lower(): value for key, value in meaning.items()}
    flags = lowered.map(known)
    invalid = (lowered != "") & flags.isna()
    return flags.astype(object).where(flags.notna(), None), invalid


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
