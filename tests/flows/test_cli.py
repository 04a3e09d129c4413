"""The `omnicast` command line as a user meets it: help, sample data, one-line errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.demo import prefect_environment

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
    assert "OMNICAST_STORE_URL" in result.output


@pytest.mark.e2e
def test_sync_of_a_missing_folder_names_the_file(prefect_api: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNICAST_DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite'}")
    monkeypatch.setenv("OMNICAST_STORE_PATH", "")  # restored after: the CLI writes --store into the environment
    result = runner.invoke(app, ["sync", "--store", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "products_export.csv" in result.output or "nowhere" in result.output


# --- the error contract: one `error:` line at the end of stderr, exit code 2, no traceback --------------------------


def _last_line(text: str) -> str:
    return [line for line in text.splitlines() if line.strip()][-1]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["sample", "--out", "x", "--customers", "abc"], "--customers"),
        (["sample", "--out", "x", "--customers", "0"], "--customers"),
        (["sample", "--out", "x", "--seed", "-1"], "--seed"),
        (["sample", "--out", "x", "--bogus"], "--bogus"),
        (["sample"], "--out"),
        (["campaign", "run"], "name"),
        (["nosuchcommand"], "nosuchcommand"),
    ],
)
def test_usage_errors_end_with_one_error_line(args: list[str], named: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    last = _last_line(result.stderr)
    assert last.startswith("error: ") and named in last
    assert "╭" not in result.stderr and "│" not in result.stderr  # no box drawn around it


def test_help_still_works_for_every_command() -> None:
    for args in (["--help"], ["sample", "--help"], ["campaign", "run", "--help"], ["audiences", "sync", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and "Usage" in result.output, args


def test_sample_under_a_regular_file_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = runner.invoke(app, ["sample", "--out", str(blocker / "store"), "--customers", "10"])
    assert result.exit_code == 2
    assert _last_line(result.stderr) == (
        f"error: --out '{blocker / 'store'}' cannot be created as a folder ({blocker} is a file, not a folder); "
        "choose another folder"
    )


def test_an_unknown_campaign_is_refused_before_any_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNICAST_DATABASE_URL", "sqlite:////no/such/folder/omnicast.db")  # never reached
    result = runner.invoke(app, ["campaign", "run", "black-friday"])
    assert result.exit_code == 2
    assert _last_line(result.stderr).startswith("error: no campaign named 'black-friday' in ")
    assert "known campaigns: abandoned-cart, birthday" in result.stderr


def test_a_bug_is_not_disguised_as_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.runtime

    def broken() -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(flows.runtime, "load_settings", broken)
    result = runner.invoke(app, ["train"])
    assert result.exit_code == 1
    assert isinstance(result.exception, KeyError)


# --- the demo keeps Prefect's home in its work folder ------------------------------------------------------------


def test_demo_keeps_prefect_home_in_its_workdir_and_allows_a_slow_server_start(tmp_path: Path) -> None:
    settings = prefect_environment(tmp_path / "demo", {"HOME": str(tmp_path)})
    assert settings["PREFECT_HOME"] == str((tmp_path / "demo" / ".prefect").resolve())
    assert int(settings["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]) >= 60
    assert "PREFECT_API_URL" not in settings


def test_demo_keeps_an_operators_prefect_home_and_api(tmp_path: Path) -> None:
    assert "PREFECT_HOME" not in prefect_environment(tmp_path, {"PREFECT_HOME": "/srv/prefect"})
    explicit = prefect_environment(tmp_path, {"PREFECT_API_URL": "http://prefect.internal:4200/api"})
    assert "PREFECT_API_URL" not in explicit  # already in the environment: left as it is


def test_demo_carries_over_the_api_url_of_the_operators_profile(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles.toml"
    profiles.write_text('active = "prod"\n[profiles.prod]\nPREFECT_API_URL = "http://prefect.internal:4200/api"\n')
    settings = prefect_environment(tmp_path / "demo", {"PREFECT_PROFILES_PATH": str(profiles)})
    assert settings["PREFECT_API_URL"] == "http://prefect.internal:4200/api"


def test_the_ephemeral_startup_setting_exists_in_this_prefect() -> None:
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    assert PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.name == "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
