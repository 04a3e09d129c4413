"""`omnicast campaigns validate|list|show` as a marketer types them: the shipped files pass, a broken one is refused
with its file and line (exit 2, one line per broken file), and show reads the audience from the database."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from models.campaigns import SHIPPED_DIR

runner = CliRunner()


def test_the_shipped_campaigns_validate() -> None:
    result = runner.invoke(app, ["campaigns", "validate"])
    assert result.exit_code == 0, result.output
    assert "5 campaigns, 5 segments and 2 ad audiences" in result.stdout and "all valid" in result.stdout


def test_a_broken_file_exits_2_naming_file_and_line(tmp_path: Path) -> None:
    folder = tmp_path / "campaigns"
    shutil.copytree(SHIPPED_DIR, folder)
    path = folder / "winback.yaml"
    path.write_text(path.read_text().replace("trigger: churn_risk", "trigger: churn"))
    result = runner.invoke(app, ["campaigns", "validate", "--dir", str(folder)])
    assert result.exit_code == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "winback.yaml, line 5, field audience.trigger" in last and "'churn'" in last


def test_list_gives_each_campaign_its_audience_priority_and_next_run() -> None:
    result = runner.invoke(app, ["campaigns", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["abandoned-cart"]["priority"] == 1 and rows["weekly-picks"]["audience"] == "segment has-picks"
    assert "0 10 * * 2 America/Los_Angeles" in rows["weekly-picks"]["when"]


def test_show_counts_the_audience_in_the_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNICAST_DATABASE_URL", f"sqlite:///{tmp_path / 'omnicast.db'}")
    result = runner.invoke(app, ["campaigns", "show", "weekly-picks", "--json"])
    assert result.exit_code == 0, result.output
    details = json.loads(result.stdout)
    assert details["audience_today"] == 0 and len(details["next_runs"]) == 3  # an empty store: nobody yet
    unknown = runner.invoke(app, ["campaigns", "show", "black-friday"])
    assert unknown.exit_code == 2 and "known campaigns: abandoned-cart" in unknown.stderr


def test_a_send_window_inside_the_quiet_hours_is_refused_before_any_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "campaigns"
    shutil.copytree(SHIPPED_DIR, folder)
    with (folder / "winback.yaml").open("a") as handle:
        handle.write("send_window: 22:00-23:30\n")
    monkeypatch.setenv("OMNICAST_QUIET_HOURS", "21:00-08:00")
    result = runner.invoke(app, ["campaigns", "validate", "--dir", str(folder)])
    assert result.exit_code == 2
    assert "winback.yaml, field send_window: send window 22:00-23:30 lies wholly inside the quiet" in result.stderr
    monkeypatch.setenv("OMNICAST_QUIET_HOURS", "23:00-08:00")
    monkeypatch.setenv("OMNICAST_DATABASE_URL", f"sqlite:///{tmp_path / 'omnicast.db'}")
    shown = runner.invoke(app, ["campaigns", "show", "winback", "--dir", str(folder)])
    assert shown.exit_code == 0 and "send window: 22:00-23:30" in shown.stdout


def test_validate_checks_the_recommendation_rules_too(tmp_path: Path) -> None:
    result = runner.invoke(app, ["campaigns", "validate"])
    assert "recommendation rules" in result.stdout and "1 pin rule (" in result.stdout
    folder = tmp_path / "campaigns"
    shutil.copytree(SHIPPED_DIR, folder)
    rules = folder / "recommendation-rules.yaml"
    text = rules.read_text().replace("multiply: 1.2", "multiply: 1.2\n    mutliply: 2")
    rules.write_text(text)
    line = text.splitlines().index("    mutliply: 2") + 1
    broken = runner.invoke(app, ["campaigns", "validate", "--dir", str(folder)])
    assert broken.exit_code == 2
    assert f"recommendation-rules.yaml, line {line}, field boost[0].mutliply: unknown field 'mutliply'" in broken.stderr
