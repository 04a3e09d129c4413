"""The whole day with email leaving over SMTP to a real server on loopback (aiosmtpd), run twice.

The store is `omnicast sample` data in which some customers are named like attackers (`{{ 7*7 }}<script>`, a CRLF
followed by a `Bcc:` header). Every email the ledger says was sent arrives once, as the ledger describes it: the
headers omnicast writes and no other, text then HTML, a DKIM signature that verifies, names escaped and never
evaluated; the second run of the same day sends nothing.
"""

from __future__ import annotations

import base64
import csv
import email
import email.policy
from collections import Counter
from datetime import date, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from channels.email import HEADERS
from channels.outbox import ledger_hash
from models.db import make_engine
from models.schema import Customer, Message
from tests.peers.smtp_server import SmtpPeer

CUSTOMERS = 300
TEMPLATE_NAME = "{{ 7*7 }}<script>alert(1)</script>"
HEADER_NAME = "Eve\r\nBcc: attacker@evil.example"
SELECTOR, DOMAIN = "omni2026", "beanandleaf.example"


def _poison_names(customers_csv: Path) -> None:
    """Every third customer gets a hostile first name (template syntax + markup, or a CRLF header injection)."""
    with customers_csv.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    first = header.index("First Name")
    for i, row in enumerate(body):
        if i % 3 == 0:
            row[first] = TEMPLATE_NAME if i % 2 == 0 else HEADER_NAME
    with customers_csv.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([header, *body])


