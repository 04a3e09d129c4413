"""Tracked links: every web link of an email goes through /c/TOKEN, and every target comes back out of its token."""

from __future__ import annotations

import html
import re
from urllib.parse import urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st

from channels.links import click_url, own_links, track_links
from channels.render import EmailRenderer
from channels.tokens import ClickClaim, TokenSigner
from tests.channels.conftest import message, planner_context

LINKS = "https://mail.beanandleaf.example/m"
SIGNER = TokenSigner("a-long-random-secret")
MESSAGE = message(302, variant="B")
UNSUBSCRIBE = f"{LINKS}/u/{SIGNER.sign(302, 'email')}"


def tracked(url: str) -> str:
    return click_url(LINKS, SIGNER, MESSAGE, url)


def targets(html_part: str, text_part: str) -> tuple[list[str], list[str]]:
    """The targets behind every tracked link of both parts (in order)."""
    hrefs = [html.unescape(h) for h in re.findall(r'href="([^"]*)"', html_part, re.IGNORECASE)]
    found_html = [SIGNER.verify_click(h.rsplit("/", 1)[1]).url for h in hrefs if h.startswith(f"{LINKS}/c/")]
    found_text = [
        SIGNER.verify_click(t).url for t in re.findall(re.escape(f"{LINKS}/c/") + r"([A-Za-z0-9_-]+)", text_part)
    ]
    return found_html, found_text


def test_click_url_holds_the_message_and_the_target() -> None:
    url = tracked("https://beanandleaf.example/p?a=1&b=2")
    assert url.startswith(f"{LINKS}/c/")
    assert SIGNER.verify_click(url.removeprefix(f"{LINKS}/c/")) == ClickClaim(
        customer_id=302, occurrence_key="weekly:2026-48", channel="email", campaign="weekly-picks", variant="B",
        url="https://beanandleaf.example/p?a=1&b=2",
    )  # fmt: skip
    assert click_url(LINKS + "/", SIGNER, MESSAGE, "https://x.example/") == tracked("https://x.example/")


def test_an_over_long_target_stays_untracked() -> None:
    target = "https://x.example/" + "a" * 3000
    assert tracked(target) == target


def test_a_rendered_email_has_every_link_tracked_but_unsubscribe_and_images() -> None:
    rendered = EmailRenderer().render("weekly_picks", {**planner_context(), "unsubscribe_url": UNSUBSCRIBE})
    html_part, text_part = track_links(rendered.html, rendered.text, tracked, skip=own_links(LINKS))
    before = [html.unescape(h) for h in re.findall(r'<a\b[^>]*href="([^"]*)"', rendered.html)]
    after = [html.unescape(h) for h in re.findall(r'<a\b[^>]*href="([^"]*)"', html_part)]
    assert len(before) == len(after) == 13
    assert [a for a in after if not a.startswith(f"{LINKS}/c/")] == [UNSUBSCRIBE]
    found_html, found_text = targets(html_part, text_part)
    assert found_html == [b for b in before if b != UNSUBSCRIBE]
    assert sorted(set(found_text)) == sorted({b for b in before if b != UNSUBSCRIBE})
    assert UNSUBSCRIBE in html_part and UNSUBSCRIBE in text_part
    assert re.findall(r'<img\b[^>]*src="([^"]*)"', html_part) == re.findall(r'<img\b[^>]*src="([^"]*)"', rendered.html)
    assert "&amp;utm_medium" not in html_part  # the template's escaped query went into the token, decoded


