"""The day's summary: a Rich table for the terminal and Markdown for the Prefect artifact, from the same rows."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from rich.console import Console
from rich.table import Table

from channels.dispatch import DispatchReport
from channels.spec import CHANNELS
from sources.load import SyncReport

if TYPE_CHECKING:
    from flows.daily import DayReport



def source_rows(report: SyncReport) -> list[list[str]]:
    return [
        [s.source, f"{s.rows_read:,}", f"{s.rows_loaded:,}", f"{s.rows_quarantined:,}", f"{s.duplicates_skipped:,}",
         f"{s.forgotten_skipped:,}", f"{s.fields_quarantined:,}"]
        for s in report.sources
    ]  # fmt: skip


def message_rows(report: DispatchReport) -> list[list[str]]:
    return [
        [
            row["channel"],
            f"{row['planned']:,}",
            f"{row['sent']:,}",
            f"{row['suppressed']:,}",
            f"{row['failed']:,}",
            f"{row['deferred']:,}",
            f"{row['already_done']:,}",
            f"{row['unfinished']:,}",
        ]
        for row in report.rows()
    ]


def reason_rows(report: DispatchReport) -> list[list[str]]:
    """Why messages were not sent, one row per channel, outcome and reason."""
    rows = []
    for channel, tally in sorted(report.channels.items()):
        for outcome, counts in (("suppressed", tally.suppressed), ("failed", tally.failed)):
            rows += [[channel, outcome, reason, f"{n:,}"] for reason, n in sorted(counts.items())]
    return rows


SOURCE_HEADER = ["source", "rows read", "loaded", "quarantined", "duplicates skipped", "forgotten", "cells set aside"]
MESSAGE_HEADER = ["channel", "planned", "sent", "suppressed", "failed", "deferred", "already in ledger", "unfinished"]
REASON_HEADER = ["channel", "outcome", "reason", "messages"]


def _table(title: str, header: list[str], rows: list[list[str]], *, numbers: bool = True) -> Table:
    """A table whose first column (all columns unless ``numbers``) is left-aligned and the others right-aligned."""
    table = Table(title=title, title_justify="left", show_lines=False)
    for i, column in enumerate(header):
        table.add_column(column, justify="right" if numbers and i > 0 else "left")
    for row in rows:
        table.add_row(*row)
    return table


def sources_table(report: SyncReport) -> Table:
    return _table("Sources", SOURCE_HEADER, source_rows(report))


def messages_table(report: DispatchReport) -> Table:
    return _table("Messages", MESSAGE_HEADER, message_rows(report))


def sent_sentence(report: DispatchReport) -> str:
    """The one line a rerun must make obvious."""
    if report.total_sent == 0 and report.complete:
        return "0 new messages sent: everything planned today is already in the ledger or suppressed."
    return f"{report.total_sent:,} new messages sent."


def leftovers_sentence(report: DispatchReport) -> str | None:
    """What this run finished for earlier runs (a crash, a retryable failure); ``None`` when there was nothing."""
    if not report.total_planned:
        return None
    parts = [f"{report.total_sent:,} sent"]
    if report.total_recovered:
        parts.append(f"{report.total_recovered:,} found already delivered")
    suppressed = sum(t.suppressed.total() for t in report.channels.values())
    if suppressed:
        parts.append(f"{suppressed:,} suppressed")
    if report.total_failed:
        parts.append(f"{report.total_failed:,} failed")
    if report.total_unfinished:
        parts.append(f"{report.total_unfinished:,} still held by another run")
    return f"Finished from earlier runs: {report.total_planned:,} messages ({', '.join(parts)})."


def destination_rows(settings: Any) -> list[list[str]]:
    """Where each channel delivers (from the channel table): a server or API (secrets masked), a folder with the
    number of files in it, or ``off``."""
    from channels.registry import parse_target

    rows = []
    for spec in CHANNELS:
        url = settings.channel_url(spec.name)
        if not url:
            rows.append([spec.name, "off: messages recorded as suppressed (no_channel)", ""])
            continue
        target = parse_target(spec, url)
        adapter = spec.adapter_for(target.parts.scheme)
        if adapter is not None and adapter.files and target.parts.scheme == "file":
            folder = Path(unquote(target.parts.path))
            count = len(list(folder.glob(adapter.files))) if folder.is_dir() else 0
            rows.append([spec.name, str(folder), f"{count:,} {adapter.files} files"])
        else:
            rows.append([spec.name, target.shown, ""])
    return rows


def print_day_summary(console: Console, day: DayReport, settings: Any) -> None:
    """What the day did, as the demo prints it."""
    console.print()
    console.print(f"[bold]omnicast day {day.day.isoformat()}[/]")
    console.print(sources_table(day.sync))
    console.print(
        f"Profiles: {day.sync.profiles:,} golden profiles from {day.sync.identities:,} source records "
        f"({day.sync.consents:,} consent statements)"
    )
    t = day.train
    console.print(
        f"Recommendations: {t.recommendations:,} for {t.customers:,} customers "
        f"({t.warm_customers:,} hybrid LightFM, {t.cold_customers:,} popularity) over {t.items:,} products"
    )
    triggers = ", ".join(f"{kind} {n:,}" for kind, n in sorted(day.triggers.items()))
    console.print(f"Triggers (new today): {triggers}")
    console.print(messages_table(day.dispatch))
    if reason_rows(day.dispatch):
        console.print(_table("Not sent, by reason", REASON_HEADER, reason_rows(day.dispatch)))
    leftovers = leftovers_sentence(day.leftovers)
    if leftovers:
        console.print(leftovers)
    console.print(f"[bold]{sent_sentence(day.dispatch)}[/]")
    console.print(_table("Delivered to", ["channel", "where", "files"], destination_rows(settings), numbers=False))


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def day_summary_markdown(day: DayReport) -> str:
    """The same summary for the Prefect UI (artifact)."""
    triggers = ", ".join(f"{kind}: {n}" for kind, n in sorted(day.triggers.items()))
    return "\n\n".join(
        [
            f"# omnicast day {day.day.isoformat()}",
            "## Sources",
            _markdown_table(SOURCE_HEADER, source_rows(day.sync)),
            f"Profiles: {day.sync.profiles:,}. Recommendations: {day.train.recommendations:,}. Triggers: {triggers}.",
            "## Messages",
            _markdown_table(MESSAGE_HEADER, message_rows(day.dispatch)),
            _markdown_table(REASON_HEADER, reason_rows(day.dispatch)),
            *([leftovers] if (leftovers := leftovers_sentence(day.leftovers)) else []),
            sent_sentence(day.dispatch),
        ]
    )
