"""Scheduling from the command line: `omnicast deployments write [--check]`, `omnicast worker`, `omnicast init`, and
`omnicast campaign run NAME --at "YYYY-MM-DD HH:MM"` (a one-off for the worker).

``register(app)`` adds them to the ``omnicast`` Typer app (flows/cli.py). Problems are :class:`OmnicastError`s, which
the app turns into one ``error:`` line and exit code 2 (a stale prefect.yaml under ``--check`` too).
"""

from __future__ import annotations

import functools
import inspect
import os
import secrets
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from models.errors import InputError

deployments_app = typer.Typer(help="Prefect deployments (prefect.yaml), generated from the campaign files.",
                              no_args_is_help=True)  # fmt: skip

PrefectYaml = Annotated[
    Path, typer.Option("--prefect-yaml", help="The prefect.yaml to read the stage deployments (the daily run) from.")
]
CampaignsDir = Annotated[
    Path | None, typer.Option("--dir", help="Campaigns folder (default: OMNICAST_CAMPAIGNS_DIR or the shipped one).")
]


class DeploymentsDrift(InputError):
    """prefect.yaml and the campaign files disagree."""


def register(app: typer.Typer) -> None:
    """Add ``deployments write``, ``worker`` and ``init`` to ``app``, and ``--at`` to its ``campaign run``."""
    if any(group.name == "deployments" for group in app.registered_groups):
        return
    app.add_typer(deployments_app, name="deployments")
    app.command("worker")(worker)
    app.command("init")(init)
    _add_at_to_campaign_run(app)


def _say(text: str = "") -> None:
    print(text, flush=True)  # plain text: campaign names and cron fields are not Rich markup


# --- omnicast deployments write -------------------------------------------------------------------------------------


