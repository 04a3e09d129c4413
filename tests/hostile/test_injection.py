"""Injected customer data, every field × every channel: nothing a customer types can change what a message is.

Each case puts one hostile payload in one customer-controlled field and sends one message through one real channel
(plain function calls into the embedded sinks, no Prefect, no database), then reads back what the sink wrote:

* email (``EmailChannel`` + ``EmlOutboxTransport``): exactly the headers of ``channels.email.HEADERS``, once each,
  ``To`` the recipient's address, multipart/alternative with text/plain then text/html, CRLF only, no line over 998
  octets, a subject without control characters; in the HTML no ``href``/``src`` other than absolute http(s), no
  ``on…`` attribute, no ``<script>``;
* in-app (``InAppFeedChannel``): one JSON line, a card with exactly the schema's keys that validates, links absolute
  http(s) or null, text without control characters;
* meta and google (``AudienceFileChannel``): the header row then one row of exactly the header's columns, each cell a
  SHA-256 hex digest or empty, and the plaintext nowhere in the file.

And everywhere: Jinja in data is text (``{{ 7*7 }}`` stays literal, ``49`` never appears), and every message is
delivered: hostile text is neutralized, not a reason to drop a customer's message.
"""

from __future__ import annotations

import base64
import csv
import email
import email.policy
import io
import json
import re
from datetime import UTC, date, datetime
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.ads import GOOGLE_COLUMNS, META_COLUMNS, AudienceFileChannel, google_row, meta_row
from channels.base import Channel
from channels.email import HEADERS, EmailChannel
from channels.inapp import InAppFeedChannel, card_errors
from channels.outbox import EmlOutboxTransport
from channels.render import CardRenderer, EmailRenderer
from channels.tokens import UnsubscribeSigner
from models.message import OutboundMessage, Recipient

NOW = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
TEMPLATES = ["weekly_picks", "birthday", "replenishment", "winback", "abandoned_cart"]
STORE = {"name": "Bean & Leaf Coffee", "url": "https://beanandleaf.example", "address": "12 Roastery Lane, Portland"}
EMAIL_RENDERER = EmailRenderer()
CARD_RENDERER = CardRenderer()
SIGNER = UnsubscribeSigner("hostile-suite-secret")

PAYLOADS: dict[str, str] = {
    "crlf-bcc": "Ann\r\nBcc: evil@attacker.example",
    "crlf-encoded-q": "=?utf-8?q?X=0D=0ABcc:_evil@attacker.example?=",
    "crlf-encoded-b": "=?utf-8?b?" + base64.b64encode(b"X\r\nBcc: evil@attacker.example").decode() + "?=",
    "blank-line-body": "Ann =?utf-8?q?Y=0D=0A=0D=0A<h1>Phish</h1>?=",
    "double-encoded": "=?utf-8?q?=3D=3Futf-8=3Fq=3FX=3D0D=3D0ABcc:_evil@attacker.example=3F=3D?=",
    "bare-lf": "Ann\nBcc: evil@attacker.example",
    "bare-cr": "Ann\rBcc: evil@attacker.example",
    "nul": "Ann\x00Bcc: evil@attacker.example",
    "c0-controls": "".join(map(chr, range(32))) + "Ann\x7f",
    "c1-controls": "Ann\x85Bcc: evil@attacker.example\x9b31m\x9f",
    "line-separators": "Ann\u2028Bcc: evil@attacker.example\u2029",
    "bidi-override": "Ann \u202egnp.exe\u202c \u2066evil\u2069 \u200f",
    "zero-width": "\u200bA\u200cn\u200dn\ufeff\u2060",
    "javascript-url": "javascript:alert(document.cookie)",
    "javascript-obfuscated": " JaVa\tScRiPt:alert(1)",
    "data-url": "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "vbscript-url": "vbscript:msgbox(1)",
    "protocol-relative-url": "//evil.example/x.png",
    "userinfo-url": "https://beanandleaf.example@evil.example/x",
    "html-script": '<script>alert("x")</script><img src=x onerror=alert(1)>',
    "attribute-breakout": '"\'><svg onload=alert(1)> x="',
    "url-attribute-breakout": 'https://cdn.example/x.png" onerror="alert(1)',
    "jinja-expression": "{{ 7*7 }}",
    "jinja-statement": "{% for i in range(7) %}{{ i*7 }}{% endfor %}",
    "jinja-internals": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "very-long": "Ann" * 20_000,
    "very-long-words": "Ann Bcc " * 5_000,
    "unicode-idn": "Zoë Ünïcødé 日本語 🙂 👩\u200d👩\u200d👧 bücher.example",
    "sql": "Robert'); DROP TABLE customers;--",
    "address-list": "evil@attacker.example, other@attacker.example",
    "lone-surrogate": "Ann\ud800",
}
FIELDS = ["first_name", "last_name", "city", "region", "zip", "product_title", "tags", "explanation", "image_url",
          "product_url"]  # fmt: skip
