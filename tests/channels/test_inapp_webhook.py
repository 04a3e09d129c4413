"""In-app cards by Standard Webhooks, over real HTTP to a local receiver that verifies every request with the
reference library (tests/peers/webhook_receiver.py): signed cards and retractions, retries that never make a
duplicate the receiver keeps, permanent refusals, 410 Gone, secret rotation, and the ledger through dispatch.
No test waits for a real backoff: ``sleep`` is injected and records the delays; timeouts are a fraction of a second."""

from __future__ import annotations

import base64
import logging
import socket
from collections.abc import Iterator
from dataclasses import replace
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy import select
from sqlalchemy.engine import Engine
from standardwebhooks import Webhook

from channels.base import ChannelConfigError
from channels.dispatch import MESSAGES, dispatch
from channels.inapp import card_errors
from channels.inapp_webhook import DISABLED, SECRET_SETTING, InAppWebhook, InAppWebhookOptions, webhook_id
from channels.outbox import ledger_hash
from channels.render import CardRenderer
from channels.spec import BY_NAME, ChannelResources, ChannelTarget
from models.message import OutboundMessage
from tests.channels.conftest import add_customers, message, planner_context
from tests.peers.webhook_receiver import Hang, Reply, WebhookReceiver

OLD = "whsec_" + base64.b64encode(bytes(range(32))).decode()
NEW = "whsec_" + base64.b64encode(bytes(range(100, 132))).decode()
WRONG = "whsec_" + base64.b64encode(b"w" * 32).decode()
TIMEOUT = 0.25


def card_message(customer_id: int, **fields: Any) -> OutboundMessage:
    return message(customer_id, channel="inapp", **fields)


def retraction(customer_id: int, occurrence: str = "weekly:2026-48:withdrawn", **context: Any) -> OutboundMessage:
    base = card_message(customer_id, occurrence=occurrence, template=None)
    return replace(base, retract=True, context=context or {"retracts": "weekly:2026-48"})


class Harness:
    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def channel(self, url: str, secrets: tuple[str, ...] = (OLD,), **options: Any) -> InAppWebhook:
        return InAppWebhook(httpx.Client(timeout=TIMEOUT), url, secrets, CardRenderer(), owns_client=True,
                            sleep=self.sleeps.append, jitter=lambda: 0.5, **options)  # fmt: skip


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(OLD) as peer:
        yield peer


@pytest.fixture
def harness() -> Harness:
    return Harness()


# signed events --------------------------------------------------------------------------------------------------


def test_every_card_arrives_signed_and_verified(harness: Harness, receiver: WebhookReceiver) -> None:
    messages = [card_message(i, variant="b") for i in (1, 2, 3)]
    channel = harness.channel(receiver.url)
    results = channel.send_batch(messages)
    channel.close()

    assert [r.status for r in results] == ["sent"] * 3
    assert [r.provider_id for r in results] == [webhook_id(m) for m in messages] == receiver.event_ids
    assert all(request.verified and request.status == 204 for request in receiver.requests)
    assert len(receiver.requests) == 3 and harness.sleeps == []
    for msg, event, request in zip(messages, receiver.events, receiver.requests, strict=True):
        assert event["type"] == "card.created" and set(event) == {"type", "timestamp", "data"}
        card = event["data"]
        assert card["id"] == ledger_hash(msg.ledger_key) and card["customer_id"] == msg.customer_id
        assert card["variant"] == "b" and card_errors(card, now=channel.clock()) == []
        assert request.headers["webhook-id"] == f"msg_{card['id']}"
        assert request.headers["content-type"] == "application/json"
        assert request.headers["webhook-signature"].startswith("v1,")
        assert request.headers["webhook-timestamp"].isdigit()
        assert Webhook(OLD).verify(request.body, request.headers) == event  # the reference library agrees


