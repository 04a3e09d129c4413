"""The Meta custom-audience adapter against a local server that enforces the Graph API's documented custom-audience
contract (tests/peers/meta_graph.py): finding or creating the audience, adds and removals in upload sessions of
≤ 10,000 rows, retries of throttled, failed and lost calls, the errors that stop a run, and the normalization every
value goes through before it is hashed. No test waits for a real backoff: ``sleep`` is injected."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine

from channels import meta
from channels.base import ChannelConfigError
from channels.dispatch import dispatch
from channels.meta import SCHEMA, MetaAudienceChannel, graph_row, normalize_state_meta
from channels.registry import open_channel
from channels.spec import BY_NAME, ChannelResources, ChannelSpec
from models.message import OutboundMessage, Recipient
from tests.channels.conftest import add_customers
from tests.peers.meta_graph import Drop, MetaGraphServer, Reply, Throttle

TOKEN = "EAAB-Secret-Token-42"
ACCOUNT = "1234567890"
AUDIENCE = "omnicast: loyal-regulars"
HEX64 = re.compile(r"[0-9a-f]{64}")
COL = {key: i for i, key in enumerate(SCHEMA)}


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def member(
    i: int, *, retract: bool = False, audience: str = "loyal-regulars", occurrence: str = "audiences:2026-11-27",
    **fields: Any,
) -> OutboundMessage:  # fmt: skip
    """An audience message for customer ``i`` (``c<i>@example.com``, a US phone) with ``fields`` changed."""
    person: dict[str, Any] = {"email": f"c{i}@example.com", "phone": f"+1 503 555 {i:04d}", "first_name": "Ann",
                              "last_name": "Lee", "city": "Portland", "region": "Oregon", "country": "US",
                              "zip": "97201-1234", "birthday": date(1990, 4, 2)}  # fmt: skip
    person.update(fields)
    return OutboundMessage(occurrence_key=occurrence, channel="meta", recipient=Recipient(customer_id=i, **person),
                           campaign="loyal-sync", audience=audience, retract=retract)  # fmt: skip


@pytest.fixture
def server() -> Iterator[MetaGraphServer]:
    with MetaGraphServer(token=TOKEN, accounts=(ACCOUNT,), page_size=10) as peer:
        yield peer


class Harness:
    def __init__(self, server: MetaGraphServer) -> None:
        self.server = server
        self.sleeps: list[float] = []
        self.clients: list[httpx.Client] = []
        self.sessions = iter(range(1001, 10_000))

    def channel(self, *, token: str = TOKEN, **options: Any) -> MetaAudienceChannel:
        client = httpx.Client(timeout=5.0)
        self.clients.append(client)
        options.setdefault("base_url", self.server.url)
        options.setdefault("default_country", "US")
        return MetaAudienceChannel(token, ACCOUNT, client=client, sleep=self.sleeps.append, jitter=lambda: 0.5,
                                   session_ids=lambda: next(self.sessions), **options)  # fmt: skip


@pytest.fixture
def harness(server: MetaGraphServer) -> Iterator[Harness]:
    h = Harness(server)
    yield h
    for client in h.clients:
        client.close()


def member_keys(server: MetaGraphServer, name: str = AUDIENCE) -> set[str]:
    audience = server.audience_named(name)
    assert audience is not None
    return set(server.members[audience.id])


def emails(ids: Any) -> set[str]:
    return {sha(f"c{i}@example.com") for i in ids}


# audiences and sessions ------------------------------------------------------------------------------------------


def test_creates_the_audience_once_and_adds_members_in_sessions_of_small_batches(
    harness: Harness, server: MetaGraphServer
) -> None:
    channel = harness.channel(max_rows=3)
    results = channel.send_batch([member(i) for i in range(1, 8)])

    assert [a.name for a in server.audiences.values()] == [AUDIENCE]
    audience = server.audience_named(AUDIENCE)
    assert audience is not None and audience.customer_file_source == "USER_PROVIDED_ONLY"
    assert audience.subtype == "CUSTOM"
    assert member_keys(server) == emails(range(1, 8))
    sessions = [json.loads(call.params["session"]) for call in server.users_calls()]
    assert [s["batch_seq"] for s in sessions] == [1, 2, 3]
    assert [s["last_batch_flag"] for s in sessions] == [False, False, True]
    assert {s["session_id"] for s in sessions} == {1001} and {s["estimated_num_total"] for s in sessions} == {7}
    assert [len(json.loads(call.params["payload"])["data"]) for call in server.users_calls()] == [3, 3, 1]
    assert all(call.method == "POST" for call in server.users_calls())
    assert [r.status for r in results] == ["sent"] * 7
    assert {r.provider_id for r in results} == {f"meta:{audience.id}:1001"}

    more = channel.send_batch([member(8)])  # the id is cached: no second look-up, no second audience
    assert more[0].status == "sent" and len(server.audiences) == 1
    assert sum(call.path.endswith("/customaudiences") for call in server.calls) == 2  # one GET, one POST
    assert channel.stats["rows_add"] == 8 and channel.stats["calls"] == 4


def test_an_existing_audience_is_found_through_the_pages_and_not_created_again(
    harness: Harness, server: MetaGraphServer
) -> None:
    for n in range(23):  # three pages of ten
        server.add_audience(ACCOUNT, f"someone else's list {n}")
    existing = server.add_audience(ACCOUNT, AUDIENCE)

    results = harness.channel().send_batch([member(1)])

    assert results[0].status == "sent" and results[0].provider_id == f"meta:{existing}:1001"
    lists = [call for call in server.calls if call.path.endswith("/customaudiences")]
    assert [call.method for call in lists] == ["GET"] * 3
    assert [call.params.get("after") for call in lists] == [None, "10", "20"]
    assert len(server.audiences) == 24 and member_keys(server) == emails([1])
    assert all("access_token" not in call.params for call in server.calls)  # the token is a header, never the URL


def test_one_session_per_audience_and_operation_and_results_in_order(harness: Harness, server: MetaGraphServer) -> None:
    channel = harness.channel()
    channel.send_batch([member(i) for i in (1, 2, 3)])
    batch = [member(4), member(2, retract=True), member(5, audience="lapsed"), member(6)]
    results = channel.send_batch(batch)

    regulars, lapsed = server.audience_named(AUDIENCE), server.audience_named("omnicast: lapsed")
    assert regulars is not None and lapsed is not None
    assert [r.provider_id for r in results] == [f"meta:{regulars.id}:1002", f"meta:{regulars.id}:1003",
                                                f"meta:{lapsed.id}:1004", f"meta:{regulars.id}:1002"]  # fmt: skip
    assert member_keys(server) == emails([1, 3, 4, 6]) and member_keys(server, "omnicast: lapsed") == emails([5])
    assert [call.method for call in server.users_calls()] == ["POST", "POST", "DELETE", "POST"]


def test_a_retraction_removes_the_member(harness: Harness, server: MetaGraphServer) -> None:
    channel = harness.channel()
    channel.send_batch([member(i) for i in (1, 2, 3)])
    results = channel.send_batch([member(2, retract=True, occurrence="audiences:2026-11-28")])

    assert results[0].status == "sent"
    assert member_keys(server) == emails([1, 3])
    removal = server.users_calls()[-1]
    assert removal.method == "DELETE"
    assert json.loads(removal.params["payload"])["data"][0][COL["EMAIL"]] == sha("c2@example.com")
    assert channel.stats["rows_remove"] == 1


def test_a_second_identical_sync_sends_the_same_hashes_and_leaves_the_audience_as_it_was(
    harness: Harness, server: MetaGraphServer
) -> None:
    batch = [member(i) for i in (1, 2, 3)]
    harness.channel().send_batch(batch)
    before = {key: dict(row) for key, row in server.members[server.audience_named(AUDIENCE).id].items()}  # type: ignore[union-attr]
    again = harness.channel().send_batch(batch)  # a new run: finds the audience, adds the same people

    first, second = (json.loads(call.params["payload"])["data"] for call in server.users_calls())
    assert first == second
    assert all(r.status == "sent" for r in again) and len(server.audiences) == 1
    assert server.members[server.audience_named(AUDIENCE).id] == before  # type: ignore[union-attr]


# what goes over the wire -----------------------------------------------------------------------------------------


def test_no_plaintext_identifier_reaches_meta(harness: Harness, server: MetaGraphServer) -> None:
    people = [member(1, email="Zoe.Smith@Example.com", phone="(503) 555-0142", first_name="Zoë-Ann",
                     last_name="O'Brien", city="New York", region="New York"),
              member(2, retract=True, email="bob@example.org", phone="+44 20 7946 0018")]  # fmt: skip
    harness.channel().send_batch(people)

    bodies = " ".join(call.body for call in server.calls)
    for plain in ("Zoe.Smith", "zoe.smith", "example.com", "example.org", "bob@", "5550142", "555-0142", "79460018",
                  "Zo%C3%AB", "Brien", "brien", "New+York", "newyork", "portland", "97201", "1990"):  # fmt: skip
        assert plain not in bodies
    for call in server.users_calls():
        payload = json.loads(call.params["payload"])
        assert payload["schema"] == list(SCHEMA)
        for row in payload["data"]:
            assert all(HEX64.fullmatch(v) for key, v in zip(SCHEMA, row, strict=True) if v and key != "EXTERN_ID")
            assert row[COL["GEN"]] == ""  # unknown
        assert call.headers["authorization"] == f"Bearer {TOKEN}"


def test_a_message_without_a_usable_email_or_phone_fails_before_the_upload(
    harness: Harness, server: MetaGraphServer
) -> None:
    results = harness.channel().send_batch([member(1), member(2, email="not-an-address", phone="12"), member(3)])

    assert [r.status for r in results] == ["sent", "failed", "sent"]
    assert not results[1].retryable and "no usable email or phone" in (results[1].error or "")
    assert [len(json.loads(c.params["payload"])["data"]) for c in server.users_calls()] == [2]


def test_can_reach_needs_an_email_or_a_phone(harness: Harness) -> None:
    channel = harness.channel()
    assert channel.can_reach(member(1)) is None
    assert channel.can_reach(member(1, email=None)) is None
    assert channel.can_reach(member(1, phone=None)) is None
    assert channel.can_reach(member(1, email=None, phone=None)) == "no_address"


def test_rows_meta_finds_invalid_are_counted_and_never_quoted(
    harness: Harness, server: MetaGraphServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.invalid_extern_ids.update({"2", "9"})
    channel = harness.channel()
    with caplog.at_level(logging.DEBUG):
        results = channel.send_batch([member(1), member(2), member(3)])
        alone = channel.send_batch([member(9, occurrence="audiences:other")])

    answer = server.users_calls()[0].answer
    assert answer["num_invalid_entries"] == 1 and answer["invalid_entry_samples"]
    assert [r.status for r in results] == ["sent"] * 3  # Meta does not say which row: the call went over
    assert alone[0].status == "failed" and not alone[0].retryable  # every row of its call was invalid
    assert channel.stats["invalid_rows"] == 2 and member_keys(server) == emails([1, 3])
    text = caplog.text + " ".join(r.error or "" for r in [*results, *alone])
    assert "invalid" in caplog.text
    for sample in [*answer["invalid_entry_samples"], sha("c9@example.com")]:
        for part in sample.split(","):
            assert len(part) < 3 or part not in text


# retries and failures --------------------------------------------------------------------------------------------


def test_throttling_is_retried_with_backoff_then_succeeds(harness: Harness, server: MetaGraphServer) -> None:
    server.add_audience(ACCOUNT, AUDIENCE)
    server.script(None, Throttle(code=80003), Throttle(code=17), Throttle(status=429, retry_after=7))
    channel = harness.channel()
    results = channel.send_batch([member(1), member(2)])

    assert [r.status for r in results] == ["sent", "sent"]
    assert harness.sleeps == [1.0 * 0.75, 2.0 * 0.75, 7 + 0.25 * 4.0 * 0.5]
    assert member_keys(server) == emails([1, 2]) and channel.stats["retries"] == 3


def test_meta_usage_header_says_how_long_to_wait(harness: Harness, server: MetaGraphServer) -> None:
    server.add_audience(ACCOUNT, AUDIENCE)
    usage = json.dumps({"111": [{"type": "custom_audience", "call_count": 100, "estimated_time_to_regain_access": 2}]})
    throttled = {"error": {"message": "too many calls", "type": "OAuthException", "code": 80003, "is_transient": True}}
    server.script(None, Reply(400, throttled, headers={"X-Business-Use-Case-Usage": usage}))

    results = harness.channel(max_retry_wait=600).send_batch([member(1)])
    assert results[0].status == "sent" and harness.sleeps == [120 + 0.25 * 1.0 * 0.5]

    server.script(Reply(400, throttled, headers={"X-Business-Use-Case-Usage": usage}))
    waited = harness.channel(max_retry_wait=60).send_batch([member(2)])  # longer than the channel may wait
    assert waited[0].status == "failed" and waited[0].retryable and "asked to wait 120 s" in (waited[0].error or "")


def test_throttling_that_lasts_leaves_the_messages_retryable(harness: Harness, server: MetaGraphServer) -> None:
    server.add_audience(ACCOUNT, AUDIENCE)
    server.script(None)
    server.throttle(3, code=4)
    results = harness.channel(max_retries=2).send_batch([member(1), member(2)])

    assert all(r.status == "failed" and r.retryable and not r.in_doubt for r in results)
    assert "code 4" in (results[0].error or "") and "3 attempt(s)" in (results[0].error or "")
    assert member_keys(server) == set()


def test_a_server_error_is_retried_then_retryable(harness: Harness, server: MetaGraphServer) -> None:
    channel = harness.channel(max_retries=1, max_rows=2)
    channel.send_batch([member(1)])
    server.fail(2)
    results = channel.send_batch([member(i) for i in (2, 3, 4)])

    assert all(r.status == "failed" and r.retryable for r in results)
    assert "HTTP 500" in (results[0].error or "") and "not sent" in (results[2].error or "")
    assert len(server.users_calls()) == 3  # the first call and its one retry; the second batch was not tried
    server.fail(1)
    assert all(r.status == "sent" for r in channel.send_batch([member(i) for i in (2, 3, 4)]))  # retried and went
    assert member_keys(server) == emails([1, 2, 3, 4])


def test_a_lost_answer_is_repeated_and_meta_takes_it_once(harness: Harness, server: MetaGraphServer) -> None:
    server.add_audience(ACCOUNT, AUDIENCE)
    server.script(None, Drop())  # the list, then a users call processed whose answer never comes
    results = harness.channel().send_batch([member(1), member(2)])

    assert [r.status for r in results] == ["sent", "sent"]
    calls = server.users_calls()
    assert len(calls) == 2 and calls[0].body == calls[1].body  # same session, same batch_seq: a replay
    assert member_keys(server) == emails([1, 2])


def test_a_lost_answer_to_creating_the_audience_never_makes_a_second_one(
    harness: Harness, server: MetaGraphServer
) -> None:
    server.script(None, Drop())  # the list, then the create processed without an answer
    results = harness.channel().send_batch([member(1)])

    assert results[0].status == "sent" and len(server.audiences) == 1
    assert [c.method for c in server.calls if c.path.endswith("/customaudiences")] == ["GET", "POST", "GET"]


def test_an_invalid_parameter_is_permanent_for_its_call(harness: Harness, server: MetaGraphServer) -> None:
    server.add_audience(ACCOUNT, AUDIENCE)
    invalid = {"error": {"message": "Invalid parameter: c1@example.com", "type": "OAuthException", "code": 100}}
    server.script(None, Reply(400, invalid))
    results = harness.channel().send_batch([member(1), member(2)])

    assert all(r.status == "failed" and not r.retryable for r in results)
    assert results[0].error == "PermanentChannelError: Meta refused the call (HTTP 400, code 100, OAuthException)"


def test_an_audience_deleted_at_meta_is_created_again_next_time(harness: Harness, server: MetaGraphServer) -> None:
    channel = harness.channel()
    channel.send_batch([member(1)])
    gone = server.audience_named(AUDIENCE)
    assert gone is not None
    del server.audiences[gone.id]

    first = channel.send_batch([member(2)])
    assert first[0].status == "failed" and first[0].retryable
    again = channel.send_batch([member(2)])
    assert again[0].status == "sent" and member_keys(server) == emails([2])


# configuration -----------------------------------------------------------------------------------------------------


def test_a_refused_token_stops_the_run_before_anything_is_sent(harness: Harness, server: MetaGraphServer) -> None:
    channel = harness.channel(token="EAAB-wrong")
    with pytest.raises(ChannelConfigError) as raised:
        channel.send_batch([member(1)])
    assert "OMNICAST_META_ACCESS_TOKEN" in str(raised.value) and "code 190" in str(raised.value)
    assert "EAAB-wrong" not in str(raised.value)
    with pytest.raises(ChannelConfigError):  # and stays stopped without calling Meta again
        channel.send_batch([member(2)])
    assert len(server.calls) == 1 and not server.audiences


def test_a_token_refused_after_a_batch_went_over_leaves_the_rest_retryable(
    harness: Harness, server: MetaGraphServer
) -> None:
    server.add_audience(ACCOUNT, AUDIENCE)
    revoked = {"error": {"message": "Error validating access token", "type": "OAuthException", "code": 190}}
    server.script(None, None, Reply(400, revoked))
    results = harness.channel(max_rows=2).send_batch([member(i) for i in (1, 2, 3)])

    assert [r.status for r in results] == ["sent", "sent", "failed"]
    assert results[2].retryable and "not sent" in (results[2].error or "")


def test_an_unknown_ad_account_or_api_version_stops_the_run(harness: Harness, server: MetaGraphServer) -> None:
    stranger = MetaAudienceChannel(TOKEN, "act_999", client=harness.channel().client, base_url=server.url)
    with pytest.raises(ChannelConfigError, match="act_999"):
        stranger.send_batch([member(1)])
    with pytest.raises(ChannelConfigError, match="api_version"):
        harness.channel(api_version="v2.0").send_batch([member(1)])


def _meta_spec() -> ChannelSpec:
    spec = BY_NAME["meta"]
    assert spec.adapter_for("meta") is not None  # the channel table carries the API adapter
    return spec


def _resources(server: MetaGraphServer, **settings: Any) -> ChannelResources:
    fields = {"meta_access_token": TOKEN, "meta_graph_url": server.url, "default_country": "US"} | settings
    return ChannelResources(SimpleNamespace(**fields))


@pytest.mark.parametrize("url", [f"meta://{ACCOUNT}", f"meta://act_{ACCOUNT}?api_version=v22.0&max_retries=1"])
def test_opened_from_its_url(server: MetaGraphServer, url: str) -> None:
    channel = open_channel(_meta_spec(), url, _resources(server))
    try:
        assert isinstance(channel, MetaAudienceChannel) and channel.account == ACCOUNT and channel.owns_client
        assert channel.send_batch([member(1)])[0].status == "sent"
        assert TOKEN not in repr(channel)
    finally:
        channel.close()
        channel.close()
    assert channel.client.is_closed


@pytest.mark.parametrize(
    ("url", "settings", "says"),
    [
        (f"meta://{ACCOUNT}", {"meta_access_token": None}, "OMNICAST_META_ACCESS_TOKEN"),
        (f"meta://{ACCOUNT}", {"meta_access_token": "  "}, "OMNICAST_META_ACCESS_TOKEN"),
        ("meta://ads-account", {}, "must be digits"),
        (f"meta://user@{ACCOUNT}", {}, "the ad account alone"),
        (f"meta://{ACCOUNT}/path", {}, "the ad account alone"),
        (f"meta://{ACCOUNT}?api_version=21", {}, "api_version"),
        (f"meta://{ACCOUNT}?page=2", {}, "unknown option 'page'"),
        (f"meta://{ACCOUNT}", {"meta_graph_url": "ftp://graph.example"}, "OMNICAST_META_GRAPH_URL"),
    ],
)
def test_a_wrong_url_or_setting_is_a_config_error(
    server: MetaGraphServer, url: str, settings: dict[str, Any], says: str
) -> None:
    with pytest.raises(ChannelConfigError, match=says) as raised:
        open_channel(_meta_spec(), url, _resources(server, **settings))
    assert TOKEN not in str(raised.value)


def test_a_secret_str_token_is_read(server: MetaGraphServer) -> None:
    from pydantic import SecretStr

    channel = open_channel(_meta_spec(), f"meta://{ACCOUNT}", _resources(server, meta_access_token=SecretStr(TOKEN)))
    try:
        assert channel.send_batch([member(1)])[0].status == "sent"
    finally:
        channel.close()


def test_an_injected_client_is_left_open(harness: Harness) -> None:
    channel = harness.channel()
    channel.close()
    assert not channel.client.is_closed


# through dispatch ----------------------------------------------------------------------------------------------


def test_dispatch_hands_over_whole_batches_and_a_retraction_removes(
    sqlite_engine: Engine, harness: Harness, server: MetaGraphServer
) -> None:
    add_customers(sqlite_engine, range(1, 6), channel="ads")
    channel = harness.channel()
    report = dispatch(sqlite_engine, [member(i) for i in range(1, 6)], {"meta": channel})
    assert report.total_sent == 5 and report.balanced
    assert len(server.users_calls()) == 1  # one call, not one per message
    removal = dispatch(sqlite_engine, [member(3, retract=True, occurrence="audiences:removal")], {"meta": channel})
    assert removal.total_sent == 1 and member_keys(server) == emails([1, 2, 4, 5])


# normalization -------------------------------------------------------------------------------------------------------


def cell(message: OutboundMessage, key: str) -> str:
    return graph_row(message, "US")[COL[key]]


def test_names_keep_their_letters_lowercase_without_punctuation() -> None:
    assert cell(member(1, first_name="Zoë-Ann"), "FN") == sha("zoëann")
    assert cell(member(1, first_name="Zoe\u0308-Ann"), "FN") == sha("zoëann")  # decomposed ë: the same hash
    assert cell(member(1, last_name="  O'Brien-Smith "), "LN") == sha("obriensmith")
    assert cell(member(1, first_name="José María"), "FN") == sha("josémaría")
    assert cell(member(1, first_name=None), "FN") == ""


@pytest.mark.parametrize(
    ("phone", "country", "digits"),
    [
        ("(503) 555-0100", "US", "15035550100"),
        ("020 7946 0018", "GB", "442079460018"),
        ("030 12345678", "DE", "493012345678"),
        ("06 12 34 56 78", "FR", "33612345678"),
        ("03-1234-5678", "JP", "81312345678"),
        ("+1 503.555.0100", None, "15035550100"),
    ],
)
def test_phones_become_country_code_and_digits(phone: str, country: str | None, digits: str) -> None:
    assert cell(member(1, phone=phone, country=country), "PHONE") == sha(digits)


def test_a_phone_without_a_country_is_read_in_the_default_country() -> None:
    message = member(1, phone="503-555-0100", country=None)
    assert graph_row(message, "US")[COL["PHONE"]] == sha("15035550100")
    assert graph_row(message, "US")[COL["COUNTRY"]] == ""  # not claimed as known
    assert graph_row(message, None)[COL["PHONE"]] == ""


def test_emails_are_trimmed_and_lowercased_and_gmail_is_not_special() -> None:
    assert cell(member(1, email="  John.Doe+Coffee@GMail.com "), "EMAIL") == sha("john.doe+coffee@gmail.com")
    assert cell(member(1, email="nobody"), "EMAIL") == ""


@pytest.mark.parametrize("state", ["California", "CA", "ca", " california ", "Calif."])
def test_us_states_are_their_two_letter_codes(state: str) -> None:
    expected = "calif" if state == "Calif." else "ca"
    assert cell(member(1, region=state), "ST") == sha(expected)


def test_states_outside_the_us_and_the_other_fields() -> None:
    assert normalize_state_meta("New York", "US") == "ny" and normalize_state_meta("District of Columbia") == "dc"
    assert normalize_state_meta("Bavaria", "DE") == "bavaria" and normalize_state_meta("CA", "CA") == "ca"
    assert normalize_state_meta("Île-de-France", "FR") == "îledefrance" and normalize_state_meta("") is None
    message = member(7, city="New York", zip="10001-2345", country="US", birthday=date(1985, 12, 31))
    row = graph_row(message, "US")
    assert row[COL["CT"]] == sha("newyork") and row[COL["ZIP"]] == sha("10001")
    assert row[COL["COUNTRY"]] == sha("us") and row[COL["DOBY"]] == sha("1985")
    assert row[COL["DOBM"]] == sha("12") and row[COL["DOBD"]] == sha("31")
    assert row[COL["EXTERN_ID"]] == "7" and row[COL["GEN"]] == ""
    assert cell(member(1, zip="SW1A 1AA", country="GB"), "ZIP") == sha("sw1a1aa")
    assert meta.audience_name(member(1, audience="VIP buyers")) == "omnicast: VIP buyers"


def test_at_most_ten_thousand_rows_go_in_one_call(harness: Harness, server: MetaGraphServer) -> None:
    people = [member(i, phone=None, first_name=None, last_name=None, city=None, region=None, zip=None, birthday=None)
              for i in range(1, 10_002)]  # fmt: skip
    results = harness.channel().send_batch(people)

    assert [len(json.loads(c.params["payload"])["data"]) for c in server.users_calls()] == [10_000, 1]
    assert all(r.status == "sent" for r in results) and len(member_keys(server)) == 10_001
    rows = [[sha("x@example.com")] + [""] * (len(SCHEMA) - 1)] * 10_001
    too_many = {"payload": json.dumps({"schema": list(SCHEMA), "data": rows}),
                "session": json.dumps({"session_id": 7, "batch_seq": 1, "last_batch_flag": True})}  # fmt: skip
    audience = server.audience_named(AUDIENCE)
    assert audience is not None
    answer = httpx.post(f"{server.url}/v21.0/{audience.id}/users", data=too_many, headers={"Authorization":
                        f"Bearer {TOKEN}"}, timeout=5)  # fmt: skip
    assert answer.status_code == 400 and answer.json()["error"]["code"] == 100


@pytest.mark.parametrize(
    ("payload", "session", "says"),
    [
        ({"schema": "EMAIL", "data": [["a"]]}, {"session_id": 1, "batch_seq": 1, "last_batch_flag": True}, "schema"),
        ({"schema": ["EMAIL", "SHOE"], "data": [["", ""]]}, {"session_id": 1, "batch_seq": 1, "last_batch_flag": True},
         "schema"),
        ({"schema": ["EMAIL", "FN"], "data": [[""]]}, {"session_id": 1, "batch_seq": 1, "last_batch_flag": True},
         "one value per schema key"),
        ({"schema": ["EMAIL"], "data": [[""]]}, None, "session"),
        ({"schema": ["EMAIL"], "data": [[""]]}, {"session_id": 1, "batch_seq": 0, "last_batch_flag": True},
         "batch_seq"),
        ({"schema": ["EMAIL"], "data": [[""]]}, {"session_id": 1, "batch_seq": 1}, "last_batch_flag"),
    ],
)  # fmt: skip
def test_the_peer_refuses_what_meta_refuses(
    server: MetaGraphServer, payload: dict[str, Any], session: dict[str, Any] | None, says: str
) -> None:
    audience_id = server.add_audience(ACCOUNT, AUDIENCE)
    data = {"payload": json.dumps(payload)} | ({"session": json.dumps(session)} if session else {})
    answer = httpx.post(f"{server.url}/v21.0/{audience_id}/users", data=data, headers={"Authorization":
                        f"Bearer {TOKEN}"}, timeout=5)  # fmt: skip
    assert answer.status_code == 400 and answer.json()["error"]["code"] == 100
    assert says in answer.json()["error"]["message"]


def test_the_peer_keeps_batch_seq_in_order_and_wants_a_token(server: MetaGraphServer) -> None:
    audience_id = server.add_audience(ACCOUNT, AUDIENCE)
    url, auth = f"{server.url}/v21.0/{audience_id}/users", {"Authorization": f"Bearer {TOKEN}"}

    def call(seq: int, last: bool) -> httpx.Response:
        data = {"payload": json.dumps({"schema": ["EMAIL"], "data": [[sha("a@example.com")]]}),
                "session": json.dumps({"session_id": 5, "batch_seq": seq, "last_batch_flag": last})}  # fmt: skip
        return httpx.post(url, data=data, headers=auth, timeout=5)

    assert [call(seq, last).status_code for seq, last in [(1, False), (2, False), (2, False), (1, False)]] == [
        200, 200, 200, 400]  # fmt: skip
    assert call(3, True).status_code == 200 and call(4, False).status_code == 400  # the session ended
    listing = httpx.get(f"{server.url}/v21.0/act_{ACCOUNT}/customaudiences", params={"access_token": "nope"})
    assert listing.status_code == 400 and listing.json()["error"]["code"] == 190
    made = httpx.post(f"{server.url}/v21.0/act_{ACCOUNT}/customaudiences", data={"name": "x"}, headers=auth)
    assert made.status_code == 400 and made.json()["error"]["code"] == 100


# removals as the audiences flow makes them -------------------------------------------------------------------------


def removal(i: int, hashes: dict[str, str]) -> OutboundMessage:
    """A removal as ``models.audiences`` makes it: no profile, the hashes its addition uploaded."""
    return OutboundMessage(occurrence_key="audience:loyal-regulars:remove:2026-11-28", channel="meta",
                           recipient=Recipient(customer_id=i), campaign="audience:loyal-regulars",
                           audience="loyal-regulars", context={"identifiers": hashes}, retract=True)  # fmt: skip


def test_a_removal_uploads_the_stored_hashes_of_an_erased_profile(harness: Harness, server: MetaGraphServer) -> None:
    from channels.ads import identifiers

    channel = harness.channel()
    added = [member(1), member(2, email=None), member(3)]
    channel.send_batch(added)
    assert member_keys(server) == {sha("c1@example.com"), sha("15035550002"), sha("c3@example.com")}

    gone = [removal(1, identifiers("meta", added[0])), removal(2, meta.graph_identifiers(added[1], "US"))]
    assert all(channel.can_reach(m) is None for m in gone)
    results = channel.send_batch(gone)

    assert [r.status for r in results] == ["sent", "sent"]
    assert member_keys(server) == {sha("c3@example.com")}
    rows = json.loads(server.users_calls()[-1].params["payload"])["data"]
    assert rows[1] == graph_row(added[1], "US")  # the removal's row is the addition's row
    assert [row[COL["EXTERN_ID"]] for row in rows] == ["1", "2"]


def test_a_removal_never_uploads_a_plain_stored_value_and_needs_an_email_or_phone(harness: Harness) -> None:
    plain = removal(4, {"email": "c4@example.com", "country": "US", "phone": sha("15035550004")})
    row = graph_row(plain)
    assert row[COL["EMAIL"]] == "" and row[COL["COUNTRY"]] == "" and row[COL["PHONE"]] == sha("15035550004")
    nothing = removal(5, {"fn": sha("ann")})
    channel = harness.channel()
    assert channel.can_reach(nothing) == "no_address"
    result = channel.send_batch([nothing])[0]
    assert result.status == "failed" and not result.retryable
    with_profile = replace(nothing, recipient=Recipient(customer_id=5, email="c5@example.com"))
    assert graph_row(with_profile)[COL["EMAIL"]] == sha("c5@example.com")  # no stored key: today's profile
