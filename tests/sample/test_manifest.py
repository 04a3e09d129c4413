"""manifest.json (sample/manifest.py): written as returned, and its row counts are the files' own."""

from __future__ import annotations

import json
from pathlib import Path

from tests.sample.reading import read_csv


def test_manifest_is_written_and_returned(store: tuple[Path, dict]) -> None:
    out, manifest = store
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["as_of"] == "2026-11-27" and manifest["customers"] == 2000 and manifest["seed"] == 7
    assert set(manifest) >= {"files", "dirt", "expected", "generator_version"}


def test_manifest_row_counts_equal_the_files(store: tuple[Path, dict]) -> None:
    out, manifest = store
    for name, info in manifest["files"].items():
        if name.endswith(".csv"):
            assert len(read_csv(out / name)[1]) == info["rows"], name
        else:
            assert len((out / name).read_text(encoding="utf-8").splitlines()) == info["rows"], name
