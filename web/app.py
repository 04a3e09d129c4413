"""``omnicast serve``: the web app that hears the customer's answers.

Routes (each also under the path of ``OMNICAST_SERVE_URL``, e.g. ``/mail/u/...`` for ``https://x.example/mail``, so a
proxy may pass the path through or strip it)::

    POST /u/{token}               RFC 8058 one-click unsubscribe (body List-Unsubscribe=One-Click) → 200, no redirect
    GET  /u/{token}               confirmation page and preference centre (never changes anything: scanners fetch it)
    POST /u/{token}/preferences   the page's form: unsubscribe from all, per-topic choices, subscribe again → 303
    GET  /c/{token}               tracked link: records the click, 302 to the target with UTM parameters
    POST /webhooks/postmark       Postmark bounce / spam-complaint / subscription-change webhooks (basic auth)
    POST /webhooks/shopify        Shopify customers/redact (erase), customers/delete (unlink), privacy topics (HMAC)
    GET  /healthz                 200 when the database answers
    GET  /v1/customers/{id}/cards, /v1/customers/{id}/recommendations   the pull API (web/api.py; API key)

A token that is forged, altered, made with another key or for another purpose (a click token on ``/u/``) gets 404
and changes nothing; every handler is safe to call twice. Logs name the route and the status, never a token, an
address or an exception's text (which may quote either).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from sqlalchemy import text
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from channels.email import signing_key
from channels.tokens import ClickClaim, InvalidTokenError, TokenSigner, UnsubscribeClaim
from flows.settings import Settings
from models.campaigns import load_catalog
from web.api import api_router
from web.clicks import record_click, with_utm
from web.forms import MAX_FORM_BYTES, BodyError, parse_form, read_body
from web.pages import SECURITY_HEADERS, render
from web.postmark import WebhookPayloadError, handle_postmark
from web.preferences import ACTIONS, Action, apply_choices, customer_exists, read_preferences, unsubscribe
from web.shopify import SIGNATURE_HEADER, TOPIC_HEADER, ShopifyPayloadError, handle_shopify, signature_matches

MAX_WEBHOOK_BYTES = 10 * 1024 * 1024  # a bounce's "Content" may carry the whole bounced message
WEBHOOK_USER = "postmark"
NOTICES = {
    "unsubscribed": "Done: you're unsubscribed from all marketing email.",
    "resubscribed": "Welcome back: you're subscribed again.",
    "saved": "Saved: your choices are updated.",
}
DONE = {"unsubscribe_all": "unsubscribed", "resubscribe": "resubscribed", "topics": "saved"}
_TOKEN_PATH = re.compile(r"/([uc]|v1/customers)/[^/?#]+")  # tokens, and the pull API's customer ids

log = logging.getLogger("omnicast.web")
Clock = Callable[[], datetime]


def create_app(settings: Settings, engine: Engine, *, clock: Clock | None = None) -> FastAPI:
    """The app for ``settings`` on a migrated ``engine``; ``ChannelConfigError`` (a configuration error) when
    ``OMNICAST_SECRET_KEY`` is unset: it must be the key the emails' links were signed with. The campaign files
    (``OMNICAST_CAMPAIGNS_DIR``) are read once, for the preference centre's topics: restart it after editing them."""
    answers = _Answers(settings, engine, TokenSigner(signing_key(settings)), clock or (lambda: datetime.now(UTC)))
    app = FastAPI(title="omnicast", docs_url=None, redoc_url=None, openapi_url=None)
    router = answers.router()
    app.include_router(router)
    api = api_router(settings, engine, answers.clock)  # GET /v1/customers/{external_id}/… (web/api.py)
    app.include_router(api)
    prefix = urlsplit(settings.links_url).path.rstrip("/")
    if prefix:
        app.include_router(router, prefix=prefix)
        app.include_router(api, prefix=prefix)
    app.add_middleware(_Guard)
    return app


