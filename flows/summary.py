"""The day's summary: a Rich table for the terminal and Markdown for the Prefect artifact, from the same rows."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from rich.console import Console
from rich.table import Table

from channels.dispatch import ChannelTally, DispatchReport
from channels.spec import CHANNELS
from models.sync import SyncReport

if TYPE_CHECKING:
    from flows.daily import DayReport
    from flows.deliver import CampaignPlan, Planned

log = logging.getLogger(__name__)


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


TEXT_COLUMNS = {"variant", "reason", "error", "note", "suppressed by reason"}
"""Columns of words, left-aligned like the first column (numbers are right-aligned)."""


def _table(title: str, header: list[str], rows: list[list[str]], *, numbers: bool = True) -> Table:
    """A table whose first column and text columns (all columns unless ``numbers``) are left-aligned, the others
    right-aligned. The first column names the row (a campaign, a channel) and is never cut: on a narrow terminal
    the headers of the number columns wrap instead."""
    table = Table(title=title, title_justify="left", show_lines=False)
    for i, column in enumerate(header):
        whole = i == 0 or column == "variant" or (numbers and column not in TEXT_COLUMNS)  # names, numbers: whole
        widest = max((len(row[i]) for row in rows if i < len(row)), default=0) if whole else None
        table.add_column(column, justify="right" if numbers and i > 0 and column not in TEXT_COLUMNS else "left",
                         min_width=widest)  # fmt: skip
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
    _print_sections(console, _campaign_sections(day.dispatch, failures=day.dispatch.merge(day.leftovers)))
    leftovers = leftovers_sentence(day.leftovers)
    if leftovers:
        console.print(leftovers)
    console.print(f"[bold]{sent_sentence(day.dispatch)}[/]")
    console.print(_table("Delivered to", ["channel", "where", "files"], destination_rows(settings), numbers=False))


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def _code(value: str) -> str:
    """Text for inline code: one line, no backticks."""
    return " ".join(value.split()).replace("`", "'")


def _cell(value: str) -> str:
    """A Markdown table cell: one line, its pipes escaped (error texts may hold either)."""
    return " ".join(value.split()).replace("|", "\\|")


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
            *[
                part
                for section in _campaign_sections(day.dispatch, failures=day.dispatch.merge(day.leftovers))
                for part in _markdown_section(section)
            ],
            *([leftovers] if (leftovers := leftovers_sentence(day.leftovers)) else []),
            sent_sentence(day.dispatch),
        ]
    )


# --- per campaign and variant, failures, why nothing went out ----------------------------------------------------

CAMPAIGN_HEADER = [
    "campaign", "planned", "sent", "suppressed", "failed", "deferred", "already in ledger", "unfinished", "note",
]  # fmt: skip
VARIANT_HEADER = [
    "campaign", "variant", "planned", "sent", "suppressed", "failed", "deferred", "already in ledger", "unfinished",
    "suppressed by reason",
]  # fmt: skip
FAILURE_HEADER = ["campaign", "reason", "messages", "error"]
PLAN_HEADER = ["campaign", "customers", "messages planned", "holdout", "note"]
MAX_FAILURE_ROWS = 20
"""Failure groups shown (the largest first); the rest are counted in one more row."""


def _by_count(counts: Counter[str]) -> str:
    """``opted_out 80, frequency_cap 32``: the largest first."""
    return ", ".join(f"{reason} {n:,}" for reason, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _days(span: tuple[date, date] | None) -> str | None:
    if span is None:
        return None
    first, last = span
    return f"on {first.isoformat()}" if first == last else f"between {first.isoformat()} and {last.isoformat()}"


def nothing_sent_sentence(
    tally: ChannelTally | None, already_sent: tuple[date, date] | None = None, plan: CampaignPlan | None = None
) -> str | None:
    """Why a campaign (or one of its variants) sent nothing, in one sentence; ``None`` when it sent something.

    ``0 planned: no customer in segment X today`` (from the ``plan``), ``0 sent: already sent on 2026-12-01 by an
    earlier run`` (``already_sent``: the days the ledger recorded the earlier sends), ``0 sent: 112 suppressed
    (opted_out 80, frequency_cap 32)``, failures, deferrals and messages another run holds likewise."""
    if plan is not None and plan.messages == 0:
        return f"0 planned: {plan.why_none or 'nothing to send today'}"
    if tally is None or tally.sent or not tally.planned:
        return None
    parts = []
    if tally.already_done:
        days = _days(already_sent)
        done = "" if tally.already_done == tally.planned else f"{tally.already_done:,} "
        parts.append(
            f"{done}already sent {days} by an earlier run"
            if days
            else f"{done}already in the ledger from an earlier run"
        )
    if tally.suppressed:
        parts.append(f"{tally.suppressed.total():,} suppressed ({_by_count(tally.suppressed)})")
    if tally.failed:
        parts.append(f"{tally.failed.total():,} failed ({_by_count(tally.failed)})")
    if tally.deferred:
        parts.append(f"{tally.deferred:,} deferred until the customer's quiet hours end")
    if tally.unfinished:
        parts.append(f"{tally.unfinished:,} still held by another run")
    return "0 sent: " + "; ".join(parts)


def campaign_rows(report: DispatchReport, plans: Sequence[CampaignPlan] = ()) -> list[list[str]]:
    """One row per campaign (its variants added up), with why it sent nothing when it did not; campaigns that
    planned nothing (``plans``) too."""
    by_plan = {plan.campaign: plan for plan in plans}
    tallies = report.by_campaign()
    rows = []
    for campaign in sorted(set(tallies) | set(by_plan)):
        t = tallies.get(campaign, ChannelTally())
        note = nothing_sent_sentence(t, report.already_sent.get(campaign), by_plan.get(campaign)) or ""
        rows.append([
            campaign, f"{t.planned:,}", f"{t.sent:,}", f"{t.suppressed.total():,}", f"{t.failed.total():,}",
            f"{t.deferred:,}", f"{t.already_done:,}", f"{t.unfinished:,}", note,
        ])  # fmt: skip
    return rows


def variant_rows(report: DispatchReport) -> list[list[str]]:
    """One row per campaign and variant (``-``: none; ``holdout``: recorded, never contacted)."""
    return [
        [campaign, variant, f"{t.planned:,}", f"{t.sent:,}", f"{t.suppressed.total():,}", f"{t.failed.total():,}",
         f"{t.deferred:,}", f"{t.already_done:,}", f"{t.unfinished:,}", _by_count(t.suppressed)]
        for (campaign, variant), t in sorted(report.variants.items())
    ]  # fmt: skip


def failure_rows(report: DispatchReport, limit: int = MAX_FAILURE_ROWS) -> list[list[str]]:
    """Failed messages grouped by campaign, reason and error text (as the ledger keeps it: no customer data), the
    largest groups first; past ``limit`` groups, one row counts the rest."""
    groups: Counter[tuple[str, str, str]] = Counter()
    for campaign, tally in report.by_campaign().items():
        for (reason, error), n in tally.errors.items():
            groups[(campaign, reason, error)] += n
    ordered = sorted(groups.items(), key=lambda item: (-item[1], item[0]))
    rows = [
        [campaign, reason, f"{n:,}", error or "(no error text)"] for (campaign, reason, error), n in ordered[:limit]
    ]
    rest = ordered[limit:]
    if rest:
        rows.append([f"{len(rest):,} more groups", "", f"{sum(n for _, n in rest):,}", ""])
    return rows


def plan_rows(plans: Sequence[CampaignPlan]) -> list[list[str]]:
    """What planning made of each campaign or audience: customers, messages (one per channel), holdout."""
    return [
        [plan.campaign, f"{plan.customers:,}", f"{plan.messages:,}", f"{plan.holdout:,}",
         f"0 planned: {plan.why_none}" if plan.messages == 0 and plan.why_none else ""]
        for plan in plans
    ]  # fmt: skip


Section = tuple[str, list[str], list[list[str]]]
"""A table: title, header, rows."""


def _campaign_sections(report: DispatchReport, *, failures: DispatchReport | None = None) -> list[Section]:
    """The per-campaign, per-variant and failure tables, the empty ones left out; failures from ``failures`` (the
    day's: earlier runs' leftovers included) or ``report``. (Campaigns that planned nothing are in the plan table.)"""
    sections = [
        ("Campaigns", CAMPAIGN_HEADER, campaign_rows(report)),
        ("Variants", VARIANT_HEADER, variant_rows(report)),
        ("Failures, by error", FAILURE_HEADER, failure_rows(failures if failures is not None else report)),
    ]
    return [section for section in sections if section[2]]


def _without_notes(section: Section) -> tuple[Section, list[tuple[str, str]]]:
    """A table without its ``note`` column, and the notes it held as (first cell, note), the empty ones left out:
    notes are sentences, printed under the table so the numbers keep their width."""
    title, header, rows = section
    if "note" not in header:
        return section, []
    at = header.index("note")
    table = (title, header[:at] + header[at + 1 :], [row[:at] + row[at + 1 :] for row in rows])
    return table, [(row[0], row[at]) for row in rows if row[at]]


def _markdown_section(section: Section) -> list[str]:
    """A heading, the table, and its notes as a list under it (the UI clips a wide table, and notes are sentences):
    a variant's suppression reasons go under the table too, and failures are a list (an error's text is what a
    reader needs whole)."""
    title, header, rows = section
    if header == FAILURE_HEADER:
        lines = [
            f"- **{_cell(campaign)}**: {messages} {_cell(reason)}" + (f": `{_code(error)}`" if error else "")
            for campaign, reason, messages, error in rows
        ]
        return [f"## {title}", "\n".join(lines)]
    if header == VARIANT_HEADER:
        notes = [(f"{row[0]} / {row[1]}", f"suppressed {row[-1]}") for row in rows if row[-1]]
        header, rows = header[:-1], [row[:-1] for row in rows]
    else:
        (title, header, rows), notes = _without_notes(section)
    parts = [f"## {title}", _markdown_table(header, rows)]
    if notes:
        parts.append("\n".join(f"- **{_cell(first)}**: {_cell(note)}" for first, note in notes))
    return parts


def _print_sections(console: Console, sections: Sequence[Section]) -> None:
    """The tables for a terminal: a ``note`` column becomes lines under its table (``campaign: note``), so the
    numbers keep their width."""
    for section in sections:
        if section[1] == VARIANT_HEADER:  # the reasons are sentences: under the table, as in the Markdown
            title, header, rows = section
            notes = [(f"{row[0]} / {row[1]}", f"suppressed {row[-1]}") for row in rows if row[-1]]
            header, rows = header[:-1], [row[:-1] for row in rows]
        else:
            (title, header, rows), notes = _without_notes(section)
        console.print(_table(title, header, rows))
        for first, note in notes:
            console.print(f"  {first}: {note}", highlight=False, markup=False)


# --- one campaign or audience run -------------------------------------------------------------------------------


def run_headline(planned: Planned) -> str:
    """The run's one line: how many went out, or why none did (per campaign when the run had several)."""
    report = planned.report
    plans = planned.plans
    if report is None:
        return f"{len(planned.messages):,} messages planned; delivery left to the caller."
    tallies = report.by_campaign()
    whys = [
        (plan.campaign, nothing_sent_sentence(tallies.get(plan.campaign), report.already_sent.get(plan.campaign), plan))
        for plan in plans
    ]
    if len(whys) == 1 and whys[0][1]:
        return f"{whys[0][1]}."
    if report.total_sent == 0 and any(why for _, why in whys):
        return "0 sent — " + "; ".join(f"{name}: {why.removeprefix('0 sent: ')}" for name, why in whys if why) + "."
    deferred = sum(tally.deferred for tally in report.channels.values())
    waiting = f"; {deferred:,} wait for their send window or the end of quiet hours" if deferred else ""
    return f"{report.total_sent:,} sent of {report.total_planned:,} planned{waiting}."


