"""`omnicast serve`: one-click unsubscribe, the preference centre, tracked links, Postmark webhooks, hostile tokens."""

from __future__ import annotations

import base64
import logging
import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine

from channels.links import click_url
from channels.tokens import ClickClaim, TokenSigner
from models.campaigns import SHIPPED_DIR
from models.consent import consent_states
from models.schema import Click, Consent, Message, Suppression, WebhookEvent
from models.suppression import is_suppressed
from tests.channels.conftest import LONG_AGO, add_customers, message
from tests.web.conftest import HOOK_PASSWORD, SERVE_URL, SIGNER, Clock, live_server, make_settings
from web.app import create_app, redact_path

ONE_CLICK = {"List-Unsubscribe": "One-Click"}
AUTH = ("postmark", HOOK_PASSWORD)
TABLES = (Consent, Click, Suppression, WebhookEvent, Message)


def t(model: Any) -> Any:
    return model.__table__


def count(engine: Engine, model: Any, *where: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t(model)).where(*where)).scalar_one())


def state(engine: Engine, customer_id: int, channel: str = "email") -> str | None:
    with engine.connect() as conn:
        return consent_states(conn, [customer_id], channel).get(customer_id)


def snapshot(engine: Engine) -> list[list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return [sorted(map(tuple, conn.execute(select(t(model))).all()), key=repr) for model in TABLES]


def crm_statement(engine: Engine, customer_id: int, state: str, recorded_at: Any) -> None:
    """What a later CRM import writes (``models.sync``): its own statement, dated when the CRM recorded it."""
    with engine.begin() as conn:
        conn.execute(
            insert(t(Consent)).values(
                customer_id=customer_id, channel="email", state=state, source="crm", recorded_at=recorded_at
            )
        )


# --- one-click unsubscribe (RFC 8058) ---------------------------------------------------------------------------


def test_one_click_post_through_a_real_server_unsubscribes_and_an_older_import_does_not_undo_it(
    engine: Engine, clock: Clock
) -> None:
    add_customers(engine, [1, 2, 3])
    app = create_app(make_settings(), engine, clock=clock)
    token = SIGNER.sign(1, "email")
    with live_server(app) as base, httpx.Client(base_url=base, follow_redirects=False) as http:
        answer = http.post(f"/m/u/{token}", data=ONE_CLICK)  # the List-Unsubscribe URL: under OMNICAST_SERVE_URL
        assert answer.status_code == 200 and "location" not in answer.headers
        assert answer.headers["content-type"].startswith("text/plain")
        assert "unsubscribed" in answer.text and len(answer.text) < 200
        assert state(engine, 1) == "denied" and state(engine, 2) == "granted"

        # A CRM re-export that still says "subscribed", recorded before the click, does not win.
        crm_statement(engine, 1, "granted", clock.now - timedelta(minutes=5))
        assert state(engine, 1) == "denied"

        # Safe twice, and multipart/form-data (as some providers send it) works the same.
        clock.now += timedelta(hours=1)
        again = http.post(f"/u/{token}", files={"List-Unsubscribe": (None, "One-Click")})
        assert again.status_code == 200
        assert count(engine, Consent, t(Consent).c.customer_id == 1, t(Consent).c.source == "unsubscribe") == 1

        # Customer 3's one-click makes the next campaign's consent gate skip them.
        assert http.post(f"/u/{SIGNER.sign(3, 'email')}", content=b"List-Unsubscribe=One-Click").status_code == 200
    with engine.connect() as conn:
        assert consent_states(conn, [1, 2, 3], "email") == {1: "denied", 2: "granted", 3: "denied"}


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"", "application/x-www-form-urlencoded", 400),
        (b"List-Unsubscribe=Yes", "application/x-www-form-urlencoded", 400),
        (b"unsubscribe=One-Click", "application/x-www-form-urlencoded", 400),
        (b'{"List-Unsubscribe": "One-Click"}', "application/json", 415),
        (b"List-Unsubscribe=One-Click", "multipart/form-data", 400),  # no boundary
        (b"\xff\xfe=\xff", "application/x-www-form-urlencoded", 400),
        (b"a=" + b"x" * 20_000, "application/x-www-form-urlencoded", 413),
    ],
)
def test_one_click_without_the_rfc_8058_body_changes_nothing(
    sqlite_engine: Engine, body: bytes, content_type: str, status: int
) -> None:
    add_customers(sqlite_engine, [1])
    client = TestClient(create_app(make_settings(), sqlite_engine))
    before = snapshot(sqlite_engine)
    answer = client.post(f"/u/{SIGNER.sign(1, 'email')}", content=body, headers={"content-type": content_type})
    assert answer.status_code == status
    assert snapshot(sqlite_engine) == before


