"""The issue's in-app contract, end to end: with ``OMNICAST_INAPP_URL`` at a local receiver and
``OMNICAST_INAPP_WEBHOOK_SECRET``, every card of a daily run arrives signed (the receiver verifies each request with
the Standard Webhooks reference library), once; the rerun posts nothing."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from sqlalchemy import select

from models.db import make_engine
from models.schema import Message
from tests.peers.webhook_receiver import WebhookReceiver

CUSTOMERS = 300
SECRET = "whsec_" + base64.b64encode(b"omnicast-day-webhook-secret-0032").decode()


@pytest.fixture(scope="module")
def webhook_day(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from flows.campaign import campaign_flow
    from flows.daily import daily_flow
    from flows.demo import prepare_demo

    workdir = tmp_path_factory.mktemp("webhook-day")
    manifest, environment = prepare_demo(workdir, CUSTOMERS)
    with WebhookReceiver(SECRET) as receiver, pytest.MonkeyPatch.context() as patch:
        for key, value in environment.items():
            patch.setenv(key, value)
        patch.setenv("OMNICAST_INAPP_URL", f"{receiver.url}/hook")
        patch.setenv("OMNICAST_INAPP_WEBHOOK_SECRET", SECRET)
        first = daily_flow(as_of=manifest["as_of"])  # triggered campaigns
        picks = campaign_flow(name="weekly-picks", as_of=manifest["as_of"])  # the broadcast, on its own run
        after_first = len(receiver.requests)
        second = daily_flow(as_of=manifest["as_of"])
        found = {"first": first, "picks": picks, "second": second, "requests": list(receiver.requests),
                 "events": list(receiver.events), "after_first": after_first,
                 "duplicates": receiver.duplicates}  # fmt: skip
    engine = make_engine(environment["OMNICAST_DATABASE_URL"])
    with engine.connect() as conn:
        found["sent"] = conn.execute(
            select(Message.provider_id).where(Message.channel == "inapp", Message.state == "sent")
        ).scalars().all()  # fmt: skip
    engine.dispose()
    return found


@pytest.mark.e2e
def test_every_card_of_the_day_arrives_signed_once(webhook_day: Any) -> None:
    requests, events = webhook_day["requests"], webhook_day["events"]
    assert len(webhook_day["sent"]) > 50 and len(events) == len(webhook_day["sent"])
    assert all(r.verified and r.status == 204 for r in requests)  # every signature checked by the reference library
    assert webhook_day["duplicates"] == 0 and len(requests) == webhook_day["after_first"]  # the rerun posted nothing
    cards = [e["data"] for e in events if e["type"] == "card.created"]
    assert len(cards) == len(events)
    assert all(card["user_id"] for card in cards)  # the app's own id for the person, not omnicast's row id
    assert all(str(card["user_id"]) != str(card["customer_id"]) for card in cards)
    reported = webhook_day["first"].dispatch.channels["inapp"].sent + webhook_day["picks"].report.channels["inapp"].sent
    assert reported == len(cards)
    assert webhook_day["second"].dispatch.channels["inapp"].sent == 0
