"""Bulk writes: what ``bulk_insert`` stores is what SQLAlchemy's own insert stores, on SQLite and PostgreSQL; ids
drawn from a sequence are unique and fresh even when another session draws at the same time; lookups by a column
return exactly the rows asked for."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    Boolean,
    Column,
    Date,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    insert,
    select,
)
from sqlmodel.sql.sqltypes import UTCDateTime

from models.bulk import bulk_insert, reserve_ids, rows_where_in
from models.schema import Identity

_identities: Table = Identity.__table__  # type: ignore[attr-defined]

TEXTS = ["plain", "", "comma, and \"quotes\"", "line\nbreak", "ünïcødé ✓", "back\\slash", "  spaced  "]


_PROBED: list[Engine] = []


@pytest.fixture(autouse=True)
def _drop_probe() -> Iterator[None]:
    """The probe table is the test's own: dropped afterwards (the session's PostgreSQL database must keep exactly the
    declared schema for the migration check). A disposed engine still connects."""
    yield
    while _PROBED:
        with _PROBED.pop().begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS bulk_probe")


def _table(engine: Engine) -> Table:
    _PROBED.append(engine)
    metadata = MetaData()
    table = Table(
        "bulk_probe",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("text", String, nullable=True),
        Column("stamp", UTCDateTime, nullable=True),
        Column("flag", Boolean, nullable=True),
        Column("count", Integer, nullable=True),
        Column("amount", Float, nullable=True),
        Column("day", Date, nullable=True),
    )
    metadata.drop_all(engine)
    metadata.create_all(engine)
    return table


def _probe_frame() -> pd.DataFrame:
    count = len(TEXTS) + 1
    return pd.DataFrame(
        {
            "id": np.arange(1, count + 1),
            "text": pd.Series([*TEXTS, None], dtype="str"),
            "stamp": pd.Series(
                [datetime(2026, 1, 1, 10, 0, 0, 123456, tzinfo=UTC), None]
                + [datetime(2026, 11, day, 23, 59, 59, tzinfo=UTC) for day in range(1, count - 1)],
                dtype="datetime64[us, UTC]",
            ),
            "flag": [True, False] * (count // 2) + [True] * (count % 2),
            "count": pd.array([1, None, *range(3, count + 1)], dtype="Int64"),
            "amount": [1.5, float("nan"), *[float(n) for n in range(3, count + 1)]],
            "day": [date(1990, 2, 28), None, *[date(2000, 1, n) for n in range(3, count + 1)]],
        }
    )


def _stored(engine: Engine, table: Table) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(select(table).order_by(table.c.id))]


def _reference_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return [{name: (value.to_pydatetime() if isinstance(value, pd.Timestamp) else value) for name, value in row.items()}
            for row in rows]  # fmt: skip


def test_bulk_insert_stores_what_sqlalchemy_stores(engine: Engine) -> None:
    """Empty texts stay empty (not NULL), NULLs stay NULL, quotes, commas, newlines and accents survive, timestamps
    come back aware in UTC to the microsecond, booleans, nullable integers, NaN floats and dates as the ORM writes
    them."""
    table = _table(engine)
    frame = _probe_frame()
    with engine.begin() as conn:
        conn.execute(insert(table), _reference_rows(frame))
    expected = _stored(engine, table)
    table = _table(engine)
    with engine.begin() as conn:
        assert bulk_insert(conn, table, frame) == len(frame)
    assert _stored(engine, table) == expected
    assert expected[1][1] == "" and expected[-1][1] is None
    assert expected[0][2] == datetime(2026, 1, 1, 10, 0, 0, 123456, tzinfo=UTC)


def test_bulk_insert_of_a_mixed_object_column(engine: Engine) -> None:
    """A column of mixed Python values (Arrow cannot type it) still goes in, as the ORM would write it."""
    table = _table(engine)
    frame = pd.DataFrame({"id": [1, 2, 3], "text": pd.Series([7, "b", None], dtype=object),
                          "count": pd.Series([1, None, np.int64(3)], dtype=object)})  # fmt: skip
    with engine.begin() as conn:
        bulk_insert(conn, table, frame)
    assert [row[:2] + row[4:5] for row in _stored(engine, table)] == [(1, "7", 1), (2, "b", None), (3, None, 3)]


def test_reserved_ids_are_fresh_and_unique_when_another_session_draws_meanwhile(engine: Engine) -> None:
    """Ids reserved for a bulk insert never collide with ids the table hands out to anybody else."""
    with engine.begin() as conn:
        first = reserve_ids(conn, _identities, 1_000)
    assert len(set(first.tolist())) == 1_000
    if engine.dialect.name == "postgresql":
        with engine.connect() as other, engine.connect() as mine:
            drawn_by_other = other.exec_driver_sql("SELECT nextval(pg_get_serial_sequence('identities', 'id'))")
            taken = drawn_by_other.scalar_one()
            second = reserve_ids(mine, _identities, 500)
            assert taken not in set(second.tolist())
            assert not set(second.tolist()) & set(first.tolist())
            assert len(set(second.tolist())) == 500


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    stored=st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), max_size=8),
    asked=st.lists(st.one_of(st.sampled_from(["a", "c", "x"]), st.none()), max_size=6),
)
def test_rows_where_in_returns_the_rows_asked_for(sqlite_engine: Engine, stored: list[str], asked: list[str]) -> None:
    table = _table(sqlite_engine)
    if stored:
        with sqlite_engine.begin() as conn:
            conn.execute(insert(table), [{"id": n, "text": text} for n, text in enumerate(stored, start=1)])
    with sqlite_engine.connect() as conn:
        rows = rows_where_in(conn, select(table.c.id, table.c.text), table.c.text, asked)
    wanted = {value for value in asked if value is not None}
    assert sorted(row.id for row in rows) == [n for n, text in enumerate(stored, start=1) if text in wanted]


@pytest.mark.parametrize("count", [0, 1])
def test_rows_where_in_with_nothing_to_look_up(sqlite_engine: Engine, count: int) -> None:
    table = _table(sqlite_engine)
    with sqlite_engine.connect() as conn:
        assert rows_where_in(conn, select(table.c.id), table.c.text, [None] * count) == []


def _catalog(engine: Engine, table: str) -> set[str]:
    """The table's indexes and foreign keys, as the database defines them."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            indexes = conn.exec_driver_sql(f"SELECT indexdef FROM pg_indexes WHERE tablename = '{table}'").scalars()
            keys = conn.exec_driver_sql(
                f"SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = '{table}'::regclass"
            ).scalars()
            return {*indexes, *keys}
        indexes = conn.exec_driver_sql(f"SELECT sql FROM sqlite_master WHERE tbl_name = '{table}'").scalars()
        keys = conn.exec_driver_sql(f"PRAGMA foreign_key_list({table})").all()
        return {*(str(sql) for sql in indexes), *(str(tuple(key)) for key in keys)}


