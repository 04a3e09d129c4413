"""The `omnicast` command line (Typer). Every command exits non-zero with a one-line reason on bad input."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated, Any

# Before Prefect is imported: no telemetry unless the operator asks for it.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

import typer  # noqa: E402
from rich.console import Console  # noqa: E402

app = typer.Typer(help="omnicast: profiles, recommendations, triggers and consent-gated sends for your store.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
triggers_app = typer.Typer(help="Trigger detection.", no_args_is_help=True)
campaign_app = typer.Typer(help="Campaigns.", no_args_is_help=True)
audiences_app = typer.Typer(help="Ad-platform audiences.", no_args_is_help=True)
app.add_typer(triggers_app, name="triggers")
app.add_typer(campaign_app, name="campaign")
app.add_typer(audiences_app, name="audiences")

console = Console()
err = Console(stderr=True)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can fix into one line on stderr and exit code 2."""
    from channels.base import ChannelConfigError
    from flows.runtime import SettingError
    from models.db import DatabaseError
    from sources.load import SourceFileError

    try:
        yield
    except (SettingError, SourceFileError, ChannelConfigError, DatabaseError, KeyError, ValueError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _progress(status: Any) -> Callable[[str], None]:
    return lambda stage: status.update(f"writing {stage}…")


def finish_day(state: Any, outbox: Path) -> None:
    """Print the day's summary; exit 1 when the day could not deliver everything (the reason is printed)."""
    from flows.summary import print_day_summary

    report = state.result(raise_on_failure=False)
    if isinstance(report, BaseException):
        raise report
    print_day_summary(console, report, outbox=outbox)
    if state.is_failed():
        err.print(f"[bold red]incomplete:[/] {state.message}")
        raise typer.Exit(1)


@app.command()
def sample(
    out: Annotated[Path, typer.Option(help="Folder to write the store into (created).")],
    customers: Annotated[int, typer.Option(min=10, help="Number of store customers.")] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same files.")] = 7,
    as_of: Annotated[str | None, typer.Option(help="Export day YYYY-MM-DD (default today).")] = None,
) -> None:
    """Write a realistic sample store: Shopify exports, HubSpot contacts, GA4 events."""
    from sources.sample import write_sample

    with user_errors():
        day = date.fromisoformat(as_of) if as_of else None
        with console.status("generating sample store…") as status:
            manifest = write_sample(out, customers=customers, seed=seed, as_of=day, progress=_progress(status))
    for name, info in sorted(manifest["files"].items()):
        console.print(f"  {out / name}: {info['rows']:,} rows")
    console.print(f"sample store as of {manifest['as_of']} written to {out}")


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="Work folder for data, database and outbox.")] = Path("demo"),
    customers: Annotated[int, typer.Option(min=10, help="Customers in generated sample data.")] = 2000,
) -> None:
    """Generate sample data (once) and run the whole day on embedded defaults; prints a summary."""
    from flows.demo import prepare_demo

    with user_errors():
        with console.status("preparing sample data…") as status:
            manifest, environment = prepare_demo(workdir, customers, _progress(status))
        os.environ.update(environment)
        from flows.daily import daily_flow

        state = daily_flow(as_of=manifest["as_of"], return_state=True)
        finish_day(state, workdir / "outbox")


@app.command()
def daily(as_of: Annotated[str | None, typer.Option(help="Business day YYYY-MM-DD (default today).")] = None) -> None:
    """Run the whole day on the configured sources and channels."""
    with user_errors():
        from flows.daily import daily_flow
        from flows.settings import Settings

        state = daily_flow(as_of=as_of, return_state=True)
        finish_day(state, Settings().outbox_dir)


@app.command()
def sync(
    store: Annotated[Path | None, typer.Option(help="Folder with the Shopify admin exports.")] = None,
    crm: Annotated[Path | None, typer.Option(help="CRM contacts CSV.")] = None,
    analytics: Annotated[Path | None, typer.Option(help="GA4 export JSONL.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Load and unify the sources; prints rows read / loaded / quarantined per source."""
    for name, value in (("STORE_PATH", store), ("CRM_PATH", crm), ("ANALYTICS_PATH", analytics)):
        if value is not None:
            os.environ[f"OMNICAST_{name}"] = str(value)
    with user_errors():
        from flows.sync import sync_flow

        report = sync_flow()
    if as_json:
        sys.stdout.write(json.dumps(report.as_dict(), default=str) + "\n")
        return
    from flows.summary import sources_table

    console.print(sources_table(report))


@app.command()
def train() -> None:
    """Fit the recommender and store every customer's top picks."""
    with user_errors():
        from flows.train import train_flow

        report = train_flow()
    console.print(report)


@triggers_app.command("run")
def triggers_run(as_of: Annotated[str | None, typer.Option(help="Business day YYYY-MM-DD.")] = None) -> None:
    """Detect birthdays, replenishment, churn risk and abandoned carts for the day."""
    with user_errors():
        from flows.triggers import triggers_flow

        found = triggers_flow(as_of=as_of)
    for kind, count in sorted(found.items()):
        console.print(f"{kind}: {count} new")


@campaign_app.command("run")
def campaign_run(
    name: Annotated[str, typer.Argument(help="Campaign name, e.g. weekly-picks, birthday.")],
    as_of: Annotated[str | None, typer.Option(help="Business day YYYY-MM-DD.")] = None,
) -> None:
    """Plan and deliver one campaign."""
    with user_errors():
        from flows.campaign import campaign_flow
        from flows.summary import messages_table

        planned = campaign_flow(name=name, as_of=as_of)
    if planned.report is not None:
        console.print(messages_table(planned.report))


@audiences_app.command("sync")
def audiences_sync(
    platform: Annotated[str | None, typer.Option(help="meta or google (default both).")] = None,
    as_of: Annotated[str | None, typer.Option(help="Business day YYYY-MM-DD.")] = None,
) -> None:
    """Add new audience members on the ad platforms (hashed identifiers only)."""
    with user_errors():
        from flows.audiences import audiences_flow
        from flows.summary import messages_table

        planned = audiences_flow(platform=platform, as_of=as_of)
    if planned.report is not None:
        console.print(messages_table(planned.report))


if __name__ == "__main__":  # pragma: no cover
    app()