CHANNELS = ["email", "inapp", "meta", "google"]
DISPLAYED = {"first_name", "product_title", "explanation"}  # fields the email and card templates show
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200b\u200e\u200f\u2028-\u202e\u2060-\u2069\ufeff\ud800-\udfff]")
HEX = re.compile(r"[0-9a-f]{64}")
URL_ATTRIBUTES = {"href", "src", "srcset", "action", "formaction", "background", "poster", "cite", "data", "xlink:href"}


def hostile_message(channel: str, field: str, payload: str, template: str) -> OutboundMessage:
    """A planner-shaped message for customer 7 with ``payload`` in ``field`` (everything else ordinary)."""
    person: dict[str, Any] = {"first_name": "Ann", "last_name": "Lee", "city": "Portland", "region": "OR",
                              "zip": "97201"}  # fmt: skip
    if field in person:
        person[field] = payload
    products = [
        {
            "sku": f"BL-{i:03d}",
            "title": f"Ethiopia Yirgacheffe Lot {i}",
            "url": f"https://beanandleaf.example/products/yirgacheffe-{i}",
            "image_url": f"https://cdn.beanandleaf.example/products/yirgacheffe-{i}.jpg",
            "price": 18.5 + i,
            "explanation": "Because you bought Kenya AA Nyeri",
            "tags": ["coffee", "single-origin"],
        }
        for i in range(3)
    ]
    trigger: dict[str, Any] = {"kind": template, "days_since_order": 34}
    customer: dict[str, Any] = {**person, "tags": ["vip"]}
    for product in products:
        if field == "product_title":
            product["title"] = payload
        elif field == "explanation":
            product["explanation"] = payload
        elif field == "image_url":
            product["image_url"] = payload
        elif field == "product_url":
            product["url"] = payload
        elif field == "tags":
            product["tags"] = [payload, "coffee"]
    if field == "product_title":
        trigger["product_title"] = payload
    elif field == "product_url":
        trigger["cart_url"] = payload
    elif field == "tags":
        customer["tags"] = [payload]
    return OutboundMessage(
        occurrence_key=f"hostile:{template}",
        channel=channel,
        recipient=Recipient(
            customer_id=7,
            email="c7@example.com",
            phone="+15035550100",
            country="US",
            birthday=date(1990, 5, 17),
            **person,
        ),  # fmt: skip
        campaign="hostile-suite",
        template=template,
        audience="hostile-suite",
        context={"store": dict(STORE), "customer": customer, "products": products, "trigger": trigger},
    )


def make_channel(channel: str, folder: Path) -> Channel:
    if channel == "email":
        return EmailChannel(
            EmlOutboxTransport(folder),
            EMAIL_RENDERER,
            sender="Bean & Leaf Coffee <hello@beanandleaf.example>",
            public_url="https://beanandleaf.example",
            unsubscribe_mailto="unsubscribe@beanandleaf.example",
            signer=SIGNER,
            clock=lambda: NOW,
        )
    if channel == "inapp":
        return InAppFeedChannel(folder, CARD_RENDERER, clock=lambda: NOW)
    return AudienceFileChannel("meta" if channel == "meta" else "google", folder, clock=lambda: NOW)


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.extend((tag, name, value or "") for name, value in attrs)


