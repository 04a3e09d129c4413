"""HubSpot contacts (sample/crm.py): most customers written differently, newsletter contacts, birthdays, consents."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import phonenumbers

from tests.sample.reading import AS_OF, EMAIL, plausible_birthday, records


def test_crm_holds_most_customers_written_differently_plus_newsletter_contacts(store: tuple[Path, dict]) -> None:
    out, manifest = store
    customers = {c["Email"].strip().lower(): c for c in records(out, "customers")}
    contacts = [c for c in records(out, "crm") if EMAIL.fullmatch(c["Email"].strip())]
    matched = [c for c in contacts if c["Email"].strip().lower() in customers]
    assert len(matched) > 0.8 * manifest["customers"]
    assert sum(c["Email"] != c["Email"].strip().lower() for c in matched) > 0.2 * len(matched)
    assert len(contacts) - len(matched) > manifest["expected"]["crm_only_contacts"]  # newsletter + guests
    consent = Counter(c["Email Marketing Consent"] for c in contacts)
    assert 0.5 < consent["Subscribed"] / len(contacts) < 0.7 and consent[""] > 0 and consent["Unsubscribed"] > 0
    assert {c["Loyalty Tier"] for c in contacts} == {"Bronze", "Silver", "Gold", ""}
    for contact in contacts[:300]:
        if contact["Phone Number"]:
            number = phonenumbers.parse(contact["Phone Number"], contact["Country/Region"])
            assert phonenumbers.is_valid_number(number), contact["Phone Number"]


def test_some_birthdays_are_feb_29_and_some_in_the_next_7_days(store: tuple[Path, dict]) -> None:
    out, manifest = store
    kept = [c for c in records(out, "crm") if EMAIL.fullmatch(c["Email"].strip()) or c["Phone Number"]]
    births = [
        c["Date of Birth"] for c in kept if c["Date of Birth"] and plausible_birthday(c["Date of Birth"], "2026-11-27")
    ]
    assert all(date.fromisoformat(b) for b in births)
    upcoming = {(AS_OF + timedelta(days=d)).strftime("%m-%d") for d in range(1, 8)}
    assert sum(b.endswith("02-29") for b in births) == manifest["expected"]["feb29_birthdays"] > 0
    assert sum(b[5:] in upcoming for b in births) == manifest["expected"]["birthdays_next_7_days"] > 0


def test_some_non_marketing_contacts_opted_in_on_shopify(store: tuple[Path, dict]) -> None:
    out, manifest = store
    opted_in = {c["Email"].strip().lower() for c in records(out, "customers") if c["Accepts Email Marketing"] == "yes"}
    contacts = records(out, "crm")
    non_marketing = [c for c in contacts if c["Marketing contact status"] == "Non-marketing contact"]
    found = sum(c["Email"].strip().lower() in opted_in for c in non_marketing)
    expected = manifest["expected"]
    assert len(non_marketing) >= expected["crm_non_marketing_contacts"] > 0
    assert expected["crm_non_marketing_shopify_opt_ins"] - expected["crm_invalid_email_with_phone"] <= found
    assert 0 < found <= expected["crm_non_marketing_shopify_opt_ins"]
