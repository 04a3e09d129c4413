"""``omnicast campaigns list|validate|show NAME``: the campaign files (and the recommendation rules) as a marketer
checks them.

``register(app)`` adds the ``campaigns`` group to the ``omnicast`` Typer app (flows/cli.py). A broken file is an
``InputError`` naming the file, the line and the field (one ``error:`` line per broken file, exit code 2).
"""

from __future__ import annotations

import json
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from flows.console import make_console

console = make_console()
campaigns_app = typer.Typer(help="Campaign files: list, validate, show.", no_args_is_help=True)

Folder = Annotated[
    Path | None, typer.Option("--dir", help="Campaigns folder (default: OMNICAST_CAMPAIGNS_DIR or the shipped one).")
]


def register(app: typer.Typer) -> None:
    """Add the ``campaigns`` group to ``app``."""
    app.add_typer(campaigns_app, name="campaigns")


def _catalog(folder: Path | None) -> Any:
    from flows.runtime import check_send_windows, load_settings
    from models.campaigns import load_catalog

    settings = load_settings()
    catalog = load_catalog(folder or settings.campaigns_dir)
    check_send_windows(catalog, settings.quiet_hours)
    return catalog


def next_runs(schedule: Any, count: int = 3, now: datetime | None = None) -> list[datetime]:
    """The next ``count`` times a campaign's schedule falls due, in its time zone (as Prefect reads the cron)."""
    from models.schedules import next_runs as upcoming

    return upcoming(schedule.cron, schedule.timezone, count, now)


def _audience(campaign: Any) -> str:
    if campaign.trigger_kind:
        return f"trigger {campaign.trigger_kind}"
    return f"segment {campaign.segment}"


def _when(campaign: Any) -> str:
    schedule = campaign.spec.schedule
    if schedule is None:
        return "daily run, when triggered"
    runs = next_runs(schedule, 1)
    state = "" if schedule.active else " (paused)"
    return f"{schedule.cron} {schedule.timezone}{state}; next {runs[0]:%Y-%m-%d %H:%M}" if runs else schedule.cron


@campaigns_app.command("validate")
def validate(folder: Folder = None) -> None:
    """Check every campaign file, segments.yaml and recommendation-rules.yaml; exit 2 naming file, line and field
    of each problem."""
    from zoneinfo import ZoneInfo

    from flows.runtime import load_settings
    from models.errors import InputError
    from models.recommend.rules import load_rule_set, rules_summary

    problems: list[str] = []
    try:
        catalog = _catalog(folder)
    except InputError as exc:
        problems.append(str(exc))
        catalog = None
    settings = load_settings()
    try:
        rules = load_rule_set(folder or settings.campaigns_dir)
    except InputError as exc:
        problems.append(str(exc))
    if problems:
        raise InputError("\n".join(problems))
    console.print(
        f"{len(catalog.campaigns)} campaigns, {len(catalog.segments)} segments and {len(catalog.audiences)} ad "
        f"audiences in {catalog.folder}: all valid"
    )
    console.print(rules_summary(rules, datetime.now(ZoneInfo(settings.timezone)).date()) + ": valid", markup=False)


@campaigns_app.command("list")
def list_campaigns(
    folder: Folder = None, as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False
) -> None:
    """Every campaign: who it reaches, on which channels, its priority and when it next runs."""
    catalog = _catalog(folder)
    rows = [
        {"name": c.name, "enabled": c.spec.enabled, "kind": c.kind, "audience": _audience(c),
         "channels": list(c.channels), "priority": c.priority, "when": _when(c), "file": c.file.name}
        for c in sorted(catalog.campaigns, key=lambda c: (c.priority, c.name))
    ]  # fmt: skip
    if as_json:
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    # the file is the name plus .yaml (``show`` names it) and the kind is in the audience: five columns fit 80
    table = Table(title="Campaigns", title_justify="left")
    for column in ("campaign", "audience", "channels", "priority", "when"):
        table.add_column(column, no_wrap=column == "campaign", overflow="fold")  # fold, never cut with "…"
    for row in rows:
        name = row["name"] if row["enabled"] else f"{row['name']} (disabled)"
        table.add_row(name, row["audience"], ", ".join(row["channels"]), str(row["priority"]), row["when"])
    console.print(table)


@campaigns_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Campaign name, e.g. weekly-picks.")],
    folder: Folder = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """One campaign in full, with the size of its audience today (from the database) and its next run times."""
    catalog = _catalog(folder)
    campaign = catalog.campaign(name)
    size = audience_size(catalog, campaign, date.today())
    schedule = campaign.spec.schedule
    runs = [run.isoformat() for run in next_runs(schedule, 3)] if schedule else []
    details = {**campaign.spec.model_dump(mode="json"), "file": str(campaign.file), "priority": campaign.priority,
               "picks_like": list(campaign.likes), "audience_today": size, "next_runs": runs}  # fmt: skip
    if as_json:
        sys.stdout.write(json.dumps(details) + "\n")
        return
    console.print(f"[bold]{campaign.name}[/] ({campaign.file})  {campaign.spec.description}")
    console.print(f"  audience: {_audience(campaign)}: {size:,} customers today (before consent and caps)")
    console.print(f"  template: {campaign.template}; channels: {', '.join(campaign.channels)}; "
                  f"products: {campaign.products}; priority: {campaign.priority}")  # fmt: skip
    arms = ", ".join(f"{v.name} (weight {v.weight:g})" for v in campaign.spec.variants)
    console.print(f"  variants: {arms}; holdout: {campaign.holdout_percent:g}%")
    if campaign.spec.offer:
        console.print(f"  offer: {campaign.spec.offer.description}")
    if campaign.likes:
        console.print(f"  picks: only products whose notes or tags mention {', '.join(campaign.likes)}", markup=False)
    if campaign.send_window:
        console.print(f"  send window: {campaign.send_window} in each customer's time zone (outside it, messages wait)")
    console.print(f"  runs: {', '.join(runs) if runs else 'with the daily run, when its trigger fires'}")


def audience_size(catalog: Any, campaign: Any, today: date) -> int:
    """How many customers the campaign's audience holds today (before consent, suppression and caps)."""
    from sqlalchemy import func, select

    from flows.runtime import load_settings, open_database
    from models.schema import TriggerOccurrence
    from models.segments import members

    engine = open_database(load_settings())
    try:
        with engine.connect() as conn:
            if campaign.segment:
                return len(members(conn, catalog.segments[campaign.segment], today))
            table = TriggerOccurrence.__table__  # type: ignore[attr-defined]
            query = select(func.count(func.distinct(table.c.customer_id))).where(
                table.c.kind == campaign.trigger_kind,
                table.c.due_on <= today,
                table.c.due_on >= today - timedelta(days=campaign.lookback_days),
            )
            return int(conn.execute(query).scalar_one())
    finally:
        engine.dispose()
