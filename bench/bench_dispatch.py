"""Benchmark: the dispatch machinery alone (claim with payload → gate → 'sending' → hand-over → outcome), per database.

Planner-shaped messages (4 products in the context, as weekly picks carry) go to an in-memory channel, so what is
measured is the ledger work a real run pays on top of its channel. Baseline measured in the same run: the same ledger
rows written by one plain ``INSERT`` per batch (executemany, no payload, no conflict handling, no gate, no outcome),
the least a ledger can cost. A second dispatch of the same messages shows what a rerun costs (all already done).

    .venv/bin/python bench/bench_dispatch.py [--messages 20000] [--postgres postgresql+psycopg://postgres@127.0.0.1/test]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert
from sqlalchemy.engine import Engine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scratch_db import migrated_databases  # bench/scratch_db.py (this folder is on sys.path when run as a script)

from channels.base import InMemoryChannel, Recipient  # noqa: E402
from channels.dispatch import MESSAGES, dispatch  # noqa: E402
from models.db import make_engine  # noqa: E402
from models.message import OutboundMessage
from models.schema import Consent, Customer  # noqa: E402

BATCH = 500
NOW = datetime(2026, 11, 27, 9, tzinfo=UTC)


def messages(count: int) -> list[OutboundMessage]:
    context = {
        "store": {"name": "Bean & Leaf Coffee", "url": "https://beanandleaf.example", "address": "500 Roastery Lane"},
        "products": [
            {"sku": f"BL-{i:03d}", "title": f"Ethiopia Yirgacheffe Lot {i}", "price": 18.5 + i,
             "url": f"https://beanandleaf.example/products/yirgacheffe-{i}?utm_source=email",
             "image_url": f"https://cdn.beanandleaf.example/p/{i}.jpg", "explanation": "Because you bought Kenya AA"}
            for i in range(4)
        ],
        "trigger": {"kind": "broadcast"},
    }  # fmt: skip
    return [
        OutboundMessage(
            occurrence_key="weekly-picks:2026-W48",
            channel="email",
            recipient=Recipient(customer_id=i, email=f"c{i}@example.com", first_name="Ann"),
            campaign="weekly-picks",
            template="weekly_picks",
            variant="A",
            context={**context, "customer": {"first_name": "Ann"}},
        )
        for i in range(1, count + 1)
    ]


def seed(engine: Engine, count: int) -> None:
    with engine.begin() as conn:
        ids = range(1, count + 1)
        conn.execute(insert(Customer.__table__), [{"id": i, "created_at": NOW, "updated_at": NOW} for i in ids])
        conn.execute(insert(Consent.__table__), [
            {"customer_id": i, "channel": "email", "state": "granted", "source": "shopify", "recorded_at": NOW}
            for i in ids
        ])  # fmt: skip


def plain_inserts(engine: Engine, planned: list[OutboundMessage]) -> float:
    started = time.perf_counter()
    for start in range(0, len(planned), BATCH):
        rows = [
            {"occurrence_key": m.occurrence_key + ":floor", "customer_id": m.customer_id, "channel": m.channel,
             "campaign": m.campaign, "variant": m.variant, "template": m.template, "state": "sent", "attempts": 1,
             "created_at": NOW, "updated_at": NOW}
            for m in planned[start : start + BATCH]
        ]  # fmt: skip
        with engine.begin() as conn:
            conn.execute(insert(MESSAGES), rows)
    return time.perf_counter() - started


def measure(label: str, engine: Engine, count: int) -> None:
    planned = messages(count)
    seed(engine, count)
    floor = plain_inserts(engine, planned)
    channel = InMemoryChannel("email")
    channel.batch_size = BATCH  # type: ignore[misc]
    started = time.perf_counter()
    report = dispatch(engine, planned, {"email": channel})
    first = time.perf_counter() - started
    assert report.total_sent == count and report.balanced, report.rows()
    started = time.perf_counter()
    again = dispatch(engine, planned, {"email": InMemoryChannel("email")})
    rerun = time.perf_counter() - started
    assert again.total_sent == 0 and again.channels["email"].already_done == count
    print(f"{label}: {count:,} messages")
    print(f"  dispatch (claim+payload, gate, sending, outcome): {first:6.2f} s  {count / first:8,.0f} msgs/s")
    print(f"  rerun of the same messages (all already done):   {rerun:6.2f} s  {count / rerun:8,.0f} msgs/s")
    print(f"  baseline plain INSERT of the same ledger rows:   {floor:6.2f} s  {count / floor:8,.0f} rows/s"
          f"  -> dispatch costs {first / floor:.1f}x the floor")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--postgres", default=os.environ.get("OMNICAST_TEST_POSTGRES_URL",
                                                             "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    for label, url in migrated_databases(args.postgres):
        engine = make_engine(url)
        measure(label, engine, args.messages)
        engine.dispose()

if __name__ == "__main__":
    main()