# --- the page and the preference centre -------------------------------------------------------------------------


def test_the_page_only_shows_a_form_and_changes_nothing(engine: Engine, client: TestClient) -> None:
    """Mail scanners fetch every link: GET must never unsubscribe."""
    add_customers(engine, [1])
    token = SIGNER.sign(1, "email")
    before = snapshot(engine)
    for path in (f"/u/{token}", f"/m/u/{token}"):
        page = client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert client.head(path).status_code == 200
    assert snapshot(engine) == before
    html = page.text
    assert "Bean &amp; Leaf Coffee" in html and "<script" not in html and "http" not in html.split("<body>")[0]
    assert f'action="{token}/preferences"' in html and 'value="unsubscribe_all"' in html
    for topic in ("weekly-picks", "birthday", "replenishment", "winback", "abandoned-cart"):
        assert f'value="{topic}" checked' in html
    assert page.headers["referrer-policy"] == "no-referrer" and page.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in page.headers["content-security-policy"]


def test_preference_centre_unsubscribe_topics_and_resubscribe(engine: Engine, client: TestClient, clock: Clock) -> None:
    add_customers(engine, [1])
    token = SIGNER.sign(1, "email")
    form = f"/m/u/{token}/preferences"

    answer = client.post(form, data={"action": "unsubscribe_all"}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == f"../{token}?done=unsubscribed"
    assert state(engine, 1) == "denied"
    page = client.get(f"/m/u/{token}?done=unsubscribed").text
    assert "You're unsubscribed" in page and 'value="resubscribe"' in page

    # Re-subscribing at the very same instant still wins: the customer's newest answer is dated after the opt-out.
    chosen = {"action": "resubscribe", "topic": ["weekly-picks", "birthday", "not-a-topic"]}
    answer = client.post(form, data=chosen, follow_redirects=False)
    assert answer.headers["location"] == f"../{token}?done=resubscribed"
    assert state(engine, 1) == "granted"
    assert state(engine, 1, "email:weekly-picks") is None and state(engine, 1, "email:birthday") is None
    for topic in ("replenishment", "winback", "abandoned-cart"):
        assert state(engine, 1, f"email:{topic}") == "denied"
    assert count(engine, Consent, t(Consent).c.channel == "email:not-a-topic") == 0
    page = client.get(f"/u/{token}?done=resubscribed").text
    assert "Welcome back" in page and 'value="weekly-picks" checked' in page and 'value="winback">' in page

    clock.now += timedelta(minutes=1)
    client.post(form, data={"action": "topics", "topic": ["weekly-picks", "winback"]})
    assert state(engine, 1, "email:birthday") == "denied" and state(engine, 1, "email:winback") == "granted"
    assert state(engine, 1) == "granted"

    # A later one-click is newer than the re-subscription: out again.
    clock.now += timedelta(minutes=1)
    assert client.post(f"/u/{token}", data=ONE_CLICK).status_code == 200
    assert state(engine, 1) == "denied"


def test_the_preference_centre_lists_the_stores_campaigns_as_their_files_name_them(
    sqlite_engine: Engine, clock: Clock, tmp_path: Path
) -> None:
    folder = tmp_path / "campaigns"
    shutil.copytree(SHIPPED_DIR, folder)
    (folder / "birthday.yaml").unlink()  # this store sends no birthday emails
    picks = (folder / "weekly-picks.yaml").read_text().replace("name: weekly-picks", "name: fruity-fans")
    picks = picks.replace("label: Weekly picks", "label: Fruity finds").replace(
        "A few products picked for you, once a week.", "Bright, fruity coffees when new ones land."
    )
    (folder / "fruity-fans.yaml").write_text(picks)
    add_customers(sqlite_engine, [1])
    client = TestClient(create_app(make_settings(campaigns_dir=folder), sqlite_engine, clock=clock))
    token = SIGNER.sign(1, "email")

    page = client.get(f"/u/{token}").text
    assert "Fruity finds" in page and "Bright, fruity coffees when new ones land." in page
    assert "Weekly picks" in page and "Birthday treat" not in page and "Cart reminders" in page
    client.post(f"/u/{token}/preferences", data={"action": "topics", "topic": ["weekly-picks"]})
    assert state(sqlite_engine, 1, "email:fruity-fans") == "denied"
    assert state(sqlite_engine, 1, "email:birthday") is None  # not offered by this store: nothing recorded


def test_a_resubscription_beats_an_opt_out_dated_ahead_of_the_clock(sqlite_engine: Engine, clock: Clock) -> None:
    add_customers(sqlite_engine, [1])
    client = TestClient(create_app(make_settings(), sqlite_engine, clock=clock))
    crm_statement(sqlite_engine, 1, "denied", clock.now + timedelta(days=2))  # a CRM row from a skewed clock
    client.post(f"/u/{SIGNER.sign(1, 'email')}/preferences", data={"action": "resubscribe"})
    assert state(sqlite_engine, 1) == "granted"


@pytest.mark.parametrize("data", [{}, {"action": "delete_everything"}, {"action": ["topics", "resubscribe"]}])
def test_an_incomplete_preference_form_changes_nothing(sqlite_engine: Engine, data: dict[str, Any]) -> None:
    add_customers(sqlite_engine, [1])
    client = TestClient(create_app(make_settings(), sqlite_engine))
    before = snapshot(sqlite_engine)
    assert client.post(f"/u/{SIGNER.sign(1, 'email')}/preferences", data=data).status_code == 400
    assert snapshot(sqlite_engine) == before


def test_unknown_and_erased_customers(sqlite_engine: Engine) -> None:
    from models.erasure import forget

    add_customers(sqlite_engine, [1])
    client = TestClient(create_app(make_settings(), sqlite_engine))
    unknown = SIGNER.sign(999, "email")
    assert client.get(f"/u/{unknown}").status_code == 404
    assert client.post(f"/u/{unknown}", data=ONE_CLICK).status_code == 404
    forget(sqlite_engine, "c1@example.com")
    page = client.get(f"/u/{SIGNER.sign(1, 'email')}")
    assert page.status_code == 200 and "no longer hold any details" in page.text and "<form" not in page.text
    assert client.post(f"/u/{SIGNER.sign(1, 'email')}/preferences", data={"action": "resubscribe"}).status_code == 200
    assert state(sqlite_engine, 1) == "denied"


# --- tracked links ----------------------------------------------------------------------------------------------


def test_a_click_is_recorded_and_redirected_with_utm(engine: Engine, client: TestClient) -> None:
    add_customers(engine, [5])
    sent = message(5, occurrence="weekly-picks:2026-W49", variant="B")
    with engine.begin() as conn:
        message_id = conn.execute(
            insert(t(Message)).values(
                occurrence_key=sent.occurrence_key, customer_id=5, channel="email", campaign="weekly-picks",
                variant="B", state="sent", attempts=1, created_at=LONG_AGO, updated_at=LONG_AGO,
            ).returning(t(Message).c.id)
        ).scalar_one()  # fmt: skip
    target = "https://beanandleaf.example/products/kenya?utm_source=email&utm_medium=crm&ref=a%20b&utm_term=x#notes"
    url = click_url(SERVE_URL, SIGNER, sent, target)
    path = urlsplit(url).path

    assert client.head(path, follow_redirects=False).status_code == 302  # a link checker: no click
    assert count(engine, Click) == 0
    answer = client.get(path, follow_redirects=False)
    assert answer.status_code == 302
    location = urlsplit(answer.headers["location"])
    assert (location.scheme, location.netloc, location.path, location.fragment) == (
        "https", "beanandleaf.example", "/products/kenya", "notes",
    )  # fmt: skip
    assert location.query == "ref=a%20b&utm_term=x&utm_source=omnicast&utm_medium=email&utm_campaign=weekly-picks" \
        "&utm_content=B"  # fmt: skip
    assert dict(parse_qsl(location.query))["utm_source"] == "omnicast"
    with engine.connect() as conn:
        (row,) = conn.execute(select(t(Click))).all()
    assert (row.message_id, row.customer_id, row.campaign, row.variant, row.url) == (
        message_id, 5, "weekly-picks", "B", "https://beanandleaf.example/products/kenya?ref=a%20b&utm_term=x#notes",
    )  # fmt: skip  (the page clicked, without the tags we put on it)

    # The same link again is another click; a link of a message the ledger does not know still works.
    assert client.get(path.replace("/m/", "/"), follow_redirects=False).status_code == 302
    stray = click_url(SERVE_URL, SIGNER, message(5, occurrence="other:1"), "https://beanandleaf.example/")
    answer = client.get(urlsplit(stray).path, follow_redirects=False)
    assert answer.headers["location"] == (
        "https://beanandleaf.example/?utm_source=omnicast&utm_medium=email&utm_campaign=weekly-picks"
    )
    assert count(engine, Click) == 3 and count(engine, Click, t(Click).c.message_id.is_(None)) == 1


# --- Postmark webhooks ------------------------------------------------------------------------------------------


def bounce(event_id: int, kind: str, email: str, *, inactive: bool, record: str = "Bounce") -> dict[str, Any]:
    """A bounce as Postmark's bounce webhook posts it (postmarkapp.com/developer/webhooks/bounce-webhook)."""
    return {
        "RecordType": record, "MessageStream": "outbound", "ID": event_id, "Type": kind, "TypeCode": 1,
        "Name": "Hard bounce", "Tag": "weekly-picks", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Metadata": {}, "ServerID": 23, "Description": "The server was unable to deliver your message.",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.", "Email": email,
        "From": "hello@beanandleaf.example", "BouncedAt": "2026-12-03T10:00:00.000Z", "DumpAvailable": True,
        "Inactive": inactive, "CanActivate": True, "Subject": "Your weekly picks", "Content": "<dump>",
    }  # fmt: skip


def complaint(event_id: int, email: str) -> dict[str, Any]:
    """Postmark's spam-complaint webhook (postmarkapp.com/developer/webhooks/spam-complaint-webhook)."""
    return {**bounce(event_id, "SpamComplaint", email, inactive=True, record="SpamComplaint"), "TypeCode": 512,
            "Name": "Spam complaint", "CanActivate": False}  # fmt: skip


def test_webhook_credentials(sqlite_engine: Engine, make_client: Callable[..., TestClient]) -> None:
    client = TestClient(create_app(make_settings(), sqlite_engine))
    event = bounce(1, "HardBounce", "c1@example.com", inactive=True)
    missing = client.post("/webhooks/postmark", json=event)
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Basic")
    for auth in (("postmark", "wrong"), ("admin", HOOK_PASSWORD), ("postmark", HOOK_PASSWORD + "x")):
        assert client.post("/webhooks/postmark", json=event, auth=auth).status_code == 401
    raw = "Basic " + base64.b64encode(f"postmark{HOOK_PASSWORD}".encode()).decode()
    assert client.post("/webhooks/postmark", json=event, headers={"authorization": raw}).status_code == 401
    assert client.post("/webhooks/postmark", json=event, headers={"authorization": "Bearer x"}).status_code == 401
    off = TestClient(create_app(make_settings(postmark_webhook_token=None), sqlite_engine))
    refused = off.post("/webhooks/postmark", json=event, auth=AUTH)
    assert refused.status_code == 503 and "OMNICAST_POSTMARK_WEBHOOK_TOKEN" in refused.json()["error"]
    assert count(sqlite_engine, Suppression) == count(sqlite_engine, WebhookEvent) == 0


def test_bounces_and_complaints_feed_the_suppression_list(
    engine: Engine, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    add_customers(engine, [1, 2, 3, 4])
    caplog.set_level(logging.DEBUG)
    post = lambda event: client.post("/m/webhooks/postmark", json=event, auth=AUTH)  # noqa: E731

    assert post(bounce(101, "HardBounce", "C1@Example.com", inactive=True)).json() == {
        "status": "suppressed", "kind": "HardBounce",
    }  # fmt: skip
    assert post(bounce(102, "Transient", "c2@example.com", inactive=False)).json()["status"] == "acknowledged"
    assert post(bounce(103, "SoftBounce", "c2@example.com", inactive=False)).json()["status"] == "acknowledged"
    assert post(bounce(104, "BadEmailAddress", "c4@example.com", inactive=True)).json()["status"] == "suppressed"
    assert post(complaint(105, "c3@example.com")).json() == {"status": "suppressed", "kind": "SpamComplaint"}
    assert post(bounce(106, "HardBounce", "stranger@example.net", inactive=True)).json()["status"] == "suppressed"
    assert post({"RecordType": "Delivery", "MessageID": "x", "Recipient": "c2@example.com"}).json() == {
        "status": "ignored", "kind": "Delivery",
    }  # fmt: skip

    with engine.connect() as conn:
        assert is_suppressed(conn, "email", "c1@example.com") == "hard_bounce"
        assert is_suppressed(conn, "email", "c2@example.com") is None
        assert is_suppressed(conn, "email", "c3@example.com") == "spam_complaint"
        assert is_suppressed(conn, "email", "c4@example.com") == "hard_bounce"
        assert is_suppressed(conn, "email", "stranger@example.net") == "hard_bounce"
        rows = conn.execute(select(t(Suppression).c.customer_id, t(Suppression).c.detail, t(Suppression).c.source)
                            .order_by(t(Suppression).c.id)).all()  # fmt: skip
        assert [tuple(r) for r in rows] == [
            (1, "HardBounce", "postmark"), (4, "BadEmailAddress", "postmark"), (3, "SpamComplaint", "postmark"),
            (None, "HardBounce", "postmark"),
        ]  # fmt: skip
        assert consent_states(conn, [1, 2, 3], "email") == {1: "granted", 2: "granted", 3: "denied"}

    # Postmark retries: a replay answers "duplicate" and adds nothing.
    before = snapshot(engine)
    assert post(bounce(101, "HardBounce", "c1@example.com", inactive=True)).json()["status"] == "duplicate"
    assert post(complaint(105, "c3@example.com")).json()["status"] == "duplicate"
    assert snapshot(engine) == before
    assert count(engine, WebhookEvent) == 6

    logged = caplog.text.lower()
    assert "hardbounce" in logged and "example.com" not in logged and "example.net" not in logged


def test_subscription_change_webhook(engine: Engine, client: TestClient) -> None:
    """Broadcast streams report suppressions as subscription changes (no ID: when + whom + what identify one)."""
    add_customers(engine, [1, 2, 3])
    change = {"RecordType": "SubscriptionChange", "MessageID": "883953f4", "ServerID": 123456,
              "MessageStream": "broadcast", "ChangedAt": "2026-12-03T10:53:34.416071Z", "Recipient": "c1@example.com",
              "Origin": "Recipient", "SuppressSending": True, "SuppressionReason": "HardBounce", "Tag": None,
              "Metadata": {}}  # fmt: skip
    post = lambda event: client.post("/webhooks/postmark", json=event, auth=AUTH).json()  # noqa: E731
    assert post(change) == {"status": "suppressed", "kind": "HardBounce"}
    assert post(change)["status"] == "duplicate"
    assert post({**change, "Recipient": "c2@example.com", "SuppressionReason": "ManualSuppression"})["status"] == (
        "opted_out"
    )
    assert post({**change, "Recipient": "c3@example.com", "SuppressSending": False, "SuppressionReason": None}) == {
        "status": "acknowledged", "kind": "Reactivation",
    }  # fmt: skip
    with engine.connect() as conn:
        assert is_suppressed(conn, "email", "c1@example.com") == "hard_bounce"
        assert is_suppressed(conn, "email", "c2@example.com") is None
        assert consent_states(conn, [2, 3], "email") == {2: "denied", 3: "granted"}
        ids = conn.execute(select(t(WebhookEvent).c.event_id)).scalars().all()
    assert all("example.com" not in i for i in ids)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"RecordType": "Bounce", "Type": "HardBounce", "Email": "c1@example.com"}', "ID"),
        (b'{"RecordType": "Bounce", "ID": 5, "Type": "HardBounce", "Email": "nobody"}', "Email"),
        (b'{"RecordType": "Bounce", "ID": true, "Type": "HardBounce", "Email": "c1@example.com"}', "ID"),
        (b'{"RecordType": "SubscriptionChange", "Recipient": "c1@example.com"}', "ChangedAt"),
    ],
)
def test_a_malformed_webhook_is_refused(sqlite_engine: Engine, body: bytes, why: str) -> None:
    client = TestClient(create_app(make_settings(), sqlite_engine))
    answer = client.post("/webhooks/postmark", content=body, auth=AUTH, headers={"content-type": "application/json"})
    assert answer.status_code == 400 and why in answer.json()["error"]
    assert "c1@example.com" not in answer.text
    assert count(sqlite_engine, WebhookEvent) == count(sqlite_engine, Suppression) == 0


