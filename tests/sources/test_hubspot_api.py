"""Reading HubSpot contacts through the CRM API v3, against a local server that enforces the API's contract: a first
load holds what the account holds, an incremental search reads only what changed (past the 10,000-results cap and
through contacts that share one modification time), rate limits are waited out, a failed run resumes, archived
contacts are reported deleted, and a bad contact is quarantined as the same CSV row is.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pandas as pd
import pytest

import sources.hubspot_api as hubspot_api
from sources.base import ReadContext, SourceConfig, SourceRefused
from sources.crm import read_contacts
from sources.hubspot_api import HubSpotApi, HubSpotRead, contact_row
from sources.validate import Intake
from tests.peers.hubspot_api import CONTACTS, SEARCH, HubSpotServer, Reply, Throttle

NOW = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
CRM_EXPORT = Path(__file__).resolve().parents[1] / "data" / "sources" / "hubspot_contacts.csv"
FIRST = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
def crm() -> Iterator[HubSpotServer]:
    """Five contacts made in early November, an hour apart (one neither emailable nor callable); the server's clock
    is later, at the sync's week."""
    with HubSpotServer() as peer:
        peer.add_contact(" JANE.DOE@EXAMPLE.COM ", at=FIRST, firstname="Jane", lastname="Doe",
                         date_of_birth="1990-02-28", loyalty_tier="Gold", hs_marketable_status="true",
                         email_marketing_consent="subscribed", ads_personalization_consent="true",
                         in_app_messaging_consent="true", hs_timezone="america_slash_los_angeles",
                         city="San Francisco", state="California", country="US", zip="94103")  # fmt: skip
        peer.add_contact("erika.privat@web.example", at=FIRST + timedelta(hours=1), firstname="Erika",
                         phone="030 1234567", country="DE", hs_email_optout="true",
                         email_marketing_consent="subscribed", hs_marketable_status="false",
                         hs_timezone="europe_slash_berlin")  # fmt: skip
        peer.add_contact(None, at=FIRST + timedelta(hours=2), firstname="Nobody")
        peer.add_contact(None, at=FIRST + timedelta(hours=3), firstname="Sam", mobilephone="+1 415 555 0142")
        peer.add_contact("lee@example.com", at=FIRST + timedelta(hours=4), firstname="Lee", hs_timezone="Asia/Tokyo")
        yield peer


def api(peer: HubSpotServer, waits: list[float] | None = None, token: str | None = None) -> HubSpotApi:
    config = SourceConfig("crm", "hubspot://", "OMNICAST_CRM_URL", peer.token if token is None else token, peer.url)

    def sleep(seconds: float) -> None:  # no real waiting: the server's clock moves instead
        if waits is not None:
            waits.append(seconds)
        peer.advance(seconds)

    return HubSpotApi(config, sleep=sleep)


def read(peer: HubSpotServer, watermark: str | None = None, waits: list[float] | None = None) -> HubSpotRead:
    context = ReadContext(known_skus=set(), default_country="US", now=NOW,
                          watermarks={"contacts": watermark} if watermark else {})  # fmt: skip
    return api(peer, waits).read(context)


def ids(result: HubSpotRead) -> set[str]:
    return set(result.frames["contacts"]["external_id"])


def reachable(peer: HubSpotServer) -> set[str]:
    """The live contacts with an email or a phone (the others are quarantined)."""
    return {i for i, c in peer.contacts.items() if not c["archived"] and any(
        c["properties"].get(name) for name in ("email", "phone", "mobilephone"))}  # fmt: skip


# first load ----------------------------------------------------------------------------------------------------------


