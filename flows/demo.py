"""`omnicast demo`: sample data (when missing) and the whole day on embedded defaults, inside one work folder."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path

from sources.sample import write_sample

DEMO_SEED = 7


def ensure_sample(workdir: Path, customers: int, progress: Callable[[str], None] | None = None) -> dict:
    """The sample store under ``workdir/data``: generated once, then reused (so a rerun is the same day)."""
    data = workdir / "data"
    manifest = data / "manifest.json"
    if manifest.exists():
        return json.loads(manifest.read_text())
    return write_sample(data, customers=customers, seed=DEMO_SEED, progress=progress)


def demo_secret(workdir: Path) -> str:
    """The demo's own signing key, made once and kept (owner-only) in the work folder."""
    path = workdir / "secret.key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def demo_environment(workdir: Path) -> dict[str, str]:
    """Settings that keep every demo artefact inside ``workdir`` (a real database URL set elsewhere is never used)."""
    workdir = workdir.resolve()
    data = workdir / "data"
    return {
        "OMNICAST_DATABASE_URL": f"sqlite:///{workdir / 'omnicast.db'}",
        "OMNICAST_OUTBOX_DIR": str(workdir / "outbox"),
        "OMNICAST_STORE_PATH": str(data / "shopify"),
        "OMNICAST_CRM_PATH": str(data / "hubspot_contacts.csv"),
        "OMNICAST_ANALYTICS_PATH": str(data / "ga4_events.jsonl"),
        "OMNICAST_SECRET_KEY": demo_secret(workdir),
        "OMNICAST_EMAIL_URL": "",
        "OMNICAST_META_AUDIENCE_URL": "",
        "OMNICAST_GOOGLE_AUDIENCE_URL": "",
        "OMNICAST_INAPP_URL": "",
    }


def prepare_demo(
    workdir: Path, customers: int, progress: Callable[[str], None] | None = None
) -> tuple[dict, dict[str, str]]:
    """Generate data if needed; return the sample manifest and the settings (environment) that point at ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    manifest = ensure_sample(workdir, customers, progress)
    return manifest, demo_environment(workdir)
