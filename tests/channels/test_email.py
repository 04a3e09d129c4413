"""The email channel: complete RFC 5322 messages in the outbox, one file per ledger key, DKIM when configured, and
no customer data that can add, change or break a header.

Through-dispatch tests use SQLite only: the ledger itself is tested on both databases in test_dispatch.py.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import re
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from channels.base import ChannelConfigError, RetryableChannelError
from channels.dispatch import dispatch
from channels.email import HEADERS, DkimKey, EmailChannel, _quoted_printable, needs_smtputf8
from channels.headers import mailbox
from channels.outbox import EmlOutboxTransport, ledger_hash
from channels.render import EmailRenderer
from channels.tokens import UnsubscribeSigner
from models.consent import record_unsubscribe
from models.message import OutboundMessage, Recipient
from tests.channels.conftest import add_customers, message

SENDER = "Bean & Leaf Coffee <hello@beanandleaf.example>"
SIGNER = UnsubscribeSigner("test-secret")
NOW = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
TEMPLATES = ["weekly_picks", "birthday", "replenishment", "winback", "abandoned_cart"]
BCC_NAME = "=?utf-8?q?X=0D=0ABcc:_evil@attacker.example?="
PHISH_NAME = "Ann =?utf-8?q?Y=0D=0A=0D=0A<h1>Phish</h1>?="


def email_channel(folder: Path, **options: Any) -> EmailChannel:
    return EmailChannel(
        EmlOutboxTransport(folder),
        EmailRenderer(),
        sender=options.pop("sender", SENDER),
        public_url=options.pop("public_url", "https://beanandleaf.example/"),
        unsubscribe_mailto=options.pop("unsubscribe_mailto", "mailto:unsubscribe@beanandleaf.example"),
        signer=SIGNER,
        clock=lambda: NOW,
        **options,
    )


def parse(raw: bytes) -> EmailMessage:
    """The message as a mail reader sees it (a UTF-8 header, RFC 6532, is read as UTF-8)."""
    if needs_smtputf8(raw):
        parsed = email.message_from_string(raw.decode("utf-8"), policy=email.policy.default)
    else:
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def body(parsed: EmailMessage, kind: str) -> str:
    part = parsed.get_body((kind,))
    assert part is not None
    return str(part.get_content())


def assert_well_formed(raw: bytes, to: str, *, signed: bool = False) -> EmailMessage:
    """The invariant of every message: exactly our headers, once each; To is the recipient; two parts; CRLF; ≤ 998."""
    assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    parsed = parse(raw)
    assert parsed.keys() == (["DKIM-Signature"] if signed else []) + list(HEADERS)
    assert [str(address) for address in parsed["To"].addresses] == [to]
    assert parsed.get_content_type() == "multipart/alternative" and parsed.defects == []
    assert [part.get_content_type() for part in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert all(part.keys() == ["Content-Type", "Content-Transfer-Encoding"] for part in parsed.iter_parts())
    assert all(part["Content-Transfer-Encoding"] == "quoted-printable" for part in parsed.iter_parts())
    assert not re.search(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]", str(parsed["Subject"]))
    return parsed


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    return tmp_path / "outbox" / "email"


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_eml_is_a_complete_wire_ready_message(outbox: Path, template: str) -> None:
    channel = email_channel(outbox)
    result = channel.send(message(7, template=template))
    assert result.status == "sent", result.error
    raw = (outbox / str(result.provider_id)).read_bytes()

    parsed = assert_well_formed(raw, "c7@example.com")
    assert parsed["Date"].datetime == NOW
    assert not needs_smtputf8(raw)


def test_list_unsubscribe_headers_follow_rfc_8058(outbox: Path) -> None:
    result = email_channel(outbox).send(message(7))
    parsed = parse((outbox / str(result.provider_id)).read_bytes())

    uris = [uri.strip().strip("<>") for uri in parsed["List-Unsubscribe"].split(",")]
    https, mailto = uris
    assert https.startswith("https://beanandleaf.example/u/")
    assert mailto.startswith("mailto:unsubscribe@beanandleaf.example?subject=unsubscribe-")
    token = https.rsplit("/", 1)[1]
    assert mailto.endswith(token)
    assert SIGNER.verify(token).customer_id == 7
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "=?" not in str(parsed["List-Unsubscribe"])  # never RFC 2047-encoded
    assert f'href="{https}"' in body(parsed, "html")  # the visible link is the same one-click URL


def test_retry_builds_the_same_bytes_for_the_same_file(outbox: Path) -> None:
    channel = email_channel(outbox)
    first = channel.send(message(7))
    second = channel.send(message(7))

    assert first.provider_id == second.provider_id == f"{ledger_hash(message(7).ledger_key)}.eml"
    assert [p.name for p in outbox.iterdir()] == [first.provider_id]
    assert channel.build(message(7)) == channel.build(message(7)) == email_channel(outbox).build(message(7))
    message_id = parse(channel.build(message(7)))["Message-ID"]
    assert message_id == f"<{ledger_hash(message(7).ledger_key)}@beanandleaf.example>"
    assert parse(channel.build(message(7, occurrence="weekly:2026-49")))["Message-ID"] != message_id


def test_non_ascii_subject_and_body_survive_the_round_trip(outbox: Path) -> None:
    msg = message(7, template="birthday")
    msg.context["customer"]["first_name"] = "Zoë"
    msg.context["products"][0]["title"] = "Café de Olla – Edición Especial"
    raw = email_channel(outbox).build(msg)
    parsed = assert_well_formed(raw, "c7@example.com")
    assert parsed["Subject"] == "Happy birthday, Zoë! From all of us at Bean & Leaf Coffee"
    assert raw.split(b"\r\n\r\n")[0].isascii()  # RFC 2047 encoded-words, not raw UTF-8
    assert "Café de Olla – Edición Especial" in body(parsed, "plain")
    assert "Café de Olla – Edición Especial" in body(parsed, "html")


@pytest.mark.parametrize(
    "subject_name",
    ["日本語のお客様", "Ζωή " * 30, "x" * 300, "Ann" + "\u0301" * 5, "🙂👩\u200d👩\u200d👧 Zoë"],
    ids=["cjk", "long-greek", "long-word", "combining", "emoji"],
)
def test_long_and_non_latin_subjects_fold_into_valid_lines(outbox: Path, subject_name: str) -> None:
    msg = message(7)
    msg.context["customer"]["first_name"] = subject_name
    raw = email_channel(outbox).build(msg)
    parsed = assert_well_formed(raw, "c7@example.com")
    head = raw.split(b"\r\n\r\n")[0]
    subject_lines = re.search(rb"Subject:.*?\r\n(?=\S)", head, re.DOTALL)
    assert subject_lines is not None
    assert all(len(line) <= 76 for line in subject_lines.group(0).split(b"\r\n") if b"=?" in line)
    assert str(parsed["Subject"]).endswith("your coffee picks for this week") or len(parsed["Subject"]) == 250


def test_html_part_decodes_to_exactly_what_was_rendered(outbox: Path) -> None:
    channel = email_channel(outbox)
    msg = message(7)
    token = SIGNER.sign(7, "email")
    rendered = EmailRenderer().render("weekly_picks", {**msg.context, "unsubscribe_url": f"https://x/u/{token}"})
    parsed = parse(channel.compose(msg, mailbox("c7@example.com"), rendered, token))
    assert body(parsed, "html").replace("\r\n", "\n") == rendered.html
    assert body(parsed, "plain").replace("\r\n", "\n") == rendered.text


def test_written_message_reads_like_one_the_standard_library_builds(outbox: Path) -> None:
    """Hand-written bytes, same meaning: every header value and both bodies equal what ``email`` would produce."""
    channel = email_channel(outbox)
    msg = message(7, template="birthday")
    msg.context["customer"]["first_name"] = "Zoë"
    ours = parse(channel.build(msg))
    stock = EmailMessage(policy=email.policy.SMTP)
    for name in HEADERS[:-2]:
        stock[name] = str(ours[name])
    stock.set_content(body(ours, "plain"))
    stock.add_alternative(body(ours, "html"), subtype="html")
    theirs = parse(stock.as_bytes())
    assert [" ".join(str(ours[name]).split()) for name in HEADERS[:-1]] == [
        " ".join(str(theirs[name]).split()) for name in HEADERS[:-1]
    ]  # the stock folder spaces List-Unsubscribe differently
    assert body(ours, "plain") == body(theirs, "plain")
    assert body(ours, "html") == body(theirs, "html").removesuffix("\r\n")  # set_content adds a final newline


@settings(max_examples=300)
@given(st.lists(st.sampled_from(["", " ", ".", "=", "a" * 80, "é" * 30, "\t", "x ", "\r\n", "\n", "\r", "From x",
                                 "<p style=\"a:b\">Hi</p>", "\x0c", "\u2028"]), max_size=40).map("".join))  # fmt: skip
@example("a" * 168 + "é" * 60 + "x \r\n")  # trailing space at the soft-break column, found by hypothesis
@example("a\x0cb" * 30 + "\n")  # a form feed is no line break to quoted-printable
def test_cached_quoted_printable_is_exactly_binascii(body: str) -> None:
    """Encoding line by line through the cache gives the very bytes of encoding the whole body at once."""
    whole = binascii.b2a_qp(body.replace("\r\n", "\n").replace("\r", "\n").encode(), istext=True)
    for _ in range(2):  # cold, then from the cache
        assert _quoted_printable(body) == whole.replace(b"\n", b"\r\n")


# header injection (issue 5, defect 1) --------------------------------------------------------------------------


def test_encoded_crlf_in_a_first_name_never_adds_a_bcc(outbox: Path) -> None:
    msg = message(7)
    msg.context["customer"]["first_name"] = BCC_NAME
    raw = email_channel(outbox).build(msg)

    parsed = assert_well_formed(raw, "c7@example.com")
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert "Bcc" not in parsed and b"\r\nBcc:" not in head
    assert parsed["Subject"] == "X Bcc: evil@attacker.example, your coffee picks for this week"


def test_encoded_blank_line_in_a_first_name_never_replaces_the_body(outbox: Path) -> None:
    msg = message(7)
    msg.context["customer"]["first_name"] = PHISH_NAME
    raw = email_channel(outbox).build(msg)

    parsed = assert_well_formed(raw, "c7@example.com")
    assert parsed["Subject"] == "Ann Y <h1>Phish</h1>, your coffee picks for this week"
    assert "<h1>Phish</h1>" not in body(parsed, "html")  # escaped in the body, as any name
    assert "&lt;h1&gt;Phish&lt;/h1&gt;" in body(parsed, "html")


@pytest.mark.parametrize(
    "product_title",
    ["Kenya\r\nBcc: evil@attacker.example", "=?utf-8?b?DQpCY2M6IGV2aWxAYXR0YWNrZXIuZXhhbXBsZQ==?=", "A\nB\rC\x00D"],
    ids=["raw-crlf", "base64-encoded-crlf", "bare-lf-cr-nul"],
)
def test_a_product_title_in_the_subject_never_adds_a_header(outbox: Path, product_title: str) -> None:
    msg = message(7, template="replenishment")
    msg.context["products"][0]["title"] = product_title
    raw = email_channel(outbox).build(msg)
    parsed = assert_well_formed(raw, "c7@example.com")
    assert parsed["Subject"].startswith("Running low on ")


HOSTILE_FRAGMENTS = [
    "=?utf-8?q?", "=?utf-8?b?", "?=", "=0D=0A", "=0A", "=0D", "\r\n", "\n", "\r", "\x00", "\x85", "\u2028", "\u202e",
    "Bcc: evil@attacker.example", "DQpCY2M6IGV2aWxAYS5leGFtcGxl", "<h1>Phish</h1>", "{{ 7*7 }}", "=", "?", " ", "é",
    "日本", "\t", '"', "\\", ":", "\udcff", "\ufeff",
]  # fmt: skip
hostile_text = st.one_of(
    st.text(alphabet=st.characters(exclude_categories=()), max_size=120),
    st.lists(st.sampled_from(HOSTILE_FRAGMENTS), max_size=12).map("".join),
    st.lists(st.one_of(st.sampled_from(HOSTILE_FRAGMENTS), st.text(max_size=5)), max_size=20).map("".join),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    template=st.sampled_from(TEMPLATES),
    field=st.sampled_from(["first_name", "last_name", "title", "explanation", "tags", "product_title", "sku", "city"]),
    text=hostile_text,
)
def test_no_customer_text_changes_the_headers(outbox: Path, template: str, field: str, text: str) -> None:
    """For ANY text in any customer field, the message has exactly our headers, once each, and the right To."""
    msg = message(7, template=template)
    context = msg.context
    if field == "first_name":
        context["customer"]["first_name"] = text
    elif field in ("last_name", "city"):
        msg = OutboundMessage(
            msg.occurrence_key, msg.channel, Recipient(7, "c7@example.com", first_name=text, **{field: text}),
            msg.campaign, msg.template, context={k: v for k, v in context.items() if k != "customer"},
        )  # fmt: skip
    elif field == "tags":
        context["customer"]["tags"] = [text, text]
        context["products"][0]["tags"] = text
    elif field == "product_title":
        context["trigger"]["product_title"] = text
    else:
        for product in context["products"]:
            product[field] = text
    raw = email_channel(outbox).build(msg)
    parsed = assert_well_formed(raw, "c7@example.com")
    assert "49" not in str(parsed["Subject"]) or "49" in text


def test_signed_message_with_hostile_name_keeps_exactly_its_headers(outbox: Path) -> None:
    pytest.importorskip("dkim")
    key, _ = rsa_key()
    channel = email_channel(outbox, dkim=DkimKey("mail2026", "beanandleaf.example", key))
    for name in (BCC_NAME, PHISH_NAME, "Zoë\r\n\r\nbody"):
        msg = message(7)
        msg.context["customer"]["first_name"] = name
        assert_well_formed(channel.build(msg), "c7@example.com", signed=True)


# addresses (issue 5, defect 9) -----------------------------------------------------------------------------------


def test_internationalized_domain_is_written_in_idna(outbox: Path) -> None:
    raw = email_channel(outbox).build(message(7, email="anna@bücher.example"))
    assert_well_formed(raw, "anna@xn--bcher-kva.example")
    assert b"\r\nTo: anna@xn--bcher-kva.example\r\n" in raw
    assert not needs_smtputf8(raw)


def test_non_ascii_local_part_makes_a_utf8_header_that_asks_for_smtputf8(outbox: Path) -> None:
    channel = email_channel(outbox)
    result = channel.send(message(7, email="jörg@bücher.example"))
    raw = (outbox / str(result.provider_id)).read_bytes()

    assert needs_smtputf8(raw)
    assert "\r\nTo: jörg@xn--bcher-kva.example\r\n".encode() in raw
    parsed = assert_well_formed(raw, "jörg@xn--bcher-kva.example")
    assert raw.split(b"\r\n\r\n", 1)[1].isascii()  # only the header is UTF-8; the parts stay quoted-printable
    assert parsed["Subject"] == "Ann, your coffee picks for this week"


@pytest.mark.parametrize(
    "address",
    [
        "not an address",
        "c7@example.com\r\nBcc: evil@attacker.example",
        "c7@example.com\nBcc: evil@attacker.example",
        "Evil <c7@example.com>",
        "c7@example.com, evil@attacker.example",
        '"evil\r\nBcc: x"@example.com',
        "c7@localhost",
        "c7@[127.0.0.1]",
        "c7@exa mple.com",
        "c7@-bad-.example",
        "@example.com",
        "c7@",
        "x" * 65 + "@example.com",
        "c7@" + "a" * 64 + ".example",
        "c7\x00@example.com",
        "c7@example.com\u2028",
    ],
)
def test_address_that_cannot_be_made_valid_fails_permanently_without_leaking_it(outbox: Path, address: str) -> None:
    result = email_channel(outbox).send(message(7, email=address))
    assert result.status == "failed" and not result.retryable
    assert "c7" not in str(result.error) and "evil" not in str(result.error) and "example" not in str(result.error)
    assert not outbox.exists() or list(outbox.iterdir()) == []


def test_recipient_without_email_cannot_be_reached(outbox: Path) -> None:
    assert email_channel(outbox).can_reach(message(7, email=None)) == "no_address"
    assert email_channel(outbox).can_reach(message(7)) is None


# unsafe URLs (issue 5, defect 9) ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image_url",
    ["javascript:alert(document.cookie)", " JaVaScRiPt:alert(1)", "java\tscript:alert(1)", "data:image/svg+xml,<svg>",
     "vbscript:msgbox(1)", "//evil.example/x.png", "/images/x.png", "https://user:pw@evil.example/x.png"],
)  # fmt: skip
def test_unsafe_image_url_never_reaches_an_img_and_the_image_is_dropped(outbox: Path, image_url: str) -> None:
    msg = message(7)
    msg.context["products"][0]["image_url"] = image_url
    html = body(parse(email_channel(outbox).build(msg)), "html")
    assert "script:" not in html.lower() and "data:" not in html and "evil.example" not in html
    srcs = re.findall(r'src="([^"]*)"', html)
    assert len(srcs) == 2 and all(src.startswith("https://cdn.beanandleaf.example/") for src in srcs)
    assert 'alt="Ethiopia Yirgacheffe Lot 0"' not in html  # the product is still shown, without an image
    assert '">Ethiopia Yirgacheffe Lot 0</a>' in html


def test_unsafe_product_url_falls_back_to_the_store(outbox: Path) -> None:
    msg = message(7)
    msg.context["products"][0]["url"] = "javascript:alert(1)"
    parsed = parse(email_channel(outbox).build(msg))
    html, text = body(parsed, "html"), body(parsed, "plain")
    assert "javascript" not in html and "javascript" not in text
    hrefs = [untracked(href) for href in re.findall(r'href="([^"]*)"', html)]
    assert all(href.startswith("https://beanandleaf.example") for href in hrefs)
    line = next(line for line in text.splitlines() if line.startswith("Ethiopia Yirgacheffe Lot 0: "))
    assert untracked(line.removeprefix("Ethiopia Yirgacheffe Lot 0: ")) == "https://beanandleaf.example"


def untracked(url: str) -> str:
    """The target of a tracked link (``…/c/TOKEN``); any other URL as it is."""
    base, _, token = url.partition("/c/")
    return SIGNER.verify_click(token).url if token and base == "https://beanandleaf.example" else url


def test_every_web_link_is_tracked_except_the_unsubscribe_link(outbox: Path) -> None:
    parsed = parse(email_channel(outbox).build(message(7)))
    html, text = body(parsed, "html"), body(parsed, "plain")
    links = re.findall(r'href="(https?://[^"]*)"', html) + re.findall(r"https?://\S+", text)
    assert links and all("/c/" in link or "/u/" in link for link in links)
    product = next(untracked(link) for link in links if "/c/" in link and "yirgacheffe-0" in untracked(link))
    assert product.startswith("https://beanandleaf.example/products/yirgacheffe-0")


# configuration -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sender",
    [
        "not a mailbox",
        "a@b.example, c@d.example",
        "Shop <shop@localhost>",
        "Shop <jörg@shop.example>",
        "",
        "=?utf-8?q?Shop=0D=0ABcc:_x@y.example?= <hello@beanandleaf.example>",
        "Shop <hello@beanandleaf.example>\r\nBcc: x@y.example",
    ],
)
def test_bad_sender_is_a_config_error(outbox: Path, sender: str) -> None:
    with pytest.raises(ChannelConfigError, match="OMNICAST_SENDER_ADDRESS"):
        email_channel(outbox, sender=sender)


@pytest.mark.parametrize(
    ("sender", "from_line"),
    [
        ("Bean & Leaf Coffee <hello@beanandleaf.example>", b"From: Bean & Leaf Coffee <hello@beanandleaf.example>"),
        ('"Bean, Leaf" <hello@beanandleaf.example>', b'From: "Bean, Leaf" <hello@beanandleaf.example>'),
        ("hello@beanandleaf.example", b"From: hello@beanandleaf.example"),
        ("Caf\u00e9 <hello@b\u00fccher.example>", b"From: =?utf-8?q?Caf=C3=A9?= <hello@xn--bcher-kva.example>"),
        ("=?utf-8?q?Bean_=E2=80=AE&_Leaf?= <hello@beanandleaf.example>",
         b"From: Bean & Leaf <hello@beanandleaf.example>"),
        ('"Bean\\" Leaf" <hello@beanandleaf.example>', b'From: "Bean\\" Leaf" <hello@beanandleaf.example>'),
    ],
)  # fmt: skip
def test_sender_is_written_from_its_parts(outbox: Path, sender: str, from_line: bytes) -> None:
    raw = email_channel(outbox, sender=sender).build(message(7))
    assert raw.startswith(from_line + b"\r\n")
    assert_well_formed(raw, "c7@example.com")


@pytest.mark.parametrize(
    ("option", "value", "setting"),
    [
        ("public_url", "javascript:alert(1)", "OMNICAST_SERVE_URL"),
        ("public_url", "https://shop.example/\r\nBcc: x@y.example", "OMNICAST_SERVE_URL"),
        ("public_url", "https://shop.example/?a=1", "OMNICAST_SERVE_URL"),
        ("public_url", "https://shop.example/" + "x" * 600, "OMNICAST_SERVE_URL"),
        ("unsubscribe_mailto", "mailto:u@x.example\r\nBcc: x@y.example", "OMNICAST_UNSUBSCRIBE_MAILTO"),
        ("unsubscribe_mailto", "not an address", "OMNICAST_UNSUBSCRIBE_MAILTO"),
    ],
)
def test_unsafe_unsubscribe_setting_is_a_config_error(outbox: Path, option: str, value: str, setting: str) -> None:
    with pytest.raises(ChannelConfigError, match=setting):
        email_channel(outbox, **{option: value})


def test_missing_template_stops_the_run(outbox: Path) -> None:
    with pytest.raises(ChannelConfigError, match="no_such_template"):
        email_channel(outbox).send(message(7, template="no_such_template"))


def test_unwritable_outbox_is_a_retryable_failure(outbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    channel = email_channel(outbox)

    def disk_full(path: Path, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("channels.outbox.atomic_write", disk_full)
    monkeypatch.setattr("channels.outbox.write_new_file", lambda folder, names, data: disk_full(folder, data))
    result = channel.send(message(7))
    assert result.status == "failed" and result.retryable and "No space left" in str(result.error)
    assert RetryableChannelError.__name__ in str(result.error)


# DKIM ----------------------------------------------------------------------------------------------------------------


def rsa_key() -> tuple[bytes, bytes]:
    """A fresh RSA key: the private PEM and the DNS TXT record publishing its public half."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public_der)


