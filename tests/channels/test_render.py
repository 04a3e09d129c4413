"""Templates: every email renders for full and sparse contexts; Jinja is sandboxed, escaped and survives MJML."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import channels.render as render
from channels.render import (
    TEMPLATES_DIR,
    CardRenderer,
    EmailRenderer,
    TemplateError,
    TemplateNotFoundError,
    TemplateRenderError,
    html_to_text_template,
    money,
)
from tests.channels.conftest import planner_context

EMAIL_TEMPLATES = ["abandoned_cart", "birthday", "replenishment", "weekly_picks", "winback"]
UNSUBSCRIBE = "https://beanandleaf.example/u/TOKEN123"


@pytest.fixture
def renderer() -> EmailRenderer:
    return EmailRenderer()


@pytest.fixture
def templates_copy(tmp_path: Path) -> Path:
    """A private copy of the templates folder a test may break."""
    shutil.copytree(TEMPLATES_DIR, tmp_path / "templates")
    return tmp_path / "templates"


def full(**overrides: Any) -> dict[str, Any]:
    return {**planner_context(), "unsubscribe_url": UNSUBSCRIBE, **overrides}


def sparse() -> dict[str, Any]:
    return {**planner_context(first_name=None, products=0), "unsubscribe_url": UNSUBSCRIBE}


def test_the_five_templates_exist(renderer: EmailRenderer) -> None:
    assert renderer.template_names() == EMAIL_TEMPLATES
    assert CardRenderer().template_names() == EMAIL_TEMPLATES


@pytest.mark.parametrize("name", EMAIL_TEMPLATES)
@pytest.mark.parametrize("context", [full, sparse], ids=["full", "sparse"])
def test_every_template_renders_cleanly(renderer: EmailRenderer, name: str, context: Any) -> None:
    email = renderer.render(name, context())
    for part in (email.subject, email.html, email.text):
        assert "None" not in part
        assert not re.search(r"\{\{|\{%|JINJAPLACEHOLDER", part)
    assert email.subject and "\n" not in email.subject
    assert "<!doctype html>" in email.html.lower()
    assert UNSUBSCRIBE in email.html and UNSUBSCRIBE in email.text
    assert "12 Roastery Lane, Portland, OR 97201, USA" in email.text


@pytest.mark.parametrize("name", EMAIL_TEMPLATES)
def test_footer_has_a_visible_unsubscribe_link_and_the_store_address(renderer: EmailRenderer, name: str) -> None:
    html = renderer.render(name, full()).html
    assert re.search(rf'<a href="{re.escape(UNSUBSCRIBE)}"[^>]*>Unsubscribe</a>', html)
    assert "12 Roastery Lane" in html


def test_weekly_picks_explains_each_product_under_it(renderer: EmailRenderer) -> None:
    context = full()
    context["products"][1]["explanation"] = "Because you bought Colombia Huila"
    email = renderer.render("weekly_picks", context)
    for product in context["products"]:
        title_at = email.html.index(product["title"])
        assert email.html.index(product["explanation"], title_at) < email.html.index("Take a look", title_at)
        assert product["explanation"] in email.text
    assert email.subject == "Ann, your coffee picks for this week"


def test_missing_first_name_reads_naturally(renderer: EmailRenderer) -> None:
    assert "Hi there," in renderer.render("weekly_picks", sparse()).html
    assert renderer.render("weekly_picks", sparse()).subject == "Your coffee picks for this week"
    assert renderer.render("birthday", sparse()).subject.startswith("Happy birthday! ")
    assert "Happy birthday!" in renderer.render("birthday", sparse()).text


def test_templated_href_survives_mjml_with_its_query_string(renderer: EmailRenderer) -> None:
    url = "https://beanandleaf.example/products/yirgacheffe-0?utm_source=email&amp;utm_medium=crm"
    html = renderer.render("weekly_picks", full()).html
    assert f'href="{url}"' in html
    assert 'src="https://cdn.beanandleaf.example/products/yirgacheffe-0.jpg"' in html


def test_customer_data_is_html_escaped(renderer: EmailRenderer) -> None:
    context = full(customer={"first_name": '<script>alert("x")</script>'})
    context["products"][0]["title"] = 'Décaf "Night" <b>Owl</b> & Co'
    email = renderer.render("weekly_picks", context)
    assert "<script>" not in email.html and "&lt;script&gt;" in email.html
    assert "Décaf &#34;Night&#34; &lt;b&gt;Owl&lt;/b&gt; &amp; Co" in email.html
    assert 'Décaf "Night" <b>Owl</b> & Co' in email.text  # plain text is not HTML
    assert email.subject.startswith('<script>alert("x")</script>, your')


def test_trigger_details_are_used_when_present(renderer: EmailRenderer) -> None:
    offer = {"code": "BDAY-7QX", "description": "15% off your next order"}
    birthday = renderer.render("birthday", full(trigger={"kind": "birthday"}, offer=offer))
    assert "BDAY-7QX" in birthday.html and "YOUR BIRTHDAY GIFT" in birthday.html
    assert "15% off your next order" in birthday.text and "gift" in birthday.subject
    refill_product = {**full()["products"][0], "title": "House Blend", "kind": "refill", "topic": "coffee"}
    refill = renderer.render(
        "replenishment",
        full(
            refill=refill_product,
            trigger={"kind": "replenishment", "last_ordered_text": "October 1", "runs_out_text": "November 28",
                     "ran_out": False},
        ),
    )  # fmt: skip
    assert refill.subject == "Running low on House Blend?"
    assert "you ordered House Blend on October 1, so by our count it runs out around November 28." in refill.text
    assert "fresh from our next roast" in refill.text
    cart = renderer.render(
        "abandoned_cart", full(trigger={"kind": "abandoned_cart", "cart_url": "https://b.example/c/9"})
    )
    assert 'href="https://b.example/c/9"' in cart.html


def test_no_offer_no_promise(renderer: EmailRenderer) -> None:
    for name in ("birthday", "winback"):
        email = renderer.render(name, full(trigger={"kind": name}))
        for part in (email.subject, email.text):
            assert not re.search(r"gift|treat|code|% off", part, re.IGNORECASE), (name, part)


def test_compiled_template_is_cached_by_content(renderer: EmailRenderer) -> None:
    first = renderer.compile("weekly_picks")
    assert EmailRenderer().compile("weekly_picks") is first  # same files, same digest, shared cache


def test_editing_a_partial_recompiles(templates_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render, "_RECHECK_SECONDS", 0.0)
    renderer = EmailRenderer(templates_copy)
    before = renderer.compile("weekly_picks")
    footer = templates_copy / "email" / "partials" / "footer.mjml"
    footer.write_text(footer.read_text().replace("Happy brewing,", "Cheers,"))
    after = renderer.compile("weekly_picks")
    assert after.digest != before.digest
    assert "Cheers," in renderer.render("weekly_picks", full()).html


def test_jinja_syntax_error_names_the_file_and_line(templates_copy: Path) -> None:
    header = templates_copy / "email" / "partials" / "header.mjml"
    lines = header.read_text().splitlines()
    lines.insert(2, "{% if store.name %}")
    header.write_text("\n".join(lines))
    with pytest.raises(TemplateError) as caught:
        EmailRenderer(templates_copy).compile("weekly_picks")
    assert caught.value.file == "email/partials/header.mjml"
    assert "weekly_picks" in str(caught.value) and "header.mjml" in str(caught.value)
    assert caught.value.line is not None and caught.value.line >= 3


def _write_template(folder: Path, name: str, body: str) -> None:
    (folder / "email" / f"{name}.mjml").write_text(
        f"<mjml><mj-head><mj-title>Hi</mj-title></mj-head><mj-body><mj-section><mj-column>"
        f"{body}</mj-column></mj-section></mj-body></mjml>"
    )


def test_templates_cannot_reach_python_internals(templates_copy: Path) -> None:
    _write_template(templates_copy, "evil", "<mj-text>{{ store.__class__.__mro__ }}</mj-text>")
    with pytest.raises(TemplateRenderError, match="evil"):
        EmailRenderer(templates_copy).render("evil", full())


def test_a_typo_in_a_template_fails_loudly(templates_copy: Path) -> None:
    _write_template(templates_copy, "typo", "<mj-text>{{ customer.frist_name }}</mj-text>")
    with pytest.raises(TemplateRenderError, match="frist_name"):
        EmailRenderer(templates_copy).render("typo", full())


def test_jinja_that_mjml_would_escape_is_refused_at_compile_time(templates_copy: Path) -> None:
    _write_template(templates_copy, "escaped", "<mj-text>{{ 'a' if products|length > 2 }}</mj-text>")
    with pytest.raises(TemplateError, match="avoid &, <, >"):
        EmailRenderer(templates_copy).compile("escaped")


def test_template_without_title_is_refused(templates_copy: Path) -> None:
    (templates_copy / "email" / "untitled.mjml").write_text(
        "<mjml><mj-body><mj-section><mj-column><mj-text>x</mj-text></mj-column></mj-section></mj-body></mjml>"
    )
    with pytest.raises(TemplateError, match="mj-title"):
        EmailRenderer(templates_copy).compile("untitled")


@pytest.mark.parametrize("name", ["nope", "../secrets", ""])
def test_unknown_or_unsafe_template_name_is_not_found(renderer: EmailRenderer, name: str) -> None:
    with pytest.raises(TemplateNotFoundError):
        renderer.render(name, full())


def test_include_outside_the_templates_folder_is_refused(templates_copy: Path) -> None:
    _write_template(templates_copy, "sneaky", '<mj-include path="../../../etc/passwd" />')
    with pytest.raises(TemplateError, match="not a file inside the templates folder"):
        EmailRenderer(templates_copy).compile("sneaky")


def test_text_template_keeps_jinja_in_links_intact() -> None:
    page = (
        '<p>Hi {{ name }}</p><p><a href="{{ url }}">Shop {{ shop }}</a></p>{% for x in xs %}<p>{{ x }}</p>{% endfor %}'
    )
    text = html_to_text_template(page)
    assert "Hi {{ name }}" in text and "Shop {{ shop }}: {{ url }}" in text and "{% for x in xs %}" in text


def test_money_formats_and_tolerates_missing_prices() -> None:
    assert money(18.5) == "$18.50"
    assert money(1234, "EUR") == "€1,234.00"
    assert money(3, "chf") == "CHF 3.00"
    assert money(None) == ""


@pytest.mark.parametrize("name", EMAIL_TEMPLATES)
def test_card_templates_render_json_with_escaped_customer_data(name: str) -> None:
    context = planner_context(first_name='Zoë "Z" \\ <b>')
    card = CardRenderer().render(name, context)
    assert card["type"] in {"CLASSIC", "CAPTIONED_IMAGE", "BANNER"}
    assert [item["sku"] for item in card["items"]] == ["BL-000", "BL-001", "BL-002"]
    if name in {"weekly_picks", "birthday", "winback"}:
        assert 'Zoë "Z" \\ <b>' in card["title"]
    sparse_card = CardRenderer().render(name, planner_context(first_name=None, products=0))
    assert sparse_card["items"] == [] and sparse_card["image_url"] is None and sparse_card["type"] == "CLASSIC"


# customer data is hostile (issue 5, defects 1 and 9) ----------------------------------------------------------------

HOSTILE_URLS = ["javascript:alert(1)", " JAVASCRIPT:alert(1)", "java\nscript:alert(1)", "data:text/html,<b>x</b>",
                "vbscript:msgbox(1)", "//evil.example/x", "/relative", "https://user:pw@evil.example/"]  # fmt: skip


class _Attributes(HTMLParser):
    """Every (tag, attribute, value) of a page, and the tags it opens."""

    def __init__(self) -> None:
        super().__init__()
        self.attributes: list[tuple[str, str, str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.extend((tag, name, value or "") for name, value in attrs)


def link_attributes(page: str) -> list[tuple[str, str, str]]:
    parser = _Attributes()
    parser.feed(page)
    return [(tag, name, value) for tag, name, value in parser.attributes if name in ("href", "src")]


@pytest.mark.parametrize("name", EMAIL_TEMPLATES)
@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_only_absolute_http_urls_reach_href_and_src(renderer: EmailRenderer, name: str, url: str) -> None:
    context = full(trigger={"kind": name, "cart_url": url, "product_title": "x"})
    for product in context["products"]:
        product["url"] = product["image_url"] = url
    page = renderer.render(name, context).html
    links = link_attributes(page)
    assert links and all(
        value.startswith(("https://beanandleaf.example", "http://www.w3.org")) for _, _, value in links
    ), links  # every product link fell back to the store, every image was dropped
    assert not [value for tag, name_, value in links if tag == "img"]
    assert "evil.example" not in page and "script:" not in page.lower() and "data:" not in page


@pytest.mark.parametrize("name", EMAIL_TEMPLATES)
def test_a_quote_in_a_url_never_opens_an_attribute(renderer: EmailRenderer, name: str) -> None:
    url = 'https://x.example/" onerror="alert(1)" x="'
    context = full(trigger={"kind": name, "cart_url": url})
    for product in context["products"]:
        product["url"] = product["image_url"] = url
    parser = _Attributes()
    parser.feed(renderer.render(name, context).html)
    assert not [attribute for _, attribute, _ in parser.attributes if attribute.startswith("on")]
    assert "script" not in parser.tags
    assert ("img", "src", "https://x.example/%22%20onerror=%22alert(1)%22%20x=%22") in parser.attributes


def test_unsafe_image_drops_only_that_image(renderer: EmailRenderer) -> None:
    context = full()
    context["products"][1]["image_url"] = "javascript:alert(1)"
    page = renderer.render("weekly_picks", context).html
    images = [value for tag, _, value in link_attributes(page) if tag == "img"]
    assert images == [
        "https://cdn.beanandleaf.example/products/yirgacheffe-0.jpg",
        "https://cdn.beanandleaf.example/products/yirgacheffe-2.jpg",
    ]
    assert "Ethiopia Yirgacheffe Lot 1" in page and "placeholder" not in page


def test_unsafe_product_url_falls_back_to_the_store_url() -> None:
    context = render.template_context(full(products=[{"title": "x", "url": "javascript:alert(1)"}]))
    assert context["products"][0]["url"] == "https://beanandleaf.example"
    assert context["products"][0]["image_url"] is None


def test_unsafe_trigger_url_is_removed_so_the_template_falls_back(renderer: EmailRenderer) -> None:
    cart = renderer.render("abandoned_cart", full(trigger={"kind": "abandoned_cart", "cart_url": "javascript:x()"}))
    assert 'href="https://beanandleaf.example"' in cart.html and "javascript" not in cart.html
    assert "cart_url" not in render.template_context({"trigger": {"cart_url": "data:x"}})["trigger"]


def test_unsafe_store_url_becomes_empty() -> None:
    assert render.template_context({"store": {"url": "javascript:alert(1)"}})["store"]["url"] == ""


def test_template_context_removes_control_characters_everywhere() -> None:
    context = render.template_context(
        {
            "customer": {"first_name": "Ann\r\nBcc: x", "tags": ["a\x00b", {"deep": "c\u202ed"}]},
            "products": [{"title": "T\x1b[31m", "explanation": "E\u2028F", "sku": "S\x7f"}],
            "trigger": {"kind": "k", "product_title": "P\x85Q"},
            "extra": ("x\x0by",),
        }
    )
    assert context["customer"] == {"first_name": "Ann  Bcc: x", "tags": ["ab", {"deep": "cd"}]}
    assert (context["products"][0]["title"], context["products"][0]["explanation"]) == ("T[31m", "E F")
    assert context["products"][0]["sku"] == "S" and context["trigger"]["product_title"] == "P Q"
    assert context["extra"] == ["x y"]


@pytest.mark.parametrize(
    "first_name",
    ["=?utf-8?q?X=0D=0ABcc:_evil@attacker.example?=", "Ann\r\nBcc: evil@attacker.example", "A\u202eB\x00C"],
)
def test_subject_is_header_safe_whatever_the_name(renderer: EmailRenderer, first_name: str) -> None:
    subject = renderer.render("weekly_picks", full(customer={"first_name": first_name})).subject
    assert not re.search(r"[\x00-\x1f\u202e]", subject) and "=?" not in subject


def test_jinja_in_customer_data_is_never_evaluated(renderer: EmailRenderer) -> None:
    context = full(customer={"first_name": "{{ 7*7 }}{% for x in range(3) %}loop{% endfor %}"})
    context["products"][0]["title"] = "{{ store.__class__ }}"
    email = renderer.render("weekly_picks", context)
    for part in (email.subject, email.text):
        assert "{{ 7*7 }}" in part and "49" not in part
    assert "{{ store.__class__ }}" in email.text and "loop loop" not in email.html
    card = CardRenderer().render("weekly_picks", context)
    assert card["title"].startswith("{{ 7*7 }}") and "49" not in json.dumps(card)


@pytest.mark.parametrize("name", EMAIL_TEMPLATES)
def test_card_url_fields_are_dropped_or_safe(name: str) -> None:
    context = planner_context()
    for product in context["products"]:
        product["url"] = product["image_url"] = "javascript:alert(1)"
    context["trigger"]["cart_url"] = "javascript:alert(1)"
    card = CardRenderer().render(name, context)
    assert card["image_url"] is None and card["type"] == "CLASSIC"
    assert all(card[key] == "https://beanandleaf.example" or card[key] == "https://beanandleaf.example/cart"
               for key in ("web_uri", "ios_uri", "android_uri"))  # fmt: skip


card_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=200)


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(EMAIL_TEMPLATES),
    first_name=card_text,
    title=card_text,
    explanation=card_text,
    sku=card_text,
    url=st.one_of(card_text, st.sampled_from(HOSTILE_URLS)),
)
def test_customer_data_never_adds_a_key_to_a_card(
    name: str, first_name: str, title: str, explanation: str, sku: str, url: str
) -> None:
    """Every ``{{ }}`` is one JSON value, so no text can add, remove or rename a key; text fields stay clean."""
    context = planner_context(first_name=first_name, product_title=title)
    for product in context["products"]:
        product.update(title=title, explanation=explanation, sku=sku, url=url, image_url=url)
    card = CardRenderer().render(name, context)
    keys = {"type", "title", "body", "image_url", "web_uri", "ios_uri", "android_uri", "button", "items"}
    assert set(card) == keys | ({"pinned"} if name == "abandoned_cart" else set())  # a cart card is pinned
    item_keys = {"sku", "title", "explanation", "url", "image_url", "price"}
    assert all(set(item) == item_keys for item in card["items"]) and len(card["items"]) == 3
    strings = [card["title"], card["body"], *(v for item in card["items"] for v in item.values() if isinstance(v, str))]
    assert not any(re.search(r"[\x00-\x1f\x7f-\x9f\u2028-\u202e\u2066-\u2069]", s) for s in strings)
    assert len(card["title"]) <= 120 and len(card["body"]) <= 500
    for key in ("image_url", "web_uri", "ios_uri", "android_uri"):
        assert card[key] is None or re.match(r"https?://[^/?#@\s\\]", card[key])
