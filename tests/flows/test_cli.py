"""The `omnicast` command line as a user meets it: help, sample data, one-line errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app

runner = CliRunner()


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("sample", "demo", "daily", "sync", "train", "triggers", "campaign", "audiences"):
        assert command in result.output


def test_sample_writes_a_store_and_says_where(tmp_path: Path) -> None:
    out = tmp_path / "store"
    result = runner.invoke(app, ["sample", "--out", str(out), "--customers", "40", "--seed", "3",
                                 "--as-of", "2026-11-27"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["as_of"] == "2026-11-27"
    assert (out / "shopify" / "orders_export.csv").exists()
    assert "written to" in result.output


def test_sample_refuses_a_bad_date_in_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["sample", "--out", str(tmp_path), "--as-of", "tomorrow"])
    assert result.exit_code == 2
    assert "error:" in result.output and "Traceback" not in result.output


@pytest.mark.e2e
def test_sync_without_a_store_names_the_setting(prefect_api: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMNICAST_STORE_PATH", raising=False)
    monkeypatch.setenv("OMNICAST_DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite'}")
    result = runner.invoke(app, ["sync"])
    assert result.exit_code == 2
    assert "OMNICAST_STORE_PATH" in result.output


@pytest.mark.e2e
def test_sync_of_a_missing_folder_names_the_file(prefect_api: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNICAST_DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite'}")
    monkeypatch.setenv("OMNICAST_STORE_PATH", "")  # restored after: the CLI writes --store into the environment
    result = runner.invoke(app, ["sync", "--store", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "products_export.csv" in result.output or "nowhere" in result.output
