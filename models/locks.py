"""One run at a time per stage and database: two `omnicast daily` started together take turns instead of crashing.

A stage (``migrate``, ``sync``, ``train``, ``triggers``, ``campaign``, ``audiences``) writes rows with unique keys
that it first reads; two runs doing that at the same moment on one database collide (a duplicate SKU, an order line
whose order the other run just replaced). :func:`stage_lock` makes the second run wait for the first:

* **PostgreSQL** — a session advisory lock (``pg_try_advisory_lock``, polled) whose key is derived from the stage
  name, held on a connection of its own for the whole stage. The server drops it when that connection ends, so a
  killed run never leaves a lock behind.
* **SQLite** — ``fcntl.flock`` on ``<database file>.locks/<stage>.lock`` beside the database; the kernel drops it
  when the process dies. One file per stage: ``flock`` locks a whole file, and POSIX byte-range locks would all be
  dropped when any descriptor of the file closes. An in-memory database belongs to one process and needs no lock.

While it waits the run logs ``another omnicast run holds the <stage> lock on this database; waiting up to N s``; after
``wait_seconds`` it gives up with :class:`~models.errors.LockTimeoutError`. Delivery is not locked: the ledger's unique
key already makes parallel delivery safe.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Protocol

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from models.errors import ConfigurationError, LockTimeoutError

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25
WAIT_SETTING = "OMNICAST_LOCK_WAIT_SECONDS"


class _Lock(Protocol):
    def try_acquire(self) -> bool: ...

    def release(self) -> None: ...


def lock_key(stage: str) -> int:
    """The advisory lock key of a stage: a signed 64-bit integer from the stage name (stable across processes)."""
    digest = hashlib.sha256(f"omnicast:stage:{stage}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def stage_lock(
    engine: Engine,
    stage: str,
    wait_seconds: float,
    logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    poll_seconds: float = POLL_SECONDS,
) -> Iterator[None]:
    """Hold ``stage``'s lock on ``engine``'s database for the body; wait up to ``wait_seconds`` for another run.

    Raises :class:`LockTimeoutError` (naming the stage and ``OMNICAST_LOCK_WAIT_SECONDS``) when the lock stays held.
    """
    lock = _lock_for(engine, stage)
    try:
        _acquire(lock, stage, wait_seconds, logger or log, poll_seconds)
        yield
    finally:
        lock.release()


def _acquire(
    lock: _Lock,
    stage: str,
    wait_seconds: float,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    poll_seconds: float,
) -> None:
    if lock.try_acquire():
        return
    logger.info(
        "another omnicast run holds the %s lock on this database; waiting up to %s s", stage, _seconds(wait_seconds)
    )
    started = time.monotonic()
    deadline = started + wait_seconds
    while time.monotonic() < deadline:
        time.sleep(max(0.0, min(poll_seconds, deadline - time.monotonic())))
        if lock.try_acquire():
            logger.info("got the %s lock after %.1f s", stage, time.monotonic() - started)
            return
    raise LockTimeoutError(
        f"another omnicast run has held the {stage} lock on this database for more than {_seconds(wait_seconds)} s; "
        f"let it finish (see its flow run in the Prefect UI) or raise {WAIT_SETTING}"
    )


def _seconds(value: float) -> str:
    return f"{value:g}"


def _lock_for(engine: Engine, stage: str) -> _Lock:
    dialect = engine.dialect.name
    if dialect == "postgresql":
        return _AdvisoryLock(engine, lock_key(stage))
    if dialect == "sqlite":
        database = engine.url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            return _NoLock()
        return _FileLock(Path(f"{database}.locks") / f"{stage}.lock")
    raise ConfigurationError(f"omnicast cannot lock stages on a {dialect} database; use SQLite or PostgreSQL")


class _NoLock:
    """An in-memory SQLite database is private to its process: nobody else can run a stage on it."""

    def try_acquire(self) -> bool:
        return True

    def release(self) -> None:
        return None


class _AdvisoryLock:
    """A PostgreSQL session advisory lock on a connection of its own, held until :meth:`release`."""

    def __init__(self, engine: Engine, key: int) -> None:
        self.engine = engine
        self.key = key
        self.conn: Connection | None = None
        self.held = False

    def try_acquire(self) -> bool:
        if self.conn is None:
            self.conn = self.engine.connect()
        got = bool(self.conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}).scalar())
        self.conn.commit()  # a session lock outlives the transaction; do not sit idle in one while holding it
        self.held = got
        return got

    def release(self) -> None:
        if self.conn is None:
            return
        conn, self.conn = self.conn, None
        try:
            if self.held:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
                conn.commit()
        except Exception:
            conn.invalidate()  # closing the session for good releases its locks on the server
            raise
        finally:
            self.held = False
            conn.close()


class _FileLock:
    """``flock`` on a file beside the SQLite database; released by the kernel when the process ends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: IO[bytes] | None = None

    def try_acquire(self) -> bool:
        if self.file is None:
            try:
                self.path.parent.mkdir(mode=0o700, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise ConfigurationError(
                    f"cannot create the lock file {self.path} beside the SQLite database ({exc.strerror}); "
                    "OMNICAST_DATABASE_URL must name a file in a folder this user can write to"
                ) from exc
            self.file = os.fdopen(fd, "r+b")
        try:
            fcntl.flock(self.file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        if self.file is None:
            return
        file, self.file = self.file, None
        file.close()  # closing the descriptor drops the flock; the file stays (deleting it would race)
