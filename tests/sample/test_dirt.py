"""Planted dirt (sample/dirt.py): exactly what independent checks find, and bad cells where they hurt most."""

from __future__ import annotations

from pathlib import Path

from tests.sample.reading import SHOPIFY_PHONE, audit, records


def test_dirt_in_the_manifest_is_exactly_what_independent_checks_find(store: tuple[Path, dict]) -> None:
    out, manifest = store
    assert audit(out) == manifest["dirt"]
    for path, info in manifest["files"].items():
        dirty = sum(files.get(path, 0) for files in manifest["dirt"].values())
        assert 0.003 <= dirty / info["rows"] <= 0.02, path


def test_bad_cells_are_planted_where_they_hurt_most(store: tuple[Path, dict]) -> None:
    """The hostile run's cases, in the demo: unsafe image URLs, opt-outs whose phone or birthday is broken."""
    out, manifest = store
    images = [p["Image Src"] for p in records(out, "products") if not p["Image Src"].startswith("https://")]
    assert len(images) == manifest["dirt"]["bad_field"]["shopify/products_export.csv"]
    assert all(url.split(":")[0] in {"javascript", "data"} or url.startswith("/") for url in images)
    broken = [c for c in records(out, "customers") if c["Phone"] and not SHOPIFY_PHONE.fullmatch(c["Phone"])]
    assert broken and all(c["Accepts Email Marketing"] == "no" for c in broken)
    assert len(broken) == manifest["expected"]["opt_outs_with_a_bad_phone"]
    old = [c for c in records(out, "crm") if c["Date of Birth"] and c["Date of Birth"] < "1900"]
    assert old and all(c["Email Marketing Consent"] == "Unsubscribed" for c in old)
    opted_in = {c["Email"].strip().lower() for c in records(out, "customers") if c["Accepts Email Marketing"] == "yes"}
    assert any(c["Email"].strip().lower() in opted_in for c in old)  # Shopify says yes: the CRM no must still win
