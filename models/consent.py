"""Consent: may we reach this customer on this channel? And the write side: unsubscribes and erasures.

Every source (Shopify, the CRM, our own unsubscribe endpoint, an erasure request) keeps one statement per
(customer, channel) in ``consents``. The gate reads all of them: the most recent ``recorded_at`` wins, a denial
wins a tie, and no statement at all means no consent. An unsubscribe is simply the newest statement, so it beats
any earlier grant, including one a daily CRM re-export keeps repeating (its ``recorded_at`` does not move).

Marketing eligibility is a separate fact: the CRM says whether someone is a marketing contact (HubSpot's
"Marketing contact status"), kept as statements on the pseudo-channel ``marketing``. A customer whose latest
``marketing`` statement is a denial gets no marketing message on any channel, whatever any channel's consent says.

Topics: an opt-out of one campaign is a statement on ``f"{channel}:{campaign}"`` (``email:weekly-picks``), made by the
preference centre; a newer ``granted`` statement there re-subscribes. A topic denial stops that campaign only; a
denial on the channel itself (unsubscribe from all) still stops everything, whatever the topics say.

Imports (``models.sync``) state consent per source: :func:`statements_from` turns a source's rows into statements,
:func:`combine_statements` keeps one per (customer, channel, source) with a denial beating a grant of the same source,
and :func:`save_statements` upserts them: ``recorded_at`` moves only when the state changes and never backwards; an
undated first grant ranks oldest (:data:`UNDATED_GRANT`), an undated denial or change is dated by the sync. A source
that says a person no longer exists takes back only its grants (:func:`withdraw_grants`): a denial stays.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import UTC, datetime
from typing import Final, Literal

import numpy as np
import pandas as pd
from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.engine import Connection, Engine

from models.bulk import bulk_insert, rows_where_in
from models.db import dialect_insert
from models.schema import Consent

_consents = Consent.__table__  # type: ignore[attr-defined]

ConsentState = Literal["granted", "denied"]
GRANTED: Final[ConsentState] = "granted"
DENIED: Final[ConsentState] = "denied"
MARKETING: Final = "marketing"
"""Pseudo-channel of the CRM's marketing-contact status: denied = a non-marketing contact."""

CONSENTS = Consent.__table__  # type: ignore[attr-defined]


def latest_state(statements: Iterable[tuple[str, datetime]]) -> ConsentState | None:
    """The state that counts among ``(state, recorded_at)`` statements: newest wins, ``denied`` wins ties.

    ``None`` when there is no statement (which the gate treats as no consent).
    """
    best: tuple[datetime, bool] | None = None
    for state, recorded_at in statements:
        candidate = (recorded_at, state == DENIED)  # at the same instant, True (denied) sorts after False
        if best is None or candidate > best:
            best = candidate
    if best is None:
        return None
    return DENIED if best[1] else GRANTED


def consent_states(conn: Connection, customer_ids: Collection[int], channel: str) -> dict[int, ConsentState]:
    """The state that counts for each customer on ``channel``, in one query; customers with none are absent."""
    if not customer_ids:
        return {}
    query = select(CONSENTS.c.customer_id, CONSENTS.c.state, CONSENTS.c.recorded_at).where(
        CONSENTS.c.channel == channel, CONSENTS.c.customer_id.in_(sorted(set(customer_ids)))
    )
    statements: dict[int, list[tuple[str, datetime]]] = {}
    for customer_id, state, recorded_at in conn.execute(query):
        statements.setdefault(customer_id, []).append((state, recorded_at))
    states = {customer_id: latest_state(rows) for customer_id, rows in statements.items()}
    return {customer_id: state for customer_id, state in states.items() if state is not None}


def topic_channel(channel: str, campaign: str) -> str:
    """The consent channel of ``campaign``'s topic on ``channel`` (``email:weekly-picks``)."""
    return f"{channel}:{campaign}"


def consent_states_on(
    conn: Connection, customer_ids: Collection[int], channels: Collection[str]
) -> dict[tuple[int, str], ConsentState]:
    """The state that counts for each (customer, channel) of ``channels``, in one query; pairs with none are absent."""
    if not customer_ids or not channels:
        return {}
    query = select(CONSENTS.c.customer_id, CONSENTS.c.channel, CONSENTS.c.state, CONSENTS.c.recorded_at).where(
        CONSENTS.c.channel.in_(sorted(set(channels))), CONSENTS.c.customer_id.in_(sorted(set(customer_ids)))
    )
    statements: dict[tuple[int, str], list[tuple[str, datetime]]] = {}
    for customer_id, channel, state, recorded_at in conn.execute(query):
        statements.setdefault((customer_id, channel), []).append((state, recorded_at))
    states = {key: latest_state(rows) for key, rows in statements.items()}
    return {key: state for key, state in states.items() if state is not None}


def suppression_reason(
    state: ConsentState | None, marketing: ConsentState | None = None, topic: ConsentState | None = None
) -> str | None:
    """``None`` when a send is allowed; else ``opted_out`` (said no), ``opted_out_topic`` (said no to this
    campaign's topic), ``non_marketing`` (the CRM marks them a non-marketing contact) or ``no_consent`` (never
    asked). ``marketing`` is the customer's ``marketing`` state (pass ``None`` for a transactional message),
    ``topic`` their state on the campaign's topic (``None``: no statement, which does not stop anything)."""
    if state == DENIED:
        return "opted_out"
    if topic == DENIED:
        return "opted_out_topic"
    if marketing == DENIED:
        return "non_marketing"
    return None if state == GRANTED else "no_consent"


