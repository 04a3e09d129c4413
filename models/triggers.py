"""Trigger detection: find today's moments of every kind and record each once.

Each kind lives in its own module and returns a frame of ``occurrence_key, customer_id, due_on, payload`` (the
``trigger_occurrences`` columns). The key is the moment's business identity, so recording is insert-if-absent on
``occurrence_key`` (``ON CONFLICT DO NOTHING`` on SQLite and PostgreSQL alike): a rerun, the next day's run for the
same moment, or two workers racing all leave one row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from models import birthdays, carts, churn, replenishment
from models.db import dialect_insert
from models.interactions import table_of
from models.schema import TriggerOccurrence, utcnow

OCCURRENCES = table_of(TriggerOccurrence)

Detector = Callable[[Engine, date, ZoneInfo], pd.DataFrame]

DETECTORS: dict[str, Detector] = {
    birthdays.KIND: birthdays.find_birthdays,
    replenishment.KIND: replenishment.find_replenishments,
    churn.KIND: churn.find_churn_risks,
    carts.KIND: carts.find_abandoned_carts,
}
_KEY_BATCH = 500


def detect_triggers(
    engine: Engine, today: date, *, store_timezone: str = "UTC", kinds: Sequence[str] | None = None
) -> dict[str, int]:
    """Detect the moments of ``kinds`` (default: all) for ``today`` and return how many new ones each kind found."""
    zone = _store_zone(store_timezone)
    chosen = _chosen_kinds(kinds)
    detected_at = utcnow()
    return {
        kind: record_occurrences(engine, kind, DETECTORS[kind](engine, today, zone), detected_at) for kind in chosen
    }


def record_occurrences(engine: Engine, kind: str, found: pd.DataFrame, detected_at: datetime | None = None) -> int:
    """Insert the occurrences in ``found`` whose key is not recorded yet; return how many were new."""
    if found.empty:
        return 0
    rows = _rows(kind, found.drop_duplicates("occurrence_key"), detected_at or utcnow())
    with engine.begin() as conn:
        known = _known_keys(conn, [row["occurrence_key"] for row in rows])
        fresh = [row for row in rows if row["occurrence_key"] not in known]
        if not fresh:
            return 0
        insert = dialect_insert(conn)(OCCURRENCES).on_conflict_do_nothing(index_elements=["occurrence_key"])
        result = conn.execute(insert.returning(OCCURRENCES.c.id), fresh)
        return len(result.all())


def _known_keys(conn: Connection, keys: list[str]) -> set[str]:
    """Keys already recorded (looked up in batches, so the insert only carries new rows)."""
    known: set[str] = set()
    column = OCCURRENCES.c.occurrence_key
    for start in range(0, len(keys), _KEY_BATCH):
        batch = keys[start : start + _KEY_BATCH]
        known.update(conn.execute(select(column).where(column.in_(batch))).scalars())
    return known


def _rows(kind: str, found: pd.DataFrame, detected_at: datetime) -> list[dict[str, Any]]:
    return [
        {
            "occurrence_key": str(key),
            "kind": kind,
            "customer_id": int(customer),
            "due_on": due if isinstance(due, date) else pd.Timestamp(due).date(),
            "detected_at": detected_at,
            "payload": payload,
        }
        for key, customer, due, payload in zip(
            found["occurrence_key"], found["customer_id"], found["due_on"], found["payload"], strict=True
        )
    ]


def _store_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"store_timezone={name!r} is not an IANA timezone; use a name such as 'Europe/Berlin'"
        ) from exc


def _chosen_kinds(kinds: Iterable[str] | None) -> list[str]:
    if kinds is None:
        return list(DETECTORS)
    chosen = list(kinds)
    unknown = sorted(set(chosen) - set(DETECTORS))
    if unknown:
        raise ValueError(f"unknown trigger kind(s) {unknown}; known kinds: {', '.join(DETECTORS)}")
    return chosen