def test_a_first_load_holds_what_the_account_holds(crm: HubSpotServer) -> None:
    result = read(crm)
    assert result.error is None and not result.incremental and result.deleted == []
    assert ids(result) == reachable(crm) and len(ids(result)) == 4
    contacts = result.frames["contacts"].set_index("first_name")
    jane = contacts.loc["Jane"]
    assert (jane["email"], jane["timezone"], jane["loyalty_tier"], jane["country"]) == (
        "jane.doe@example.com", "America/Los_Angeles", "Gold", "US")  # fmt: skip
    assert (jane["email_consent"], jane["ads_consent"], jane["inapp_consent"], jane["marketing_consent"]) == (
        True, True, True, True)  # fmt: skip
    assert str(jane["birthday"]) == "1990-02-28" and jane["modified_at"] == pd.Timestamp(FIRST)
    erika = contacts.loc["Erika"]
    assert erika["email_consent"] is False  # unsubscribed from all email outranks the custom property
    assert erika["marketing_consent"] is False and erika["phone"] == "+49301234567"
    assert contacts.loc["Sam", "phone"] == "+14155550142"  # the mobile phone when there is no phone
    assert contacts.loc["Lee", "timezone"] == "Asia/Tokyo"
    assert result.watermarks == {"contacts": "2026-11-01T14:00:00.000Z"}  # the latest modification read
    intake = result.intakes["crm"]
    assert intake.count(len(result.frames["contacts"])).reconciles and intake.rows_quarantined == 1
    first_call = crm.calls[0]
    assert first_call.path == CONTACTS and first_call.params["limit"] == "100"
    assert set(first_call.params["properties"].split(",")) == set(hubspot_api.PROPERTIES)
    assert result.requests == 2  # the contacts, the archived ones


def test_a_first_load_watermark_stays_behind_hubspots_clock(crm: HubSpotServer) -> None:
    """A contact edited just before the load may sit on a page already read when a later one is edited: the
    watermark never passes the server's clock at the start of the load minus the margin."""
    crm.edit_contact(next(iter(crm.contacts)), at=crm.clock, lastname="Doe-Smith")
    result = read(crm)
    stamp = datetime.fromisoformat(result.watermarks["contacts"].replace("Z", "+00:00"))
    assert stamp == crm.clock - hubspot_api.CLOCK_MARGIN


def test_the_same_account_read_twice_gives_the_same_frames(crm: HubSpotServer) -> None:
    first, second = read(crm), read(crm)
    pd.testing.assert_frame_equal(first.frames["contacts"], second.frames["contacts"])
    assert first.watermarks == second.watermarks


def test_contact_rows_take_hubspots_internal_values() -> None:
    row = contact_row({"id": "7", "properties": {"hs_timezone": "america_slash_argentina_slash_buenos_aires",
                                                 "hs_marketable_status": "false", "hs_email_optout": "false",
                                                 "email_marketing_consent": "unsubscribed",
                                                 "lastmodifieddate": "2026-11-01T10:00:59.999Z"}})  # fmt: skip
    assert row["Time Zone"] == "America/Argentina/Buenos_Aires"
    assert row["Marketing contact status"] == "Non-marketing contact"
    assert row["Email Marketing Consent"] == "unsubscribed"
    assert row["Last Modified Date"] == "2026-11-01 10:00"
    assert contact_row({"id": "8", "properties": {"hs_timezone": "mars_slash_olympus"}})["Time Zone"] == (
        "mars_slash_olympus")  # unknown: the check sets it aside  # fmt: skip


# incremental ---------------------------------------------------------------------------------------------------------


