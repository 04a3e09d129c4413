"""Measurement: per campaign and arm (each variant, all variants together, the holdout), what was sent and what it
brought, and the lift over the holdout with 95 % confidence intervals.

Every count is of **customers** (the experiment's unit: a customer's arm is fixed per campaign), over the exposures
of :mod:`models.attribution` (optionally only campaign ``campaign`` and exposures on or after ``since``):

* ``recipients`` — customers exposed in the arm (reached the holdout decision: passed consent, topic opt-outs, the
  suppression list and the address check); the denominator of every rate and per-recipient figure.
* ``sent`` — recipients with at least one message sent (any channel); ``messages_sent`` counts the messages.
  ``delivered`` = ``sent``: omnicast gets no delivery receipts (a bounce reaches the suppression list, not the
  message), so a message handed over is counted delivered.
* ``clickers`` — customers who clicked a tracked link of the arm at least once; ``ctr`` = clickers / delivered.
* ``conversions`` — customers with an order attributed to the arm (last click or last delivery within the window);
  ``orders``, ``revenue`` (Σ total − refunded), ``aov`` = revenue / orders, ``conversion_rate`` = conversions /
  recipients, ``revenue_per_recipient`` = revenue / recipients. For the **holdout**, which had nothing to click or
  receive, these are its window orders (orders within the window after the holdout exposure).
* ``window_*`` — the same over window orders (any order within the window after an exposure), for every arm: the
  measure the lift compares, identical for contacted and held-out customers (intent to treat).
* **Lift vs holdout** — ``conversion_lift``: window conversion rate of the arm minus the holdout's, in proportion
  points, with Newcombe's hybrid score interval (method 10 of Newcombe 1998: from the two Wilson score intervals;
  good coverage with small counts and rates near 0, unlike the Wald interval). ``revenue_lift``: window revenue per
  recipient of the arm minus the holdout's, with Welch's t interval (unequal variances, Welch–Satterthwaite degrees
  of freedom) over the per-recipient revenues, zeros included. Both at 95 %. No lift without a holdout recipient; no
  revenue interval when a side has fewer than two recipients or all its recipients spent the same (typically a small
  holdout where nobody bought: its sample shows no spread, and Welch would treat its mean as exact).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from scipy import stats
from sqlalchemy.engine import Connection, Engine

from models.attribution import (
    DEFAULT_MODEL,
    DEFAULT_WINDOW_DAYS,
    Attribution,
    load_attribution,
    window_orders,
)
from models.campaigns import HOLDOUT

__all__ = [
    "ALL_VARIANTS",
    "ArmMetrics",
    "CampaignMetrics",
    "DayMetrics",
    "Lift",
    "Measurement",
    "measure",
    "measure_attribution",
    "newcombe_difference",
    "welch_difference",
    "wilson_interval",
]

CONFIDENCE = 0.95
Z = float(stats.norm.ppf(0.5 + CONFIDENCE / 2))  # 1.959963984540054
ALL_VARIANTS = "all variants"
NEWCOMBE = "Newcombe hybrid score (Wilson), 95%"
WELCH = "Welch t (unequal variances), 95%"


# ---------------------------------------------------------------- intervals


def wilson_interval(successes: int, n: int, z: float = Z) -> tuple[float, float]:
    """Wilson score interval for a proportion ``successes / n`` (``(0, 1)`` when ``n`` is 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Lift:
    """An arm's value minus the holdout's (``difference``), with its interval and the method that gave it."""

    difference: float
    low: float
    high: float
    baseline: float
    """The holdout's value (rate or revenue per recipient)."""
    method: str

    @property
    def relative(self) -> float | None:
        """The difference as a share of the holdout's value (``None`` when that is 0)."""
        return self.difference / self.baseline if self.baseline else None

    @property
    def significant(self) -> bool:
        """Whether the interval leaves out 0."""
        return self.low > 0 or self.high < 0


def newcombe_difference(x1: int, n1: int, x2: int, n2: int, z: float = Z) -> Lift:
    """``x1/n1 − x2/n2`` with Newcombe's hybrid score interval (1998, method 10)::

        low  = d − √((p1 − l1)² + (u2 − p2)²)
        high = d + √((u1 − p1)² + (p2 − l2)²)

    where (l, u) are the Wilson score intervals of p1 and p2."""
    if n1 <= 0 or n2 <= 0:
        raise ValueError("a difference of proportions needs at least one customer on each side")
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson_interval(x1, n1, z)
    l2, u2 = wilson_interval(x2, n2, z)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return Lift(d, low, high, p2, NEWCOMBE)


def welch_difference(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> Lift:
    """``mean(a) − mean(b)`` with Welch's t interval: ``d ± t(0.975, ν) · √(s²a/na + s²b/nb)``, with
    ``ν = (s²a/na + s²b/nb)² / ((s²a/na)²/(na−1) + (s²b/nb)²/(nb−1))`` (sample variances, ``ddof=1``).
    When both samples are constant the interval is the point itself."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) < 2 or len(y) < 2:
        raise ValueError("Welch's interval needs at least two values on each side")
    d = float(x.mean() - y.mean())
    va, vb = float(x.var(ddof=1)) / len(x), float(y.var(ddof=1)) / len(y)
    se = math.sqrt(va + vb)
    if se == 0:
        return Lift(d, d, d, float(y.mean()), WELCH)
    df = (va + vb) ** 2 / (va**2 / (len(x) - 1) + vb**2 / (len(y) - 1))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, df)) * se
    return Lift(d, d - half, d + half, float(y.mean()), WELCH)


# ---------------------------------------------------------------- results


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


@dataclass
class ArmMetrics:
    """One arm of one campaign (a variant, ``all variants`` together, or ``holdout``); see the module docstring."""

    campaign: str
    variant: str
    recipients: int
    sent: int
    messages_sent: int
    clickers: int
    conversions: int
    orders: int
    revenue: float
    window_conversions: int
    window_orders: int
    window_revenue: float
    conversion_lift: Lift | None = None
    revenue_lift: Lift | None = None

    @property
    def is_holdout(self) -> bool:
        return self.variant == HOLDOUT

    @property
    def delivered(self) -> int:
        return self.sent

    @property
    def ctr(self) -> float | None:
        return _ratio(self.clickers, self.delivered)

    @property
    def conversion_rate(self) -> float | None:
        return _ratio(self.conversions, self.recipients)

    @property
    def aov(self) -> float | None:
        return _ratio(self.revenue, self.orders)

    @property
    def revenue_per_recipient(self) -> float | None:
        return _ratio(self.revenue, self.recipients)

    @property
    def window_conversion_rate(self) -> float | None:
        return _ratio(self.window_conversions, self.recipients)

    @property
    def window_revenue_per_recipient(self) -> float | None:
        return _ratio(self.window_revenue, self.recipients)

    def as_row(self) -> dict[str, Any]:
        """Flat values for a CSV row or a table artifact (rates as fractions, money rounded to cents)."""
        row: dict[str, Any] = {
            "campaign": self.campaign,
            "variant": self.variant,
            "recipients": self.recipients,
            "sent": self.sent,
            "messages_sent": self.messages_sent,
            "delivered": self.delivered,
            "clickers": self.clickers,
            "ctr": _round(self.ctr, 6),
            "conversions": self.conversions,
            "conversion_rate": _round(self.conversion_rate, 6),
            "orders": self.orders,
            "revenue": round(self.revenue, 2),
            "aov": _round(self.aov, 2),
            "revenue_per_recipient": _round(self.revenue_per_recipient, 4),
            "window_conversions": self.window_conversions,
            "window_conversion_rate": _round(self.window_conversion_rate, 6),
            "window_orders": self.window_orders,
            "window_revenue": round(self.window_revenue, 2),
            "window_revenue_per_recipient": _round(self.window_revenue_per_recipient, 4),
        }
        for name, lift in (("conversion_lift", self.conversion_lift), ("revenue_lift", self.revenue_lift)):
            digits = 6 if name == "conversion_lift" else 4
            row[name] = _round(lift.difference if lift else None, digits)
            row[f"{name}_low"] = _round(lift.low if lift else None, digits)
            row[f"{name}_high"] = _round(lift.high if lift else None, digits)
        return row


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


@dataclass
class CampaignMetrics:
    """A campaign: all its variants together (``total``), each variant, and its holdout (``None`` if it has none)."""

    name: str
    total: ArmMetrics
    variants: list[ArmMetrics]
    holdout: ArmMetrics | None

    @property
    def arms(self) -> list[ArmMetrics]:
        """Each variant, then the holdout."""
        return [*self.variants, *([self.holdout] if self.holdout else [])]

    def as_row(self) -> dict[str, Any]:
        row = self.total.as_row()
        del row["variant"]
        row["variants"] = ", ".join(arm.variant for arm in self.variants)
        holdout = self.holdout
        row["holdout_recipients"] = holdout.recipients if holdout else 0
        row["holdout_window_conversions"] = holdout.window_conversions if holdout else 0
        row["holdout_window_conversion_rate"] = _round(holdout.window_conversion_rate if holdout else None, 6)
        row["holdout_window_revenue_per_recipient"] = _round(
            holdout.window_revenue_per_recipient if holdout else None, 4
        )
        return row


@dataclass(frozen=True)
class DayMetrics:
    """One calendar day (in the report's time zone): messages sent, clicks, attributed orders and revenue."""

    day: date
    messages_sent: int
    clicks: int
    orders: int
    revenue: float

    def as_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["day"] = self.day.isoformat()
        row["revenue"] = round(self.revenue, 2)
        return row


@dataclass
class Measurement:
    """The whole report's numbers."""

    model: str
    window_days: float
    timezone: str
    since: date | None
    campaign: str | None
    generated_at: datetime
    campaigns: list[CampaignMetrics] = field(default_factory=list)
    daily: list[DayMetrics] = field(default_factory=list)

    def campaign_rows(self) -> list[dict[str, Any]]:
        return [c.as_row() for c in self.campaigns]

    def variant_rows(self) -> list[dict[str, Any]]:
        """Every arm of every campaign: each variant, then ``all variants`` (when there are several), then holdout."""
        rows = []
        for c in self.campaigns:
            rows += [arm.as_row() for arm in c.variants]
            if len(c.variants) > 1:
                rows.append(c.total.as_row())
            if c.holdout:
                rows.append(c.holdout.as_row())
        return rows

    def daily_rows(self) -> list[dict[str, Any]]:
        return [d.as_row() for d in self.daily]


# ---------------------------------------------------------------- computing it


def measure(
    connectable: Engine | Connection,
    *,
    model: str = DEFAULT_MODEL,
    window_days: float = DEFAULT_WINDOW_DAYS,
    campaign: str | None = None,
    since: date | None = None,
    timezone: str = "UTC",
    now: datetime | None = None,
) -> Measurement:
    """Read the ledger, clicks and orders and measure every campaign (or ``campaign``) from ``since`` (a day in
    ``timezone``, which also cuts the daily series); see the module docstring."""
    return measure_attribution(
        load_attribution(connectable, model, window_days), campaign=campaign, since=since, timezone=timezone, now=now
    )


def measure_attribution(
    attribution: Attribution,
    *,
    campaign: str | None = None,
    since: date | None = None,
    timezone: str = "UTC",
    now: datetime | None = None,
) -> Measurement:
    """:func:`measure` on frames already loaded."""
    zone = ZoneInfo(timezone)
    start = pd.Timestamp(datetime.combine(since, datetime.min.time(), zone)).tz_convert(UTC) if since else None

    def chosen(frame: pd.DataFrame, time: str = "exposed_at") -> pd.DataFrame:
        keep = pd.Series(True, index=frame.index)
        if campaign is not None:
            keep &= frame["campaign"] == campaign
        if start is not None:
            keep &= frame[time] >= start
        return frame[keep]

    exposures = chosen(attribution.exposures)
    window = window_orders(exposures, attribution.orders, timedelta(days=attribution.window_days))
    clicks = chosen(attribution.clicks)
    attributed = chosen(attribution.attributed)
    ledger = attribution.ledger
    sent_rows = ledger[ledger["state"] == "sent"].rename(columns={"created_at": "exposed_at"})
    sent_rows = chosen(sent_rows)
    result = Measurement(
        model=attribution.model,
        window_days=attribution.window_days,
        timezone=timezone,
        since=since,
        campaign=campaign,
        generated_at=now or datetime.now(UTC),
    )
    for name in sorted(set(exposures["campaign"])):
        result.campaigns.append(
            _campaign(
                name,
                exposures[exposures["campaign"] == name],
                sent_rows[sent_rows["campaign"] == name],
                clicks[clicks["campaign"] == name],
                attributed[attributed["campaign"] == name],
                window[window["campaign"] == name],
            )
        )
    result.daily = _daily(sent_rows, clicks, attributed, zone)
    return result


def _campaign(
    name: str,
    exposures: pd.DataFrame,
    sent_rows: pd.DataFrame,
    clicks: pd.DataFrame,
    attributed: pd.DataFrame,
    window: pd.DataFrame,
) -> CampaignMetrics:
    arms = sorted(set(exposures["variant"]) - {HOLDOUT})
    holdout_exposures = exposures[exposures["variant"] == HOLDOUT]
    holdout: ArmMetrics | None = None
    holdout_values = np.array([])
    if not holdout_exposures.empty:
        holdout_window = window[window["variant"] == HOLDOUT]
        holdout, holdout_values = _arm(
            name, HOLDOUT, holdout_exposures, sent_rows[:0], clicks[:0], holdout_window, holdout_window
        )

    def arm(label: str, variants: Iterable[str]) -> ArmMetrics:
        wanted = set(variants)
        metrics, values = _arm(
            name,
            label,
            exposures[exposures["variant"].isin(wanted)],
            sent_rows[sent_rows["variant"].isin(wanted)],
            clicks[clicks["variant"].isin(wanted)],
            attributed[attributed["variant"].isin(wanted)],
            window[window["variant"].isin(wanted)],
        )
        if holdout is not None and metrics.recipients:
            metrics.conversion_lift = newcombe_difference(
                metrics.window_conversions, metrics.recipients, holdout.window_conversions, holdout.recipients
            )
            if _spread(values) and _spread(holdout_values):
                metrics.revenue_lift = welch_difference(values, holdout_values)
        return metrics

    variants = [arm(variant, [variant]) for variant in arms]
    total = arm(ALL_VARIANTS, arms) if len(arms) != 1 else _renamed(variants[0], ALL_VARIANTS)
    return CampaignMetrics(name=name, total=total, variants=variants, holdout=holdout)


def _spread(values: np.ndarray) -> bool:
    """At least two values, not all equal: Welch's interval reads a side's spread from its sample, so a side whose
    revenues are all the same (a small holdout where nobody bought) would count as known exactly."""
    return len(values) >= 2 and bool(np.ptp(values) > 0)


def _renamed(metrics: ArmMetrics, variant: str) -> ArmMetrics:
    return ArmMetrics(**{**{f: getattr(metrics, f) for f in metrics.__dataclass_fields__}, "variant": variant})


def _arm(
    campaign: str,
    label: str,
    exposures: pd.DataFrame,
    sent_rows: pd.DataFrame,
    clicks: pd.DataFrame,
    credited: pd.DataFrame,
    window: pd.DataFrame,
) -> tuple[ArmMetrics, np.ndarray]:
    """The arm's metrics and each recipient's window revenue (zeros included), for Welch's interval."""
    recipients = np.unique(exposures["customer_id"].to_numpy(dtype="int64"))
    per_customer = window.groupby("customer_id")["revenue"].sum()
    values = per_customer.reindex(recipients, fill_value=0.0).to_numpy(dtype=float)
    metrics = ArmMetrics(
        campaign=campaign,
        variant=label,
        recipients=len(recipients),
        sent=int(exposures.loc[exposures["sent"].astype(bool), "customer_id"].nunique()),
        messages_sent=len(sent_rows),
        clickers=int(clicks["customer_id"].nunique()),
        conversions=int(credited["customer_id"].nunique()),
        orders=int(credited["order_id"].nunique()),
        revenue=float(credited.drop_duplicates("order_id")["revenue"].sum()),
        window_conversions=int(window["customer_id"].nunique()),
        window_orders=int(window["order_id"].nunique()),
        window_revenue=float(window.drop_duplicates("order_id")["revenue"].sum()),
    )
    return metrics, values


def _daily(sent_rows: pd.DataFrame, clicks: pd.DataFrame, attributed: pd.DataFrame, zone: ZoneInfo) -> list[DayMetrics]:
    """Messages sent (by ``sent_at``), clicks and attributed orders and revenue (by order time), per local day."""

    def days(times: pd.Series) -> pd.Series:
        return times.dt.tz_convert(zone).dt.date

    sent = days(sent_rows["sent_at"].dropna()).value_counts()
    clicked = days(clicks["clicked_at"]).value_counts()
    ordered = attributed.drop_duplicates("order_id")
    by_day = ordered.assign(day=days(ordered["ordered_at"])).groupby("day")
    orders, revenue = by_day["order_id"].nunique(), by_day["revenue"].sum()
    seen = sorted(set(sent.index) | set(clicked.index) | set(orders.index))
    if not seen:
        return []
    span = [seen[0] + timedelta(days=i) for i in range((seen[-1] - seen[0]).days + 1)]
    return [
        DayMetrics(
            day=day,
            messages_sent=int(sent.get(day, 0)),
            clicks=int(clicked.get(day, 0)),
            orders=int(orders.get(day, 0)),
            revenue=float(revenue.get(day, 0.0)),
        )
        for day in span
    ]