class _Answers:
    """The handlers, with what they share: settings, database, token signer, clock."""

    def __init__(self, settings: Settings, engine: Engine, signer: TokenSigner, clock: Clock) -> None:
        self.settings = settings
        self.engine = engine
        self.signer = signer
        self.clock = clock
        self.campaigns = load_catalog(settings.campaigns_dir).campaigns  # the preference centre's topics, read once
        self.page = {
            "store_name": settings.store_name,
            "store_address": settings.store_address,
            "store_url": settings.public_url,
        }

    def router(self) -> APIRouter:
        router = APIRouter()
        router.add_api_route("/healthz", self.health, methods=["GET", "HEAD"])
        router.add_api_route("/u/{token}", self.one_click, methods=["POST"])
        router.add_api_route("/u/{token}", self.preference_page, methods=["GET", "HEAD"])
        router.add_api_route("/u/{token}/preferences", self.save_preferences, methods=["POST"])
        router.add_api_route("/c/{token}", self.click, methods=["GET", "HEAD"])
        router.add_api_route("/webhooks/postmark", self.postmark, methods=["POST"])
        router.add_api_route("/webhooks/shopify", self.shopify, methods=["POST"])
        return router

    # --- health ------------------------------------------------------------------------------------------------

    async def health(self) -> Response:
        try:
            await run_in_threadpool(self._ping)
        except Exception as exc:  # any database trouble: unhealthy, not a crash
            log.warning("healthz: database unavailable (%s)", type(exc).__name__)
            return JSONResponse({"status": "database unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    def _ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    # --- unsubscribe -------------------------------------------------------------------------------------------

    async def one_click(self, token: str, request: Request) -> Response:
        """RFC 8058: ``List-Unsubscribe=One-Click`` in a form body → the opt-out, 200, no redirect."""
        claim = self._unsubscribe_claim(token)
        if claim is None:
            return _text("This unsubscribe link is not valid.", 404)
        try:
            fields = parse_form(request.headers.get("content-type"), await read_body(request, MAX_FORM_BYTES))
        except BodyError as exc:
            return _text(str(exc), exc.status)
        if not any(name == "List-Unsubscribe" and value.strip().lower() == "one-click" for name, value in fields):
            return _text("expected the form field List-Unsubscribe=One-Click (RFC 8058)", 400)
        exists, _ = await run_in_threadpool(self._customer, claim.customer_id)
        if not exists:
            return _text("This unsubscribe link is no longer valid.", 404)
        await run_in_threadpool(unsubscribe, self.engine, claim.customer_id, claim.channel, self.clock())
        return _text(f"You're unsubscribed: {self.settings.store_name} will send no more marketing email here.", 200)

    async def preference_page(self, token: str, done: str | None = None) -> Response:
        """The confirmation page and preference centre. Reading it changes nothing (link scanners prefetch it)."""
        claim = self._unsubscribe_claim(token)
        if claim is None:
            return self._notice("This link is not valid", "Please use the unsubscribe link from a recent email.", 404)
        prefs = await run_in_threadpool(self._preferences, claim)
        if prefs is None:
            return self._notice("This link is no longer valid", "We have no email address on file for it.", 404)
        if prefs.erased:
            return self._notice("Nothing to manage", "We no longer hold any details for this address.", 200)
        html = render(
            "preferences.html", **self.page, prefs=prefs, notice=NOTICES.get(done or ""),
            action_url=f"{token}/preferences",  # relative to .../u/{token}: right with or without a path prefix
        )  # fmt: skip
        return HTMLResponse(html, headers=SECURITY_HEADERS)

    async def save_preferences(self, token: str, request: Request) -> Response:
        """The page's form → consent statements → back to the page (303) with a confirmation."""
        claim = self._unsubscribe_claim(token)
        if claim is None:
            return self._notice("This link is not valid", "Please use the unsubscribe link from a recent email.", 404)
        try:
            fields = parse_form(request.headers.get("content-type"), await read_body(request, MAX_FORM_BYTES))
        except BodyError as exc:
            return self._notice("That did not work", str(exc), exc.status)
        actions = [value for name, value in fields if name == "action"]
        if len(actions) != 1 or actions[0] not in ACTIONS:
            return self._notice("That did not work", "The form was incomplete; please go back and try again.", 400)
        action: Action = actions[0]  # type: ignore[assignment]  # checked against ACTIONS just above
        exists, erased = await run_in_threadpool(self._customer, claim.customer_id)
        if not exists:
            return self._notice("This link is no longer valid", "We have no email address on file for it.", 404)
        if erased:
            return self._notice("Nothing to manage", "We no longer hold any details for this address.", 200)
        chosen = {value for name, value in fields if name == "topic"}
        await run_in_threadpool(
            apply_choices, self.engine, claim.customer_id, claim.channel, action, chosen, self.clock(), self.campaigns
        )
        # Relative to .../u/{token}/preferences, so right behind a proxy that keeps or strips the path prefix.
        return RedirectResponse(f"../{token}?done={DONE[action]}", status_code=303, headers=SECURITY_HEADERS)

    def _unsubscribe_claim(self, token: str) -> UnsubscribeClaim | None:
        try:
            return self.signer.verify(token)
        except InvalidTokenError:
            return None

    def _customer(self, customer_id: int) -> tuple[bool, bool]:
        with self.engine.connect() as conn:
            return customer_exists(conn, customer_id)

    def _preferences(self, claim: UnsubscribeClaim) -> Any:
        with self.engine.connect() as conn:
            return read_preferences(conn, claim.customer_id, claim.channel, self.campaigns)

    def _notice(self, title: str, message: str, status: int) -> Response:
        html = render("notice.html", **self.page, title=title, message=message)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    # --- clicks ------------------------------------------------------------------------------------------------

    async def click(self, token: str, request: Request) -> Response:
        """Record the click (a GET; a HEAD is a link checker, not a person) and redirect to the target."""
        try:
            claim: ClickClaim = self.signer.verify_click(token)
        except InvalidTokenError:
            return self._notice("This link is not valid", "It may have been cut short; try the link again.", 404)
        if not claim.url.lower().startswith(("http://", "https://")):  # we never sign anything else; still refuse
            return self._notice("This link is not valid", "It does not lead to a web page.", 404)
        if request.method == "GET":
            await run_in_threadpool(record_click, self.engine, claim, self.clock())
        target = with_utm(claim.url, claim.campaign, claim.variant, medium=claim.channel)
        return RedirectResponse(target, status_code=302, headers={"Cache-Control": "no-store",
                                                                  "Referrer-Policy": "no-referrer"})  # fmt: skip

    # --- webhooks ----------------------------------------------------------------------------------------------

    async def postmark(self, request: Request) -> Response:
        secret = self.settings.postmark_webhook_token
        password = secret.get_secret_value() if secret is not None else ""
        if not password:
            return JSONResponse(
                {"error": "Postmark webhooks are off: set OMNICAST_POSTMARK_WEBHOOK_TOKEN and give Postmark the URL "
                          "https://postmark:<that token>@<this host>/webhooks/postmark"},
                status_code=503,
            )  # fmt: skip
        if not _basic_auth(request.headers.get("authorization"), WEBHOOK_USER, password):
            return JSONResponse(
                {"error": "wrong or missing credentials (HTTP basic auth, user 'postmark')"},
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="omnicast webhooks", charset="UTF-8"'},
            )
        try:
            event = json.loads(await read_body(request, MAX_WEBHOOK_BYTES))
        except BodyError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        except (UnicodeDecodeError, ValueError):
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        if not isinstance(event, dict):
            return JSONResponse({"error": "the body is not a JSON object (one Postmark event)"}, status_code=400)
        try:
            outcome = await run_in_threadpool(handle_postmark, self.engine, event, self.clock())
        except WebhookPayloadError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(outcome.as_dict())


    async def shopify(self, request: Request) -> Response:
        """Shopify's signed webhooks (``web/shopify.py``): 503 while no secret is set, 401 for a bad signature."""
        secret = self.settings.shopify_webhook_secret
        key = secret.get_secret_value() if secret is not None else ""
        if not key:
            return JSONResponse(
                {"error": "Shopify webhooks are off: set OMNICAST_SHOPIFY_WEBHOOK_SECRET to the app's client secret"},
                status_code=503,
            )
        try:
            body = await read_body(request, MAX_WEBHOOK_BYTES)
        except BodyError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        if not signature_matches(body, request.headers.get(SIGNATURE_HEADER), key):
            return JSONResponse({"error": "the X-Shopify-Hmac-Sha256 signature does not match the body"},
                                status_code=401)  # fmt: skip
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, ValueError):
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        if not isinstance(payload, dict):
            return JSONResponse({"error": "the body is not a JSON object"}, status_code=400)
        topic = (request.headers.get(TOPIC_HEADER) or "").strip()
        try:
            outcome = await run_in_threadpool(handle_shopify, self.engine, topic, payload, self.clock())
        except ShopifyPayloadError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(outcome.as_dict())


def _basic_auth(header: str | None, user: str, password: str) -> bool:
    """Whether ``header`` is ``Basic base64(user:password)`` for exactly these credentials (constant time)."""
    if not header or header[:6].lower() != "basic ":
        return False
    try:
        given = base64.b64decode(header[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    name, colon, secret = given.partition(b":")
    same_user = hmac.compare_digest(name, user.encode("utf-8"))
    same_password = hmac.compare_digest(secret, password.encode("utf-8"))
    return bool(colon) and same_user and same_password


def _text(message: str, status: int) -> Response:
    return PlainTextResponse(message + "\n", status_code=status, headers={"Cache-Control": "no-store"})


def redact_path(path: str) -> str:
    """A request path as it may be logged: tokens replaced by ``…``."""
    return _TOKEN_PATH.sub(lambda match: f"/{match.group(1)}/…", path)


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _Guard:
    """Outermost of our middleware: one access-log line per request without tokens, and an unexpected exception
    logged by type only (its text may quote an address or SQL parameters) and answered 500."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 500
        responded = False

        async def watch(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
            await send(message)

        path = redact_path(scope.get("path", ""))
        try:
            await self.app(scope, receive, watch)
        except Exception as exc:  # a bug: logged without its text, answered 500 (uvicorn would print the text)
            log.error("%s %s failed with %s (details withheld: they may hold personal data)",
                      scope.get("method"), path, type(exc).__name__)  # fmt: skip
            if not responded:
                await PlainTextResponse("internal error\n", status_code=500)(scope, receive, send)
                status = 500
        finally:
            log.info("%s %s %d %.0fms", scope.get("method"), path, status, (time.monotonic() - started) * 1000)
