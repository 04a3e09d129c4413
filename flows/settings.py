"""Settings read from the environment (prefix ``OMNICAST_``) or a ``.env`` file.

Every setting is documented in the README's settings table; keep the two in step.
"""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """What an operator can set; defaults are the embedded demo set-up."""

    model_config = SettingsConfigDict(env_prefix="OMNICAST_", env_file=".env", extra="ignore")

    database_url: str = Field(
        "sqlite:///omnicast.db",
        description="SQLAlchemy URL. SQLite file by default; postgresql+psycopg://user@host/db in production.",
    )
    outbox_dir: Path = Field(Path("outbox"), description="Where the embedded file sinks write.")
    store_path: Path | None = Field(
        None, description="Folder holding the Shopify admin exports (products/customers/orders_export.csv)."
    )
    crm_path: Path | None = Field(None, description="HubSpot-style contacts CSV (optional).")
    analytics_path: Path | None = Field(None, description="GA4 BigQuery export rows as JSONL (optional).")
    default_country: str = Field("US", description="ISO country for phone numbers written without one.")
    store_name: str = Field("Bean & Leaf Coffee", description="Shown in emails and in-app cards.")
    store_address: str = Field(
        "500 Roastery Lane, Portland, OR 97201, USA",
        description="Postal address in every email footer (CAN-SPAM).",
    )
    timezone: str = Field("UTC", description="Store timezone (IANA name), used when a profile has none.")
    sender_address: str = Field(
        "Bean & Leaf Coffee <hello@beanandleaf.example>", description="From: header of every email."
    )
    secret_key: SecretStr | None = Field(
        None, description="Signs unsubscribe tokens. Required outside the demo (the demo keeps one in its workdir)."
    )
    public_url: str = Field(
        "https://beanandleaf.example", description="Base URL of the store; unsubscribe links live under it."
    )
    unsubscribe_mailto: str = Field("unsubscribe@beanandleaf.example", description="mailto: for List-Unsubscribe.")
    email_url: str | None = Field(None, description="Email channel: file://DIR (default: OUTBOX/email).")
    meta_audience_url: str | None = Field(None, description="Meta audiences: file://DIR (default: OUTBOX/audiences).")
    google_audience_url: str | None = Field(
        None, description="Google Customer Match: file://DIR (default: OUTBOX/audiences)."
    )
    inapp_url: str | None = Field(None, description="In-app feed: file://DIR (default: OUTBOX/inapp).")
    dkim_key_file: Path | None = Field(
        None, description="PEM private key; when set, every email is DKIM-signed (rsa-sha256, relaxed/relaxed)."
    )
    dkim_selector: str = Field("omnicast", description="DKIM selector: the key is published at SELECTOR._domainkey.")
    dkim_domain: str | None = Field(None, description="DKIM signing domain (default: the sender address's domain).")
    claim_lease_seconds: float = Field(
        900,
        gt=0,
        description="How long a message claimed or handed over by a run is left to that run; after it, a later run "
        "takes the message over (a crashed run's work is finished, never sent twice). Must exceed the longest "
        "hand-over of one batch to a channel.",
    )
    recommendations_per_customer: int = Field(10, ge=1, le=100, description="Top-K kept per customer.")

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"OMNICAST_TIMEZONE={value!r} is not an IANA timezone; use a name such as 'Europe/Berlin'"
            ) from exc
        return value

    def channel_url(self, channel: str) -> str:
        """The sink URL for a channel, falling back to a folder under the outbox."""
        explicit = {
            "email": self.email_url,
            "meta": self.meta_audience_url,
            "google": self.google_audience_url,
            "inapp": self.inapp_url,
        }[channel]
        if explicit:
            return explicit
        folder = {"email": "email", "meta": "audiences", "google": "audiences", "inapp": "inapp"}[channel]
        return f"file://{(self.outbox_dir / folder).resolve()}"