def check_email(sink: EmailChannel, folder: Path, provider_id: str, field: str, payload: str, template: str) -> None:
    raw = (folder / provider_id).read_bytes()
    assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert raw.split(b"\r\n\r\n", 1)[0].isascii()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed.keys() == list(HEADERS) and parsed.defects == []
    assert [str(address) for address in parsed["To"].addresses] == ["c7@example.com"]
    assert parsed.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in parsed.iter_parts()] == ["text/plain", "text/html"]
    subject = str(parsed["Subject"])
    assert not CONTROL.search(subject) and "=?" not in subject and len(subject) <= 250
    text_part, html_part = (str(part.get_content()) for part in parsed.iter_parts())
    page = _Page()
    page.feed(html_part)
    links = [value for _, name, value in page.attributes if name in URL_ATTRIBUTES]
    assert all(re.match(r"https?://[^/?#@\s\\]", link) for link in links), links
    assert not [name for _, name, _ in page.attributes if name.startswith("on")]
    assert "script" not in page.tags and "svg" not in page.tags and "iframe" not in page.tags
    assert not re.search(r"url\(\s*['\"]?\s*(java|vb)script:", html_part, re.IGNORECASE)  # CSS url()
    assert not CONTROL.search(text_part.replace("\r\n", "").replace("\n", ""))
    if "{{" in payload or "{%" in payload:
        check_jinja_inert(
            field, payload, subject + text_part + html_part, text_part, ordinary_email(sink, field, template)
        )


def ordinary_email(sink: EmailChannel, field: str, template: str) -> str:
    """Subject, text and HTML of the same message with an ordinary value, to compare the hostile one with."""
    raw = sink.build(hostile_message("email", field, "Ann", template))
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    return str(parsed["Subject"]) + "".join(str(part.get_content()) for part in parsed.iter_parts())


def check_card(folder: Path, field: str, payload: str) -> None:
    feed = (folder / f"{NOW:%Y%m%d}.jsonl").read_bytes()
    assert feed.count(b"\n") == 1 and feed.endswith(b"\n")
    assert "\u2028".encode() not in feed and "\u2029".encode() not in feed
    card = json.loads(feed)
    assert card_errors(card, now=NOW) == []
    assert set(card) == {"id", "type", "title", "body", "image_url", "web_uri", "ios_uri", "android_uri", "button",
                         "items", "created_at", "expires_at", "campaign", "variant", "customer_id", "user_id",
                         "dismissible", "pinned", "extras"}  # fmt: skip
    assert [set(item) for item in card["items"]] == [{"sku", "title", "explanation", "url", "image_url", "price"}] * 3
    for item in card["items"]:
        assert re.match(r"https?://[^/?#@\s\\]", item["url"])
        assert item["image_url"] is None or re.match(r"https?://[^/?#@\s\\]", item["image_url"])
    assert card["customer_id"] == 7 and card["campaign"] == "hostile-suite"
    for key in ("image_url", "web_uri", "ios_uri", "android_uri"):
        assert card[key] is None or re.match(r"https?://[^/?#@\s\\]", card[key])
    texts = [card["title"], card["body"], card["button"],
             *(value for item in card["items"] for value in item.values() if isinstance(value, str))]  # fmt: skip
    assert not any(CONTROL.search(text) for text in texts)
    check_jinja_inert(field, payload, " ".join(texts), None, "")


