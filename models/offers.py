"""Offers a campaign promises: a static code for everyone, or one single-use code per recipient from a pool CSV.

A pool code is allocated per (campaign, occurrence, customer) and recorded in ``offer_codes`` (models/schema.py):

* **idempotent**: planning the same occurrence again (a rerun, the next day's run within the lookback) finds the
  code already given, never a second one;
* **each code once**: a code of a pool goes to one recipient, ever (unique per pool and code, checked by the
  database, so two planners racing cannot both hand it out: the loser takes the next free code);
* **codes in file order**: the first unused code of the CSV's ``code`` column goes next (blank and repeated
  values are skipped), so a marketer can append codes to the file;
* **exhausted is not an error**: a recipient the pool has no code left for gets no offer (the email is planned
  without the gift, never promising it) and is counted in :class:`OfferReport`.

A dry run (``omnicast preview``) writes nothing: a recipient with a code sees it, others see the code they would get
next.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Connection

from models.campaigns import Campaign, Offer, offer_pool_path
from models.db import dialect_insert
from models.errors import InputError
from models.schema import OfferCode, utcnow

OFFER_CODES = OfferCode.__table__  # type: ignore[attr-defined]
Holder = tuple[str, int]
"""``(occurrence_key, customer_id)``: who an offer code is for."""
_CHUNK = 1_000
_RACE_RETRIES = 5
_POOLS: dict[Path, tuple[int, int, tuple[str, ...]]] = {}


@dataclass
class OfferReport:
    """What offers did in one plan (counts only: no codes, no people)."""

    static: int = 0
    allocated: int = 0
    reused: int = 0
    exhausted: dict[str, int] = field(default_factory=dict)

    @property
    def exhausted_total(self) -> int:
        return sum(self.exhausted.values())


def offer_context(offer: Offer, code: str) -> dict[str, str]:
    """The template contract's ``offer``: the code to show and what it gives."""
    return {"code": code, "description": offer.description}


def pool_codes(path: Path) -> tuple[str, ...]:
    """The codes of a pool CSV (its ``code`` column, any case), in file order, blanks and repeats left out.

    Read again only when the file changes (size or modification time)."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise InputError(
            f"the offer code pool {path} cannot be read ({exc.strerror}); restore it or fix the campaign"
        ) from None
    cached = _POOLS.get(path)
    if cached is not None and cached[:2] == (stat.st_mtime_ns, stat.st_size):
        return cached[2]
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [name.strip().lower() for name in next(reader, [])]
        if "code" not in header:
            raise InputError(f"the offer code pool {path} has no 'code' column")
        column = header.index("code")
        codes = dict.fromkeys(row[column].strip() for row in reader if len(row) > column and row[column].strip())
    result = tuple(codes)
    _POOLS[path] = (stat.st_mtime_ns, stat.st_size, result)
    return result


def allocate_codes(
    conn: Connection,
    campaign: Campaign,
    offer: Offer,
    recipients: Sequence[Holder],
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    report: OfferReport | None = None,
) -> dict[Holder, str]:
    """The code each recipient shows for ``offer``; recipients left out of the answer got none (pool exhausted).

    A static offer gives everyone its code. A pool offer gives each recipient their recorded code, or the next free
    one (recorded unless ``dry_run``). Runs in the caller's transaction."""
    report = report if report is not None else OfferReport()
    wanted = list(dict.fromkeys(recipients))
    if offer.code is not None:
        report.static += len(wanted)
        return dict.fromkeys(wanted, offer.code)
    assert offer.pool is not None  # an Offer has a code or a pool (models/campaigns.py)
    pool = offer.pool
    codes = pool_codes(offer_pool_path(campaign.file, pool))
    given = _given(conn, campaign.name, wanted)
    report.reused += len(given)
    missing = [recipient for recipient in wanted if recipient not in given]
    for _ in range(_RACE_RETRIES):  # a code another planner took meanwhile is skipped: try the next free ones
        if not missing:
            break
        used = _used(conn, pool)
        pairs = list(zip(missing, (code for code in codes if code not in used), strict=False))
        if not pairs:
            break
        if dry_run:
            given.update(pairs)
            missing = missing[len(pairs) :]
            break
        stamp = now or utcnow()
        rows = [
            {"pool": pool, "code": code, "campaign": campaign.name, "occurrence_key": occurrence,
             "customer_id": customer, "assigned_at": stamp}
            for (occurrence, customer), code in pairs
        ]  # fmt: skip
        conn.execute(dialect_insert(conn)(OFFER_CODES).on_conflict_do_nothing(), rows)
        now_given = _given(conn, campaign.name, missing)
        report.allocated += len(now_given)
        given.update(now_given)
        missing = [recipient for recipient in missing if recipient not in now_given]
    if missing:
        report.exhausted[pool] = report.exhausted.get(pool, 0) + len(missing)
    return given


def _given(conn: Connection, campaign: str, recipients: Iterable[Holder]) -> dict[Holder, str]:
    """Codes already recorded for these recipients of ``campaign``."""
    wanted = set(recipients)
    customers = sorted({customer for _, customer in wanted})
    found: dict[Holder, str] = {}
    for start in range(0, len(customers), _CHUNK):
        rows = conn.execute(
            select(OFFER_CODES.c.occurrence_key, OFFER_CODES.c.customer_id, OFFER_CODES.c.code).where(
                OFFER_CODES.c.campaign == campaign, OFFER_CODES.c.customer_id.in_(customers[start : start + _CHUNK])
            )
        )
        for occurrence, customer, code in rows:
            if (occurrence, customer) in wanted:
                found[(occurrence, customer)] = code
    return found


def _used(conn: Connection, pool: str) -> set[str]:
    return set(conn.execute(select(OFFER_CODES.c.code).where(OFFER_CODES.c.pool == pool)).scalars())


def codes_left(conn: Connection, campaign: Campaign, offer: Offer) -> int | None:
    """How many codes of the offer's pool are still free (``None`` for a static code)."""
    if offer.pool is None:
        return None
    codes = pool_codes(offer_pool_path(campaign.file, offer.pool))
    return len(set(codes) - _used(conn, offer.pool))
