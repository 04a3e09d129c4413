"""Dispatch rules: how often a customer may get marketing, when, in which order campaigns win, how hard to retry.

Everything here is pure (no database): ``channels/dispatch.py`` applies it at the gate and around the hand-over.

* **Priority** — when two marketing messages compete for one frequency-cap slot the higher-priority campaign wins:
  each message carries its campaign's ``priority`` (1 = most important; the campaign file's ``priority:``, by default
  abandoned cart 1, replenishment 2, birthday 3, win-back 4, broadcasts 5). Dispatch decides messages in that order,
  so the input order never matters.
* **Frequency cap** — counted per customer over marketing messages on the capped channels (email), ``sent`` or being
  handed over (``sending``). A "day" is the customer's **local calendar day** (``Recipient.timezone``, else the
  store's): 1 a day means one per date on the customer's calendar, so a daily run that starts a few minutes earlier
  than yesterday's does not see yesterday's email inside a rolling 24 h. A "week" is the 7 local days ending on the
  day of the hand-over. 0 turns a cap off. Transactional messages (``marketing=False``) are neither counted nor capped.
* **Quiet hours** — a window of local wall-clock time (``21:00-08:00`` wraps midnight) in which no marketing message is
  handed over; a message due then is deferred to the first instant after the window in the customer's zone
  (:func:`next_allowed`), never dropped. The end is exclusive (at 08:00 the window is over); a window whose start
  equals its end is empty. Wall-clock semantics across DST: a window end that does not exist that night (spring
  forward skips 02:00-03:00 and the window ends at 02:30) ends the window at the jump (03:00); a window end that
  happens twice (fall back) is the first occurrence that is still in the future.
* **Send window** — a campaign may narrow the hours further (``send_window: 09:00-20:00``, the customer's local time):
  its messages are deferred, as by quiet hours, to the first instant that is inside the window and outside the quiet
  hours (:func:`next_open`). A window lying wholly inside the quiet hours could never open: :func:`window_problem`
  says so before a run plans anything.
* **Retries** — a retryable failure is tried again within the run after an exponential backoff with full jitter
  (``uniform(0, min(max, base * 2**n))``), at most ``in_run_retries`` times; then it stays retryable for a later run.
* **Error-rate stop** — once a campaign has ``error_min_handovers`` hand-overs in a run and more than
  ``error_threshold`` of them failed, its remaining messages are not handed over (see ``channels/dispatch.py``).
"""

from __future__ import annotations

import random
import time as _time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "DispatchRules", "backoff_delay", "in_quiet_hours", "local_date", "next_allowed", "next_open",
    "parse_quiet_hours", "parse_send_window", "window_problem", "zone_of",
]  # fmt: skip

QuietHours = tuple[time, time]


