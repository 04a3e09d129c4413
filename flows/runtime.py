"""What every flow needs before it starts: settings, a migrated database, the day it runs for, the channels."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine

from flows.settings import PREFIX, SettingError, Settings, load_settings
from models.campaigns import Catalog, load_catalog
from models.db import prepare
from models.errors import ConfigurationError, InputError, OmnicastError
from models.locks import stage_lock
from sources.base import ROLES, Reader, SourceConfig

if TYPE_CHECKING:  # the channels load when a run opens them, so a wrong setting is reported without that cost
    from channels.base import Channel

__all__ = [
    "AD_PLATFORMS",
    "check_channels",
    "check_platform",
    "check_run",
    "load_run_settings",
    "load_settings",
    "locked",
    "open_channels",
    "open_database",
    "parse_day",
    "Resources",
    "run_date",
    "run_problems",
    "run_resources",
    "run_title",
    "SettingError",
    "Settings",
    "source_configs",
    "source_readers",
    "source_warnings",
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


SOURCE_FLAGS = {"store": "--store", "crm": "--crm", "analytics": "--analytics"}


def source_configs(settings: Settings) -> list[SourceConfig]:
    """The configured sources, store first: each with its URL (``OMNICAST_<ROLE>_URL``, else the older
    ``OMNICAST_<ROLE>_PATH``), the name of the setting it came from (quoted in every error about it), its credential
    (a ``prefect-secret://BLOCK`` value read from that Prefect Secret block) and its API base. No store: an error."""
    configs = []
    for role in ROLES:
        url = getattr(settings, f"{role}_url")
        name = f"{PREFIX}{role.upper()}_URL"
        if url is None and getattr(settings, f"{role}_path") is not None:
            url, name = str(getattr(settings, f"{role}_path")), f"{PREFIX}{role.upper()}_PATH"
        if url is None:
            if role == "store":
                raise SettingError(_NO_STORE)
            continue
        token = _credential(getattr(settings, f"{role}_token", None), f"{PREFIX}{role.upper()}_TOKEN")
        api_base = getattr(settings, f"{role}_api_base", None)
        configs.append(SourceConfig(role, url, f"{name} ({SOURCE_FLAGS[role]})", token, api_base))
    return configs


def source_readers(settings: Settings) -> list[Reader]:
    """A reader per configured source (``sources.registry``), not yet checked or read."""
    from sources.registry import reader_for

    return [reader_for(config) for config in source_configs(settings)]


SECRET_BLOCK = "prefect-secret://"


def _credential(value: Any, setting: str) -> str | None:
    """A credential setting's text; ``prefect-secret://NAME`` is read from the Prefect Secret block NAME."""
    from channels.http import secret_text

    text = secret_text(value)
    if text is None or not text.startswith(SECRET_BLOCK):
        return text
    name = text.removeprefix(SECRET_BLOCK)
    from prefect.blocks.system import Secret

    try:
        secret: Any = Secret.load(name, _sync=True)  # type: ignore[call-arg]
    except (ValueError, RuntimeError) as exc:
        raise SettingError(f"{setting}: no Prefect Secret block named {name!r} ({exc}); create it in the Prefect UI "
                           "(Blocks → Secret) or set the token itself") from None  # fmt: skip
    return str(secret.get()).strip() or None


def source_warnings(settings: Settings) -> list[str]:
    """One sentence per optional source left unconfigured: what the day goes without, and the setting that adds it.

    A run logs these as warnings (and shows them in its artifacts): an unset CRM or analytics source is allowed, but
    never silent. A source that is configured and unusable is an error instead (:func:`run_problems`)."""
    warnings = []
    if settings.crm_url is None and settings.crm_path is None:
        warnings.append(
            "OMNICAST_CRM_URL is not set: no CRM contacts are loaded today, so their consent statements, marketing "
            "status, birthdays and time zones are missing from the profiles; set it to the HubSpot contacts export "
            "(a CSV file) or to hubspot:// to use them"
        )
    if settings.analytics_url is None and settings.analytics_path is None:
        warnings.append(
            "OMNICAST_ANALYTICS_URL is not set: no web analytics events are loaded today, so there are no "
            "abandoned carts and recommendations see purchases only; set it to the GA4 export (JSONL or Parquet) "
            "to use them"
        )
    return warnings


def run_problems(settings: Settings, *, store: bool = False, channels: bool = False) -> list[str]:
    """Everything that would stop a run with these settings, each problem once, in one list (empty: good to go).

    ``store``: the sources (``OMNICAST_STORE_URL`` set, and every configured source passing its reader's own check:
    the export files there, an API URL and credential well formed). ``channels``: every channel opens (URL, secret
    key, DKIM key, folders)."""
    problems: list[str] = []
    if store:
        try:
            readers = source_readers(settings)
        except OmnicastError as exc:
            problems.append(str(exc))
        else:
            from models.sync import check_sources  # the sync's own check: the same words as a sync run

            try:
                check_sources(readers)
            except OmnicastError as exc:
                problems.append(str(exc))
    if channels:
        from channels.spec import CHANNELS

        for spec in CHANNELS:  # one at a time, so every channel's problem is reported, not only the first
            try:
                for channel in open_channels(settings, only=[spec.name]).values():
                    channel.close()
            except OmnicastError as exc:
                if str(exc) not in problems:
                    problems.append(str(exc))
    return problems


def check_run(settings: Settings, *, store: bool = False, channels: bool = False) -> None:
    """:class:`SettingError` listing every problem :func:`run_problems` finds, in one line."""
    problems = run_problems(settings, store=store, channels=channels)
    if problems:
        raise SettingError(_all_problems(problems))


def load_run_settings(*, store: bool = False, channels: bool = False, **overrides: Any) -> Settings:
    """The settings a run needs, checked all at once: every invalid value *and* every missing setting, source or
    channel problem in one :class:`SettingError` (a newcomer fixes them in one go, not one failed run each).

    ``overrides`` (field → value) win over the environment and ``.env``, as in :func:`load_settings`."""
    from pydantic import ValidationError

    from flows.settings import PREFIX, settings_problems

    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems = settings_problems(exc)
        invalid = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
        defaults = {name: Settings.model_fields[name].default for name in invalid if name in Settings.model_fields}
        try:  # the invalid values put back to their defaults, to find what else is missing
            rest = Settings(**{**overrides, **defaults})
        except ValidationError:
            raise SettingError(_all_problems(problems)) from None
        named = tuple(f"{PREFIX}{name.upper()}" for name in invalid)
        found = run_problems(rest, store=store, channels=channels)
        problems += [problem for problem in found if not any(setting in problem for setting in named)]
        raise SettingError(_all_problems(problems)) from None
    check_run(settings, store=store, channels=channels)
    return settings


def _all_problems(problems: list[str]) -> str:
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} settings need attention: " + "; ".join(
        f"({n}) {problem.rstrip('.')}" for n, problem in enumerate(problems, 1)
    )


