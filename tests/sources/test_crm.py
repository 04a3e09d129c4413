"""Reading CRM contacts: contacts written differently from the store's customers still find them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, select

from models.schema import Customer, Identity
from models.sync import sync_store
from sources.crm import CrmMapping, read_contacts
from sources.validate import Intake, SourceFileError

DATA = Path(__file__).resolve().parents[1] / "data" / "sources"
CRM = DATA / "hubspot_contacts.csv"
HEADER = CRM.read_text(encoding="utf-8").splitlines()[0]
NOW = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)


def contacts_file(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "hubspot_contacts.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


def read(path: Path, default_country: str = "US") -> tuple[Intake, pd.DataFrame]:
    intake = Intake("crm", path.name)
    return intake, read_contacts(path, intake, default_country, now=NOW)


def customer_of(engine: Engine, source: str, external_id: str) -> int:
    with engine.connect() as conn:
        query = select(Identity.customer_id).where(Identity.source == source, Identity.external_id == external_id)
        return conn.execute(query).scalar_one()


def test_contact_email_with_other_case_and_spaces_is_normalized() -> None:
    _, contacts = read(CRM)
    jane = contacts.set_index("external_id").loc["501"]
    assert jane["email"] == "jane.doe@example.com"
    assert jane["birthday"] == date(1990, 2, 28)
    assert jane["loyalty_tier"] == "Gold"
    assert jane["timezone"] == "America/Los_Angeles"


def test_national_phone_is_read_with_the_contacts_country() -> None:
    _, contacts = read(CRM)
    assert contacts.set_index("external_id").loc["502", "phone"] == "+49301234567"
    assert contacts.set_index("external_id").loc["504", "phone"] == "+14155550142"


def test_national_phone_without_country_uses_the_store_default(tmp_path: Path) -> None:
    path = contacts_file(tmp_path, "601,Al,Bo,,020 7946 0958,,,,,,,,,,,,2026-01-01 10:00,2026-01-01 10:00")
    _, contacts = read(path, default_country="GB")
    assert contacts.iloc[0]["phone"] == "+442079460958"


def test_contact_with_invalid_email_is_kept_when_its_phone_is_valid() -> None:
    intake, contacts = read(CRM)
    phil = contacts.set_index("external_id").loc["504"]
    assert phil["email"] is None
    assert intake.rows_quarantined == 0


def test_contact_is_quarantined_only_when_it_cannot_say_who_it_is(tmp_path: Path) -> None:
    path = contacts_file(
        tmp_path,
        "701,Jo,Bad,jo.doe@@example,,,,,Subscribed,,,,,,,,2026-01-01 10:00,2026-01-01 10:00",
        "702,No,Contact,,,,,,,,,,,,,,2026-01-01 10:00,2026-01-01 10:00",
        "703,Ok,Fine,ok@example.com,,2001-02-29,,,,,,,,,,,2026-01-01 10:00,2026-01-01 10:00",
        "704,Tz,Bad,tz@example.com,,,,,,,,Mars/Olympus,,,,,2026-01-01 10:00,2026-01-01 10:00",
        "705,Con,Sent,con@example.com,,,,,Maybe,,,,,,,,2026-01-01 10:00,2026-01-01 10:00",
        "706,Good,Row,good@example.com,,2000-02-29,,,Unsubscribed,false,,,,,,,2026-01-01 10:00,2026-01-02 11:30",
        "706,Same,Record,other@example.com,,,,,,,,,,,,,2026-01-01 10:00,2026-01-01 10:00",
    )
    intake, contacts = read(path)
    quarantined = intake.quarantine()
    rows = quarantined[quarantined["scope"] == "row"].set_index("row_number")["column"].to_dict()
    fields = quarantined[quarantined["scope"] == "field"].set_index("row_number")["column"].to_dict()
    assert rows == {1: "Email", 2: "Email", 7: "Record ID"}  # unreachable twice; the same record written twice
    assert fields == {3: "Date of Birth", 4: "Time Zone", 5: "Email Marketing Consent"}  # 2001 is no leap year
    loaded = contacts.set_index("external_id")
    assert list(loaded.index) == ["703", "704", "705", "706"]
    assert loaded.loc["703", "birthday"] is None and loaded.loc["704", "timezone"] is None
    assert loaded.loc["705", "email_consent"] is None  # an unknown word is no statement
    good = loaded.loc["706"]
    assert (good["email_consent"], good["ads_consent"], good["inapp_consent"]) == (False, False, None)
    assert good["modified_at"] == datetime(2026, 1, 2, 11, 30, tzinfo=UTC)
    count = intake.count(len(contacts))
    assert count.reconciles and (count.rows_quarantined, count.fields_quarantined) == (3, 3)


def test_unsubscribe_survives_a_bad_birthday_and_time_zone(tmp_path: Path) -> None:
    path = contacts_file(
        tmp_path,
        "801,Una,Sub,una@example.com,,1800-01-01,,,Unsubscribed,,,Europe / Berlin,,,,,2026-01-01 10:00,"
        "2026-11-02 09:00",
        "802,Fut,Ure,fut@example.com,,2031-05-05,Platinum,Marketing contact,Unsubscribed,,,,,,,,2026-01-01 10:00,"
        "2026-11-02 09:00",
    )
    intake, contacts = read(path)
    assert intake.rows_quarantined == 0
    assert list(contacts["email_consent"]) == [False, False]
    assert list(contacts["birthday"]) == [None, None]  # before 1900, and in the future
    assert contacts.iloc[1]["loyalty_tier"] is None
    fields = intake.quarantine().set_index(["row_number", "column"])["reason"]
    assert "before 1900 or in the future" in fields[(1, "Date of Birth")]
    assert "IANA" in fields[(1, "Time Zone")]
    assert {(2, "Date of Birth"), (2, "Loyalty Tier")} <= set(fields.index)


def test_marketing_contact_status_is_read_as_a_marketing_statement(tmp_path: Path) -> None:
    path = contacts_file(
        tmp_path,
        "901,Mar,Keting,m@example.com,,,,Marketing contact,,,,,,,,,2026-01-01 10:00,2026-11-02 09:00",
        "902,Non,Marketing,n@example.com,,,,Non-marketing contact,Subscribed,,,,,,,,2026-01-01 10:00,2026-11-02 09:00",
        "903,Odd,Word,o@example.com,,,,Sometimes,,,,,,,,,2026-01-01 10:00,2026-11-02 09:00",
    )
    intake, contacts = read(path)
    assert list(contacts["marketing_consent"]) == [True, False, None]
    field = intake.quarantine().iloc[0]
    assert (field["row_number"], field["column"], field["scope"]) == (3, "Marketing contact status", "field")


def test_future_or_unreadable_modification_date_leaves_the_statements_undated(tmp_path: Path) -> None:
    path = contacts_file(
        tmp_path,
        "951,Fu,Ture,f@example.com,,,,,Subscribed,,,,,,,,2026-01-01 10:00,2099-01-01 00:00",
        "952,Ex,Cel,e@example.com,,,,,Unsubscribed,,,,,,,,2026-01-01 10:00,11/20/2026 14:03",
        "953,Bl,Ank,b@example.com,,,,,Unsubscribed,,,,,,,,2026-01-01 10:00,",
    )
    intake, contacts = read(path)
    assert intake.rows_quarantined == 0 and intake.fields_quarantined == 2
    assert contacts["modified_at"].isna().tolist() == [True, True, False]  # a blank one falls back to Create Date
    assert contacts.iloc[2]["modified_at"] == datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


def test_missing_crm_column_names_file_column_and_export_path(tmp_path: Path) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text("Record ID,First Name,Email\n1,Al,al@example.com\n", encoding="utf-8")
    with pytest.raises(SourceFileError) as error:
        read(path)
    message = str(error.value)
    assert message.startswith("contacts.csv: missing columns 'Phone Number', 'Email Marketing Consent'")
    assert "HubSpot → Contacts → Export" in message


def test_other_crm_columns_are_read_through_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "klaviyo.csv"
    path.write_text(
        "Id,Email Address,Phone,Consent,Updated\nk1, Jane.Doe@Example.com ,,SUBSCRIBED,2026-11-02 09:00\n",
        encoding="utf-8",
    )
    mapping = CrmMapping(record_id="Id", email="Email Address", phone="Phone", email_consent="Consent",
                         modified="Updated")  # fmt: skip
    intake = Intake("crm", path.name)
    contacts = read_contacts(path, intake, "US", mapping)
    assert contacts.iloc[0]["email"] == "jane.doe@example.com"
    assert contacts.iloc[0]["email_consent"] is True


def test_crm_contact_joins_by_national_format_phone(engine: Engine) -> None:
    sync_store(engine, DATA / "store", CRM, None, run_id="run-1", now=NOW)
    assert customer_of(engine, "crm", "502") == customer_of(engine, "shopify", "7012345678904")
    with engine.connect() as conn:
        erika = conn.execute(select(Customer).where(Customer.id == customer_of(engine, "crm", "502"))).one()
    assert erika.email == "erika@example.de"  # Shopify wins for contact fields
    assert erika.birthday == date(1985, 7, 14)  # CRM fills what Shopify does not know
    assert erika.loyalty_tier == "Silver"


def test_crm_contact_joins_by_email_written_differently(engine: Engine) -> None:
    sync_store(engine, DATA / "store", CRM, None, run_id="run-1", now=NOW)
    assert customer_of(engine, "crm", "501") == customer_of(engine, "shopify", "7012345678901")


def test_crm_only_contacts_become_profiles(engine: Engine) -> None:
    sync_store(engine, DATA / "store", CRM, None, run_id="run-1", now=NOW)
    nora, phil = customer_of(engine, "crm", "503"), customer_of(engine, "crm", "504")
    with engine.connect() as conn:
        people = {row.id: row for row in conn.execute(select(Customer).where(Customer.id.in_([nora, phil])))}
    assert people[nora].email == "nora@example.org"
    assert people[phil].phone == "+14155550142" and people[phil].email is None
