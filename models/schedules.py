"""Cron schedules as Prefect (and crontab) read them, for APScheduler: one reading for validation, ``omnicast
campaigns list``'s next runs and ``omnicast worker``, so the three never disagree about which day "2" is."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def cron_trigger(cron: str, timezone: str) -> BaseTrigger:
    """An APScheduler trigger that fires when the crontab expression ``cron`` does (as Prefect reads it).

    Not ``CronTrigger.from_crontab``: APScheduler 3 counts weekdays from Monday = 0, crontab from Sunday = 0 (its
    ``0 10 * * 2`` is a Wednesday, not a Tuesday), and ANDs a restricted day of month with a restricted weekday where
    cron (and Prefect) fire on either. :class:`ValueError` for an expression that is not five crontab fields."""
    fields = cron.split()
    if len(fields) != 5:
        raise ValueError(f"{cron!r} has {len(fields)} fields; a cron expression has 5: minute hour day month weekday")
    minute, hour, day, month, weekday = fields
    zone = ZoneInfo(timezone)
    days = _weekdays(weekday)

    def cron_at(**when: str) -> CronTrigger:
        return CronTrigger(minute=minute, hour=hour, month=month, timezone=zone, **when)

    if not day.startswith("*") and not weekday.startswith("*"):  # cron: either the day of month or the weekday
        return OrTrigger([cron_at(day=day), cron_at(day_of_week=days)])
    return cron_at(day=day, day_of_week=days)


def _weekdays(field: str) -> str:
    """A crontab weekday field (0 or 7 = Sunday, names, ranges, steps) as APScheduler weekday names."""
    if field == "*":
        return "*"
    chosen: set[int] = set()
    for item in field.lower().split(","):
        span, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if span == "*":
            first, last = 0, 6
        else:
            start, _, end = span.partition("-")
            first = _weekday(start)
            last = _weekday(end) if end else (6 if step_text else first)
        if step < 1 or last < first:
            raise ValueError(f"weekday field {field!r}: {item!r} is not a range cron accepts")
        chosen.update(day % 7 for day in range(first, last + 1, step))
    return ",".join(_CRON_DAYS[day] for day in sorted(chosen))


def _weekday(text: str) -> int:
    text = text.strip()
    if text.isdigit() and int(text) <= 7:
        return int(text)
    if text in _CRON_DAYS:
        return _CRON_DAYS.index(text)
    raise ValueError(f"{text!r} is not a weekday; use 0-7 (0 and 7 are Sunday) or sun, mon, … sat")


def next_runs(cron: str, timezone: str, count: int = 3, now: datetime | None = None) -> list[datetime]:
    """The next ``count`` times ``cron`` falls due in ``timezone``."""
    zone = ZoneInfo(timezone)
    trigger = cron_trigger(cron, timezone)
    runs: list[datetime] = []
    current = now.astimezone(zone) if now else datetime.now(zone)
    previous = None
    while len(runs) < count:
        fire = trigger.get_next_fire_time(previous, current)
        if fire is None:
            break
        runs.append(fire)
        previous, current = fire, fire + timedelta(seconds=1)
    return runs
