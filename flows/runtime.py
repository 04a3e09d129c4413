"""What every flow needs before it starts: settings, a migrated database, the day it runs for, the channels."""

from __future__ import annotations

from datetime import date, datetime
from email.utils import parseaddr
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine

from channels.base import Channel
from channels.email import DkimKey, EmailOptions
from channels.registry import build_channels
from flows.settings import Settings
from models.db import prepare
from models.errors import ConfigurationError


class SettingError(ConfigurationError):
    """A setting is missing or wrong; the message names the environment variable and how to fix it."""


def load_settings() -> Settings:
    return Settings()


def open_database(settings: Settings) -> Engine:
    """Migrate the configured database to the current schema and return an engine on it."""
    return prepare(settings.database_url)


def run_date(settings: Settings, as_of: str | None = None) -> date:
    """The business day a run is for: ``as_of`` (ISO date) or today in the store's timezone."""
    if as_of:
        try:
            return date.fromisoformat(as_of)
        except ValueError as exc:
            raise SettingError(f"as_of={as_of!r} is not an ISO date (YYYY-MM-DD)") from exc
    return datetime.now(ZoneInfo(settings.timezone)).date()


def secret_key(settings: Settings) -> str:
    if settings.secret_key is None or not settings.secret_key.get_secret_value():
        raise SettingError(
            "OMNICAST_SECRET_KEY is not set: it signs unsubscribe links. Generate one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'` and export it "
            "(or store it in a Prefect Secret block and export it in the worker's environment)."
        )
    return settings.secret_key.get_secret_value()


def open_channels(settings: Settings) -> dict[str, Channel]:
    """The channel adapters the settings ask for (file outboxes by default)."""
    options = EmailOptions(
        sender=settings.sender_address,
        public_url=settings.public_url,
        unsubscribe_mailto=settings.unsubscribe_mailto,
        secret_key=secret_key(settings),
        dkim=dkim_key(settings),
    )
    urls = {name: settings.channel_url(name) for name in ("email", "meta", "google", "inapp")}
    return build_channels(urls, email_options=options)


def dkim_key(settings: Settings) -> DkimKey | None:
    """The DKIM key the settings name, or ``None`` when signing is off."""
    if settings.dkim_key_file is None:
        return None
    try:
        pem = settings.dkim_key_file.read_bytes()
    except OSError as exc:
        raise SettingError(
            f"OMNICAST_DKIM_KEY_FILE={str(settings.dkim_key_file)!r} cannot be read ({exc.strerror}); "
            "point it at the PEM private key whose public half is in DNS"
        ) from exc
    domain = settings.dkim_domain or parseaddr(settings.sender_address)[1].rpartition("@")[2]
    if not domain:
        raise SettingError("OMNICAST_DKIM_DOMAIN is not set and OMNICAST_SENDER_ADDRESS has no domain to sign for")
    return DkimKey(selector=settings.dkim_selector, domain=domain, private_key=pem)
