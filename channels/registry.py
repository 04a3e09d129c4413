"""Settings → open channels: each channel's URL picks its adapter by scheme from the table in ``channels/spec.py``.

``open_channels`` opens one channel per row of the table, once per run; a channel whose URL is ``off`` (or unset
without a default folder) is an :class:`UnconfiguredChannel`, whose messages are recorded as suppressed
``no_channel`` instead of crashing the run. A URL's query parameters are the adapter's options, validated by its
pydantic ``Options`` model: an unknown or bad option is a ``ChannelConfigError`` naming the setting and the choices.
``channels_markdown`` writes the README's channel table from the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pydantic import ValidationError

from channels.base import Channel, ChannelConfigError, DeliveryResult
from channels.spec import CHANNELS, OFF, AdapterSpec, ChannelResources, ChannelSpec, ChannelTarget, adapter_settings
from models.message import LedgerKey, OutboundMessage

__all__ = ["ChannelRegistry", "UnconfiguredChannel", "channels_markdown", "open_channel", "open_channels"]

NO_CHANNEL = "no_channel"


class UnconfiguredChannel(Channel):
    """Stands in for a channel left ``off``: every message is gated out as ``no_channel`` and nothing is sent."""

    knows_deliveries = True

    def __init__(self, name: str) -> None:
        self.name = name  # type: ignore[misc]
        self.consent_channel = name  # type: ignore[misc]

    def can_reach(self, message: OutboundMessage) -> str | None:
        return NO_CHANNEL

    def send(self, message: OutboundMessage) -> DeliveryResult:  # the gate never lets a message through
        raise ChannelConfigError(f"the {self.name} channel is not configured")

    def already_delivered(self, messages: Sequence[OutboundMessage]) -> dict[LedgerKey, str]:
        return {}


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


def open_channels(
    settings: Any, *, templates_dir: Path | str | None = None, only: Sequence[str] | None = None
) -> dict[str, Channel]:
    """One open channel per row of the channel table (or of ``only``), from ``settings.channel_url``.

    Raises ``ChannelConfigError`` naming the setting for an unknown scheme, a bad option or an unusable target; the
    channels opened so far are closed first.
    """
    resources = ChannelResources(settings, Path(templates_dir) if templates_dir else None)
    registry = ChannelRegistry()
    try:
        for spec in CHANNELS:
            if only is not None and spec.name not in only:
                continue
            url = settings.channel_url(spec.name)
            registry.register(open_channel(spec, url, resources) if url else UnconfiguredChannel(spec.name))
    except BaseException:
        registry.close()
        raise
    return registry.as_dict()


def open_channel(spec: ChannelSpec, url: str, resources: ChannelResources) -> Channel:
    """Open ``spec``'s channel on ``url`` through the adapter its scheme names."""
    target = parse_target(spec, url)
    adapter = spec.adapter_for(target.parts.scheme)
    assert adapter is not None  # parse_target checked the scheme
    channel = adapter.load().open_channel(target, resources)
    if channel.name != spec.name:
        channel.close()
        raise ChannelConfigError(f"{spec.setting}: the {adapter.target} adapter opened a {channel.name!r} channel")
    return channel


def parse_target(spec: ChannelSpec, url: str) -> ChannelTarget:
    """The URL split and its options validated; ``ChannelConfigError`` naming the setting otherwise."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError as exc:
        raise ChannelConfigError(f"{spec.setting} is not a URL ({exc}); e.g. {spec.adapters[0].example}") from exc
    adapter = spec.adapter_for(parts.scheme.lower())
    if adapter is None:
        supported = ", ".join(f"{scheme}://" for scheme in spec.schemes)
        shown = f"{parts.scheme}://…" if parts.scheme else repr(url[:40])
        raise ChannelConfigError(
            f"{spec.setting}={shown} has an unsupported scheme; supported: {supported} (or {OFF} to leave "
            f"the {spec.name} channel unconfigured)"
        )
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    names = [name for name, _ in pairs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ChannelConfigError(f"{spec.setting}: option {repeated[0]!r} is given twice; give each option once")
    options_model = adapter.load().Options
    try:
        options = options_model.model_validate(dict(pairs))
    except ValidationError as exc:
        raise ChannelConfigError(f"{spec.setting}: {_options_problem(exc, options_model)}") from None
    return ChannelTarget(spec=spec, url=url.strip(), parts=parts._replace(scheme=parts.scheme.lower()), options=options)


def _options_problem(exc: ValidationError, model: Any) -> str:
    allowed = ", ".join(model.model_fields) or "none"
    problems = []
    for error in exc.errors(include_url=False):
        name = ".".join(str(part) for part in error["loc"]) or "?"
        if error["type"] == "extra_forbidden":
            problems.append(f"unknown option {name!r} (options: {allowed})")
        else:
            problems.append(f"option {name!r}: {error['msg']}")
    return "; ".join(problems)


def channels_markdown() -> str:
    """The README's channel table, from the channel table and each adapter's options."""
    lines = ["| Channel (setting) | URL | Options (default) | What it does |", "|---|---|---|---|"]
    for spec in CHANNELS:
        default = f"`file://OUTBOX/{spec.default_folder}`" if spec.default_folder else "off"
        for n, adapter in enumerate(spec.adapters):
            first = f"{spec.label}: `{spec.setting}` (unset: {default})" if n == 0 else ""
            lines.append(f"| {first} | `{adapter.example}` | {_options_cell(adapter)} | {adapter.description} |")
    lines.append("")
    lines.append(
        f"`{OFF}` leaves a channel unconfigured: its messages are recorded as suppressed (`no_channel`), nothing fails."
    )
    for setting in adapter_settings():
        lines.append(f"`{setting.env}` (default `{setting.default}`): {setting.description}")
    return "\n".join(lines)


def _options_cell(adapter: AdapterSpec) -> str:
    fields = adapter.load().Options.model_fields
    if not fields:
        return "none"
    return ", ".join(f"`{name}`={_default(info.default)}" for name, info in fields.items())


def _default(value: Any) -> str:
    return "none" if value is None else str(value)
