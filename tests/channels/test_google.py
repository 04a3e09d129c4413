"""The Google Customer Match adapter against a local server that enforces the Data Manager API's documented audience
contract (tests/peers/google_dm.py): ingest and remove in requests of ≤ 10,000 members, removals with the stored
identifiers, retries of throttled, failed and lost requests, refused members, the errors that stop a run, and what
goes over the wire (hashes only, but for Country and Zip). No test waits for a real backoff: ``sleep`` is injected."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine

from channels.ads import identifiers
from channels.base import ChannelConfigError
from channels.dispatch import dispatch
from channels.google import GoogleCustomerMatchChannel, member_values, parse_lists, user_identifiers
from channels.registry import open_channel
from channels.spec import BY_NAME, ChannelResources, ChannelSpec
from models.message import OutboundMessage, Recipient
from tests.channels.conftest import add_customers
from tests.peers.google_dm import Drop, GoogleDataManagerServer, Reply, Throttle

TOKEN = "ya29.Secret-Token-42"
ACCOUNT = "1234567890"
CHURN, VIP = "111", "222"
LISTS = {"churn-risk": CHURN, "high-value": VIP}
HEX64 = re.compile(r"[0-9a-f]{64}")


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def member(
    i: int, *, retract: bool = False, audience: str = "churn-risk", occurrence: str = "audience:churn-risk:add",
    **fields: Any,
) -> OutboundMessage:  # fmt: skip
    """An audience message for customer ``i`` (``c<i>@example.com``, a US phone, a full address), ``fields`` changed."""
    person: dict[str, Any] = {"email": f"c{i}@example.com", "phone": f"+1 503 555 {i:04d}", "first_name": "Ann",
                              "last_name": "Lee", "country": "US", "zip": "97201-1234"}  # fmt: skip
    person.update(fields)
    return OutboundMessage(occurrence_key=occurrence, channel="google", recipient=Recipient(customer_id=i, **person),
                           campaign="audience:churn-risk", audience=audience, retract=retract)  # fmt: skip


def removal(i: int, stored: dict[str, str], audience: str = "churn-risk") -> OutboundMessage:
    """A removal as ``models.audiences`` makes it: no profile, the identifiers its addition uploaded."""
    return OutboundMessage(occurrence_key=f"audience:{audience}:remove", channel="google",
                           recipient=Recipient(customer_id=i), campaign=f"audience:{audience}", audience=audience,
                           context={"identifiers": stored}, retract=True)  # fmt: skip


@pytest.fixture
def server() -> Iterator[GoogleDataManagerServer]:
    with GoogleDataManagerServer(token=TOKEN, accounts={ACCOUNT: {CHURN, VIP}}, managers={"9990001111"}) as peer:
        yield peer


class Harness:
    def __init__(self, server: GoogleDataManagerServer) -> None:
        self.server = server
        self.sleeps: list[float] = []
        self.clients: list[httpx.Client] = []

    def channel(self, *, token: str = TOKEN, account: str = ACCOUNT, **options: Any) -> GoogleCustomerMatchChannel:
        client = httpx.Client(timeout=5.0)
        self.clients.append(client)
        options.setdefault("base_url", self.server.url)
        lists = options.pop("lists", LISTS)
        return GoogleCustomerMatchChannel(token, account, lists, client=client, sleep=self.sleeps.append,
                                          jitter=lambda: 0.5, **options)  # fmt: skip


@pytest.fixture
def harness(server: GoogleDataManagerServer) -> Iterator[Harness]:
    h = Harness(server)
    yield h
    for client in h.clients:
        client.close()


def emails(ids: Any) -> set[str]:
    return {sha(f"c{i}@example.com") for i in ids}


def keys(server: GoogleDataManagerServer, list_id: str = CHURN) -> set[str]:
    return set(server.list_members(list_id))


def bodies(server: GoogleDataManagerServer, kind: str = "") -> list[dict[str, Any]]:
    return [call.json for call in server.calls if call.path.endswith(kind) and isinstance(call.json, dict)]


# adding and removing ---------------------------------------------------------------------------------------------


def test_ingests_in_requests_of_at_most_max_members(harness: Harness, server: GoogleDataManagerServer) -> None:
    results = harness.channel(max_members=3).send_batch([member(i) for i in range(1, 8)])

    assert [r.status for r in results] == ["sent"] * 7
    assert keys(server) == emails(range(1, 8))
    sent = bodies(server, ":ingest")
    assert [len(b["audienceMembers"]) for b in sent] == [3, 3, 1]
    request_ids = [call.answer["requestId"] for call in server.calls]
    assert [r.provider_id for r in results] == [f"google:{CHURN}:{request_ids[i // 3]}" for i in range(7)]
    body = sent[0]
    assert body["destinations"] == [{"operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": ACCOUNT},
                                     "productDestinationId": CHURN}]  # fmt: skip
    assert body["encoding"] == "HEX" and "validateOnly" not in body
    assert body["consent"] == {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED"}
    assert body["termsOfService"] == {"customerMatchTermsOfServiceStatus": "ACCEPTED"}
    assert all(call.headers["authorization"] == f"Bearer {TOKEN}" for call in server.calls)


def test_one_request_per_list_and_operation_and_results_in_order(
    harness: Harness, server: GoogleDataManagerServer
) -> None:
    channel = harness.channel()
    channel.send_batch([member(i) for i in (1, 2, 3)])
    batch = [member(4), member(2, retract=True), member(5, audience="high-value"), member(6)]
    results = channel.send_batch(batch)

    assert [r.status for r in results] == ["sent"] * 4
    assert [r.provider_id.split(":")[1] for r in results if r.provider_id] == [CHURN, CHURN, VIP, CHURN]
    assert results[0].provider_id == results[3].provider_id != results[1].provider_id
    assert keys(server) == emails([1, 3, 4, 6]) and keys(server, VIP) == emails([5])
    assert [call.path.rsplit(":", 1)[1] for call in server.calls] == ["ingest", "ingest", "remove", "ingest"]
    assert channel.stats["members_add"] == 6 and channel.stats["members_remove"] == 1


def test_a_removal_uploads_the_stored_identifiers_of_an_erased_profile(
    harness: Harness, server: GoogleDataManagerServer
) -> None:
    channel = harness.channel()
    added = [member(1), member(2, email=None), member(3), member(4, email=None, phone=None)]
    assert all(r.status == "sent" for r in channel.send_batch(added))
    address_key = "|".join((sha("ann"), sha("lee"), "US", "97201"))
    assert keys(server) == {sha("c1@example.com"), sha("+15035550002"), sha("c3@example.com"), address_key}

    gone = [removal(i, identifiers("google", added[i - 1])) for i in (1, 2, 4)]
    assert all(channel.can_reach(m) is None for m in gone)
    results = channel.send_batch(gone)

    assert [r.status for r in results] == ["sent"] * 3
    assert keys(server) == {sha("c3@example.com")}
    removed = bodies(server, ":remove")[-1]
    assert set(removed) == {"destinations", "audienceMembers", "encoding"}  # no consent or terms on a removal
    ingested = bodies(server, ":ingest")[0]["audienceMembers"]
    assert removed["audienceMembers"] == [ingested[0], ingested[1], ingested[3]]  # what the addition uploaded


def test_a_removal_never_uploads_a_plain_stored_value_and_falls_back_to_the_profile(harness: Harness) -> None:
    plain = removal(4, {"Email": "c4@example.com", "Phone": sha("+15035550004"), "First Name": "ann"})
    assert member_values(plain) == {"phone": sha("+15035550004")}
    nothing = removal(5, {"First Name": sha("ann"), "Country": "US"})
    channel = harness.channel()
    assert channel.can_reach(nothing) == "no_address"
    result = channel.send_batch([nothing])[0]
    assert result.status == "failed" and not result.retryable and "no usable" in (result.error or "")
    with_profile = replace(nothing, recipient=Recipient(customer_id=5, email="c5@example.com"))
    assert member_values(with_profile) == {"email": sha("c5@example.com")}  # no stored identifier: today's profile


def test_a_second_identical_ingest_keeps_the_membership(harness: Harness, server: GoogleDataManagerServer) -> None:
    batch = [member(i) for i in (1, 2, 3)]
    harness.channel().send_batch(batch)
    before = server.list_members(CHURN)
    again = harness.channel().send_batch(batch)  # a new run adds the same people

    first, second = (b["audienceMembers"] for b in bodies(server, ":ingest"))
    assert first == second
    assert all(r.status == "sent" for r in again) and server.list_members(CHURN) == before


def test_an_audience_without_a_user_list_fails_permanently_and_alone(
    harness: Harness, server: GoogleDataManagerServer
) -> None:
    results = harness.channel().send_batch([member(1), member(2, audience="lapsed"), member(3)])

    assert [r.status for r in results] == ["sent", "failed", "sent"]
    assert not results[1].retryable
    assert "'lapsed'" in (results[1].error or "") and "lists=" in (results[1].error or "")
    assert "OMNICAST_GOOGLE_AUDIENCE_URL" in (results[1].error or "")
    assert len(server.calls) == 1 and keys(server) == emails([1, 3])


def test_a_user_list_google_does_not_know_fails_the_request_permanently(
    harness: Harness, server: GoogleDataManagerServer
) -> None:
    results = harness.channel(lists={"churn-risk": "999"}).send_batch([member(1), member(2)])

    assert all(r.status == "failed" and not r.retryable for r in results)
    assert "user list 999" in (results[0].error or "") and "INVALID_USER_LIST_ID" in (results[0].error or "")


def test_a_member_google_refuses_fails_alone_and_the_rest_is_sent_again(
    harness: Harness, server: GoogleDataManagerServer
) -> None:
    server.refused.add(sha("c2@example.com"))
    channel = harness.channel()
    results = channel.send_batch([member(i) for i in (1, 2, 3)])

    assert [r.status for r in results] == ["sent", "failed", "sent"]
    assert not results[1].retryable and "INVALID_AUDIENCE_MEMBER" in (results[1].error or "")
    assert [call.status for call in server.calls] == [400, 200]
    assert [len(b["audienceMembers"]) for b in bodies(server)] == [3, 2]
    assert keys(server) == emails([1, 3]) and channel.stats["refused"] == 1
    assert sha("c2@example.com") not in (results[1].error or "")


# what goes over the wire -------------------------------------------------------------------------------------------


def test_hashes_only_on_the_wire_but_country_and_zip(harness: Harness, server: GoogleDataManagerServer) -> None:
    people = [member(1, email="Zoe.Smith@Example.com", phone="(503) 555-0142", first_name="Zoë-Ann",
                     last_name="O'Brien"),
              member(2, email="bob@example.org", phone="+44 20 7946 0018", country="GB", zip="SW1A 1AA"),
              removal(3, identifiers("google", member(3, first_name="Mary Ann", last_name="Smith-Jones")))]  # fmt: skip
    results = harness.channel().send_batch(people)
    assert [r.status for r in results] == ["sent"] * 3

    text = " ".join(call.body for call in server.calls)
    for plain in ("Zoe", "zoe", "example.com", "example.org", "bob", "5550142", "555-0142", "79460018", "Zo",
                  "Brien", "brien", "ann", "Ann", "Mary", "Smith", "smith", "c3@"):  # fmt: skip
        assert plain not in text
    for body in bodies(server):
        for m in body["audienceMembers"]:
            for identifier in m["userData"]["userIdentifiers"]:
                ((kind, value),) = identifier.items()
                if kind == "address":
                    assert HEX64.fullmatch(value["givenName"]) and HEX64.fullmatch(value["familyName"])
                    assert re.fullmatch(r"[A-Z]{2}", value["regionCode"]) and not HEX64.fullmatch(value["postalCode"])
                else:
                    assert HEX64.fullmatch(value)
    addresses = [i["address"] for b in bodies(server) for m in b["audienceMembers"]
                 for i in m["userData"]["userIdentifiers"] if "address" in i]  # fmt: skip
    assert addresses[0] == {"givenName": sha("zoë ann"), "familyName": sha("o brien"), "regionCode": "US",
                            "postalCode": "97201"}  # fmt: skip
    assert addresses[1]["regionCode"] == "GB" and addresses[1]["postalCode"] == "SW1A 1AA"
    assert addresses[2]["givenName"] == sha("mary ann") and addresses[2]["familyName"] == sha("smith jones")


def ids_of(message: OutboundMessage) -> list[dict[str, Any]]:
    return user_identifiers(member_values(message))


@pytest.mark.parametrize(
    ("email", "normalized"),
    [
        ("  John.Doe+Coffee@GMail.com ", "johndoe@gmail.com"),
        ("cloudy.sanfrancisco+shopping@gmail.com", "cloudysanfrancisco@gmail.com"),
        ("j.o.h.n@googlemail.com", "john@googlemail.com"),
        ("User.Name+NYC@Example.com", "user.name+nyc@example.com"),
    ],
)
def test_emails_follow_googles_gmail_rule(email: str, normalized: str) -> None:
    assert ids_of(member(1, email=email))[0] == {"emailAddress": sha(normalized)}


def test_phones_are_e164_and_an_address_needs_all_four_parts() -> None:
    assert ids_of(member(1, email=None, phone="(800) 555-0100"))[0] == {"phoneNumber": sha("+18005550100")}
    assert ids_of(member(1, email=None, phone="020 7946 0018", country="GB"))[0] == {
        "phoneNumber": sha("+442079460018")
    }
    full = ids_of(member(1, email=None, phone=None))
    assert full == [{"address": {"givenName": sha("ann"), "familyName": sha("lee"), "regionCode": "US",
                                 "postalCode": "97201"}}]  # fmt: skip
    for missing in ("first_name", "last_name", "country", "zip"):
        gone: dict[str, Any] = {missing: None}
        assert ids_of(member(1, email=None, phone=None, **gone)) == []
    assert [next(iter(i)) for i in ids_of(member(1))] == ["emailAddress", "phoneNumber", "address"]


def test_can_reach_needs_an_email_a_phone_or_a_full_address(harness: Harness) -> None:
    channel = harness.channel()
    assert channel.can_reach(member(1)) is None
    assert channel.can_reach(member(1, email=None, phone=None)) is None
    assert channel.can_reach(member(1, email=None, phone=None, zip=None)) == "no_address"


# retries and failures --------------------------------------------------------------------------------------------


def test_throttling_is_retried_honouring_retry_after_and_retry_info(
    harness: Harness, server: GoogleDataManagerServer
) -> None:
    server.script(Throttle(), Throttle(retry_after=7), Throttle(retry_delay="12.5s"))
    channel = harness.channel()
    results = channel.send_batch([member(1), member(2)])

    assert [r.status for r in results] == ["sent", "sent"]
    assert harness.sleeps == [1.0 * 0.75, 7 + 0.25 * 2.0 * 0.5, 12.5 + 0.25 * 4.0 * 0.5]
    assert [call.status for call in server.calls] == [429, 429, 429, 200]
    assert keys(server) == emails([1, 2]) and channel.stats["retries"] == 3


def test_throttling_that_lasts_leaves_the_members_retryable(harness: Harness, server: GoogleDataManagerServer) -> None:
    server.throttle(3, retry_after=1)
    results = harness.channel(max_retries=2).send_batch([member(1), member(2)])

    assert all(r.status == "failed" and r.retryable and not r.in_doubt for r in results)
    assert "RESOURCE_EXHAUSTED" in (results[0].error or "") and "3 attempt(s)" in (results[0].error or "")
    assert keys(server) == set()
    server.throttle(1, retry_after=60)  # asked to wait longer than the channel may
    waited = harness.channel(max_retry_wait=5).send_batch([member(1)])
    assert waited[0].retryable and "asked to wait 60 s" in (waited[0].error or "")


def test_a_server_error_is_retried_then_retryable(harness: Harness, server: GoogleDataManagerServer) -> None:
    channel = harness.channel(max_retries=1, max_members=2)
    server.fail(2)
    results = channel.send_batch([member(i) for i in (1, 2, 3)])

    assert all(r.status == "failed" and r.retryable for r in results)
    assert "HTTP 500 INTERNAL" in (results[0].error or "") and "not sent" in (results[2].error or "")
    assert len(server.calls) == 2  # the first request and its one retry; the second was not tried
    server.fail(1, status=503)
    assert all(r.status == "sent" for r in channel.send_batch([member(i) for i in (1, 2, 3)]))
    assert keys(server) == emails([1, 2, 3])


def test_a_lost_answer_is_repeated_and_google_takes_it_once(harness: Harness, server: GoogleDataManagerServer) -> None:
    server.script(Drop())
    results = harness.channel().send_batch([member(1), member(2)])

    assert [r.status for r in results] == ["sent", "sent"]
    assert len(server.calls) == 2 and keys(server) == emails([1, 2])


# configuration -----------------------------------------------------------------------------------------------------


def test_a_refused_token_stops_the_run_before_anything_is_sent(
    harness: Harness, server: GoogleDataManagerServer
) -> None:
    channel = harness.channel(token="ya29.wrong")
    with pytest.raises(ChannelConfigError) as raised:
        channel.send_batch([member(1)])
    assert "OMNICAST_GOOGLE_ACCESS_TOKEN" in str(raised.value) and "UNAUTHENTICATED" in str(raised.value)
    assert "ya29.wrong" not in str(raised.value)
    with pytest.raises(ChannelConfigError):  # and stays stopped without asking Google again
        channel.send_batch([member(2)])
    assert len(server.calls) == 1 and keys(server) == set()


def test_an_account_the_token_may_not_use_stops_the_run(harness: Harness, server: GoogleDataManagerServer) -> None:
    with pytest.raises(ChannelConfigError, match="5550001111.*PERMISSION_DENIED"):
        harness.channel(account="555-000-1111").send_batch([member(1)])
    with pytest.raises(ChannelConfigError, match="PERMISSION_DENIED"):
        harness.channel(login_account="1112223333").send_batch([member(1)])
    assert harness.channel(login_account="999-000-1111").send_batch([member(1)])[0].status == "sent"
    assert bodies(server)[-1]["destinations"][0]["loginAccount"] == {"accountType": "GOOGLE_ADS",
                                                                     "accountId": "9990001111"}  # fmt: skip


def test_a_token_refused_after_a_request_went_over_leaves_the_rest_retryable(
    harness: Harness, server: GoogleDataManagerServer
) -> None:
    expired = {"error": {"code": 401, "message": "Request had invalid authentication credentials.",
                         "status": "UNAUTHENTICATED"}}  # fmt: skip
    server.script(None, Reply(401, expired))
    channel = harness.channel(max_members=2)
    results = channel.send_batch([member(i) for i in (1, 2, 3, 4)] + [member(5, audience="high-value")])

    assert [r.status for r in results] == ["sent", "sent", "failed", "failed", "failed"]
    assert all(r.retryable and "not sent" in (r.error or "") for r in results[2:])
    with pytest.raises(ChannelConfigError):
        channel.send_batch([member(6)])
    assert len(server.calls) == 2


def test_a_wrong_base_url_is_a_config_error(harness: Harness, server: GoogleDataManagerServer) -> None:
    with pytest.raises(ChannelConfigError, match="OMNICAST_GOOGLE_DATAMANAGER_URL"):
        harness.channel(base_url=server.url + "/api").send_batch([member(1)])


def _google_spec() -> ChannelSpec:
    spec = BY_NAME["google"]
    assert spec.adapter_for("google") is not None  # the channel table carries the API adapter
    return spec


def _resources(server: GoogleDataManagerServer, **settings: Any) -> ChannelResources:
    fields = {"google_access_token": TOKEN, "google_datamanager_url": server.url} | settings
    return ChannelResources(SimpleNamespace(**fields))


@pytest.mark.parametrize(
    "url", [f"google://{ACCOUNT}?lists=churn-risk:{CHURN}", f"google://123-456-7890?lists=churn-risk:{CHURN},"
            f"high-value:{VIP}&account_type=GOOGLE_ADS&max_retries=1&timeout=5"],
)  # fmt: skip
def test_opened_from_its_url(server: GoogleDataManagerServer, url: str) -> None:
    channel = open_channel(_google_spec(), url, _resources(server))
    try:
        assert isinstance(channel, GoogleCustomerMatchChannel) and channel.account == ACCOUNT and channel.owns_client
        assert channel.lists["churn-risk"] == CHURN
        assert channel.send_batch([member(1)])[0].status == "sent"
        assert TOKEN not in repr(channel)
    finally:
        channel.close()
        channel.close()
    assert channel.client.is_closed


@pytest.mark.parametrize(
    ("url", "settings", "says"),
    [
        (f"google://{ACCOUNT}?lists=a:1", {"google_access_token": None}, "OMNICAST_GOOGLE_ACCESS_TOKEN"),
        (f"google://{ACCOUNT}?lists=a:1", {"google_access_token": "  "}, "OMNICAST_GOOGLE_ACCESS_TOKEN"),
        (f"google://{ACCOUNT}", {}, "needs \\?lists="),
        (f"google://{ACCOUNT}?lists=churn-risk", {}, "AUDIENCE:USER_LIST_ID"),
        (f"google://{ACCOUNT}?lists=a:1,a:2", {}, "given twice"),
        (f"google://{ACCOUNT}?lists=a:x1", {}, "AUDIENCE:USER_LIST_ID"),
        ("google://ads-account?lists=a:1", {}, "must be digits"),
        (f"google://user@{ACCOUNT}?lists=a:1", {}, "account id and options alone"),
        (f"google://{ACCOUNT}?lists=a:1&account_type=YOUTUBE", {}, "account_type"),
        (f"google://{ACCOUNT}?lists=a:1&login_account=boss", {}, "login_account"),
        (f"google://{ACCOUNT}?lists=a:1&product=GOOGLE_ADS", {}, "unknown option 'product'"),
        (f"google://{ACCOUNT}?lists=a:1", {"google_datamanager_url": "ftp://dm.example"}, "DATAMANAGER_URL"),
    ],
)
def test_a_wrong_url_or_setting_is_a_config_error(
    server: GoogleDataManagerServer, url: str, settings: dict[str, Any], says: str
) -> None:
    with pytest.raises(ChannelConfigError, match=says) as raised:
        open_channel(_google_spec(), url, _resources(server, **settings))
    assert TOKEN not in str(raised.value)


def test_a_secret_str_token_is_read(server: GoogleDataManagerServer) -> None:
    from pydantic import SecretStr

    url = f"google://{ACCOUNT}?lists=churn-risk:{CHURN}"
    channel = open_channel(_google_spec(), url, _resources(server, google_access_token=SecretStr(TOKEN)))
    try:
        assert channel.send_batch([member(1)])[0].status == "sent"
    finally:
        channel.close()


def test_parse_lists() -> None:
    assert parse_lists(" churn-risk:111 , high-value : 222,") == {"churn-risk": "111", "high-value": "222"}
    assert parse_lists("ns:churn:7") == {"ns:churn": "7"} and parse_lists("") == {}


# through dispatch ----------------------------------------------------------------------------------------------


def test_dispatch_hands_over_whole_batches_and_a_retraction_removes(
    sqlite_engine: Engine, harness: Harness, server: GoogleDataManagerServer
) -> None:
    add_customers(sqlite_engine, range(1, 6), channel="ads")
    channel = harness.channel()
    report = dispatch(sqlite_engine, [member(i) for i in range(1, 6)], {"google": channel})
    assert report.total_sent == 5 and report.balanced
    assert len(server.calls) == 1  # one request, not one per message
    gone = removal(3, identifiers("google", member(3)))
    assert dispatch(sqlite_engine, [gone], {"google": channel}).total_sent == 1
    assert keys(server) == emails([1, 2, 4, 5])


# the stand-in refuses what Google refuses ------------------------------------------------------------------------


def _ingest(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "destinations": [{"operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": ACCOUNT},
                          "productDestinationId": CHURN}],
        "audienceMembers": [{"userData": {"userIdentifiers": [{"emailAddress": sha("a@example.com")}]}}],
        "consent": {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED"},
        "encoding": "HEX", "termsOfService": {"customerMatchTermsOfServiceStatus": "ACCEPTED"},
    }  # fmt: skip
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def _with(identifier: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"userData": {"userIdentifiers": [identifier]}}]


ADDRESS = {"givenName": sha("ann"), "familyName": sha("lee"), "regionCode": "US", "postalCode": "97201"}


@pytest.mark.parametrize(
    ("path", "body", "status", "reason"),
    [
        ("ingest", _ingest(), 200, None),
        ("ingest", _ingest(audienceMembers=_with({"emailAddress": "a@example.com"})), 400, "INVALID_HEX_ENCODING"),
        ("ingest", _ingest(audienceMembers=_with({"emailAddress": "ab" * 16})), 400, "INVALID_SHA256_FORMAT"),
        ("ingest", _ingest(audienceMembers=_with({"address": {**ADDRESS, "postalCode": sha("97201")}})), 400,
         "INVALID_POSTAL_CODE"),
        ("ingest", _ingest(audienceMembers=_with({"address": {**ADDRESS, "regionCode": sha("us")}})), 400,
         "INVALID_COUNTRY_CODE"),
        ("ingest", _ingest(audienceMembers=_with({"address": {**ADDRESS, "givenName": "ann"}})), 400,
         "INVALID_HEX_ENCODING"),
        ("ingest", _ingest(audienceMembers=_with({"address": {k: v for k, v in ADDRESS.items() if k != "postalCode"}})),
         400, "REQUIRED_FIELD_MISSING"),
        ("ingest", _ingest(audienceMembers=_with({"address": ADDRESS})), 200, None),
        ("ingest", _ingest(audienceMembers=_with({"emailAddress": sha("a"), "phoneNumber": sha("b")})), 400,
         "INVALID_FORMAT"),
        ("ingest", _ingest(audienceMembers=_with({"emailAddress": sha("a")}) * 10_001), 400,
         "TOO_MANY_AUDIENCE_MEMBERS"),
        ("ingest", _ingest(consent=None), 400, "REQUIRED_FIELD_MISSING"),
        ("ingest", _ingest(termsOfService=None), 400, "TERMS_AND_CONDITIONS_NOT_SIGNED"),
        ("ingest", _ingest(encoding=None), 400, "INVALID_FORMAT"),
        ("ingest", _ingest(destinations=[{"operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": ACCOUNT},
                                          "productDestinationId": "999"}]), 400, "INVALID_USER_LIST_ID"),
        ("ingest", _ingest(destinations=[{"operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": "42"},
                                          "productDestinationId": CHURN}]), 403, "PERMISSION_DENIED"),
        ("remove", _ingest(), 400, "INVALID_ARGUMENT"),  # consent and termsOfService are not remove fields
        ("remove", _ingest(consent=None, termsOfService=None), 200, None),
    ],
)  # fmt: skip
def test_the_stand_in_refuses_what_google_refuses(
    server: GoogleDataManagerServer, path: str, body: dict[str, Any], status: int, reason: str | None
) -> None:
    answer = httpx.post(f"{server.url}/v1/audienceMembers:{path}", json=body,
                        headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)  # fmt: skip
    assert answer.status_code == status, answer.text
    if reason is None:
        assert set(answer.json()) == {"requestId"}
    else:
        error = answer.json()["error"]
        assert error["code"] == status and error["details"][0]["reason"] == reason
    unauthenticated = httpx.post(f"{server.url}/v1/audienceMembers:ingest", json=_ingest(), timeout=5)
    assert unauthenticated.status_code == 401 and unauthenticated.json()["error"]["status"] == "UNAUTHENTICATED"


def test_validate_only_changes_nothing(server: GoogleDataManagerServer) -> None:
    answer = httpx.post(f"{server.url}/v1/audienceMembers:ingest", json=_ingest(validateOnly=True),
                        headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)  # fmt: skip
    assert answer.status_code == 200 and keys(server) == set()


def test_at_most_ten_thousand_members_go_in_one_request(harness: Harness, server: GoogleDataManagerServer) -> None:
    people = [member(i, phone=None, first_name=None) for i in range(1, 10_002)]
    results = harness.channel().send_batch(people)

    assert [len(b["audienceMembers"]) for b in bodies(server)] == [10_000, 1]
    assert all(r.status == "sent" for r in results) and len(keys(server)) == 10_001
    assert json.loads(server.calls[0].body)["encoding"] == "HEX"