def run_summary_markdown(title: str, planned: Planned, problem: str | None = None) -> str:
    """A campaign or audience run for the Prefect UI: the headline, what planning made of each campaign, the
    outcome per campaign, variant and channel, failures grouped by error, and why the run failed (``problem``)."""
    parts = [f"# {title}", f"**{run_headline(planned)}**"]
    if problem:
        parts.append(f"**Run failed:** {problem}")
    if planned.plans:
        parts += _markdown_section(("Planned", PLAN_HEADER, plan_rows(planned.plans)))
    report = planned.report
    if report is not None:
        for section in _campaign_sections(report):
            parts += _markdown_section(section)
        if report.channels:
            parts += ["## Channels", _markdown_table(MESSAGE_HEADER, message_rows(report))]
            if reason_rows(report):
                parts.append(_markdown_table(REASON_HEADER, reason_rows(report)))
    if planned.delivery is not None and (leftovers := leftovers_sentence(planned.delivery.leftovers)):
        parts.append(leftovers)
    return "\n\n".join(parts)


def print_run_summary(console: Console, planned: Planned, problem: str | None = None) -> None:
    """The same for the terminal (`omnicast campaign run`, `omnicast audiences sync`)."""
    if planned.plans:
        _print_sections(console, [("Planned", PLAN_HEADER, plan_rows(planned.plans))])
    report = planned.report
    if report is not None:
        _print_sections(console, _campaign_sections(report))
        console.print(messages_table(report))
    if planned.delivery is not None and (leftovers := leftovers_sentence(planned.delivery.leftovers)):
        console.print(leftovers)
    console.print(f"[bold]{run_headline(planned)}[/]", highlight=False)


