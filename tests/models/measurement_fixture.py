"""A small ledger, clicks and orders whose report numbers are worked out by hand in test_measurement.py.

T0 = 2026-11-10 10:00 UTC. Campaign ``picks`` (occurrence ``picks:2026-W46``, exposed at T0) and ``winback``
(exposed at T0 + 2 days); an ad audience row that never counts. Order totals are 10 per unit (StoreBuilder).

=====  ========  =======================================================  ======================================
who    arm       ledger                                                   clicks
=====  ========  =======================================================  ======================================
c1     picks A   email + inapp sent T0+1m; winback A email sent T0+2d+1m  picks T0+1h; winback T0+2d+1h
c2     picks A   email sent T0+1m                                         picks T0+3h and T0+4h
c3     picks A   suppressed frequency_cap (exposed, not sent)
c4     picks A   suppressed opted_out (not exposed)
c5     picks B   email sent T0+1m                                         picks T0+30m
c6     picks B   email sent T0+1m
c7     holdout   picks holdout; winback holdout (T0+2d)
c8     holdout   picks holdout
c9     holdout   picks suppressed opted_out (not exposed)
=====  ========  =======================================================  ======================================

Orders: o1 c1 T0+5h 30 · o2 c1 T0+2d+3h 20 · o3 c2 T0+5d+4h 10 (exactly 5 days after c2's last click) · o4 c3 T0+1d
10 · o5 c5 T0+1d 40 refunded 10 · o6 c6 T0+2d 10 cancelled · o7 c7 T0+1d 10 · o8 c7 T0+3d 20 · o9 c8 T0−1d 10 ·
o10 c4 T0+1d 10 · o11 c6 T0+1d 10 fully refunded · o12 c5 T0+30m 10 (at the very time of c5's click).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import Engine

from models.schema import Click, Message
from tests.models.builders import StoreBuilder

T0 = datetime(2026, 11, 10, 10, 0, tzinfo=UTC)
MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
PICKS, WINBACK = "picks:2026-W46", "winback:2026-11-12"


@dataclass
class Fixture:
    c: dict[int, int] = field(default_factory=dict)
    """c[1] … c[9]: customer ids."""
    m: dict[str, int] = field(default_factory=dict)
    """Ledger ids: 'c1-email', 'c1-inapp', 'c1-winback', 'c2-email', 'c5-email', 'c6-email', …"""
    o: dict[int, int] = field(default_factory=dict)
    """o[1] … o[12]: order ids."""


def _message(engine: Engine, **values: Any) -> int:
    values.setdefault("created_at", T0)
    values.setdefault("updated_at", values["created_at"])
    values.setdefault("template", "weekly_picks")
    with engine.begin() as conn:
        return int(conn.execute(insert(Message.__table__).values(**values)).inserted_primary_key[0])  # type: ignore[attr-defined]


def _click(engine: Engine, message_id: int | None, customer_id: int, campaign: str, variant: str, at: datetime) -> None:
    row = {
        "message_id": message_id,
        "customer_id": customer_id,
        "campaign": campaign,
        "variant": variant,
        "url": "https://shop.example/products/x",
        "clicked_at": at,
    }
    with engine.begin() as conn:
        conn.execute(insert(Click.__table__).values(**row))  # type: ignore[attr-defined]


def build(engine: Engine) -> Fixture:
    store, f = StoreBuilder(engine), Fixture()
    for n in range(1, 10):
        f.c[n] = store.customer()
    product = store.product()
    c = f.c

    def sent(key: str, cust: int, campaign: str, variant: str, channel: str = "email", **extra: Any) -> None:
        occurrence = PICKS if campaign == "picks" else WINBACK
        created = extra.pop("created_at", T0)
        f.m[key] = _message(
            engine,
            occurrence_key=occurrence,
            customer_id=cust,
            channel=channel,
            campaign=campaign,
            variant=variant,
            state="sent",
            created_at=created,
            sent_at=created + MINUTE,
            **extra,
        )

    def suppressed(key: str, cust: int, campaign: str, variant: str, reason: str, created: datetime = T0) -> None:
        occurrence = PICKS if campaign == "picks" else WINBACK
        f.m[key] = _message(
            engine,
            occurrence_key=occurrence,
            customer_id=cust,
            channel="email",
            campaign=campaign,
            variant=variant,
            state="suppressed",
            reason=reason,
            created_at=created,
        )

    sent("c1-email", c[1], "picks", "A")
    sent("c1-inapp", c[1], "picks", "A", channel="inapp")
    sent("c2-email", c[2], "picks", "A")
    suppressed("c3-email", c[3], "picks", "A", "frequency_cap")
    suppressed("c4-email", c[4], "picks", "A", "opted_out")
    sent("c5-email", c[5], "picks", "B")
    sent("c6-email", c[6], "picks", "B")
    suppressed("c7-email", c[7], "picks", "holdout", "holdout")
    suppressed("c8-email", c[8], "picks", "holdout", "holdout")
    suppressed("c9-email", c[9], "picks", "holdout", "opted_out")
    sent("c1-winback", c[1], "winback", "A", created_at=T0 + 2 * DAY)
    suppressed("c7-winback", c[7], "winback", "holdout", "holdout", created=T0 + 2 * DAY)
    f.m["audience"] = _message(
        engine,
        occurrence_key="audience:high-value",
        customer_id=c[1],
        channel="meta",
        campaign="audience:high-value",
        state="sent",
        sent_at=T0,
    )

    _click(engine, f.m["c1-email"], c[1], "picks", "A", T0 + HOUR)
    _click(engine, f.m["c1-winback"], c[1], "winback", "A", T0 + 2 * DAY + HOUR)
    _click(engine, f.m["c2-email"], c[2], "picks", "A", T0 + 3 * HOUR)
    _click(engine, f.m["c2-email"], c[2], "picks", "A", T0 + 4 * HOUR)
    _click(engine, f.m["c5-email"], c[5], "picks", "B", T0 + 30 * MINUTE)

    def order(n: int, cust: int, at: datetime, units: int, **extra: Any) -> None:
        f.o[n] = store.order(cust, at, [(product, units)], **extra)

    order(1, c[1], T0 + 5 * HOUR, 3)
    order(2, c[1], T0 + 2 * DAY + 3 * HOUR, 2)
    order(3, c[2], T0 + 5 * DAY + 4 * HOUR, 1)
    order(4, c[3], T0 + DAY, 1)
    order(5, c[5], T0 + DAY, 4, refunded_amount=10.0, financial_status="partially_refunded")
    order(6, c[6], T0 + 2 * DAY, 1, cancelled_at=T0 + 2 * DAY + HOUR)
    order(7, c[7], T0 + DAY, 1)
    order(8, c[7], T0 + 3 * DAY, 2)
    order(9, c[8], T0 - DAY, 1)
    order(10, c[4], T0 + DAY, 1)
    order(11, c[6], T0 + DAY, 1, refunded_amount=10.0, financial_status="refunded")
    order(12, c[5], T0 + 30 * MINUTE, 1)
    return f
