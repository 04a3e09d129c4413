"""The commands that deal with the customer's answers: ``omnicast serve`` and ``omnicast forget``.

``register(app)`` adds them to the ``omnicast`` Typer app (flows/cli.py). Both follow the CLI's error contract: a
problem the operator can fix is an :class:`models.errors.OmnicastError` (one ``error:`` line, exit code 2).
"""

from __future__ import annotations

import json
import logging
import socket
import sys
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from models.errors import InputError

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


def register(app: typer.Typer) -> None:
    """Add ``serve`` and ``forget`` to ``app``."""
    app.command()(serve)
    app.command()(forget)


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port to listen on.")] = 8000,
) -> None:
    """Answer unsubscribe, preference, tracked-link and Postmark webhook requests at OMNICAST_SERVE_URL.

    Run it behind an https reverse proxy that forwards OMNICAST_SERVE_URL here: mailbox providers only make
    one-click unsubscribe POSTs to https URLs.
    """
    from flows.runtime import load_settings, open_database
    from web.app import create_app, signing_key

    settings = load_settings()
    signing_key(settings)  # before the database is touched: a missing key is the likelier mistake
    listener = _listen(host, port)
    engine = None
    try:
        engine = open_database(settings)
        _run(create_app(settings, engine), listener, settings.links_url, host, port)
    finally:
        listener.close()
        if engine is not None:
            engine.dispose()


def forget(
    email: Annotated[str, typer.Argument(help="The email address of the person to erase.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Erase a person (right to erasure): their personal data everywhere; their address stays as a salted hash on
    the suppression list so no later import brings them back. Safe to run twice."""
    from flows.runtime import load_settings, open_database
    from models.erasure import forget as erase

    settings = load_settings()
    engine = open_database(settings)
    try:
        report = erase(engine, email)
    finally:
        engine.dispose()
    if as_json:
        sys.stdout.write(json.dumps(report.as_dict()) + "\n")
    else:
        typer.echo(report.summary())


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket, or an :class:`InputError` naming the option (port taken, unknown host, ...)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise InputError(f"--host {host!r} is not an address this machine has ({exc.strerror})") from exc
    family, kind, proto, _, address = infos[0]
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(2048)
    except OSError as exc:
        listener.close()
        raise InputError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port or --host, or stop "
            "the program using it"
        ) from exc
    listener.set_inheritable(True)
    return listener


def _run(app: Any, listener: socket.socket, links_url: str, host: str, port: int) -> None:
    import uvicorn

    _log_to_stderr()
    typer.echo(f"omnicast serve: answering for {links_url} on http://{_hostport(host, port)}")
    typer.echo(f"  one-click unsubscribe: {links_url}/u/TOKEN   tracked links: {links_url}/c/TOKEN")
    typer.echo(f"  Postmark webhooks: {_webhook_url(links_url)}   health: {links_url}/healthz")
    parts = urlsplit(links_url)
    if parts.scheme != "https" and parts.hostname not in LOCAL_HOSTS:
        typer.echo(
            "  note: OMNICAST_SERVE_URL is not https; mailbox providers make one-click unsubscribe POSTs to https "
            "URLs only: put an https proxy in front and set OMNICAST_SERVE_URL to its address",
            err=True,
        )
    config = uvicorn.Config(
        app, log_level="info", access_log=False, server_header=False, proxy_headers=True, log_config=None
    )
    uvicorn.Server(config).run(sockets=[listener])


def _webhook_url(links_url: str) -> str:
    parts = urlsplit(links_url)
    return f"{parts.scheme}://postmark:<OMNICAST_POSTMARK_WEBHOOK_TOKEN>@{parts.netloc}{parts.path}/webhooks/postmark"


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _log_to_stderr() -> None:
    """omnicast's and uvicorn's log lines on stderr (tokens and addresses never reach them: web.app redacts)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("omnicast", "uvicorn"):
        logger = logging.getLogger(name)
        if not logger.handlers:
            logger.addHandler(handler)
        logger.setLevel(logging.INFO)
