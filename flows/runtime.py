"""What every flow needs before it starts: settings, a migrated database, the day it runs for, the channels."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from email.utils import parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine

from flows.settings import SettingError, Settings, load_settings
from models.db import prepare
from models.errors import InputError, OmnicastError
from models.locks import stage_lock

if TYPE_CHECKING:  # the channels load when a run opens them, so a wrong setting is reported without that cost
    from channels.base import Channel
    from channels.email import DkimKey

__all__ = [
    "AD_PLATFORMS",
    "check_channels",
    "check_platform",
    "dkim_key",
    "load_settings",
    "locked",
    "open_channels",
    "open_database",
    "parse_day",
    "run_date",
    "secret_key",
    "SettingError",
    "Settings",
    "store_files",
]

# Prefect's engines log a failed task or flow run with its traceback, and again for every parent flow. For an
# OmnicastError the traceback helps nobody: the run's state keeps the one-line message (console and UI), and the CLI
# prints it once more as the last line. Bugs (any other exception) keep their tracebacks.
_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


class UserErrorTracebackFilter(logging.Filter):
    """Drops Prefect's "failed with exception" records (traceback attached) when the exception is an OmnicastError."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, OmnicastError)


def quiet_user_error_tracebacks() -> None:
    """Install :class:`UserErrorTracebackFilter` on Prefect's run loggers (idempotent; survives Prefect's config)."""
    for name in _RUN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, UserErrorTracebackFilter) for f in logger.filters):
            logger.addFilter(UserErrorTracebackFilter())


quiet_user_error_tracebacks()


def run_logger() -> logging.Logger | logging.LoggerAdapter[Any]:
    """The Prefect run logger inside a flow or task (its lines reach the UI), this module's logger outside one."""
    if "prefect" not in sys.modules:  # not inside a run; do not pay for importing Prefect
        return logging.getLogger(__name__)
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


def store_files(settings: Settings) -> tuple[Path, Path | None, Path | None]:
    """Where the sources are, checked before any work starts."""
    if settings.store_path is None:
        raise SettingError(
            "OMNICAST_STORE_PATH is not set: point it at the folder holding Shopify's products_export.csv, "
            "customers_export.csv and orders_export.csv (or run `omnicast demo` for sample data)."
        )
    return settings.store_path, settings.crm_path, settings.analytics_path


def open_database(settings: Settings) -> Engine:
    """Check the URL, migrate the database to the current schema (one run at a time) and return an engine on it."""
    return prepare(settings.database_url, settings.lock_wait_seconds, run_logger())


@contextmanager
def locked(engine: Engine, settings: Settings, stage: str) -> Iterator[None]:
    """Hold ``stage``'s lock on the database: a second run of the stage waits (logging why) instead of colliding."""
    with stage_lock(engine, stage, settings.lock_wait_seconds, run_logger()):
        yield


def parse_day(value: str, what: str = "as_of") -> date:
    """An ISO date given by a user; :class:`InputError` naming ``what`` otherwise."""
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise InputError(f"{what}={value!r} is not a date; use YYYY-MM-DD, e.g. 2026-11-27") from exc


AD_PLATFORMS = ("meta", "google")


def check_platform(platform: str | None) -> None:
    """Refuse an ad platform omnicast has no audience channel for, naming the choices."""
    if platform is not None and platform not in AD_PLATFORMS:
        raise InputError(f"unknown ad platform {platform!r}; choose one of: {', '.join(AD_PLATFORMS)}")


def run_date(settings: Settings, as_of: str | None = None) -> date:
    """The business day a run is for: ``as_of`` (ISO date) or today in the store's timezone."""
    if as_of:
        return parse_day(as_of)
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
    from channels.email import EmailOptions
    from channels.registry import build_channels

    options = EmailOptions(
        sender=settings.sender_address,
        public_url=settings.public_url,
        unsubscribe_mailto=settings.unsubscribe_mailto,
        secret_key=secret_key(settings),
        dkim=dkim_key(settings),
    )
    urls = {name: settings.channel_url(name) for name in ("email", "meta", "google", "inapp")}
    return build_channels(urls, email_options=options)


def check_channels(settings: Settings) -> None:
    """Open and close every configured channel: a wrong URL, folder, secret or DKIM key fails here, before work."""
    for channel in open_channels(settings).values():
        channel.close()


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
    from channels.email import DkimKey

    domain = settings.dkim_domain or parseaddr(settings.sender_address)[1].rpartition("@")[2]
    if not domain:
        raise SettingError("OMNICAST_DKIM_DOMAIN is not set and OMNICAST_SENDER_ADDRESS has no domain to sign for")
    return DkimKey(selector=settings.dkim_selector, domain=domain, private_key=pem)