def test_an_incremental_run_searches_only_the_changes(crm: HubSpotServer) -> None:
    first = read(crm)
    erika = next(i for i, c in crm.contacts.items() if c["properties"]["firstname"] == "Erika")
    jane = next(i for i, c in crm.contacts.items() if c["properties"]["firstname"] == "Jane")
    crm.edit_contact(erika, hs_email_optout="false", email_marketing_consent="subscribed")
    crm.edit_contact(jane, phone="+1 415 555 0199")
    before = len(crm.calls)
    second = read(crm, first.watermarks["contacts"])
    assert second.error is None and second.incremental
    lee = next(i for i, c in crm.contacts.items() if c["properties"]["firstname"] == "Lee")
    assert ids(second) == {erika, jane, lee}  # Lee: modified at the watermark itself, read again (inclusive)
    contacts = second.frames["contacts"].set_index("external_id")
    assert contacts.loc[erika, "email_consent"] is True
    assert contacts.loc[jane, "phone"] == "+14155550199"
    searches = [c for c in crm.calls[before:] if c.path == SEARCH]
    assert searches and all(c.method == "POST" for c in searches)
    body = searches[0].body
    lag = int(hubspot_api.INDEX_LAG.total_seconds() * 1000)
    assert body["filterGroups"][0]["filters"] == [
        {
            "propertyName": "lastmodifieddate",
            "operator": "GTE",
            "value": str(int(FIRST.timestamp() * 1000) + 4 * 3600_000 - lag),
        }
    ]
    assert body["sorts"] == [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}]
    assert body["limit"] == 200 and "after" not in body
    assert second.watermarks["contacts"] == hubspot_api._iso(int(crm.contacts[jane]["updatedAt"].timestamp() * 1000))


def test_an_archived_contact_is_reported_deleted(crm: HubSpotServer) -> None:
    first = read(crm)
    lee = next(i for i, c in crm.contacts.items() if c["properties"]["firstname"] == "Lee")
    crm.archive(lee)
    second = read(crm, first.watermarks["contacts"])
    assert second.deleted == [lee] and lee not in ids(second)
    assert read(crm).deleted == [lee]  # a first load reports them too


