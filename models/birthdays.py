"""Birthday moments: customers whose birthday falls in the coming week, counted in their own timezone.

A customer's "today" is the date, in their timezone (profile timezone, else the store's), at noon of the run's day
in the store timezone: noon keeps every timezone within ±11 h of the store on the same calendar day, and the rule
depends only on ``today``, so reruns agree. Feb 29 birthdays are celebrated on Feb 28 in common years.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime, time
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.engine import Engine

from models.interactions import CUSTOMERS, read_frame

KIND = "birthday"
WINDOW_DAYS = 7


def celebration_date(birthday: date, year: int) -> date:
    """The day ``birthday`` is celebrated in ``year`` (Feb 29 → Feb 28 in common years)."""
    if birthday.month == 2 and birthday.day == 29 and not calendar.isleap(year):
        return date(year, 2, 28)
    return date(year, birthday.month, birthday.day)


def local_today(today: date, store_tz: ZoneInfo, customer_timezone: str | None) -> date:
    """The customer's calendar date at noon of ``today`` in the store timezone."""
    noon = datetime.combine(today, time(12), tzinfo=store_tz)
    return noon.astimezone(_zone(customer_timezone) or store_tz).date()


def upcoming_birthdays(customers: pd.DataFrame, *, days: int = WINDOW_DAYS) -> pd.DataFrame:
    """Birthdays celebrated in ``[local_today, local_today + days)``.

    ``customers`` has ``customer_id, birthday, local_today`` (dates); the result adds ``celebrated_on``.
    """
    if customers.empty:
        return customers.assign(celebrated_on=pd.Series(dtype=object))
    month = np.fromiter((b.month for b in customers["birthday"]), dtype=np.int64, count=len(customers))
    day = np.fromiter((b.day for b in customers["birthday"]), dtype=np.int64, count=len(customers))
    start = np.array([np.datetime64(d, "D") for d in customers["local_today"]], dtype="datetime64[D]")
    end = start + np.timedelta64(days, "D")
    celebrated = np.full(len(customers), np.datetime64("NaT"), dtype="datetime64[D]")
    for offset in (0, 1):  # the window can cross New Year
        year = start.astype("datetime64[Y]").astype(np.int64) + 1970 + offset
        candidate = _dates(year, month, np.where((month == 2) & (day == 29) & ~_is_leap(year), 28, day))
        hit = (candidate >= start) & (candidate < end) & np.isnat(celebrated)
        celebrated[hit] = candidate[hit]
    hit = ~np.isnat(celebrated)
    return customers[hit].assign(celebrated_on=celebrated[hit].tolist())


def find_birthdays(engine: Engine, today: date, store_tz: ZoneInfo) -> pd.DataFrame:
    """Birthday occurrences: key ``birthday:{customer_id}:{year}``, due on the celebrated day.

    Payload ``{"birthday": "MM-DD"}`` is the real birthday (``02-29`` stays ``02-29``; ``due_on`` says Feb 28).
    """
    customers = read_frame(
        engine,
        select(CUSTOMERS.c.id.label("customer_id"), CUSTOMERS.c.birthday, CUSTOMERS.c.timezone).where(
            CUSTOMERS.c.birthday.is_not(None)
        ),
        dates=["birthday"],
    )
    zones = customers["timezone"].fillna("").astype(str)
    days = {zone: local_today(today, store_tz, zone or None) for zone in zones.unique()}
    customers["local_today"] = zones.map(days)
    found = upcoming_birthdays(customers)
    return pd.DataFrame(
        {
            "occurrence_key": [
                f"{KIND}:{c}:{d.year}" for c, d in zip(found["customer_id"], found["celebrated_on"], strict=True)
            ],
            "customer_id": found["customer_id"].astype(int).to_numpy(),
            "due_on": found["celebrated_on"].to_numpy(),
            "payload": [{"birthday": f"{b.month:02d}-{b.day:02d}"} for b in found["birthday"]],
        }
    )


def _dates(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    months = (year - 1970) * 12 + (month - 1)
    return months.astype("datetime64[M]").astype("datetime64[D]") + (day - 1).astype("timedelta64[D]")


def _is_leap(year: np.ndarray) -> np.ndarray:
    return (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))


@lru_cache(maxsize=1024)
def _zone(name: str | None) -> ZoneInfo | None:
    """The IANA zone named ``name``; None when empty or unknown (the store timezone applies)."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
