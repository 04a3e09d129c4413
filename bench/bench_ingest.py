"""Benchmark ``sync`` (ingest + unify) on store-L: 100k customers, ~1M order lines, ~5M GA4 event lines.

Measured, each in a child process of its own (wall time, CPU time, peak RSS of that process):

- the GA4 events read alone, same file and known SKUs: the baseline (the row-by-row orjson reader this project had
  before issue 10, ``bench/baseline_analytics.py``) against the columnar reader, on the JSONL export and on the same
  events as Parquet;
- on SQLite and on PostgreSQL, each a fresh database after migrations: the full sync of the store's files end to end
  (``sync_store``), with the time of every stage (reads, identity, each write) and of the write side's functions;
- an incremental run with 1% new data: the day's delta exports (1% new orders, the events of the week after the last
  one, the last 1% of customers and contacts again) synced into the database the full run left;
- with ``--append``, a re-sync of the whole files with the 1% appended (a file is read whole every run: this is what
  a file source costs when nothing tells the sync what changed; it takes as long as the full sync).

``--profile`` adds a cProfile of the full SQLite sync (main thread: the write side and the reads' Python parts).

    .venv/bin/python bench/bench_ingest.py [--customers 100000] [--seed 7] [--data DIR] [--postgres URL | --no-postgres]
                                           [--no-baseline] [--append] [--no-parquet] [--profile] [--reads-only]

The generated store and its derived inputs (``ingest_data.py``) are cached under ``--data`` (default
/tmp/omnicast-bench-ingest).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import multiprocessing
import os
import pstats
import resource
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import wraps
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import orjson  # noqa: E402
import pandas as pd  # noqa: E402
from ingest_data import AS_OF, CRM_FILE, EVENTS_FILE, STORE_FOLDER, ensure_increment, ensure_parquet, ensure_store  # noqa: E402
from scratch_db import migrated_databases  # noqa: E402

TARGETS = {"sync": 30.0, "peak_mb": 2048.0, "incremental": 5.0}


# --- measuring in a child process --------------------------------------------------------------------------


def measured(job: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run ``job(*args)`` in a fresh (spawned) process; its result plus wall time, CPU time and peak RSS."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue, job, args))
    process.start()
    while True:
        try:
            result: dict[str, Any] = queue.get(timeout=5)
            break
        except Exception:  # noqa: BLE001  (queue.Empty: still running, unless it died)
            if not process.is_alive():
                result = {"error": f"the child process died (exit code {process.exitcode})"}
                break
    process.join()
    if "error" in result:
        raise RuntimeError(f"{job.__name__} failed in the child process:\n{result['error']}")
    return result


def _child(queue: Any, job: Callable[..., dict[str, Any]], args: tuple[Any, ...]) -> None:
    import traceback

    try:
        started, cpu = time.perf_counter(), time.process_time()
        result = job(*args)
        result["wall"] = time.perf_counter() - started
        result["cpu"] = time.process_time() - cpu
        result["peak_mb"] = _peak_rss_mb()
    except BaseException:  # noqa: BLE001  (reported to the parent, which stops the bench)
        result = {"error": traceback.format_exc()}
    queue.put(result)


def _peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM: the high-water mark of its own memory map, which starts afresh at
    exec; ``ru_maxrss`` would carry the parent's peak over into a spawned child)."""
    status = Path("/proc/self/status")
    lines = status.read_text().splitlines() if status.is_file() else []  # no /proc (not Linux): ru_maxrss below
    for line in lines:
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def read_old(events: Path, store: Path, now: datetime) -> dict[str, Any]:
    import baseline_analytics

    from sources.validate import Intake

    intake = Intake("analytics", events.name)
    frame = baseline_analytics.read_events(events, intake, _known_skus(store), now)
    return {"rows": len(frame), "quarantined": intake.rows_quarantined, "duplicates": intake.duplicates_skipped}


def read_new(events: Path, store: Path, now: datetime) -> dict[str, Any]:
    from sources.analytics import read_events
    from sources.validate import Intake

    intake = Intake("analytics", events.name)
    frame = read_events(events, intake, _known_skus(store), now)
    return {"rows": len(frame), "quarantined": intake.rows_quarantined, "duplicates": intake.duplicates_skipped}


