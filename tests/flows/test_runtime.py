"""Settings problems stop a run before any work, with a message naming the variable and the fix."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from channels.base import ChannelConfigError
from channels.email import dkim_key, signing_key
from flows.runtime import (
    SettingError,
    load_settings,
    open_channels,
    quiet_user_error_tracebacks,
    run_date,
)
from flows.settings import Settings
from models.errors import InputError


def test_missing_secret_key_says_how_to_make_one() -> None:
    with pytest.raises(ChannelConfigError, match="OMNICAST_SECRET_KEY.*secrets.token_urlsafe"):
        signing_key(Settings(secret_key=None))


def test_unknown_timezone_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNICAST_TIMEZONE", "Mars/Olympus")
    with pytest.raises(ValidationError, match="OMNICAST_TIMEZONE='Mars/Olympus'"):
        Settings()


def test_unreadable_dkim_key_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(ChannelConfigError, match="OMNICAST_DKIM_KEY_FILE"):
        dkim_key(Settings(dkim_key_file=missing))


def test_dkim_domain_defaults_to_the_sender_domain(tmp_path: Path) -> None:
    pem = tmp_path / "key.pem"
    pem.write_bytes(b"-----BEGIN PRIVATE KEY-----\n")
    key = dkim_key(Settings(dkim_key_file=pem, sender_address="Shop <hi@shop.example>"))
    assert key is not None and key.domain == "shop.example" and key.selector == "omnicast"


def test_unknown_channel_scheme_names_the_setting(tmp_path: Path) -> None:
    settings = Settings(secret_key="k", outbox_dir=tmp_path, email_url="carrier-pigeon://coop")
    with pytest.raises(ChannelConfigError, match="OMNICAST_EMAIL_URL"):
        open_channels(settings)


def test_channels_default_to_folders_under_the_outbox(tmp_path: Path) -> None:
    channels = open_channels(Settings(secret_key="k", outbox_dir=tmp_path))
    assert set(channels) == {"email", "meta", "google", "tiktok", "inapp"}
    assert Settings(outbox_dir=tmp_path).channel_url("meta") == f"file://{tmp_path.resolve()}/audiences"


def test_bad_as_of_date_is_an_input_error() -> None:
    with pytest.raises(InputError, match="YYYY-MM-DD"):
        run_date(Settings(), "27/11/2026")


# --- settings: every wrong value is one line naming its variable ----------------------------------------------------


def _problem(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(f"OMNICAST_{name}", value)
    with pytest.raises(SettingError) as raised:
        load_settings()
    message = str(raised.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("country", ["ZZZ", "us1", "", "XX", "U"])
def test_an_unknown_default_country_names_the_setting(monkeypatch: pytest.MonkeyPatch, country: str) -> None:
    message = _problem(monkeypatch, DEFAULT_COUNTRY=country)
    assert f"OMNICAST_DEFAULT_COUNTRY={country!r}" in message and "ISO 3166-1" in message


def test_a_lower_case_country_code_is_accepted_as_upper_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNICAST_DEFAULT_COUNTRY", "de")
    assert load_settings().default_country == "DE"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("CLAIM_LEASE_SECONDS", "0", "greater than 0"),
        ("CLAIM_LEASE_SECONDS", "-1", "greater than 0"),
        ("CLAIM_LEASE_SECONDS", "abc", "valid number"),
        ("CLAIM_LEASE_SECONDS", "inf", "finite number"),
        ("LOCK_WAIT_SECONDS", "-5", "greater than or equal to 0"),
        ("LOCK_WAIT_SECONDS", "nan", "finite number"),
        ("RECOMMENDATIONS_PER_CUSTOMER", "0", "greater than or equal to 1"),
        ("DATABASE_URL", "mysql://shop@db/shop", "SQLite or PostgreSQL"),
        ("DATABASE_URL", "no url at all", "not a database URL"),
        ("DATABASE_URL", "sqlite://", "in-memory"),
        ("PUBLIC_URL", "javascript:alert(1)", "http(s) URL"),
        ("PUBLIC_URL", "shop.example.com", "http(s) URL"),
        ("SENDER_ADDRESS", "not an address", "not one mailbox"),
        ("SENDER_ADDRESS", "a@b.example, c@d.example", "not one mailbox"),
        ("SENDER_ADDRESS", "Shop <hi@shop.example>\r\nBcc: evil@attacker.example", "not one mailbox"),
        ("UNSUBSCRIBE_MAILTO", "unsubscribe", "not an email address"),
        ("STORE_NAME", "Shop\r\nBcc: x@y.example", "line break"),
        ("STORE_ADDRESS", " ", "empty"),
        ("DKIM_SELECTOR", "two words", "DNS label"),
        ("DKIM_DOMAIN", "-bad-.example", "domain name"),
    ],
)
def test_a_wrong_setting_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    message = _problem(monkeypatch, **{name: value})
    assert f"OMNICAST_{name}" in message and expected in message


def test_a_database_url_password_never_shows_in_a_setting_error(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _problem(monkeypatch, DATABASE_URL="mysql://shop:hunter2@db/shop")
    assert "hunter2" not in message


def test_every_wrong_setting_is_named_in_the_same_line(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _problem(monkeypatch, TIMEZONE="Mars/Olympus", DEFAULT_COUNTRY="ZZZ")
    assert "OMNICAST_TIMEZONE" in message and "OMNICAST_DEFAULT_COUNTRY" in message


def test_sane_production_settings_load(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "DATABASE_URL": "postgresql+psycopg://shop:pw@db.internal:5432/shop",
        "PUBLIC_URL": "https://shop.example.com/",
        "SENDER_ADDRESS": '"Bean, Leaf & Co" <hello@shop.example>',
        "UNSUBSCRIBE_MAILTO": "mailto:unsubscribe@shop.example",
        "DKIM_SELECTOR": "s2026.mail",
        "DKIM_DOMAIN": "mail.shop.example",
        "LOCK_WAIT_SECONDS": "0",
    }.items():
        monkeypatch.setenv(f"OMNICAST_{name}", value)
    settings = load_settings()
    assert settings.lock_wait_seconds == 0 and settings.dkim_domain == "mail.shop.example"


# --- an OmnicastError inside a flow is logged without its traceback; a bug keeps it ---------------------------------


def _record(exc: BaseException) -> logging.LogRecord:
    return logging.LogRecord("prefect.task_runs", logging.ERROR, __file__, 1, "failed: %r", (exc,),
                             (type(exc), exc, None))  # fmt: skip


def test_prefect_run_loggers_drop_the_traceback_record_of_a_user_error() -> None:
    from models.errors import OmnicastError

    quiet_user_error_tracebacks()
    logger = logging.getLogger("prefect.task_runs")
    assert not all(f.filter(_record(InputError("bad file"))) for f in logger.filters)
    assert all(f.filter(_record(KeyError("bug"))) for f in logger.filters)
    assert not all(f.filter(_record(OmnicastError("the root too"))) for f in logger.filters)
    plain = logging.LogRecord("prefect.task_runs", logging.INFO, __file__, 1, "Finished in state Failed", (), None)
    assert all(f.filter(plain) for f in logger.filters)


def test_an_empty_optional_path_means_not_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STORE_PATH", "CRM_PATH", "ANALYTICS_PATH", "DKIM_KEY_FILE", "STORE_URL", "CRM_URL", "ANALYTICS_URL",
                 "STORE_TOKEN", "CRM_API_BASE"):  # fmt: skip
        monkeypatch.setenv(f"OMNICAST_{name}", "")
    settings = load_settings()
    assert settings.store_path is settings.crm_path is settings.analytics_path is settings.dkim_key_file is None
    assert settings.store_url is settings.crm_url is settings.analytics_url is None
    assert settings.store_token is settings.crm_api_base is None


def test_an_empty_outbox_folder_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "OMNICAST_OUTBOX_DIR is empty" in _problem(monkeypatch, OUTBOX_DIR="")


# --- a run reports every problem at once; optional sources warn; `omnicast init` and .env.example ------------------


@pytest.fixture
def bare(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No OMNICAST_* variable and no .env: a fresh machine's worker, in an empty folder."""
    import os

    for name in [name for name in os.environ if name.startswith("OMNICAST_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMNICAST_OUTBOX_DIR", str(tmp_path / "outbox"))
    return tmp_path


def _store(folder: Path) -> Path:
    for name in ("products_export.csv", "customers_export.csv", "orders_export.csv"):
        (folder / name).touch()
    return folder


def test_a_run_reports_every_missing_setting_in_one_message(bare: Path) -> None:
    from flows.runtime import load_run_settings

    with pytest.raises(SettingError) as raised:
        load_run_settings(store=True, channels=True)
    message = str(raised.value)
    assert "\n" not in message and message.startswith("2 settings need attention: (1) OMNICAST_STORE_URL is not set")
    assert "(2) OMNICAST_SECRET_KEY is not set" in message


def test_invalid_values_and_missing_settings_and_sources_come_together(
    bare: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.runtime import load_run_settings

    monkeypatch.setenv("OMNICAST_TIMEZONE", "Mars/Olympus")
    monkeypatch.setenv("OMNICAST_STORE_PATH", str(_store(bare)))
    monkeypatch.setenv("OMNICAST_CRM_PATH", str(bare / "contacts.csv"))  # configured, and missing: an error
    with pytest.raises(SettingError) as raised:
        load_run_settings(store=True, channels=True)
    message = str(raised.value)
    assert message.startswith("3 settings need attention:")
    for expected in ("OMNICAST_TIMEZONE='Mars/Olympus'", "OMNICAST_CRM_PATH (--crm) points at nothing",
                     "OMNICAST_SECRET_KEY is not set"):  # fmt: skip
        assert expected in message


def test_a_complete_set_up_loads(bare: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.runtime import load_run_settings

    monkeypatch.setenv("OMNICAST_STORE_PATH", str(_store(bare)))
    monkeypatch.setenv("OMNICAST_SECRET_KEY", "a-long-enough-secret-for-tests")
    assert load_run_settings(store=True, channels=True).store_path == bare


def test_an_unconfigured_optional_source_is_a_warning_naming_its_setting(bare: Path) -> None:
    from flows.runtime import source_warnings

    warnings = source_warnings(load_settings())
    assert [w.split(" ", 1)[0] for w in warnings] == ["OMNICAST_CRM_URL", "OMNICAST_ANALYTICS_URL"]
    assert all("not set" in w and "to use them" in w for w in warnings)
    assert source_warnings(load_settings(crm_path=bare / "c.csv", analytics_path=bare / "a.jsonl")) == []


def test_the_daily_run_stops_before_any_work_naming_every_missing_setting(prefect_api: str, bare: Path) -> None:
    from flows.daily import daily_flow

    state = daily_flow(return_state=True)
    assert state.is_failed()
    message = str(state.result(raise_on_failure=False))
    assert "OMNICAST_STORE_URL is not set" in message and "OMNICAST_SECRET_KEY is not set" in message
    assert not (bare / "omnicast.db").exists()  # nothing was done


def test_the_committed_env_example_is_generated_from_the_settings() -> None:
    from flows.settings import env_file_text

    committed = (Path(__file__).resolve().parents[2] / ".env.example").read_text()
    assert committed == env_file_text(None), "run: python -c \"from flows.settings import env_file_text; " \
        "open('.env.example', 'w').write(env_file_text(None))\""  # fmt: skip
    for name in Settings.model_fields:
        assert f"OMNICAST_{name.upper()}=" in committed, name


def test_init_writes_every_setting_a_run_needs_with_a_secret_key(bare: Path) -> None:
    from dotenv import dotenv_values
    from typer.testing import CliRunner

    from tests.flows.test_deployments import schedule_app

    runner, app = CliRunner(), schedule_app()
    result = runner.invoke(app, ["init"])
    assert result.exit_code == 0, result.output
    env = bare / ".env"
    assert env.stat().st_mode & 0o777 == 0o600
    assert "to do: OMNICAST_STORE_URL is not set" in result.stdout and "SECRET_KEY" not in result.stdout
    secret = dotenv_values(env)["OMNICAST_SECRET_KEY"]
    assert secret and len(secret) >= 40
    settings = load_settings()  # reads ./.env
    assert settings.secret_key is not None and settings.secret_key.get_secret_value() == secret
    assert settings.database_url == f"sqlite:///{bare.resolve() / 'omnicast.db'}"  # wherever a process starts
    defaults = Settings(secret_key=secret, database_url=settings.database_url)
    assert settings.model_dump() == defaults.model_dump()  # otherwise the file says what the defaults say

    again = runner.invoke(app, ["init"])
    assert again.exit_code == 2 and "--force" in again.stderr.strip().splitlines()[-1]
    forced = runner.invoke(app, ["init", "--force", "--store", str(_store(bare))])
    assert forced.exit_code == 0 and "secret key kept" in forced.stdout and "to do" not in forced.stdout
    assert dotenv_values(env)["OMNICAST_SECRET_KEY"] == secret
    assert load_settings().store_url == str(bare.resolve())
