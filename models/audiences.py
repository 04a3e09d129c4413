"""Ad audiences kept in step with their segments: who should be in each audience on each platform, who is, and the
additions and removals that close the gap.

* **Who should be in** (``eligible``): the segment's members today who may be targeted with ads — their latest
  ``ads`` consent statement grants it and no marketing opt-out beats it (``models.consent``), they are not erased,
  not on the suppression list, and they have an email or a phone a platform can match.
* **Who is in**: ``audience_members`` (one row per audience, platform and customer, with the hashes the addition
  uploaded). A row is ``adding`` or ``removing`` while its message is in the ledger and not sent yet, ``member`` after;
  :func:`reconcile` settles rows a crashed sync left in flight from the ledger before anything is planned.
* **The gap**: an addition per eligible person who is not in, a removal per person who is in and should not be
  (withdrew ads consent, erased, suppressed, left the segment); ``full`` re-uploads every eligible person (a list
  replaced by hand on the platform). Removals always go; additions wait while the audience is under the platform's
  minimum size (:data:`MIN_SIZE`), with a warning: a platform does not serve a smaller list.

Every addition and removal is an ``OutboundMessage`` through the one dispatch path (ledger, gate, adapter): its
occurrence key ``audience:NAME:add:DAY`` (``remove``, ``full``) makes one of each per person and day.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.engine import Connection, Engine

from channels.ads import identifiers
from channels.recipients import load_recipients
from models import suppression
from models.consent import MARKETING, consent_states_on, suppression_reason
from models.db import dialect_insert
from models.message import OutboundMessage, Recipient
from models.schema import AudienceMember, Customer, Message
from models.segments import AudienceDef, Segment, members

MEMBERS = AudienceMember.__table__  # type: ignore[attr-defined]
MESSAGES = Message.__table__  # type: ignore[attr-defined]
CUSTOMERS = Customer.__table__  # type: ignore[attr-defined]
PREFIX = "audience:"
ADS = "ads"
ADD, REMOVE, FULL = "add", "remove", "full"
MIN_SIZE: Mapping[str, int] = {"meta": 100, "google": 100, "tiktok": 1_000}
"""The smallest list each platform serves ads to, as documented (Meta and Google 100 matched people, TikTok 1,000);
``OMNICAST_AUDIENCE_MIN_SIZE`` replaces them all."""


def occurrence(name: str, op: str, day: date) -> str:
    return f"{PREFIX}{name}:{op}:{day.isoformat()}"


@dataclass
class AudienceSync:
    """One audience on one platform: the plan, then (``record``) what the ledger says happened."""

    audience: str
    platform: str
    eligible: int
    minimum: int
    add: list[int] = field(default_factory=list)
    remove: list[int] = field(default_factory=list)
    unchanged: int = 0
    added: int = 0
    removed: int = 0
    not_done: Counter[str] = field(default_factory=Counter)
    size: int = 0

    @property
    def below_minimum(self) -> bool:
        return self.eligible < self.minimum

    def as_json(self) -> dict[str, Any]:
        """``{"added", "removed", "unchanged", "size"}`` (the contract) plus what was held back and why."""
        return {
            "added": self.added, "removed": self.removed, "unchanged": self.unchanged, "size": self.size,
            "eligible": self.eligible, "minimum": self.minimum, "below_minimum": self.below_minimum,
            "not_done": dict(self.not_done),
        }  # fmt: skip

    def sentence(self) -> str:
        """One line for the run's log and summary (counts only)."""
        text = f"{self.audience} on {self.platform}: {len(self.add):,} to add, {len(self.remove):,} to remove"
        text += f", {self.unchanged:,} unchanged ({self.eligible:,} eligible today)"
        if self.below_minimum:
            text += (f"; under {self.platform}'s minimum of {self.minimum:,} people, so nobody is added until it "
                     "grows (removals still go)")  # fmt: skip
        return text


def eligible(conn: Connection, segment: Segment, today: date) -> dict[int, Recipient]:
    """The segment's members today who may be in an ad audience (see the module docstring), by customer id in
    ascending order, with who they are (what an addition uploads)."""
    ids = members(conn, segment, today)
    if not ids:
        return {}
    erased = {
        int(cid)
        for (cid,) in conn.execute(
            select(CUSTOMERS.c.id).where(CUSTOMERS.c.id.in_(ids), CUSTOMERS.c.erased_at.is_not(None))
        ).tuples()
    }
    states = consent_states_on(conn, set(ids), {ADS, MARKETING})
    recipients = load_recipients(conn, ids)
    listed = suppression.suppressed(
        conn, "email", {cid: r.email for cid, r in recipients.items() if r.email}
    )  # the address is on the suppression list (erased, complained, dead): never targeted either
    return {
        cid: recipients[cid]
        for cid in sorted(ids)
        if cid not in erased
        and cid not in listed
        and suppression_reason(states.get((cid, ADS)), states.get((cid, MARKETING)), None) is None
        and cid in recipients
        and (recipients[cid].email or recipients[cid].phone)
    }