def test_a_retraction_arrives_as_card_retracted_with_the_card_id(harness: Harness, receiver: WebhookReceiver) -> None:
    channel = harness.channel(receiver.url)
    card = card_message(5)
    assert channel.send(card).status == "sent"
    assert channel.send(retraction(5)).status == "sent"
    assert channel.send(retraction(5, "gdpr:2026-12-01", card_id="0" * 32)).status == "sent"
    assert channel.send(retraction(5)).status == "sent"  # the same retraction again: the receiver drops it

    created, withdrawn, by_id = receiver.events
    assert withdrawn["type"] == by_id["type"] == "card.retracted"
    assert withdrawn["data"] == {"id": created["data"]["id"], "customer_id": 5}
    assert by_id["data"] == {"id": "0" * 32, "customer_id": 5}
    assert len(set(receiver.event_ids)) == 3  # a retraction is never taken for a duplicate of its card
    assert receiver.duplicates == 1


def test_a_retraction_that_names_no_card_fails_before_sending(harness: Harness, receiver: WebhookReceiver) -> None:
    channel = harness.channel(receiver.url)
    unnamed = channel.send(retraction(5, reason="opted out"))
    malformed = channel.send(retraction(5, card_id="not-a-card-id"))
    assert unnamed.status == malformed.status == "failed" and not unnamed.retryable
    assert "retracts" in str(unnamed.error) and "card_id" in str(malformed.error)
    assert receiver.requests == []


def test_an_invalid_card_fails_permanently_before_sending(harness: Harness, receiver: WebhookReceiver) -> None:
    broken = card_message(5)
    broken.context["store"]["url"] = "ftp://not-a-web-uri"
    result = harness.channel(receiver.url).send(broken)
    assert result.status == "failed" and not result.retryable and "web_uri" in str(result.error)
    assert "ftp://" not in str(result.error) and receiver.requests == []


# flaky receivers ------------------------------------------------------------------------------------------------


def test_a_flaky_receiver_still_gets_each_card_exactly_once(harness: Harness, receiver: WebhookReceiver) -> None:
    receiver.script(Reply(500), Hang(1.0), Reply(429, retry_after=1), None, Reply(503), Reply(408))
    messages = [card_message(i) for i in (1, 2, 3, 4)]
    results = harness.channel(receiver.url).send_batch(messages)

    assert [r.status for r in results] == ["sent"] * 4, [r.error for r in results]
    assert sorted(receiver.event_ids) == sorted(webhook_id(m) for m in messages)  # each kept once...
    assert receiver.duplicates == 1  # ...though the event the receiver took before timing out arrived twice
    assert [r.status for r in receiver.requests] == [500, None, 429, 204, 503, 408, 204, 204, 204]
    assert harness.sleeps[2] >= 1.0  # Retry-After honoured
    ids = [r.headers["webhook-id"] for r in receiver.requests]
    assert ids[0] == ids[1] == ids[2] == ids[3] != ids[4]  # a retry is the same event


def test_retries_run_out_then_a_later_attempt_delivers_it_once(harness: Harness, receiver: WebhookReceiver) -> None:
    receiver.script(Reply(500), Reply(502), Reply(503))
    channel = harness.channel(receiver.url, max_retries=2)
    failed = channel.send(card_message(7))
    assert failed.status == "failed" and failed.retryable
    assert failed.error == "RetryableChannelError: webhook answered 503 after 3 attempt(s)"
    assert harness.sleeps == [0.375, 0.75]  # 0.5 s, 1 s, … with half of it jitter

    assert channel.send(card_message(7)).status == "sent"
    assert receiver.event_ids == [webhook_id(card_message(7))]


def test_a_timeout_after_the_body_went_out_is_retried_and_deduplicated(
    harness: Harness, receiver: WebhookReceiver
) -> None:
    receiver.script(Hang(1.0), Hang(1.0))
    channel = harness.channel(receiver.url, max_retries=1)
    failed = channel.send(card_message(7))
    assert failed.status == "failed" and failed.retryable and not failed.in_doubt
    assert "no answer in time (ReadTimeout) after 2 attempt(s)" in str(failed.error)

    assert channel.send(card_message(7)).status == "sent"  # a later run: same webhook-id
    assert len(receiver.events) == 1 and receiver.duplicates == 2


def test_a_receiver_that_is_down_is_retried_then_left_for_a_later_run(harness: Harness) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    result = harness.channel(f"http://127.0.0.1:{port}/hook", max_retries=1).send(card_message(7))
    assert result.status == "failed" and result.retryable
    assert "connection failed (ConnectError) after 2 attempt(s)" in str(result.error)


