"""``omnicast models list|promote``: the registry as the operator reads it, and its one-line errors."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from flows.cli import app
from models.db import make_engine, upgrade
from models.registry import list_versions
from tests.models.test_registry import NOW, make_store, params, run

runner = CliRunner()


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """v1 served and was retired for v2 (better); v3 was rejected (worse)."""
    url = f"sqlite:///{tmp_path / 'omnicast.db'}"
    upgrade(url)
    engine = make_engine(url)
    make_store(engine)
    run(engine, params(15), now=NOW - timedelta(days=2))
    run(engine, params(20), now=NOW - timedelta(days=1))
    run(engine, params(5))
    monkeypatch.setenv("OMNICAST_DATABASE_URL", url)
    return engine


def test_list_json_has_every_version_newest_first(registry: Engine) -> None:
    result = runner.invoke(app, ["models", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["version"], r["status"]) for r in rows] == [(3, "rejected"), (2, "serving"), (1, "retired")]
    newest = rows[0]
    assert newest["ndcg_at_10"] == {"exclude_seen": 0.05, "include_seen": 0.05}
    assert newest["vs_serving"] == {"version": 2, "ndcg_at_10": 0.2, "difference": -0.15}
    assert newest["window"]["holdout_start"] == (NOW - timedelta(days=28)).isoformat()
    assert newest["parameters"]["epochs"] == 5 and newest["reason"].startswith("not promoted")
    assert rows[2]["vs_serving"] is None  # the first had nothing to beat


def test_list_table_shows_status_figures_and_why(registry: Engine) -> None:
    result = runner.invoke(app, ["models", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for words in ("v3", "rejected", "serving", "retired", "0.0500 / 0.0500", "-0.1500 vs v2", "first model",
                  "2026-05-04"):  # fmt: skip
        assert words in result.output, words


def test_promote_rolls_back_and_pins(registry: Engine) -> None:
    result = runner.invoke(app, ["models", "promote", "1"])
    assert result.exit_code == 0, result.output
    assert "v1 serves now (pinned)" in result.output
    assert {r.version: (r.status, r.pinned) for r in list_versions(registry)} == {
        1: ("serving", True),
        2: ("retired", False),
        3: ("rejected", False),
    }
    listed = runner.invoke(app, ["models", "list"], env={"COLUMNS": "200"})
    assert "serving (pinned)" in listed.output


def test_promote_of_an_unknown_version_is_one_error_line(registry: Engine) -> None:
    result = runner.invoke(app, ["models", "promote", "9"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith("error: no model version 9")
    assert "Traceback" not in result.output


def test_an_empty_registry_says_how_to_fill_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNICAST_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0 and "omnicast train" in result.output
    assert json.loads(runner.invoke(app, ["models", "list", "--json"]).stdout) == []