# --- Prefect: progress artifacts -------------------------------------------------------------------------------


def in_prefect_run() -> bool:
    """Inside a Prefect flow or task run (artifacts have a run to belong to); ``False`` for plain calls in tests."""
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


class RunProgress:
    """A progress bar in the Prefect UI (a progress artifact) for one long step, updated as the step goes.

    Does nothing outside a Prefect run. Updates come at most every ``every`` seconds (the last one, at 100%,
    always); an update the API refuses is logged once and the work goes on: the bar is for watching.
    """

    def __init__(self, key: str, description: str, *, every: float = 1.0) -> None:
        self.every = every
        self.artifact_id: Any = None
        self._last = 0.0
        if not in_prefect_run():
            return
        try:
            from prefect.artifacts import create_progress_artifact

            self.artifact_id = create_progress_artifact(progress=0.0, key=key, description=description)
        except Exception:  # noqa: BLE001  (a progress bar never stops a run)
            log.warning("could not create the %s progress artifact", key, exc_info=True)
        self._last = time.monotonic()

    def update(self, done: int, total: int, description: str | None = None) -> None:
        """``done`` of ``total`` (100% when ``total`` is 0), with a new description when given."""
        if self.artifact_id is None:
            return
        percent = 100.0 if total <= 0 else min(100.0, 100.0 * done / total)
        now = time.monotonic()
        if percent < 100.0 and now - self._last < self.every:
            return
        self._last = now
        try:
            from prefect.artifacts import update_progress_artifact

            update_progress_artifact(self.artifact_id, progress=percent, description=description)
        except Exception:  # noqa: BLE001  (a progress bar never stops a run)
            log.warning("could not update a progress artifact; no more updates this run", exc_info=True)
            self.artifact_id = None