@dataclass(frozen=True)
class DispatchRules:
    """What ``dispatch(..., rules=...)`` enforces on top of consent; ``None`` there means none of it."""

    email_daily_cap: int = 1
    """Marketing messages per customer per local calendar day on ``capped_channels`` (0 = no daily cap)."""
    email_weekly_cap: int = 3
    """Marketing messages per customer in the 7 local days ending on the hand-over day (0 = no weekly cap)."""
    quiet_hours: QuietHours | None = None
    """``(start, end)`` local wall-clock times no marketing message is handed over in; ``None`` = any hour."""
    default_timezone: str = "UTC"
    """The store's IANA zone, for customers whose profile has none (or an unknown one)."""
    error_threshold: float = 0.2
    """A campaign stops in a run once more than this share of its hand-overs failed ..."""
    error_min_handovers: int = 20
    """... and it had at least this many hand-overs."""
    retry_backoff_base: float = 0.5
    """Seconds: the first in-run retry waits up to this, each further one up to twice as long ..."""
    retry_backoff_max: float = 5.0
    """... but never more than this."""
    retry_jitter: bool = True
    """Full jitter: wait a uniform random time up to the backoff (spreads retries of parallel workers apart)."""
    in_run_retries: int = 2
    """How many times a retryable failure is tried again within the same run."""
    retry_runs: int = 3
    """How many runs try a retryable message; with ``in_run_retries`` this makes :attr:`max_attempts`."""
    capped_channels: frozenset[str] = frozenset({"email"})
    """Channels (ledger names) the frequency cap and the quiet hours apply to."""
    sleep: Callable[[float], None] = field(default=_time.sleep, repr=False, compare=False)
    """Waits between in-run retries (tests pass a recorder)."""
    random: Callable[[], float] = field(default=random.random, repr=False, compare=False)
    """Source of jitter in [0, 1)."""

    def __post_init__(self) -> None:
        if self.email_daily_cap < 0 or self.email_weekly_cap < 0:
            raise ValueError("frequency caps must be 0 (off) or positive")
        if not 0 < self.error_threshold <= 1:
            raise ValueError("error_threshold must be in (0, 1]")
        if self.error_min_handovers < 1 or self.in_run_retries < 0 or self.retry_runs < 1:
            raise ValueError("error_min_handovers and retry_runs must be positive, in_run_retries at least 0")
        if self.retry_backoff_base < 0 or self.retry_backoff_max < 0:
            raise ValueError("retry backoff must not be negative")
        zone_of(self.default_timezone, None)  # raises for an unknown store zone

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> DispatchRules:
        """The rules ``flows.settings.Settings`` asks for (``OMNICAST_EMAIL_DAILY_CAP``, ``…_WEEKLY_CAP``,
        ``…_QUIET_HOURS``, ``…_TIMEZONE``, ``…_CAMPAIGN_ERROR_THRESHOLD``); ``overrides`` replace any field."""
        values: dict[str, Any] = {
            "email_daily_cap": settings.email_daily_cap,
            "email_weekly_cap": settings.email_weekly_cap,
            "quiet_hours": parse_quiet_hours(settings.quiet_hours),
            "default_timezone": settings.timezone,
            "error_threshold": settings.campaign_error_threshold,
        }
        return cls(**{**values, **overrides})

    @property
    def max_attempts(self) -> int:
        """Hand-overs a retryable message gets in all: ``retry_runs`` runs of ``1 + in_run_retries`` tries."""
        return self.retry_runs * (1 + self.in_run_retries)

    @property
    def store_zone(self) -> ZoneInfo:
        return zone_of(self.default_timezone, None)

    def zone(self, timezone: str | None) -> ZoneInfo:
        """The customer's zone (``Recipient.timezone``), else the store's."""
        return zone_of(timezone, self.store_zone)

    def backoff(self, retry: int) -> float:
        """Seconds to wait before in-run retry number ``retry`` (0-based)."""
        return backoff_delay(retry, self.retry_backoff_base, self.retry_backoff_max,
                             self.random if self.retry_jitter else None)  # fmt: skip

    def caps(self, marketing: bool, channel: str) -> bool:
        """Whether the frequency cap and the quiet hours apply to such a message."""
        return marketing and channel in self.capped_channels


def parse_quiet_hours(value: str | None) -> QuietHours | None:
    """``"21:00-08:00"`` → ``(time(21), time(8))``; ``None``/blank → ``None``."""
    if value is None or not value.strip():
        return None
    try:
        start, end = (time.fromisoformat(part.strip()) for part in value.strip().split("-"))
    except ValueError:
        raise ValueError(f"quiet hours {value!r} are not HH:MM-HH:MM (e.g. 21:00-08:00)") from None
    return (start.replace(second=0, microsecond=0), end.replace(second=0, microsecond=0))


@cache
def parse_send_window(value: str | None) -> QuietHours | None:
    """A campaign's send window ``"09:00-20:00"`` as the quiet hours it implies (``(time(20), time(9))``); ``None``
    for none. A window whose start equals its end is refused: it would mean both "never" and "always"."""
    window = parse_quiet_hours(value)
    if window is None:
        return None
    if window[0] == window[1]:
        raise ValueError(
            f"send window {value!r} starts where it ends; give the hours messages may arrive, e.g. 09:00-20:00"
        )
    return (window[1], window[0])