def test_a_retry_after_beyond_the_budget_is_not_waited_for(harness: Harness, receiver: WebhookReceiver) -> None:
    receiver.script(Reply(429, retry_after=120))
    result = harness.channel(receiver.url, max_retry_wait=30).send(card_message(7))
    assert result.retryable and "429 after 1 attempt(s); it asked to wait 120 s" in str(result.error)
    assert harness.sleeps == [] and len(receiver.requests) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422, 301])
def test_a_refusal_is_permanent_and_not_retried(harness: Harness, receiver: WebhookReceiver, status: int) -> None:
    receiver.script(Reply(status))
    result = harness.channel(receiver.url).send(card_message(7))
    assert result.status == "failed" and not result.retryable and not result.in_doubt
    assert str(result.error).startswith(f"PermanentChannelError: webhook answered {status}")
    assert len(receiver.requests) == 1 and receiver.events == []


def test_410_gone_disables_the_endpoint(
    harness: Harness, receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.script(Reply(410))
    channel = harness.channel(receiver.url)
    results = channel.send_batch([card_message(i) for i in (1, 2, 3)]) + [channel.send(retraction(1))]
    assert all(r.status == "failed" and not r.retryable for r in results)
    assert {r.error for r in results} == {f"PermanentChannelError: {DISABLED}"}
    assert len(receiver.requests) == 1  # nothing after the 410
    assert sum("410 Gone" in record.getMessage() for record in caplog.records) == 1


# secrets --------------------------------------------------------------------------------------------------------


def test_two_secrets_sign_twice_so_either_receiver_verifies(harness: Harness) -> None:
    with WebhookReceiver(OLD) as old, WebhookReceiver(NEW) as new, WebhookReceiver(WRONG) as wrong:
        for peer in (old, new, wrong):
            result = harness.channel(peer.url, (OLD, NEW)).send(card_message(5))
            assert result.status == ("failed" if peer is wrong else "sent"), result.error
        assert len(old.events) == len(new.events) == 1 and wrong.events == []
        assert len(old.requests[0].headers["webhook-signature"].split(" ")) == 2
        assert wrong.requests[0].verified is False and wrong.requests[0].status == 400


def test_a_receiver_with_another_secret_rejects_every_request(harness: Harness) -> None:
    with WebhookReceiver(WRONG) as peer:
        result = harness.channel(peer.url).send(card_message(5))
    assert result.error == "PermanentChannelError: webhook answered 400"
    assert [request.verified for request in peer.requests] == [False] and peer.events == []


def _target(url: str, **options: Any) -> ChannelTarget:
    return ChannelTarget(spec=BY_NAME["inapp"], url=url, parts=urlsplit(url),
                         options=InAppWebhookOptions(**options))  # fmt: skip


def test_opens_from_the_url_and_the_secret_setting(receiver: WebhookReceiver) -> None:
    settings = SimpleNamespace(inapp_webhook_secret=SecretStr(f"{NEW}, {OLD}"))
    target = _target(receiver.url + "?timeout=0.5&max_retries=1", timeout=0.5, max_retries=1)
    channel = InAppWebhook.open_channel(target, ChannelResources(settings))
    assert isinstance(channel, InAppWebhook) and channel.max_retries == 1
    assert channel.url == receiver.url  # the query holds our options, not the receiver's
    assert channel.send(card_message(5)).status == "sent" and len(receiver.events) == 1
    assert OLD not in repr(channel) and "hooks" not in repr(channel)
    channel.close()
    channel.close()
    assert channel.client.is_closed


@pytest.mark.parametrize(
    "secret, problem",
    [
        (None, "set OMNICAST_INAPP_WEBHOOK_SECRET"),
        ("  ", "set OMNICAST_INAPP_WEBHOOK_SECRET"),
        ("hunter2-hunter2-hunter2-hunter2", "does not start with whsec_"),
        ("whsec_not*base64*at*all", "not base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "is 5 bytes"),
        (f"{OLD} {NEW},{WRONG}", "holds 3 secrets"),
        (f"{OLD} whsec_", "secret 2 of 2 is not base64"),
    ],
)
def test_a_missing_or_bad_secret_stops_the_run_and_says_how_to_make_one(secret: str | None, problem: str) -> None:
    settings = SimpleNamespace(inapp_webhook_secret=secret)
    with pytest.raises(ChannelConfigError) as caught:
        InAppWebhook.open_channel(_target("https://app.example/hooks"), ChannelResources(settings))
    text = str(caught.value)
    assert problem in text and SECRET_SETTING in text and "secrets.token_bytes(32)" in text
    for part in (secret or "").replace(",", " ").split():
        assert part.removeprefix("whsec_") not in text or part == "whsec_"


def test_options_are_strict() -> None:
    with pytest.raises(ValidationError):
        InAppWebhookOptions.model_validate({"token": "x"})
    with pytest.raises(ValidationError):
        InAppWebhookOptions(ttl_days=31)


def test_registered_in_the_channel_table(receiver: WebhookReceiver, tmp_path: Any) -> None:
    from channels.registry import open_channel

    spec = BY_NAME["inapp"]
    assert spec.adapter_for("https") is not None
    assert spec.adapter_for("http") is spec.adapter_for("https")
    settings = SimpleNamespace(inapp_webhook_secret=OLD)
    channel = open_channel(spec, receiver.url + "?timeout=1", ChannelResources(settings))
    assert isinstance(channel, InAppWebhook)
    channel.close()


# privacy --------------------------------------------------------------------------------------------------------


def test_no_customer_data_url_or_secret_in_errors_or_logs(
    harness: Harness, receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="channels.inapp_webhook")
    receiver.script(Reply(500), Hang(1.0), Reply(429, retry_after="Wed, 21 Oct 2015 07:28:00 GMT"), Reply(400))
    receiver.refuse.add(8)
    zelda = planner_context("Zelda")
    messages = [replace(card_message(i, email="zelda@example.com"), context=zelda) for i in (6, 7, 8)]
    channel = harness.channel(receiver.url, max_retries=1)
    results = channel.send_batch(messages) + [channel.send(retraction(8))]
    assert [(r.status, r.retryable) for r in results] == [("failed", True)] + [("failed", False)] * 3
    assert [r.status for r in receiver.requests] == [500, None, 429, 400, 400, 400]
    assert b"Zelda" in receiver.requests[0].body  # the cards carry her name; nothing else may
    shown = caplog.text + " ".join(str(r.error) for r in results) + repr(channel)
    for secret_or_personal in ("Zelda", "zelda@", "hooks/omnicast", OLD.removeprefix("whsec_"), "customer"):
        assert secret_or_personal not in shown


# through dispatch and the ledger --------------------------------------------------------------------------------


def test_dispatch_records_sent_and_permanent_failures_and_a_rerun_sends_nothing(
    sqlite_engine: Engine, harness: Harness, receiver: WebhookReceiver
) -> None:
    add_customers(sqlite_engine, [1, 2, 3, 4], channel="inapp")
    receiver.refuse.add(3)
    receiver.script(Reply(503))  # the first message needs a retry
    messages = [card_message(i) for i in (1, 2, 3, 4)]
    channel = harness.channel(receiver.url)

    first = dispatch(sqlite_engine, messages, {"inapp": channel})
    again = dispatch(sqlite_engine, messages, {"inapp": channel})
    channel.close()

    tally = first.channels["inapp"]
    assert first.balanced and again.balanced
    assert tally.sent == 3 and tally.failed["permanent"] == 1
    assert again.total_sent == 0 and again.channels["inapp"].already_done == 4
    with sqlite_engine.connect() as conn:
        rows = {row["customer_id"]: row for row in conn.execute(select(MESSAGES)).mappings()}
    for i in (1, 2, 4):
        assert rows[i]["state"] == "sent" and rows[i]["provider_id"] == webhook_id(card_message(i))
    assert (rows[3]["state"], rows[3]["reason"]) == ("failed", "permanent")
    assert rows[3]["error"] == "PermanentChannelError: webhook answered 400"
    assert sorted(receiver.event_ids) == sorted(webhook_id(card_message(i)) for i in (1, 2, 4))
    assert len(receiver.requests) == 5  # 503 + retry, two more cards, the refusal; nothing on the rerun