@deployments_app.command("write")
def deployments_write(
    check: Annotated[bool, typer.Option("--check", help="Write nothing; exit 2 naming what differs.")] = False,
    out: Annotated[Path, typer.Option("--out", help="The prefect.yaml to write or check.")] = Path("prefect.yaml"),
    folder: CampaignsDir = None,
) -> None:
    """Write prefect.yaml from the campaign files (or, with --check, say what differs).

    The stage deployments stay as they are in the file, then `run-campaign` and one deployment per scheduled campaign
    (its cron and time zone; paused when the campaign is)."""
    from flows.deployments import deployments_yaml, drift, stage_deployments

    catalog = _catalog(folder)
    generated = deployments_yaml(catalog, stage_deployments(out))
    written = _read(out)
    names = _deployment_names(generated)
    if check:
        if written is None:
            raise DeploymentsDrift(f"{out} does not exist; run `omnicast deployments write` to create it")
        problems = drift(written, generated)
        if problems:
            raise DeploymentsDrift(
                f"{out} is out of date with the campaign files in {catalog.folder}: {'; '.join(problems)}; run "
                "`omnicast deployments write` (then `prefect deploy --all`)"
            )
        _say(f"{out} matches the campaign files: {len(names)} deployments ({', '.join(names)})")
        return
    if written == generated:
        _say(f"{out} is up to date: {len(names)} deployments ({', '.join(names)})")
        return
    changes = drift(written, generated) if written is not None else ["new file"]
    try:
        out.write_text(generated, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{out} cannot be written ({exc.strerror or exc}); choose another --out") from exc
    _say(f"wrote {out}: {len(names)} deployments ({', '.join(names)})")
    for change in changes:
        _say(f"  {change}")
    _say("next: .venv/bin/prefect deploy --all (from this folder) puts them on the Prefect server")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InputError(f"{path} cannot be read ({exc.strerror or exc})") from exc


def _deployment_names(text: str) -> list[str]:
    import yaml

    return [str(d["name"]) for d in yaml.safe_load(text)["deployments"]]


def _catalog(folder: Path | None) -> Any:
    from flows.runtime import load_settings
    from models.campaigns import load_catalog

    return load_catalog(folder or load_settings().campaigns_dir)


# --- omnicast worker ------------------------------------------------------------------------------------------------


def worker(
    prefect_yaml: PrefectYaml = Path("prefect.yaml"),
    grace: Annotated[
        int,
        typer.Option(
            "--grace",
            min=0,
            max=7 * 86400,
            help="Seconds a run may start late (the worker was down or busy) and still run, once.",
        ),
    ] = 3600,
    poll: Annotated[
        float,
        typer.Option(
            "--poll",
            min=0.2,
            max=3600,
            help="Seconds between looks for one-offs (`omnicast campaign run --at`) other commands stored.",
        ),
    ] = 10.0,
) -> None:
    """Run the daily run and every scheduled campaign on their schedules, without a Prefect server.

    The flows run in this process; the job store is the omnicast database, so a restart keeps what is due (a run
    missed while the worker was down runs once, if within --grace). SIGTERM or Ctrl-C stops after the running job."""
    from flows.deployments import DAILY_ENTRYPOINT, scheduled_runs, stage_deployments
    from flows.runtime import SettingError, check_run, load_run_settings, load_settings, source_warnings
    from flows.worker import Worker, configure_logging, install_signal_handlers
    from models.db import check_connection, make_engine, redact_url

    try:
        settings = load_settings()
    except SettingError:
        load_run_settings(store=True, channels=True)  # names every wrong and missing setting at once
        raise
    catalog = _catalog(None)
    source = prefect_yaml if prefect_yaml.exists() else None
    runs = scheduled_runs(catalog, stage_deployments(prefect_yaml))
    needs_store = any(run.entrypoint in (DAILY_ENTRYPOINT, "flows/sync.py:sync_flow") for run in runs)
    check_run(settings, store=needs_store, channels=True)  # every problem at once, before anything is scheduled
    engine = make_engine(settings.database_url)
    try:
        check_connection(engine)
    finally:
        engine.dispose()
    configure_logging()
    where = f"{source} and {catalog.folder}" if source else f"{catalog.folder} (no {prefect_yaml}: default stages)"
    _say(f"omnicast worker: {len(runs)} schedules from {where}")
    _say(f"job store: {redact_url(settings.database_url)} (table omnicast_scheduler_jobs)")
    for warning in source_warnings(settings):
        _say(f"warning: {warning}")
    stop = threading.Event()
    install_signal_handlers(stop)  # before the first job can start: a SIGTERM from now on waits for it
    running = Worker(settings.database_url, runs, grace_seconds=grace, poll_seconds=poll, say=_say)
    changes = running.start()
    _say(f"jobs: {len(changes.added)} added, {len(changes.replaced)} replaced (schedule changed), "
         f"{len(changes.kept)} kept, {len(changes.removed)} removed")  # fmt: skip
    _say("next runs:")
    for line in running.next_runs_text() or ["(none: no active schedule)"]:
        _say(f"  {line}")
    _say(f"flows run in this process; Prefect API: {_prefect_api()}. SIGTERM or Ctrl-C stops after the running job.")
    try:
        running.serve(stop)
    finally:
        running.stop()
    _say("omnicast worker stopped")


def _prefect_api() -> str:
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return str(url) if url else "none set, a temporary local server starts with the first run"


# --- omnicast campaign run NAME --at ... ----------------------------------------------------------------------------

AT_HELP = ('Schedule a one-off run instead, at "YYYY-MM-DD HH:MM" in the campaign\'s time zone, for `omnicast '
           "worker` to run (it picks it up within its --poll seconds).")  # fmt: skip


def schedule_at(name: str, at: str, as_of: str | None = None) -> None:
    """`omnicast campaign run NAME --at TIME`: store the one-off in the job store and say when it will run."""
    from flows.runtime import load_settings, parse_day
    from flows.worker import schedule_once
    from models.db import check_connection, make_engine, redact_url

    settings = load_settings()
    catalog = _catalog(None)
    campaign = catalog.campaign(name)
    day = parse_day(as_of, "--as-of").isoformat() if as_of else None
    engine = make_engine(settings.database_url)
    try:
        check_connection(engine)
    finally:
        engine.dispose()
    when = schedule_once(settings.database_url, catalog, name, at, default_zone=settings.timezone, as_of=day)
    zone = getattr(when.tzinfo, "key", str(when.tzinfo))
    shown = f"{when:%Y-%m-%d %H:%M}" + (f":{when:%S}" if when.second else "") + f" {when:%Z}"
    _say(f"{name} will run at {shown} ({zone}), for {day or when.date().isoformat()}, "
         f"when `omnicast worker` runs on {redact_url(settings.database_url)}")  # fmt: skip
    if not campaign.runs_on(when.date()):
        _say(f"note: {name} is disabled or outside its start/end dates on {when.date()} ({campaign.file.name}): "
             "that run will plan nothing")  # fmt: skip


def _add_at_to_campaign_run(app: typer.Typer) -> None:
    """Give the app's ``campaign run`` command an ``--at`` option (its other options stay as they are)."""
    group = next((g for g in app.registered_groups if g.name == "campaign" and g.typer_instance), None)
    if group is None or group.typer_instance is None:
        return
    for info in group.typer_instance.registered_commands:
        callback = info.callback
        name = info.name or (callback.__name__ if callback else "")
        if callback is not None and name in ("run", "campaign_run") and not getattr(callback, "_with_at", False):
            info.callback = with_at(callback)


def with_at(original: Callable[..., Any]) -> Callable[..., Any]:
    """``original`` (a command taking the campaign ``name``, maybe ``as_of``) with an ``--at`` option that
    schedules a one-off instead of running now."""
    signature = inspect.signature(original, eval_str=True)
    at = inspect.Parameter(
        "at", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
        annotation=Annotated[str | None, typer.Option("--at", help=AT_HELP)],
    )  # fmt: skip
    parameters = [*signature.parameters.values(), at]

    @functools.wraps(original)
    def command(**kwargs: Any) -> Any:
        when = kwargs.pop("at", None)
        if when is None:
            return original(**kwargs)
        return schedule_at(kwargs["name"], when, kwargs.get("as_of"))

    command.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    command.__doc__ = (original.__doc__ or "").rstrip() + " With --at, schedule a one-off for `omnicast worker`."
    command._with_at = True  # type: ignore[attr-defined]
    return command


# --- omnicast init --------------------------------------------------------------------------------------------------


def init(
    out: Annotated[
        Path,
        typer.Option("--out", help="The file to write (.env is read by every omnicast run started in its folder)."),
    ] = Path(".env"),
    store: Annotated[Path | None, typer.Option("--store", help="Folder with the Shopify admin exports.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file (its secret key is kept).")] = False,
) -> None:
    """Write .env: every setting a deployed run needs, described, with a new secret key."""
    from pydantic import ValidationError

    from flows.runtime import run_problems
    from flows.settings import PREFIX, Settings, env_file_text, settings_problems

    existing = _read(out)
    if existing is not None and not force:
        raise InputError(f"{out} exists; keep it, or run `omnicast init --force` to rewrite it (its "
                         f"{PREFIX}SECRET_KEY is kept, so links already sent keep working)")  # fmt: skip
    secret = _kept_secret(out) if existing is not None else None
    # one database whatever folder a process starts in (the Prefect worker, `omnicast serve` under systemd, a shell)
    overrides = {"database_url": f"sqlite:///{out.parent.resolve() / 'omnicast.db'}"}
    if store:
        overrides["store_url"] = str(store.resolve())
    text = env_file_text(secret or secrets.token_urlsafe(32), overrides)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the secret key
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        out.chmod(0o600)
    except OSError as exc:
        raise InputError(f"{out} cannot be written ({exc.strerror or exc}); choose another --out") from exc
    kept = " (secret key kept)" if secret else " with a new secret key"
    _say(f"wrote {out}{kept}: every {PREFIX}* setting, described; the store's own are set, the rest commented out")
    try:
        todo = run_problems(Settings(_env_file=out), store=True)  # type: ignore[call-arg]
    except ValidationError as exc:  # a value in the environment (which wins over the file) is wrong
        todo = settings_problems(exc)
    for problem in todo:
        _say(f"to do: {problem}")
    _say(
        f"then edit the store's own settings in {out} (the defaults are the demo store's) and check with "
        "`omnicast campaigns validate` and `omnicast deployments write --check`"
    )


def _kept_secret(path: Path) -> str | None:
    from dotenv import dotenv_values

    value = dotenv_values(path).get("OMNICAST_SECRET_KEY")
    return value or None
