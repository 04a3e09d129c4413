"""The email channel: complete RFC 5322 messages in the outbox, one file per ledger key, DKIM when configured.

Through-dispatch tests use SQLite only: the ledger itself is tested on both databases in test_dispatch.py.
"""

from __future__ import annotations

import base64
import email
import email.generator
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage
from io import BytesIO
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.engine import Engine

from channels.base import ChannelConfigError, OutboundMessage, RetryableChannelError
from channels.consent import record_unsubscribe
from channels.dispatch import dispatch
from channels.email import POLICY, DkimKey, EmailChannel, to_bytes
from channels.outbox import EmlOutboxTransport, ledger_hash
from channels.render import EmailRenderer
from channels.tokens import UnsubscribeSigner
from tests.channels.conftest import add_customers, message

SENDER = "Bean & Leaf Coffee <hello@beanandleaf.example>"
SIGNER = UnsubscribeSigner("test-secret")
NOW = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)


def email_channel(folder: Path, **options: object) -> EmailChannel:
    return EmailChannel(
        EmlOutboxTransport(folder),
        EmailRenderer(),
        sender=SENDER,
        public_url="https://beanandleaf.example/",
        unsubscribe_mailto="mailto:unsubscribe@beanandleaf.example",
        signer=SIGNER,
        clock=lambda: NOW,
        **options,  # type: ignore[arg-type]
    )


