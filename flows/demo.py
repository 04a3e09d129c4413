"""`omnicast demo`: sample data (when missing) and the whole day on embedded defaults, inside one work folder; then
(:func:`finish_demo`) simulated responses to what the day sent, synced, and the campaign report in ``report/``."""

from __future__ import annotations

import json
import os
import secrets
import tomllib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from channels.spec import CHANNELS
from models.errors import InputError
from sample import write_sample

if TYPE_CHECKING:
    from sample.responses import ResponseReport

DEMO_SEED = 7
REPORT_DIR = "report"
# Prefect's temporary server migrates a fresh SQLite database on its first start; on a busy machine that takes longer
# than Prefect's default 20 s, so the demo allows 90 s.
SERVER_STARTUP_SECONDS = "90"


def prefect_environment(workdir: Path, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Prefect settings that keep the demo's orchestration state in ``workdir/.prefect``, set before Prefect loads.

    A shared ``~/.prefect`` made the temporary server time out when other Prefect processes were using it. An
    operator's explicit choices win: a ``PREFECT_HOME`` or ``PREFECT_API_URL`` already in the environment is kept,
    and the API URL of their active Prefect profile is carried over (the demo then runs on their server).
    """
    settings = {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": SERVER_STARTUP_SECONDS}
    if "PREFECT_HOME" in environ:
        return settings
    if "PREFECT_API_URL" not in environ:
        profile_url = _profile_api_url(environ)
        if profile_url:
            settings["PREFECT_API_URL"] = profile_url
    settings["PREFECT_HOME"] = str((workdir / ".prefect").resolve())
    return settings


def _profile_api_url(environ: Mapping[str, str]) -> str | None:
    """``PREFECT_API_URL`` of the active profile in the operator's own Prefect home, if one sets it."""
    home = Path(environ.get("PREFECT_HOME", "~/.prefect")).expanduser()
    path = Path(environ.get("PREFECT_PROFILES_PATH", home / "profiles.toml")).expanduser()
    try:
        profiles = tomllib.loads(path.read_text())
    except (OSError, ValueError):
        return None
    active = environ.get("PREFECT_PROFILE") or profiles.get("active") or "ephemeral"
    url = profiles.get("profiles", {}).get(active, {}).get("PREFECT_API_URL")
    return str(url) if url else None


def ensure_sample(workdir: Path, customers: int, progress: Callable[[str], None] | None = None) -> dict:
    """The sample store under ``workdir/data``: generated once, then reused (so a rerun is the same day)."""
    data = workdir / "data"
    manifest = data / "manifest.json"
    if manifest.exists():
        try:
            found = json.loads(manifest.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(
                f"{manifest} is not a readable sample manifest ({exc}); delete the folder {data} and the demo "
                "generates its sample store again"
            ) from exc
        if not isinstance(found, dict) or "as_of" not in found:
            raise InputError(f"{manifest} does not describe a sample store; delete the folder {data} to regenerate it")
        return found
    return write_sample(data, customers=customers, seed=DEMO_SEED, progress=progress)


def demo_secret(workdir: Path) -> str:
    """The demo's own signing key, made once and kept (owner-only) in the work folder."""
    path = workdir / "secret.key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def demo_settings(workdir: Path) -> dict[str, Any]:
    """The settings that keep every demo artefact inside ``workdir``, as ``Settings`` field values. They are given to
    the settings directly (the daily flow's ``demo_workdir`` parameter), so a real database URL or channel set in
    the environment is never used by the demo."""
    workdir = workdir.resolve()
    data = workdir / "data"
    return {
        "database_url": f"sqlite:///{workdir / 'omnicast.db'}",
        "outbox_dir": workdir / "outbox",
        "store_url": str(data / "shopify"),
        "crm_url": str(data / "hubspot_contacts.csv"),
        "analytics_url": str(data / "ga4_events.jsonl"),
        "secret_key": demo_secret(workdir),
        # The sample store's audiences (a few dozen people with ads consent) are under every platform's minimum;
        # the demo writes their files anyway so they can be looked at. A real store keeps the platforms' minimums.
        "audience_min_size": 0,
        **{spec.field: None for spec in CHANNELS},  # every channel in its folder under the demo's outbox
    }


def demo_environment(workdir: Path) -> dict[str, str]:
    """The same settings as environment variables (for a process that runs the demo's day on its own)."""
    return {
        f"OMNICAST_{name.upper()}": "" if value is None else str(value)
        for name, value in demo_settings(workdir).items()
    }


def prepare_demo(
    workdir: Path, customers: int, progress: Callable[[str], None] | None = None
) -> tuple[dict, dict[str, str]]:
    """Generate data if needed; return the sample manifest and the settings (environment) that point at ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    manifest = ensure_sample(workdir, customers, progress)
    return manifest, demo_environment(workdir)


@dataclass
class DemoFinish:
    """What :func:`finish_demo` did: the simulated responses (``skipped`` on a rerun) and the report's page."""

    responses: ResponseReport
    page: Path


def finish_demo(workdir: Path) -> DemoFinish:
    """After the demo's day: simulate the responses to what it sent (once: a rerun simulates nothing new), load the
    simulated orders with a sync of the sample store (so attribution works on real synced orders), and write the
    campaign report to ``workdir/report/index.html`` (with its CSVs)."""
    from flows.runtime import load_settings, locked, open_database, source_readers
    from models.sync import sync_sources
    from reports.measure import measure_for
    from reports.render import write_report
    from sample.responses import simulate_responses

    workdir = workdir.resolve()
    settings = load_settings(**demo_settings(workdir))
    engine = open_database(settings)
    try:
        responses = simulate_responses(engine, workdir / "data", seed=DEMO_SEED, store_url=settings.public_url)
        if responses.orders:
            with locked(engine, settings, "sync"):
                sync_sources(
                    engine,
                    source_readers(settings),
                    run_id=f"responses-{uuid.uuid4().hex[:6]}",
                    default_country=settings.default_country,
                )
        measurement = measure_for(engine, settings)
    finally:
        engine.dispose()
    return DemoFinish(responses=responses, page=write_report(measurement, workdir / REPORT_DIR))
