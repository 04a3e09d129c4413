"""The sample store's calendar: two years of history before ``as_of``, store-local time, seasons, and the
timestamp formats of each export (Shopify's local time with offset, HubSpot's UTC minutes, GA4's dates)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache, cached_property

import numpy as np
import pandas as pd

from sample.text import PAD2

HISTORY_DAYS = 730
STORE_TZ = "America/New_York"

# Relative order volume by month (January first), weekday and store-local hour.
MONTH_FACTOR = np.array([0.85, 0.85, 0.95, 0.95, 0.95, 0.85, 0.72, 0.72, 0.95, 1.05, 1.45, 1.75])
WEEKDAY_FACTOR = np.array([1.0, 1.0, 1.0, 1.05, 0.95, 0.85, 1.0])  # Monday first
HOURLY = np.array(
    [0.2, 0.1, 0.05, 0.05, 0.05, 0.1, 0.3, 0.6, 0.9, 1, 1, 1.1, 1.3, 1.2, 1, 1, 1, 1.1, 1.3, 1.5, 1.6, 1.4, 1.0, 0.5]
)


@cache
def _clock_tables() -> tuple[np.ndarray, np.ndarray]:
    """Lookup tables: "HH:MM:SS" for each second of a day and "HH:MM" for each minute."""
    s = np.arange(86400)
    hms = PAD2[s // 3600] + ":" + PAD2[s // 60 % 60] + ":" + PAD2[s % 60]
    m = np.arange(1440)
    return hms, PAD2[m // 60] + ":" + PAD2[m % 60]


@dataclass(frozen=True)
class Clock:
    """The store's calendar: HISTORY_DAYS days ending the day before ``as_of``; timestamps are UTC epoch seconds."""

    as_of: date
    days: int = HISTORY_DAYS

    @property
    def start(self) -> date:
        return self.as_of - timedelta(days=self.days)

    @property
    def start_epoch(self) -> int:
        return int(datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC).timestamp())

    @property
    def end_epoch(self) -> int:
        """as_of 00:00 UTC: every timestamp in the data is before it."""
        return self.start_epoch + self.days * 86400

    @property
    def _table_epoch(self) -> int:
        return self.start_epoch - 7 * 86400

    @cached_property
    def _dates(self) -> pd.DatetimeIndex:
        return pd.date_range(self.start - timedelta(days=7), periods=self.days + 21, freq="D")

    @cached_property
    def _dashed(self) -> np.ndarray:
        return np.array(self._dates.strftime("%Y-%m-%d"), dtype=object)

    @cached_property
    def _compact(self) -> np.ndarray:
        return np.array(self._dates.strftime("%Y%m%d"), dtype=object)

    @cached_property
    def _offsets(self) -> np.ndarray:
        """Store-local UTC offset (seconds) for each hour of the tables' range."""
        hours = pd.date_range(self._dates[0], periods=len(self._dates) * 24, freq="h", tz="UTC")
        local = hours.tz_convert(STORE_TZ).tz_localize(None)
        return np.asarray(((local - hours.tz_localize(None)).total_seconds()).to_numpy().astype(np.int64))

    def offset(self, ts: np.ndarray) -> np.ndarray:
        return np.asarray(self._offsets[(ts - self._table_epoch) // 3600])

    def shopify_time(self, ts: np.ndarray) -> np.ndarray:
        """Store-local time with offset, as Shopify exports it: ``2026-11-20 09:03:11 -0500``."""
        offset = self.offset(ts)
        local = ts + offset - self._table_epoch
        uniq, inverse = np.unique(offset, return_inverse=True)
        labels = np.array(
            [f" {'-' if o < 0 else '+'}{abs(o) // 3600:02d}{abs(o) % 3600 // 60:02d}" for o in uniq], dtype=object
        )
        return np.asarray(self._dashed[local // 86400] + " " + _clock_tables()[0][local % 86400] + labels[inverse])

    def utc_dates(self, ts: np.ndarray) -> np.ndarray:
        """UTC ``YYYY-MM-DD`` of each timestamp."""
        return np.asarray(self._dashed[(ts - self._table_epoch) // 86400])

    def crm_time(self, ts: np.ndarray) -> np.ndarray:
        """UTC ``YYYY-MM-DD HH:MM``, as HubSpot exports dates."""
        rel = ts - self._table_epoch
        return np.asarray(self._dashed[rel // 86400] + " " + _clock_tables()[1][rel % 86400 // 60])

    def shopify_time_or_blank(self, ts: np.ndarray | pd.Series) -> np.ndarray:
        """``shopify_time`` where ``ts >= 0``, blank elsewhere (an order not paid, fulfilled or cancelled)."""
        ts = np.asarray(ts, dtype=np.int64)
        out = np.full(len(ts), "", dtype=object)
        out[ts >= 0] = self.shopify_time(ts[ts >= 0])
        return out

    def local_day_index(self, ts: np.ndarray) -> np.ndarray:
        """Index of the store-local day of each timestamp into ``ga4_dates``."""
        return np.asarray((ts + self.offset(ts) - self._table_epoch) // 86400)

    @property
    def ga4_dates(self) -> np.ndarray:
        """GA4's ``event_date`` strings (``YYYYMMDD``), indexed by ``local_day_index``."""
        return self._compact

    @cached_property
    def calendar(self) -> pd.DataFrame:
        """Per history day: month (0 = January), day of month, weekday (0 = Monday), ISO date."""
        days = pd.date_range(self.start, periods=self.days, freq="D")
        return pd.DataFrame({"month": days.month - 1, "dom": days.day, "weekday": days.weekday, "date": days})

    @cached_property
    def bfcm(self) -> np.ndarray:
        """True from Black Friday to Cyber Monday (the Friday to Monday after the 4th Thursday of November)."""
        cal = self.calendar
        thanksgiving = np.flatnonzero((cal.month == 10) & (cal.weekday == 3) & (cal.dom >= 22) & (cal.dom <= 28))
        mask = np.zeros(self.days, dtype=bool)
        for shift in range(1, 5):
            mask[(thanksgiving + shift)[thanksgiving + shift < self.days]] = True
        return mask

    @cached_property
    def summer(self) -> np.ndarray:
        return np.asarray(self.calendar.month.isin([6, 7]).to_numpy())

    @cached_property
    def season(self) -> np.ndarray:
        """Relative order volume per day: growth, month (gift peak, summer dip), weekday, BFCM, shipping cut-off."""
        cal = self.calendar
        growth = 0.75 + 0.5 * np.arange(self.days) / self.days
        weight = MONTH_FACTOR[cal.month] * WEEKDAY_FACTOR[cal.weekday] * growth
        weight[((cal.month == 11) & (cal.dom > 22)).to_numpy()] *= 0.55
        weight[self.bfcm] *= 2.5
        return np.asarray(weight / weight.sum())

    def times_of_day(self, days: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """UTC epoch seconds on the given history days, at store-local hours people shop."""
        hour = rng.choice(24, size=len(days), p=HOURLY / HOURLY.sum())
        seconds = hour * 3600 + rng.integers(0, 3600, len(days)) + 5 * 3600
        return self.start_epoch + days.astype(np.int64) * 86400 + seconds % 86400