def sqlite_floor_job(url: str, rows: int, customers: int) -> dict[str, Any]:
    """What SQLite itself costs for the events table, with no preparation in Python: ``rows`` event rows as
    ready-made tuples (ids in order, a customer and a product each, so both foreign keys are checked), inserted by one
    ``executemany`` on the sync's own connection settings, its four indexes built afterwards, then the commit."""
    from sqlalchemy import text

    from models.db import make_engine

    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO customers (id, created_at, updated_at) "
                          "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count) "
                          "SELECT i, '2026-01-01 00:00:00', '2026-01-01 00:00:00' FROM n"), {"count": customers})
        conn.execute(text("INSERT INTO products (id, sku, handle, title, price, consumable, active, published, "
                          "gift_card) WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500) "
                          "SELECT i, 'SKU-' || i, 'h' || i, 't', 1, 0, 1, 1, 0 FROM n"))  # fmt: skip
    rng = np.random.default_rng(7)
    names = ["page_view", "view_item", "add_to_cart", "begin_checkout", "purchase"]
    devices = [f"{number}.{number * 7 % 1_000_000_007}" for number in range(1, customers * 2 + 1)]
    who, what = rng.integers(1, customers + 1, rows).tolist(), rng.integers(1, 501, rows).tolist()
    events = [
        (n + 1, who[n], devices[who[n] * 2 - 1], names[n % 5], f"2026-{n % 12 + 1:02d}-01 00:00:{n % 60:02d}.000000",
         what[n], f"SKU-{what[n]}", 1, 12.5, None, "google / organic")
        for n in range(rows)
    ]  # fmt: skip
    raw = engine.raw_connection()
    cursor = raw.cursor()
    indexes = [row[0] for row in cursor.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' AND sql IS NOT NULL")]  # fmt: skip
    started = time.perf_counter()
    for statement in cursor.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' "
                                    "AND sql IS NOT NULL").fetchall():  # fmt: skip
        cursor.execute(f'DROP INDEX "{statement[0]}"')
    columns = "id, customer_id, user_pseudo_id, event_name, occurred_at, product_id, sku, quantity, value, "
    columns += "transaction_id, traffic_source"
    cursor.executemany(f"INSERT INTO events ({columns}) VALUES (?,?,?,?,?,?,?,?,?,?,?)", events)
    inserted = time.perf_counter()
    for statement in indexes:
        cursor.execute(statement)
    indexed = time.perf_counter()
    raw.commit()
    committed = time.perf_counter()
    raw.close()
    engine.dispose()
    return {"insert": inserted - started, "indexes": indexed - inserted, "commit": committed - indexed,
            "seconds": committed - started, "rows": rows}  # fmt: skip


def _known_skus(store: Path) -> set[str]:
    products = pd.read_csv(store / STORE_FOLDER / "products_export.csv", dtype=str, usecols=["Variant SKU"])
    return set(products["Variant SKU"].dropna().str.strip())


WRITE_STEPS = (
    "_upsert_products", "_without_forgotten", "stored_identities", "_keep_stored_contacts", "_identity_records",
    "resolve", "save_profiles", "_consent_statements", "save_statements", "_unlink_deleted", "_replace_orders",
    "_replace_events", "_save_quarantine", "_save_source_loads", "_save_watermarks",
)  # fmt: skip
"""Functions of ``models.sync``'s write side timed by the bench (wrapped in the child; the code is not changed)."""
READ_STEPS = (
    ("sources.exports", ("read_products", "read_customers", "read_orders", "read_contacts", "read_events")),
    ("sources.analytics", ("read_events",)),
    ("sources.shopify", ("check_customers", "check_orders", "normalize_phones")),
    ("sources.crm", ("check_contacts", "normalize_phones")),
    ("models.identity", ("_save_identities",)),
)
"""Read-side functions timed the same way, by the module whose name the caller looks them up in."""


