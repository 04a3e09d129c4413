"""The SMTP transport against a real aiosmtpd server on loopback: reuse, reconnects, TLS, AUTH, SMTPUTF8, the error
contract (retry / permanent + suppress / in doubt) and URL parsing."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from channels.base import (
    ChannelConfigError,
    InDoubtChannelError,
    PermanentChannelError,
    RetryableChannelError,
)
from channels.email import EmailChannel
from channels.registry import open_channels
from channels.smtp import SmtpTransport, is_loopback
from flows.settings import Settings
from models.message import OutboundMessage
from tests.channels.conftest import message
from tests.peers.smtp_server import Certificate, SmtpPeer, make_certificate

SENDER = "hello@beanandleaf.example"

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # the loopback AUTH peer


def raw(customer_id: int, *, to: str | None = None) -> bytes:
    """A small wire-ready message (CRLF), with a line that needs dot-stuffing."""
    return (
        f'From: "Bean & Leaf" <{SENDER}>\r\nTo: {to or f"c{customer_id}@example.com"}\r\n'
        f"Subject: Picks for you\r\nMessage-ID: <m{customer_id}@beanandleaf.example>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Hello {customer_id}\r\n.a line starting with a dot\r\n"
    ).encode()


def transport(peer: SmtpPeer, **options: object) -> SmtpTransport:
    options.setdefault("timeout", 5.0)
    return SmtpTransport("127.0.0.1", peer.port, **options)  # type: ignore[arg-type]


@pytest.fixture()
def peer() -> Iterator[SmtpPeer]:
    with SmtpPeer() as server:
        yield server


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return make_certificate(tmp_path_factory.mktemp("tls"))


# --- one connection, many messages --------------------------------------------------------------------------------


def test_many_messages_travel_over_one_connection(peer: SmtpPeer) -> None:
    smtp = transport(peer)
    ids = [smtp.deliver(raw(i), message(i)) for i in range(1, 21)]
    smtp.close()
    assert peer.connections == 1
    assert ids == [f"Q{i:06d}" for i in range(1, 21)]  # the server's queue ids
    first = peer.messages[0]
    assert first.mail_from == SENDER and first.rcpt_tos == ("c1@example.com",)
    assert first.data == raw(1)  # dot-stuffing undone by the server: byte for byte what was built


def test_without_a_queue_id_the_message_id_is_the_provider_id(peer: SmtpPeer) -> None:
    peer.handler.queue_ids = False
    smtp = transport(peer)
    assert smtp.deliver(raw(7), message(7)) == "<m7@beanandleaf.example>"
    smtp.close()


def test_a_connection_the_server_dropped_while_idle_is_replaced(peer: SmtpPeer) -> None:
    smtp = transport(peer)
    smtp.deliver(raw(1), message(1))
    peer.drop_connections()  # a restart, or an idle timeout
    time.sleep(0.05)
    assert smtp.deliver(raw(2), message(2)) == "Q000002"
    assert peer.connections == 2 and len(peer.messages) == 2
    smtp.close()


def test_server_idle_timeout_is_survived() -> None:
    with SmtpPeer(idle_timeout=0.2) as peer:
        smtp = transport(peer)
        smtp.deliver(raw(1), message(1))
        time.sleep(0.4)
        smtp.deliver(raw(2), message(2))
        smtp.close()
        assert [m.rcpt_tos for m in peer.messages] == [("c1@example.com",), ("c2@example.com",)]


def test_a_server_closing_the_connection_with_421_gets_the_message_on_a_new_one(peer: SmtpPeer) -> None:
    smtp = transport(peer)
    smtp.deliver(raw(1), message(1))
    peer.handler.mail_replies = ["421 4.4.2 Idle too long, closing"]
    assert smtp.deliver(raw(2), message(2)) == "Q000002"
    smtp.close()
    assert peer.connections == 2


def test_a_connection_dropped_twice_in_a_row_is_retryable(peer: SmtpPeer) -> None:
    peer.handler.mail_replies = ["421 4.3.2 Shutting down", "421 4.3.2 Shutting down"]
    smtp = transport(peer)
    with pytest.raises(RetryableChannelError, match="twice"):
        smtp.deliver(raw(1), message(1))
    assert peer.messages == []
    smtp.deliver(raw(2), message(2))
    smtp.close()


# --- the error contract -------------------------------------------------------------------------------------------


def test_4xx_to_rcpt_is_retryable_and_the_connection_serves_the_next_message(peer: SmtpPeer) -> None:
    peer.handler.rcpt_replies["c2@example.com"] = "450 4.2.1 <c2@example.com>: mailbox busy, try later"
    smtp = transport(peer)
    with pytest.raises(RetryableChannelError) as caught:
        smtp.deliver(raw(2), message(2))
    assert "450" in str(caught.value) and "c2@example.com" not in str(caught.value)
    smtp.deliver(raw(3), message(3))
    smtp.close()
    assert peer.connections == 1 and [m.rcpt_tos for m in peer.messages] == [("c3@example.com",)]


def test_4xx_after_the_data_is_retryable(peer: SmtpPeer) -> None:
    peer.handler.data_reply = "451 4.3.0 Temporary local problem"
    smtp = transport(peer)
    with pytest.raises(RetryableChannelError, match="451"):
        smtp.deliver(raw(1), message(1))
    smtp.close()


@pytest.mark.parametrize("code", [550, 551, 553])
def test_dead_address_is_permanent_and_suppressed_without_naming_it(peer: SmtpPeer, code: int) -> None:
    peer.handler.rcpt_replies["c2@example.com"] = f"{code} 5.1.1 <c2@example.com>: Recipient address rejected"
    smtp = transport(peer)
    with pytest.raises(PermanentChannelError) as caught:
        smtp.deliver(raw(2), message(2))
    assert caught.value.suppress == "smtp_permanent" and str(code) in str(caught.value)
    assert "c2@example.com" not in str(caught.value) and "Hello" not in str(caught.value)
    smtp.deliver(raw(3), message(3))  # the refused transaction was reset: the connection goes on
    smtp.close()
    assert peer.connections == 1


def test_policy_refusal_is_permanent_but_suppresses_nobody(peer: SmtpPeer) -> None:
    peer.handler.rcpt_replies["c2@example.com"] = "550 5.7.1 Relaying denied"
    smtp = transport(peer)
    with pytest.raises(PermanentChannelError) as caught:
        smtp.deliver(raw(2), message(2))
    assert caught.value.suppress is None
    smtp.close()


def test_5xx_after_the_data_is_permanent_without_suppression(peer: SmtpPeer) -> None:
    peer.handler.data_reply = "554 5.6.0 Message content rejected"
    smtp = transport(peer)
    with pytest.raises(PermanentChannelError) as caught:
        smtp.deliver(raw(1), message(1))
    assert caught.value.suppress is None
    smtp.close()


def test_connection_lost_after_the_data_is_in_doubt_and_never_resent(peer: SmtpPeer) -> None:
    peer.handler.drop_after_data = True
    smtp = transport(peer)
    with pytest.raises(InDoubtChannelError):
        smtp.deliver(raw(1), message(1))
    assert peer.handler.dropped == 1  # handed over exactly once: no retry
    peer.handler.drop_after_data = False
    assert smtp.deliver(raw(2), message(2)) == "Q000001"  # a new connection for the next one
    smtp.close()


def test_refused_connection_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once closed
    with pytest.raises(RetryableChannelError, match="could not be reached"):
        SmtpTransport("127.0.0.1", port, timeout=2).deliver(raw(1), message(1))


def test_silent_server_times_out_as_retryable() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        smtp = SmtpTransport("127.0.0.1", listener.getsockname()[1], timeout=0.3)
        with pytest.raises(RetryableChannelError, match="timed out"):
            smtp.deliver(raw(1), message(1))


def test_a_bad_recipient_address_fails_permanently_without_connecting(peer: SmtpPeer) -> None:
    smtp = transport(peer)
    with pytest.raises(PermanentChannelError) as caught:
        smtp.deliver(raw(1), message(1, email="not an address\r\nRCPT TO:<x@evil.example>"))
    assert "evil" not in str(caught.value) and peer.connections == 0


# --- TLS and AUTH -------------------------------------------------------------------------------------------------


def test_starttls_is_used_when_offered(certificate: Certificate) -> None:
    with SmtpPeer(tls=certificate, starttls=True) as peer:
        smtp = transport(peer, ssl_context=certificate.client_context())
        smtp.deliver(raw(1), message(1))
        smtp.deliver(raw(2), message(2))
        smtp.close()
        assert [m.tls for m in peer.messages] == [True, True] and peer.connections == 1


def test_starttls_off_stays_plaintext(certificate: Certificate) -> None:
    with SmtpPeer(tls=certificate, starttls=True) as peer:
        smtp = transport(peer, starttls="off")
        smtp.deliver(raw(1), message(1))
        smtp.close()
        assert peer.messages[0].tls is False


def test_starttls_required_but_not_offered_stops_the_run(peer: SmtpPeer) -> None:
    smtp = transport(peer, starttls="require")
    with pytest.raises(ChannelConfigError, match="OMNICAST_EMAIL_URL.*STARTTLS"):
        smtp.deliver(raw(1), message(1))
    assert peer.messages == []


def test_untrusted_certificate_stops_the_run(certificate: Certificate) -> None:
    with SmtpPeer(tls=certificate, starttls=True) as peer:
        # the system's CAs, as for any relay off this machine: a self-signed certificate is not trusted
        smtp = transport(peer, ssl_context=ssl.create_default_context())
        with pytest.raises(ChannelConfigError, match="certificate"):
            smtp.deliver(raw(1), message(1))
        assert peer.messages == []


def test_a_relay_on_loopback_with_a_self_signed_certificate_is_used_encrypted(certificate: Certificate) -> None:
    """A local Postfix with its "snakeoil" certificate: the traffic never leaves the host, so it is not verified."""
    with SmtpPeer(tls=certificate, starttls=True) as peer:
        smtp = transport(peer)
        smtp.deliver(raw(1), message(1))
        smtp.close()
        assert peer.messages[0].tls is True


def test_a_relay_off_this_machine_is_verified_against_the_systems_cas() -> None:
    context = SmtpTransport("smtp.example.com", 587)._tls()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_smtps_is_tls_from_the_first_byte(certificate: Certificate) -> None:
    with SmtpPeer(tls=certificate, implicit_tls=True) as peer:
        smtp = transport(peer, implicit_tls=True, ssl_context=certificate.client_context())
        assert smtp.deliver(raw(1), message(1)) == "Q000001"
        smtp.close()
        assert peer.messages[0].tls is True


def test_auth_over_starttls(certificate: Certificate) -> None:
    with SmtpPeer(tls=certificate, starttls=True, users={"shop": "pa:ss@word"}) as peer:
        smtp = transport(peer, user="shop", password="pa:ss@word", ssl_context=certificate.client_context())
        smtp.deliver(raw(1), message(1))
        smtp.deliver(raw(2), message(2))
        smtp.close()
        assert [(m.user, m.tls) for m in peer.messages] == [("shop", True), ("shop", True)]
        assert peer.connections == 1  # logged in once


def test_wrong_password_stops_the_run_without_showing_it(certificate: Certificate) -> None:
    with SmtpPeer(tls=certificate, starttls=True, users={"shop": "right"}) as peer:
        smtp = transport(peer, user="shop", password="wrong-s3cret", ssl_context=certificate.client_context())
        with pytest.raises(ChannelConfigError) as caught:
            smtp.deliver(raw(1), message(1))
        assert "OMNICAST_EMAIL_URL" in str(caught.value) and "535" in str(caught.value)
        assert "wrong-s3cret" not in str(caught.value) and "s3cret" not in repr(smtp)
        assert caught.value.__cause__ is None and caught.value.__context__ is not None  # suppressed, not chained


def test_server_that_requires_auth_asks_for_credentials() -> None:
    with SmtpPeer(users={"shop": "pw"}) as peer, pytest.raises(ChannelConfigError, match="requires AUTH"):
        transport(peer).deliver(raw(1), message(1))


def test_password_never_crosses_plaintext_to_another_host() -> None:
    with pytest.raises(ChannelConfigError, match="plaintext") as caught:
        SmtpTransport("mail.example.com", 587, starttls="off", user="shop", password="hunter2")
    assert "hunter2" not in str(caught.value)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("mail.example.com") and not is_loopback("10.0.0.1")


# --- SMTPUTF8 -----------------------------------------------------------------------------------------------------


def utf8_message() -> tuple[bytes, OutboundMessage]:
    return raw(5, to="josé@example.com"), message(5, email="josé@example.com")


def test_non_ascii_local_part_goes_with_smtputf8(peer: SmtpPeer) -> None:
    msg_bytes, addressed = utf8_message()
    smtp = transport(peer)
    smtp.deliver(msg_bytes, addressed)
    smtp.deliver(raw(6), message(6))  # and an ASCII one after it on the same connection
    smtp.close()
    first, second = peer.messages
    assert first.smtp_utf8 and first.rcpt_tos == ("josé@example.com",) and first.data == msg_bytes
    assert not second.smtp_utf8


def test_server_without_smtputf8_fails_that_message_permanently() -> None:
    with SmtpPeer(smtputf8=False) as peer:
        msg_bytes, addressed = utf8_message()
        smtp = transport(peer)
        with pytest.raises(PermanentChannelError, match="SMTPUTF8") as caught:
            smtp.deliver(msg_bytes, addressed)
        assert caught.value.suppress is None and "jos" not in str(caught.value)
        smtp.deliver(raw(6), message(6))
        smtp.close()
        assert len(peer.messages) == 1


# --- the pool -----------------------------------------------------------------------------------------------------


def test_pool_serves_several_threads_with_at_most_pool_connections(peer: SmtpPeer) -> None:
    smtp = transport(peer, pool=3)
    errors: list[BaseException] = []

    def send(first: int) -> None:
        try:
            for i in range(first, first + 15):
                smtp.deliver(raw(i), message(i))
        except BaseException as exc:  # pragma: no cover  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(start,)) for start in (0, 100, 200, 300, 400)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    smtp.close()
    assert errors == []
    received = sorted(m.rcpt_tos[0] for m in peer.messages)
    assert len(received) == 75 and len(set(received)) == 75
    assert 1 <= peer.connections <= 3


def test_close_says_quit_and_a_later_message_reconnects(peer: SmtpPeer) -> None:
    smtp = transport(peer, pool=2)
    smtp.deliver(raw(1), message(1))
    smtp.close()
    deadline = time.monotonic() + 2
    while peer.open_connections and time.monotonic() < deadline:
        time.sleep(0.01)
    assert peer.open_connections == 0  # the server saw the connection end
    smtp.close()  # twice is harmless
    smtp.deliver(raw(2), message(2))
    smtp.close()
    assert peer.connections == 2 and len(peer.messages) == 2


# --- the adapter: URL and options ---------------------------------------------------------------------------------


def settings(tmp_path: Path, url: str) -> Settings:
    return Settings(secret_key="test-secret", outbox_dir=tmp_path, email_url=url)


def open_email(tmp_path: Path, url: str) -> EmailChannel:
    channel = open_channels(settings(tmp_path, url), only=["email"])["email"]
    assert isinstance(channel, EmailChannel)
    return channel


def test_smtp_url_opens_an_email_channel_with_percent_decoded_credentials(tmp_path: Path) -> None:
    with SmtpPeer(users={"shop@beanandleaf.example": "p:ss/w@rd"}) as peer:
        url = f"smtp://shop%40beanandleaf.example:p%3Ass%2Fw%40rd@127.0.0.1:{peer.port}?pool=3&timeout=5&helo=omnicast.test"
        channel = open_email(tmp_path, url)
        smtp = channel.transport
        assert isinstance(smtp, SmtpTransport)
        assert (smtp.pool, smtp.timeout, smtp.helo, smtp.starttls) == (3, 5.0, "omnicast.test", "auto")
        assert peer.connections == 0  # opened lazily
        result = channel.send(message(1))
        channel.close()
        assert result.status == "sent" and result.provider_id == "Q000001"
        received = peer.messages[0]
        assert received.user == "shop@beanandleaf.example" and received.rcpt_tos == ("c1@example.com",)
        assert received.mail_from == "hello@beanandleaf.example"  # the From header's address


def test_email_channel_sends_a_non_ascii_recipient_with_smtputf8(tmp_path: Path, peer: SmtpPeer) -> None:
    channel = open_email(tmp_path, f"smtp://127.0.0.1:{peer.port}")
    result = channel.send(message(1, email="josé@example.com"))
    channel.close()
    assert result.status == "sent" and peer.messages[0].smtp_utf8


def test_default_ports() -> None:
    assert SmtpTransport("mail.example.com").port == 25
    assert SmtpTransport("mail.example.com", implicit_tls=True).port == 465


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.com?pool_size=4", r"unknown option 'pool_size'.*starttls.*pool"),
        ("smtp://mail.example.com?pool=9", r"'pool'"),
        ("smtp://mail.example.com?starttls=maybe", r"'starttls'"),
        ("smtp://mail.example.com?timeout=-1", r"'timeout'"),
        ("smtp://mail.example.com:99999", r"(?i)port"),
        ("smtp://:25", r"names no server"),
        ("smtp://shop@mail.example.com", r"both a user and a password"),
        ("smtps://mail.example.com?starttls=require", r"smtps:// is TLS"),
        ("smtp://mail.example.com/inbox", r"must end after host:port"),
        ("smtp://mail.example.com?helo=a%0d%0aRSET", r"helo"),
        ("smtp://shop:hunter2@mail.example.com?starttls=off", r"plaintext"),
    ],
)
def test_bad_urls_name_the_setting_and_never_the_password(tmp_path: Path, url: str, expected: str) -> None:
    with pytest.raises(ChannelConfigError, match=expected) as caught:
        open_email(tmp_path, url)
    assert "OMNICAST_EMAIL_URL" in str(caught.value) and "hunter2" not in str(caught.value)
