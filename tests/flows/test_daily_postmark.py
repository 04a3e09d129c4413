"""The whole day with email leaving through Postmark's batch API (a local server that enforces its documented
contract stands in for api.postmarkapp.com), run twice: every sent email is accepted once, in calls of at most
500, with the unsubscribe headers; the rerun calls nothing."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select

from models.db import make_engine
from models.schema import Message
from tests.peers.postmark_server import PostmarkServer

CUSTOMERS = 300
TOKEN = "pm-server-token-2026"


@pytest.fixture(scope="module")
def postmark_day(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from flows.campaign import campaign_flow
    from flows.daily import daily_flow
    from flows.demo import prepare_demo

    workdir = tmp_path_factory.mktemp("postmark-day")
    manifest, environment = prepare_demo(workdir, CUSTOMERS)
    with PostmarkServer(token=TOKEN) as server, pytest.MonkeyPatch.context() as patch:
        for key, value in environment.items():
            patch.setenv(key, value)
        patch.setenv("OMNICAST_EMAIL_URL", f"postmark://{TOKEN}?message_stream=broadcast")
        patch.setenv("OMNICAST_POSTMARK_API_URL", server.url)
        patch.setenv("OMNICAST_SERVE_URL", "https://mail.beanandleaf.example")
        first = daily_flow(as_of=manifest["as_of"])  # triggered campaigns
        picks = campaign_flow(name="weekly-picks", as_of=manifest["as_of"])  # the broadcast, on its own run
        calls_after_first = len(server.calls)
        second = daily_flow(as_of=manifest["as_of"])
        result = {"first": first, "picks": picks, "second": second, "accepted": list(server.accepted),
                  "calls": list(server.calls), "calls_after_first": calls_after_first}  # fmt: skip
    engine = make_engine(environment["OMNICAST_DATABASE_URL"])
    with engine.connect() as conn:
        result["sent"] = conn.execute(
            select(Message.provider_id).where(Message.channel == "email", Message.state == "sent")
        ).scalars().all()  # fmt: skip
    return result


@pytest.mark.e2e
def test_every_sent_email_was_accepted_once_by_the_batch_api(postmark_day: Any) -> None:
    sent = postmark_day["sent"]
    day, picks = postmark_day["first"], postmark_day["picks"]
    reported = day.dispatch.channels["email"].sent + picks.report.channels["email"].sent
    assert len(sent) > 50 and len(sent) == reported
    assert len(postmark_day["accepted"]) == len(sent)
    recipients = Counter(message["To"] for message in postmark_day["accepted"])
    assert max(recipients.values()) <= 5  # a customer gets several campaigns' emails at most, never one twice
    headers = [{h["Name"]: h["Value"] for h in m["Headers"]} for m in postmark_day["accepted"]]
    assert all(h["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click" for h in headers)
    assert all(h["List-Unsubscribe"].startswith("<https://mail.beanandleaf.example/u/") for h in headers)
    assert {m["MessageStream"] for m in postmark_day["accepted"]} == {"broadcast"}


@pytest.mark.e2e
def test_messages_went_in_batches_and_the_rerun_calls_nothing(postmark_day: Any) -> None:
    calls = postmark_day["calls"]
    assert postmark_day["calls_after_first"] == len(calls)  # the second run made no call
    assert len(calls) < len(postmark_day["sent"]) / 10  # batches, not one call per message
    assert postmark_day["second"].dispatch.channels["email"].sent == 0
