"""The ``report`` flow: the campaign report's numbers (per campaign and variant, lift vs holdout with 95 % intervals)
as Prefect artifacts, and, given a folder, the same page and CSVs ``omnicast report`` writes.

Artifacts: ``report`` (markdown: one table per campaign, every arm, lift with its interval), ``report-campaigns`` and
``report-variants`` (tables with the CSVs' columns). Logs carry counts only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.runtime import load_settings, parse_day, run_logger, run_resources
from models.measurement import ArmMetrics, Measurement
from reports.measure import measure_for
from reports.render import describe_model, lift_text, money, percent, write_report

__all__ = [
    "publish_report",
    "report_flow",
    "report_markdown",
]


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _arm_line(arm: ArmMetrics) -> str:
    cells = [
        arm.variant,
        f"{arm.recipients:,}",
        f"{arm.sent:,}",
        f"{arm.clickers:,}",
        percent(arm.ctr),
        f"{arm.conversions:,}",
        percent(arm.conversion_rate),
        money(arm.revenue),
        money(arm.aov),
        money(arm.revenue_per_recipient),
        percent(arm.window_conversion_rate),
        lift_text(arm.conversion_lift),
        lift_text(arm.revenue_lift, "$"),
    ]
    return "| " + " | ".join(_cell(cell) for cell in cells) + " |"


def report_markdown(measurement: Measurement) -> str:
    """The report as markdown: one table per campaign (each variant, all variants, holdout) and the daily totals."""
    scope = f"campaign {measurement.campaign}" if measurement.campaign else "all campaigns"
    since = f" since {measurement.since}" if measurement.since else ""
    lines = [
        f"# Campaign report: {_cell(scope)}{since}",
        "",
        f"Attribution: {describe_model(measurement.model, measurement.window_days)}. Lift vs holdout: orders within "
        f"{measurement.window_days:g} days of the message, contacted minus held out, 95% intervals (conversion: "
        "Newcombe hybrid score; revenue per recipient: Welch).",
    ]
    if not measurement.campaigns:
        return "\n".join([*lines, "", "No campaign messages in this period."])
    header = (
        "| variant | recipients | sent | clickers | CTR | conversions | conv. rate | revenue | AOV | rev./recipient | "
        "conv. in window | lift [95% CI] | rev./recipient lift [95% CI] |"
    )
    for campaign in measurement.campaigns:
        arms = list(campaign.variants)
        if len(arms) > 1:
            arms.append(campaign.total)
        if campaign.holdout:
            arms.append(campaign.holdout)
        lines += ["", f"## {_cell(campaign.name)}", "", header, "|" + "---|" * 13]
        lines += [_arm_line(arm) for arm in arms]
    totals = measurement.daily
    lines += [
        "",
        f"Days {totals[0].day} to {totals[-1].day}: {sum(d.messages_sent for d in totals):,} messages sent, "
        f"{sum(d.clicks for d in totals):,} clicks, {sum(d.orders for d in totals):,} attributed orders, "
        f"{money(sum(d.revenue for d in totals))} attributed revenue."
        if totals
        else "",
    ]
    return "\n".join(lines).rstrip() + "\n"


def publish_report(measurement: Measurement) -> None:
    """The ``report``, ``report-campaigns`` and ``report-variants`` artifacts (inside a flow or task run)."""
    scope = measurement.campaign or "all campaigns"
    create_markdown_artifact(key="report", markdown=report_markdown(measurement), description=f"Report: {scope}")
    create_table_artifact(
        key="report-campaigns", table=measurement.campaign_rows(), description=f"Per campaign: {scope}"
    )
    create_table_artifact(
        key="report-variants", table=measurement.variant_rows(), description=f"Per variant and holdout: {scope}"
    )


@flow(name="report")
def report_flow(campaign: str | None = None, since: str | None = None, out: str | None = None) -> dict[str, Any]:
    """Measure every campaign (or ``campaign``) from ``since`` (YYYY-MM-DD), publish the report's artifacts and, with
    ``out``, write ``out/index.html`` and the CSVs. Returns the counts and the page's path."""
    day = parse_day(since, "since") if since else None
    settings = load_settings()
    with run_resources(settings) as resources:
        measurement = measure_for(resources.engine, settings, campaign, day)
    publish_report(measurement)
    page = write_report(measurement, Path(out)) if out else None
    arms = sum(len(c.arms) for c in measurement.campaigns)
    run_logger().info(
        "report: %d campaigns, %d arms, %d days", len(measurement.campaigns), arms, len(measurement.daily)
    )
    return {"campaigns": len(measurement.campaigns), "arms": arms, "page": str(page) if page else None}