def window_problem(quiet_hours: QuietHours | None, send_window: str | None) -> str | None:
    """Why a campaign's ``send_window`` can never open under the store's quiet hours, or ``None`` when it can
    (checked minute by minute over one day: both are whole minutes of wall-clock time)."""
    closed = parse_send_window(send_window)
    if closed is None:
        return None
    for minute in range(24 * 60):
        wall = time(minute // 60, minute % 60)
        if not _within(wall, quiet_hours) and not _within(wall, closed):
            return None
    start, end = quiet_hours or (time(), time())
    return f"send window {send_window} lies wholly inside the quiet hours {start:%H:%M}-{end:%H:%M}"


def next_open(now: datetime, zone: ZoneInfo, quiet_hours: QuietHours | None, send_window: str | None) -> datetime:
    """The first instant at or after ``now`` outside the quiet hours and inside the campaign's send window."""
    closed = [quiet_hours, parse_send_window(send_window)]
    at = now
    for _ in range(16):  # each pass only moves forward, to the end of one window; two windows settle in a few
        moved = at
        for window in closed:
            moved = next_allowed(moved, zone, window)
        if moved == at:
            return at
        at = moved
    problem = window_problem(quiet_hours, send_window) or "no open hour"
    raise ValueError(f"{problem} (from {now.isoformat()} in {zone.key})")


def zone_of(name: str | None, default: ZoneInfo | None) -> ZoneInfo:
    """``ZoneInfo(name)``; ``default`` when ``name`` is empty or unknown (``ValueError`` without a default)."""
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            if default is None:
                raise ValueError(f"{name!r} is not an IANA time zone; use a name such as 'Europe/Berlin'") from None
    if default is None:
        raise ValueError("a time zone is required")
    return default


def local_date(instant: datetime, zone: ZoneInfo) -> date:
    """The calendar date ``instant`` falls on in ``zone``."""
    return instant.astimezone(zone).date()


def in_quiet_hours(instant: datetime, zone: ZoneInfo, window: QuietHours | None) -> bool:
    """Whether the wall-clock time of ``instant`` in ``zone`` lies in ``[start, end)`` (wrapping midnight when
    ``start > end``); never for an empty window (``start == end``) or ``None``."""
    return _within(instant.astimezone(zone).time().replace(tzinfo=None), window)


def _within(wall: time, window: QuietHours | None) -> bool:
    if window is None:
        return False
    start, end = window
    if start < end:
        return start <= wall < end
    if start > end:
        return wall >= start or wall < end
    return False


def next_allowed(now: datetime, zone: ZoneInfo, window: QuietHours | None) -> datetime:
    """The first instant at or after ``now`` outside the quiet hours in ``zone`` (``now`` itself when it is outside).

    The window ends at ``end`` wall-clock time on the local date the window started on (the next date for a window
    wrapping midnight entered before midnight). Both readings of that wall-clock time (DST ``fold`` 0 and 1) are
    tried, and for a time that does not exist that night (it lies in a spring-forward gap) the instant of the jump;
    the earliest one not before ``now`` and outside the window wins, so a DST change neither puts the answer inside
    the window nor before ``now``. The next days are tried too, for zones that skipped a whole date. UTC.
    """
    if now.tzinfo is None:
        raise ValueError("next_allowed needs an aware datetime")
    if not in_quiet_hours(now, zone, window):
        return now
    assert window is not None
    start, end = window
    local = now.astimezone(zone)
    wall = local.time().replace(tzinfo=None)
    first = local.date() + timedelta(days=1) if start > end and wall >= start else local.date()
    for days in range(4):
        day = first + timedelta(days=days)
        readings = [datetime.combine(day, end, tzinfo=zone).replace(fold=fold).astimezone(UTC) for fold in (0, 1)]
        if readings[1] < readings[0]:  # a wall-clock time in a gap: the jump itself is the first instant after it
            readings.append(_jump(readings[1], readings[0], zone))
        candidates = [i for i in readings if i >= now and not in_quiet_hours(i, zone, window)]
        if candidates:
            return min(candidates)
    raise AssertionError(f"no end of quiet hours {window} within 4 days of {now.isoformat()} in {zone.key}")


def _jump(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The instant (to the second) in ``(before, after]`` where ``zone``'s UTC offset changes from ``before``'s."""
    offset = before.astimezone(zone).utcoffset()
    while after - before > timedelta(seconds=1):
        middle = before + (after - before) / 2
        if middle.astimezone(zone).utcoffset() == offset:
            before = middle
        else:
            after = middle
    return before.replace(microsecond=0) + timedelta(seconds=1)  # offsets change on whole seconds


def backoff_delay(retry: int, base: float, cap: float, rand: Callable[[], float] | None = None) -> float:
    """Exponential backoff ``min(cap, base * 2**retry)``; with ``rand`` (full jitter) a uniform share of it."""
    ceiling = min(cap, base * (2 ** min(retry, 62)))
    return ceiling * rand() if rand is not None else ceiling
