"""SMTP: an email transport that hands finished messages to any SMTP server (``smtp://``, ``smtps://``).

``smtp://user:password@mail.example.com:587?starttls=require&pool=4`` (user and password percent-encoded; no user: no
AUTH). ``smtp://`` upgrades with STARTTLS when the server offers it (``starttls=auto``), insists on it
(``require``: a server that does not offer it stops the run) or never tries (``off``); ``smtps://`` is TLS from the
first byte (port 465). Credentials never cross a plaintext connection, except to a loopback address.

Connections are opened lazily and kept: EHLO (and STARTTLS, AUTH) happen once per connection, then each message is
one MAIL / RCPT / DATA transaction on it. Up to ``pool`` connections serve callers on several threads; a caller
checks one out of a LIFO queue, so a single thread always reuses the same one. A server that dropped an idle
connection (timeout, restart) is noticed at the next command: the message is retried once on a new connection,
as long as its data had not been sent.

Outcomes (``channels.base`` error tree):

* 250 after the data → the server's queue id (``queued as X``, ``id=X``) or, when it gives none, the Message-ID;
* a 4xx reply, a refused connection or a timeout before the data was sent → ``RetryableChannelError``;
* 550/551/553 to RCPT TO → ``PermanentChannelError(suppress="smtp_permanent")`` (the address is dead), except a
  policy, system or protocol status (``5.7.x``, ``5.3.x``, ``5.5.x``: "relaying denied" says nothing about the
  address and would otherwise put every customer on the suppression list); any other 5xx → ``PermanentChannelError``;
* the connection lost after the whole message was sent and before the server answered →
  ``InDoubtChannelError``: the server may have queued it, so it is never resent (SMTP has no idempotency key);
* a wrong user name or password, TLS that cannot be verified, STARTTLS required but not offered, AUTH asked over
  plaintext → ``ChannelConfigError`` naming the setting (never the password).

Error texts carry the SMTP code, the enhanced status and the server's words with every address removed: never a
recipient or a line of the message.
"""

from __future__ import annotations

import ipaddress
import queue
import re
import smtplib
import socket
import ssl
import threading
from dataclasses import dataclass
from email.utils import parseaddr
from typing import ClassVar, Literal
from urllib.parse import unquote

from pydantic import Field

from channels.base import (
    Channel,
    ChannelConfigError,
    ChannelError,
    InDoubtChannelError,
    PermanentChannelError,
    RetryableChannelError,
)
from channels.email import email_channel, needs_smtputf8
from channels.headers import AddressError, mailbox
from channels.spec import AdapterOptions, ChannelResources, ChannelTarget
from models.message import OutboundMessage

__all__ = ["SmtpOptions", "SmtpTransport"]

DEFAULT_PORTS = {"smtp": 25, "smtps": 465}
DEAD_ADDRESS_CODES = frozenset({550, 551, 553})
NOT_ABOUT_THE_ADDRESS = ("5.3.", "5.5.", "5.7.")
"""Enhanced statuses that reject for policy, system or protocol reasons: a 550 with one of them suppresses nobody."""

_QUEUE_ID = re.compile(
    rb"\bqueued as ([A-Za-z0-9][A-Za-z0-9._/+=-]{0,99})|\bid=([A-Za-z0-9][A-Za-z0-9._-]{0,99})", re.I
)
_ENHANCED = re.compile(rb"^([245]\.\d{1,3}\.\d{1,3})\b")
_ADDRESSY = re.compile(rb"<[^>]*>|\S*@\S*")
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]{1,300}>)", re.I | re.M)
_FROM = re.compile(rb"^From:[ \t]*(.*(?:\r\n[ \t].*)*)", re.I | re.M)
_HELO = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\]")
_MAX_REPLY_TEXT = 120


class SmtpOptions(AdapterOptions):
    """The query parameters of an ``smtp://`` or ``smtps://`` URL."""

    starttls: Literal["auto", "require", "off"] = "auto"
    """``auto``: upgrade when the server offers STARTTLS; ``require``: refuse a server that does not; ``off``: never."""
    pool: int = Field(2, ge=1, le=8)
    """Most connections kept open at once (one per concurrent caller)."""
    timeout: float = Field(30.0, gt=0, le=600)
    """Seconds to wait for the connection and for each reply."""
    helo: str | None = Field(None, max_length=253)
    """The name this host gives in EHLO (default: its fully qualified domain name)."""


