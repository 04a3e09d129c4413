"""The web app under test: settings, an app on the test database, a real uvicorn server on loopback."""

from __future__ import annotations

import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy.engine import Engine

from channels.tokens import TokenSigner
from flows.settings import Settings
from web.app import create_app

with warnings.catch_warnings():  # starlette 1.x: "Using httpx with starlette.testclient is deprecated"
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

SECRET = "web-test-secret-key-0123456789"
HOOK_PASSWORD = "hook-secret-6c1f"
SERVE_URL = "https://mail.beanandleaf.example/m"
SIGNER = TokenSigner(SECRET)


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "secret_key": SECRET,
        "serve_url": SERVE_URL,
        "postmark_webhook_token": HOOK_PASSWORD,
        "store_name": "Bean & Leaf Coffee",
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


class Clock:
    """A clock the test moves: every answer is dated by it."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime(2026, 12, 3, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_client(engine: Engine, clock: Clock) -> Callable[..., TestClient]:
    def make(**overrides: Any) -> TestClient:
        return TestClient(create_app(make_settings(**overrides), engine, clock=clock))

    return make


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


@contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    """``app`` served by a real uvicorn on 127.0.0.1 (random port) in a thread; yields its base URL."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()
