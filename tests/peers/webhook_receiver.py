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
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError


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


@dataclass
class WebhookReceiver:
    secret: str
    refuse: set[int] = field(default_factory=set)
    requests: list[Request] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    """The ``webhook-id`` of each event in ``events``, in the same order."""
    duplicates: int = 0

    def __post_init__(self) -> None:
        self.verifier = Webhook(self.secret)
        self._script: deque[Reply | Hang | None] = deque()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(_Handler):
            peer = receiver

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="webhook-peer", daemon=True)  # fmt: skip
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "start() the receiver first"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/hooks/omnicast"

    # steering ----------------------------------------------------------------------------------------------

    def script(self, *steps: Reply | Hang | None) -> None:
        """What the next requests get, in order (``None``: handled normally); afterwards requests are handled
        normally."""
        with self._lock:
            self._script.extend(steps)

    def _next_step(self) -> Reply | Hang | None:
        with self._lock:
            return self._script.popleft() if self._script else None

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


class _Handler(BaseHTTPRequestHandler):
    peer: WebhookReceiver
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._answer(405)

    def do_POST(self) -> None:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._answer(411)
            return
        body = self.rfile.read(int(length))
        headers = {key.lower(): value for key, value in self.headers.items()}
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
        data = b"" if status == 204 else json.dumps({"status": status}).encode()
        self.send_response(status)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        if status != 204:
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
