"""Who a message goes to, read from the golden profiles: the one place that turns a ``Customer`` into a ``Recipient``.

Planning uses it for today's messages; dispatch uses it to finish messages an earlier run left unfinished, so a
message finished later goes to the customer as they are now (a changed address, a new name), never to stale data.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.engine import Connection

from models.message import Recipient
from models.schema import Customer, Identity

CUSTOMERS = Customer.__table__  # type: ignore[attr-defined]
IDENTITIES = Identity.__table__  # type: ignore[attr-defined]
USER_ID_SOURCES = ("shopify", "crm", "analytics")
"""Where the app's user id comes from, in order of preference (the store's own customer id first)."""
_FIELDS = ("email", "phone", "first_name", "last_name", "city", "region", "country", "zip", "birthday", "timezone")
_CHUNK = 5_000


def load_recipients(conn: Connection, customer_ids: Iterable[int]) -> dict[int, Recipient]:
    """``Recipient`` of each customer id that exists (absent ids are left out)."""
    ids = sorted({int(i) for i in customer_ids})
    recipients: dict[int, Recipient] = {}
    columns = [CUSTOMERS.c.id, *(CUSTOMERS.c[name] for name in _FIELDS)]
    for start in range(0, len(ids), _CHUNK):
        rows = conn.execute(select(*columns).where(CUSTOMERS.c.id.in_(ids[start : start + _CHUNK])))
        users = app_user_ids(conn, ids[start : start + _CHUNK])
        for row in rows.mappings():
            recipients[row["id"]] = Recipient(customer_id=row["id"], user_id=users.get(row["id"]),
                                              **{name: row[name] for name in _FIELDS})  # fmt: skip
    return recipients


def app_user_ids(conn: Connection, customer_ids: Iterable[int]) -> dict[int, str]:
    """Customer id → the id the store's app knows them by (:data:`USER_ID_SOURCES`, the lowest id of a source when a
    profile merged several); customers with none are left out."""
    ids = sorted({int(i) for i in customer_ids})
    found: dict[int, tuple[int, str]] = {}
    for start in range(0, len(ids), _CHUNK):
        rows = conn.execute(
            select(IDENTITIES.c.customer_id, IDENTITIES.c.source, IDENTITIES.c.external_id).where(
                IDENTITIES.c.customer_id.in_(ids[start : start + _CHUNK]), IDENTITIES.c.source.in_(USER_ID_SOURCES)
            )
        ).tuples()
        for customer_id, source, external_id in rows:
            candidate = (USER_ID_SOURCES.index(source), str(external_id))
            if customer_id not in found or candidate < found[customer_id]:
                found[int(customer_id)] = candidate
    return {customer_id: external_id for customer_id, (_, external_id) in found.items()}
