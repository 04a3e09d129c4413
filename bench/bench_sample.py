"""Benchmark ``omnicast sample``: the store-L scenario (100k customers) against two baselines measured in the same run.

Baselines:
- I/O floor: writing the same number of bytes with plain binary file writes (nothing can beat this).
- Naive writer: a per-row ``csv.writer`` / ``json.dumps`` loop over a 5% subset of the very rows generated,
  extrapolated to all rows. It only serialises already-built rows, so it underestimates a naive generator.

Usage: ``python bench/bench_sample.py [--customers 100000] [--seed 7] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from sample import write_sample

AS_OF = date(2026, 11, 27)
SUBSET = 0.05


def generate(out: Path, customers: int, seed: int) -> tuple[dict[str, Any], dict[str, float], float]:
    """Write the store, timing each stage (the time between progress calls)."""
    stages: dict[str, float] = {}
    current = ""
    since = time.perf_counter()

    def progress(stage: str) -> None:
        nonlocal current, since
        now = time.perf_counter()
        if current:
            stages[current] = now - since
        current, since = stage, now

    start = time.perf_counter()
    manifest = write_sample(out, customers=customers, seed=seed, as_of=AS_OF, progress=progress)
    total = time.perf_counter() - start
    stages[current] = time.perf_counter() - since
    return manifest, stages, total


def io_floor(directory: Path, n_bytes: int) -> float:
    """Seconds to write ``n_bytes`` with plain 64 MiB binary writes (then fsync-free close, like the generator)."""
    block = b"x" * (64 << 20)
    path = directory / "io_floor.bin"
    start = time.perf_counter()
    with path.open("wb") as handle:
        for _ in range(n_bytes // len(block)):
            handle.write(block)
        handle.write(block[: n_bytes % len(block)])
    elapsed = time.perf_counter() - start
    path.unlink()
    return elapsed


def naive_writer(store: Path, manifest: dict[str, Any], directory: Path) -> float:
    """Per-row csv.writer / json.dumps over every 20th row of each file, extrapolated to all rows."""
    estimate = 0.0
    for name, info in manifest["files"].items():
        sample = _every_nth(store / name, round(1 / SUBSET))
        target = directory / "naive.out"
        with target.open("w", encoding="utf-8", newline="") as handle:
            start = time.perf_counter()
            if name.endswith(".csv"):
                writer = csv.writer(handle, lineterminator="\n")
                for row in sample:
                    writer.writerow(row)
            else:
                for event in sample:
                    handle.write(json.dumps(event, separators=(",", ":"), ensure_ascii=False) + "\n")
            elapsed = time.perf_counter() - start
        target.unlink()
        estimate += elapsed * info["rows"] / max(len(sample), 1)
    return estimate


def _every_nth(path: Path, step: int) -> list[Any]:
    """Every ``step``-th data row, parsed (CSV rows as lists, JSON lines as objects; broken lines skipped)."""
    rows: list[Any] = []
    with path.open(encoding="utf-8", newline="") as handle:
        if path.suffix == ".csv":
            reader = csv.reader(handle)
            next(reader)
            rows = [row for i, row in enumerate(reader) if i % step == 0]
        else:
            for i, line in enumerate(handle):
                if i % step == 0:
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError:
                        continue
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", type=Path, help="write the store here and keep it (default: a temp dir)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="omnicast-bench-"))
    store = args.keep or work / "store"
    try:
        manifest, stages, total = generate(store, args.customers, args.seed)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"omnicast sample --customers {args.customers:,} seed {args.seed} as of {AS_OF}, {os.cpu_count()} cpus")
        for stage, seconds in stages.items():
            print(f"  stage {stage:<10} {seconds:7.1f} s")
        print(f"  {'total':<16} {total:7.1f} s   peak RSS {peak_mb:,.0f} MB")
        n_bytes = 0
        for name, info in manifest["files"].items():
            size = (store / name).stat().st_size
            n_bytes += size
            print(f"  {name:<32} {info['rows']:>12,} rows {size / 1e6:>9.1f} MB")
        print(f"  {'all files':<32} {'':>17} {n_bytes / 1e6:>9.1f} MB  ({n_bytes / 1e6 / total:.0f} MB/s)")
        floor = io_floor(work, n_bytes)
        naive = naive_writer(store, manifest, work)
        print(f"baseline I/O floor (plain writes, same bytes): {floor:7.1f} s -> generator {total / floor:.1f}x it")
        print(f"baseline naive per-row writer (5% x 20):       {naive:7.1f} s -> generator {total / naive:.2f}x it")
        print(f"budget 120 s: {'OK' if total <= 120 else 'OVER'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
