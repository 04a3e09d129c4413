"""CRM contacts (HubSpot export by default) read into checked, normalized frames.

Other CRMs export the same facts under other column names: describe them with a :class:`CrmMapping`
instead of writing a new reader. Contacts written differently from the store's customers (email case and
spaces, national-format phones) are normalized here so identity resolution can join them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from zoneinfo import available_timezones

import pandas as pd

from sources.validate import (
    ROW,
    Intake,
    blank,
    is_member,
    none_if_blank,
    normalize_emails,
    normalize_phones,
    parse_flags,
    parse_timestamps,
    read_csv,
    reject_each,
    with_default,
)

CRM_FILE = "hubspot_contacts.csv"
CRM_TIME = "%Y-%m-%d %H:%M"


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
    email_consent_words: Mapping[str, bool] = field(default_factory=lambda: {"subscribed": True, "unsubscribed": False})
    flag_words: Mapping[str, bool] = field(default_factory=lambda: {"true": True, "false": False})
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


def read_contacts(path: Path, intake: Intake, default_country: str, mapping: CrmMapping = HUBSPOT) -> pd.DataFrame:
    """Contacts with normalized email/phone, birthday, tier, timezone and consent statements.

    A contact with an invalid email is kept when its phone is valid (and the other way round); one with
    neither a usable email nor phone cannot be matched or reached and is quarantined.
    """
    m = mapping
    frame = read_csv(path, intake, m.required, m.how_to_export)
    frame = intake.drop_duplicates(frame)
    country = _column(frame, m.country).str.strip().str.upper()
    country = country.where(country.str.fullmatch(r"[A-Z]{2}"), "")
    email, bad_email = normalize_emails(frame[m.email])
    phone, bad_phone = normalize_phones(frame[m.phone], with_default(country, default_country))
    birthday = pd.to_datetime(_column(frame, m.birthday).str.strip(), format="%Y-%m-%d", errors="coerce")
    tier = _column(frame, m.loyalty_tier).str.strip().str.title()
    timezone = _column(frame, m.timezone).str.strip()
    email_consent, bad_email_consent = parse_flags(frame[m.email_consent], m.email_consent_words)
    ads, bad_ads = parse_flags(_column(frame, m.ads_consent), m.flag_words)
    inapp, bad_inapp = parse_flags(_column(frame, m.inapp_consent), m.flag_words)
    modified, bad_modified = parse_timestamps(frame[m.modified], CRM_TIME, assume_utc=True)
    created, bad_created = parse_timestamps(_column(frame, m.created), CRM_TIME, assume_utc=True)
    unreachable = email.isna() & phone.isna()
    frame = reject_each(
        intake,
        frame,
        [
            (m.record_id, blank(frame[m.record_id]), f"missing {m.record_id}"),
            (m.email, bad_email & unreachable, "not a valid email address, and no valid phone to reach them"),
            (m.phone, bad_phone & unreachable, "not a valid phone number, and no valid email to reach them"),
            (m.email, unreachable, "neither an email nor a phone: the contact cannot be matched or reached"),
            (m.birthday, birthday.isna() & ~blank(_column(frame, m.birthday)), "not a date like 1990-02-28"),
            (m.loyalty_tier, (tier != "") & ~tier.isin(m.tiers), f"Loyalty Tier is not one of {m.tiers}"),
            (m.timezone, (timezone != "") & ~is_member(timezone, _timezones()), "not an IANA time zone name"),
            (m.email_consent, bad_email_consent, f"not one of {sorted(m.email_consent_words)} or blank"),
            (m.ads_consent, bad_ads, f"not one of {sorted(m.flag_words)} or blank"),
            (m.inapp_consent, bad_inapp, f"not one of {sorted(m.flag_words)} or blank"),
            (m.modified, bad_modified, "not a timestamp like 2026-11-20 14:03"),
            (m.created, bad_created, "not a timestamp like 2026-11-20 14:03"),
        ],
    )
    repeated = frame[m.record_id].str.strip().duplicated(keep="first")
    frame = intake.reject(frame, repeated, m.record_id, f"{m.record_id} already used on an earlier row")
    index = frame.index
    return pd.DataFrame(
        {
            "external_id": frame[m.record_id].str.strip(),
            "email": email.loc[index],
            "phone": phone.loc[index],
            "first_name": none_if_blank(_column(frame, m.first_name)),
            "last_name": none_if_blank(_column(frame, m.last_name)),
            "city": none_if_blank(_column(frame, m.city)),
            "region": none_if_blank(_column(frame, m.region)),
            "country": none_if_blank(country.loc[index]),
            "zip": none_if_blank(_column(frame, m.zip)),
            "birthday": birthday.loc[index].dt.date.astype(object).where(birthday.loc[index].notna(), None),
            "loyalty_tier": none_if_blank(tier.loc[index]),
            "timezone": none_if_blank(timezone.loc[index]),
            "email_consent": email_consent.loc[index],
            "ads_consent": ads.loc[index],
            "inapp_consent": inapp.loc[index],
            "modified_at": modified.loc[index].fillna(created.loc[index]),
            ROW: frame[ROW],
        }
    ).reset_index(drop=True)