# --- hostile tokens, paths, logs --------------------------------------------------------------------------------


def forged_tokens() -> list[tuple[str, str]]:
    """(route kind, token) pairs that must all be refused."""
    good_unsubscribe = SIGNER.sign(1, "email")
    claim = ClickClaim(1, "weekly-picks:2026-W49", "email", "weekly-picks", "A", "https://evil.example/")
    good_click = SIGNER.sign_click(claim)
    other = TokenSigner("another-install-secret")
    altered = good_unsubscribe[:10] + ("A" if good_unsubscribe[10] != "A" else "B") + good_unsubscribe[11:]
    return [
        ("u", other.sign(1, "email")),  # another key
        ("u", altered),
        ("u", good_unsubscribe + "A"),
        ("u", good_click),  # wrong purpose
        ("u", "WzEsImVtYWlsIl0.forged-signature"),  # legacy format, bad signature
        ("u", "%00%0d%0a"),
        ("c", other.sign_click(claim)),
        ("c", good_unsubscribe),  # wrong purpose
        ("c", good_click[:-2]),
        ("c", "x" * 5000),
    ]


def test_forged_altered_or_foreign_tokens_change_nothing(engine: Engine, client: TestClient) -> None:
    add_customers(engine, [1])
    before = snapshot(engine)
    for kind, token in forged_tokens():
        if kind == "u":
            answers = [client.get(f"/u/{token}"), client.post(f"/u/{token}", data=ONE_CLICK),
                       client.post(f"/u/{token}/preferences", data={"action": "unsubscribe_all"})]  # fmt: skip
        else:
            answers = [client.get(f"/c/{token}", follow_redirects=False)]
        for answer in answers:
            assert answer.status_code in (400, 404), (kind, token[:20], answer.status_code)
            assert "location" not in answer.headers
    assert snapshot(engine) == before
    assert state(engine, 1) == "granted"


