"""Settings → channels: pick each channel's adapter once, from its URL scheme, and register it by name.

Today every channel has one scheme, ``file:///absolute/dir`` (the embedded file sinks). SMTP, ESP and ad-platform
API adapters add a row to ``ADAPTERS``; nothing else changes. Registration is explicit and a second channel under
the same name is refused, so a typo can't silently replace a sink.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from channels.ads import AudienceFileChannel
from channels.base import Channel, ChannelConfigError
from channels.email import EmailChannel, EmailOptions
from channels.inapp import InAppFeedChannel
from channels.outbox import EmlOutboxTransport, ensure_writable_dir
from channels.render import CardRenderer, EmailRenderer
from channels.tokens import UnsubscribeSigner

__all__ = ["ADAPTERS", "SETTINGS", "ChannelRegistry", "EmailOptions", "build_channels"]

SETTINGS: dict[str, str] = {
    "email": "OMNICAST_EMAIL_URL",
    "meta": "OMNICAST_META_AUDIENCE_URL",
    "google": "OMNICAST_GOOGLE_AUDIENCE_URL",
    "inapp": "OMNICAST_INAPP_URL",
}
"""The setting that configures each channel, named in every configuration error."""


@dataclass(frozen=True)
class ChannelTarget:
    """What an adapter factory gets: the parsed URL plus the options shared by all channels."""

    channel: str
    setting: str
    url: str
    folder: Path | None
    email_options: EmailOptions
    templates_dir: Path | None


AdapterFactory = Callable[[ChannelTarget], Channel]


class ChannelRegistry:
    """Channels by name; registering a second channel under a taken name is an error."""

    def __init__(self) -> None:
        self._channels: dict[str, Channel] = {}

    def register(self, channel: Channel) -> None:
        """Add ``channel`` under ``channel.name``; ``ChannelConfigError`` if the name is taken."""
        if channel.name in self._channels:
            raise ChannelConfigError(f"two channels are named {channel.name!r}; channel names must be unique")
        self._channels[channel.name] = channel

    def as_dict(self) -> dict[str, Channel]:
        """A copy of the registered channels, keyed by name (what ``dispatch`` takes)."""
        return dict(self._channels)

    def close(self) -> None:
        """Close every registered channel."""
        for channel in self._channels.values():
            channel.close()


def _email_outbox(target: ChannelTarget) -> Channel:
    options = target.email_options
    if not options.secret_key:
        raise ChannelConfigError("OMNICAST_SECRET_KEY is not set; unsubscribe links must be signed with it")
    return EmailChannel(
        EmlOutboxTransport(_folder(target)),
        EmailRenderer(target.templates_dir),
        sender=options.sender,
        public_url=options.public_url,
        unsubscribe_mailto=options.unsubscribe_mailto,
        signer=UnsubscribeSigner(options.secret_key),
        dkim=options.dkim,
    )


def _meta_files(target: ChannelTarget) -> Channel:
    return AudienceFileChannel("meta", _folder(target))


def _google_files(target: ChannelTarget) -> Channel:
    return AudienceFileChannel("google", _folder(target))


def _inapp_feed(target: ChannelTarget) -> Channel:
    return InAppFeedChannel(_folder(target), CardRenderer(target.templates_dir))


ADAPTERS: dict[str, dict[str, AdapterFactory]] = {
    "email": {"file": _email_outbox},
    "meta": {"file": _meta_files},
    "google": {"file": _google_files},
    "inapp": {"file": _inapp_feed},
}
"""channel → URL scheme → factory. Add a scheme here to add an adapter."""


def build_channels(
    urls: Mapping[str, str],
    *,
    email_options: EmailOptions,
    templates_dir: Path | str | None = None,
) -> dict[str, Channel]:
    """One channel per entry of ``SETTINGS`` (``email``, ``meta``, ``google``, ``inapp``), from its URL.

    ``urls`` maps channel name → URL (``Settings.channel_url`` gives them). Raises ``ChannelConfigError`` naming the
    setting for a missing URL, an unknown scheme or a folder we can't write to.
    """
    registry = ChannelRegistry()
    try:
        for channel, setting in SETTINGS.items():
            url = urls.get(channel)
            if not url:
                raise ChannelConfigError(f"{setting} is not set; use file:///absolute/folder")
            registry.register(_build(channel, setting, url, email_options, templates_dir))
    except BaseException:
        registry.close()
        raise
    return registry.as_dict()


def _build(
    channel: str, setting: str, url: str, email_options: EmailOptions, templates_dir: Path | str | None
) -> Channel:
    parts = urlsplit(url)
    factories = ADAPTERS[channel]
    factory = factories.get(parts.scheme)
    if factory is None:
        supported = ", ".join(f"{scheme}://" for scheme in sorted(factories))
        raise ChannelConfigError(f"{setting}={url!r} has an unsupported scheme; supported: {supported}")
    folder = _file_path(setting, url) if parts.scheme == "file" else None
    target = ChannelTarget(channel, setting, url, folder, email_options, Path(templates_dir) if templates_dir else None)
    return factory(target)


def _file_path(setting: str, url: str) -> Path:
    """The folder of a ``file:///absolute/dir`` URL."""
    parts = urlsplit(url)
    path = Path(unquote(parts.path))
    if parts.netloc not in ("", "localhost") or not path.is_absolute():
        raise ChannelConfigError(f"{setting}={url!r} must name an absolute folder: file:///absolute/folder")
    return path


def _folder(target: ChannelTarget) -> Path:
    """The target's folder, created if needed; ``ChannelConfigError`` naming the setting when it's unusable."""
    if target.folder is None:
        raise ChannelConfigError(f"{target.setting}={target.url!r} does not name a folder")
    try:
        return ensure_writable_dir(target.folder)
    except OSError as exc:
        raise ChannelConfigError(
            f"{target.setting}={target.url!r}: can't use {target.folder} as an outbox folder ({exc})"
        ) from exc