def reconcile(conn: Connection, now: datetime, audience: str | None = None) -> int:
    """Settle rows a sync left ``adding``/``removing`` (of ``audience``, or all) from the ledger: sent → done, final
    and not sent → undone, unfinished or not claimed yet → left as they are (the next sync plans them again). One
    query joins the rows to their ledger rows, then one statement per outcome. How many rows changed."""
    joined = MEMBERS.outerjoin(
        MESSAGES,
        (MESSAGES.c.occurrence_key == MEMBERS.c.occurrence_key) & (MESSAGES.c.customer_id == MEMBERS.c.customer_id)
        & (MESSAGES.c.channel == MEMBERS.c.platform),
    )  # fmt: skip
    query = select(MEMBERS.c.audience, MEMBERS.c.platform, MEMBERS.c.customer_id, MEMBERS.c.state, MESSAGES.c.state)
    query = query.select_from(joined).where(MEMBERS.c.state.in_(("adding", "removing")))
    if audience is not None:
        query = query.where(MEMBERS.c.audience == audience)
    to_member: list[dict[str, Any]] = []
    to_delete: list[dict[str, Any]] = []
    for name, platform, customer_id, state, ledger in conn.execute(query).tuples():
        key = {"a": name, "p": platform, "c": customer_id}
        if ledger == "sent":
            (to_member if state == "adding" else to_delete).append(key)
        elif ledger in ("suppressed", "failed"):  # a removal that did not go: still a member, removed next sync
            (to_delete if state == "adding" else to_member).append(key)
    where = (MEMBERS.c.audience == bindparam("a"), MEMBERS.c.platform == bindparam("p"),
             MEMBERS.c.customer_id == bindparam("c"))  # fmt: skip
    if to_member:
        conn.execute(update(MEMBERS).where(*where).values(state="member", updated_at=now), to_member)
    if to_delete:
        conn.execute(delete(MEMBERS).where(*where), to_delete)
    return len(to_member) + len(to_delete)


def adopt_earlier_members(conn: Connection, audience: str, platform: str, now: datetime) -> int:
    """People an earlier version added (ledger key ``audience:NAME``, sent, before members were kept) become members,
    with the hashes their profile gives today, so that they can be removed too. How many were adopted."""
    legacy = {
        int(cid)
        for (cid,) in conn.execute(
            select(MESSAGES.c.customer_id).where(
                MESSAGES.c.occurrence_key == f"{PREFIX}{audience}", MESSAGES.c.channel == platform,
                MESSAGES.c.state == "sent",
            )  # fmt: skip
        ).tuples()
    }
    legacy -= set(current(conn, audience, platform))
    if not legacy:
        return 0
    recipients = load_recipients(conn, sorted(legacy))
    adopted = [
        OutboundMessage(occurrence_key=f"{PREFIX}{audience}", channel=platform, recipient=recipients[cid],
                        campaign=f"{PREFIX}{audience}", audience=audience)
        for cid in sorted(legacy) if cid in recipients
    ]  # fmt: skip
    _record(conn, audience, platform, adopted, "member", now)
    return len(adopted)


def current(conn: Connection, audience: str, platform: str) -> dict[int, tuple[str, dict[str, str]]]:
    """Customer → (state, stored hashes) of one audience on one platform."""
    rows = conn.execute(
        select(MEMBERS.c.customer_id, MEMBERS.c.state, MEMBERS.c.identifiers).where(
            MEMBERS.c.audience == audience, MEMBERS.c.platform == platform
        )
    ).all()
    return {int(cid): (state, dict(hashes or {})) for cid, state, hashes in rows}


