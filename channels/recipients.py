"""Who a message goes to, read from the golden profiles: the one place that turns a ``Customer`` into a ``Recipient``.

Planning uses it for today's messages; dispatch uses it to finish messages an earlier run left unfinished, so a
message finished later goes to the customer as they are now (a changed address, a new name), never to stale data.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.engine import Connection

from models.message import Recipient
from models.schema import Customer

CUSTOMERS = Customer.__table__  # type: ignore[attr-defined]
_FIELDS = ("email", "phone", "first_name", "last_name", "city", "region", "country", "zip", "birthday", "timezone")
_CHUNK = 5_000


def load_recipients(conn: Connection, customer_ids: Iterable[int]) -> dict[int, Recipient]:
    """``Recipient`` of each customer id that exists (absent ids are left out)."""
    ids = sorted({int(i) for i in customer_ids})
    recipients: dict[int, Recipient] = {}
    columns = [CUSTOMERS.c.id, *(CUSTOMERS.c[name] for name in _FIELDS)]
    for start in range(0, len(ids), _CHUNK):
        rows = conn.execute(select(*columns).where(CUSTOMERS.c.id.in_(ids[start : start + _CHUNK])))
        for row in rows.mappings():
            recipients[row["id"]] = Recipient(customer_id=row["id"], **{name: row[name] for name in _FIELDS})
    return recipients