@dataclass
class _Connection:
    smtp: smtplib.SMTP
    generation: int


class _Dropped(Exception):
    """The connection went away before the message's data was sent: the server cannot have it."""


class SmtpTransport:
    """Delivers message bytes over SMTP, reusing up to ``pool`` connections (thread-safe)."""

    schemes: ClassVar[tuple[str, ...]] = ("smtp", "smtps")
    Options: ClassVar[type[SmtpOptions]] = SmtpOptions

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        implicit_tls: bool = False,
        starttls: Literal["auto", "require", "off"] = "auto",
        user: str | None = None,
        password: str | None = None,
        pool: int = 2,
        timeout: float = 30.0,
        helo: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        sender: str | None = None,
        setting: str = "OMNICAST_EMAIL_URL",
    ) -> None:
        """``sender`` is the envelope sender (default: the address of each message's ``From:``); ``setting`` names
        the setting every configuration error points at."""
        self.host = host
        self.port = port or DEFAULT_PORTS["smtps" if implicit_tls else "smtp"]
        self.implicit_tls = implicit_tls
        self.starttls = starttls
        self.user = user
        self._password = password or ""
        self.pool = pool
        self.timeout = timeout
        self.helo = helo
        self.ssl_context = ssl_context
        self.sender = sender
        self.setting = setting
        if pool < 1:
            raise ValueError("pool must be at least 1")
        self._where = f"{setting}: SMTP server {host}:{self.port}"
        if user and not implicit_tls and starttls == "off" and not is_loopback(host):
            raise ChannelConfigError(
                f"{self._where} would get the password over plaintext (starttls=off); use starttls=auto or "
                "require, or smtps://"
            )
        self._slots: queue.LifoQueue[_Connection | None] = queue.LifoQueue()
        for _ in range(pool):
            self._slots.put(None)  # a free slot with no connection yet: opened on first use
        self._generation = 0
        self._lock = threading.Lock()
        self._senders: dict[bytes, str] = {}

    def __repr__(self) -> str:  # never the password
        scheme = "smtps" if self.implicit_tls else "smtp"
        return f"SmtpTransport({scheme}://{self.host}:{self.port}, user={self.user!r}, pool={self.pool})"

    # --- adapter protocol ------------------------------------------------------------------------------------------

    @classmethod
    def open_channel(cls, target: ChannelTarget, resources: ChannelResources) -> Channel:
        """The email channel delivering through the server ``target`` names (nothing is connected yet)."""
        return email_channel(cls.from_target(target), resources)

    @classmethod
    def from_target(cls, target: ChannelTarget) -> SmtpTransport:
        """The transport for ``smtp[s]://[user:password@]host[:port]`` with its validated options."""
        parts, setting = target.parts, target.setting
        where = f"{setting}={target.shown}"
        options = target.options if isinstance(target.options, SmtpOptions) else SmtpOptions()
        if parts.scheme not in cls.schemes:
            raise ChannelConfigError(f"{where}: the SMTP adapter serves smtp:// and smtps://, not {parts.scheme}://")
        if not parts.hostname:
            raise ChannelConfigError(f"{where} names no server; use smtp://user:password@mail.example.com:587")
        try:
            port = parts.port
        except ValueError:
            raise ChannelConfigError(f"{where} has a port that is not a number from 1 to 65535") from None
        if parts.path not in ("", "/") or parts.fragment:
            raise ChannelConfigError(f"{where} must end after host:port (options go in ?starttls=...&pool=...)")
        user = unquote(parts.username) if parts.username is not None else None
        password = unquote(parts.password) if parts.password is not None else None
        if (user is None) != (password is None) or user == "":
            raise ChannelConfigError(
                f"{where}: give both a user and a password (smtp://user:password@host, percent-encoded) or neither"
            )
        implicit = parts.scheme == "smtps"
        if implicit and "starttls" in options.model_fields_set:
            raise ChannelConfigError(
                f"{where}: smtps:// is TLS from the first byte; the starttls option is for smtp://"
            )
        if options.helo is not None and not _HELO.fullmatch(options.helo):
            raise ChannelConfigError(f"{where}: helo must be a host name or an address literal like [192.0.2.1]")
        return cls(
            parts.hostname, port, implicit_tls=implicit, starttls=options.starttls, user=user, password=password,
            pool=options.pool, timeout=options.timeout, helo=options.helo, setting=setting,
        )  # fmt: skip

    # --- delivery --------------------------------------------------------------------------------------------------

    def deliver(self, msg_bytes: bytes, message: OutboundMessage) -> str:
        """Send one message in one SMTP transaction; the server's queue id (or the Message-ID) when accepted.

        Raises ``RetryableChannelError``, ``PermanentChannelError``, ``InDoubtChannelError`` or
        ``ChannelConfigError`` (see the module docstring).
        """
        try:
            recipient = mailbox(message.recipient.email)
        except AddressError as exc:
            raise PermanentChannelError(str(exc)) from None
        utf8 = recipient.smtputf8 or needs_smtputf8(msg_bytes)
        sender = self.sender or self._envelope_sender(msg_bytes)
        reply = self._deliver(sender, recipient.addr_spec, msg_bytes, utf8)
        return _queue_id(reply) or _message_id(msg_bytes) or "smtp-accepted"

    def _deliver(self, sender: str, recipient: str, msg_bytes: bytes, utf8: bool) -> bytes:
        """One transaction on a checked-out connection; a connection dropped before the data is retried once."""
        conn = self._slots.get()
        try:
            for attempt in (1, 2):
                if conn is None:
                    conn = self._connect()
                try:
                    return self._transaction(conn.smtp, sender, recipient, msg_bytes, utf8)
                except _Dropped as exc:
                    _quit(conn)
                    conn = None
                    if attempt == 2:
                        raise RetryableChannelError(f"{self._where} dropped the connection twice: {exc}") from exc
                except ChannelError:
                    raise  # a refusal leaves the connection usable (RSET); a lost one is dropped at check-in
                except BaseException:
                    _quit(conn)  # state unknown (a bug, an interrupt): never reuse it
                    conn = None
                    raise
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            self._checkin(conn)

    def _transaction(self, smtp: smtplib.SMTP, sender: str, recipient: str, msg_bytes: bytes, utf8: bool) -> bytes:
        """MAIL, RCPT, DATA on an open connection; the final reply's text. RSETs after a refusal, so the connection
        stays usable."""
        options = [f"SIZE={len(msg_bytes)}"] if smtp.has_extn("size") else []
        if utf8:
            if not smtp.has_extn("smtputf8"):
                raise PermanentChannelError(
                    f"{self._where} does not offer SMTPUTF8, which a recipient with a non-ASCII local part needs"
                )
            options += ["SMTPUTF8", "BODY=8BITMIME"] if smtp.has_extn("8bitmime") else ["SMTPUTF8"]
        else:
            smtp.command_encoding = "ascii"  # an earlier SMTPUTF8 transaction on this connection switched it
        try:
            code, text = smtp.mail(sender, options)
            self._check(smtp, "MAIL FROM", code, text)
            code, text = smtp.rcpt(recipient)
            self._check(smtp, "RCPT TO", code, text)
            smtp.putcmd("data")
            code, text = smtp.getreply()
            self._check(smtp, "DATA", code, text, expect=354)
            smtp.send(_dot_stuffed(msg_bytes))  # fails before the final "." is out: the server cannot keep it
        except smtplib.SMTPServerDisconnected as exc:
            raise _Dropped(str(exc)) from exc
        try:
            code, text = smtp.getreply()
        except smtplib.SMTPServerDisconnected as exc:
            raise InDoubtChannelError(
                f"{self._where} closed the connection after the message was sent and before it answered; it may "
                "have been accepted, so it is not sent again"
            ) from exc
        if 200 <= code < 300:
            return text
        if code < 0:
            smtp.close()  # out of step with the server: never reused
            raise InDoubtChannelError(f"{self._where} answered the message's data with an unreadable reply")
        raise _reply_error(self._where, "end of DATA", code, text)

    def _check(self, smtp: smtplib.SMTP, stage: str, code: int, text: bytes, expect: int = 250) -> None:
        if code == expect or (expect == 250 and code == 251):
            return
        if code == 421:  # the server is closing this connection (idle timeout, shutdown): a new one may do
            raise _Dropped(f"{code} to {stage}")
        if code == 530 and stage == "MAIL FROM":
            raise ChannelConfigError(f"{self._where} requires AUTH: put user:password in the URL")
        error = _reply_error(self._where, stage, code, text)
        try:
            code, _ = smtp.rset()  # ends the half-open transaction; the connection serves the next message
        except smtplib.SMTPServerDisconnected:
            code = -1
        if code != 250:
            smtp.close()  # unusable: dropped when it is checked in
        raise error

    # --- connections -----------------------------------------------------------------------------------------------

    def _connect(self) -> _Connection:
        """A new connection: greeting, EHLO, STARTTLS when offered or required, AUTH when a user is set."""
        generation = self._generation
        try:
            smtp = self._open()
        except ChannelError:
            raise
        except ssl.SSLCertVerificationError as exc:
            raise ChannelConfigError(
                f"{self._where}: its TLS certificate cannot be verified ({exc.verify_message})"
            ) from exc
        except ssl.SSLError as exc:
            if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
                raise RetryableChannelError(f"{self._where} closed the connection during the TLS handshake") from exc
            raise ChannelConfigError(
                f"{self._where}: TLS handshake failed ({exc.reason or exc}); is it smtp or smtps?"
            ) from exc
        except smtplib.SMTPResponseException as exc:  # greeting, EHLO or STARTTLS refused
            raise _connect_error(self._where, exc.smtp_code, exc.smtp_error) from exc
        except (smtplib.SMTPException, OSError) as exc:  # refused, unreachable, timed out, closed
            raise RetryableChannelError(f"{self._where} could not be reached: {_os_reason(exc)}") from exc
        return _Connection(smtp, generation)

    def _open(self) -> smtplib.SMTP:
        helo = self.helo or _local_hostname()
        smtp: smtplib.SMTP
        if self.implicit_tls:
            smtp = smtplib.SMTP_SSL(
                self.host, self.port, local_hostname=helo, timeout=self.timeout, context=self._tls()
            )
        else:
            smtp = smtplib.SMTP(self.host, self.port, local_hostname=helo, timeout=self.timeout)
        try:
            smtp.ehlo_or_helo_if_needed()
            tls = self.implicit_tls
            if not tls and self.starttls != "off" and smtp.has_extn("starttls"):
                smtp.starttls(context=self._tls())  # SMTPResponseException unless the server answers 220
                smtp.ehlo()
                tls = True
            elif not tls and self.starttls == "require":
                raise ChannelConfigError(f"{self._where} does not offer STARTTLS and starttls=require is set")
            if self.user:
                self._login(smtp, tls)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _tls(self) -> ssl.SSLContext:
        """The TLS context: the injected one, else the system's CAs with host name checks (made once, ~20 ms).

        A relay on this machine's loopback (a local Postfix with its self-signed "snakeoil" certificate) is not
        verified: the traffic never leaves the host, and refusing it would stop every send for nothing."""
        if self.ssl_context is None:
            self.ssl_context = ssl.create_default_context()
            if is_loopback(self.host):
                self.ssl_context.check_hostname = False
                self.ssl_context.verify_mode = ssl.CERT_NONE
        return self.ssl_context

    def _login(self, smtp: smtplib.SMTP, tls: bool) -> None:
        if not tls and not is_loopback(self.host):
            raise ChannelConfigError(
                f"{self._where} offers no STARTTLS, and the password is never sent over plaintext; use a server "
                "with TLS or smtps://"
            )
        try:
            smtp.login(self.user or "", self._password)
        except smtplib.SMTPAuthenticationError as exc:
            if 400 <= exc.smtp_code < 500:
                raise RetryableChannelError(f"{self._where} could not check the login now ({exc.smtp_code})") from None
            raise ChannelConfigError(
                f"{self._where} refused the user name or password ({exc.smtp_code}); fix user:password in the URL"
            ) from None  # not chained: nothing about the credentials travels further
        except smtplib.SMTPNotSupportedError:
            raise ChannelConfigError(f"{self._where} offers no AUTH; remove user:password from the URL") from None
        except smtplib.SMTPServerDisconnected:
            raise  # mapped to retryable by _connect
        except smtplib.SMTPException:
            raise ChannelConfigError(f"{self._where} offers no AUTH mechanism this client speaks") from None

    def _checkin(self, conn: _Connection | None) -> None:
        if conn is not None and (conn.generation != self._generation or conn.smtp.sock is None):
            _quit(conn)  # closed meanwhile, or left unusable by a failed RSET
            conn = None
        self._slots.put(conn)

    def _envelope_sender(self, msg_bytes: bytes) -> str:
        """The addr-spec of the message's ``From:`` (cached: every message of a run has the same one)."""
        head = msg_bytes[: msg_bytes.find(b"\r\n\r\n")]
        match = _FROM.search(head)
        raw = match.group(1) if match else b""
        sender = self._senders.get(raw)
        if sender is None:
            unfolded = re.sub(rb"\r\n[ \t]", b" ", raw).decode("utf-8", "replace")
            sender = parseaddr(unfolded)[1]
            if "@" not in sender:
                raise ChannelConfigError(f"{self.setting}: the message's From header names no sender address")
            if len(self._senders) > 64:
                self._senders.clear()
            self._senders[raw] = sender
        return sender

    def close(self) -> None:
        """Say QUIT on every idle connection; one in use is closed when its message is done. Delivering again
        opens new connections."""
        with self._lock:
            self._generation += 1
            idle: list[_Connection | None] = []
            while True:
                try:
                    idle.append(self._slots.get_nowait())
                except queue.Empty:
                    break
            for conn in idle:
                _quit(conn)
                self._slots.put(None)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine (``localhost``, 127.0.0.0/8, ::1): credentials may cross plaintext there."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_HOSTNAME: list[str] = []


