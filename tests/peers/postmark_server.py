"""A local stand-in for Postmark's batch API that enforces the documented contract (tests only).

``POST /email/batch`` on 127.0.0.1 (a random port), served from a thread by the standard library's
``ThreadingHTTPServer`` with HTTP/1.1 keep-alive, as Postmark documents it:

* ``X-Postmark-Server-Token`` must be the server's token: otherwise HTTP 401 with ``ErrorCode`` 10;
* ``Accept: application/json`` (else 406) and ``Content-Type: application/json`` (else 415) are required;
* the body is a JSON array (else 422 with ``ErrorCode`` 402 *invalid JSON* / 403 *incompatible JSON*) of at most
  500 messages (else 422, ``ErrorCode`` 410) and at most 50 MB (else 413);
* each message needs ``From``, ``To`` and a ``TextBody`` or ``HtmlBody``; only Postmark's field names are allowed;
  ``Headers`` is a list of ``{"Name", "Value"}`` strings without line breaks; ``Metadata`` a flat object of short
  values; ``TrackLinks`` one of Postmark's four values; ``MessageStream`` a stream of this server (else ``ErrorCode``
  1235). A message that breaks a rule gets ``ErrorCode`` 300 in its place of the answer, and is not sent.
* The answer is HTTP 200 with one result per message, in order: ``{"ErrorCode": 0, "Message": "OK", "MessageID",
  "SubmittedAt", "To"}`` when accepted, ``{"ErrorCode", "Message"}`` otherwise. A recipient containing one of the
  ``fail_when`` substrings gets that code (default ``"inactive"`` → 406, ``"invalid"`` → 300), with a ``Message``
  quoting the address as Postmark's do, so tests can check that nothing copies it.

Tests steer the next calls with ``script(...)``: a canned answer (``Reply(429, retry_after=2)``, ``Reply(500)``,
``Reply(422, error_code=400)``, …), ``Hang(seconds)`` (process the batch, then answer too late: a read timeout) or
``Drop()`` (process the batch, then close the connection without answering); ``None`` handles a call normally.
Every call is recorded in ``calls`` and every accepted message in ``accepted``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from tests.peers.http_peer import Drop, HttpPeer, PeerHandler

MAX_MESSAGES = 500
MAX_BYTES = 50 * 1024 * 1024
FIELDS = frozenset({
    "From", "To", "Cc", "Bcc", "Subject", "Tag", "HtmlBody", "TextBody", "ReplyTo", "Headers", "TrackOpens",
    "TrackLinks", "Metadata", "Attachments", "MessageStream", "InlineCss",
})  # fmt: skip
TRACK_LINKS = frozenset({"None", "HtmlAndText", "HtmlOnly", "TextOnly"})


@dataclass(frozen=True)
class Reply:
    """A canned answer for one call (the batch is not processed)."""

    status: int
    retry_after: str | int | None = None
    error_code: int | None = None
    body: Any = None


@dataclass(frozen=True)
class Hang:
    """Process the batch, then wait ``seconds`` before answering (the client should time out first)."""

    seconds: float = 2.0


Step = Reply | Hang | Drop | None


@dataclass
class Call:
    """One request as the server saw it."""

    headers: dict[str, str]
    messages: list[Any] | None
    status: int
    results: list[dict[str, Any]] | None = None
    """The per-message results of a 200 answer (``MessageID`` of each accepted message)."""


@dataclass
class PostmarkServer(HttpPeer[Step]):
    thread_name: ClassVar[str] = "postmark-peer"

    token: str = "server-token"
    streams: tuple[str, ...] = ("outbound", "broadcast")
    fail_when: dict[str, int] = field(default_factory=lambda: {"inactive": 406, "invalid": 300})
    calls: list[Call] = field(default_factory=list)
    accepted: list[dict[str, Any]] = field(default_factory=list)

    # recording ---------------------------------------------------------------------------------------------

    def _record(self, call: Call, accepted: list[dict[str, Any]]) -> None:
        with self._lock:
            self.calls.append(call)
            self.accepted.extend(accepted)

    # the contract ------------------------------------------------------------------------------------------

    def answer(self, messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """One result per message, and the messages accepted."""
        results, accepted = [], []
        for message in messages:
            problem = self._problem(message)
            if problem is not None:
                code, text = problem
                results.append({"ErrorCode": code, "Message": text})
                continue
            accepted.append(message)
            results.append({
                "ErrorCode": 0, "Message": "OK", "MessageID": str(uuid.uuid4()),
                "SubmittedAt": datetime.now(UTC).isoformat(), "To": message["To"],
            })  # fmt: skip
        return results, accepted

    def _problem(self, message: Any) -> tuple[int, str] | None:
        if not isinstance(message, dict):
            return 403, "Incompatible JSON: a message must be an object."
        unknown = sorted(set(message) - FIELDS)
        if unknown:
            return 403, f"Incompatible JSON: unknown field '{unknown[0]}'."
        for name in ("From", "To"):
            value = message.get(name)
            if not isinstance(value, str) or "@" not in value or "\n" in value or "\r" in value:
                return 300, f"Invalid '{name}' address: '{value}'."
            address = value.rpartition("<")[2].rstrip(">").strip()
            if not address.isascii() or " " in address:
                return 300, f"Error parsing '{name}': Illegal email address '{address}'."
            if name == "From" and "<" in value and not value.startswith('"'):
                name_part = value.partition("<")[0]
                if any(ch in name_part for ch in ",;:()[]\\"):
                    return 300, f"Invalid 'From' address: '{value}'."
        if not any(isinstance(message.get(body), str) and message[body] for body in ("TextBody", "HtmlBody")):
            return 300, "Provide either email TextBody or HtmlBody or both."
        for name in ("Subject", "Tag"):
            if name in message and not isinstance(message[name], str):
                return 300, f"'{name}' must be a string."
        headers = message.get("Headers", [])
        if not isinstance(headers, list):
            return 300, "Headers must be a list of {Name, Value} objects."
        for header in headers:
            if (
                not isinstance(header, dict)
                or set(header) != {"Name", "Value"}
                or not all(isinstance(header[key], str) for key in ("Name", "Value"))
                or any(ch in header["Name"] + header["Value"] for ch in "\r\n")
                or not header["Name"]
            ):
                return 300, "Invalid custom header."
        metadata = message.get("Metadata", {})
        if not isinstance(metadata, dict) or not all(
            isinstance(key, str) and isinstance(value, str | int | float) and len(str(value)) <= 80
            for key, value in metadata.items()
        ):
            return 300, "Metadata must be a flat object of short values."
        if message.get("TrackLinks", "None") not in TRACK_LINKS:
            return 300, "TrackLinks must be None, HtmlAndText, HtmlOnly or TextOnly."
        if not isinstance(message.get("TrackOpens", False), bool):
            return 300, "TrackOpens must be a boolean."
        if message.get("MessageStream", "outbound") not in self.streams:
            return 1235, "The message stream for the provided 'ID' was not found."
        recipient = message["To"]
        for needle, code in self.fail_when.items():
            if needle in recipient:
                if code == 406:
                    return 406, (
                        "You tried to send to recipient(s) that have been marked as inactive. Found inactive "
                        f"addresses: {recipient}. Inactive recipients are ones that have generated a hard bounce, "
                        "a spam complaint, or a manual suppression."
                    )
                return code, f"Invalid 'To' address: '{recipient}'."
        return None


@dataclass
class _Answer:
    status: int
    body: Any
    extra: dict[str, str] = field(default_factory=dict)
    messages: list[Any] | None = None
    accepted: list[dict[str, Any]] = field(default_factory=list)
    step: Step = None


def _error(status: int, code: int, text: str, messages: list[Any] | None = None) -> _Answer:
    return _Answer(status, {"ErrorCode": code, "Message": text}, messages=messages)


class _Handler(PeerHandler):
    peer: PostmarkServer

    def do_GET(self) -> None:
        self._send(_error(405, 0, "Method not allowed."))

    def do_POST(self) -> None:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._send(_error(411, 0, "Length required."))
            return
        raw = self.rfile.read(int(length))
        headers = self.lower_headers()
        answer = self._handle(raw, headers)
        results = answer.body if answer.status == 200 and isinstance(answer.body, list) else None
        call = Call(headers, answer.messages, answer.status, results)
        self.peer._record(call, answer.accepted)  # before answering: the client may look at once
        if isinstance(answer.step, Hang):
            self.peer._closing.wait(answer.step.seconds)
            self.close_connection = True
        elif isinstance(answer.step, Drop):
            self.close_connection = True
        else:
            self._send(answer)

    def _handle(self, raw: bytes, headers: dict[str, str]) -> _Answer:
        peer = self.peer
        if self.path != "/email/batch":
            return _error(404, 0, "Not found.")
        if headers.get("x-postmark-server-token") != peer.token:
            return _error(401, 10, "Request does not contain a valid Server token.")
        if "application/json" not in headers.get("accept", ""):
            return _error(406, 0, "Accept: application/json is required.")
        if headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return _error(415, 409, "JSON required.")
        step = peer._next_step()
        if isinstance(step, Reply):
            extra = {"Retry-After": str(step.retry_after)} if step.retry_after is not None else {}
            body = step.body if step.body is not None else {"ErrorCode": step.error_code or 0, "Message": "canned"}
            return _Answer(step.status, body, extra)
        if len(raw) > MAX_BYTES:
            return _error(413, 0, "Payload too large.")
        try:
            messages = json.loads(raw)
        except ValueError:
            return _error(422, 402, "Invalid JSON.")
        if not isinstance(messages, list):
            return _error(422, 403, "Incompatible JSON: expected an array.")
        if len(messages) > MAX_MESSAGES:
            return _error(422, 410, "Too many batch messages.", messages)
        results, accepted = peer.answer(messages)
        return _Answer(200, results, messages=messages, accepted=accepted, step=step)

    def _send(self, answer: _Answer) -> None:
        self.send_body(answer.status, json.dumps(answer.body).encode(), "application/json", answer.extra)


PostmarkServer.handler = _Handler