def record_unsubscribe(
    engine: Engine,
    customer_id: int,
    channel: str,
    source: str = "unsubscribe",
    at: datetime | None = None,
) -> None:
    """Write a denial for ``customer_id`` on ``channel`` as ``source``'s statement, dated now (or ``at``).

    Idempotent: the source's earlier statement is replaced, so a second click only moves the date forward.
    Use ``source="erasure"`` for a right-to-be-forgotten request.
    """
    when = at or datetime.now(UTC)
    if when.tzinfo is None:
        raise ValueError("record_unsubscribe needs an aware datetime (UTC)")
    with engine.begin() as conn:
        insert = dialect_insert(conn)(CONSENTS).values(
            customer_id=customer_id, channel=channel, state=DENIED, source=source, recorded_at=when
        )
        conn.execute(
            insert.on_conflict_do_update(
                index_elements=[CONSENTS.c.customer_id, CONSENTS.c.channel, CONSENTS.c.source],
                set_={"state": DENIED, "recorded_at": insert.excluded.recorded_at},
            )
        )


# --- imports: the statements sources make ---------------------------------------------------------------------------


def statements_from(frame: pd.DataFrame, column: str, channel: str, source: str, dated_by: str | None) -> pd.DataFrame:
    """The statements a source's rows make: ``column`` True → granted, False → denied, missing → none; dated by the
    ``dated_by`` column (``None``: the source does not date them)."""
    said = frame[frame[column].notna() & frame["customer_id"].notna()]
    recorded = said[dated_by] if dated_by else pd.Series(pd.NaT, index=said.index, dtype="datetime64[us, UTC]")
    return pd.DataFrame(
        {
            "customer_id": said["customer_id"].astype("int64"),
            "channel": channel,
            "source": source,
            "state": np.where(said[column].astype(bool), "granted", "denied"),
            "recorded_at": pd.to_datetime(recorded, utc=True),
        }
    )


def combine_statements(statements: pd.DataFrame) -> pd.DataFrame:
    """One statement per (customer, channel, source): denied beats granted (merged duplicates)."""
    keys = ["customer_id", "channel", "source"]
    ranked = statements.assign(_denied=statements["state"] == "denied")
    strictest = ranked.groupby(keys)["_denied"].transform("max")
    winners = ranked[ranked["_denied"] == strictest]
    return winners.groupby(keys, as_index=False).agg(state=("state", "first"), recorded_at=("recorded_at", "max"))


UNDATED_GRANT = pd.Timestamp("1970-01-01", tz="UTC")
"""``recorded_at`` of an undated source's grant when first seen: older than any dated statement."""


def save_statements(conn: Connection, statements: pd.DataFrame, now: datetime) -> int:
    """Upsert a sync's statements (columns customer_id, channel, source, state, recorded_at); ``recorded_at`` moves
    only when the state changes, never backwards in time."""
    combined = combine_statements(statements)
    query = select(_consents.c.id, _consents.c.customer_id, _consents.c.channel, _consents.c.source,
                   _consents.c.state, _consents.c.recorded_at)  # fmt: skip
    stored = pd.DataFrame(
        rows_where_in(conn, query, _consents.c.customer_id, combined["customer_id"].unique().tolist()),
        columns=["id", "customer_id", "channel", "source", "stored_state", "stored_at"],
    ).astype({"customer_id": "int64"})
    merged = combined.merge(stored, on=["customer_id", "channel", "source"], how="left")
    # An undated grant seen for the first time cannot prove it is newer than a dated denial from another source
    # (Shopify's export says "yes" long after a CRM unsubscribe), so it ranks as the oldest statement. An undated
    # denial, and any undated change seen between two syncs, is dated by the sync: never an unconsented send.
    first_undated_grant = merged["recorded_at"].isna() & merged["id"].isna() & (merged["state"] == "granted")
    merged.loc[first_undated_grant, "recorded_at"] = UNDATED_GRANT
    merged["recorded_at"] = merged["recorded_at"].fillna(pd.Timestamp(now)).dt.tz_convert("UTC")
    new = merged[merged["id"].isna()]
    if not new.empty:
        bulk_insert(conn, _consents, new[["customer_id", "channel", "source", "state", "recorded_at"]])
    stored_at = pd.to_datetime(merged["stored_at"], utc=True)
    changed = merged[merged["id"].notna() & (merged["state"] != merged["stored_state"])]
    changed = changed[changed["recorded_at"] >= stored_at[changed.index]]
    if not changed.empty:
        rows = [
            {"_id": int(cid), "state": state, "recorded_at": stamp.to_pydatetime()}
            for cid, state, stamp in zip(changed["id"], changed["state"], changed["recorded_at"], strict=True)
        ]
        statement = update(_consents).where(_consents.c.id == bindparam("_id"))
        conn.execute(statement.values(state=bindparam("state"), recorded_at=bindparam("recorded_at")), rows)
    return len(combined)


def withdraw_grants(conn: Connection, customer_ids: Collection[int], source: str) -> int:
    """Delete ``source``'s grants for these customers (the platform deleted them: it vouches for nothing any more);
    its denials stay, so taking a record away never makes anyone reachable."""
    ids = sorted({int(customer) for customer in customer_ids})
    removed = 0
    for start in range(0, len(ids), 5_000):
        chunk = ids[start : start + 5_000]
        where = (_consents.c.customer_id.in_(chunk)) & (_consents.c.source == source) & (_consents.c.state == GRANTED)
        removed += conn.execute(delete(_consents).where(where)).rowcount or 0
    return removed
