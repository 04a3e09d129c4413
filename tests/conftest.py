"""Shared fixtures: a migrated database on SQLite and on PostgreSQL, and quiet Prefect settings.

PostgreSQL comes from OMNICAST_TEST_POSTGRES_URL (default the local server's ``test`` database). Each test session
creates its own database there, migrates it once, and empties the tables between tests. When PostgreSQL is
unreachable the PostgreSQL cases are skipped locally, but fail under CI (``CI=true``): the production path must be
tested there.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url
from sqlmodel import SQLModel

# Before Prefect is imported anywhere: no telemetry, a throwaway home.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="omnicast-prefect-"))

import models.schema  # noqa: E402,F401  (tables on the metadata)
from models.db import make_engine, upgrade  # noqa: E402

POSTGRES_URL = os.environ.get("OMNICAST_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _empty_all_tables(engine: Engine) -> None:
    """DELETE children before parents: for the few rows a test leaves, ~50x cheaper than TRUNCATE … CASCADE."""
    with engine.begin() as conn:
        for table in reversed(SQLModel.metadata.sorted_tables):
            conn.execute(table.delete())


@contextmanager
def empty_postgres_database(prefix: str) -> Iterator[str]:
    """A new, empty (not migrated) PostgreSQL database named ``<prefix>_<random>``; dropped afterwards.

    Skips when PostgreSQL is unreachable, but fails under CI: the production path must be tested there.
    """
    admin = make_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # unreachable server, auth, ...
        admin.dispose()
        message = f"PostgreSQL at {POSTGRES_URL} is unreachable ({type(exc).__name__}: {exc})"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; CI must test the production path: start PostgreSQL", pytrace=False)
        pytest.skip(message)
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session, dropped afterwards."""
    with empty_postgres_database("omnicast_test") as url:
        upgrade(url)
        yield url


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite database of this test's own."""
    url = f"sqlite:///{tmp_path / 'omnicast.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_engine(postgres_url: str) -> Iterator[Engine]:
    """The session's PostgreSQL database, emptied for this test."""
    engine = make_engine(postgres_url)
    _empty_all_tables(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """A real Prefect API (subprocess server on a temporary SQLite DB) with heartbeats off; yields its URL.

    One per test session, started only by tests that really run flows (in-process, or in subprocesses that get
    the URL as ``PREFECT_API_URL``).
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with (
        prefect_test_harness(server_startup_timeout=60),
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        yield str(PREFECT_API_URL.value())


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest) -> Engine:
    """Runs the test once on SQLite and once on PostgreSQL."""
    return request.getfixturevalue(f"{request.param}_engine")