def plan_sync(
    engine: Engine,
    name: str,
    audience: AudienceDef,
    segments: Mapping[str, Segment],
    today: date,
    platforms: Sequence[str],
    *,
    full: bool = False,
    min_size: int | None = None,
    now: datetime | None = None,
) -> tuple[list[OutboundMessage], list[AudienceSync]]:
    """The additions and removals of audience ``name`` on each of ``platforms`` (those of the audience among them),
    recorded as ``adding``/``removing`` in ``audience_members`` before they are handed to dispatch."""
    now = now or datetime.now(UTC)
    messages: list[OutboundMessage] = []
    syncs: list[AudienceSync] = []
    with engine.begin() as conn:
        reconcile(conn, now, name)
        recipients = eligible(conn, segments[audience.segment], today)
        wanted = list(recipients)
        for platform in [p for p in audience.platforms if p in platforms]:
            adopt_earlier_members(conn, name, platform, now)
            have = current(conn, name, platform)
            minimum = MIN_SIZE.get(platform, 0) if min_size is None else min_size
            sync = AudienceSync(name, platform, len(wanted), minimum)
            inside = {cid for cid, (state, _) in have.items() if state != "adding"}
            staying = inside & set(wanted)
            reupload = full and not sync.below_minimum
            sync.add = [] if sync.below_minimum else [c for c in wanted if reupload or c not in inside]
            sync.remove = sorted(set(have) - set(wanted))
            sync.unchanged = 0 if reupload else len(staying)
            adds = [_message(name, platform, FULL if c in staying else ADD, today, recipients[c]) for c in sync.add]
            removes = [_removal(name, platform, today, cid, have[cid][1]) for cid in sync.remove]
            _record(conn, name, platform, adds, "adding", now)
            _record(conn, name, platform, removes, "removing", now)
            messages += adds + removes
            syncs.append(sync)
    return messages, syncs


def record(engine: Engine, syncs: Iterable[AudienceSync], messages: Sequence[OutboundMessage]) -> None:
    """After dispatch: settle the rows from the ledger, and count per audience and platform what went."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        states = _ledger_states(conn, messages)
        for name in {s.audience for s in syncs}:
            reconcile(conn, now, name)
        by_key = {(s.audience, s.platform): s for s in syncs}
        for message in messages:
            sync = by_key.get((message.audience or "", message.channel))
            if sync is None:
                continue
            state = states.get(message.ledger_key)
            if state == "sent":
                if message.retract:
                    sync.removed += 1
                else:
                    sync.added += 1
            else:
                sync.not_done[state or "unknown"] += 1
        for sync in by_key.values():
            sync.size = sum(1 for state, _ in current(conn, sync.audience, sync.platform).values() if state != "adding")


def _message(name: str, platform: str, op: str, today: date, recipient: Recipient) -> OutboundMessage:
    return OutboundMessage(
        occurrence_key=occurrence(name, op, today),
        channel=platform,
        recipient=recipient,
        campaign=f"{PREFIX}{name}",
        audience=name,
        variant=op,
    )


def _removal(name: str, platform: str, today: date, customer_id: int, hashes: dict[str, str]) -> OutboundMessage:
    """A removal carries the hashes the addition uploaded, not today's profile (it may be erased or changed)."""
    return OutboundMessage(
        occurrence_key=occurrence(name, REMOVE, today),
        channel=platform,
        recipient=Recipient(customer_id=customer_id),
        campaign=f"{PREFIX}{name}",
        audience=name,
        variant=REMOVE,
        context={"identifiers": hashes},
        retract=True,
    )


def _record(
    conn: Connection, name: str, platform: str, messages: Sequence[OutboundMessage], state: str, now: datetime
) -> None:
    if not messages:
        return
    rows = [
        {"audience": name, "platform": platform, "customer_id": m.customer_id, "state": state,
         "identifiers": m.context.get("identifiers") if m.retract else identifiers(platform, m),
         "occurrence_key": m.occurrence_key, "updated_at": now}
        for m in messages
    ]  # fmt: skip
    insert = dialect_insert(conn)(MEMBERS)
    statement = insert.on_conflict_do_update(
        index_elements=["audience", "platform", "customer_id"],
        set_={"state": insert.excluded.state, "identifiers": insert.excluded.identifiers,
              "occurrence_key": insert.excluded.occurrence_key, "updated_at": insert.excluded.updated_at},
    )  # fmt: skip
    conn.execute(statement, rows)


def _ledger_states(conn: Connection, messages: Sequence[OutboundMessage]) -> dict[Any, str]:
    found: dict[Any, str] = {}
    keys = {(m.occurrence_key, m.channel) for m in messages}
    for key, channel in keys:
        ids = [m.customer_id for m in messages if (m.occurrence_key, m.channel) == (key, channel)]
        for start in range(0, len(ids), 5_000):
            for cid, state in conn.execute(
                select(MESSAGES.c.customer_id, MESSAGES.c.state).where(
                    MESSAGES.c.occurrence_key == key, MESSAGES.c.channel == channel,
                    MESSAGES.c.customer_id.in_(ids[start : start + 5_000]),
                )  # fmt: skip
            ).tuples():
                found[(key, int(cid), channel)] = state
    return found


__all__ = ["MIN_SIZE", "AudienceSync", "eligible", "plan_sync", "reconcile", "record"]
