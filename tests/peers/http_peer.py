"""What the local HTTP stand-ins (Postmark, Meta Graph, Google Data Manager, the webhook receiver) share (tests only).

``HttpPeer`` is the lifecycle of a peer served on 127.0.0.1 (a random port) from a thread by the standard library's
``ThreadingHTTPServer``: ``start``/``stop``, use as a context manager, its ``url``, and the queue of scripted steps a
test steers the next requests with (``script``; the handler takes them with ``_next_step``). ``PeerHandler`` is the
base of their request handlers: HTTP/1.1 keep-alive, quiet, with helpers to read a request and write an answer.

A peer is a dataclass deriving from ``HttpPeer[Step]`` whose ``__post_init__`` calls ``super().__post_init__()``; it
names its handler class in ``handler`` (a subclass of ``PeerHandler`` bound to the peer as ``peer`` at ``start``), its
thread in ``thread_name`` and, when the URL tests use has a path, that path in ``url_path``.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Generic, Self, TypeVar

StepT = TypeVar("StepT")


@dataclass(frozen=True)
class Drop:
    """A scripted step: process the request, then close the connection without an answer."""


class PeerHandler(BaseHTTPRequestHandler):
    """A peer's request handler: HTTP/1.1 keep-alive, no logging to stderr."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def lower_headers(self) -> dict[str, str]:
        """The request's headers with lowercase names."""
        return {key.lower(): value for key, value in self.headers.items()}

    def send_body(self, status: int, data: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        """Answer ``status`` with ``data`` as ``content_type``, then the ``extra`` headers."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class HttpPeer(Generic[StepT]):
    """The lifecycle and script of a threaded loopback HTTP peer (see the module docstring)."""

    handler: ClassVar[type[PeerHandler]]
    thread_name: ClassVar[str] = "http-peer"
    url_path: ClassVar[str] = ""

    def __post_init__(self) -> None:
        self._script: deque[StepT] = deque()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        """Set by ``stop``: a handler holding an answer back (a hang) gives up waiting."""
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> Self:
        handler = type("Handler", (self.handler,), {"peer": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=self.thread_name, daemon=True)  # fmt: skip
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "start() the peer first"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}{self.url_path}"

    # steering ----------------------------------------------------------------------------------------------

    def script(self, *steps: StepT) -> None:
        """What the next requests get, in order (``None``: handled normally); afterwards they are handled normally."""
        with self._lock:
            self._script.extend(steps)

    def _next_step(self) -> StepT | None:
        with self._lock:
            return self._script.popleft() if self._script else None
