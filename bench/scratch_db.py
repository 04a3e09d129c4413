"""The databases a benchmark runs on: a fresh, migrated SQLite file, then a throwaway PostgreSQL database (created on
the server of ``postgres_url``, dropped afterwards); PostgreSQL is skipped, with the reason printed, when it is
unreachable."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from tempfile import TemporaryDirectory

from sqlalchemy import text
from sqlalchemy.engine import make_url

from models.db import make_engine, upgrade


def migrated_databases(postgres_url: str | None) -> Iterator[tuple[str, str]]:
    """``("SQLite", url)`` then, unless ``postgres_url`` is None, ``("PostgreSQL", url)``; each removed after use."""
    with TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        upgrade(url)
        yield "SQLite", url
    if postgres_url is None:
        return
    admin = make_engine(postgres_url, isolation_level="AUTOCOMMIT")
    name = f"omnicast_bench_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001  (any reason the server cannot be used: skip, say why)
        print(f"PostgreSQL skipped: {type(exc).__name__}: {exc}")
        admin.dispose()
        return
    try:
        url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
        upgrade(url)
        yield "PostgreSQL", url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
