"""The report as files: ``index.html`` (one self-contained page: inline CSS and SVG, no script, no external asset)
and ``campaigns.csv``, ``variants.csv``, ``daily.csv`` with the same numbers.

The page is rendered by a sandboxed, autoescaping Jinja environment with ``StrictUndefined`` (a missing value is an
error, never a blank); campaign and variant names are text wherever they appear.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import PackageLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from models.measurement import ALL_VARIANTS, ArmMetrics, Lift, Measurement, wilson_interval
from reports.svg import Bar, FunnelStep, IntervalRow, bar_chart, funnel, interval_rows

__all__ = ["INDEX", "CSV_FILES", "describe_model", "render_html", "write_csvs", "write_report"]

INDEX = "index.html"
CSV_FILES = ("campaigns.csv", "variants.csv", "daily.csv")


def money(value: float | None) -> str:
    return "–" if value is None else f"${value:,.2f}"


def signed_money(value: float) -> str:
    return f"{'+' if value >= 0 else '−'}${abs(value):,.2f}"


def percent(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value * 100:.{digits}f}%"


def points(value: float) -> str:
    """A difference of proportions in percentage points, signed."""
    return f"{'+' if value >= 0 else '−'}{abs(value) * 100:.1f} pp"


def signed(value: float, digits: int = 1) -> str:
    """A signed number with a real minus sign."""
    return f"{'+' if value >= 0 else '−'}{abs(value):.{digits}f}"


def lift_text(lift: Lift | None, unit: str = "pp") -> str:
    """``+6.4 pp [+2.7, +8.4]`` (conversion, ``unit='pp'``) or ``+$2.17 [+$1.43, +$2.91]`` (``unit='$'``)."""
    if lift is None:
        return "–"
    if unit == "$":
        return f"{signed_money(lift.difference)} [{signed_money(lift.low)}, {signed_money(lift.high)}]"
    return f"{points(lift.difference)} [{signed(lift.low * 100)}, {signed(lift.high * 100)}]"


def lift_class(lift: Lift | None) -> str:
    """``good`` when the interval is above 0, ``bad`` below, else nothing."""
    if lift is None:
        return ""
    return "good" if lift.low > 0 else "bad" if lift.high < 0 else ""


def number(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def describe_model(model: str, window_days: float) -> str:
    days = f"{window_days:g} day{'s' if window_days != 1 else ''}"
    touch = "click" if model == "click" else "delivered message"
    return f"last {touch} within {days}"


@dataclass(frozen=True)
class _Totals:
    messages_sent: int
    clicks: int
    orders: int
    revenue: float

    @property
    def aov(self) -> float | None:
        return self.revenue / self.orders if self.orders else None


def _environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=PackageLoader("reports", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        money=money,
        percent=percent,
        points=points,
        number=number,
        signed_money=signed_money,
        lift_text=lift_text,
        lift_class=lift_class,
    )
    return env


def _arm_label(arm: ArmMetrics) -> str:
    return f"{arm.campaign} · {arm.variant}"


def _conversion_rows(measurement: Measurement) -> list[IntervalRow]:
    """Each arm's window conversion rate with its Wilson interval (the holdout in grey)."""
    rows = []
    for campaign in measurement.campaigns:
        for arm in campaign.arms:
            rate = arm.window_conversion_rate
            low, high = wilson_interval(arm.window_conversions, arm.recipients)
            text = f"{percent(rate)} [{low * 100:.1f}, {high * 100:.1f}]" if rate is not None else "–"
            rows.append(
                IntervalRow(
                    label=_arm_label(arm),
                    detail=f"{arm.window_conversions:,} of {arm.recipients:,} recipients",
                    value=rate,
                    low=low if arm.recipients else None,
                    high=high if arm.recipients else None,
                    text=text,
                    holdout=arm.is_holdout,
                )
            )
    return rows


def _lift_arms(measurement: Measurement) -> list[ArmMetrics]:
    arms: list[ArmMetrics] = []
    for campaign in measurement.campaigns:
        arms += [arm for arm in campaign.variants if arm.conversion_lift is not None]
        if len(campaign.variants) > 1 and campaign.total.conversion_lift is not None:
            arms.append(campaign.total)
    return arms


def _lift_rows(measurement: Measurement) -> list[IntervalRow]:
    rows = []
    for arm in _lift_arms(measurement):
        lift = arm.conversion_lift
        assert lift is not None
        holdout = lift.baseline
        rows.append(
            IntervalRow(
                label=_arm_label(arm),
                detail=f"{percent(arm.window_conversion_rate)} vs holdout {percent(holdout)}",
                value=lift.difference,
                low=lift.low,
                high=lift.high,
                text=lift_text(lift),
            )
        )
    return rows


def _revenue_rows(measurement: Measurement) -> list[IntervalRow]:
    rows = []
    for arm in _lift_arms(measurement):
        lift = arm.revenue_lift
        if lift is None:
            continue
        rows.append(
            IntervalRow(
                label=_arm_label(arm),
                detail=f"{money(arm.window_revenue_per_recipient)} vs holdout {money(lift.baseline)} per recipient",
                value=lift.difference,
                low=lift.low,
                high=lift.high,
                text=lift_text(lift, "$"),
            )
        )
    return rows


