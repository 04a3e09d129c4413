"""Engine creation and schema migration. The one place that knows which database we talk to."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError

from models.errors import ConfigurationError
from models.locks import stage_lock

if TYPE_CHECKING:  # alembic and sqlmodel load on first use: the CLI checks settings without paying for them
    from alembic.config import Config
    from sqlmodel import Session

DEFAULT_LOCK_WAIT_SECONDS = 1800.0

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


class DatabaseError(ConfigurationError):
    """The database URL is unusable; the message says which setting to fix."""


URL_SETTING = "OMNICAST_DATABASE_URL"
URL_CHOICES = "use sqlite:///path/to/omnicast.db or postgresql+psycopg://user@host:5432/db"
CONNECT_TIMEOUT_SECONDS = 10


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout so parallel tasks behave."""
    url = _with_driver(url)
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            if url.startswith("postgresql") and "connect_timeout" not in url:
                kwargs.setdefault("connect_args", {"connect_timeout": CONNECT_TIMEOUT_SECONDS})
            engine = create_engine(url, pool_pre_ping=True, **kwargs)
    except Exception as exc:  # sqlalchemy raises ArgumentError / NoSuchModuleError / ValueError with terse text
        raise DatabaseError(
            f"{URL_SETTING}={redact_url(url)!r} is not a usable SQLAlchemy URL ({_one_line(exc, url)}); {URL_CHOICES}"
        ) from exc
    return engine


def _with_driver(url: str) -> str:
    """``postgresql://`` and ``postgres://`` mean the psycopg 3 driver omnicast installs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def check_connection(engine: Engine, busy_seconds: float = 60.0) -> None:
    """Open the database once and read its catalogue, so an unusable URL fails before any work with one line.

    SQLite answers "database is locked" at once, without waiting, when a new connection switches a fresh file to WAL
    while another process is migrating it: that is waited out (up to ``busy_seconds``), not reported."""
    probe = "SELECT count(*) FROM sqlite_master" if engine.dialect.name == "sqlite" else "SELECT 1"
    deadline = time.monotonic() + busy_seconds
    while True:
        try:
            with engine.connect() as conn:
                conn.execute(text(probe))
            return
        except DBAPIError as exc:
            busy = engine.dialect.name == "sqlite" and "database is locked" in str(exc.orig)
            if busy and time.monotonic() < deadline:
                engine.dispose()
                time.sleep(0.1)
                continue
            raise DatabaseError(_connection_problem(engine, exc)) from exc


def _connection_problem(engine: Engine, exc: DBAPIError) -> str:
    url = engine.url.render_as_string(hide_password=False)
    shown = f"{URL_SETTING}={redact_url(url)!r}"
    reason = _one_line(exc.orig or exc, url)
    if engine.dialect.name != "sqlite":
        return (
            f"cannot connect to the database at {shown} ({reason}); check that the server is running and that "
            "host, port, user, password and database name are right"
        )
    path = Path(engine.url.database or "")
    if not path.parent.is_dir():
        return f"{shown}: the folder {path.parent} does not exist; create it or point the URL at an existing folder"
    if path.is_dir():
        return f"{shown} names the folder {path}, not a database file; add a file name such as {path / 'omnicast.db'}"
    if "not a database" in reason or "malformed" in reason:
        return (
            f"{shown}: {path} is not an SQLite database ({reason}); point the URL at omnicast's database "
            "or at a file name that does not exist yet"
        )
    return f"cannot open the SQLite database at {shown} ({reason}); check the file and its folder's permissions"


def _one_line(exc: BaseException, url: str = "") -> str:
    """An exception's text on one line, with any password from ``url`` blanked out."""
    message = " ".join(part.strip() for part in str(exc).splitlines() if part.strip()) or type(exc).__name__
    password = _password(url)
    return message.replace(password, "***") if password else message


def _password(url: str) -> str | None:
    try:
        return make_url(url).password  # type: ignore[return-value]
    except Exception:  # an unparsable URL has no password sqlalchemy could use either
        return None


def redact_url(url: str) -> str:
    """``url`` with any password hidden, for messages and logs."""
    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except Exception:
        shown = _redact(url)
    return re.sub(r"(password=)[^&]*", r"\1***", shown, flags=re.IGNORECASE)


def dialect_insert(conn: Connection | Engine) -> Callable[[Any], Any]:
    """The ``insert`` construct that knows ``ON CONFLICT … DO NOTHING`` for this database (SQLite or PostgreSQL)."""
    name = conn.dialect.name
    if name == "postgresql":
        return postgresql.insert
    if name == "sqlite":
        return sqlite.insert
    raise DatabaseError(
        f"omnicast needs SQLite or PostgreSQL (the send ledger relies on INSERT … ON CONFLICT), not {name}; "
        f"set {URL_SETTING}: {URL_CHOICES}"
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
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision`` (``alembic upgrade head``).

    What the database refuses (another application's tables, a revision from a newer omnicast) becomes a
    :class:`DatabaseError` naming the setting; an error in a migration's own code stays a bug.
    """
    from alembic import command
    from alembic.util.exc import CommandError

    try:
        command.upgrade(alembic_config(url), revision)
    except CommandError as exc:
        raise DatabaseError(
            f"the database at {URL_SETTING}={redact_url(url)!r} cannot be migrated ({_one_line(exc, url)}); "
            "was it written by a newer omnicast? run that version, or point the URL at another database"
        ) from exc
    except DBAPIError as exc:
        reason = _one_line(exc.orig or exc, url)
        raise DatabaseError(
            f"the database at {URL_SETTING}={redact_url(url)!r} cannot be migrated ({reason}); "
            "point the URL at omnicast's own database or an empty one"
        ) from exc


def prepare(
    url: str,
    lock_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS,
    logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
) -> Engine:
    """Check the URL, migrate under the ``migrate`` stage lock (two fresh runs never both migrate), return an engine.

    What every flow calls first; an unusable URL or database is a one-line :class:`DatabaseError`.
    """
    engine = make_engine(url)
    check_connection(engine)
    with stage_lock(engine, "migrate", lock_wait_seconds, logger):
        upgrade(url)
    return engine


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    from sqlmodel import Session

    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except Exception:
            session.rollback()
            raise
