"""In-app cards by webhook: ``OMNICAST_INAPP_URL=https://app.example/hooks/omnicast`` (or ``http://``), signed per
Standard Webhooks with ``OMNICAST_INAPP_WEBHOOK_SECRET=whsec_…``.

Each message is one ``POST`` of one JSON event:

* ``{"type": "card.created", "timestamp": …, "data": <card>}`` — the card is built exactly as the in-app feed builds
  it (``templates/inapp/<template>.json.j2`` through ``CardRenderer``, then ``id`` from the ledger key, campaign,
  variant, customer_id, expires_at) and must pass ``card_errors`` (the content-card schema, the 30-day expiry) before
  anything is sent: an invalid card fails permanently and no request is made.
* ``{"type": "card.retracted", "timestamp": …, "data": {"id": <card id>, "customer_id": …}}`` for a message with
  ``retract=True``. The retraction names the card it withdraws in its context: ``retracts`` (the occurrence key of the
  message that delivered the card; the card id is that message's ledger hash) or ``card_id`` (the id itself). A
  retraction naming neither fails permanently rather than withdraw nothing in silence.

Headers (https://www.standardwebhooks.com): ``webhook-id`` is ``msg_<ledger hash>`` (``…_retract`` for a
retraction), the same for every attempt of a message in every run, so a receiver that deduplicates by it (as the
standard asks) takes each event once; ``webhook-timestamp`` is the attempt's Unix time; ``webhook-signature`` is
``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` made by the reference library (``standardwebhooks.Webhook.sign``).
The secret setting holds one ``whsec_<base64>`` secret, or two separated by a space or comma while rotating: every
request is then signed with both (two space-separated ``v1,…`` signatures), so a receiver knowing either one verifies.

How answers map onto the error tree:

* 2xx: sent; the provider id is the ``webhook-id``.
* 408, 429, 5xx, a timeout or a connection error: retried in the call with exponential backoff and jitter, honouring
  ``Retry-After``, at most ``max_retries`` times and ``max_retry_wait`` seconds in all; then ``RetryableChannelError``
  (a later run sends it again). A read timeout *after* the whole request went out is retried too, not held in doubt:
  the receiver may have taken the event, but the retry carries the same ``webhook-id`` and the receiver drops it as a
  duplicate. (The channel still says it cannot tell what it delivered, so dispatch hands it one message at a time.)
* 410 Gone: the receiver disabled the endpoint (as the standard specifies). That message and every later one of this
  channel fail permanently with "endpoint disabled (410 Gone)" and no further request is made.
* Any other answer (3xx — redirects are not followed —, and 4xx): permanent, e.g. "webhook answered 400"; dispatch
  records the message ``failed``/``permanent`` with that reason.

Errors and logs carry HTTP statuses, counts and attempt numbers only: never the URL (it may hold a token), the
secret, a card, a customer id or what the receiver answered.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, NoReturn

import httpx
from pydantic import Field
from standardwebhooks import Webhook

from channels.base import (
    Channel,
    ChannelConfigError,
    ChannelError,
    DeliveryResult,
    PermanentChannelError,
    RetryableChannelError,
)
from channels.http import Retry, jittered_backoff, retry_after_seconds, secret_text, warn_plain_http, with_retries
from channels.inapp import DEFAULT_TTL, MAX_TTL, build_card, retracted_card_id
from channels.outbox import ledger_hash
from channels.render import CardRenderer
from channels.spec import AdapterOptions, ChannelResources, ChannelTarget
from models.message import OutboundMessage

__all__ = ["SECRET_SETTING", "InAppWebhook", "InAppWebhookOptions", "build_card", "parse_secrets", "webhook_id"]

log = logging.getLogger(__name__)

SECRET_SETTING = "OMNICAST_INAPP_WEBHOOK_SECRET"
GENERATE = "python -c \"import base64, secrets; print('whsec_' + base64.b64encode(secrets.token_bytes(32)).decode())\""
MIN_SECRET_BYTES, MAX_SECRET_BYTES = 24, 64
"""Standard Webhooks: a secret of 24 to 64 random bytes."""
DISABLED = "endpoint disabled (410 Gone)"
_CARD_ID = re.compile(r"^[0-9a-f]{32}$")
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")


class InAppWebhookOptions(AdapterOptions):
    """``https://app.example/hooks/omnicast?timeout=10&max_retries=3&max_retry_wait=30&ttl_days=14``."""

    timeout: float = Field(10.0, gt=0, le=120, description="seconds to connect, send and wait for each answer")
    max_retries: int = Field(3, ge=0, le=10, description="retries of a POST answered 408/429/5xx or not answered")
    max_retry_wait: float = Field(30.0, ge=0, le=600, description="seconds of backoff one message may wait in all")
    ttl_days: float = Field(DEFAULT_TTL.total_seconds() / 86400, gt=0, le=MAX_TTL.days,
                            description="how long a card stays in the app")  # fmt: skip