def _events(customers: list[int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": np.arange(1, len(customers) + 1),
            "customer_id": customers,
            "user_pseudo_id": "device",
            "event_name": "view_item",
            "occurred_at": pd.Timestamp("2026-11-01", tz="UTC"),
        }
    )


def test_a_big_insert_puts_back_every_index_and_foreign_key(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the threshold the table's plain indexes (and on PostgreSQL its foreign keys) are dropped for the load
    and built again after it: the table ends defined exactly as before, its rows all there."""
    from models import bulk
    from models.schema import Customer, Event

    monkeypatch.setattr(bulk, "REBUILD_INDEXES_FROM", 10)
    before = _catalog(engine, "events")
    with engine.begin() as conn:
        conn.execute(insert(Customer.__table__), [{"id": 1}, {"id": 2}])  # type: ignore[attr-defined]
        bulk_insert(conn, Event.__table__, _events([1, 2] * 10))  # type: ignore[attr-defined]
    assert _catalog(engine, "events") == before
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM events").scalar_one() == 20


def test_a_big_insert_naming_a_missing_parent_still_fails(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Foreign keys dropped for speed are checked when they come back: an event of a customer who does not exist
    fails the whole transaction, and nothing of it stays."""
    from sqlalchemy.exc import IntegrityError

    from models import bulk
    from models.schema import Customer, Event

    monkeypatch.setattr(bulk, "REBUILD_INDEXES_FROM", 10)
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(Customer.__table__), [{"id": 1}])  # type: ignore[attr-defined]
        bulk_insert(conn, Event.__table__, _events([1] * 15 + [99]))  # type: ignore[attr-defined]
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM events").scalar_one() == 0
        assert conn.exec_driver_sql("SELECT count(*) FROM customers").scalar_one() == 0


def test_reserved_ids_when_the_sequence_does_not_count_one_by_one(postgres_engine: Engine) -> None:
    """Drawn values that are not one contiguous run (here a sequence stepping by 2; in life, another session drawing
    at the same moment) are fetched one by one: still fresh, unique, and as many as asked."""
    with postgres_engine.begin() as conn:
        conn.exec_driver_sql("ALTER SEQUENCE identities_id_seq INCREMENT BY 2")
        try:
            ids = reserve_ids(conn, _identities, 100).tolist()
            after = conn.exec_driver_sql("SELECT nextval('identities_id_seq')").scalar_one()
        finally:
            conn.exec_driver_sql("ALTER SEQUENCE identities_id_seq INCREMENT BY 1")
    assert len(set(ids)) == 100 and ids == sorted(ids)
    assert {b - a for a, b in zip(ids, ids[1:], strict=False)} == {2} and after > max(ids)


def test_rows_where_in_with_many_values_reads_the_whole_table(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past :data:`READ_ALL_FROM` values the whole query comes back: a superset that holds every row asked for."""
    from models import bulk

    monkeypatch.setattr(bulk, "READ_ALL_FROM", 2)
    table = _table(sqlite_engine)
    with sqlite_engine.begin() as conn:
        conn.execute(insert(table), [{"id": n, "text": text} for n, text in enumerate("abcd", start=1)])
    with sqlite_engine.connect() as conn:
        rows = rows_where_in(conn, select(table.c.id, table.c.text), table.c.text, ["a", "c"])
        one = rows_where_in(conn, select(table.c.id, table.c.text), table.c.text, ["b"])
    assert sorted(row.id for row in rows) == [1, 2, 3, 4]
    assert [row.id for row in one] == [2]
