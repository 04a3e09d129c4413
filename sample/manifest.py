"""manifest.json: what a sample store holds (docs/SOURCE_FORMATS.md, docs/SAMPLE_DATA.md) — seed, as_of, rows per
file, planted dirt per kind and file, and the counts a correct reader and the later stages must find."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sample.catalogue import CURRENCY, STORE_NAME
from sample.clock import STORE_TZ, Clock
from sample.dirt import DIRT_KINDS
from sample.layout import MANIFEST_PATH

GENERATOR_VERSION = "1.1.0"


@dataclass(frozen=True)
class FileWritten:
    """One file of the store as written: its path in the store, data rows (planted ones included), rows of dirt
    planted per kind, and its part of manifest.expected (in the order the manifest lists them)."""

    path: str
    rows: int
    dirt: dict[str, int]
    expected: dict[str, Any]


def manifest(seed: int, clock: Clock, customers: int, written: Sequence[FileWritten]) -> dict[str, Any]:
    """The manifest of a store whose files were written in this order."""
    files = [w.path for w in written]
    dirt = {w.path: w.dirt for w in written}
    expected: dict[str, Any] = {}
    for w in written:
        expected.update(w.expected)
    store = {
        "name": STORE_NAME,
        "currency": CURRENCY,
        "timezone": STORE_TZ,
        "history_start": clock.start.isoformat(),
        "history_end": (clock.as_of - timedelta(days=1)).isoformat(),
    }
    return {
        "seed": seed,
        "as_of": clock.as_of.isoformat(),
        "customers": customers,
        "generator_version": GENERATOR_VERSION,
        "files": {w.path: {"rows": w.rows} for w in written},
        "dirt": {k: {f: dirt[f][k] for f in files if k in dirt[f]} for k in DIRT_KINDS},
        "expected": {"store": store, **expected},
    }


def write_manifest(out: Path, content: dict[str, Any]) -> None:
    """Write ``content`` to the store's manifest.json (UTF-8, indented, newline-terminated)."""
    text = json.dumps(content, indent=2, ensure_ascii=False) + "\n"
    (out / MANIFEST_PATH).write_text(text, encoding="utf-8")
