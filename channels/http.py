"""What the HTTP adapters (Postmark, in-app webhook, Meta, Google) share: reading settings, checking an API base URL,
``Retry-After``, and the backoff loop of one call.

Each function takes what differs between the adapters as parameters (the setting's name, the fix to suggest, the
logger, the backoff's first step and cap, what to log and raise); the adapters keep their own error mapping.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from channels.base import ChannelConfigError

__all__ = [
    "ConfigStop", "Retry", "checked_base_url", "is_loopback", "jittered_backoff", "json_object", "retry_after_seconds",
    "secret_text", "warn_plain_http", "with_retries",
]  # fmt: skip

T = TypeVar("T")


# settings --------------------------------------------------------------------------------------------------------


def secret_text(value: Any) -> str | None:
    """A setting's text whether it is a plain string or a pydantic ``SecretStr``: stripped, ``None`` when missing or
    blank."""
    if value is None:
        return None
    getter = getattr(value, "get_secret_value", None)
    text = getter() if callable(getter) else value
    return text.strip() if isinstance(text, str) and text.strip() else None


def is_loopback(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback address (where a credential may travel in clear text)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def warn_plain_http(scheme: str, host: str, setting: str, exposed: str, logger: logging.Logger) -> None:
    """Log (on ``logger``) that ``setting`` sends in clear text when it is plain http to a host that is not loopback;
    ``exposed`` says what then crosses the network, e.g. ``"the access token travels unencrypted"``."""
    if scheme == "http" and not is_loopback(host):
        logger.warning("%s uses plain http to a non-loopback host: %s", setting, exposed)


def checked_base_url(value: str, setting: str, *, fix: str, exposed: str, logger: logging.Logger) -> str:
    """An API base URL setting checked: http(s) with a host, without credentials, query or fragment, and without the
    trailing slash. ``ChannelConfigError`` naming ``setting`` and ending in ``fix`` otherwise. Plain http is accepted
    (a local stand-in) but logged by ``warn_plain_http`` when the host is not loopback."""
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError:
        raise ChannelConfigError(f"{setting}={value!r} is not a URL; {fix}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ChannelConfigError(f"{setting}={value!r} is not an http(s) URL; {fix}")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ChannelConfigError(f"{setting} must not hold credentials, a query or a fragment; {fix}")
    warn_plain_http(parts.scheme, parts.hostname, setting, exposed, logger)
    return value.strip().rstrip("/")


# answers ---------------------------------------------------------------------------------------------------------


class ConfigStop(Exception):
    """An answer that says the configuration is wrong: every further call would fail the same way. ``error`` is the
    ``ChannelConfigError`` to raise (or, once part of a call went over, to fail the rest of it with)."""

    def __init__(self, error: ChannelConfigError) -> None:
        super().__init__(str(error))
        self.error = error


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The answer's body as a JSON object; ``{}`` when it is not JSON or not an object."""
    try:
        answer = response.json()
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


# retries ---------------------------------------------------------------------------------------------------------


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds, or an HTTP-date compared with ``now``); ``None``
    when absent or unreadable. A date in the past is 0."""
    value = (value or "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def jittered_backoff(
    attempt: int, retry_after: float | None, jitter: Callable[[], float], *, first: float, cap: float
) -> float:
    """Exponential backoff with jitter (``first``, twice that, … at most ``cap``; half of it random) before retry
    ``attempt + 1``; when the answer asked for a wait, that wait plus a little jitter so parallel workers don't
    return together. ``jitter`` gives a float in [0, 1)."""
    backoff = min(cap, first * 2.0**attempt)
    if retry_after is not None:
        return retry_after + 0.25 * backoff * jitter()
    return backoff * (0.5 + 0.5 * jitter())


@dataclass(frozen=True)
class Retry:
    """An attempt that may be repeated: what went wrong (for logs and errors) and the wait the answer asked for."""

    problem: str
    retry_after: float | None = None


def with_retries(
    attempt: Callable[[], T | Retry],
    *,
    max_retries: int,
    max_retry_wait: float,
    delay: Callable[[int, float | None], float],
    sleep: Callable[[float], None],
    on_retry: Callable[[Retry, float, int], None],
    give_up: Callable[[Retry, int], T],
) -> T:
    """Call ``attempt`` until it returns something other than a ``Retry`` (or raises), and return that.

    After a ``Retry`` the wait is ``delay(retries so far, retry_after)``; when ``max_retries`` retries were made or
    the wait would take the call past ``max_retry_wait`` seconds of waiting in all, ``give_up(retry, attempts)`` ends
    the call (it returns the call's result or raises). Otherwise ``on_retry(retry, wait, retry number)`` is told,
    then ``sleep(wait)``."""
    waited = 0.0
    retries = 0
    while True:
        outcome = attempt()
        if not isinstance(outcome, Retry):
            return outcome
        wait = delay(retries, outcome.retry_after)
        if retries >= max_retries or waited + wait > max_retry_wait:
            return give_up(outcome, retries + 1)
        on_retry(outcome, wait, retries + 1)
        sleep(wait)
        waited += wait
        retries += 1