class InAppWebhook(Channel):
    """The in-app channel delivering each card (or retraction) as a signed Standard Webhooks event.

    ``client`` is used as given and closed by ``close`` only when ``owns_client`` (``open_channel`` builds one with
    the URL's timeout). ``sleep``, ``clock`` (the wall clock, UTC) and ``jitter`` (a float in [0, 1)) are injectable
    so backoff and signing can be tested without waiting.
    """

    name = "inapp"
    consent_channel = "inapp"
    schemes: ClassVar[tuple[str, ...]] = ("http", "https")
    Options: ClassVar[type[AdapterOptions]] = InAppWebhookOptions

    def __init__(
        self,
        client: httpx.Client,
        url: str,
        secrets: Sequence[str],
        renderer: CardRenderer,
        *,
        ttl: timedelta = DEFAULT_TTL,
        max_retries: int = 3,
        max_retry_wait: float = 30.0,
        owns_client: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if not timedelta(0) < ttl <= MAX_TTL:
            raise ChannelConfigError(f"in-app card ttl must be between 0 and 30 days, not {ttl}")
        self.client = client
        self.url = url
        self._signers = parse_secrets(" ".join(secrets))
        self.renderer = renderer
        self.ttl = ttl
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self.owns_client = owns_client
        self.sleep = sleep
        self.clock = clock
        self.jitter = jitter
        self.disabled = False

    def __repr__(self) -> str:  # never the URL (it may hold a token) nor the secret
        return f"InAppWebhook(host={httpx.URL(self.url).host!r}, secrets={len(self._signers)})"

    # adapter protocol ------------------------------------------------------------------------------------------

    @classmethod
    def open_channel(cls, target: ChannelTarget, resources: ChannelResources) -> Channel:
        """The channel for ``target``'s URL, signing with the secret(s) in ``inapp_webhook_secret``."""
        options: InAppWebhookOptions = target.options
        url = _checked_url(target)
        secret = secret_text(getattr(resources.settings, "inapp_webhook_secret", None))
        if secret is None:
            raise ChannelConfigError(
                f"{target.setting} sends signed webhooks: set {SECRET_SETTING}=whsec_… (the secret the receiver "
                f"verifies with); generate one with {GENERATE}"
            )
        parse_secrets(secret)  # before the client exists: nothing to close on a bad secret
        client = httpx.Client(timeout=httpx.Timeout(options.timeout), follow_redirects=False,
                              headers={"User-Agent": "omnicast (in-app webhook)"})  # fmt: skip
        return cls(
            client, url, [secret], CardRenderer(resources.templates_dir), ttl=timedelta(days=options.ttl_days),
            max_retries=options.max_retries, max_retry_wait=options.max_retry_wait, owns_client=True,
        )  # fmt: skip

    # channel ---------------------------------------------------------------------------------------------------

    def send(self, message: OutboundMessage) -> DeliveryResult:
        """Build the event, then POST it (with in-call retries); a per-message failure is a failed result."""
        try:
            return DeliveryResult.sent(self._deliver(message))
        except ChannelConfigError:
            raise
        except ChannelError as exc:
            return DeliveryResult.failed(exc)

    def close(self) -> None:
        """Close the HTTP client when this channel opened it (closing twice is harmless)."""
        if self.owns_client:
            self.client.close()

    # events ----------------------------------------------------------------------------------------------------

    def _deliver(self, message: OutboundMessage) -> str:
        if self.disabled:
            raise PermanentChannelError(DISABLED)
        now = self.clock()
        if message.retract:
            data: dict[str, Any] = {"id": retracted_card_id(message), "customer_id": message.customer_id}
            kind = "card.retracted"
        else:
            data, kind = build_card(self.renderer, message, now, self.ttl), "card.created"
        event = {"type": kind, "timestamp": now.astimezone(UTC).isoformat(timespec="seconds"), "data": data}
        body = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
        return self._post(webhook_id(message), body)

    def signature_headers(self, event_id: str, body: str, timestamp: int) -> dict[str, str]:
        """The Standard Webhooks headers for ``body`` sent at ``timestamp`` (Unix seconds), one signature per secret."""
        when = datetime.fromtimestamp(timestamp, UTC)
        return {
            "webhook-id": event_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": " ".join(signer.sign(event_id, when, body) for signer in self._signers),
            "content-type": "application/json",
        }

    # HTTP ------------------------------------------------------------------------------------------------------

    def _post(self, event_id: str, body: str) -> str:
        """POST one event until it is answered for good; the ``webhook-id`` when accepted, else the error raised."""
        content = body.encode()

        def attempt() -> str | Retry:
            headers = self.signature_headers(event_id, body, int(self.clock().timestamp()))  # fresh per attempt
            try:
                response = self.client.post(self.url, content=content, headers=headers)
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
                raise ChannelConfigError("OMNICAST_INAPP_URL is not an http(s) URL") from exc
            except httpx.TimeoutException as exc:  # even after the body went out: the retry has the same webhook-id
                return Retry(f"no answer in time ({type(exc).__name__})")
            except httpx.TransportError as exc:
                return Retry(f"connection failed ({type(exc).__name__})")
            status = response.status_code
            if 200 <= status < 300:
                return event_id
            if status == 410:
                if not self.disabled:
                    log.warning("in-app webhook endpoint answered 410 Gone: no further cards go to it in this "
                                "run; fix OMNICAST_INAPP_URL")  # fmt: skip
                self.disabled = True
                raise PermanentChannelError(DISABLED)
            if status not in (408, 429) and status < 500:
                raise PermanentChannelError(_refusal(status))
            return Retry(f"webhook answered {status}",
                         retry_after_seconds(response.headers.get("Retry-After"), self.clock()))  # fmt: skip

        def on_retry(retry: Retry, delay: float, n: int) -> None:
            log.info("in-app webhook: %s; retrying in %.1f s (retry %d of %d)", retry.problem, delay, n,
                     self.max_retries)  # fmt: skip

        def give_up(retry: Retry, attempts: int) -> NoReturn:
            log.warning("in-app webhook: %s after %d attempt(s); a later run retries", retry.problem, attempts)
            asked = f"; it asked to wait {retry.retry_after:.0f} s" if retry.retry_after else ""
            raise RetryableChannelError(f"{retry.problem} after {attempts} attempt(s){asked}")

        return with_retries(attempt, max_retries=self.max_retries, max_retry_wait=self.max_retry_wait,
                            delay=self._delay, sleep=self.sleep, on_retry=on_retry, give_up=give_up)  # fmt: skip

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Backoff of 0.5, 1, 2, 4 … s, at most 8 (``jittered_backoff``)."""
        return jittered_backoff(attempt, retry_after, self.jitter, first=0.5, cap=8.0)


# building events -------------------------------------------------------------------------------------------------


def webhook_id(message: OutboundMessage) -> str:
    """The ``webhook-id`` of ``message``'s event: stable across attempts and runs (receivers deduplicate by it), and
    never the same for a card and a retraction."""
    return f"msg_{ledger_hash(message.ledger_key)}" + ("_retract" if message.retract else "")


# settings --------------------------------------------------------------------------------------------------------


def parse_secrets(value: str) -> tuple[Webhook, ...]:
    """One signer per ``whsec_<base64>`` secret in ``value`` (one, or two separated by a space or comma while
    rotating); ``ChannelConfigError`` naming the setting otherwise. A secret never appears in an error."""
    fix = f"set {SECRET_SETTING}=whsec_<base64 of 24-64 random bytes>; generate one with {GENERATE}"
    parts = [part for part in re.split(r"[\s,]+", value.strip()) if part]
    if not parts:
        raise ChannelConfigError(f"{SECRET_SETTING} is empty; {fix}")
    if len(parts) > 2:
        raise ChannelConfigError(f"{SECRET_SETTING} holds {len(parts)} secrets; give one, or two while rotating; "
                                 f"{fix}")  # fmt: skip
    signers = []
    for n, part in enumerate(parts, start=1):
        which = f"secret {n} of {len(parts)}" if len(parts) > 1 else "the secret"
        if not part.startswith("whsec_"):
            raise ChannelConfigError(f"{SECRET_SETTING}: {which} does not start with whsec_; {fix}")
        encoded = part.removeprefix("whsec_")
        try:
            if not _BASE64.fullmatch(encoded):
                raise binascii.Error
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ChannelConfigError(f"{SECRET_SETTING}: {which} is not base64 after whsec_; {fix}") from None
        if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
            raise ChannelConfigError(f"{SECRET_SETTING}: {which} is {len(key)} bytes; Standard Webhooks secrets are "
                                     f"{MIN_SECRET_BYTES} to {MAX_SECRET_BYTES}; {fix}")  # fmt: skip
        signers.append(Webhook(key))
    return tuple(signers)


def _checked_url(target: ChannelTarget) -> str:
    """The receiver's URL without the options (the query holds them); plain http to a host that is not loopback is
    logged, since cards would cross the network in clear text (the signature proves origin, it does not hide)."""
    parts = target.parts
    if not parts.hostname:
        raise ChannelConfigError(f"{target.setting} needs a host, e.g. https://app.example/hooks/omnicast")
    if parts.fragment:
        raise ChannelConfigError(f"{target.setting} must not have a #fragment")
    warn_plain_http(parts.scheme, parts.hostname, target.setting, "cards travel unencrypted", log)
    return parts._replace(query="").geturl()


def _refusal(status: int) -> str:
    if 300 <= status < 400:
        return f"webhook answered {status} (a redirect, not followed: set OMNICAST_INAPP_URL to where it points)"
    return f"webhook answered {status}"
