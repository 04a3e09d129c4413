"""The one table of channels: what each is called, the setting that configures it, and the adapters that can serve it.

This table drives the settings (one ``OMNICAST_<CHANNEL>_URL`` field per row, plus each adapter's own settings),
``omnicast channels`` and the README's channel table, the run summary, and ``channels.registry`` (which opens the
adapter a URL's scheme names). Adding a channel is one adapter file plus one ``ChannelSpec`` line here; adding a way
to deliver an existing channel (SMTP for email) is one adapter file plus one ``AdapterSpec`` in its row.

Nothing here imports an adapter: the table is read when settings load, and an adapter (with its SMTP, HTTP or
template machinery) is imported only when a run opens it.

An adapter is a class with::

    schemes: ClassVar[tuple[str, ...]]          # URL schemes it serves, e.g. ("smtp", "smtps")
    Options: ClassVar[type[AdapterOptions]]     # the URL's query parameters, validated (extra="forbid")

    @classmethod
    def open_channel(cls, target: ChannelTarget, resources: ChannelResources) -> Channel: ...

``target`` is the parsed URL with its validated options; ``resources`` what every adapter may use (the settings,
the templates folder). An email transport's ``open_channel`` wraps itself with ``channels.email.email_channel``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol
from urllib.parse import SplitResult, unquote

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from channels.base import Channel

OFF = "off"
"""A channel URL of ``off`` leaves the channel unconfigured: its messages are recorded as suppressed ``no_channel``."""


class AdapterOptions(BaseModel):
    """Base of every adapter's options (its URL's query parameters): an unknown parameter is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class SettingSpec:
    """A setting an adapter needs besides its URL (one per installation, e.g. an API's base URL)."""

    field: str
    default: str | None
    description: str

    @property
    def env(self) -> str:
        return f"OMNICAST_{self.field.upper()}"


@dataclass(frozen=True)
class AdapterSpec:
    """One way to deliver a channel: the URL schemes it serves and where its class lives (``module:Class``)."""

    schemes: tuple[str, ...]
    target: str
    example: str
    description: str
    settings: tuple[SettingSpec, ...] = ()
    files: str | None = None
    """For a file adapter, the pattern of the files it writes (the summary counts them)."""

    def load(self) -> type[ChannelAdapter]:
        """Import the adapter class (only when a run opens it)."""
        module, _, name = self.target.partition(":")
        adapter: type[ChannelAdapter] = getattr(importlib.import_module(module), name)
        return adapter


@dataclass(frozen=True)
class ChannelSpec:
    """One channel: ``name`` is the ledger's channel value; ``field`` the settings field of its URL."""

    name: str
    field: str
    label: str
    default_folder: str | None
    """Folder under ``OMNICAST_OUTBOX_DIR`` its file sink uses when the URL is unset; ``None``: unset = unconfigured."""
    adapters: tuple[AdapterSpec, ...]

    @property
    def setting(self) -> str:
        return f"OMNICAST_{self.field.upper()}"

    def adapter_for(self, scheme: str) -> AdapterSpec | None:
        return next((a for a in self.adapters if scheme in a.schemes), None)

    @property
    def schemes(self) -> tuple[str, ...]:
        return tuple(scheme for adapter in self.adapters for scheme in adapter.schemes)


_EMAIL_FILES = AdapterSpec(
    ("file",), "channels.outbox:EmlOutboxTransport", "file:///var/lib/omnicast/outbox/email",
    "one RFC 5322 .eml file per message (the embedded default)", files="*.eml",
)  # fmt: skip
_SMTP = AdapterSpec(
    ("smtp", "smtps"), "channels.smtp:SmtpTransport", "smtp://user:password@mail.example.com:587",
    "any SMTP server: STARTTLS when offered (?starttls=require to insist), smtps:// for implicit TLS, AUTH from "
    "the URL's user and password; one connection reused for many messages, a small pool",
)  # fmt: skip
_POSTMARK = AdapterSpec(
    ("postmark",), "channels.postmark:PostmarkTransport", "postmark://SERVER_TOKEN?message_stream=broadcast",
    "Postmark's batch API (≤ 500 messages a call); ?message_stream=broadcast for marketing mail; Postmark signs "
    "DKIM itself",
    settings=(
        SettingSpec("postmark_api_url", "https://api.postmarkapp.com",
                    "Postmark API base URL (a local stand-in in tests)."),
    ),
)  # fmt: skip


