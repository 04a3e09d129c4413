"""The email channel: render a template, build an RFC 5322 message, optionally DKIM-sign it, hand it to a transport.

The message (DESIGN → Outbound formats) is ``multipart/alternative`` with text/plain then text/html, both
quoted-printable UTF-8, CRLF everywhere, no line over 998 octets (78 wherever a header allows folding).
Everything that identifies the message derives from its ledger key, so a retry yields the same Message-ID and
MIME boundary, and a file transport the same file name.

Customer data never reaches a header unsanitised (issue 5, defect 1): the message is written here from structured
parts, not by ``email.generator`` (whose folder, on the 3.11.7 these machines run, writes a decoded CR LF verbatim and
let a first name add a ``Bcc:``). ``To`` is the ``Mailbox`` validated by ``channels.headers.mailbox`` (IDNA domain),
``Subject`` the rendered ``<mj-title>`` through ``header_text`` (encoded-words decoded, control characters removed,
``=?`` neutralized), ``From`` and the unsubscribe URIs come from settings checked when the channel is built; every
other header is ours. A recipient whose local part is non-ASCII gets a UTF-8 header (RFC 6532): ``needs_smtputf8``
tells a transport to send it with SMTPUTF8. Writing the bytes directly is also far cheaper than ``email.generator``
(its header parsing and folding were half of a message's build time).

A transport is anything with ``deliver(msg_bytes, message) -> provider_id`` and ``close()``
(``EmailTransport``); ``EmlOutboxTransport`` (channels/outbox.py) is the embedded one. SMTP or ESP transports
raise ``RetryableChannelError`` / ``PermanentChannelError`` from ``deliver`` and slot in unchanged; one that
sends whole batches (an ESP's batch endpoint) also implements ``deliver_batch``.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.policy import default as default_policy
from email.utils import format_datetime, parseaddr
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote

from channels.base import (
    Channel,
    ChannelConfigError,
    ChannelError,
    DeliveryResult,
    PermanentChannelError,
)
from channels.headers import AddressError, Mailbox, address_header, mailbox, safe_url, unstructured_header
from channels.links import click_url, own_links, track_links
from channels.outbox import ledger_hash
from channels.render import EmailRenderer, RenderedEmail, TemplateError, TemplateRenderError
from channels.spec import ChannelResources
from channels.tokens import UnsubscribeSigner
from models.message import LedgerKey, OutboundMessage

DKIM_HEADERS = (
    b"from", b"to", b"subject", b"date", b"message-id", b"list-unsubscribe", b"list-unsubscribe-post",
    b"mime-version", b"content-type",
)  # fmt: skip
HEADERS = ("From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post",
           "MIME-Version", "Content-Type")  # fmt: skip
"""Every header of a message, in order (plus ``DKIM-Signature`` in front when signing). Nothing else, ever."""

_MAX_PUBLIC_URL = 512  # keeps the List-Unsubscribe lines far below 998 octets
_QP_CACHE_LINES = 50_000
_QP_LINES: dict[str, bytes] = {}
_PLAIN_PART = 'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
_HTML_PART = 'Content-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'


def needs_smtputf8(msg_bytes: bytes) -> bool:
    """Whether the message's header holds UTF-8 (a non-ASCII local part): an SMTP transport must then send it
    with the ``SMTPUTF8`` option (RFC 6531), or fail it permanently if the server lacks the extension."""
    head, _, _ = msg_bytes.partition(b"\r\n\r\n")
    return not head.isascii()


@runtime_checkable
class EmailTransport(Protocol):
    """Moves finished message bytes somewhere; returns what a human would look up (file name, server queue id).

    An SMTP transport takes the envelope recipient from ``channels.headers.mailbox(message.recipient.email)``
    (``addr_spec``: IDNA domain) and sends with the ``SMTPUTF8`` option when ``needs_smtputf8(msg_bytes)``.
    """

    def deliver(self, msg_bytes: bytes, message: OutboundMessage) -> str: ...

    def close(self) -> None: ...


@runtime_checkable
class BatchEmailTransport(EmailTransport, Protocol):
    """A transport that sends many messages per call; one provider id or ``ChannelError`` per message, in order."""

    def deliver_batch(self, items: Sequence[tuple[bytes, OutboundMessage]]) -> list[str | ChannelError]: ...


@dataclass(frozen=True)
class DkimKey:
    """A DKIM signing key: ``selector._domainkey.domain`` publishes the public half. ``private_key`` is PEM."""

    selector: str
    domain: str
    private_key: bytes

    def sign(self, msg_bytes: bytes) -> bytes:
        """``msg_bytes`` with a ``DKIM-Signature`` header (relaxed/relaxed, rsa-sha256) in front."""
        try:
            import dkim
        except ImportError as exc:  # optional dependency: only needed when a key is configured
            raise ChannelConfigError("DKIM signing needs the 'dkimpy' package: pip install dkimpy") from exc
        try:
            signature = dkim.sign(
                msg_bytes,
                self.selector.encode(),
                self.domain.encode(),
                self.private_key,
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=list(DKIM_HEADERS),
                linesep=b"\r\n",
            )
        except dkim.DKIMException as exc:  # a bad key fails every message the same way
            raise ChannelConfigError(f"DKIM key {self.selector}._domainkey.{self.domain} is unusable: {exc}") from exc
        return bytes(signature) + msg_bytes


class EmailChannel(Channel):
    """Personalized email from ``templates/email/<message.template>.mjml`` through a transport."""

    name = "email"
    consent_channel = "email"
    batch_size = 500

    def __init__(
        self,
        transport: EmailTransport,
        renderer: EmailRenderer,
        *,
        sender: str,
        public_url: str,
        unsubscribe_mailto: str,
        signer: UnsubscribeSigner,
        dkim: DkimKey | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.transport = transport
        self.renderer = renderer
        self.public_url = _public_url(public_url)
        self.unsubscribe_mailto = _unsubscribe_mailbox(unsubscribe_mailto).addr_spec
        self.signer = signer
        self.dkim = dkim
        self.clock = clock or (lambda: datetime.now(UTC))
        self._from, self._domain = _sender(sender)
        self._own_links = own_links(self.public_url)
        # A transport that can say what it delivered (the outbox sees its files) lets dispatch hand over whole
        # batches and settle a crash exactly; one that cannot (plain SMTP) gets one message at a time.
        self.knows_deliveries = callable(getattr(transport, "already_delivered", None))  # type: ignore[misc]
        # A batch API (Postmark) takes a batch per call: the in-doubt window after a crash is one call, not one message.
        self.hands_over_batches = isinstance(transport, BatchEmailTransport)  # type: ignore[misc]

    def can_reach(self, message: OutboundMessage) -> str | None:
        """Email needs an address."""
        return None if message.recipient.email else "no_address"

    def already_delivered(self, messages: Sequence[OutboundMessage]) -> dict[LedgerKey, str] | None:
        """What the transport says it holds of ``messages``; ``None`` when the transport cannot tell."""
        ask = getattr(self.transport, "already_delivered", None)
        return ask(messages) if callable(ask) else None

    def send(self, message: OutboundMessage) -> DeliveryResult:
        """Build and deliver one message. Template syntax problems stop the run (``ChannelConfigError``)."""
        try:
            return DeliveryResult.sent(self.transport.deliver(self.build(message), message))
        except ChannelConfigError:
            raise
        except ChannelError as exc:
            return DeliveryResult.failed(exc)

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[DeliveryResult]:
        """Build every message, then deliver them: one call for a batch transport, one per message otherwise."""
        if not isinstance(self.transport, BatchEmailTransport):
            return [self.send(message) for message in messages]
        built: list[tuple[bytes, OutboundMessage]] = []
        results: list[DeliveryResult | None] = []
        for message in messages:
            try:
                built.append((self.build(message), message))
                results.append(None)
            except ChannelConfigError:
                raise
            except ChannelError as exc:
                results.append(DeliveryResult.failed(exc))
        outcomes = iter(self.transport.deliver_batch(built)) if built else iter(())
        return [result or _as_result(next(outcomes)) for result in results]

    def build(self, message: OutboundMessage) -> bytes:
        """The complete message as it goes on the wire (CRLF line endings), DKIM-signed when a key is set.

        ``PermanentChannelError`` when the recipient's address can't be made a valid mailbox (its text names no
        address: PII) or the template fails for this recipient; ``ChannelConfigError`` when the template is unusable.
        """
        if not message.template:
            raise PermanentChannelError("an email message needs a template name")
        token = self.signer.sign(message.customer_id, self.consent_channel)
        rendered = self._render(message, f"{self.public_url}/u/{token}")
        html, text = track_links(
            rendered.html, rendered.text,
            lambda url: click_url(self.public_url, self.signer, message, url), skip=self._own_links,
        )  # fmt: skip
        rendered = replace(rendered, html=html, text=text)
        try:
            recipient = mailbox(message.recipient.email)
        except AddressError as exc:
            raise PermanentChannelError(str(exc)) from None
        msg_bytes = self.compose(message, recipient, rendered, token)
        return self.dkim.sign(msg_bytes) if self.dkim else msg_bytes

    def compose(self, message: OutboundMessage, recipient: Mailbox, rendered: RenderedEmail, token: str) -> bytes:
        """The message bytes for one recipient: the headers of ``HEADERS``, then text/plain and text/html parts."""
        digest = ledger_hash(message.ledger_key)
        boundary = f"=_alt_{digest}"  # "=_" can never occur in quoted-printable text: no collision with a part
        mailto_subject = quote("unsubscribe-" + token, safe="")
        head = (
            self._from
            + address_header("To", recipient)
            + unstructured_header("Subject", rendered.subject)
            + f"Date: {format_datetime(self.clock())}\r\n"
            + f"Message-ID: <{digest}@{self._domain}>\r\n"
            + f"List-Unsubscribe: <{self.public_url}/u/{token}>,\r\n"
            + f" <mailto:{self.unsubscribe_mailto}?subject={mailto_subject}>\r\n"
            + "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
            + "MIME-Version: 1.0\r\n"
            + f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n'
            + "\r\n"
        )
        delimiter = f"--{boundary}\r\n".encode("ascii")
        return b"".join((
            head.encode("utf-8"),  # ASCII unless the recipient's local part is not (then SMTPUTF8)
            delimiter, _PLAIN_PART.encode("ascii"), _quoted_printable(rendered.text), b"\r\n",
            delimiter, _HTML_PART.encode("ascii"), _quoted_printable(rendered.html), b"\r\n",
            f"--{boundary}--\r\n".encode("ascii"),
        ))  # fmt: skip

    def close(self) -> None:
        """Close the transport (an SMTP connection, an HTTP client)."""
        self.transport.close()

    def _render(self, message: OutboundMessage, unsubscribe_url: str) -> RenderedEmail:
        context = {**message.context, "unsubscribe_url": unsubscribe_url}
        context.setdefault("customer", {"first_name": message.recipient.first_name})
        try:
            return self.renderer.render(message.template or "", context)
        except TemplateRenderError as exc:
            raise PermanentChannelError(str(exc)) from exc
        except TemplateError as exc:  # missing template, syntax error: every message would fail the same way
            raise ChannelConfigError(str(exc)) from exc


def _quoted_printable(body: str) -> bytes:
    """``body`` as quoted-printable UTF-8 with CRLF line breaks, lines ≤ 76 octets.

    Quoted-printable encodes each line on its own, and most lines of a message are the template's, the same for
    every recipient: encoding line by line through a cache is exactly ``binascii.b2a_qp`` of the whole body (a test
    compares them) at about half its cost (≈ 0.44 → 0.22 ms for a 35 KB page on a busy 2-core machine).
    """
    if len(_QP_LINES) > _QP_CACHE_LINES:
        _QP_LINES.clear()  # names and titles make new lines forever; the template's come back at once
    # Each line keeps its line break: b2a_qp places a soft break before trailing whitespace differently at the end
    # of the text than before a newline, so a line must be encoded in the context it has in the whole body.
    *complete, last = body.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = [line + "\n" for line in complete] + ([last] if last else [])  # not splitlines: it splits on \f too
    encoded: list[bytes | None] = list(map(_QP_LINES.get, lines))  # C-speed lookups; misses are found by index
    try:
        index = encoded.index(None)
        while True:
            encoded[index] = _qp_line(lines[index])
            index = encoded.index(None, index + 1)
    except ValueError:  # no line left to encode
        pass
    return b"".join(encoded)  # type: ignore[arg-type]  # every None was replaced above


def _qp_line(line: str) -> bytes:
    encoded = binascii.b2a_qp(line.encode("utf-8", "replace"), istext=True).replace(b"\n", b"\r\n")
    _QP_LINES[line] = encoded
    return encoded


def _sender(sender: str) -> tuple[str, str]:
    """The ``From:`` line for ``OMNICAST_SENDER_ADDRESS`` and its domain (for Message-IDs)."""
    fix = f"OMNICAST_SENDER_ADDRESS={sender!r} is not one mailbox; use 'Store Name <hello@example.com>'"
    try:
        header: Any = default_policy.header_factory("From", sender)
        (address,) = header.addresses
        if header.defects or not address.username or not address.domain:
            raise ValueError("not one plain mailbox")
        parsed = mailbox(address.addr_spec)
    except (ValueError, TypeError, AddressError) as exc:
        raise ChannelConfigError(fix) from exc
    if parsed.smtputf8:
        raise ChannelConfigError(f"{fix} with an ASCII local part (the part before the @)")
    return address_header("From", parsed, address.display_name), parsed.addr_spec.rpartition("@")[2]


def _public_url(public_url: str) -> str:
    url = public_url.rstrip("/")
    if safe_url(url) != url or len(url) > _MAX_PUBLIC_URL or "?" in url or "#" in url:
        raise ChannelConfigError(
            f"OMNICAST_SERVE_URL (OMNICAST_PUBLIC_URL when unset)={public_url!r} must be an absolute http(s):// "
            "URL without query or fragment, "
            f"at most {_MAX_PUBLIC_URL} characters: unsubscribe and tracked links live under it"
        )
    return url


def _unsubscribe_mailbox(unsubscribe_mailto: str) -> Mailbox:
    try:
        parsed = mailbox(unsubscribe_mailto.removeprefix("mailto:"))
    except AddressError:
        parsed = None
    if parsed is None or parsed.smtputf8:
        raise ChannelConfigError(
            f"OMNICAST_UNSUBSCRIBE_MAILTO={unsubscribe_mailto!r} is not a plain ASCII email address; "
            "use the mailbox that receives unsubscribe requests, e.g. unsubscribe@example.com"
        )
    return parsed


def _as_result(outcome: str | ChannelError) -> DeliveryResult:
    if isinstance(outcome, ChannelError):
        return DeliveryResult.failed(outcome)
    return DeliveryResult.sent(outcome)


def email_channel(transport: EmailTransport, resources: ChannelResources) -> EmailChannel:
    """The email channel around ``transport``, configured from the run's settings: sender, links under
    ``OMNICAST_SERVE_URL``, unsubscribe tokens signed with ``OMNICAST_SECRET_KEY``, DKIM when a key is set.

    Every email transport's ``open_channel`` ends here, so rendering, headers and signing are the same whatever
    carries the bytes. The transport is closed if the settings are unusable."""
    settings = resources.settings
    try:
        return EmailChannel(
            transport,
            EmailRenderer(resources.templates_dir),
            sender=settings.sender_address,
            public_url=settings.links_url,
            unsubscribe_mailto=settings.unsubscribe_mailto,
            signer=UnsubscribeSigner(signing_key(settings)),
            dkim=dkim_key(settings),
        )
    except BaseException:
        transport.close()
        raise


def signing_key(settings: Any) -> str:
    """``OMNICAST_SECRET_KEY``; ``ChannelConfigError`` saying how to make one when it is missing."""
    secret = settings.secret_key.get_secret_value() if settings.secret_key is not None else ""
    if not secret:
        raise ChannelConfigError(
            "OMNICAST_SECRET_KEY is not set: it signs unsubscribe links. Generate one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'` and export it "
            "(or store it in a Prefect Secret block and export it in the worker's environment)."
        )
    return str(secret)


def dkim_key(settings: Any) -> DkimKey | None:
    """The DKIM key ``OMNICAST_DKIM_KEY_FILE`` names, or ``None`` when signing is off."""
    if settings.dkim_key_file is None:
        return None
    try:
        pem = settings.dkim_key_file.read_bytes()
    except OSError as exc:
        raise ChannelConfigError(
            f"OMNICAST_DKIM_KEY_FILE={str(settings.dkim_key_file)!r} cannot be read ({exc.strerror}); "
            "point it at the PEM private key whose public half is in DNS"
        ) from exc
    domain = settings.dkim_domain or parseaddr(settings.sender_address)[1].rpartition("@")[2]
    if not domain:
        raise ChannelConfigError(
            "OMNICAST_DKIM_DOMAIN is not set and OMNICAST_SENDER_ADDRESS has no domain to sign for"
        )
    return DkimKey(selector=settings.dkim_selector, domain=domain, private_key=pem)