def _context(measurement: Measurement, title: str) -> dict[str, Any]:
    daily = measurement.daily
    totals = _Totals(
        messages_sent=sum(d.messages_sent for d in daily),
        clicks=sum(d.clicks for d in daily),
        orders=sum(d.orders for d in daily),
        revenue=sum(d.revenue for d in daily),
    )
    sends = [
        Bar(d.day.strftime("%m-%d"), d.messages_sent, f"{d.day}: {d.messages_sent:,} messages sent") for d in daily
    ]
    revenue = [
        Bar(d.day.strftime("%m-%d"), d.revenue, f"{d.day}: {money(d.revenue)} from {d.orders:,} attributed orders")
        for d in daily
    ]
    funnels = [
        {
            "name": c.name,
            "svg": funnel(
                [
                    FunnelStep("Sent", c.total.sent),
                    FunnelStep("Clicked", c.total.clickers),
                    FunnelStep("Converted", c.total.conversions),
                ],
                label=f"{c.name}: sent, clicked, converted",
            ),
        }
        for c in measurement.campaigns
    ]
    zone = ZoneInfo(measurement.timezone)
    period = f"since {measurement.since.isoformat()}" if measurement.since else "all messages"
    return {
        "title": title,
        "m": measurement,
        "model": describe_model(measurement.model, measurement.window_days),
        "generated": measurement.generated_at.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z"),
        "period": period,
        "first_day": daily[0].day.isoformat() if daily else None,
        "last_day": daily[-1].day.isoformat() if daily else None,
        "totals": totals,
        "sends_chart": bar_chart(sends, label="Messages sent per day") if daily else "",
        "revenue_chart": bar_chart(revenue, label="Attributed revenue per day", color="#1c7c4a", fmt=_axis_money)
        if daily
        else "",
        "conversion_chart": interval_rows(
            _conversion_rows(measurement), fmt=lambda v: f"{v * 100:.0f}%", zero_line=False, label="Conversion rate"
        ),
        "lift_chart": interval_rows(_lift_rows(measurement), fmt=_axis_points, zero_line=True, label="Conversion lift"),
        "revenue_lift_chart": interval_rows(
            _revenue_rows(measurement), fmt=_axis_signed_money, zero_line=True, label="Revenue per recipient lift"
        ),
        "funnels": funnels,
        "variant_rows": _variant_table(measurement),
        "all_variants": ALL_VARIANTS,
        "csv_files": CSV_FILES,
    }


def _axis_points(value: float) -> str:
    return f"{signed(value * 100, 0)} pp" if round(value * 100) else "0 pp"


def _axis_money(value: float) -> str:
    return f"${value:,.0f}" if value >= 10 or value == 0 else f"${value:,.2f}"


def _axis_signed_money(value: float) -> str:
    return ("+" if value > 0 else "−" if value < 0 else "") + _axis_money(abs(value))


def _variant_table(measurement: Measurement) -> list[ArmMetrics]:
    rows: list[ArmMetrics] = []
    for c in measurement.campaigns:
        rows += c.variants
        if len(c.variants) > 1:
            rows.append(c.total)
        if c.holdout:
            rows.append(c.holdout)
    return rows


def render_html(measurement: Measurement, title: str = "omnicast report") -> str:
    """The report page as one HTML document."""
    return _environment().get_template("report.html.j2").render(**_context(measurement, title))


def _write_csv(path: Path, rows: Iterable[Mapping[str, Any]], columns: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: "" if row.get(key) is None else row.get(key) for key in columns})


def write_csvs(measurement: Measurement, out: Path) -> list[Path]:
    """``campaigns.csv`` (one row per campaign, its variants together), ``variants.csv`` (every arm, lift columns)
    and ``daily.csv``; rates are fractions, money in the store's currency, empty where a value does not exist."""
    campaigns, variants, daily = measurement.campaign_rows(), measurement.variant_rows(), measurement.daily_rows()
    arm_columns = list(ArmMetrics("", "", 0, 0, 0, 0, 0, 0, 0.0, 0, 0, 0.0).as_row())
    campaign_columns = ["campaign", "variants", *[c for c in arm_columns if c not in ("campaign", "variant")]]
    campaign_columns += [
        "holdout_recipients",
        "holdout_window_conversions",
        "holdout_window_conversion_rate",
        "holdout_window_revenue_per_recipient",
    ]
    paths = [out / name for name in CSV_FILES]
    _write_csv(paths[0], campaigns, campaign_columns)
    _write_csv(paths[1], variants, arm_columns)
    _write_csv(paths[2], daily, ["day", "messages_sent", "clicks", "orders", "revenue"])
    return paths


def write_report(measurement: Measurement, out: Path, title: str = "omnicast report") -> Path:
    """Write ``out/index.html`` and the CSVs (``out`` is created); return the page's path."""
    out.mkdir(parents=True, exist_ok=True)
    write_csvs(measurement, out)
    page = out / INDEX
    temporary = out / f".{INDEX}.tmp"
    temporary.write_text(render_html(measurement, title), encoding="utf-8")
    temporary.replace(page)
    return page
