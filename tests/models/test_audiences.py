"""Ad audiences kept in step, on SQLite and PostgreSQL, through the real dispatch path and the real file sinks: who
is eligible, additions and removals (ads consent withdrawn, erased, suppressed, left the segment), the platform
minimum, --full, and a sync that crashed between planning and delivery."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine

from channels.ads import AudienceFileChannel, sha256_hex
from channels.dispatch import dispatch
from models import audiences, suppression
from models.audiences import AudienceSync, plan_sync
from models.erasure import forget
from models.schema import AudienceMember, Consent, Customer, Message
from models.segments import AudienceDef, Segment
from tests.models.builders import StoreBuilder, at

TODAY = date(2026, 12, 8)
NOW = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)
SEGMENTS = {"buyers": Segment.model_validate({"where": [{"ordered_within_days": 365}, {"profile": {"country": "US"}}]})}
AUDIENCE = AudienceDef(segment="buyers", platforms=["meta", "google", "tiktok"])
CONSENTS = Consent.__table__  # type: ignore[attr-defined]
CUSTOMERS = Customer.__table__  # type: ignore[attr-defined]


@pytest.fixture
def store(engine: Engine) -> StoreBuilder:
    return StoreBuilder(engine)


def buyers(store: StoreBuilder, engine: Engine, n: int, *, ads: str | None = "granted") -> list[int]:
    product = store.product()
    ids = []
    for _ in range(n):
        cid = store.customer(first_name="Ann", last_name="Lee", phone="+1 503 555 0100", country="US")
        store.order(cid, at("2026-11-01"), [(product, 1)])
        ids.append(cid)
    if ads:
        statement(engine, ids, ads, at("2026-01-01"))
    return ids


def statement(engine: Engine, ids: list[int], state: str, when: datetime, source: str = "crm") -> None:
    with engine.begin() as conn:
        conn.execute(insert(CONSENTS), [
            {"customer_id": cid, "channel": "ads", "state": state, "source": source, "recorded_at": when} for cid in ids
        ])  # fmt: skip


def sync(
    engine: Engine, folder: Path, day: date = TODAY, *, full: bool = False, min_size: int | None = 0
) -> dict[str, AudienceSync]:
    """One audiences sync of ``buyers`` on the three platforms, through dispatch into file sinks in ``folder``."""
    messages, syncs = plan_sync(engine, "buyers", AUDIENCE, SEGMENTS, day, ["meta", "google", "tiktok"], full=full,
                                min_size=min_size, now=NOW)  # fmt: skip
    channels = {p: AudienceFileChannel(p, folder, clock=lambda: datetime.combine(day, datetime.min.time()))  # type: ignore[arg-type]
                for p in ("meta", "google", "tiktok")}  # fmt: skip
    dispatch(engine, messages, channels, now=NOW)  # type: ignore[arg-type]
    audiences.record(engine, syncs, messages)
    return {s.platform: s for s in syncs}


def rows(folder: Path, pattern: str) -> list[dict[str, str]]:
    found = []
    for path in sorted(folder.glob(pattern)):
        found += list(csv.DictReader(path.open(encoding="utf-8")))
    return found


def test_the_first_sync_adds_everyone_eligible_and_the_second_adds_nobody(
    engine: Engine, store: StoreBuilder, tmp_path: Path
) -> None:
    consented = buyers(store, engine, 4)
    buyers(store, engine, 2, ads=None)  # never asked about ads: not targeted
    denied = buyers(store, engine, 1, ads="denied")
    no_address = store.customer()  # in the segment, but nothing a platform can match
    store.order(no_address, at("2026-11-01"), [(store.product(), 1)])
    with engine.begin() as conn:
        conn.execute(update(CUSTOMERS).where(CUSTOMERS.c.id == no_address).values(email=None))
    statement(engine, [no_address], "granted", at("2026-01-01"))

    first = sync(engine, tmp_path)

    assert {p: (s.added, s.removed, s.unchanged, s.size) for p, s in first.items()} == {
        p: (4, 0, 0, 4) for p in ("meta", "google", "tiktok")
    }
    assert len(rows(tmp_path, "meta-buyers-2026*.csv")) == 4 and denied[0] not in consented
    second = sync(engine, tmp_path)
    assert {p: (s.added, s.removed, s.unchanged, s.size) for p, s in second.items()} == {
        p: (0, 0, 4, 4) for p in ("meta", "google", "tiktok")
    }
    assert second["meta"].as_json()["added"] == 0


def test_withdrawn_consent_erasure_suppression_and_leaving_the_segment_are_removed_next_sync(
    engine: Engine, store: StoreBuilder, tmp_path: Path
) -> None:
    stay, withdraws, erased, complained, moved = buyers(store, engine, 5)
    sync(engine, tmp_path)
    stored = _hashes(engine, erased, "meta")
    statement(engine, [withdraws], "denied", NOW - timedelta(hours=1), source="preference_centre")
    forget(engine, _email(engine, erased), now=NOW)
    with engine.begin() as conn:
        suppression.suppress(conn, "email", _email(engine, complained), "spam_complaint", "postmark", at=NOW)
        conn.execute(update(CUSTOMERS).where(CUSTOMERS.c.id == moved).values(country="DE"))  # out of the segment

    second = sync(engine, tmp_path, TODAY + timedelta(days=1))

    assert {p: (s.added, s.removed, s.size) for p, s in second.items()} == {p: (0, 4, 1) for p in second}
    removed = rows(tmp_path, "meta-buyers-remove-*.csv")
    assert len(removed) == 4
    assert stored["email"] in {r["email"] for r in removed}  # the erased profile is blank: its stored hash went
    with engine.connect() as conn:
        left = conn.execute(select(AudienceMember.__table__.c.customer_id).distinct()).scalars().all()  # type: ignore[attr-defined]
    assert left == [stay]


def test_an_audience_under_the_platform_minimum_adds_nobody_but_still_removes(
    engine: Engine, store: StoreBuilder, tmp_path: Path
) -> None:
    ids = buyers(store, engine, 3)
    sync(engine, tmp_path)
    statement(engine, [ids[0]], "denied", NOW - timedelta(hours=1), source="preference_centre")
    ids.append(buyers(store, engine, 1)[0])

    small = sync(engine, tmp_path, TODAY + timedelta(days=1), min_size=None)  # the platforms' own minimums

    meta = small["meta"]
    assert meta.below_minimum and meta.minimum == 100 and small["tiktok"].minimum == 1_000
    assert (meta.added, meta.removed, meta.size) == (0, 1, 2)  # the newcomer waits, the withdrawal goes
    assert "under meta's minimum of 100 people" in meta.sentence()


def test_full_re_uploads_every_member_and_keeps_the_membership(
    engine: Engine, store: StoreBuilder, tmp_path: Path
) -> None:
    buyers(store, engine, 3)
    sync(engine, tmp_path)
    again = sync(engine, tmp_path, TODAY + timedelta(days=1), full=True)
    assert {p: (s.added, s.unchanged, s.size) for p, s in again.items()} == {p: (3, 0, 3) for p in again}
    assert len(rows(tmp_path, "google-buyers-2026*.csv")) == 6


def test_a_sync_that_died_before_delivery_is_settled_from_the_ledger(
    engine: Engine, store: StoreBuilder, tmp_path: Path
) -> None:
    buyers(store, engine, 2)
    plan_sync(engine, "buyers", AUDIENCE, SEGMENTS, TODAY, ["meta"], min_size=0, now=NOW)  # then the run died
    with engine.connect() as conn:
        assert set(conn.execute(select(AudienceMember.__table__.c.state)).scalars()) == {"adding"}  # type: ignore[attr-defined]
        assert conn.execute(select(Message.__table__.c.id)).first() is None  # type: ignore[attr-defined]

    again = sync(engine, tmp_path)

    assert (again["meta"].added, again["meta"].size) == (2, 2)
    assert len(rows(tmp_path, "meta-buyers-2026*.csv")) == 2  # once each


def test_stored_hashes_never_hold_a_plaintext_identifier(engine: Engine, store: StoreBuilder, tmp_path: Path) -> None:
    cid = buyers(store, engine, 1)[0]
    sync(engine, tmp_path)
    for platform in ("meta", "tiktok"):
        hashes = _hashes(engine, cid, platform)
        assert hashes and all(len(v) == 64 for v in hashes.values()), platform
    google = _hashes(engine, cid, "google")
    assert google["Email"] == sha256_hex(_email(engine, cid))
    assert google["Country"] == "US"  # Google's template wants it plain; nothing else is


def _hashes(engine: Engine, customer_id: int, platform: str) -> dict[str, str]:
    members = AudienceMember.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        return dict(
            conn.execute(
                select(members.c.identifiers).where(
                    members.c.customer_id == customer_id, members.c.platform == platform
                )
            ).scalar_one()
        )


def _email(engine: Engine, customer_id: int) -> str:
    with engine.connect() as conn:
        return str(conn.execute(select(CUSTOMERS.c.email).where(CUSTOMERS.c.id == customer_id)).scalar_one())
