"""Engine creation and schema migration. The one place that knows which database we talk to."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, create_engine

from models.errors import ConfigurationError

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


class DatabaseError(ConfigurationError):
    """The database URL is unusable; the message says which setting to fix."""


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout so parallel tasks behave."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(url, pool_pre_ping=True, **kwargs)
    except Exception as exc:  # sqlalchemy raises ArgumentError / NoSuchModuleError with terse text
        raise DatabaseError(
            f"OMNICAST_DATABASE_URL={_redact(url)!r} is not a usable SQLAlchemy URL ({exc}); "
            "use sqlite:///path.db or postgresql+psycopg://user@host:5432/db"
        ) from exc
    return engine


def dialect_insert(conn: Connection | Engine) -> Callable[[Any], Any]:
    """The ``insert`` construct that knows ``ON CONFLICT … DO NOTHING`` for this database (SQLite or PostgreSQL)."""
    name = conn.dialect.name
    if name == "postgresql":
        return postgresql.insert
    if name == "sqlite":
        return sqlite.insert
    raise DatabaseError(
        f"omnicast needs SQLite or PostgreSQL (the send ledger relies on INSERT … ON CONFLICT), not {name}; "
        "set OMNICAST_DATABASE_URL to sqlite:///path.db or postgresql+psycopg://user@host:5432/db"
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _redact(url: str) -> str:
    """Hide a password in a URL before it reaches a message or a log."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision`` (``alembic upgrade head``)."""
    command.upgrade(alembic_config(url), revision)


def prepare(url: str) -> Engine:
    """Migrate then return an engine: what every flow calls first."""
    upgrade(url)
    return make_engine(url)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except Exception:
            session.rollback()
            raise