def test_routes_live_under_the_serve_url_path_too(sqlite_engine: Engine) -> None:
    client = TestClient(create_app(make_settings(), sqlite_engine))
    assert client.get("/healthz").json() == client.get("/m/healthz").json() == {"status": "ok"}
    assert client.get("/other/healthz").status_code == 404
    plain = TestClient(create_app(make_settings(serve_url="https://mail.beanandleaf.example"), sqlite_engine))
    assert plain.get("/healthz").status_code == 200 and plain.get("/m/healthz").status_code == 404


def test_logs_hold_no_tokens_and_errors_no_details(
    sqlite_engine: Engine, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_customers(sqlite_engine, [1])
    caplog.set_level(logging.INFO, logger="omnicast.web")
    client = TestClient(create_app(make_settings(), sqlite_engine), raise_server_exceptions=False)
    token = SIGNER.sign(1, "email")
    client.get(f"/m/u/{token}")
    client.post(f"/u/{token}", data=ONE_CLICK)
    assert token not in caplog.text and "GET /m/u/… 200" in caplog.text and "POST /u/… 200" in caplog.text
    assert redact_path("/m/c/abc/def") == "/m/c/…/def"

    def explode(*_: Any) -> None:
        raise RuntimeError("c1@example.com in [parameters: ...]")

    monkeypatch.setattr("web.app.record_click", explode)
    claim = ClickClaim(1, "o", "email", "weekly-picks", None, "https://beanandleaf.example/")
    answer = client.get(f"/c/{SIGNER.sign_click(claim)}", follow_redirects=False)
    assert answer.status_code == 500 and "c1@example.com" not in answer.text
    assert "RuntimeError" in caplog.text and "c1@example.com" not in caplog.text


def test_the_app_needs_the_secret_key(sqlite_engine: Engine) -> None:
    from models.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="OMNICAST_SECRET_KEY"):
        create_app(make_settings(secret_key=None), sqlite_engine)


def test_the_email_channel_rewrites_links_so_the_app_can_read_them(sqlite_engine: Engine) -> None:
    """The tokens channels.links makes are the ones /c/ accepts (whatever the lead wires into email.py)."""
    add_customers(sqlite_engine, [1])
    client = TestClient(create_app(make_settings(), sqlite_engine))
    url = click_url(SERVE_URL, SIGNER, message(1), "https://beanandleaf.example/")
    assert url.startswith(SERVE_URL + "/c/")
    assert client.get(urlsplit(url).path, follow_redirects=False).status_code == 302
    assert count(sqlite_engine, Click) == 1
