"""The Postmark batch transport against a local server that enforces Postmark's documented batch contract
(tests/peers/postmark_server.py): splitting, per-message results, retries with backoff, in-doubt answers, the
configuration errors that stop a run, and what a message looks like as Postmark JSON. No test waits for a real
backoff: ``sleep`` is injected and records the delays."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

import channels.postmark as postmark
from channels.base import (
    ChannelConfigError,
    ChannelError,
    InDoubtChannelError,
    PermanentChannelError,
    RetryableChannelError,
)
from channels.email import EmailChannel
from channels.headers import mailbox
from channels.outbox import ledger_hash
from channels.postmark import PostmarkTransport
from channels.registry import open_channel, parse_target
from channels.render import EmailRenderer, RenderedEmail
from channels.spec import BY_NAME, ChannelResources
from channels.tokens import UnsubscribeSigner
from flows.settings import Settings
from models.message import OutboundMessage
from tests.channels.conftest import message
from tests.peers.postmark_server import Drop, Hang, PostmarkServer, Reply

SENDER = "Bean & Leaf Coffee <hello@beanandleaf.example>"
NOW = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
RENDERED = RenderedEmail(subject="Ann, your picks", html="<p>Hello <b>Ann</b></p>", text="Hello Ann")
SECRET = "SECRET-Token-42"


class _Nowhere:
    def deliver(self, msg_bytes: bytes, message: OutboundMessage) -> str:
        raise AssertionError("composing only")

    def close(self) -> None:
        pass


def email_channel(transport: Any) -> EmailChannel:
    return EmailChannel(
        transport,
        EmailRenderer(),
        sender=SENDER,
        public_url="https://links.beanandleaf.example",
        unsubscribe_mailto="unsubscribe@beanandleaf.example",
        signer=UnsubscribeSigner("test-secret"),
        clock=lambda: NOW,
    )


COMPOSER = email_channel(_Nowhere())


def item(i: int, address: str | None = None, **fields: Any) -> tuple[bytes, OutboundMessage]:
    """A message and its bytes, composed without rendering a template (fast enough for thousands)."""
    msg = message(i, email=address or f"c{i}@example.com", **fields)
    assert msg.recipient.email
    return COMPOSER.compose(msg, mailbox(msg.recipient.email), RENDERED, f"token{i}"), msg


@pytest.fixture
def server() -> Iterator[PostmarkServer]:
    with PostmarkServer(token=SECRET) as peer:
        yield peer


class Harness:
    def __init__(self, server: PostmarkServer) -> None:
        self.server = server
        self.sleeps: list[float] = []

    def transport(self, *, token: str = SECRET, timeout: float = 5.0, **options: Any) -> PostmarkTransport:
        options.setdefault("base_url", self.server.url)
        return PostmarkTransport(
            httpx.Client(timeout=timeout),
            token,
            sleep=self.sleeps.append,
            jitter=lambda: 0.5,
            now=lambda: NOW,
            **options,
        )


@pytest.fixture
def harness(server: PostmarkServer) -> Harness:
    return Harness(server)


def accepted_ids(server: PostmarkServer) -> list[str]:
    return [r["MessageID"] for call in server.calls for r in call.results or () if r["ErrorCode"] == 0]


# batching and per-message results -------------------------------------------------------------------------------


def test_1200_messages_go_in_three_calls_of_at_most_500_in_order(harness: Harness, server: PostmarkServer) -> None:
    items = [item(i) for i in range(1200)]
    transport = harness.transport()
    results = transport.deliver_batch(items)
    transport.close()

    assert [len(call.messages or ()) for call in server.calls] == [500, 500, 200]
    assert [m["To"] for m in server.accepted] == [f"c{i}@example.com" for i in range(1200)]
    assert results == accepted_ids(server)  # Postmark's MessageID of each message, in order
    assert all(uuid.UUID(str(r)) for r in results)
    assert harness.sleeps == []


def test_partial_failures_map_to_each_message_in_order(
    harness: Harness, server: PostmarkServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="channels.postmark")
    addresses = ["ok0", "inactive1", "ok2", "invalid3", "ok4", "inactive5", "invalid6", "ok7"]
    items = [item(i, f"{name}@example.com") for i, name in enumerate(addresses)]

    results = harness.transport().deliver_batch(items)

    assert len(server.calls) == 1
    assert [m["To"] for m in server.accepted] == ["ok0@example.com", "ok2@example.com", "ok4@example.com",
                                                 "ok7@example.com"]  # fmt: skip
    ids = iter(accepted_ids(server))
    for name, result in zip(addresses, results, strict=True):
        if name.startswith("ok"):
            assert result == next(ids)
        elif name.startswith("inactive"):  # hard bounce, complaint or suppression at Postmark: never again
            assert isinstance(result, PermanentChannelError)
            assert result.suppress == "hard_bounce"
            assert "406" in str(result)
        else:  # an invalid request: this message never goes, the address is not declared dead
            assert isinstance(result, PermanentChannelError)
            assert result.suppress is None
            assert "300" in str(result)
    # Postmark's Message texts quote the address: neither errors nor logs copy them
    assert not any("example.com" in str(result) for result in results if isinstance(result, ChannelError))
    assert "example.com" not in caplog.text


def test_deliver_sends_one_message_and_raises_its_error(harness: Harness, server: PostmarkServer) -> None:
    transport = harness.transport()
    provider_id = transport.deliver(*item(1))
    assert provider_id == accepted_ids(server)[0]

    with pytest.raises(PermanentChannelError) as failed:
        transport.deliver(*item(2, "inactive@example.com"))
    assert failed.value.suppress == "hard_bounce"


def test_calls_stay_under_the_size_limit(
    harness: Harness, server: PostmarkServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postmark, "MAX_CALL_BYTES", 2_000)
    items = [item(i) for i in range(12)]

    results = harness.transport().deliver_batch(items)

    assert all(isinstance(r, str) for r in results)
    assert len(server.calls) >= 4
    assert all(int(call.headers["content-length"]) <= 2_000 for call in server.calls)
    assert [m["To"] for m in server.accepted] == [f"c{i}@example.com" for i in range(12)]


def test_messages_postmark_cannot_take_fail_before_any_call(
    harness: Harness, server: PostmarkServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    utf8 = item(1, "ännchen@example.com")  # SMTPUTF8 local part: Postmark's address rules are ASCII
    results = harness.transport().deliver_batch([utf8, item(2)])
    assert isinstance(results[0], PermanentChannelError) and results[0].suppress is None
    assert isinstance(results[1], str)
    assert [m["To"] for m in server.accepted] == ["c2@example.com"]

    monkeypatch.setattr(postmark, "MAX_MESSAGE_BYTES", 200)
    (too_big,) = harness.transport().deliver_batch([item(3)])
    assert isinstance(too_big, PermanentChannelError) and "10 MB" in str(too_big)
    assert len(server.calls) == 1


# retries --------------------------------------------------------------------------------------------------------


def test_429_is_retried_after_retry_after_then_succeeds(harness: Harness, server: PostmarkServer) -> None:
    server.script(Reply(429, retry_after=2, error_code=429))
    results = harness.transport().deliver_batch([item(1), item(2)])

    assert all(isinstance(r, str) for r in results)
    assert [call.status for call in server.calls] == [429, 200]
    assert len(harness.sleeps) == 1 and 2.0 <= harness.sleeps[0] <= 2.5  # Retry-After plus a little jitter
    assert len(server.accepted) == 2


def test_retry_after_as_an_http_date(harness: Harness, server: PostmarkServer) -> None:
    server.script(Reply(503, retry_after=format_datetime(NOW + timedelta(seconds=5), usegmt=True)))
    results = harness.transport().deliver_batch([item(1)])
    assert isinstance(results[0], str)
    assert 5.0 <= harness.sleeps[0] <= 5.5


def test_5xx_until_the_retries_run_out_is_retryable_for_every_message(harness: Harness, server: PostmarkServer) -> None:
    server.script(Reply(500), Reply(502), Reply(503), Reply(500))
    results = harness.transport(max_retries=3).deliver_batch([item(1), item(2), item(3)])

    assert [call.status for call in server.calls] == [500, 502, 503, 500]
    assert all(isinstance(r, RetryableChannelError) for r in results)
    assert harness.sleeps == [0.375, 0.75, 1.5]  # exponential backoff, half of it jitter (0.5 here)
    assert server.accepted == []


def test_a_retry_after_beyond_the_budget_gives_up_without_waiting(harness: Harness, server: PostmarkServer) -> None:
    server.script(Reply(429, retry_after=120))
    results = harness.transport(max_retry_wait=30).deliver_batch([item(1)])
    assert isinstance(results[0], RetryableChannelError)
    assert "120 s" in str(results[0])
    assert harness.sleeps == [] and len(server.calls) == 1


def test_no_connection_is_retried_then_retryable(harness: Harness) -> None:
    transport = harness.transport(base_url="http://127.0.0.1:1", max_retries=2)  # nothing listens on port 1
    results = transport.deliver_batch([item(1)])
    assert isinstance(results[0], RetryableChannelError)
    assert "ConnectError" in str(results[0])
    assert len(harness.sleeps) == 2


# in doubt -------------------------------------------------------------------------------------------------------


def test_a_read_timeout_after_sending_leaves_the_call_in_doubt(harness: Harness, server: PostmarkServer) -> None:
    server.script(Hang(seconds=3))
    results = harness.transport(timeout=0.3).deliver_batch([item(1), item(2)])

    assert all(isinstance(r, InDoubtChannelError) for r in results)
    assert len(server.calls) == 1 and len(server.accepted) == 2  # Postmark did take them: never resend
    assert harness.sleeps == []


def test_a_connection_dropped_after_sending_leaves_the_call_in_doubt(harness: Harness, server: PostmarkServer) -> None:
    server.script(Drop())
    results = harness.transport().deliver_batch([item(1)])
    assert isinstance(results[0], InDoubtChannelError)
    assert len(server.calls) == 1


def test_a_200_without_one_result_per_message_is_in_doubt(harness: Harness, server: PostmarkServer) -> None:
    server.script(Reply(200, body=[{"ErrorCode": 0, "Message": "OK", "MessageID": "x"}]))
    results = harness.transport().deliver_batch([item(1), item(2)])
    assert all(isinstance(r, InDoubtChannelError) for r in results)


# configuration errors stop the run ----------------------------------------------------------------------------


def test_a_bad_token_stops_the_run_without_showing_the_token(harness: Harness, server: PostmarkServer) -> None:
    with pytest.raises(ChannelConfigError) as stopped:
        harness.transport(token="wrong-Token-99", setting="OMNICAST_EMAIL_URL").deliver_batch([item(1)])
    assert "OMNICAST_EMAIL_URL" in str(stopped.value)
    assert "wrong-Token-99" not in str(stopped.value) and SECRET not in str(stopped.value)
    assert [call.status for call in server.calls] == [401]
    assert "wrong-Token-99" not in repr(harness.transport(token="wrong-Token-99"))


def test_a_refusal_after_an_accepted_chunk_keeps_the_accepted_ids(harness: Harness, server: PostmarkServer) -> None:
    server.script(None, Reply(401, error_code=10))  # the token revoked between two calls of one batch
    results = harness.transport().deliver_batch([item(i) for i in range(600)])

    assert results[:500] == accepted_ids(server)
    assert all(isinstance(r, RetryableChannelError) for r in results[500:])  # the next call stops the run


@pytest.mark.parametrize(
    ("reply", "expected", "words"),
    [
        (Reply(422, error_code=402), PermanentChannelError, "402"),  # malformed: this call's messages never go
        (Reply(422, error_code=400), ChannelConfigError, "sender signature"),
        (
            Reply(422, body={"ErrorCode": 300, "Message": "Invalid 'From' address: 'a@b.example'."}),
            ChannelConfigError,
            "OMNICAST_SENDER_ADDRESS",
        ),  # fmt: skip
        (Reply(422, error_code=100), RetryableChannelError, "maintenance"),
        (Reply(404), ChannelConfigError, "OMNICAST_POSTMARK_API_URL"),
        (Reply(301), ChannelConfigError, "redirect"),
        (Reply(413), PermanentChannelError, "too large"),
    ],
)
def test_whole_call_refusals(
    harness: Harness, server: PostmarkServer, reply: Reply, expected: type[ChannelError], words: str
) -> None:
    server.script(reply)
    transport = harness.transport()
    if issubclass(expected, ChannelConfigError):
        with pytest.raises(ChannelConfigError) as stopped:
            transport.deliver_batch([item(1), item(2)])
        assert words in str(stopped.value)
        assert "a@b.example" not in str(stopped.value)
    else:
        results = transport.deliver_batch([item(1), item(2)])
        assert all(type(r) is expected and words in str(r) for r in results)
    assert harness.sleeps == []


def test_an_unknown_message_stream_stops_the_run(harness: Harness, server: PostmarkServer) -> None:
    with pytest.raises(ChannelConfigError, match="message stream"):
        harness.transport(message_stream="newsletters").deliver_batch([item(1), item(2)])
    assert server.accepted == []


# what Postmark receives ---------------------------------------------------------------------------------------


def test_the_message_as_postmark_json(harness: Harness, server: PostmarkServer) -> None:
    transport = harness.transport(message_stream="broadcast")
    channel = email_channel(transport)
    msg = message(7, variant="B")
    msg = dataclasses.replace(msg, context={**msg.context, "customer": {"first_name": "Zoë"}})
    raw = channel.build(msg)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)

    provider_id = transport.deliver(raw, msg)

    (call,) = server.calls
    assert call.headers["x-postmark-server-token"] == SECRET
    assert call.headers["accept"] == "application/json"
    assert call.headers["content-type"] == "application/json"
    (sent,) = server.accepted
    assert provider_id == accepted_ids(server)[0]
    assert sent["From"] == '"Bean & Leaf Coffee" <hello@beanandleaf.example>'
    assert sent["To"] == "c7@example.com"
    assert sent["Subject"] == str(parsed["Subject"]) and "Zoë" in sent["Subject"]
    assert "Zoë" in sent["TextBody"] and "Zoë" in sent["HtmlBody"]
    assert "<html" in sent["HtmlBody"].lower()
    headers = {h["Name"]: h["Value"] for h in sent["Headers"]}
    assert list(headers) == ["Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post"]
    assert headers["Message-ID"] == f"<{ledger_hash(msg.ledger_key)}@beanandleaf.example>"
    unsubscribe = headers["List-Unsubscribe"]
    assert unsubscribe == str(parsed["List-Unsubscribe"]) and "\r" not in unsubscribe and "\n" not in unsubscribe
    assert unsubscribe.startswith("<https://links.beanandleaf.example/u/")
    assert "<mailto:unsubscribe@beanandleaf.example?subject=unsubscribe-" in unsubscribe
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert sent["Metadata"] == {"ledger": ledger_hash(msg.ledger_key), "campaign": "weekly-picks", "variant": "B"}
    assert sent["Tag"] == "weekly-picks"
    assert sent["MessageStream"] == "broadcast"
    assert sent["TrackLinks"] == "None" and sent["TrackOpens"] is False


def test_dkim_date_and_mime_headers_stay_behind(harness: Harness, server: PostmarkServer) -> None:
    raw, msg = item(1)
    signed = b"DKIM-Signature: v=1; a=rsa-sha256; d=beanandleaf.example; s=mail;\r\n b=abc\r\n" + raw
    harness.transport().deliver(signed, msg)
    names = [h["Name"] for h in server.accepted[0]["Headers"]]
    assert names == ["Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post"]


# opening from settings ----------------------------------------------------------------------------------------


def settings(server: PostmarkServer, **values: Any) -> Any:
    values.setdefault("postmark_api_url", server.url)
    return Settings(secret_key="k" * 32, sender_address=SENDER, serve_url="https://links.beanandleaf.example",
                    **values)  # fmt: skip


def test_open_channel_from_the_url_and_settings(server: PostmarkServer) -> None:
    server.token = "tok/en+1"
    url = "postmark://tok%2Fen%2B1?message_stream=broadcast&timeout=5&max_retries=1"
    channel = open_channel(BY_NAME["email"], url, ChannelResources(settings(server)))
    try:
        results = channel.send_batch([message(1), message(2, email="inactive@example.com")])
    finally:
        channel.close()

    assert results[0].status == "sent" and results[0].provider_id == accepted_ids(server)[0]
    assert results[1].status == "failed" and results[1].suppress == "hard_bounce" and not results[1].retryable
    assert server.calls[0].headers["x-postmark-server-token"] == "tok/en+1"  # percent-decoded
    (sent,) = server.accepted
    assert sent["MessageStream"] == "broadcast"
    unsubscribe = {h["Name"]: h["Value"] for h in sent["Headers"]}["List-Unsubscribe"]
    assert unsubscribe.startswith("<https://links.beanandleaf.example/u/")


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("postmark://", "token is missing"),
        ("postmark://user:SECRET@host", "host part"),
        ("postmark://SECRET:2525", "no port"),
        ("postmark://SECRET/email", "no path"),
        ("postmark://SECRET%20x", "spaces"),
        ("postmark://SECRET?colour=red", "unknown option 'colour'"),
        ("postmark://SECRET?timeout=0", "'timeout'"),
        ("postmark://SECRET?message_stream=a%20b", "'message_stream'"),
        ("postmark://SECRET?max_retries=99", "'max_retries'"),
    ],
)
def test_url_and_option_errors_name_the_setting_never_the_token(server: PostmarkServer, url: str, words: str) -> None:
    with pytest.raises(ChannelConfigError) as stopped:
        open_channel(BY_NAME["email"], url, ChannelResources(settings(server)))
    assert "OMNICAST_EMAIL_URL" in str(stopped.value)
    assert words in str(stopped.value)
    assert "SECRET" not in str(stopped.value)


@pytest.mark.parametrize("api", ["ftp://api.example", "api.postmarkapp.com", "https://u:p@api.example", "http://"])
def test_a_bad_api_url_names_its_setting(server: PostmarkServer, api: str) -> None:
    with pytest.raises(ChannelConfigError, match="OMNICAST_POSTMARK_API_URL"):
        open_channel(BY_NAME["email"], "postmark://tok", ChannelResources(settings(server, postmark_api_url=api)))


def test_the_options_are_the_urls_query() -> None:
    target = parse_target(BY_NAME["email"], "postmark://tok?message_stream=broadcast&max_retry_wait=5")
    assert target.options == postmark.PostmarkOptions(message_stream="broadcast", max_retry_wait=5)
    assert target.shown == "postmark://***?message_stream=broadcast&max_retry_wait=5"


# the stand-in enforces the contract -----------------------------------------------------------------------------


def test_the_stand_in_enforces_postmarks_contract(server: PostmarkServer) -> None:
    good = {"From": "a@shop.example", "To": "b@example.com", "TextBody": "hi"}
    json_headers = {"Accept": "application/json", "Content-Type": "application/json"}
    with httpx.Client(base_url=server.url) as client:
        no_token = client.post("/email/batch", json=[good], headers=json_headers)
        assert no_token.status_code == 401 and no_token.json()["ErrorCode"] == 10
        auth = {"X-Postmark-Server-Token": SECRET}
        no_accept = client.post("/email/batch", json=[good], headers={**auth, "Content-Type": "application/json"})
        assert no_accept.status_code == 406
        not_json = {**auth, "Accept": "application/json", "Content-Type": "text/plain"}
        assert client.post("/email/batch", content=b"[]", headers=not_json).status_code == 415
        headers = {**auth, **json_headers}
        too_many = client.post("/email/batch", json=[good] * 501, headers=headers)
        assert too_many.status_code == 422 and too_many.json()["ErrorCode"] == 410
        bad_json = client.post("/email/batch", content=b"[{", headers=headers)
        assert bad_json.status_code == 422 and bad_json.json()["ErrorCode"] == 402
        answer = client.post("/email/batch", headers=headers, json=[
            good,
            {"From": "a@shop.example", "To": "b@example.com"},  # no body
            {**good, "Colour": "red"},  # not a Postmark field
            {**good, "Headers": [{"Name": "X-A", "Value": "1\r\nBcc: c@example.com"}]},
            {**good, "From": "Shop, Inc. <a@shop.example>"},  # punctuation in a name must be quoted
        ])  # fmt: skip
        assert answer.status_code == 200
        assert [r["ErrorCode"] for r in answer.json()] == [0, 300, 403, 300, 300]
    assert len(server.accepted) == 1
