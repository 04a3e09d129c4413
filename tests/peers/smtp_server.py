"""A real SMTP server on loopback (aiosmtpd) that records what it receives and misbehaves on request.

    with SmtpPeer() as peer:                       # plain SMTP on 127.0.0.1, a free port
        ...deliver to 127.0.0.1:peer.port...
        peer.messages                              # every accepted message (envelope + data), in order
        peer.connections                           # how many connections were opened

Options: ``tls=make_certificate(tmp_path)`` with ``starttls=True`` (offer STARTTLS) or ``implicit_tls=True`` (smtps);
``users={"name": "password"}`` (AUTH LOGIN/PLAIN, required before MAIL); ``smtputf8=False``; ``idle_timeout`` (seconds
before the server drops a silent connection). At run time: ``peer.handler.rcpt_replies[address] = "550 5.1.1 ..."``,
``peer.handler.mail_replies = ["421 ..."]`` (the next MAIL FROM replies),
``peer.handler.data_reply = "451 ..."``, ``peer.handler.drop_after_data = True`` (close the connection after receiving
a message's data, without answering), ``peer.drop_connections()`` (close every open connection now).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass(frozen=True)
class Received:
    """One accepted message."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    mail_options: tuple[str, ...]
    smtp_utf8: bool
    tls: bool
    user: str | None


@dataclass
class RecordingHandler:
    """aiosmtpd handler: records accepted messages; answers what it is told to for given recipients."""

    mail_replies: list[str] = field(default_factory=list)
    """Replies for the next MAIL FROM commands, one each, in order (e.g. ``"421 4.4.2 Timeout, closing"``)."""
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    """Recipient address → the reply its RCPT TO gets (e.g. ``"550 5.1.1 No such user"``)."""
    data_reply: str | None = None
    """Reply to the end of DATA instead of accepting (e.g. ``"452 4.3.1 Insufficient storage"``)."""
    drop_after_data: bool = False
    """Close the connection once a message's data arrived, before answering (the answer is lost)."""
    queue_ids: bool = True
    """Answer ``250 2.0.0 Ok: queued as Q000001``; ``False``: a bare ``250 OK``."""
    messages: list[Received] = field(default_factory=list)
    dropped: int = 0

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        if self.mail_replies:
            return self.mail_replies.pop(0)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        reply = self.rcpt_replies.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.drop_after_data:
            self.dropped += 1
            assert isinstance(server.transport, asyncio.Transport)
            server.transport.abort()  # no reply: the client's answer is lost
            return "250 never seen"
        if self.data_reply is not None:
            return self.data_reply
        self.messages.append(
            Received(
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                data=bytes(envelope.original_content or b""),
                mail_options=tuple(envelope.mail_options),
                smtp_utf8=envelope.smtp_utf8,
                tls=session.ssl is not None or _implicit_tls(server),
                user=session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None,
            )
        )
        if self.queue_ids:
            return f"250 2.0.0 Ok: queued as Q{len(self.messages):06d}"
        return "250 OK"


def _implicit_tls(server: SMTP) -> bool:
    return server.transport is not None and server.transport.get_extra_info("ssl_object") is not None


@dataclass(frozen=True)
class Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost (PEM files), and the TLS contexts around it."""

    cert_path: Path
    key_path: Path
    cert_pem: bytes

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_path, self.key_path)
        return context

    def client_context(self) -> ssl.SSLContext:
        """Trusts this certificate only (hostname checked, as in production)."""
        return ssl.create_default_context(cadata=self.cert_pem.decode("ascii"))


def make_certificate(folder: Path) -> Certificate:
    """A fresh self-signed EC certificate valid for 127.0.0.1, ::1 and localhost, written to ``folder``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1")),
            ]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_path, key_path = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_path.write_bytes(cert_pem)
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return Certificate(cert_path, key_path, cert_pem)


class SmtpPeer(Controller):
    """An aiosmtpd server on 127.0.0.1 at a free port, in a background thread; a context manager."""

    def __init__(
        self,
        handler: Any = None,
        *,
        tls: Certificate | None = None,
        starttls: bool = False,
        implicit_tls: bool = False,
        users: dict[str, str] | None = None,
        smtputf8: bool = True,
        idle_timeout: float = 300,
    ) -> None:
        self.handler: Any = handler if handler is not None else RecordingHandler()
        self.users = dict(users or {})
        self.connections = 0
        self._servers: list[SMTP] = []
        self._count_lock = threading.Lock()
        kwargs: dict[str, Any] = {"enable_SMTPUTF8": smtputf8, "timeout": idle_timeout, "data_size_limit": None}
        if starttls:
            assert tls is not None, "STARTTLS needs a certificate"
            kwargs["tls_context"] = tls.server_context()
        if users is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=True, auth_require_tls=False)
        super().__init__(
            self.handler,
            hostname="127.0.0.1",
            port=0,
            ssl_context=tls.server_context() if implicit_tls and tls else None,
            server_hostname="peer.test",
            **kwargs,
        )

    def _trigger_server(self) -> None:
        # Port 0 binds a free port; learn which before aiosmtpd's start-up probe connects to it.
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()

    def factory(self) -> SMTP:
        server = super().factory()
        with self._count_lock:
            self.connections += 1
            self._servers.append(server)
        return server

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and self.users.get(auth_data.login.decode()) == auth_data.password.decode()
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    def start(self) -> None:
        super().start()
        with self._count_lock:
            self.connections = 0  # not aiosmtpd's own start-up probe
            self._servers.clear()

    def drop_connections(self) -> None:
        """Close every open connection now, as a server restarting or timing out idle clients does."""
        done = threading.Event()

        def drop() -> None:
            for server in self._servers:
                if server.transport is not None:
                    server.transport.close()
            done.set()

        self.loop.call_soon_threadsafe(drop)
        done.wait(5)

    @property
    def open_connections(self) -> int:
        """Connections the server still holds open."""
        return sum(server.transport is not None for server in self._servers)

    @property
    def messages(self) -> list[Received]:
        return list(self.handler.messages)

    def __enter__(self) -> SmtpPeer:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
