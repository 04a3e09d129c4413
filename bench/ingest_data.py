"""The store-L data the ingest benchmark syncs, made once and cached: the generated sample store, the day's 1%
increment (``delta/``: only the new data; ``appended/``: the whole files with it appended) and the events as Parquet.

Used by ``bench_ingest.py``; kept apart because it changes with the generator and the file formats, the benchmark with
what it measures.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

AS_OF = date(2026, 11, 27)
INCREMENT = 0.01
EVENTS_FILE = "ga4_events.jsonl"
CRM_FILE = "hubspot_contacts.csv"
STORE_FOLDER = "shopify"
STORE_FILES = ("products_export.csv", "customers_export.csv", "orders_export.csv")


def write_sample_store(out: Path, customers: int, seed: int) -> dict[str, Any]:
    try:
        from sample import write_sample
    except ImportError:  # before the generator moved to its own package
        from sources.sample import write_sample  # type: ignore[no-redef]
    result: dict[str, Any] = write_sample(out, customers=customers, seed=seed, as_of=AS_OF)
    return result


def generator_version() -> str:
    try:
        from sample import GENERATOR_VERSION
    except ImportError:
        return "old"
    return str(GENERATOR_VERSION)


def ensure_store(data: Path, customers: int, seed: int) -> Path:
    """The generated store, made once per (size, seed, day, generator version)."""
    store = data / f"store-{customers}-seed{seed}-{AS_OF}-v{generator_version()}"
    if not (store / "manifest.json").exists():
        print(f"generating the sample store into {store} (once) …", flush=True)
        shutil.rmtree(store, ignore_errors=True)
        write_sample_store(store, customers, seed)
    return store


def ensure_increment(store: Path) -> tuple[Path, Path, datetime]:
    """The 1% increment, made once: ``delta/`` holds only the new data (the day's exports), ``appended/`` the whole
    files with the new data appended. Returns both folders and the clock to sync them with."""
    folder = store.parent / f"{store.name}-increment"
    delta, appended = folder / "delta", folder / "appended"
    clock_file = folder / "now.txt"
    if clock_file.exists():
        return delta, appended, datetime.fromisoformat(clock_file.read_text().strip())
    print(f"making the 1% increment into {folder} (once) …", flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    for target in (delta, appended):
        (target / STORE_FOLDER).mkdir(parents=True)
    new_orders = _new_orders(store / STORE_FOLDER / "orders_export.csv")
    _write_csv(delta / STORE_FOLDER / "orders_export.csv", new_orders)
    shutil.copyfile(store / STORE_FOLDER / "orders_export.csv", appended / STORE_FOLDER / "orders_export.csv")
    _write_csv(appended / STORE_FOLDER / "orders_export.csv", new_orders, append=True)
    for name in ("products_export.csv", "customers_export.csv"):
        os.link(store / STORE_FOLDER / name, appended / STORE_FOLDER / name)
    os.link(store / STORE_FOLDER / "products_export.csv", delta / STORE_FOLDER / "products_export.csv")
    _write_csv(delta / STORE_FOLDER / "customers_export.csv", _tail_rows(store / STORE_FOLDER / "customers_export.csv"))
    _write_csv(delta / CRM_FILE, _tail_rows(store / CRM_FILE))
    os.link(store / CRM_FILE, appended / CRM_FILE)
    new_events, last = _new_events(store / EVENTS_FILE)
    (delta / EVENTS_FILE).write_bytes(new_events)
    shutil.copyfile(store / EVENTS_FILE, appended / EVENTS_FILE)
    with (appended / EVENTS_FILE).open("ab") as handle:
        handle.write(new_events)
    now = last + timedelta(hours=6)
    clock_file.write_text(now.isoformat())
    return delta, appended, now


def _new_orders(path: Path) -> tuple[list[str], list[list[str]]]:
    """The last 1% of orders again, as new orders (new Name and Id; same customers, lines and dates)."""
    header, rows = _rows(path)
    name, id_ = header.index("Name"), header.index("Id")
    whole = [row for row in rows if len(row) == len(header)]  # a malformed row of the export stays where it was
    names = list(dict.fromkeys(row[name] for row in whole))
    chosen = set(names[-max(1, round(len(names) * INCREMENT)) :])
    new = []
    for row in whole:
        if row[name] in chosen:
            row = list(row)
            digits = row[name].lstrip("#")
            row[name] = f"#{int(digits) + 10_000_000}" if digits.isdigit() else f"{row[name]}-new"
            row[id_] = str(int(row[id_]) + 10**12) if row[id_].isdigit() else row[id_]
            new.append(row)
    return header, new


def _tail_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    header, rows = _rows(path)
    return header, rows[-max(1, round(len(rows) * INCREMENT)) :]


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        return header, list(reader)


def _write_csv(path: Path, table: tuple[list[str], list[list[str]]], append: bool = False) -> None:
    header, rows = table
    with path.open("a" if append else "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        if not append:
            writer.writerow(header)
        writer.writerows(rows)


def _new_events(path: Path) -> tuple[bytes, datetime]:
    """The last 1% of event lines moved to just after the export's last event (the next days' events), and the
    time of the last one."""
    lines = _tail_lines(path, max(1, round(_line_count(path) * INCREMENT)))
    stamps = [_stamp(line) for line in lines]
    known = [stamp for stamp in stamps if stamp is not None]
    shift_days = (max(known) - min(known)) // 86_400_000_000 + 1
    out = []
    for line, stamp in zip(lines, stamps, strict=True):
        if stamp is None:
            out.append(line)  # a bad line stays bad
            continue
        event = orjson.loads(line)
        event["event_timestamp"] = stamp + shift_days * 86_400_000_000
        day = datetime.strptime(str(event.get("event_date", "20000101")), "%Y%m%d") + timedelta(days=shift_days)
        event["event_date"] = day.strftime("%Y%m%d")
        out.append(orjson.dumps(event))
    last = max(known) + shift_days * 86_400_000_000
    return b"\n".join(out) + b"\n", datetime.fromtimestamp(last / 1e6, tz=UTC)


def _line_count(path: Path) -> int:
    count = 0
    with path.open("rb") as handle:
        while chunk := handle.read(64 << 20):
            count += chunk.count(b"\n")
    return count


def _tail_lines(path: Path, count: int) -> list[bytes]:
    size = path.stat().st_size
    take = min(size, max(count * 2_000, 1 << 20))
    while True:
        with path.open("rb") as handle:
            handle.seek(size - take)
            lines = handle.read().split(b"\n")
        lines = [line for line in (lines[1:] if take < size else lines) if line.strip()]
        if len(lines) >= count or take >= size:
            return lines[-count:]
        take = min(size, take * 2)


def _stamp(line: bytes) -> int | None:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    stamp = value.get("event_timestamp") if isinstance(value, dict) else None
    return stamp if isinstance(stamp, int) else None


def ensure_parquet(store: Path) -> Path:
    """The events as a Parquet export (BigQuery's columns and types), made once from the JSONL's parseable lines."""
    import pyarrow as pa
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    from sample.bigquery import EVENTS_SCHEMA

    target = store.parent / f"{store.name}-events.parquet"
    if target.exists():
        return target
    print(f"writing the events as Parquet into {target} (once) …", flush=True)
    options = pj.ParseOptions(explicit_schema=EVENTS_SCHEMA, unexpected_field_behavior="ignore")
    partial = target.with_suffix(".partial")
    with (store / EVENTS_FILE).open("rb") as handle, pq.ParquetWriter(partial, EVENTS_SCHEMA) as writer:
        while chunk := handle.read(64 << 20) + handle.readline():
            good = [line for line in chunk.split(b"\n") if line.startswith(b"{") and line.endswith(b"}")]
            for start in range(0, len(good), 20_000):
                part = good[start : start + 20_000]
                try:
                    tables = [pj.read_json(io.BytesIO(b"\n".join(part)), parse_options=options)]
                except pa.ArrowInvalid:
                    tables = []
                    for line in part:
                        try:
                            tables.append(pj.read_json(io.BytesIO(line), parse_options=options))
                        except pa.ArrowInvalid:
                            continue
                for table in tables:
                    writer.write_table(table.cast(EVENTS_SCHEMA), row_group_size=128_000)
    partial.rename(target)
    return target
