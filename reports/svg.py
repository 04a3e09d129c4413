"""Inline SVG charts, written as text in Python (no chart library, no script, no external asset).

Every piece of text that reaches a chart goes through :func:`markupsafe.escape`, so a campaign or variant name
(written by a marketer in YAML) stays text; the functions return :class:`markupsafe.Markup` that the report's
autoescaping template inserts as is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

__all__ = ["Bar", "FunnelStep", "IntervalRow", "bar_chart", "funnel", "interval_rows", "nice_ticks"]

INK, MUTED, LINE = "#1f2430", "#5b6272", "#dfe3ea"
VARIANT, HOLDOUT, GOOD, BAD = "#2f5fd0", "#8a909c", "#1c7c4a", "#b4442c"


def _num(value: float) -> str:
    """A coordinate: two decimals at most, no trailing zeros."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """Round tick values covering ``[low, high]`` (steps of 1, 2, 2.5 or 5 × a power of ten)."""
    if high <= low:
        high = low + 1
    raw = (high - low) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value < high + step * 0.999:
        ticks.append(round(value, 10))
        value += step
    return ticks


# ---------------------------------------------------------------- bar chart (daily series)


@dataclass(frozen=True)
class Bar:
    label: str
    """The x-axis label (a day, ``MM-DD``)."""
    value: float
    title: str
    """The tooltip (native SVG ``<title>``)."""


def bar_chart(
    bars: Sequence[Bar], *, label: str, color: str = VARIANT, fmt: Callable[[float], str] = lambda v: f"{v:,.0f}"
) -> Markup:
    """Vertical bars with a y axis of round ticks; ``label`` names the chart for screen readers."""
    width, height = 480.0, 220.0
    left, right, top, bottom = 52.0, 10.0, 12.0, 30.0
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((bar.value for bar in bars), default=0.0)
    ticks = nice_ticks(0, peak if peak > 0 else 1)
    ceiling = ticks[-1]

    def y(value: float) -> float:
        return top + plot_h * (1 - value / ceiling)

    parts = [
        f'<svg class="chart" viewBox="0 0 {_num(width)} {_num(height)}" role="img" aria-label="{escape(label)}" '
        f'xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif" font-size="12">'
    ]
    for tick in ticks:
        parts.append(
            f'<line x1="{_num(left)}" x2="{_num(width - right)}" y1="{_num(y(tick))}" y2="{_num(y(tick))}" '
            f'stroke="{LINE}"/>'
            f'<text x="{_num(left - 6)}" y="{_num(y(tick) + 4)}" text-anchor="end" fill="{MUTED}">'
            f"{escape(fmt(tick))}</text>"
        )
    n = max(len(bars), 1)
    band = plot_w / n
    bar_w = max(min(band * 0.7, 56.0), 1.0)
    every = max(1, math.ceil(n / 8))  # at most ~8 x labels
    for i, bar in enumerate(bars):
        x = left + band * i + (band - bar_w) / 2
        top_y = y(bar.value)
        parts.append(
            f'<rect x="{_num(x)}" y="{_num(top_y)}" width="{_num(bar_w)}" height="{_num(top + plot_h - top_y)}" '
            f'rx="2" fill="{color}"><title>{escape(bar.title)}</title></rect>'
        )
        if i % every == 0 or i == n - 1:
            parts.append(
                f'<text x="{_num(left + band * i + band / 2)}" y="{_num(height - 10)}" text-anchor="middle" '
                f'fill="{MUTED}">{escape(bar.label)}</text>'
            )
    parts.append(
        f'<line x1="{_num(left)}" x2="{_num(width - right)}" y1="{_num(top + plot_h)}" y2="{_num(top + plot_h)}" '
        f'stroke="{INK}"/></svg>'
    )
    return Markup("".join(parts))


# ---------------------------------------------------------------- interval rows (variant comparison, lift)


@dataclass(frozen=True)
class IntervalRow:
    """One row of an interval chart: a point with its interval, drawn on a scale shared by all rows."""

    label: str
    detail: str
    """Shown under the label (e.g. ``1,483 recipients``)."""
    value: float | None
    low: float | None
    high: float | None
    text: str
    """The value as written next to the bar (e.g. ``+6.4 pp [2.7, 8.4]``)."""
    holdout: bool = False


def interval_rows(rows: Sequence[IntervalRow], *, fmt: Callable[[float], str], zero_line: bool, label: str) -> Markup:
    """An HTML block (CSS grid, see the report's stylesheet): per row the label, an SVG strip with the interval
    (a bar from ``low`` to ``high`` and a mark at ``value``) and the value as text; one axis of round ticks below.
    HTML labels stay readable on a phone, where a whole-chart SVG would shrink its text."""
    values = [v for row in rows for v in (row.low, row.high, row.value) if v is not None]
    if zero_line:
        values.append(0.0)
    if not values:
        return Markup("")
    ticks = nice_ticks(min(values), max(values), 4)
    lo, hi = ticks[0], ticks[-1]

    def at(value: float) -> float:
        return 100 * (value - lo) / (hi - lo)

    out = [f'<div class="intervals" role="group" aria-label="{escape(label)}">']
    for row in rows:
        color = HOLDOUT if row.holdout else VARIANT
        if row.value is not None and row.low is not None and row.high is not None and zero_line:
            color = GOOD if row.low > 0 else BAD if row.high < 0 else VARIANT
        strip = ['<svg class="strip" viewBox="0 0 100 24" preserveAspectRatio="none" aria-hidden="true">']
        strip += [
            f'<line x1="{_num(at(t))}" x2="{_num(at(t))}" y1="0" y2="24" stroke="{LINE}" '
            f'vector-effect="non-scaling-stroke"/>'
            for t in ticks
        ]
        if zero_line:
            strip.append(
                f'<line x1="{_num(at(0))}" x2="{_num(at(0))}" y1="0" y2="24" stroke="{INK}" stroke-dasharray="3 3" '
                f'vector-effect="non-scaling-stroke"/>'
            )
        if row.low is not None and row.high is not None:
            strip.append(
                f'<rect x="{_num(at(row.low))}" y="9" width="{_num(max(at(row.high) - at(row.low), 0.3))}" '
                f'height="6" rx="1" fill="{color}" fill-opacity="0.35"/>'
            )
        if row.value is not None:
            strip.append(f'<rect x="{_num(at(row.value) - 0.4)}" y="3" width="0.8" height="18" fill="{color}"/>')
        strip.append("</svg>")
        out.append(
            f'<div class="interval-row{" is-holdout" if row.holdout else ""}">'
            f'<div class="interval-label">{escape(row.label)}<small>{escape(row.detail)}</small></div>'
            f'<div class="interval-plot">{"".join(strip)}</div>'
            f'<div class="interval-value">{escape(row.text)}</div></div>'
        )
    last = len(ticks) - 1
    kept = {0, last, next((i for i, t in enumerate(ticks) if t == 0), last // 2)}  # all a phone has room for
    kind = {i: "first" if i == 0 else "last" if i == last else "" if i in kept else "minor" for i in range(last + 1)}
    axis = "".join(
        f'<span{f" class={chr(34)}{kind[i]}{chr(34)}" if kind[i] else ""} style="left:{_num(at(t))}%">'
        f"{escape(fmt(t))}</span>"
        for i, t in enumerate(ticks)
    )
    out.append(
        f'<div class="interval-row interval-axis"><div class="interval-label"></div>'
        f'<div class="interval-plot"><div class="axis">{axis}</div></div><div class="interval-value"></div></div>'
    )
    out.append("</div>")
    return Markup("".join(out))


# ---------------------------------------------------------------- funnel


@dataclass(frozen=True)
class FunnelStep:
    label: str
    count: int


def funnel(steps: Sequence[FunnelStep], *, label: str) -> Markup:
    """Horizontal bars, one per step, as a share of the first step, with the count and that share written out."""
    width, row_h, left = 320.0, 30.0, 78.0
    height = row_h * len(steps) + 4
    first = steps[0].count if steps else 0
    parts = [
        f'<svg class="funnel" viewBox="0 0 {_num(width)} {_num(height)}" role="img" aria-label="{escape(label)}" '
        f'xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif" font-size="12">'
    ]
    span = width - left - 4
    for i, step in enumerate(steps):
        share = step.count / first if first else 0.0
        y = 2 + i * row_h
        w = max(span * share, 1.5 if step.count else 0)
        share_text = "" if i == 0 else f" · {share:.1%}"
        parts.append(
            f'<text x="0" y="{_num(y + 18)}" fill="{MUTED}">{escape(step.label)}</text>'
            f'<rect x="{_num(left)}" y="{_num(y + 4)}" width="{_num(w)}" height="{_num(row_h - 8)}" rx="3" '
            f'fill="{VARIANT}" fill-opacity="{_num(1 - 0.25 * i)}"><title>{escape(step.label)}: {step.count:,}'
            f"{escape(share_text)}</title></rect>"
            f'<text x="{_num(left + 6 if w < 120 else left + 8)}" y="{_num(y + 19)}" '
            f'fill="{INK if w < 120 else "#ffffff"}" dx="{_num(w if w < 120 else 0)}">{step.count:,}'
            f"{escape(share_text)}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