def _dkim_key(folder: Path) -> tuple[Path, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = folder / "dkim.pem"
    pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


@pytest.fixture(scope="module")
def smtp_day(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from flows.campaign import campaign_flow
    from flows.daily import daily_flow
    from flows.demo import prepare_demo

    workdir = tmp_path_factory.mktemp("smtp-day")
    manifest, environment = prepare_demo(workdir, CUSTOMERS)
    _poison_names(Path(environment["OMNICAST_STORE_URL"]) / "customers_export.csv")
    pem, record = _dkim_key(workdir)
    with SmtpPeer() as peer, pytest.MonkeyPatch.context() as patch:
        for key, value in environment.items():
            patch.setenv(key, value)
        patch.setenv("OMNICAST_EMAIL_URL", f"smtp://127.0.0.1:{peer.port}")
        patch.setenv("OMNICAST_SERVE_URL", "https://mail.beanandleaf.example")
        patch.setenv("OMNICAST_DKIM_KEY_FILE", str(pem))
        patch.setenv("OMNICAST_DKIM_SELECTOR", SELECTOR)
        first = daily_flow(as_of=manifest["as_of"])  # triggered campaigns
        picks = campaign_flow(name="weekly-picks", as_of=manifest["as_of"])  # the broadcast, on its own run
        after_first = list(peer.messages)
        second = daily_flow(as_of=manifest["as_of"])
        after_second = list(peer.messages)
        unsubscribed = _one_click(after_first, environment["OMNICAST_DATABASE_URL"])
        next_week = (date.fromisoformat(manifest["as_of"]) + timedelta(days=7)).isoformat()
        later = campaign_flow(name="weekly-picks", as_of=next_week)
    engine = make_engine(environment["OMNICAST_DATABASE_URL"])
    with engine.connect() as conn:
        rows = list(conn.execute(select(Message).where(Message.channel == "email")).all())  # type: ignore[call-overload]
    return {"first": first, "picks": picks, "second": second, "received": after_first, "later": after_second,
            "rows": rows, "record": record, "unsubscribed": unsubscribed, "next_week": later,
            "engine": engine}  # fmt: skip


def _one_click(received: list[Any], database_url: str) -> dict[str, Any]:
    """What a mailbox provider does when the recipient of the first weekly-picks email clicks "Unsubscribe": POST
    ``List-Unsubscribe=One-Click`` to the https URL of its ``List-Unsubscribe`` header, here through the real app
    (``omnicast serve``'s) on loopback standing in for the public host."""
    from flows.runtime import load_settings
    from tests.web.conftest import live_server
    from web.app import create_app

    engine = make_engine(database_url)
    with engine.connect() as conn:
        weekly = conn.execute(
            select(Message.occurrence_key, Message.customer_id, Message.channel).where(
                Message.campaign == "weekly-picks", Message.channel == "email", Message.state == "sent"
            )
        ).all()
    hashes = {ledger_hash(tuple(row)) for row in weekly}  # type: ignore[arg-type]
    picks = next(m for m in received if str(_parsed(m.data)["Message-ID"])[1:33] in hashes)
    header = str(_parsed(picks.data)["List-Unsubscribe"])
    url = header.split("<", 1)[1].split(">", 1)[0]
    assert url.startswith("https://mail.beanandleaf.example/u/")
    with live_server(create_app(load_settings(), engine)) as base:
        answer = httpx.post(base + urlsplit(url).path, data={"List-Unsubscribe": "One-Click"}, follow_redirects=False)
    engine.dispose()
    return {"status": answer.status_code, "location": answer.headers.get("location"), "email": picks.rcpt_tos[0]}


def _parsed(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


@pytest.mark.e2e
def test_every_sent_email_arrived_once_over_smtp(smtp_day: Any) -> None:
    sent = [row for row in smtp_day["rows"] if row.state == "sent"]
    assert len(sent) > 50
    ids = Counter(_parsed(m.data)["Message-ID"] for m in smtp_day["received"])
    assert max(ids.values()) == 1, "a message arrived twice"
    reported = smtp_day["first"].dispatch.channels["email"].sent + smtp_day["picks"].report.channels["email"].sent
    assert len(smtp_day["received"]) == len(sent) == reported
    assert all(row.provider_id for row in sent)


@pytest.mark.e2e
def test_the_second_run_of_the_day_sends_nothing(smtp_day: Any) -> None:
    assert smtp_day["second"].dispatch.channels["email"].sent == 0
    assert len(smtp_day["later"]) == len(smtp_day["received"])


@pytest.mark.e2e
def test_each_email_is_our_headers_then_text_then_html_and_its_dkim_signature_verifies(smtp_day: Any) -> None:
    dkim = pytest.importorskip("dkim")

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return smtp_day["record"] if name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode() else None

    for received in smtp_day["received"]:
        message = _parsed(received.data)
        assert [key for key in message if key != "DKIM-Signature"] == list(HEADERS)
        assert received.rcpt_tos == (message["To"].addresses[0].addr_spec,)
        assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
        assert message["List-Unsubscribe"].startswith("<https://mail.beanandleaf.example/u/")
        assert dkim.verify(received.data, dnsfunc=dns), message["Message-ID"]


@pytest.mark.e2e
def test_hostile_names_arrive_escaped_never_evaluated_and_add_no_header(smtp_day: Any) -> None:
    seen_template = 0
    for received in smtp_day["received"]:
        message = _parsed(received.data)
        assert "Bcc" not in message and "attacker@evil.example" not in received.rcpt_tos
        html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
        text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        if "{{ 7*7 }}" in text:
            seen_template += 1
            assert "<script>" not in html and "&lt;script&gt;" in html
        assert "Hi 49" not in text and "<script>alert" not in html
        head = received.data.partition(b"\r\n\r\n")[0].split(b"\r\n")
        assert not any(line.lower().startswith(b"bcc") for line in head)  # a name stays text, never a header
        assert "evil.example" not in str(message["To"])
    assert seen_template > 0, "no hostile name reached an email: the test lost its teeth"


@pytest.mark.e2e
def test_a_one_click_unsubscribe_through_the_app_keeps_the_next_campaign_away(smtp_day: Any) -> None:
    """RFC 8058 end to end: the POST answers 200 without a redirect, and next week's picks skip that person."""
    clicked = smtp_day["unsubscribed"]
    assert clicked["status"] == 200 and clicked["location"] is None
    with smtp_day["engine"].connect() as conn:
        customer_id = conn.execute(select(Customer.id).where(Customer.email == clicked["email"])).scalar_one()
        weeks = conn.execute(
            select(Message.occurrence_key, Message.state, Message.reason)
            .where(Message.customer_id == customer_id, Message.channel == "email", Message.campaign == "weekly-picks")
            .order_by(Message.id)
        ).all()
    assert len(weeks) == 2, "the unsubscribed customer was not planned next week: the test lost its teeth"
    assert (weeks[0].state, weeks[1].state, weeks[1].reason) == ("sent", "suppressed", "opted_out")
    tally = smtp_day["next_week"].report.channels["email"]
    # Everyone else is planned too; on the same real day, today's email already took each one's daily slot.
    assert tally.planned == tally.accounted and tally.suppressed["frequency_cap"] > 0