_NO_STORE = (
    "OMNICAST_STORE_URL is not set: point it at the folder holding Shopify's products_export.csv, "
    "customers_export.csv and orders_export.csv, or at shopify://SHOP.myshopify.com or woocommerce://HOST (or run "
    "`omnicast demo` for sample data)."
)


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


AD_PLATFORMS = ("meta", "google", "tiktok")


def check_platform(platform: str | None) -> None:
    """Refuse an ad platform omnicast has no audience channel for, naming the choices."""
    if platform is not None and platform not in AD_PLATFORMS:
        raise InputError(f"unknown ad platform {platform!r}; choose one of: {', '.join(AD_PLATFORMS)}")


def run_date(settings: Settings, as_of: str | None = None) -> date:
    """The business day a run is for: ``as_of`` (ISO date) or today in the store's timezone."""
    if as_of:
        return parse_day(as_of)
    return datetime.now(ZoneInfo(settings.timezone)).date()


def run_title(label: str, as_of: str | None = None) -> str:
    """A run's name in the Prefect UI: what it is and the day it is for (``daily 2026-12-08``)."""
    if not as_of:
        try:
            as_of = run_date(load_settings()).isoformat()
        except OmnicastError:  # the run itself reports the setting; the name falls back to the machine's day
            as_of = date.today().isoformat()
    return f"{label} {as_of}"


def open_channels(settings: Settings, *, only: Sequence[str] | None = None) -> dict[str, Channel]:
    """The channel adapters the settings ask for (file outboxes by default; ``off`` ones unconfigured)."""
    from channels.registry import open_channels as open_from_table

    return open_from_table(settings, only=only)


def check_channels(settings: Settings) -> None:
    """Open and close every configured channel: a wrong URL, folder, secret or DKIM key fails here, before work."""
    for channel in open_channels(settings).values():
        channel.close()


@dataclass
class Resources:
    """What one run works with, built once and handed to every stage (as Dagster hands resources to its ops): the
    settings, one engine on the migrated database and the open channels (``None`` until a stage needs them)."""

    settings: Settings
    engine: Engine
    channels: dict[str, Channel] | None = None
    catalog: Catalog | None = None

    def campaigns(self) -> Catalog:
        """The run's campaigns and segments (``OMNICAST_CAMPAIGNS_DIR`` or the shipped ones), read once."""
        if self.catalog is None:
            catalog = load_catalog(self.settings.campaigns_dir)
            check_send_windows(catalog, self.settings.quiet_hours)
            self.catalog = catalog
        return self.catalog

    def open_channels(self) -> dict[str, Channel]:
        """The run's channels, opened on first use and kept open (one SMTP pool, one HTTP client per run)."""
        if self.channels is None:
            self.channels = open_channels(self.settings)
        return self.channels

    def close(self) -> None:
        """Close the channels and release the engine's connections."""
        channels, self.channels = self.channels, None
        try:
            for channel in (channels or {}).values():
                channel.close()
        finally:
            self.engine.dispose()


def check_send_windows(catalog: Catalog, quiet_hours: str | None) -> None:
    """Stop before planning when a campaign's ``send_window`` could never open under ``OMNICAST_QUIET_HOURS``."""
    from channels.rules import parse_quiet_hours, window_problem

    quiet = parse_quiet_hours(quiet_hours)
    for campaign in catalog.campaigns:
        problem = window_problem(quiet, campaign.send_window)
        if problem:
            raise ConfigurationError(
                f"{campaign.file}, field send_window: {problem} (OMNICAST_QUIET_HOURS), so campaign "
                f"{campaign.name} could never send; widen the window or narrow the quiet hours"
            )


@contextmanager
def run_resources(settings: Settings | None = None, *, channels: bool = False) -> Iterator[Resources]:
    """Settings (loaded unless given), the migrated database and, with ``channels``, the open channels for one run;
    everything is closed when the run ends."""
    settings = settings or load_settings()
    engine = open_database(settings)
    resources = Resources(settings, engine)
    try:
        if channels:
            resources.open_channels()
        yield resources
    finally:
        resources.close()