_META_API = AdapterSpec(
    ("meta",), "channels.meta:MetaAudienceApi", "meta://AD_ACCOUNT_ID?api_version=v21.0",
    "Meta Marketing API: customer-list custom audiences 'omnicast: <audience>' found or created under act_ID; "
    "members added and removed in sessions of ≤ 10,000 SHA-256 hashed multi-key rows",
    settings=(
        SettingSpec("meta_access_token", None,
                    "Meta Marketing API access token (a system user's, with ads_management) for meta:// audiences."),
        SettingSpec("meta_graph_url", "https://graph.facebook.com",
                    "Meta Graph API base URL (a local stand-in in tests)."),
    ),
)  # fmt: skip
_GOOGLE_API = AdapterSpec(
    ("google",), "channels.google:GoogleDataManagerApi",
    "google://ACCOUNT_ID?lists=churn-risk:1234567,high-value:7654321",
    "Google Data Manager API: each audience kept in step with its Customer Match user list (?lists=AUDIENCE:"
    "USER_LIST_ID,…) by audienceMembers:ingest/remove, ≤ 10,000 members a request; SHA-256 email, phone and names, "
    "country and postal code plain",
    settings=(
        SettingSpec("google_access_token", None,
                    "OAuth 2.0 access token with the https://www.googleapis.com/auth/datamanager scope for google:// "
                    "audiences (Google access tokens expire after about an hour: supply a fresh one per run)."),
        SettingSpec("google_datamanager_url", "https://datamanager.googleapis.com",
                    "Google Data Manager API base URL (a local stand-in in tests)."),
    ),
)  # fmt: skip
_INAPP_WEBHOOK = AdapterSpec(
    ("http", "https"), "channels.inapp_webhook:InAppWebhook", "https://app.example.com/hooks/omnicast",
    "one signed POST per card (Standard Webhooks: card.created, card.retracted); webhook-id from the ledger key, so "
    "receivers drop retries; retries 408/429/5xx with backoff; 410 Gone disables the endpoint",
    settings=(
        SettingSpec("inapp_webhook_secret", None,
                    "Signing secret for in-app webhooks: whsec_<base64>; two separated by a space while rotating."),
    ),
)  # fmt: skip


_INAPP_PULL = AdapterSpec(
    ("pull",), "channels.inapp_store:InAppStore", "pull://",
    "cards kept in omnicast's database for apps to fetch from `omnicast serve` (GET /v1/customers/{id}/cards, API "
    "key, ETag); retractions hide them; one row per card id, so a retry is stored once",
)  # fmt: skip


CHANNELS: tuple[ChannelSpec, ...] = (
    ChannelSpec("email", "email_url", "Email", "email", (_EMAIL_FILES, _SMTP, _POSTMARK)),
    ChannelSpec("meta", "meta_audience_url", "Meta custom audiences", "audiences", (AdapterSpec(
        ("file",), "channels.ads:MetaAudienceFiles", "file:///var/lib/omnicast/outbox/audiences",
        "Meta customer-list CSV files, SHA-256 hashed identifiers only", files="meta-*.csv"), _META_API)),  # fmt: skip
    ChannelSpec("google", "google_audience_url", "Google Customer Match", "audiences", (AdapterSpec(
        ("file",), "channels.ads:GoogleAudienceFiles", "file:///var/lib/omnicast/outbox/audiences",
        "Customer Match CSV files per Google's template (Country, Zip plain)", files="google-*.csv"),
        _GOOGLE_API)),  # fmt: skip
    ChannelSpec("tiktok", "tiktok_audience_url", "TikTok custom audiences", "audiences", (AdapterSpec(
        ("file",), "channels.ads:TiktokAudienceFiles", "file:///var/lib/omnicast/outbox/audiences",
        "TikTok customer files, SHA-256 hashed email and phone", files="tiktok-*.csv"),)),  # fmt: skip
    ChannelSpec("inapp", "inapp_url", "In-app cards", "inapp", (AdapterSpec(
        ("file",), "channels.inapp:InAppFeedChannel", "file:///var/lib/omnicast/outbox/inapp",
        "content cards appended to a JSONL feed per day, checked against the card JSON Schema",
        files="*.jsonl"), _INAPP_WEBHOOK, _INAPP_PULL)),  # fmt: skip
)
"""Every channel omnicast knows, in the order summaries list them."""

BY_NAME: dict[str, ChannelSpec] = {spec.name: spec for spec in CHANNELS}


def channel_spec(name: str) -> ChannelSpec | None:
    return BY_NAME.get(name)


def adapter_settings() -> tuple[SettingSpec, ...]:
    """Every adapter's own settings (each once)."""
    seen: dict[str, SettingSpec] = {}
    for spec in CHANNELS:
        for adapter in spec.adapters:
            for setting in adapter.settings:
                seen.setdefault(setting.field, setting)
    return tuple(seen.values())


@dataclass(frozen=True)
class ChannelTarget:
    """What an adapter opens: its channel, the URL (``shown`` has the password and tokens masked) and its options."""

    spec: ChannelSpec
    url: str
    parts: SplitResult
    options: Any
    folder: Path | None = None

    @property
    def setting(self) -> str:
        return self.spec.setting

    @property
    def shown(self) -> str:
        """The URL safe to print: user name kept, password and a token in the host position masked."""
        parts = self.parts
        if parts.scheme == "file":
            return self.url
        netloc = parts.hostname or ""
        if parts.scheme in ("postmark",):
            netloc = "***"
        if parts.port:
            netloc += f":{parts.port}"
        if parts.username:
            netloc = f"{unquote(parts.username)}:***@{netloc}" if parts.password else f"{parts.username}@{netloc}"
        return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{parts.query}" if parts.query else "")


@dataclass(frozen=True)
class ChannelResources:
    """What every adapter may use when it opens: the run's settings (``flows.settings.Settings``) and templates."""

    settings: Any
    templates_dir: Path | None = None


class ChannelAdapter(Protocol):
    schemes: ClassVar[tuple[str, ...]]
    Options: ClassVar[type[AdapterOptions]]

    @classmethod
    def open_channel(cls, target: ChannelTarget, resources: ChannelResources) -> Channel: ...
