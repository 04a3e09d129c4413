"""Templates: every email renders for full and sparse contexts; Jinja is sandboxed, escaped and survives MJML."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

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
    birthday = renderer.render("birthday", full(trigger={"kind": "birthday", "discount_code": "BDAY-7QX"}))
    assert "BDAY-7QX" in birthday.html and "YOUR BIRTHDAY CODE" in birthday.html
    refill = renderer.render("replenishment", full(trigger={"kind": "replenishment", "days_since_order": 34}))
    assert refill.subject == "Running low on Ethiopia Yirgacheffe Lot 0?"
    assert "it's been 34 days since your last order" in refill.text
    cart = renderer.render(
        "abandoned_cart", full(trigger={"kind": "abandoned_cart", "cart_url": "https://b.example/c/9"})
    )
    assert 'href="https://b.example/c/9"' in cart.html


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
