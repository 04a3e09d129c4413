"""Settings read from the environment (prefix ``OMNICAST_``) or a ``.env`` file.

Every setting is documented in the README's settings table; keep the two in step.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import Field, SecretStr, ValidationError, create_model, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from channels.spec import BY_NAME, CHANNELS, OFF, adapter_settings
from models.db import redact_url
from models.errors import ConfigurationError

PREFIX = "OMNICAST_"
SECRET_FIELDS = frozenset({"secret_key", "postmark_webhook_token", "inapp_webhook_secret", "meta_access_token",
                           "google_access_token", "api_keys", "store_token",
                           "crm_token", "shopify_webhook_secret"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAILBOX = re.compile(r"^\s*(?:(?P<name>[^<>]*?)\s*<(?P<addr>[^<>\s]+)>|(?P<bare>[^<>\s]+))\s*$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*$")
_QUIET_HOURS = re.compile(r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$")
_SELECTOR = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62}))*$")


class SettingError(ConfigurationError):
    """A setting is missing or wrong; the message names the environment variable and how to fix it."""


class BaseOmnicastSettings(BaseSettings):
    """What an operator can set; defaults are the embedded demo set-up. The channel URLs and the adapters' own
    settings are added from ``channels.spec.CHANNELS`` (see ``Settings`` below)."""

    model_config = SettingsConfigDict(env_prefix="OMNICAST_", env_file=".env", extra="ignore")

    database_url: str = Field(
        "sqlite:///omnicast.db",
        description="SQLAlchemy URL. SQLite file by default; postgresql+psycopg://user@host/db in production.",
    )
    outbox_dir: Path = Field(Path("outbox"), description="Where the embedded file sinks write.")
    store_url: str | None = Field(
        None,
        description="Where the store's data is: a folder holding the Shopify admin exports "
        "(products/customers/orders_export.csv), shopify://SHOP.myshopify.com (Admin API) or woocommerce://HOST "
        "(REST API).",
    )
    store_token: SecretStr | None = Field(
        None,
        description="The store API's credential: Shopify's Admin API access token (shpat_…) or WooCommerce's "
        "ck_…:cs_… key pair; prefect-secret://BLOCK reads it from a Prefect Secret block.",
    )
    store_api_base: str | None = Field(
        None, description="Base URL standing in for the store platform's own host (a proxy or a local test server)."
    )
    crm_url: str | None = Field(
        None, description="The CRM (optional): a HubSpot-style contacts CSV, or hubspot:// (CRM API v3)."
    )
    crm_token: SecretStr | None = Field(
        None, description="HubSpot private-app token (crm.objects.contacts.read); prefect-secret://BLOCK works too."
    )
    crm_api_base: str | None = Field(None, description="Base URL standing in for https://api.hubapi.com.")
    analytics_url: str | None = Field(
        None, description="Web analytics (optional): the GA4 BigQuery export as a JSONL or Parquet file."
    )
    store_path: Path | None = Field(None, description="Older name of OMNICAST_STORE_URL (a folder); the URL wins.")
    crm_path: Path | None = Field(None, description="Older name of OMNICAST_CRM_URL (a file); the URL wins.")
    analytics_path: Path | None = Field(None, description="Older name of OMNICAST_ANALYTICS_URL; the URL wins.")
    default_country: str = Field("US", description="ISO country for phone numbers written without one.")
    store_name: str = Field("Bean & Leaf Coffee", description="Shown in emails and in-app cards.")
    store_address: str = Field(
        "500 Roastery Lane, Portland, OR 97201, USA",
        description="Postal address in every email footer (CAN-SPAM).",
    )
    timezone: str = Field("UTC", description="Store timezone (IANA name), used when a profile has none.")
    sender_address: str = Field(
        "Bean & Leaf Coffee <hello@beanandleaf.example>", description="From: header of every email."
    )
    secret_key: SecretStr | None = Field(
        None,
        description="Signs unsubscribe and tracked links; keep it (a new key breaks every link already sent). Required "
        "outside the demo (the demo keeps one in its workdir); `omnicast init` generates one.",
    )
    public_url: str = Field(
        "https://beanandleaf.example", description="Base URL of the store; unsubscribe links live under it."
    )
    unsubscribe_mailto: str = Field("unsubscribe@beanandleaf.example", description="mailto: for List-Unsubscribe.")
    serve_url: str | None = Field(
        None,
        description="Public base URL of `omnicast serve` (https in production): every unsubscribe and tracked link "
        "starts with it. Default: OMNICAST_PUBLIC_URL.",
    )
    postmark_webhook_token: SecretStr | None = Field(
        None,
        description="Secret Postmark's bounce and spam-complaint webhooks must present (HTTP basic auth password, "
        "user 'postmark'); the webhooks are refused while it is unset.",
    )
    shopify_webhook_secret: SecretStr | None = Field(
        None,
        description="The Shopify app's client secret: `omnicast serve` checks each Shopify webhook's "
        "X-Shopify-Hmac-Sha256 with it (customers/redact erases, customers/delete unlinks); refused while unset.",
    )
    email_daily_cap: int = Field(
        1, ge=0, le=100, description="Marketing emails a customer may get per day (0 = no cap); higher priority wins."
    )
    email_weekly_cap: int = Field(
        3, ge=0, le=500, description="Marketing emails a customer may get in any 7 days (0 = no cap)."
    )
    quiet_hours: str | None = Field(
        None,
        description="HH:MM-HH:MM in the customer's time zone (e.g. 21:00-08:00): marketing email due then is deferred "
        "to the end of the quiet hours, never dropped. Unset = send at any hour.",
    )
    api_keys: SecretStr | None = Field(
        None,
        description="API keys for the pull API of `omnicast serve` (GET /v1/customers/{id}/cards and "
        "/recommendations), comma-separated (two while rotating); apps send one as Authorization: Bearer KEY or "
        "X-API-Key: KEY. Unset: the /v1 routes answer 503.",
    )
    audience_min_size: int | None = Field(
        None,
        ge=0,
        description="Members an ad audience needs before anyone is added (unset: each platform's documented minimum, "
        "Meta and Google 100, TikTok 1,000; 0 = none). Removals always go.",
    )
    campaign_error_threshold: float = Field(
        0.2,
        gt=0,
        le=1,
        allow_inf_nan=False,
        description="A campaign whose failed share of hand-overs passes this (after 20 hand-overs) stops; its run ends "
        "Failed naming who got it and who did not.",
    )
    dkim_key_file: Path | None = Field(
        None, description="PEM private key; when set, every email is DKIM-signed (rsa-sha256, relaxed/relaxed)."
    )
    dkim_selector: str = Field("omnicast", description="DKIM selector: the key is published at SELECTOR._domainkey.")
    dkim_domain: str | None = Field(None, description="DKIM signing domain (default: the sender address's domain).")
    claim_lease_seconds: float = Field(
        900,
        gt=0,
        le=7 * 86400,
        allow_inf_nan=False,
        description="How long a message claimed or handed over by a run is left to that run; after it, a later run "
        "takes the message over (a crashed run's work is finished, never sent twice). Must exceed the longest "
        "hand-over of one batch to a channel.",
    )
    lock_wait_seconds: float = Field(
        1800,
        ge=0,
        le=86400,
        allow_inf_nan=False,
        description="How long a stage (sync, train, triggers, campaign and audience planning, migration) waits for "
        "another omnicast run holding the same stage on the same database before giving up; 0 = do not wait.",
    )
    recommendations_per_customer: int = Field(10, ge=1, le=100, description="Top-K kept per customer.")
    global_holdout_percent: float = Field(
        0,
        ge=0,
        lt=100,
        allow_inf_nan=False,
        description="Share of all customers (%) who hear no marketing at all (planned as holdout in every campaign), "
        "to measure what marketing adds overall. 0 = none.",
    )
    attribution_model: Literal["click", "delivery"] = Field(
        "click",
        description="Orders are credited to the customer's last click (click) or last delivered message (delivery) "
        "within the attribution window.",
    )
    attribution_window_days: float = Field(
        5,
        gt=0,
        le=90,
        allow_inf_nan=False,
        description="Days after a click or delivery in which an order is credited to it; also the window the lift vs "
        "holdout compares.",
    )
    campaigns_dir: Path | None = Field(
        None, description="Folder of campaign YAML files and segments.yaml (default: the shipped campaigns/)."
    )

    @field_validator(
        "store_path", "crm_path", "analytics_path", "dkim_key_file", "campaigns_dir", "store_url", "crm_url",
        "analytics_url", "store_api_base", "crm_api_base", "store_token", "crm_token", mode="before",
    )  # fmt: skip
    @classmethod
    def _empty_means_unset(cls, value: object) -> object:
        """``OMNICAST_CRM_URL=`` means "no CRM", not the current folder."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("outbox_dir", mode="before")
    @classmethod
    def _named_folder(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            raise ValueError("OMNICAST_OUTBOX_DIR is empty; name the folder the file sinks write to, e.g. ./outbox")
        return value

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        fix = "use sqlite:///path/to/omnicast.db or postgresql+psycopg://user@host:5432/db"
        try:
            url = make_url(value)
        except Exception as exc:  # sqlalchemy raises ArgumentError / ValueError for unparsable text
            raise ValueError(f"OMNICAST_DATABASE_URL={redact_url(value)!r} is not a database URL; {fix}") from exc
        backend = url.get_backend_name()
        if backend not in ("sqlite", "postgresql", "postgres"):
            raise ValueError(
                f"OMNICAST_DATABASE_URL={redact_url(value)!r} names a {backend} database; omnicast runs on SQLite "
                f"or PostgreSQL: {fix}"
            )
        if backend == "sqlite" and url.database in (None, "", ":memory:"):
            raise ValueError(
                f"OMNICAST_DATABASE_URL={value!r} is an in-memory SQLite database, which every stage would see empty; "
                "name a file: sqlite:///path/to/omnicast.db"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"OMNICAST_TIMEZONE={value!r} is not an IANA timezone; use a name such as 'Europe/Berlin'"
            ) from exc
        return value

    @field_validator("default_country")
    @classmethod
    def _known_country(cls, value: str) -> str:
        code = value.strip().upper()
        if code not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(
                f"OMNICAST_DEFAULT_COUNTRY={value!r} is not a two-letter ISO 3166-1 country code with a phone "
                "numbering plan; use one such as US, GB, DE or FR"
            )
        return code

    @field_validator("store_name", "store_address")
    @classmethod
    def _one_printable_line(cls, value: str, info: Any) -> str:
        setting = f"{PREFIX}{info.field_name.upper()}"
        if not value.strip():
            raise ValueError(f"{setting} is empty; every email shows it")
        if _CONTROL.search(value):
            raise ValueError(f"{setting}={value!r} contains a line break or control character; use one line of text")
        return value

    @field_validator("sender_address")
    @classmethod
    def _one_mailbox(cls, value: str) -> str:
        fix = "use one mailbox such as 'Store Name <hello@example.com>'"
        match = None if _CONTROL.search(value) else _MAILBOX.match(value)
        name = (match.group("name") or "") if match else ""
        if match is None or ("," in name and not name.startswith('"')):
            raise ValueError(f"OMNICAST_SENDER_ADDRESS={value!r} is not one mailbox; {fix}")
        address = match.group("addr") or match.group("bare")
        try:
            validate_email(address, check_deliverability=False)
        except EmailNotValidError as exc:
            raise ValueError(
                f"OMNICAST_SENDER_ADDRESS={value!r}: {address!r} is not an email address ({exc}); {fix}"
            ) from exc
        return value

    @field_validator("unsubscribe_mailto")
    @classmethod
    def _mailto_address(cls, value: str) -> str:
        address = value.removeprefix("mailto:")
        try:
            if _CONTROL.search(address) or "?" in address:
                raise EmailNotValidError("one plain address, no line breaks or query")
            validate_email(address, check_deliverability=False)
        except EmailNotValidError as exc:
            raise ValueError(
                f"OMNICAST_UNSUBSCRIBE_MAILTO={value!r} is not an email address ({exc}); "
                "use the mailbox that receives unsubscribe requests, e.g. unsubscribe@example.com"
            ) from exc
        return value

    @field_validator("public_url")
    @classmethod
    def _web_url(cls, value: str) -> str:
        parts = urlsplit(value) if not _CONTROL.search(value) and " " not in value else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"OMNICAST_PUBLIC_URL={value!r} is not an http(s) URL; use the store's address such as "
                "https://shop.example.com (unsubscribe links live under it)"
            )
        return value

    @field_validator("dkim_selector")
    @classmethod
    def _dns_selector(cls, value: str) -> str:
        if not _SELECTOR.match(value):
            raise ValueError(
                f"OMNICAST_DKIM_SELECTOR={value!r} is not a DNS label; use letters, digits and hyphens, e.g. 'omnicast'"
            )
        return value

    @field_validator("dkim_domain")
    @classmethod
    def _dns_domain(cls, value: str | None) -> str | None:
        if value is not None and not _HOSTNAME.match(value):
            raise ValueError(
                f"OMNICAST_DKIM_DOMAIN={value!r} is not a domain name; use the sender's domain, e.g. shop.example"
            )
        return value

    @field_validator("serve_url")
    @classmethod
    def _serve_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value) if not _CONTROL.search(value) and " " not in value else None
        usable = parts is not None and parts.scheme in ("http", "https") and parts.hostname
        if not usable or parts is None or parts.query or parts.fragment:
            raise ValueError(
                f"OMNICAST_SERVE_URL={value!r} is not an http(s) URL without query; use the public address where "
                "`omnicast serve` answers, such as https://mail.shop.example.com"
            )
        return value.rstrip("/")

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_hours(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not _QUIET_HOURS.match(value.strip()):
            raise ValueError(
                f"OMNICAST_QUIET_HOURS={value!r} is not HH:MM-HH:MM; use the hours no marketing email may arrive, in "
                "the customer's time zone, e.g. 21:00-08:00"
            )
        return value.strip()

    @property
    def links_url(self) -> str:
        """Where unsubscribe and tracked links point: ``OMNICAST_SERVE_URL``, else ``OMNICAST_PUBLIC_URL``."""
        return (self.serve_url or self.public_url).rstrip("/")

    def channel_url(self, channel: str) -> str | None:
        """The channel's URL: its setting, else a folder under the outbox; ``None`` when it is left unconfigured
        (set to ``off``, or unset without a default folder)."""
        spec = BY_NAME[channel]
        explicit = (getattr(self, spec.field, None) or "").strip()
        if explicit.lower() == OFF:
            return None
        if explicit:
            return explicit
        if spec.default_folder is None:
            return None
        return f"file://{(self.outbox_dir / spec.default_folder).resolve()}"


def _channel_fields() -> dict[str, Any]:
    """One field per channel URL and per adapter setting, from the channel table."""
    fields: dict[str, Any] = {}
    for spec in CHANNELS:
        schemes = ", ".join(f"{scheme}://" for scheme in spec.schemes)
        default = f" (default: OUTBOX/{spec.default_folder})" if spec.default_folder else " (default: off)"
        fields[spec.field] = (str | None, Field(None, description=f"{spec.label}: {schemes} or off{default}."))
    for setting in adapter_settings():
        fields[setting.field] = (str | None if setting.default is None else str,
                                 Field(setting.default, description=setting.description))  # fmt: skip
    return fields


if TYPE_CHECKING:
    Settings = BaseOmnicastSettings
else:
    Settings = create_model("Settings", __base__=BaseOmnicastSettings, **_channel_fields())
    Settings.__doc__ = BaseOmnicastSettings.__doc__


def load_settings(**overrides: Any) -> Settings:
    """The settings from the environment and ``.env`` (``overrides``, field → value, win over both); a wrong value is
    a one-line :class:`SettingError`."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingError(settings_problem(exc)) from None


def settings_problem(exc: ValidationError) -> str:
    """Every problem pydantic found, on one line, each naming its environment variable (never a secret's value)."""
    return "; ".join(settings_problems(exc))


def settings_problems(exc: ValidationError) -> list[str]:
    """Every problem pydantic found, one sentence each, naming its environment variable (never a secret's value)."""
    return [_problem(error) for error in exc.errors(include_url=False)]


def _problem(error: Any) -> str:
    field = str(error["loc"][0]) if error["loc"] else ""
    setting = f"{PREFIX}{field.upper()}"
    message = " ".join(str(error["msg"]).removeprefix("Value error, ").split())
    if setting in message:
        return message  # our own validators already name the setting and the fix
    if field in SECRET_FIELDS:
        return f"{setting} is not valid ({message})"
    value = error.get("input")
    shown = redact_url(value) if field == "database_url" and isinstance(value, str) else value
    return f"{setting}={shown!r} is not valid: {message[:1].lower()}{message[1:]}"


# --- `omnicast init` and .env.example: every setting, from this model ----------------------------------------------

ENV_REQUIRED = ("store_url", "secret_key")
"""Settings a deployed run cannot do without (no default)."""
ENV_STORE = ("database_url", "timezone", "store_name", "store_address", "sender_address", "public_url",
             "unsubscribe_mailto", "serve_url")  # fmt: skip
"""Settings whose default is the demo store's: a real store sets its own."""
ENV_SOURCES = ("crm_url", "analytics_url")
"""Optional sources: a run without them warns what it goes without."""
_ENV_HEADER = """\
# omnicast settings: every OMNICAST_* variable, read from the environment or from .env in the folder omnicast (and
# the Prefect worker) runs in; the environment wins. Written by `omnicast init` from the Settings model
# (flows/settings.py); .env.example is the same text without a secret key. Settings a run needs are checked at its
# start and every missing or invalid one is reported at once.

"""


def env_file_text(secret_key: str | None = None, overrides: dict[str, str] | None = None) -> str:
    """Every setting of :class:`Settings` with its description as a comment: the required ones and the store's own
    set (``secret_key``, ``overrides`` by field name), the rest commented out at their defaults."""
    given = {"secret_key": secret_key or "", **(overrides or {})}
    fields = Settings.model_fields
    rest = [name for name in fields if name not in (*ENV_REQUIRED, *ENV_STORE, *ENV_SOURCES)]
    sections = [
        ("Required by every deployed run (`omnicast init` generates the secret key)", ENV_REQUIRED, True),
        ("Your store (the defaults are the demo store's: set your own)", ENV_STORE, True),
        ("Optional sources (unset: each run logs a warning saying what it goes without)", ENV_SOURCES, False),
        ("Everything else, at its default (remove the # to change one)", tuple(rest), False),
    ]
    lines = [_ENV_HEADER]
    for title, names, active in sections:
        lines.append(f"# === {title} ===\n")
        for name in names:
            lines.append(_env_entry(name, given.get(name), active))
    return "".join(lines).rstrip("\n") + "\n"


def _env_entry(name: str, given: str | None, active: bool) -> str:
    import textwrap

    info = Settings.model_fields[name]
    default = info.default
    value = given if given is not None else ("" if default is None else _env_default(default))
    comment = textwrap.fill(info.description or "", width=116, initial_indent="# ", subsequent_indent="# ")
    line = f"{PREFIX}{name.upper()}={_env_quote(value)}"
    if not active and given is None:
        line = f"# {line}"
    return f"{comment}\n{line}\n\n"


def _env_default(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _env_quote(value: str) -> str:
    """A value as python-dotenv reads it back unchanged (double quotes when it holds spaces, quotes or #)."""
    if value and not re.search(r"[\s\"'#\\$`]", value):
        return value
    if not value:
        return ""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
