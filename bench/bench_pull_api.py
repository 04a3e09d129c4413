"""Benchmark: the pull API's latency (``GET /v1/customers/{id}/cards`` and ``/recommendations``) on a store-sized
database, against ``GET /healthz`` (one ``SELECT 1`` in the threadpool: the cheapest route) in the same run.

The database is filled directly, store-L shaped: ``--customers`` customers, each with a Shopify identity (the id the
app asks with) and 10 recommendations (what ``omnicast train`` keeps) over 5,000 products, and 0-6 in-app cards each
(1.5 on average; one in ten retracted, one in ten expired, which the API must skip). The first cards go through the
real write path (``InAppStore.send_batch``, rendered from ``weekly_picks``: its rate is printed); the rest are copies of
those with their own id, customer and dates. The app is served as ``omnicast serve`` serves it (``flows.cli_answers``'s
uvicorn set-up, access log lines on stderr) in its own process, so server and client don't share an interpreter lock.
One keep-alive client asks, for random customers, healthz / cards / recommendations in turn (after a warm-up), then
revalidates cards with ``If-None-Match`` (304); p50/p95/p99 are per route. Target (issue 8): p95 ≤ 20 ms.

    .venv/bin/python bench/bench_pull_api.py [--customers 100000] [--requests 3000] [--postgres URL | --no-postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx
from sqlalchemy import insert, text
from sqlalchemy.engine import Engine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scratch_db import migrated_databases  # bench/scratch_db.py (this folder is on sys.path when run as a script)

from channels.inapp_store import CARDS, InAppStore  # noqa: E402
from channels.outbox import ledger_hash  # noqa: E402
from channels.render import CardRenderer  # noqa: E402
from flows.settings import Settings  # noqa: E402
from models.db import make_engine  # noqa: E402
from models.message import OutboundMessage, Recipient  # noqa: E402
from models.schema import Customer, Identity, Product, Recommendation  # noqa: E402

KEY = "bench-api-key-0123456789abcdef"
PRODUCTS = 5_000
RECS = 10
REAL_CARDS = 2_000
CHUNK = 20_000
TARGET_MS = 20.0
SHOP_BASE = 7_000_000_000_000
EXPLANATIONS = ["Because you bought Kenya AA Nyeri", "Because you showed interest in Colombia Huila",
                "Matches your taste: fruity, light roast", "Picked for you: popular this week"]  # fmt: skip


# --- the store -------------------------------------------------------------------------------------------------------


def context(customer_id: int, rng: random.Random) -> dict[str, Any]:
    """A weekly-picks context as the planner passes it (4 products)."""
    picks = rng.sample(range(1, PRODUCTS + 1), 4)
    return {
        "store": {"name": "Bean & Leaf Coffee", "url": "https://beanandleaf.example", "address": "500 Roastery Lane",
                  "currency": "USD"},
        "customer": {"first_name": "Ann"}, "campaign": "weekly-picks", "variant": "A", "subject": None,
        "offer": None, "topic": "coffee", "picks": "personal", "taste_known": True, "cart": [], "refill": None,
        "products": [
            {"sku": f"BL-{p:05d}", "title": f"Ethiopia Yirgacheffe Lot {p}", "price": 18.5 + p % 20,
             "url": f"https://beanandleaf.example/products/lot-{p}?utm_source=inapp",
             "image_url": f"https://cdn.beanandleaf.example/p/{p}.jpg", "explanation": rng.choice(EXPLANATIONS),
             "kind": "recommended", "product_type": "Coffee", "topic": "coffee"}
            for p in picks
        ],
        "trigger": {"kind": "weekly_picks"},
    }  # fmt: skip


def seed(engine: Engine, customers: int, now: datetime, rng: random.Random) -> dict[str, float]:
    """Fill the store; returns what the real card write path cost."""
    ids = range(1, customers + 1)
    with engine.begin() as conn:
        conn.execute(insert(Product.__table__), [  # type: ignore[attr-defined]
            {"id": p, "sku": f"BL-{p:05d}", "handle": f"lot-{p}", "title": f"Ethiopia Yirgacheffe Lot {p}",
             "product_type": "Coffee", "price": 18.5 + p % 20, "image_url": f"https://cdn.beanandleaf.example/p/{p}.jpg",
             "consumable": True, "active": p % 50 != 0}
            for p in range(1, PRODUCTS + 1)
        ])  # fmt: skip
    for start in range(1, customers + 1, CHUNK):
        chunk = range(start, min(start + CHUNK, customers + 1))
        with engine.begin() as conn:
            conn.execute(insert(Customer.__table__), [  # type: ignore[attr-defined]
                {"id": i, "email": f"c{i}@example.com", "created_at": now, "updated_at": now} for i in chunk
            ])  # fmt: skip
            conn.execute(insert(Identity.__table__), [  # type: ignore[attr-defined]
                {"customer_id": i, "source": "shopify", "external_id": str(SHOP_BASE + i), "seen_at": now}
                for i in chunk
            ])  # fmt: skip
            conn.execute(insert(Recommendation.__table__), [  # type: ignore[attr-defined]
                {"customer_id": i, "product_id": p, "rank": r, "score": 1.0 / r, "model": "hybrid",
                 "explanation": rng.choice(EXPLANATIONS), "trained_at": now}
                for i in chunk for r, p in enumerate(rng.sample(range(1, PRODUCTS + 1), RECS), start=1)
            ])  # fmt: skip

    # Cards: who has how many, then the first REAL_CARDS through the adapter, the rest copied from those.
    plan = [(i, n) for i in ids for n in range(rng.choice((0, 0, 1, 1, 2, 2, 3, 3, 4, 6)) // 2 + rng.randint(0, 1))]
    real = plan[:REAL_CARDS]
    messages = [
        OutboundMessage(occurrence_key=f"weekly-picks:{n}", channel="inapp",
                        recipient=Recipient(customer_id=i, email=f"c{i}@example.com", first_name="Ann"),
                        campaign="weekly-picks", template="weekly_picks", variant="A", context=context(i, rng))
        for i, n in real
    ]  # fmt: skip
    store = InAppStore(engine, CardRenderer(), clock=lambda: now - timedelta(days=1))
    started = time.perf_counter()
    for start in range(0, len(messages), store.batch_size):
        results = store.send_batch(messages[start : start + store.batch_size])
        assert all(r.status == "sent" for r in results), results[0]
    write = time.perf_counter() - started
    with engine.connect() as conn:
        prototypes = [card for (card,) in conn.execute(text("SELECT card FROM inapp_cards LIMIT 200"))]
    prototypes = [p if isinstance(p, dict) else json.loads(p) for p in prototypes]
    rows = []
    for i, n in plan[REAL_CARDS:]:
        fate = rng.random()
        created = (
            now - timedelta(days=15 + rng.random() * 14) if fate < 0.1 else now - timedelta(days=rng.random() * 13)
        )
        expires = created + timedelta(days=14)
        card_id = ledger_hash((f"weekly-picks:{n}", i, "inapp"))
        card = {**rng.choice(prototypes), "id": card_id, "customer_id": i,
                "expires_at": expires.isoformat(timespec="seconds")}  # fmt: skip
        rows.append({"id": card_id, "customer_id": i, "card": card, "campaign": "weekly-picks", "created_at": created,
                     "expires_at": expires, "retracted_at": created + timedelta(hours=6) if 0.1 <= fate < 0.2 else None,
                     "updated_at": created})  # fmt: skip
    for start in range(0, len(rows), CHUNK):
        with engine.begin() as conn:
            conn.execute(insert(CARDS), rows[start : start + CHUNK])
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))  # fresh planner statistics, as a database that has lived a while has
    return {"cards": len(plan), "real": len(real), "write_s": write}


# --- the server ------------------------------------------------------------------------------------------------------


def serve(url: str) -> None:
    """The child process: the app as ``omnicast serve`` runs it; prints its port, then serves until killed."""
    from flows.cli_answers import _listen, _run
    from web.app import create_app

    settings = Settings(_env_file=None, database_url=url, secret_key="bench-secret-key-0123456789",  # type: ignore[call-arg]
                             serve_url="http://127.0.0.1", api_keys=KEY)  # fmt: skip
    engine = make_engine(url)
    listener = _listen("127.0.0.1", 0)
    port = listener.getsockname()[1]
    print(f"PORT {port}", flush=True)
    _run(create_app(settings, engine), listener, settings.links_url, "127.0.0.1", port)


def start_server(url: str, log: Path) -> tuple[subprocess.Popen[str], str]:
    child = subprocess.Popen([sys.executable, __file__, "--serve", url], stdout=subprocess.PIPE,
                             stderr=log.open("w"), text=True)  # fmt: skip
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line.startswith("PORT "):
        child.kill()
        raise RuntimeError(f"the server did not start; see {log}")
    return child, f"http://127.0.0.1:{int(line.split()[1])}"


# --- measuring -------------------------------------------------------------------------------------------------------


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99), "mean": statistics.fmean(ordered),
            "max": ordered[-1]}  # fmt: skip


def measure(label: str, url: str, customers: int, requests: int, rng: random.Random) -> bool:
    with TemporaryDirectory() as folder:
        child, base = start_server(url, Path(folder) / "serve.log")
        try:
            return _measure(label, base, customers, requests, rng)
        finally:
            child.terminate()
            child.wait(10)


def _measure(label: str, base: str, customers: int, requests: int, rng: random.Random) -> bool:
    auth = {"Authorization": f"Bearer {KEY}"}
    routes = {"healthz (baseline)": lambda c: "/healthz", "cards": lambda c: f"/v1/customers/{SHOP_BASE + c}/cards",
              "recommendations": lambda c: f"/v1/customers/{SHOP_BASE + c}/recommendations"}  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in [*routes, "cards, If-None-Match → 304"]}
    sizes: dict[str, list[int]] = {name: [] for name in times}
    etags: dict[int, str] = {}
    with httpx.Client(base_url=base, headers=auth, timeout=10) as http:
        for _ in range(300):  # warm-up: connections, caches, the threadpool
            for path in routes.values():
                http.get(path(rng.randint(1, customers)))
        for _ in range(requests):
            customer = rng.randint(1, customers)
            for name, path in routes.items():
                started = time.perf_counter()
                answer = http.get(path(customer))
                times[name].append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200, (name, answer.status_code)
                sizes[name].append(len(answer.content))
                if name == "cards":
                    etags[customer] = answer.headers["etag"]
        for customer, etag in list(etags.items())[:requests]:
            started = time.perf_counter()
            answer = http.get(routes["cards"](customer), headers={"If-None-Match": etag})
            times["cards, If-None-Match → 304"].append((time.perf_counter() - started) * 1000)
            assert answer.status_code == 304, answer.status_code
            sizes["cards, If-None-Match → 304"].append(len(answer.content))
    base_p95 = percentiles(times["healthz (baseline)"])["p95"]
    print(f"{label}: {requests:,} requests per route, one keep-alive client, random customers")
    print(f"  {'route':<30} {'p50':>7} {'p95':>7} {'p99':>7} {'mean':>7} {'max':>7}   body    p95 vs baseline")
    ok = True
    for name, samples in times.items():
        if not samples:
            continue
        p = percentiles(samples)
        extra = "" if name.startswith("healthz") else f"   +{p['p95'] - base_p95:5.2f} ms"
        print(f"  {name:<30} {p['p50']:6.2f}  {p['p95']:6.2f}  {p['p99']:6.2f}  {p['mean']:6.2f}  {p['max']:6.1f}"
              f"   {statistics.fmean(sizes[name]):5,.0f} B{extra}")  # fmt: skip
        if not name.startswith("healthz"):
            ok = ok and p["p95"] <= TARGET_MS
    print(f"  target p95 ≤ {TARGET_MS:.0f} ms on both routes: {'met' if ok else 'NOT MET'}")
    return ok


def run(label: str, url: str, args: argparse.Namespace) -> bool:
    engine = make_engine(url)
    now = datetime.now(UTC)
    started = time.perf_counter()
    seeded = seed(engine, args.customers, now, random.Random(7))
    took = time.perf_counter() - started
    engine.dispose()
    print(f"{label}: {args.customers:,} customers, {args.customers * RECS:,} recommendations, "
          f"{seeded['cards']:,.0f} cards, seeded in {took:.1f} s; "
          f"the first {seeded['real']:,.0f} cards through InAppStore.send_batch (render, validate, store): "
          f"{seeded['real'] / seeded['write_s']:,.0f} cards/s")  # fmt: skip
    return measure(label, url, args.customers, args.requests, random.Random(11))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=3_000)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("OMNICAST_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    print(f"{os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f} at the start")
    results = [
        run(label, url, args) for label, url in migrated_databases(None if args.no_postgres else args.postgres)
    ]
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