def sync_job(url: str, folder: Path, now: datetime, run_id: str, profile: bool) -> dict[str, Any]:
    """One ``sync_store`` of ``folder`` (shopify/, hubspot_contacts.csv, ga4_events.jsonl) into ``url``."""
    try:
        import models.sync as sync_module
    except ImportError:  # before the write side moved to models/
        import sources.load as sync_module  # type: ignore[no-redef]
    from models.db import make_engine

    timers = _timed_write_side(sync_module)
    _timed_reads(timers)
    stages: list[tuple[str, float, float]] = []
    started = time.perf_counter()

    def progress(message: str) -> None:
        stages.append((message, time.perf_counter() - started, _peak_rss_mb()))

    engine = make_engine(url)
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    report = sync_module.sync_store(
        engine, folder / STORE_FOLDER, folder / CRM_FILE, folder / EVENTS_FILE, run_id=run_id, now=now,
        progress=progress,
    )  # fmt: skip
    if profiler is not None:
        profiler.disable()
    total = time.perf_counter() - started
    engine.dispose()
    result: dict[str, Any] = {
        "stages": _stage_times(stages, total),
        "peaks": _stage_peaks(stages),
        "timers": dict(timers),
        "orders": report.orders,
        "order_lines": report.order_lines,
        "events": report.events,
        "profiles": report.profiles,
        "reconciles": report.reconciles,
    }
    if profiler is not None:
        buffer = io.StringIO()
        stats = pstats.Stats(profiler, stream=buffer)
        stats.sort_stats("cumulative").print_stats(45)
        stats.sort_stats("tottime").print_stats(30)
        result["profile"] = buffer.getvalue()
    return result


