"""The `omnicast` command line (Typer).

Contract: a problem the user can fix (any :class:`models.errors.OmnicastError`, or a usage error such as an unknown
option or a bad number) ends stderr with one line ``error: <what and how to fix it>`` and exit code 2, with no
traceback. Anything else is a bug and shows as one (traceback, exit code 1). What can be checked before a flow starts
(settings, arguments, the database URL, the channels) is checked before Prefect is even imported.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

# Before Prefect is imported: no telemetry unless the operator asks for it, and room for a slow machine to start
# Prefect's temporary server (its default of 20 s is not always enough on a busy 2-core box).
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")

import typer  # noqa: E402
from rich.text import Text  # noqa: E402
from typer.core import TyperGroup  # noqa: E402

from flows.cli_answers import register as register_answers  # noqa: E402
from flows.cli_campaigns import register as register_campaigns  # noqa: E402
from flows.cli_evaluate import register as register_evaluate  # noqa: E402
from flows.cli_models import register as register_models  # noqa: E402
from flows.cli_preview import register as register_preview  # noqa: E402
from flows.cli_report import register as register_report  # noqa: E402
from flows.cli_schedule import register as register_schedule  # noqa: E402
from flows.console import make_console  # noqa: E402
from models.errors import ConfigurationError, InputError, OmnicastError  # noqa: E402

MAX_SAMPLE_CUSTOMERS = 2_000_000

console = make_console()
err = make_console(stderr=True)


def one_line(message: str) -> str:
    """A message as exactly one line (the contract's last line of stderr)."""
    return " ".join(part.strip() for part in message.splitlines() if part.strip()) or "unknown error"


def print_error(message: str) -> None:
    """``error: <message>`` as the last line of stderr: Prefect's temporary server is stopped first, so its own
    goodbye line cannot come after it."""
    _stop_prefect_server()
    line = Text("error:", style="bold red") + Text(" " + one_line(message))
    err.print(line, soft_wrap=True, highlight=False, markup=False)


def _stop_prefect_server() -> None:
    """Flush Prefect's queued logs and events, then stop the temporary Prefect server this process started (no-op
    when none runs).

    Only a server Prefect started because no API URL is configured is ours to stop (not an operator's server, nor
    a test harness's, which also registers itself as the default instance).
    """
    # Logs and events are flushed whichever server they go to: at exit, Prefect's workers would otherwise print
    # "EventsWorker - Still processing items" after the error line (seen in CI against an operator's server).
    handlers = sys.modules.get("prefect.logging.handlers")
    if handlers is not None:
        handlers.APILogWorker.drain_all(timeout=5)
    events = sys.modules.get("prefect.events.worker")
    if events is not None:
        events.EventsWorker.drain_all(timeout=5)
    server_module = sys.modules.get("prefect.server.api.server")
    if server_module is None:
        return
    from prefect.settings import get_current_settings

    if get_current_settings().api.url:
        return
    for server in list(server_module.SubprocessASGIServer._instances.values()):
        server.stop()


class OmnicastGroup(TyperGroup):
    """Typer's group, with the error contract applied to every command (also under ``typer.testing.CliRunner``)."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, windows_expand_args, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except OmnicastError as exc:
            print_error(str(exc))
            sys.exit(2)
        except typer.TyperException as exc:  # click's usage errors: unknown option, bad number, missing argument
            _usage_error(exc)
            sys.exit(2)
        except typer.Abort:
            err.print("aborted", highlight=False, markup=False)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _usage_error(exc: typer.TyperException) -> None:
    """Click's usage text, then the problem as the one ``error:`` line (no box drawn around it)."""
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:  # the help is already on screen
        print_error(f"no command given; run '{ctx.command_path} COMMAND' with one of the commands above")
        return
    if ctx is not None:
        err.print(ctx.get_usage(), highlight=False, markup=False, soft_wrap=True)
        if ctx.command.get_help_option(ctx) is not None:
            err.print(f"Try '{ctx.command_path} --help' for help.", highlight=False, markup=False, soft_wrap=True)
    print_error(exc.format_message())


app = typer.Typer(
    help="omnicast: profiles, recommendations, triggers and consent-gated sends for your store.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=OmnicastGroup,
)
triggers_app = typer.Typer(help="Trigger detection.", no_args_is_help=True)
campaign_app = typer.Typer(help="Campaigns.", no_args_is_help=True)
audiences_app = typer.Typer(help="Ad-platform audiences.", no_args_is_help=True)
app.add_typer(triggers_app, name="triggers")
app.add_typer(campaign_app, name="campaign")
app.add_typer(audiences_app, name="audiences")

AsOf = Annotated[str | None, typer.Option(help="Business day YYYY-MM-DD (default today in the store's timezone).")]


def _progress(status: Any) -> Callable[[str], None]:
    return lambda stage: status.update(f"writing {stage}…")


def _day(as_of: str | None) -> str | None:
    """``--as-of`` checked before any work (the flows take it as text: Prefect stores it as the run's parameter)."""
    from flows.runtime import parse_day

    return parse_day(as_of, "--as-of").isoformat() if as_of else None


def writable_folder(path: Path, option: str) -> Path:
    """Create ``path`` (and its parents) or say in one line why it cannot be, naming ``option``."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
        why = f"{blocker} is a file, not a folder" if blocker is not None else exc.strerror or str(exc)
        raise InputError(
            f"{option} {str(path)!r} cannot be created as a folder ({why}); choose another folder"
        ) from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise InputError(f"{option} {str(path)!r} is not writable by this user; choose another folder")
    return path


def preflight(*, channels: bool = False, store: bool = False, overrides: dict[str, Any] | None = None) -> Any:
    """Settings, database URL and (optionally) sources and channels, checked before Prefect starts: one line each.

    ``overrides`` are the command's options that stand in for settings (the flow gets them as parameters)."""
    from flows.runtime import check_channels, load_settings, source_readers
    from models.db import check_connection, make_engine

    settings = load_settings(**(overrides or {}))
    readers = source_readers(settings) if store else []  # a store is configured, its URL taken by a reader
    engine = make_engine(settings.database_url)
    try:
        check_connection(engine)
    finally:
        engine.dispose()
    if channels:
        check_channels(settings)
    if readers:
        from models.sync import check_sources

        check_sources(readers)  # the files are there, an API's credential is well formed
    check_prefect_api()
    return settings


def check_prefect_api() -> None:
    """A configured Prefect API must answer; without one, Prefect starts a temporary server (nothing to check)."""
    import httpx
    from pydantic import ValidationError

    try:
        from prefect.settings import get_current_settings

        url = get_current_settings().api.url
    except ValidationError as exc:  # Prefect validates its own settings (PREFECT_*) when it loads them
        problems = "; ".join(
            str(error["msg"]).removeprefix("Value error, ")
            + (f" (got {error['input']!r})" if isinstance(error.get("input"), str) else "")
            for error in exc.errors(include_url=False)
        )
        names = ", ".join(sorted(name for name in os.environ if name.startswith("PREFECT_"))) or "none"
        raise ConfigurationError(
            f"Prefect's settings are not valid ({problems}); check the PREFECT_* variables set here ({names}) "
            "and the active Prefect profile"
        ) from exc
    if not url:
        return
    try:
        httpx.get(f"{url.rstrip('/')}/health", timeout=10)
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:  # any HTTP answer will do: only silence fails
        raise ConfigurationError(
            f"PREFECT_API_URL={url!r} does not answer ({one_line(str(exc)) or type(exc).__name__}); start that "
            "Prefect server (`prefect server start`), or unset PREFECT_API_URL to let omnicast start a temporary one"
        ) from exc


def finish_day(state: Any, settings: Any) -> None:
    """Print the day's summary; exit 1 when the day could not deliver everything (the reason is printed)."""
    from flows.summary import print_day_summary

    report = state.result(raise_on_failure=False)
    if isinstance(report, BaseException):
        raise report
    print_day_summary(console, report, settings)
    if state.is_failed():
        err.print(Text("incomplete:", style="bold red") + Text(f" {state.message}"), soft_wrap=True)
        raise typer.Exit(1)


def finish_run(state: Any) -> None:
    """Print a campaign or audience run's summary; exit 1 with the reason when it could not deliver everything."""
    from flows.summary import print_run_summary

    planned = state.result(raise_on_failure=False)
    if isinstance(planned, BaseException):
        raise planned
    print_run_summary(console, planned)
    if state.is_failed():
        err.print(Text("incomplete:", style="bold red") + Text(f" {state.message}"), soft_wrap=True)
        raise typer.Exit(1)


@app.command()
def sample(
    out: Annotated[Path, typer.Option(help="Folder to write the store into (created).")],
    customers: Annotated[int, typer.Option(min=10, max=MAX_SAMPLE_CUSTOMERS, help="Number of store customers.")] = 2000,
    seed: Annotated[int, typer.Option(min=0, help="Random seed: same seed, same files.")] = 7,
    as_of: Annotated[str | None, typer.Option(help="Export day YYYY-MM-DD (default today).")] = None,
) -> None:
    """Write a realistic sample store: Shopify exports, HubSpot contacts, GA4 events."""
    from flows.runtime import parse_day

    day = parse_day(as_of, "--as-of") if as_of else None
    writable_folder(out, "--out")
    from sample import write_sample

    try:
        with console.status("generating sample store…") as status:
            manifest = write_sample(out, customers=customers, seed=seed, as_of=day, progress=_progress(status))
    except OSError as exc:
        raise InputError(f"--out {str(out)!r}: cannot write the sample store ({exc.strerror or exc})") from exc
    for name, info in sorted(manifest["files"].items()):
        console.print(f"  {out / name}: {info['rows']:,} rows")
    console.print(f"sample store as of {manifest['as_of']} written to {out}")


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="Work folder for data, database, outbox and Prefect's home.")] = Path(
        "demo"
    ),
    customers: Annotated[
        int, typer.Option(min=10, max=MAX_SAMPLE_CUSTOMERS, help="Customers in generated sample data.")
    ] = 2000,
) -> None:
    """Generate sample data (once) and run the whole day on embedded defaults; prints a summary."""
    writable_folder(workdir, "--workdir")
    from flows.demo import demo_settings, prefect_environment, prepare_demo

    os.environ.update(prefect_environment(workdir, os.environ))  # before Prefect is imported: its home is read once
    try:
        with console.status("preparing sample data…") as status:
            manifest, _ = prepare_demo(workdir, customers, _progress(status))
    except OSError as exc:
        raise InputError(f"--workdir {str(workdir)!r}: cannot write the demo's files ({exc.strerror or exc})") from exc
    settings = preflight(channels=True, store=True, overrides=demo_settings(workdir))
    from flows.daily import daily_flow

    state = daily_flow(as_of=manifest["as_of"], demo_workdir=str(workdir.resolve()), return_state=True)
    from flows.demo import finish_demo

    finished = finish_demo(workdir)  # the sample store's responses to today's sends (once), synced; the report
    try:
        finish_day(state, settings)
    finally:
        console.print(f"Report: {finished.page}", soft_wrap=True, highlight=False)


