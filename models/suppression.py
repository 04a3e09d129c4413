"""The suppression list: addresses never to be reached again on a channel, whoever imports them later.

Hard bounces, spam complaints, SMTP permanent refusals of a mailbox and erasures (`omnicast forget`) all land here.
An address is kept only as ``address_hash``: HMAC-SHA256 of the normalized address under a random salt made once
per database (``install_secrets``), so the list names nobody in clear, survives a rotated ``OMNICAST_SECRET_KEY``, and
still recognises the address when a later import brings it back. The dispatch gate consults it for every message.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import select
from sqlalchemy.engine import Connection

from models.db import dialect_insert
from models.schema import InstallSecret, Suppression

SUPPRESSIONS = Suppression.__table__  # type: ignore[attr-defined]
SECRETS = InstallSecret.__table__  # type: ignore[attr-defined]
SALT_NAME: Final = "suppression_salt"
REASONS: Final = ("hard_bounce", "spam_complaint", "smtp_permanent", "erased", "manual")


def normalize_address(channel: str, address: str) -> str:
    """The form an address is hashed in: email trimmed and lower-cased; other channels trimmed."""
    address = address.strip()
    return address.lower() if channel == "email" else address


def salt(conn: Connection) -> bytes:
    """This database's suppression salt, made on first use (two runs racing make one: the insert is a no-op)."""
    row = conn.execute(select(SECRETS.c.value).where(SECRETS.c.name == SALT_NAME)).first()
    if row is None:
        conn.execute(
            dialect_insert(conn)(SECRETS)
            .values(name=SALT_NAME, value=secrets.token_hex(32), created_at=datetime.now(UTC))
            .on_conflict_do_nothing(index_elements=[SECRETS.c.name])
        )
        row = conn.execute(select(SECRETS.c.value).where(SECRETS.c.name == SALT_NAME)).one()
    return bytes.fromhex(row[0])


def address_hash(key: bytes, channel: str, address: str) -> str:
    """HMAC-SHA256 (hex) of ``channel`` and the normalized ``address`` under this database's ``salt``."""
    data = f"{channel}\x1f{normalize_address(channel, address)}".encode()
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def suppress(
    conn: Connection,
    channel: str,
    address: str,
    reason: str,
    source: str,
    *,
    customer_id: int | None = None,
    detail: str | None = None,
    at: datetime | None = None,
) -> bool:
    """Put ``address`` on ``channel``'s suppression list; ``True`` when it was not there yet (idempotent)."""
    if reason not in REASONS:
        raise ValueError(f"unknown suppression reason {reason!r}; one of {', '.join(REASONS)}")
    digest = address_hash(salt(conn), channel, address)
    inserted = conn.execute(
        dialect_insert(conn)(SUPPRESSIONS)
        .values(
            channel=channel, address_hash=digest, customer_id=customer_id, reason=reason, source=source,
            detail=detail, recorded_at=at or datetime.now(UTC),
        )  # fmt: skip
        .on_conflict_do_nothing(index_elements=[SUPPRESSIONS.c.channel, SUPPRESSIONS.c.address_hash])
        .returning(SUPPRESSIONS.c.id)
    ).first()
    return inserted is not None


def suppressed(conn: Connection, channel: str, addresses: Mapping[int, str]) -> dict[int, str]:
    """Which of ``addresses`` (key → address, e.g. customer id → email) are on the list, with the reason."""
    if not addresses:
        return {}
    key = salt(conn)
    hashes: dict[str, list[int]] = {}
    for item, address in addresses.items():
        hashes.setdefault(address_hash(key, channel, address), []).append(item)
    found: dict[int, str] = {}
    digests = sorted(hashes)
    for start in range(0, len(digests), 5_000):
        chunk = digests[start : start + 5_000]
        query = select(SUPPRESSIONS.c.address_hash, SUPPRESSIONS.c.reason).where(
            SUPPRESSIONS.c.channel == channel, SUPPRESSIONS.c.address_hash.in_(chunk)
        )
        for digest, reason in conn.execute(query):
            for item in hashes[digest]:
                found[item] = reason
    return found


def is_suppressed(conn: Connection, channel: str, address: str) -> str | None:
    """The reason ``address`` is on the list, or ``None``."""
    return suppressed(conn, channel, {0: address}).get(0)


def suppressed_addresses(conn: Connection, channel: str, addresses: Sequence[str]) -> set[str]:
    """The addresses of ``addresses`` on the list (for an import to leave erased people out)."""
    listed = suppressed(conn, channel, dict(enumerate(addresses)))
    return {addresses[i] for i in listed}