def test_dkim_signature_verifies_and_covers_list_unsubscribe(outbox: Path) -> None:
    dkim = pytest.importorskip("dkim")
    private_pem, record = rsa_key()

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == b"mail2026._domainkey.beanandleaf.example." else None

    channel = email_channel(outbox, dkim=DkimKey("mail2026", "beanandleaf.example", private_pem))
    raw = channel.build(message(7))

    assert raw.startswith(b"DKIM-Signature: ")
    assert dkim.verify(raw, dnsfunc=dns)
    signed = parse(raw)["DKIM-Signature"]
    assert "list-unsubscribe" in signed.lower() and "list-unsubscribe-post" in signed.lower()
    assert_well_formed(raw, "c7@example.com", signed=True)
    tampered = raw.replace(b"Subject: Ann", b"Subject: Bob")
    assert not dkim.verify(tampered, dnsfunc=dns)
    utf8 = channel.build(message(7, email="jörg@bücher.example"))
    assert dkim.verify(utf8, dnsfunc=dns)


def test_unusable_dkim_key_stops_the_run(outbox: Path) -> None:
    pytest.importorskip("dkim")
    channel = email_channel(outbox, dkim=DkimKey("s1", "beanandleaf.example", b"not a pem key"))
    with pytest.raises(ChannelConfigError, match="s1._domainkey.beanandleaf.example"):
        channel.send(message(7))


# through dispatch ------------------------------------------------------------------------------------------------


def test_unsubscribed_customer_gets_no_email_file(sqlite_engine: Engine, outbox: Path) -> None:
    add_customers(sqlite_engine, [1, 2])
    record_unsubscribe(sqlite_engine, 2, "email")
    channel = email_channel(outbox)

    report = dispatch(sqlite_engine, [message(1), message(2)], {"email": channel})

    assert report.total_sent == 1
    assert [p.name for p in outbox.iterdir()] == [f"{ledger_hash(message(1).ledger_key)}.eml"]
    assert b"c2@example.com" not in b"".join(p.read_bytes() for p in outbox.iterdir())


def test_rerun_after_a_crash_rewrites_rather_than_duplicates(sqlite_engine: Engine, outbox: Path) -> None:
    add_customers(sqlite_engine, [1])
    channel = email_channel(outbox)
    first: OutboundMessage = message(1)
    channel.send(first)  # delivered, then the worker died before recording it
    dispatch(sqlite_engine, [first], {"email": channel})
    assert len(list(outbox.iterdir())) == 1