def test_non_web_links_and_text_around_urls_stay_as_they_are() -> None:
    page = (
        '<a href="mailto:hello@x.example">mail</a> <a href="tel:+15035550100">call</a> <a href="#top">top</a> '
        '<a href="/relative">rel</a> <a name="anchor">n</a> <a data-href="https://x.example/a">d</a> '
        "<A HREF='https://x.example/b?x=1&amp;y=2' class=c>B</A> <a href=https://x.example/c>C</a> "
        '<link href="https://x.example/style.css"> <img src="https://x.example/i.png">'
    )
    text = (
        "See https://x.example/d. Or (https://x.example/e) and https://x.example/f_(g), mailto:a@x.example ftp://x.y/"
    )
    html_part, text_part = track_links(page, text, tracked, skip=own_links(LINKS))
    for untouched in ('href="mailto:hello@x.example"', 'href="tel:+15035550100"', 'href="#top"', 'href="/relative"',
                      '<a name="anchor">', 'data-href="https://x.example/a"', '<link href="https://x.example/style.css">',
                      '<img src="https://x.example/i.png">'):  # fmt: skip
        assert untouched in html_part
    found_html, found_text = targets(html_part, text_part)
    assert found_html == ["https://x.example/b?x=1&y=2", "https://x.example/c"]
    assert found_text == ["https://x.example/d", "https://x.example/e", "https://x.example/f_(g)"]
    assert text_part.startswith("See " + tracked("https://x.example/d") + ". Or (")
    assert "mailto:a@x.example ftp://x.y/" in text_part


def test_links_already_ours_are_skipped() -> None:
    mine = tracked("https://x.example/")
    html_part, text_part = track_links(f'<a href="{mine}">x</a>', mine, tracked, skip=own_links(LINKS))
    assert (html_part, text_part) == (f'<a href="{mine}">x</a>', mine)


def test_each_distinct_target_is_signed_once() -> None:
    calls: list[str] = []

    def make(url: str) -> str:
        calls.append(url)
        return tracked(url)

    page = '<a href="https://x.example/a">1</a><a href="https://x.example/a">2</a>'
    track_links(page, "https://x.example/a https://x.example/b", make, skip=lambda _: False)
    assert calls == ["https://x.example/a", "https://x.example/b"]


_HOST = st.from_regex(r"[a-z][a-z0-9-]{0,10}\.(example|test)", fullmatch=True)
_PATH = st.text(alphabet="abcXYZ019-._~/%+,;=:@!$'()*", max_size=20)
_QUERY = st.lists(st.tuples(st.text("abcxyz_", min_size=1, max_size=5), st.text("abc123-._~%+", max_size=6)),
                  max_size=3)  # fmt: skip
_WEB = st.builds(
    lambda scheme, host, path, query: f"{scheme}://{host}/{path}" + ("?" + "&".join(f"{k}={v}" for k, v in query)
                                                                    if query else ""),
    st.sampled_from(["http", "https", "HTTPS"]), _HOST, _PATH, _QUERY,
)  # fmt: skip
_OTHER = st.sampled_from(
    ["mailto:a@x.example", "tel:+123", "#frag", "/relative/x", "ftp://x.example/f", "javascript:0"]
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), _WEB, _OTHER), min_size=1, max_size=6))
def test_every_target_is_recoverable_from_its_token(links: list[tuple[bool, str, str]]) -> None:
    """Property: whatever the URLs, each tracked link decodes to its original target; other links are untouched."""
    pieces = []
    web_targets = []
    for web, url, other in links:
        target = url if web else other
        pieces.append(f'<p><a class="x" href="{html.escape(target, quote=True)}">link</a></p>')
        if web:
            web_targets.append(url)
    page = "\n".join(pieces)
    text = " \n".join(target if web else other for web, target, other in links)
    html_part, text_part = track_links(page, text, tracked, skip=own_links(LINKS))
    found_html, found_text = targets(html_part, text_part)
    assert found_html == web_targets
    for web, _, other in links:
        if not web:
            assert f'href="{html.escape(other, quote=True)}"' in html_part
    # In running text a URL ends before closing punctuation or a quote; the rest of the text stays.
    for target, url in zip(found_text, [u for w, u, _ in links if w], strict=True):
        assert url.startswith(target) and set(url[len(target) :]) <= set(".,;:!?)'")
    assert all(urlsplit(h).scheme == "https" for h in re.findall(r'href="([^"]*/c/[^"]*)"', html_part))