@app.command()
def daily(as_of: AsOf = None) -> None:
    """Run the whole day on the configured sources and channels."""
    day = _day(as_of)
    settings = preflight(channels=True, store=True)
    from flows.daily import daily_flow

    state = daily_flow(as_of=day, return_state=True)
    finish_day(state, settings)


@app.command()
def sync(
    store: Annotated[
        str | None,
        typer.Option(help="The store: a folder of Shopify admin exports, shopify://SHOP.myshopify.com or "
                     "woocommerce://HOST (instead of OMNICAST_STORE_URL)."),
    ] = None,
    crm: Annotated[str | None, typer.Option(help="The CRM: a contacts CSV, or hubspot://.")] = None,
    analytics: Annotated[str | None, typer.Option(help="GA4 export: a JSONL or Parquet file.")] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Read every source whole, not just what changed since the last sync.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Load and unify the sources; prints rows read / loaded / quarantined per source. API sources read only what
    changed since their last sync (their watermarks), unless --full."""
    overrides = {"store_url": store, "crm_url": crm, "analytics_url": analytics}
    preflight(store=True, overrides={key: value for key, value in overrides.items() if value is not None})
    from flows.sync import sync_flow

    report = sync_flow(store=store, crm=crm, analytics=analytics, full=full)
    if as_json:
        sys.stdout.write(json.dumps(report.as_dict(), default=str) + "\n")
        return
    from flows.summary import sources_table

    console.print(sources_table(report))


@app.command()
def train(
    force: Annotated[
        bool, typer.Option("--force", help="Promote the new model even if it does not beat the serving one.")
    ] = False,
) -> None:
    """Judge a new model against the serving one on the store's holdout, register it, and store every customer's
    top picks from whichever serves (`omnicast models list` shows the versions)."""
    preflight()
    from flows.train import train_flow

    report = train_flow(force=force)
    console.print(str(report), highlight=False, markup=False)  # the report's own words, not the dataclass
    from flows.cli_models import print_latest

    print_latest(console)


@triggers_app.command("run")
def triggers_run(as_of: AsOf = None) -> None:
    """Detect birthdays, replenishment, churn risk and abandoned carts for the day."""
    day = _day(as_of)
    preflight()
    from flows.triggers import triggers_flow

    found = triggers_flow(as_of=day)
    for kind, count in sorted(found.items()):
        console.print(f"{kind}: {count} new")


@campaign_app.command("run")
def campaign_run(
    name: Annotated[str, typer.Argument(help="Campaign name, e.g. weekly-picks, birthday.")],
    as_of: AsOf = None,
) -> None:
    """Plan and deliver one campaign."""
    from flows.runtime import load_settings
    from models.campaigns import load_catalog

    load_catalog(load_settings().campaigns_dir).campaign(name)
    day = _day(as_of)
    preflight(channels=True)
    from flows.campaign import campaign_flow

    finish_run(campaign_flow(name=name, as_of=day, return_state=True))


@audiences_app.command("sync")
def audiences_sync(
    platform: Annotated[str | None, typer.Option(help="meta, google or tiktok (default every one configured).")] = None,
    full: Annotated[bool, typer.Option("--full", help="Upload every eligible member again (a replaced list).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print per audience and platform added, removed, "
                                                          "unchanged and size as JSON.")] = False,  # fmt: skip
    as_of: AsOf = None,
) -> None:
    """Keep ad-platform audiences in step with their segments: add who joined, remove who left or withdrew ads
    consent (hashed identifiers only)."""
    from flows.runtime import check_platform

    check_platform(platform)
    day = _day(as_of)
    preflight(channels=True)
    from flows.audiences import audiences_flow

    state = audiences_flow(platform=platform, as_of=day, full=full, return_state=True)
    if not as_json:
        finish_run(state)
        return
    run: Any = state.result(raise_on_failure=False)
    if isinstance(run, BaseException):
        raise run
    result: dict[str, dict[str, Any]] = {}
    for sync in run.syncs:
        result.setdefault(sync.audience, {})[sync.platform] = sync.as_json()
    sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    if state.is_failed():
        err.print(Text("incomplete:", style="bold red") + Text(f" {state.message}"), soft_wrap=True)
        raise typer.Exit(1)


@app.command("channels")
def channels_list(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """The channels omnicast can deliver to, the setting of each, and what it is set to here (secrets masked)."""
    from channels.registry import parse_target
    from channels.spec import CHANNELS
    from flows.runtime import load_settings

    settings = load_settings()
    rows: list[dict[str, Any]] = []
    for spec in CHANNELS:
        url = settings.channel_url(spec.name)
        rows.append({
            "channel": spec.name, "setting": spec.setting, "schemes": list(spec.schemes),
            "configured": parse_target(spec, url).shown if url else "off (messages suppressed: no_channel)",
        })  # fmt: skip
    if as_json:
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    from rich.table import Table

    table = Table("channel", "setting", "schemes", "configured")
    for row in rows:
        table.add_row(row["channel"], row["setting"], ", ".join(row["schemes"]), row["configured"])
    console.print(table)


register_answers(app)  # `omnicast serve` and `omnicast forget` (flows/cli_answers.py)
register_campaigns(app)  # `omnicast campaigns list|validate|show` (flows/cli_campaigns.py)
register_schedule(app)  # `omnicast deployments write`, `worker`, `init`, `campaign run --at` (flows/cli_schedule.py)
register_preview(app)  # `omnicast preview` (flows/cli_preview.py)
register_report(app)  # `omnicast report` (flows/cli_report.py)
register_evaluate(app)  # `omnicast evaluate churn` (flows/cli_evaluate.py)
register_models(app)  # `omnicast models list|promote` (flows/cli_models.py)


if __name__ == "__main__":  # pragma: no cover
    app()