def check_audience(folder: Path, provider_id: str, platform: str, payload: str) -> None:
    assert [path.name for path in folder.glob("*.csv")] == [provider_id]
    content = (folder / provider_id).read_bytes()
    rows = list(csv.reader(io.StringIO(content.decode("utf-8"))))
    columns = list(META_COLUMNS if platform == "meta" else GOOGLE_COLUMNS)
    assert rows[0] == columns and len(rows) == 2
    assert len(rows[1]) == len(columns)
    plain_cells = {"Country": r"[A-Z]{2}", "Zip": r"[0-9A-Z -]{1,12}"} if platform == "google" else {}
    for column, cell in zip(columns, rows[1], strict=True):  # Google's template: Country and Zip are not hashed
        assert cell == "" or re.fullmatch(plain_cells.get(column, HEX.pattern), cell), (column, cell)
    assert rows[1][0] and rows[1][1]  # still matched on email and phone
    assert content.count(b"\n") == 2
    plain = payload.strip()
    if len(plain) > 3 and not HEX.fullmatch(plain):
        assert plain.encode("utf-8", "replace") not in content


def check_jinja_inert(field: str, payload: str, everything: str, shown: str | None, ordinary: str) -> None:
    """Jinja in customer data is never evaluated: no ``49`` beyond the ordinary message's (a token may hold one),
    and, where the field is shown, the expression itself stays literal."""
    if "{{" not in payload and "{%" not in payload:
        return
    assert everything.count("49") == ordinary.count("49")
    assert "__subclasses__()" not in everything or "{{ ''.__class__" in everything
    if shown is not None and field in DISPLAYED and payload == "{{ 7*7 }}":
        assert "{{ 7*7 }}" in shown


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("payload_id", list(PAYLOADS))
def test_injected_customer_data_never_changes_what_a_message_is(
    tmp_path: Path, channel: str, field: str, payload_id: str
) -> None:
    payload = PAYLOADS[payload_id]
    template = TEMPLATES[list(PAYLOADS).index(payload_id) % len(TEMPLATES)]
    sink = make_channel(channel, tmp_path)
    result = sink.send(hostile_message(channel, field, payload, template))
    sink.close()

    assert result.status == "sent", result.error
    assert result.provider_id
    if channel == "email":
        assert isinstance(sink, EmailChannel)
        check_email(sink, tmp_path, result.provider_id, field, payload, template)
    elif channel == "inapp":
        check_card(tmp_path, field, payload)
    else:
        check_audience(tmp_path, result.provider_id, channel, payload)


any_text = st.one_of(
    st.none(),
    st.text(alphabet=st.characters(exclude_categories=()), max_size=80),
    st.lists(st.sampled_from(list(PAYLOADS.values())[:25]), max_size=3).map("".join),
)


@settings(max_examples=300, deadline=None)
@given(
    email_=any_text, phone=any_text, first_name=any_text, last_name=any_text, city=any_text, region=any_text,
    country=any_text, zip_=any_text, birthday=st.one_of(st.none(), st.dates()),
)  # fmt: skip
def test_audience_rows_hold_only_hashes_whatever_the_recipient(
    email_: str | None, phone: str | None, first_name: str | None, last_name: str | None, city: str | None,
    region: str | None, country: str | None, zip_: str | None, birthday: date | None,
) -> None:  # fmt: skip
    """Any text in any field of a recipient: a Meta or Google row is exactly its columns, each a hash or empty."""
    message = OutboundMessage(
        "hostile:audience", "meta", Recipient(7, email_, phone, first_name, last_name, city, region, country, zip_,
                                              birthday), "hostile-suite", audience="hostile-suite",
    )  # fmt: skip
    for row, columns in ((meta_row(message), META_COLUMNS), (google_row(message), GOOGLE_COLUMNS)):
        assert len(row) == len(columns)
        plain_cells = {"Country": r"[A-Z]{2}", "Zip": r"[0-9A-Z -]{1,12}"} if columns == GOOGLE_COLUMNS else {}
        for column, cell in zip(columns, row, strict=True):
            assert cell == "" or re.fullmatch(plain_cells.get(column, HEX.pattern), cell), (column, cell)
