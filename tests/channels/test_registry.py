"""Settings → channels: one adapter per URL scheme, errors that name the setting to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from channels.ads import AudienceFileChannel
from channels.base import ChannelConfigError, InMemoryChannel
from channels.email import EmailChannel, EmailOptions
from channels.inapp import InAppFeedChannel
from channels.registry import SETTINGS, ChannelRegistry, build_channels

OPTIONS = EmailOptions(
    sender="Bean & Leaf Coffee <hello@beanandleaf.example>",
    public_url="https://beanandleaf.example",
    unsubscribe_mailto="unsubscribe@beanandleaf.example",
    secret_key="test-secret",
)


def urls(root: Path) -> dict[str, str]:
    return {
        "email": f"file://{root / 'email'}",
        "meta": f"file://{root / 'audiences'}",
        "google": f"file://{root / 'audiences'}",
        "inapp": f"file://{root / 'inapp'}",
    }


def test_builds_the_four_embedded_channels(tmp_path: Path) -> None:
    channels = build_channels(urls(tmp_path), email_options=OPTIONS)
    assert sorted(channels) == ["email", "google", "inapp", "meta"]
    assert isinstance(channels["email"], EmailChannel)
    assert isinstance(channels["meta"], AudienceFileChannel) and channels["meta"].platform == "meta"
    assert isinstance(channels["google"], AudienceFileChannel) and channels["google"].platform == "google"
    assert isinstance(channels["inapp"], InAppFeedChannel)
    assert all(name == channel.name for name, channel in channels.items())
    assert (tmp_path / "email").is_dir() and (tmp_path / "inapp").is_dir()


@pytest.mark.parametrize("channel", sorted(SETTINGS))
def test_unknown_scheme_names_the_setting_and_the_supported_schemes(tmp_path: Path, channel: str) -> None:
    config = {**urls(tmp_path), channel: "smtp://mail.example:587"}
    with pytest.raises(ChannelConfigError) as caught:
        build_channels(config, email_options=OPTIONS)
    assert SETTINGS[channel] in str(caught.value) and "file://" in str(caught.value)


def test_missing_url_names_the_setting(tmp_path: Path) -> None:
    config = urls(tmp_path)
    del config["inapp"]
    with pytest.raises(ChannelConfigError, match="OMNICAST_INAPP_URL"):
        build_channels(config, email_options=OPTIONS)


def test_relative_file_url_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ChannelConfigError, match="OMNICAST_META_AUDIENCE_URL.*absolute"):
        build_channels({**urls(tmp_path), "meta": "file://outbox/audiences"}, email_options=OPTIONS)


def test_unwritable_folder_names_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("channels.outbox.os.access", lambda path, mode: False)  # root may write anywhere
    with pytest.raises(ChannelConfigError, match="OMNICAST_EMAIL_URL.*not writable"):
        build_channels(urls(tmp_path), email_options=OPTIONS)


def test_folder_that_is_a_file_names_the_setting(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("not a folder")
    with pytest.raises(ChannelConfigError, match="OMNICAST_GOOGLE_AUDIENCE_URL"):
        build_channels({**urls(tmp_path), "google": f"file://{tmp_path / 'taken'}"}, email_options=OPTIONS)


def test_email_needs_a_secret_key(tmp_path: Path) -> None:
    options = EmailOptions(OPTIONS.sender, OPTIONS.public_url, OPTIONS.unsubscribe_mailto, secret_key="")
    with pytest.raises(ChannelConfigError, match="OMNICAST_SECRET_KEY"):
        build_channels(urls(tmp_path), email_options=options)


def test_registry_rejects_a_second_channel_with_the_same_name() -> None:
    registry = ChannelRegistry()
    registry.register(InMemoryChannel("email"))
    with pytest.raises(ChannelConfigError, match="'email'"):
        registry.register(InMemoryChannel("email"))
