"""Email through Postmark's batch API (``POST /email/batch``): ``OMNICAST_EMAIL_URL=postmark://SERVER_TOKEN``.

The email channel builds every message as RFC 5322 bytes (``channels.email``); this transport reads them back into
Postmark's JSON fields and sends up to 500 messages (and at most 50 MB) per call, with the server token in
``X-Postmark-Server-Token``. The API base URL is ``OMNICAST_POSTMARK_API_URL``, so a local stand-in can take
Postmark's place in tests.

What carries over from our message: ``From`` (display name quoted), ``To`` (the validated addr-spec), ``Subject``
(decoded), the text and HTML parts, and every other header of ours as ``Headers`` (``Message-ID``,
``List-Unsubscribe``, ``List-Unsubscribe-Post``): Postmark's own libraries pass a message's ``Message-ID`` the same
way. ``Date``, the MIME structure and a ``DKIM-Signature`` are not passed: Postmark writes the message again and signs
it with the domain's key configured at Postmark, so our signature would no longer verify. ``Metadata`` holds the
ledger hash, campaign and variant (no personal data: Postmark returns it with bounce webhooks), ``Tag`` the campaign.
Link tracking is off (omnicast tracks clicks itself), open tracking only with ``?track_opens=true``.

How answers map onto the error tree (Postmark API overview, "HTTP response codes" and "API error codes"):

* HTTP 200 carries one result per message, in order: ``ErrorCode`` 0 is sent (Postmark's ``MessageID`` is the
  provider id); 406 *inactive recipient* (hard bounce, spam complaint or manual suppression at Postmark) is permanent
  and puts the address on our suppression list (``hard_bounce``); 300 *invalid email request* is permanent for that
  message; 100 *maintenance* and 429 are retryable; codes that say the account, sender signature, token or message
  stream is wrong stop the run (``ChannelConfigError``); any other code is permanent.
* HTTP 429 and 5xx: retried with exponential backoff and jitter, honouring ``Retry-After``, at most ``max_retries``
  times and ``max_retry_wait`` seconds in all; then every message of the call is retryable. (Postmark documents that
  after a 500 "in most cases the message is lost", so the call is repeated rather than held in doubt.)
* HTTP 401 (bad token), 404 (wrong API URL), a redirect or another unexpected 4xx: ``ChannelConfigError``, which
  stops the run; the token never appears in any message. Raised only while nothing of the call was handed over;
  after an earlier chunk of the same call was accepted, the rest is retryable instead (raising would lose the
  accepted chunk's provider ids), and the next call stops the run.
* HTTP 422 for the whole call: its ``ErrorCode`` decides as above; a malformed request is permanent per message.
* No connection, a connect/pool/write timeout or a write error: nothing was processed, retried like a 5xx.
  A read timeout or a dropped connection after the request went out: every message of that call is
  ``InDoubtChannelError`` (Postmark has no idempotency key; dispatch never sends them again).

Logs carry counts, HTTP statuses and error codes only: never an address, a body or the token. Postmark's ``Message``
texts quote addresses, so they are never copied into an error either.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
from email.policy import default as default_policy
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import unquote

import httpx
import orjson
from pydantic import Field

from channels.base import (
    ChannelConfigError,
    ChannelError,
    InDoubtChannelError,
    PermanentChannelError,
    RetryableChannelError,
)
from channels.email import email_channel, needs_smtputf8
from channels.http import ConfigStop, Retry, checked_base_url, jittered_backoff, retry_after_seconds, with_retries
from channels.outbox import ledger_hash
from channels.spec import AdapterOptions, ChannelResources, ChannelTarget
from models.message import OutboundMessage

if TYPE_CHECKING:
    from channels.base import Channel

__all__ = ["MAX_BATCH", "MAX_CALL_BYTES", "MAX_MESSAGE_BYTES", "PostmarkOptions", "PostmarkTransport"]

log = logging.getLogger(__name__)

API_SETTING = "OMNICAST_POSTMARK_API_URL"
DEFAULT_API_URL = "https://api.postmarkapp.com"
MAX_BATCH = 500
"""Messages per ``/email/batch`` call (Postmark's limit)."""
MAX_CALL_BYTES = 50_000_000
"""Request body per call: Postmark accepts up to 50 MB (counted here in decimal megabytes, to stay under it)."""
MAX_MESSAGE_BYTES = 10_000_000
"""One message's JSON: Postmark's limit for a single email is 10 MB."""
METADATA_VALUE_CHARS = 80

_SKIPPED_HEADERS = frozenset({
    "from", "to", "cc", "bcc", "subject", "date", "mime-version", "content-type", "content-transfer-encoding",
    "dkim-signature", "return-path", "received", "sender", "reply-to",
})  # fmt: skip
"""Headers that are Postmark fields of their own, MIME structure, or Postmark's to write (Date, DKIM)."""
_UNFOLD = re.compile(r"\r?\n(?=[ \t])")
_TOKEN = re.compile(r"[\x21-\x7e]+")

_CONFIG_CODES: dict[int, str] = {
    10: "the server token was refused; use the Server API token from the server's API Tokens tab",
    400: "the sender signature was not found; verify OMNICAST_SENDER_ADDRESS (or its domain) at Postmark",
    401: "the sender signature is not confirmed yet; confirm it at Postmark",
    405: "the account is not allowed to send (out of credits?)",
    412: "the account is pending approval and may only send to its own domain",
    413: "the account may not send",
    1235: "the message stream does not exist on this server; check ?message_stream=",
}
"""ErrorCodes that say every message would fail the same way: stop the run and say what to fix."""
_RETRYABLE_CODES: dict[int, str] = {100: "Postmark is in maintenance", 429: "rate limit exceeded"}
_PERMANENT_CODES: dict[int, str] = {
    300: "invalid email request",
    402: "invalid JSON",
    403: "incompatible JSON",
    406: "inactive recipient (hard bounce, spam complaint or manual suppression at Postmark)",
    409: "JSON required",
    410: "too many batch messages",
    411: "forbidden attachment type",
}


class PostmarkOptions(AdapterOptions):
    """``postmark://SERVER_TOKEN?message_stream=broadcast&timeout=30&max_retries=3&max_retry_wait=30``."""

    message_stream: str = Field(
        "outbound",
        pattern=r"^[A-Za-z0-9_-]{1,100}$",
        description="Postmark message stream ID (broadcast for marketing)",
    )
    timeout: float = Field(30.0, gt=0, le=300, description="seconds to connect, send and wait for each answer")
    max_retries: int = Field(3, ge=0, le=10, description="retries of a call answered 429/5xx or not connected")
    max_retry_wait: float = Field(30.0, ge=0, le=600, description="seconds of backoff a call may wait in all")
    track_opens: bool = Field(False, description="ask Postmark to track opens (a tracking pixel in the HTML)")


@dataclass
class _Prepared:
    """One message as Postmark JSON, with its place in the caller's list."""

    index: int
    payload: bytes


class PostmarkTransport:
    """An email batch transport for Postmark's ``/email/batch`` endpoint (see the module docstring).

    ``client`` is used as given (tests inject one; ``open_channel`` builds one with the URL's timeout) and closed by
    ``close``. ``sleep``, ``clock`` (monotonic seconds), ``now`` (for an HTTP-date ``Retry-After``) and ``jitter``
    (a float in [0, 1)) are injectable so backoff can be tested without waiting.
    """

    schemes: ClassVar[tuple[str, ...]] = ("postmark",)
    Options: ClassVar[type[AdapterOptions]] = PostmarkOptions

    def __init__(
        self,
        client: httpx.Client,
        token: str,
        *,
        base_url: str = DEFAULT_API_URL,
        message_stream: str = "outbound",
        track_opens: bool = False,
        max_retries: int = 3,
        max_retry_wait: float = 30.0,
        setting: str = "OMNICAST_EMAIL_URL",
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if not token or not _TOKEN.fullmatch(token):
            raise ChannelConfigError(f"{setting}: the Postmark server token is empty or not printable ASCII")
        self.client = client
        self._token = token
        self.url = base_url.rstrip("/") + "/email/batch"
        self.message_stream = message_stream
        self.track_opens = track_opens
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self.setting = setting
        self.sleep = sleep
        self.clock = clock
        self.now = now
        self.jitter = jitter

    def __repr__(self) -> str:  # never the token
        return f"PostmarkTransport(url={self.url!r}, message_stream={self.message_stream!r})"

    # adapter protocol ------------------------------------------------------------------------------------------

    @classmethod
    def open_channel(cls, target: ChannelTarget, resources: ChannelResources) -> Channel:
        """The email channel sending through Postmark: token from the URL, API URL from the settings."""
        options: PostmarkOptions = target.options
        token = _url_token(target)
        base_url = api_url(getattr(resources.settings, "postmark_api_url", None) or DEFAULT_API_URL)
        client = httpx.Client(timeout=httpx.Timeout(options.timeout), follow_redirects=False,
                              headers={"User-Agent": "omnicast (postmark batch transport)"})  # fmt: skip
        transport = cls(
            client, token, base_url=base_url, message_stream=options.message_stream, track_opens=options.track_opens,
            max_retries=options.max_retries, max_retry_wait=options.max_retry_wait, setting=target.setting,
        )  # fmt: skip
        return email_channel(transport, resources)

    # email transport -------------------------------------------------------------------------------------------

    def deliver(self, msg_bytes: bytes, message: OutboundMessage) -> str:
        """Send one message; Postmark's ``MessageID``, or the ``ChannelError`` its answer maps to."""
        (outcome,) = self.deliver_batch([(msg_bytes, message)])
        if isinstance(outcome, ChannelError):
            raise outcome
        return outcome

    def deliver_batch(self, items: Sequence[tuple[bytes, OutboundMessage]]) -> list[str | ChannelError]:
        """Send ``items`` in calls of ≤ 500 messages and ≤ 50 MB; one ``MessageID`` or error per item, in order.

        Raises ``ChannelConfigError`` (stop the run) only when nothing of this call was handed over to Postmark.
        """
        results: list[str | ChannelError | None] = [None] * len(items)
        prepared: list[_Prepared] = []
        for index, (msg_bytes, message) in enumerate(items):
            try:
                prepared.append(_Prepared(index, self._payload(msg_bytes, message)))
            except ChannelError as exc:
                results[index] = exc
        handed_over = False  # True once Postmark may hold a message of this call
        stopped: ChannelConfigError | None = None
        for chunk in _chunks(prepared):
            if stopped is not None:
                outcomes: list[str | ChannelError] = [_after_stop(stopped)] * len(chunk)
            else:
                try:
                    outcomes = self._send(chunk)
                except ConfigStop as stop:
                    if not handed_over:
                        raise stop.error from None
                    stopped = stop.error
                    outcomes = [_after_stop(stopped)] * len(chunk)
                else:
                    config = next((o for o in outcomes if isinstance(o, ChannelConfigError)), None)
                    sent_any = any(isinstance(o, str | InDoubtChannelError) for o in outcomes)
                    if config is not None and not handed_over and not sent_any:
                        raise config
                    if config is not None:
                        stopped = config
                        outcomes = [_after_stop(o) if isinstance(o, ChannelConfigError) else o for o in outcomes]
                    handed_over = handed_over or sent_any
            for item, outcome in zip(chunk, outcomes, strict=True):
                results[item.index] = outcome
        assert all(result is not None for result in results)
        return results  # type: ignore[return-value]  # every slot was filled above

    def close(self) -> None:
        """Close the HTTP client (its pooled connections)."""
        self.client.close()

    # JSON ------------------------------------------------------------------------------------------------------

    def _payload(self, msg_bytes: bytes, message: OutboundMessage) -> bytes:
        """Our RFC 5322 message as one Postmark message (JSON); ``PermanentChannelError`` when it can't be one."""
        if needs_smtputf8(msg_bytes):
            raise PermanentChannelError("Postmark does not accept an address whose local part is not ASCII")
        # compat32 reads the structure and bodies about 4x faster than policy.default (0.7 vs 2.8 ms for a 35 KB
        # message); the two headers that may hold encoded-words are decoded with policy.default's header classes.
        parsed = BytesParser(policy=compat32).parsebytes(msg_bytes)
        sender = _one_address(parsed, "From")
        recipient = _one_address(parsed, "To")
        if sender is None or recipient is None:
            raise PermanentChannelError("the message lacks a single From or To address")
        text, html = _bodies(parsed)
        if not text and not html:
            raise PermanentChannelError("the message has neither a text nor an HTML body")
        headers = [
            {"Name": name, "Value": _unfold(value)}
            for name, value in parsed.items()
            if name.lower() not in _SKIPPED_HEADERS
        ]
        metadata = {"ledger": ledger_hash(message.ledger_key), "campaign": message.campaign[:METADATA_VALUE_CHARS]}
        if message.variant:
            metadata["variant"] = message.variant[:METADATA_VALUE_CHARS]
        body: dict[str, Any] = {
            "From": _mailbox_text(*sender),
            "To": recipient[1],
            "Subject": str(default_policy.header_factory("Subject", _unfold(parsed.get("Subject", "")))),
            "TextBody": text,
            "HtmlBody": html,
            "Headers": headers,
            "Tag": message.campaign[:1000],
            "Metadata": metadata,
            "MessageStream": self.message_stream,
            "TrackOpens": self.track_opens,
            "TrackLinks": "None",
        }
        if not text:
            del body["TextBody"]
        if not html:
            del body["HtmlBody"]
        payload = orjson.dumps(body)
        if len(payload) > MAX_MESSAGE_BYTES:
            raise PermanentChannelError(
                f"the message is {len(payload) / 1e6:.1f} MB as JSON; Postmark takes at most 10 MB per message"
            )
        return payload

    # HTTP ------------------------------------------------------------------------------------------------------

    def _send(self, chunk: Sequence[_Prepared]) -> list[str | ChannelError]:
        """One ``/email/batch`` call (with its retries); one outcome per message of ``chunk``."""
        count = len(chunk)
        body = b"[" + b",".join(item.payload for item in chunk) + b"]"
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "X-Postmark-Server-Token": self._token,
        }

        def attempt() -> list[str | ChannelError] | Retry:
            try:
                response = self.client.post(self.url, content=body, headers=headers)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.WriteError, httpx.WriteTimeout,
                    httpx.LocalProtocolError, httpx.ProxyError) as exc:  # fmt: skip
                return Retry(f"{type(exc).__name__} before Postmark had the whole request")
            except httpx.UnsupportedProtocol as exc:
                raise ConfigStop(ChannelConfigError(f"{API_SETTING} is not an http(s) URL")) from exc
            except httpx.TransportError as exc:  # read timeout, dropped connection: it may have been processed
                log.warning("Postmark call of %d messages: %s after the request was sent; in doubt",
                            count, type(exc).__name__)  # fmt: skip
                return [InDoubtChannelError(
                    f"Postmark's answer was lost ({type(exc).__name__}) after the request was sent; "
                    "the message may have been accepted and is not sent again"
                )] * count  # fmt: skip
            status = response.status_code
            if status != 429 and status < 500:
                return self._outcomes(response, count)
            return Retry(f"HTTP {status}", retry_after_seconds(response.headers.get("Retry-After"), self.now()))

        def on_retry(retry: Retry, delay: float, n: int) -> None:
            log.info("Postmark call of %d messages: %s; retrying in %.1f s (retry %d of %d)",
                     count, retry.problem, delay, n, self.max_retries)  # fmt: skip

        def give_up(retry: Retry, attempts: int) -> list[str | ChannelError]:
            log.warning("Postmark call of %d messages failed (%s) after %d attempt(s); retry later",
                        count, retry.problem, attempts)  # fmt: skip
            wait = f"; it asked to wait {retry.retry_after:.0f} s" if retry.retry_after else ""
            return [RetryableChannelError(f"Postmark: {retry.problem} after {attempts} attempt(s){wait}")] * count

        return with_retries(attempt, max_retries=self.max_retries, max_retry_wait=self.max_retry_wait,
                            delay=self._delay, sleep=self.sleep, on_retry=on_retry, give_up=give_up)  # fmt: skip

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Backoff of 0.5, 1, 2, 4 … s, at most 8 (``jittered_backoff``)."""
        return jittered_backoff(attempt, retry_after, self.jitter, first=0.5, cap=8.0)

    def _outcomes(self, response: httpx.Response, count: int) -> list[str | ChannelError]:
        """Map a final (non-retried) answer onto one outcome per message."""
        status = response.status_code
        if status == 200:
            return self._results(response, count)
        if status == 401:
            raise ConfigStop(self._config(_CONFIG_CODES[10] + " (HTTP 401)"))
        if status == 422:
            code = _error_code(response)
            error = self._code_error(code, _json_field(response, "Message"))
            if isinstance(error, ChannelConfigError):
                raise ConfigStop(error)
            return [error] * count
        if status == 413:
            return [PermanentChannelError("Postmark refused the call as too large (HTTP 413)")] * count
        if status == 404:
            raise ConfigStop(ChannelConfigError(
                f"{API_SETTING}: Postmark answered HTTP 404 for {self.url}; use the API base URL, "
                f"e.g. {DEFAULT_API_URL}"
            ))  # fmt: skip
        if 300 <= status < 400:
            raise ConfigStop(ChannelConfigError(
                f"{API_SETTING}: the API answered with a redirect (HTTP {status}); use the URL it redirects to "
                "(https://)"
            ))  # fmt: skip
        code = _error_code(response)
        detail = f", ErrorCode {code}" if code is not None else ""
        raise ConfigStop(self._config(f"Postmark answered HTTP {status}{detail} to the batch call"))

    def _results(self, response: httpx.Response, count: int) -> list[str | ChannelError]:
        """A 200 answer: one result object per message, in order."""
        try:
            answer = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            answer = None
        if not isinstance(answer, list) or len(answer) != count:
            log.warning("Postmark answered 200 to %d messages without one result per message; in doubt", count)
            return [InDoubtChannelError("Postmark's answer did not list one result per message")] * count
        outcomes: list[str | ChannelError] = []
        for result in answer:
            code = result.get("ErrorCode") if isinstance(result, dict) else None
            message_id = result.get("MessageID") if isinstance(result, dict) else None
            if code == 0 and isinstance(message_id, str) and message_id:
                outcomes.append(message_id)
            elif isinstance(code, int) and code != 0:
                outcomes.append(self._code_error(code, result.get("Message")))
            else:
                outcomes.append(InDoubtChannelError("Postmark's result for this message was unreadable"))
        failed = sum(not isinstance(outcome, str) for outcome in outcomes)
        log.info("Postmark accepted %d of %d messages", count - failed, count)
        return outcomes

    def _code_error(self, code: int | None, text: object) -> ChannelError:
        """The error a Postmark ``ErrorCode`` means. ``text`` (Postmark's ``Message``, which quotes addresses) is
        only searched for the sender-signature case, never copied."""
        if code is None:
            return PermanentChannelError("Postmark refused the request (HTTP 422 without an ErrorCode)")
        if code in _CONFIG_CODES:
            return self._config(f"Postmark ErrorCode {code}: {_CONFIG_CODES[code]}")
        if code == 300 and isinstance(text, str) and ("'From'" in text or "Sender Signature" in text):
            return self._config(
                "Postmark ErrorCode 300: the From address is invalid or not a confirmed sender signature; "
                "fix OMNICAST_SENDER_ADDRESS or confirm it at Postmark"
            )
        if code in _RETRYABLE_CODES:
            return RetryableChannelError(f"Postmark ErrorCode {code}: {_RETRYABLE_CODES[code]}")
        meaning = _PERMANENT_CODES.get(code, "refused")
        return PermanentChannelError(
            f"Postmark ErrorCode {code}: {meaning}", suppress="hard_bounce" if code == 406 else None
        )

    def _config(self, text: str) -> ChannelConfigError:
        return ChannelConfigError(f"{self.setting}: {text}")


# helpers ---------------------------------------------------------------------------------------------------------


def _chunks(prepared: Sequence[_Prepared]) -> Iterator[list[_Prepared]]:
    """Calls of at most ``MAX_BATCH`` messages and ``MAX_CALL_BYTES`` of JSON, in order."""
    chunk: list[_Prepared] = []
    size = 2  # the brackets
    for item in prepared:
        extra = len(item.payload) + 1
        if chunk and (len(chunk) >= MAX_BATCH or size + extra > MAX_CALL_BYTES):
            yield chunk
            chunk, size = [], 2
        chunk.append(item)
        size += extra
    if chunk:
        yield chunk


def _after_stop(error: ChannelConfigError | ChannelError) -> RetryableChannelError:
    """What a message gets when the call must stop but part of it was already accepted."""
    return RetryableChannelError(f"not sent: {error}")


def _unfold(value: str) -> str:
    return _UNFOLD.sub("", value).replace("\r", "").replace("\n", "")


def _one_address(parsed: Message, name: str) -> tuple[str, str] | None:
    """``(display name, addr-spec)`` of the one mailbox in header ``name``; ``None`` unless exactly one."""
    raw = parsed.get(name)
    if raw is None:
        return None
    try:
        header: Any = default_policy.header_factory(name, _unfold(str(raw)))
        (address,) = header.addresses
    except (ValueError, TypeError, IndexError):
        return None
    if not address.username or not address.domain:
        return None
    return address.display_name, address.addr_spec


def _mailbox_text(display_name: str, addr_spec: str) -> str:
    """``"Name" <addr>`` with the name always quoted (Postmark refuses unquoted punctuation in a name)."""
    if not display_name:
        return addr_spec
    quoted = display_name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}" <{addr_spec}>'


def _bodies(parsed: Message) -> tuple[str, str]:
    """The first text/plain and text/html parts (not attachments), decoded."""
    found: dict[str, str] = {}
    for part in parsed.walk():
        kind = part.get_content_type()
        if part.is_multipart() or kind not in ("text/plain", "text/html") or kind in found:
            continue
        if (part.get("Content-Disposition") or "").lower().startswith("attachment"):
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        try:
            found[kind] = payload.decode(part.get_content_charset() or "utf-8", "replace")
        except LookupError:  # an unknown charset name
            found[kind] = payload.decode("utf-8", "replace")
    return found.get("text/plain", ""), found.get("text/html", "")


def _json_field(response: httpx.Response, name: str) -> Any:
    try:
        answer = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None
    return answer.get(name) if isinstance(answer, dict) else None


def _error_code(response: httpx.Response) -> int | None:
    code = _json_field(response, "ErrorCode")
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def _url_token(target: ChannelTarget) -> str:
    """The server token in ``postmark://SERVER_TOKEN`` (percent-decoded); never echoed in an error."""
    parts = target.parts
    fix = f"use {target.setting}=postmark://SERVER_TOKEN (the Server API token, percent-encoded if needed)"
    if "@" in parts.netloc:
        raise ChannelConfigError(f"{target.setting}=postmark://***: the token goes alone in the host part; {fix}")
    if ":" in parts.netloc:
        raise ChannelConfigError(f"{target.setting}=postmark://***: a Postmark URL has no port; {fix}")
    if parts.path not in ("", "/") or parts.fragment:
        raise ChannelConfigError(f"{target.setting}=postmark://***: a Postmark URL has no path; {fix}")
    token = unquote(parts.netloc)
    if not token:
        raise ChannelConfigError(f"{target.setting}: the Postmark server token is missing; {fix}")
    if not _TOKEN.fullmatch(token):
        raise ChannelConfigError(f"{target.setting}: the Postmark server token has spaces or control characters; "
                                 f"{fix}")  # fmt: skip
    return token


def api_url(value: str) -> str:
    """``OMNICAST_POSTMARK_API_URL`` checked: an http(s) base URL without credentials, query or fragment.

    Plain http is accepted (a local stand-in) but logged when the host is not a loopback address, since the server
    token would cross the network in clear text."""
    fix = f"use the API base URL, e.g. {DEFAULT_API_URL} (or http://127.0.0.1:PORT for a local stand-in)"
    return checked_base_url(value, API_SETTING, fix=fix, exposed="the server token travels unencrypted", logger=log)