def _local_hostname() -> str:
    """This host's FQDN, looked up once per process (``socket.getfqdn`` may ask DNS)."""
    if not _HOSTNAME:
        _HOSTNAME.append(socket.getfqdn() or "localhost")
    return _HOSTNAME[0]


def _quit(conn: _Connection | None) -> None:
    if conn is None:
        return
    try:
        if conn.smtp.sock is not None:
            conn.smtp.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        conn.smtp.close()


def _dot_stuffed(msg_bytes: bytes) -> bytes:
    """The DATA payload: leading dots doubled (RFC 5321 §4.5.2), CRLF at the end, then the ``.`` line."""
    data = re.sub(rb"(?m)^\.", b"..", msg_bytes)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


def _reply_text(text: bytes | str) -> str:
    """The server's reply with addresses removed (they would be a recipient's), short."""
    if isinstance(text, str):
        text = text.encode("utf-8", "replace")
    cleaned = _ADDRESSY.sub(b"<address>", text.replace(b"\n", b" ").replace(b"\r", b""))
    words = cleaned.decode("ascii", "replace").strip()
    return words if len(words) <= _MAX_REPLY_TEXT else words[: _MAX_REPLY_TEXT - 1] + "…"


def _reply_error(where: str, stage: str, code: int, text: bytes) -> ChannelError:
    """The error for a refusal at ``stage``: 4xx retryable, 5xx permanent (dead address: suppress)."""
    status = _ENHANCED.match(text.lstrip())
    enhanced = status.group(1).decode() if status else ""
    reason = f"{where} answered {code} to {stage}: {_reply_text(text)}"
    if 400 <= code < 500:
        return RetryableChannelError(reason)
    if 500 <= code < 600:
        dead = stage == "RCPT TO" and code in DEAD_ADDRESS_CODES and not enhanced.startswith(NOT_ABOUT_THE_ADDRESS)
        return PermanentChannelError(reason, suppress="smtp_permanent" if dead else None)
    return RetryableChannelError(reason + " (not an SMTP reply code)")


def _connect_error(where: str, code: int, text: bytes | str) -> ChannelError:
    if 400 <= code < 500:
        return RetryableChannelError(f"{where} is not taking mail now ({code}: {_reply_text(text)})")
    return ChannelConfigError(f"{where} refused the session ({code}: {_reply_text(text)})")


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _queue_id(reply: bytes) -> str | None:
    match = _QUEUE_ID.search(reply)
    if match is None:
        return None
    return (match.group(1) or match.group(2)).decode("ascii")


def _message_id(msg_bytes: bytes) -> str | None:
    head = msg_bytes[: msg_bytes.find(b"\r\n\r\n")]
    match = _MESSAGE_ID.search(head)
    return match.group(1).decode("ascii", "replace") if match else None