def parse(raw: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    return tmp_path / "outbox" / "email"


@pytest.mark.parametrize("template", ["weekly_picks", "birthday", "replenishment", "winback", "abandoned_cart"])
def test_every_eml_is_a_complete_wire_ready_message(outbox: Path, template: str) -> None:
    channel = email_channel(outbox)
    result = channel.send(message(7, template=template))
    assert result.status == "sent", result.error
    raw = (outbox / str(result.provider_id)).read_bytes()

    assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    parsed = parse(raw)
    assert parsed.defects == []
    assert [part.get_content_type() for part in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert all(part["Content-Transfer-Encoding"] == "quoted-printable" for part in parsed.iter_parts())
    for header in ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version"):
        assert parsed[header], header
    assert parsed["To"] == "c7@example.com"
    assert parsed["Date"].datetime == NOW


def test_list_unsubscribe_headers_follow_rfc_8058(outbox: Path) -> None:
    result = email_channel(outbox).send(message(7))
    parsed = parse((outbox / str(result.provider_id)).read_bytes())

    uris = [uri.strip().strip("<>") for uri in parsed["List-Unsubscribe"].split(",")]
    https, mailto = uris
    assert https.startswith("https://beanandleaf.example/u/")
    assert mailto.startswith("mailto:unsubscribe@beanandleaf.example?subject=unsubscribe-")
    token = https.rsplit("/", 1)[1]
    assert mailto.endswith(token)
    assert SIGNER.verify(token).customer_id == 7
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "=?" not in str(parsed["List-Unsubscribe"])  # never RFC 2047-encoded
    html = parsed.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert f'href="{https}"' in html  # the visible link is the same one-click URL


def test_retry_rewrites_the_same_file_with_the_same_message_id(outbox: Path) -> None:
    channel = email_channel(outbox)
    first = channel.send(message(7))
    second = channel.send(message(7))

    assert first.provider_id == second.provider_id == f"{ledger_hash(message(7).ledger_key)}.eml"
    assert [p.name for p in outbox.iterdir()] == [first.provider_id]
    assert channel.build(message(7)) == channel.build(message(7))
    message_id = parse(channel.build(message(7)))["Message-ID"]
    assert message_id == f"<{ledger_hash(message(7).ledger_key)}@beanandleaf.example>"
    assert parse(channel.build(message(7, occurrence="weekly:2026-49")))["Message-ID"] != message_id


def test_non_ascii_subject_and_body_survive_the_round_trip(outbox: Path) -> None:
    msg = message(7, template="birthday")
    msg.context["customer"]["first_name"] = "Zoë"
    msg.context["products"][0]["title"] = "Café de Olla – Edición Especial"
    parsed = parse(email_channel(outbox).build(msg))
    assert parsed["Subject"] == "Happy birthday, Zoë! A little treat from Bean & Leaf Coffee"
    assert "Café de Olla – Edición Especial" in parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Café de Olla – Edición Especial" in parsed.get_body(("html",)).get_content()  # type: ignore[union-attr]


def test_html_part_decodes_to_exactly_what_was_rendered(outbox: Path) -> None:
    channel = email_channel(outbox)
    msg = message(7)
    token = SIGNER.sign(7, "email")
    rendered = EmailRenderer().render("weekly_picks", {**msg.context, "unsubscribe_url": f"https://x/u/{token}"})
    parsed = parse(to_bytes(channel.compose(msg, rendered, token)))
    html = parsed.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert html.replace("\r\n", "\n") == rendered.html


def test_fast_generator_writes_the_same_bytes_as_the_stock_one(outbox: Path) -> None:
    channel = email_channel(outbox)
    msg = message(7)
    token = SIGNER.sign(7, "email")
    rendered = EmailRenderer().render("weekly_picks", {**msg.context, "unsubscribe_url": "https://x/u/t"})
    composed = channel.compose(msg, rendered, token)
    stock = BytesIO()
    email.generator.BytesGenerator(stock, policy=POLICY).flatten(composed)
    assert to_bytes(composed) == stock.getvalue()


def test_recipient_without_email_cannot_be_reached(outbox: Path) -> None:
    assert email_channel(outbox).can_reach(message(7, email=None)) == "no_address"
    assert email_channel(outbox).can_reach(message(7)) is None


def test_malformed_address_fails_permanently_without_leaking_it(outbox: Path) -> None:
    result = email_channel(outbox).send(message(7, email="not an address"))
    assert result.status == "failed" and not result.retryable
    assert "not an address" not in str(result.error)


def test_missing_template_stops_the_run(outbox: Path) -> None:
    with pytest.raises(ChannelConfigError, match="no_such_template"):
        email_channel(outbox).send(message(7, template="no_such_template"))


def test_bad_sender_is_a_config_error(outbox: Path) -> None:
    with pytest.raises(ChannelConfigError, match="OMNICAST_SENDER_ADDRESS"):
        EmailChannel(
            EmlOutboxTransport(outbox),
            EmailRenderer(),
            sender="not a mailbox",
            public_url="https://x",
            unsubscribe_mailto="u@x",
            signer=SIGNER,
        )


def test_unwritable_outbox_is_a_retryable_failure(outbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    channel = email_channel(outbox)

    def disk_full(path: Path, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("channels.outbox.atomic_write", disk_full)
    result = channel.send(message(7))
    assert result.status == "failed" and result.retryable and "No space left" in str(result.error)
    assert RetryableChannelError.__name__ in str(result.error)


def test_dkim_signature_verifies_and_covers_list_unsubscribe(outbox: Path) -> None:
    dkim = pytest.importorskip("dkim")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public_der)

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == b"mail2026._domainkey.beanandleaf.example." else None

    channel = email_channel(outbox, dkim=DkimKey("mail2026", "beanandleaf.example", private_pem))
    raw = channel.build(message(7))

    assert raw.startswith(b"DKIM-Signature: ")
    assert dkim.verify(raw, dnsfunc=dns)
    signed = parse(raw)["DKIM-Signature"]
    assert "list-unsubscribe" in signed.lower() and "list-unsubscribe-post" in signed.lower()
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    tampered = raw.replace(b"Subject: Ann", b"Subject: Bob")
    assert not dkim.verify(tampered, dnsfunc=dns)


def test_unsubscribed_customer_gets_no_email_file(sqlite_engine: Engine, outbox: Path) -> None:
    add_customers(sqlite_engine, [1, 2])
    record_unsubscribe(sqlite_engine, 2, "email")
    channel = email_channel(outbox)

    report = dispatch(sqlite_engine, [message(1), message(2)], {"email": channel})

    assert report.total_sent == 1
    assert [p.name for p in outbox.iterdir()] == [f"{ledger_hash(message(1).ledger_key)}.eml"]
    assert b"c2@example.com" not in b"".join(p.read_bytes() for p in outbox.iterdir())


def test_rerun_after_a_crash_rewrites_rather_than_duplicates(sqlite_engine: Engine, outbox: Path) -> None:
    add_customers(sqlite_engine, [1])
    channel = email_channel(outbox)
    first: OutboundMessage = message(1)
    channel.send(first)  # delivered, then the worker died before recording it
    dispatch(sqlite_engine, [first], {"email": channel})
    assert len(list(outbox.iterdir())) == 1


def test_unusable_dkim_key_stops_the_run(outbox: Path) -> None:
    pytest.importorskip("dkim")
    channel = email_channel(outbox, dkim=DkimKey("s1", "beanandleaf.example", b"not a pem key"))
    with pytest.raises(ChannelConfigError, match="s1._domainkey.beanandleaf.example"):
        channel.send(message(7))
