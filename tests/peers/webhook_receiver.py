"""A local Standard Webhooks receiver that verifies every request with the reference library (tests only).

``POST /`` (any path) on 127.0.0.1 (a random port), served from a thread by the standard library's
``ThreadingHTTPServer`` with HTTP/1.1 keep-alive, as a receiver following https://www.standardwebhooks.com does:

* every request is verified with ``standardwebhooks.Webhook(secret).verify(body, headers)`` (the signature over
  ``id.timestamp.body``, the ±5 minute timestamp tolerance); one that fails gets HTTP 400 and is not processed;
* ``Content-Type`` must be ``application/json`` (else 415);
* events are deduplicated by ``webhook-id``: a repeated id is answered 204 again but not recorded twice
  (``duplicates`` counts them);
* an accepted event is answered 204 and recorded in ``events`` (in arrival order).

``refuse`` holds customer ids whose events are answered 400 (the event's ``data.customer_id``), so a test can make
one recipient fail. Tests steer the next requests with ``script(...)``: ``Reply(500)``, ``Reply(429,
retry_after=1)``, ``Reply(410)``, ``Reply(400)`` (a canned answer: the event is not processed) or ``Hang(seconds)``
(verify and process the event, then answer too late: the client's read timeout fires after the body went out);
``None`` handles a request normally. Every request is recorded in ``requests``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from standardwebhooks import Webhook, WebhookVerificationError

from tests.peers.http_peer import HttpPeer, PeerHandler


@dataclass(frozen=True)
class Reply:
    """A canned answer for one request (the event is not processed)."""

    status: int
    retry_after: str | int | None = None


@dataclass(frozen=True)
class Hang:
    """Process the event, then wait ``seconds`` and close without answering (the client should time out first)."""

    seconds: float = 1.0


@dataclass
class Request:
    """One request as the receiver saw it."""

    headers: dict[str, str]
    body: bytes
    verified: bool
    status: int | None
    """The answer's status; ``None`` when it hung up without one."""


Step = Reply | Hang | None


@dataclass
class WebhookReceiver(HttpPeer[Step]):
    thread_name: ClassVar[str] = "webhook-peer"
    url_path: ClassVar[str] = "/hooks/omnicast"

    secret: str
    refuse: set[int] = field(default_factory=set)
    requests: list[Request] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    """The ``webhook-id`` of each event in ``events``, in the same order."""
    duplicates: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.verifier = Webhook(self.secret)

    # the contract ------------------------------------------------------------------------------------------

    def receive(self, body: bytes, headers: dict[str, str]) -> tuple[int, bool, Reply | Hang | None]:
        """Verify, then (unless scripted otherwise) process one request: its status, whether it verified, and the
        scripted step it took."""
        try:
            event = self.verifier.verify(body, headers)
        except (WebhookVerificationError, ValueError):  # a bad signature, stale timestamp or malformed header
            return 400, False, None
        step = self._next_step()
        if isinstance(step, Reply):
            return step.status, True, step
        data = event.get("data") if isinstance(event, dict) else None
        if not isinstance(data, dict) or event.get("type") not in ("card.created", "card.retracted"):
            return 400, True, step
        if data.get("customer_id") in self.refuse:
            return 400, True, step
        with self._lock:
            event_id = headers["webhook-id"]
            if event_id in self.event_ids:
                self.duplicates += 1
            else:
                self.event_ids.append(event_id)
                self.events.append(event)
        return 204, True, step

    def cards(self) -> list[dict[str, Any]]:
        """The cards of every ``card.created`` event, in arrival order."""
        return [event["data"] for event in self.events if event["type"] == "card.created"]


class _Handler(PeerHandler):
    peer: WebhookReceiver

    def do_GET(self) -> None:
        self._answer(405)

    def do_POST(self) -> None:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._answer(411)
            return
        body = self.rfile.read(int(length))
        headers = self.lower_headers()
        if headers.get("content-type", "").split(";")[0].strip() != "application/json":
            status, verified, step = 415, False, None
        else:
            status, verified, step = self.peer.receive(body, headers)
        hang = isinstance(step, Hang)
        with self.peer._lock:  # before answering: the client may look at once
            self.peer.requests.append(Request(headers, body, verified, None if hang else status))
        if isinstance(step, Hang):
            self.peer._closing.wait(step.seconds)
            self.close_connection = True
            return
        extra = {}
        if isinstance(step, Reply) and step.retry_after is not None:
            extra["Retry-After"] = str(step.retry_after)
        self._answer(status, extra)

    def _answer(self, status: int, extra: dict[str, str] | None = None) -> None:
        if status != 204:
            self.send_body(status, json.dumps({"status": status}).encode(), "application/json", extra)
            return
        self.send_response(status)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()


WebhookReceiver.handler = _Handler