def test_more_changes_than_one_search_may_return_are_all_read(
    crm: HubSpotServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A search answers at most ``search_cap`` results (10,000 at HubSpot; 5 here, two a page): every page starts a
    new search from the latest modification read, so the reader never pages past the cap."""
    monkeypatch.setattr(hubspot_api, "SEARCH_LIMIT", 2)
    first = read(crm)
    crm.search_cap = 5
    changed = {crm.add_contact(f"new{n}@example.com", firstname=f"New{n}") for n in range(12)}
    second = read(crm, first.watermarks["contacts"])
    assert second.error is None and changed <= ids(second)
    searches = [c for c in crm.calls if c.path == SEARCH]
    assert all(c.status == 200 for c in searches) and all("after" not in c.body for c in searches)
    assert len(searches) >= 12 // 2


def test_contacts_sharing_one_modification_time_are_paged_by_id(
    crm: HubSpotServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bulk update dates seven contacts at the same millisecond: more than a page. The search pages through that
    moment by id, then moves past it."""
    monkeypatch.setattr(hubspot_api, "SEARCH_LIMIT", 2)
    first = read(crm)
    moment = crm.clock + timedelta(minutes=1)
    bulk = {crm.add_contact(f"bulk{n}@example.com", at=moment) for n in range(7)}
    later = crm.add_contact("later@example.com", at=moment + timedelta(seconds=1))
    second = read(crm, first.watermarks["contacts"])
    assert second.error is None and bulk | {later} <= ids(second)
    by_id = [c for c in crm.calls if c.path == SEARCH and c.body["sorts"][0]["propertyName"] == "hs_object_id"]
    assert by_id and all(c.status == 200 for c in by_id)
    assert second.watermarks["contacts"] == hubspot_api._iso(int((moment + timedelta(seconds=1)).timestamp() * 1000))


# rate limits and failures -----------------------------------------------------------------------------------------


def test_429_waits_as_long_as_retry_after_says(crm: HubSpotServer) -> None:
    waits: list[float] = []
    crm.script(Throttle(retry_after=3))
    result = read(crm, waits=waits)
    assert result.error is None and len(ids(result)) == 4
    assert len(waits) == 1 and 3 <= waits[0] < 4
    assert [c.status for c in crm.calls[:2]] == [429, 200]


def test_429_without_retry_after_waits_for_the_rate_window(crm: HubSpotServer) -> None:
    waits: list[float] = []
    crm.script(Throttle(), Reply(503, {"status": "error", "message": "Service Unavailable"}))
    result = read(crm, waits=waits)
    assert result.error is None
    assert 10 <= waits[0] < 13  # X-HubSpot-RateLimit-Interval-Milliseconds: 10000, plus a little jitter
    assert len(waits) == 2


def test_a_spent_rate_window_is_waited_out_before_a_429(crm: HubSpotServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two requests per ten seconds: the answer saying none remain makes the reader wait out the window first."""
    monkeypatch.setattr(hubspot_api, "LIST_LIMIT", 2)
    crm.rate_max = 2
    waits: list[float] = []
    result = read(crm, waits=waits)
    assert result.error is None and ids(result) == reachable(crm)
    assert all(c.status == 200 for c in crm.calls)  # never throttled
    assert waits and all(wait == 10.0 for wait in waits)


def test_the_daily_limit_stops_the_read_without_retrying(crm: HubSpotServer) -> None:
    first = read(crm)
    crm.edit_contact(next(iter(crm.contacts)), lastname="Changed")
    crm.script(None, Throttle(policy="DAILY"))  # the first search page answers; the archived list is refused
    waits: list[float] = []
    result = read(crm, first.watermarks["contacts"], waits=waits)
    assert result.error is not None and "daily API limit" in result.error and waits == []
    assert result.watermarks["contacts"] > first.watermarks["contacts"] and len(ids(result)) >= 1


def test_a_search_failing_half_way_keeps_its_pages_and_the_next_run_resumes(
    crm: HubSpotServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hubspot_api, "SEARCH_LIMIT", 2)
    first = read(crm)
    changed = [crm.add_contact(f"c{n}@example.com") for n in range(9)]
    crm.fail_after_pages = crm.pages_served + 3  # three search pages, then 502s
    partial = read(crm, first.watermarks["contacts"])
    assert partial.error is not None and partial.error.startswith("contacts: HTTP 502")
    read_first = ids(partial) & set(changed)
    assert read_first == set(changed[: len(read_first)]) and 0 < len(read_first) < len(changed)
    assert partial.watermarks["contacts"] == hubspot_api._iso(
        int(crm.contacts[changed[len(read_first) - 1]]["updatedAt"].timestamp() * 1000)
    )
    crm.fail_after_pages = None
    rest = read(crm, partial.watermarks["contacts"])
    assert rest.error is None and set(changed) <= ids(partial) | ids(rest)


def test_a_first_load_failing_half_way_has_no_watermark_and_starts_over(
    crm: HubSpotServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hubspot_api, "LIST_LIMIT", 2)
    crm.fail_after_pages = 1
    partial = read(crm)
    assert partial.error is not None and partial.watermarks == {} and len(ids(partial)) == 2
    crm.fail_after_pages = None
    again = read(crm)
    assert again.error is None and ids(again) == reachable(crm)


def test_an_account_that_never_answers_is_refused(crm: HubSpotServer) -> None:
    crm.fail_after_pages = 0
    with pytest.raises(SourceRefused, match=r"OMNICAST_CRM_URL \(hubspot:// via http"):
        read(crm)


# credentials ---------------------------------------------------------------------------------------------------------


def test_a_wrong_token_is_refused_naming_the_setting_and_the_scope(crm: HubSpotServer) -> None:
    with pytest.raises(SourceRefused, match="was refused") as refused:
        api(crm, token="pat-na1-wrong").read(ReadContext(set(), "US", NOW))
    assert "OMNICAST_CRM_TOKEN" in str(refused.value) and hubspot_api.SCOPE in str(refused.value)
    assert "INVALID_AUTHENTICATION" in str(refused.value)
    crm.scopes = frozenset({"crm.objects.companies.read"})
    with pytest.raises(SourceRefused, match="MISSING_SCOPES"):
        read(crm)


def test_a_missing_token_or_bad_url_is_refused_before_any_request() -> None:
    with pytest.raises(SourceRefused, match="OMNICAST_CRM_TOKEN is not set"):
        HubSpotApi(SourceConfig("crm", "hubspot://", "OMNICAST_CRM_URL")).check()
    with pytest.raises(SourceRefused, match="not a HubSpot account"):
        HubSpotApi(SourceConfig("crm", "hubspot://acme", "OMNICAST_CRM_URL", "pat-x")).check()
    with pytest.raises(SourceRefused, match="clear text"):
        HubSpotApi(SourceConfig("crm", "hubspot://123", "OMNICAST_CRM_URL", "pat-x", "http://crm.example")).check()
    reader = HubSpotApi(SourceConfig("crm", "hubspot://123", "OMNICAST_CRM_URL", "pat-x"))
    reader.check()
    assert reader.location == "hubspot://123" and reader._base() == "https://api.hubapi.com"


# bad records ---------------------------------------------------------------------------------------------------------


def test_a_bad_contact_is_quarantined_as_the_same_csv_row_is(crm: HubSpotServer, tmp_path: Path) -> None:
    result = read(crm)
    nobody = next(i for i, c in crm.contacts.items() if c["properties"]["firstname"] == "Nobody")
    with CRM_EXPORT.open(encoding="utf-8") as source:
        header = next(csv.reader(source))
    path = tmp_path / "hubspot_contacts.csv"
    with path.open("w", encoding="utf-8", newline="") as target:
        writer = csv.DictWriter(target, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        for row in (
            {"Record ID": i, "Email": "x@example.com", "Last Modified Date": "2026-11-01 10:00"} for i in ("1", "2")
        ):
            writer.writerow(row)
        writer.writerow({"Record ID": nobody, "First Name": "Nobody", "Create Date": "2026-11-01 12:00",
                         "Last Modified Date": "2026-11-01 12:00"})  # fmt: skip
    file_intake = Intake("crm", path.name)
    read_contacts(path, file_intake, "US", now=NOW)

    def reasons(frame: pd.DataFrame) -> list[tuple[str, str, str]]:
        return list(frame[["column", "reason", "scope"]].itertuples(index=False, name=None))

    api_quarantine = result.intakes["crm"].quarantine()
    assert (
        reasons(api_quarantine)
        == reasons(file_intake.quarantine())
        == [("Email", "neither an email nor a phone: the contact cannot be matched or reached", "row")]
    )
    assert nobody in api_quarantine["raw"].iloc[0]


# the peer's contract -------------------------------------------------------------------------------------------------


def test_the_stand_in_enforces_the_documented_contract(crm: HubSpotServer) -> None:
    headers = {"Authorization": f"Bearer {crm.token}"}
    with httpx.Client(base_url=crm.url, headers=headers) as client:
        assert client.get(CONTACTS, params={"limit": 101}).status_code == 400
        assert client.get(CONTACTS, params={"after": "made-up"}).json()["category"] == "VALIDATION_ERROR"
        page = client.get(CONTACTS, params={"limit": 2}).json()
        cursor = page["paging"]["next"]["after"]
        assert len(client.get(CONTACTS, params={"limit": 100, "after": cursor}).json()["results"]) == 3
        assert client.post(SEARCH, json={"limit": 201}).status_code == 400
        crm.search_cap = 4
        assert client.post(SEARCH, json={"limit": 2, "after": "2"}).status_code == 200
        assert client.post(SEARCH, json={"limit": 2, "after": "4"}).status_code == 400  # past the cap
        two_sorts = [{"propertyName": "createdate", "direction": "ASCENDING"}] * 2
        assert client.post(SEARCH, json={"sorts": two_sorts}).status_code == 400
        unknown = {"filterGroups": [{"filters": [{"propertyName": "shoe_size", "operator": "EQ", "value": "9"}]}]}
        assert client.post(SEARCH, json=unknown).status_code == 400
        iso = {"filterGroups": [{"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE",
                                              "value": "2026-11-01T13:00:00Z"}]}], "limit": 10}  # fmt: skip
        assert client.post(SEARCH, json=iso).json()["total"] == 2
        crm.archive(next(iter(crm.contacts)))
        assert client.post(SEARCH, json={"limit": 10}).json()["total"] == 4  # archived: never found
    assert httpx.get(f"{crm.url}{CONTACTS}").json()["category"] == "INVALID_AUTHENTICATION"
