"""Settings problems stop a run before any work, with a message naming the variable and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from channels.base import ChannelConfigError
from flows.runtime import SettingError, dkim_key, open_channels, run_date, secret_key
from flows.settings import Settings


def test_missing_secret_key_says_how_to_make_one() -> None:
    with pytest.raises(SettingError, match="OMNICAST_SECRET_KEY.*secrets.token_urlsafe"):
        secret_key(Settings(secret_key=None))


def test_unknown_timezone_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNICAST_TIMEZONE", "Mars/Olympus")
    with pytest.raises(ValidationError, match="OMNICAST_TIMEZONE='Mars/Olympus'"):
        Settings()


def test_unreadable_dkim_key_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(SettingError, match="OMNICAST_DKIM_KEY_FILE"):
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
    assert set(channels) == {"email", "meta", "google", "inapp"}
    assert Settings(outbox_dir=tmp_path).channel_url("meta") == f"file://{tmp_path.resolve()}/audiences"


def test_bad_as_of_date_is_a_setting_error() -> None:
    with pytest.raises(SettingError, match="YYYY-MM-DD"):
        run_date(Settings(), "27/11/2026")
