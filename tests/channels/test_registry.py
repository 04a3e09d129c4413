"""Settings → channels: the channel table picks one adapter per URL scheme; errors name the setting to fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from channels.ads import AudienceFileChannel
from channels.base import ChannelConfigError, InMemoryChannel
from channels.dispatch import dispatch
from channels.email import EmailChannel
from channels.inapp import InAppFeedChannel
from channels.registry import ChannelRegistry, UnconfiguredChannel, channels_markdown, open_channels
from channels.spec import CHANNELS
from flows.settings import Settings
from tests.channels.conftest import add_customers, message

SETTINGS = {spec.name: spec.setting for spec in CHANNELS}


def settings(root: Path, **urls: str) -> Settings:
    return Settings(secret_key="test-secret", outbox_dir=root, **urls)


def test_opens_the_five_embedded_channels(tmp_path: Path) -> None:
    channels = open_channels(settings(tmp_path))
    assert sorted(channels) == ["email", "google", "inapp", "meta", "tiktok"]
    assert isinstance(channels["email"], EmailChannel)
    assert isinstance(channels["meta"], AudienceFileChannel) and channels["meta"].platform == "meta"
    assert isinstance(channels["google"], AudienceFileChannel) and channels["google"].platform == "google"
    assert isinstance(channels["tiktok"], AudienceFileChannel) and channels["tiktok"].platform == "tiktok"
    assert isinstance(channels["inapp"], InAppFeedChannel)
    assert all(name == channel.name for name, channel in channels.items())
    assert (tmp_path / "email").is_dir() and (tmp_path / "inapp").is_dir()


@pytest.mark.parametrize("channel", sorted(SETTINGS))
def test_unknown_scheme_names_the_setting_and_the_supported_schemes(tmp_path: Path, channel: str) -> None:
    field = next(spec.field for spec in CHANNELS if spec.name == channel)
    with pytest.raises(ChannelConfigError) as caught:
        open_channels(settings(tmp_path, **{field: "carrier-pigeon://coop"}))
    assert SETTINGS[channel] in str(caught.value) and "file://" in str(caught.value) and "off" in str(caught.value)


def test_email_offers_smtp_and_postmark_schemes(tmp_path: Path) -> None:
    with pytest.raises(ChannelConfigError) as caught:
        open_channels(settings(tmp_path, email_url="carrier-pigeon://coop"))
    assert "smtp://" in str(caught.value) and "smtps://" in str(caught.value) and "postmark://" in str(caught.value)


def test_unknown_option_names_the_setting_the_option_and_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ChannelConfigError) as caught:
        open_channels(settings(tmp_path, email_url=f"file://{tmp_path}/mail?writerz=4"))
    text = str(caught.value)
    assert "OMNICAST_EMAIL_URL" in text and "'writerz'" in text and "writers" in text


def test_bad_option_value_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(ChannelConfigError, match="OMNICAST_INAPP_URL.*'ttl_days'"):
        open_channels(settings(tmp_path, inapp_url=f"file://{tmp_path}/inapp?ttl_days=400"))


def test_an_option_given_twice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ChannelConfigError, match="'writers' is given twice"):
        open_channels(settings(tmp_path, email_url=f"file://{tmp_path}/mail?writers=2&writers=3"))


def test_off_leaves_a_channel_unconfigured(tmp_path: Path) -> None:
    channels = open_channels(settings(tmp_path, inapp_url="off"))
    assert isinstance(channels["inapp"], UnconfiguredChannel)
    assert not (tmp_path / "inapp").exists()


def test_messages_for_an_unconfigured_channel_are_suppressed_no_channel(engine: Engine, tmp_path: Path) -> None:
    ids = [1, 2, 3]
    add_customers(engine, ids, channel="inapp")
    report = dispatch(engine, [message(i, channel="inapp") for i in ids], {"inapp": UnconfiguredChannel("inapp")})
    tally = report.channels["inapp"]
    assert tally.suppressed["no_channel"] == 3 and tally.sent == 0 and report.balanced


def test_relative_file_url_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ChannelConfigError, match="OMNICAST_META_AUDIENCE_URL.*absolute"):
        open_channels(settings(tmp_path, meta_audience_url="file://outbox/audiences"))


def test_unwritable_folder_names_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("channels.outbox.os.access", lambda path, mode: False)  # root may write anywhere
    with pytest.raises(ChannelConfigError, match="OMNICAST_EMAIL_URL.*not writable"):
        open_channels(settings(tmp_path))


def test_folder_that_is_a_file_names_the_setting(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("not a folder")
    with pytest.raises(ChannelConfigError, match="OMNICAST_GOOGLE_AUDIENCE_URL"):
        open_channels(settings(tmp_path, google_audience_url=f"file://{tmp_path / 'taken'}"))


def test_email_needs_a_secret_key(tmp_path: Path) -> None:
    with pytest.raises(ChannelConfigError, match="OMNICAST_SECRET_KEY"):
        open_channels(Settings(secret_key=None, outbox_dir=tmp_path))


def test_a_failed_channel_closes_the_ones_already_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[str] = []
    monkeypatch.setattr(EmailChannel, "close", lambda self: closed.append("email"))
    with pytest.raises(ChannelConfigError):
        open_channels(settings(tmp_path, inapp_url="carrier-pigeon://coop"))
    assert closed == ["email"]


def test_registry_rejects_a_second_channel_with_the_same_name() -> None:
    registry = ChannelRegistry()
    registry.register(InMemoryChannel("email"))
    with pytest.raises(ChannelConfigError, match="'email'"):
        registry.register(InMemoryChannel("email"))


def test_every_channel_has_a_url_setting_and_the_readme_lists_every_adapter() -> None:
    fields = Settings.model_fields
    assert all(spec.field in fields for spec in CHANNELS)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert channels_markdown() in readme, "README's channel table is stale: paste channels_markdown() into it"
