"""``omnicast report [--campaign NAME] [--since DATE] --out DIR``: the campaign report as a page and CSVs.

``register(app)`` adds the command to the ``omnicast`` Typer app (flows/cli.py). It writes ``DIR/index.html`` (one
self-contained page: inline CSS and SVG charts, no script, no external asset) and ``DIR/campaigns.csv``,
``variants.csv``, ``daily.csv``, then prints the page's path and each campaign's lift. No Prefect server is needed;
the ``report`` flow (flows/report.py) publishes the same numbers as Prefect artifacts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flows.console import make_console

console = make_console()


def register(app: typer.Typer) -> None:
    """Add ``report`` to ``app``."""
    app.command("report")(report)


def report(
    out: Annotated[Path, typer.Option(help="Folder to write index.html and the CSVs into (created).")],
    campaign: Annotated[str | None, typer.Option(help="Only this campaign.")] = None,
    since: Annotated[str | None, typer.Option(help="Only messages from this day on (YYYY-MM-DD).")] = None,
) -> None:
    """Write the campaign report: sends, clicks, conversions, revenue and lift vs holdout with 95% intervals."""
    from flows.runtime import load_settings, open_database, parse_day
    from models.errors import InputError
    from reports.measure import attribution_settings, measure_for
    from reports.render import CSV_FILES, describe_model, lift_text, percent, write_report

    day = parse_day(since, "--since") if since else None
    settings = load_settings()
    attribution_settings(settings)  # an unknown model is reported before any work
    engine = open_database(settings)
    try:
        measurement = measure_for(engine, settings, campaign, day)
    finally:
        engine.dispose()
    try:
        page = write_report(measurement, out)
    except OSError as exc:
        raise InputError(f"--out {str(out)!r}: cannot write the report there ({exc.strerror or exc})") from exc
    if measurement.campaigns:
        table = Table(title=f"Attribution: {describe_model(measurement.model, measurement.window_days)}")
        for name in ("campaign", "recipients", "sent", "CTR", "conv. rate", "revenue", "lift vs holdout [95% CI]"):
            table.add_column(name, justify="left" if name == "campaign" else "right")
        for c in measurement.campaigns:
            t = c.total
            table.add_row(
                c.name,
                f"{t.recipients:,}",
                f"{t.sent:,}",
                percent(t.ctr),
                percent(t.conversion_rate),
                f"${t.revenue:,.2f}",
                lift_text(t.conversion_lift),
            )
        console.print(table)
    else:
        console.print("no campaign messages in this period yet")
    console.print(f"report: {page} (and {', '.join(CSV_FILES)})", soft_wrap=True, highlight=False)
