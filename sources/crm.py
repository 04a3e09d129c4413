"""CRM contacts (HubSpot export by default) read into checked, normalized frames.

Other CRMs export the same facts under other column names: describe them with a :class:`CrmMapping`
instead of writing a new reader. Contacts written differently from the store's customers (email case and
spaces, national-format phones) are normalized here so identity resolution can join them.

A contact row is quarantined only when it cannot say who it is about (no Record ID, neither a usable email
nor phone, a Record ID repeated); every other bad cell is set aside and the row loads, because its consent
statements matter more than a birthday or a time zone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from pathlib import Path
from zoneinfo import available_timezones

import pandas as pd

from models.schema import utcnow
from sources.formats import CRM_FILE as CRM_FILE  # re-exported: the reader's callers name it here
from sources.shopify import UNKNOWN_EMAIL, UNKNOWN_PHONE
from sources.validate import (
    ROW,
    Intake,
    distinct,
    in_future,
    is_member,
    none_if_blank,
    normalize_emails,
    normalize_phones,
    parse_flags,
    parse_timestamps,
    read_csv,
    reject_each,
    set_aside_each,
    stated_denials,
    with_default,
)

CRM_TIME = "%Y-%m-%d %H:%M"
EARLIEST_BIRTHDAY = date(1900, 1, 1)
"""A date of birth before this is a placeholder or a typo (``1800-01-01``), not a birthday to celebrate."""
CONSENT_COLUMNS = {"email": "email_consent", "ads": "ads_consent", "inapp": "inapp_consent",
                   "marketing": "marketing_consent"}  # fmt: skip
"""Consent channel → column of the contacts frame. ``marketing`` is HubSpot's "Marketing contact status": a
non-marketing contact gets no marketing message on any channel."""


@dataclass(frozen=True)
class CrmMapping:
    """Which column of a CRM export holds which fact, and what its consent words mean."""

    record_id: str = "Record ID"
    first_name: str = "First Name"
    last_name: str = "Last Name"
    email: str = "Email"
    phone: str = "Phone Number"
    birthday: str = "Date of Birth"
    loyalty_tier: str = "Loyalty Tier"
    email_consent: str = "Email Marketing Consent"
    ads_consent: str = "Ads Personalization Consent"
    inapp_consent: str = "In-App Messaging Consent"
    timezone: str = "Time Zone"
    city: str = "City"
    region: str = "State/Region"
    country: str = "Country/Region"
    zip: str = "Postal Code"
    created: str = "Create Date"
    modified: str = "Last Modified Date"
    marketing_status: str = "Marketing contact status"
    email_consent_words: Mapping[str, bool] = field(default_factory=lambda: {"subscribed": True, "unsubscribed": False})
    flag_words: Mapping[str, bool] = field(default_factory=lambda: {"true": True, "false": False})
    marketing_status_words: Mapping[str, bool] = field(
        default_factory=lambda: {"marketing contact": True, "non-marketing contact": False}
    )
    tiers: tuple[str, ...] = ("Bronze", "Silver", "Gold")
    how_to_export: str = (
        "export contacts from HubSpot → Contacts → Export → 'All properties', format CSV "
        "(or describe your CRM's columns with a CrmMapping)"
    )

    @property
    def required(self) -> list[str]:
        """Columns without which the file cannot be read at all."""
        return [self.record_id, self.email, self.phone, self.email_consent, self.modified]


HUBSPOT = CrmMapping()


@cache
def _timezones() -> frozenset[str]:
    return frozenset(available_timezones())


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    if name in frame.columns:
        return frame[name]
    return pd.Series("", index=frame.index, dtype=str)


def read_contacts(
    path: Path,
    intake: Intake,
    default_country: str,
    mapping: CrmMapping = HUBSPOT,
    now: datetime | None = None,
) -> pd.DataFrame:
    """Contacts with normalized email/phone, birthday, tier, timezone and consent statements.

    A contact with an invalid email is kept when its phone is valid (and the other way round); one with
    neither a usable email nor phone cannot be matched or reached and is quarantined. A birthday before 1900
    or after ``now``, an unknown tier, time zone or consent word, and a modification date that does not parse
    or lies in the future are set aside: the contact loads without that value (an undated statement is dated
    by the sync when it is a denial, and ranks oldest when it is a first grant: never an unconsented send).
    """
    return check_contacts(read_csv(path, intake, mapping.required, mapping.how_to_export), intake, default_country,
                          mapping, now)  # fmt: skip


def check_contacts(
    frame: pd.DataFrame,
    intake: Intake,
    default_country: str,
    mapping: CrmMapping = HUBSPOT,
    now: datetime | None = None,
) -> pd.DataFrame:
    """The checks of :func:`read_contacts` on rows already read (a file, or API records in ``mapping``'s columns)."""
    m = mapping
    today = now or utcnow()
    frame = intake.drop_duplicates(frame)
    country = _column(frame, m.country).str.strip().str.upper()
    country = country.where(country.str.fullmatch(r"[A-Z]{2}"), "")
    email, bad_email = normalize_emails(frame[m.email])
    phone, bad_phone = normalize_phones(frame[m.phone], with_default(country, default_country))
    birthday, bad_birthday = _birthdays(_column(frame, m.birthday))
    tier = _column(frame, m.loyalty_tier).str.strip().str.title()
    timezone = _column(frame, m.timezone).str.strip()
    consents = {
        "email": parse_flags(frame[m.email_consent], m.email_consent_words),
        "ads": parse_flags(_column(frame, m.ads_consent), m.flag_words),
        "inapp": parse_flags(_column(frame, m.inapp_consent), m.flag_words),
        "marketing": parse_flags(_column(frame, m.marketing_status), m.marketing_status_words),
    }
    modified, bad_modified = parse_timestamps(frame[m.modified], CRM_TIME, assume_utc=True)
    created, bad_created = parse_timestamps(_column(frame, m.created), CRM_TIME, assume_utc=True)
    future_modified, future_created = in_future(modified, today), in_future(created, today)
    dated = modified.where(~future_modified)
    record_id = frame[m.record_id].str.strip()
    unreachable = email.isna() & phone.isna()
    identified = (record_id != "") & ~unreachable
    repeated = record_id.where(identified).duplicated(keep="first") & identified
    statements = {channel: flags for channel, (flags, _) in consents.items()}
    intake.keep_denials(stated_denials(_rows(statements, (record_id == "") & ~unreachable), email=email,
                                       recorded_at=dated))  # fmt: skip
    intake.keep_denials(stated_denials(_rows(statements, repeated), external_id=record_id, recorded_at=dated))
    frame = reject_each(
        intake,
        frame,
        [
            (m.record_id, record_id == "", f"missing {m.record_id}"),
            (m.email, bad_email & unreachable, "not a valid email address, and no valid phone to reach them"),
            (m.phone, bad_phone & unreachable, "not a valid phone number, and no valid email to reach them"),
            (m.email, unreachable, "neither an email nor a phone: the contact cannot be matched or reached"),
            (m.record_id, repeated, f"{m.record_id} already used on an earlier row"),
        ],
    )
    too_early, too_late = pd.Timestamp(EARLIEST_BIRTHDAY), pd.Timestamp(today.date())
    implausible = birthday.notna() & ((birthday < too_early) | (birthday > too_late))
    unknown = set_aside_each(
        intake,
        frame,
        [
            (m.email, bad_email, "not a valid email address: kept, its phone identifies the contact"),
            (m.phone, bad_phone, "not a valid phone number: kept, its email identifies the contact"),
            (m.birthday, bad_birthday, "not a date like 1990-02-28: loaded without a birthday"),
            (m.birthday, implausible, "not a plausible birthday (before 1900 or in the future): loaded without one"),
            (m.loyalty_tier, (tier != "") & ~tier.isin(m.tiers), f"not one of {m.tiers}: loaded without a tier"),
            (m.timezone, (timezone != "") & ~is_member(timezone, _timezones()),
             "not an IANA time zone name like America/New_York: loaded without one"),
            *[
                (column, consents[channel][1], f"not one of {sorted(words)} or blank: no {channel} statement")
                for channel, column, words in (
                    ("email", m.email_consent, m.email_consent_words),
                    ("ads", m.ads_consent, m.flag_words),
                    ("inapp", m.inapp_consent, m.flag_words),
                    ("marketing", m.marketing_status, m.marketing_status_words),
                )
            ],
            (m.modified, bad_modified, "not a timestamp like 2026-11-20 14:03: the row's statements are undated"),
            (m.modified, future_modified, "in the future: the row's statements are undated"),
            (m.created, bad_created, "not a timestamp like 2026-11-20 14:03: loaded without it"),
            (m.created, future_created, "in the future: loaded without it"),
        ],
    )  # fmt: skip
    index = frame.index
    known_created = created.loc[index].where(~unknown[m.created])
    modified_at = dated.loc[index].where(~unknown[m.modified])
    modified_at = modified_at.where(modified_at.notna() | unknown[m.modified], known_created)
    return pd.DataFrame(
        {
            "external_id": record_id.loc[index],
            "email": email.loc[index],
            "phone": phone.loc[index],
            "first_name": none_if_blank(_column(frame, m.first_name)),
            "last_name": none_if_blank(_column(frame, m.last_name)),
            "city": none_if_blank(_column(frame, m.city)),
            "region": none_if_blank(_column(frame, m.region)),
            "country": none_if_blank(country.loc[index]),
            "zip": none_if_blank(_column(frame, m.zip)),
            "birthday": _known(birthday.loc[index].dt.date, unknown[m.birthday]),
            "loyalty_tier": _known(none_if_blank(tier.loc[index]), unknown[m.loyalty_tier]),
            "timezone": _known(none_if_blank(timezone.loc[index]), unknown[m.timezone]),
            **{column: consents[channel][0].loc[index] for channel, column in CONSENT_COLUMNS.items()},
            "modified_at": modified_at,
            UNKNOWN_EMAIL: unknown[m.email],
            UNKNOWN_PHONE: unknown[m.phone],
            ROW: frame[ROW],
        }
    ).reset_index(drop=True)


def _rows(statements: dict[str, pd.Series], rows: pd.Series) -> dict[str, pd.Series]:
    return {channel: flags[rows] for channel, flags in statements.items()}


def _birthdays(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Dates ``YYYY-MM-DD`` (NaT where blank or invalid) and the mask of non-blank invalid ones."""
    codes, texts = distinct(values)
    stripped = texts.str.strip()
    parsed = pd.to_datetime(stripped.where(stripped != ""), format="%Y-%m-%d", errors="coerce")
    invalid = ((stripped != "") & parsed.isna()).to_numpy(dtype=bool)
    return (
        pd.Series(pd.DatetimeIndex(parsed).take(codes), index=values.index),
        pd.Series(invalid[codes], index=values.index),
    )


def _known(values: pd.Series, unknown: pd.Series) -> pd.Series:
    """Values as objects, None where missing or set aside."""
    return values.astype(object).where(values.notna() & ~unknown, None)