def _timed(timers: dict[str, float], name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        label = name
        if name == "bulk_insert" and len(args) > 1:
            label = f"bulk_insert {args[1].name}"
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            timers[label] = timers.get(label, 0.0) + time.perf_counter() - started

    return wrapper


def _timed_reads(timers: dict[str, float]) -> None:
    from importlib import import_module

    for module_name, names in READ_STEPS:
        try:
            module = import_module(module_name)
        except ImportError:
            continue
        for name in names:
            if hasattr(module, name):
                label = f"read: {name}" if not module_name.startswith("models") else f"identity: {name}"
                setattr(module, name, _timed(timers, label, getattr(module, name)))


def _timed_write_side(module: Any) -> dict[str, float]:
    """Wrap the write side's functions (and each bulk insert, by table) to add up their time."""
    timers: dict[str, float] = {}
    for name in (*WRITE_STEPS, "bulk_insert", "recycled_ids", "reserve_ids"):
        if hasattr(module, name):
            setattr(module, name, _timed(timers, name, getattr(module, name)))
    try:
        import models.bulk as bulk
    except ImportError:
        return timers
    if hasattr(bulk, "_indexes_built_after"):
        original = bulk._indexes_built_after

        @contextmanager
        def indexes_timed(conn: Any, table: Any, rows: int) -> Iterator[None]:
            with original(conn, table, rows):
                yield
                started = time.perf_counter()
            label = f"  of which index rebuild {table.name}"
            timers[label] = timers.get(label, 0.0) + time.perf_counter() - started

        bulk._indexes_built_after = indexes_timed
    return timers


STAGE_OF_MESSAGE = (
    ("products:", "read products"),
    ("customers:", "read customers"),
    ("orders:", "read orders"),
    ("crm:", "read crm"),
    ("analytics:", "read events"),
    ("profiles:", "identity: products upsert, resolve, save profiles"),
    ("orders:", "write consents, orders, lines"),
    ("analytics:", "write events"),
)


def _stages(stages: list[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """(stage, seconds since the start, peak RSS so far) at the end of each stage: a stage ends with the progress
    line that names it (in the sync's order)."""
    result = []
    expected = list(STAGE_OF_MESSAGE)
    for message, at, peak in stages:
        while expected and not message.startswith(expected[0][0]):
            expected.pop(0)
        if not expected:
            break
        result.append((expected.pop(0)[1], at, peak))
    return result


def _stage_times(stages: list[tuple[str, float, float]], total: float) -> dict[str, float]:
    """Seconds per stage."""
    result: dict[str, float] = {}
    before = 0.0
    for name, at, _peak in _stages(stages):
        result[name] = at - before
        before = at
    result["quarantine, source loads, commit"] = total - before
    return result


def _stage_peaks(stages: list[tuple[str, float, float]]) -> dict[str, float]:
    """Peak RSS (MB) of the process when each stage ended (the sync's peak is the run's ``peak_mb``)."""
    return {name: peak for name, _at, peak in _stages(stages)}


# --- the run ----------------------------------------------------------------------------------------------


def _mb(value: float) -> str:
    return f"{value:,.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data", type=Path, default=Path("/tmp/omnicast-bench-ingest"))
    parser.add_argument(
        "--postgres",
        default=os.environ.get("OMNICAST_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-baseline", action="store_true", help="skip the old row-by-row read (~2 min)")
    parser.add_argument("--append", action="store_true", help="also re-sync the whole files with 1%% appended")
    parser.add_argument("--no-parquet", action="store_true", help="skip reading the events as Parquet")
    parser.add_argument("--profile", action="store_true", help="also profile a full sync on SQLite")
    parser.add_argument("--reads-only", action="store_true", help="only the GA4 reads (no database)")
    parser.add_argument("--no-floor", action="store_true", help="skip SQLite's own floor for the events (~1 min)")
    args = parser.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    store = ensure_store(args.data, args.customers, args.seed)
    delta, appended, later = ensure_increment(store)
    parquet = None if args.no_parquet else ensure_parquet(store)
    now = datetime.combine(AS_OF, datetime.min.time(), tzinfo=UTC) + timedelta(hours=6)
    manifest = orjson.loads((store / "manifest.json").read_bytes())["files"]
    size = (store / EVENTS_FILE).stat().st_size
    print(
        f"store-L: {args.customers:,} customers, {manifest['shopify/orders_export.csv']['rows']:,} order lines, "
        f"{manifest[EVENTS_FILE]['rows']:,} GA4 lines ({size / 1e9:.2f} GB), seed {args.seed}, as of {AS_OF}; "
        f"{os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f} at the start",
        flush=True,
    )

    print("\nGA4 events read alone (same file, same known SKUs), each in its own process:", flush=True)
    reads = []
    if not args.no_baseline:
        baseline = measured(read_old, store / EVENTS_FILE, store, now)
        reads.append(("baseline: row by row (orjson), before issue 10", baseline))
        _print_read(*reads[-1])
    reads.append(("columnar (pyarrow), JSONL", measured(read_new, store / EVENTS_FILE, store, now)))
    _print_read(*reads[-1])
    if parquet is not None:
        reads.append(("columnar (pyarrow), Parquet", measured(read_new, parquet, store, now)))
        _print_read(*reads[-1])
    if len(reads) > 1 and not args.no_baseline:
        print(f"  columnar JSONL vs baseline: {reads[0][1]['wall'] / reads[1][1]['wall']:.1f}x faster (wall)")

    runs: dict[str, dict[str, dict[str, Any]]] = {}
    if args.reads_only:
        return
    for label, url in migrated_databases(None if args.no_postgres else args.postgres):
        print(f"\n{label}: full sync of store-L into a fresh database …", flush=True)
        mine = runs[label] = {}
        mine["full"] = measured(sync_job, url, store, now, "bench-full", False)
        print(f"  {mine['full']['wall']:.1f} s, peak {_mb(mine['full']['peak_mb'])}", flush=True)
        _print_breakdown(mine["full"])
        if label == "SQLite" and not args.no_floor:
            _print_floor(mine["full"]["events"], args.customers)
        mine["delta"] = measured(sync_job, url, delta, later, "bench-delta", False)
        print(f"  incremental (1% delta files): {mine['delta']['wall']:.1f} s", flush=True)
        _print_breakdown(mine["delta"])
        if args.append:
            mine["appended"] = measured(sync_job, url, appended, later, "bench-appended", False)
            print(f"  re-sync of the whole files with 1% appended: {mine['appended']['wall']:.1f} s", flush=True)
    _print_table(runs)
    if args.profile:
        for label, url in migrated_databases(None):
            print(f"\nprofile of the full sync on {label} (main thread):", flush=True)
            print(measured(sync_job, url, store, now, "bench-profile", True)["profile"])


def _print_floor(events: int, customers: int) -> None:
    """The floor under the sync's events write on SQLite, measured on a database of its own."""
    for _label, url in migrated_databases(None):
        floor = measured(sqlite_floor_job, url, events, customers)
        print(f"  SQLite's own floor for {events:,} event rows (ready-made tuples, no Python preparation): "
              f"{floor['seconds']:.1f} s = insert {floor['insert']:.1f} + indexes {floor['indexes']:.1f} + commit "
              f"{floor['commit']:.1f}", flush=True)  # fmt: skip


def _print_breakdown(result: dict[str, Any]) -> None:
    """One run's stages and timed functions, printed as soon as it ends."""
    print("    stages: " + ", ".join(f"{name} {seconds:.1f}" for name, seconds in result["stages"].items()))
    if result.get("peaks"):
        print("    peak RSS after: " + ", ".join(f"{name} {_mb(peak)}" for name, peak in result["peaks"].items()))
    ranked = sorted(result["timers"].items(), key=lambda item: -item[1])
    print("    timed: " + ", ".join(f"{name} {seconds:.1f}" for name, seconds in ranked if seconds >= 0.05), flush=True)


def _peak(result: dict[str, Any] | None) -> str:
    return _mb(result["peak_mb"]) if result else "-"


def _seconds(result: dict[str, Any] | None) -> str:
    return f"{result['wall']:.1f} s" if result else "-"


def _print_read(label: str, result: dict[str, Any]) -> None:
    print(
        f"  {label:<48} {result['wall']:7.1f} s wall {result['cpu']:7.1f} s cpu  peak {_mb(result['peak_mb']):>9}  "
        f"({result['rows']:,} item rows, {result['quarantined']:,} quarantined, {result['duplicates']:,} repeats)",
        flush=True,
    )


def _print_table(runs: dict[str, dict[str, dict[str, Any]]]) -> None:
    if not runs:
        return
    labels = list(runs)
    width = 52
    print("\nsync (ingest + unify), seconds" + " " * (width - 30) + "".join(f"{label:>12}" for label in labels))
    stages = list(dict.fromkeys(name for label in labels for name in runs[label]["full"]["stages"]))
    for name in stages:
        print(f"  {name:<{width}}" + "".join(f"{runs[label]['full']['stages'].get(name, 0):12.1f}" for label in labels))
    print("  timed functions (inside the stages above):")
    timers = list(dict.fromkeys(name for label in labels for name in runs[label]["full"]["timers"]))
    for name in sorted(timers, key=lambda n: -max(runs[label]["full"]["timers"].get(n, 0) for label in labels)):
        values = [runs[label]["full"]["timers"].get(name, 0.0) for label in labels]
        if max(values) >= 0.05:
            print(f"    {name:<{width - 2}}" + "".join(f"{value:12.1f}" for value in values))
    rows = [
        ("full sync, wall", lambda r: f"{r['full']['wall']:.1f} s"),
        ("full sync, cpu (user + sys, all threads)", lambda r: f"{r['full']['cpu']:.1f} s"),
        ("full sync, peak RSS", lambda r: _mb(r["full"]["peak_mb"])),
        ("incremental: 1% delta files, wall", lambda r: f"{r['delta']['wall']:.1f} s"),
        ("incremental: 1% delta files, peak RSS", lambda r: _mb(r["delta"]["peak_mb"])),
        ("re-sync of whole files + 1% appended, wall", lambda r: _seconds(r.get("appended"))),
        ("re-sync of whole files + 1% appended, peak RSS", lambda r: _peak(r.get("appended"))),
    ]  # fmt: skip
    for name, cell in rows:
        print(f"  {name:<{width}}" + "".join(f"{cell(runs[label]):>12}" for label in labels))
    for label in labels:
        full = runs[label]["full"]
        print(f"  {label}: {full['orders']:,} orders, {full['order_lines']:,} lines, {full['events']:,} event rows, "
              f"{full['profiles']:,} profiles written")  # fmt: skip
    print(f"\ntargets: ingest + unify ≤ {TARGETS['sync']:.0f} s and ≤ {TARGETS['peak_mb'] / 1024:.0f} GB, "
          f"incremental ≤ {TARGETS['incremental']:.0f} s")  # fmt: skip
    for label in labels:
        run = runs[label]
        verdict = [
            f"sync {'OK' if run['full']['wall'] <= TARGETS['sync'] else 'OVER'}",
            f"memory {'OK' if run['full']['peak_mb'] <= TARGETS['peak_mb'] else 'OVER'}",
            f"incremental {'OK' if run['delta']['wall'] <= TARGETS['incremental'] else 'OVER'}",
            f"reconciles {run['full']['reconciles'] and run['delta']['reconciles']}",
        ]
        print(f"  {label}: " + ", ".join(verdict))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
