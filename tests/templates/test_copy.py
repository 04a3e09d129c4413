"""Every template, rendered for every context planning really produces, reads right.

The contexts come from ``tests/templates/store.py``: a StoreBuilder store run through trigger detection, the
recommender and ``models.planning`` (shipped campaigns, plus variants with a subject, a static code and a code pool).
Rendering uses ``EmailRenderer(strict=True)``: an undefined variable (``StrictUndefined``) or a ``{{ … }}`` that
renders nothing fails the render. On top of that each email is read like a person would: no raw Jinja, no ``None``,
no sentence with an empty slot ("Hi ,", "…busy since.", "which is about when a bag runs out." without the product),
and copy that matches why the email exists.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from channels.render import CardRenderer, EmailRenderer, RenderedEmail
from models.message import OutboundMessage
from tests.templates.store import POOL_CODES, WEEKLY_SUBJECT, WINBACK_SUBJECT, PlannedStore

UNSUBSCRIBE = "https://beanandleaf.example/u/TOKEN"
EMAIL_TEMPLATES = EmailRenderer().template_names()
EMPTY_SLOT = [
    (re.compile(r"\b(?:Hi|Hello|Dear)\s*[,!.]"), "a greeting without a name or 'there'"),
    (re.compile(r"[^\S\n][,.;:!?](?:\s|$)"), "a space before punctuation (an empty slot)"),
    (re.compile(r"[,;:][^\S\n]*[,.;:!?]"), "two punctuation marks in a row (an empty slot)"),
    (
        re.compile(r"\b(?:since|on|of|about|around|for|with|from|at|to|the|a|an|your|and|in|left|ordered)\s*[.,!?;:]"),
        "a sentence that stops after a preposition or article (an empty slot)",
    ),
    (re.compile(r"\S[^\S\n]{2,}\S"), "two spaces in a row (an empty slot)"),
    (re.compile(r"which is about when a bag runs out", re.IGNORECASE), "the refill sentence without the product"),
    (re.compile(r"busy since", re.IGNORECASE), "the win-back sentence without the time"),
]


def reading_problems(text: str) -> list[str]:
    """What a reader would trip over in a subject or text part."""
    problems = []
    if re.search(r"\{\{|\{%|\{#|#\}|%\}|\}\}|JINJAPLACEHOLDER", text):
        problems.append("raw Jinja in the output")
    if re.search(r"\b(?:None|Undefined|nan)\b", text):
        problems.append("a missing value printed as None/Undefined/nan")
    for line in text.splitlines():
        prose = re.sub(r"https?://\S+", "URL", line)
        for pattern, why in EMPTY_SLOT:
            if pattern.search(prose):
                problems.append(f"{why}: {line.strip()!r}")
    return problems


def render(template: str, message: OutboundMessage) -> RenderedEmail:
    return EmailRenderer(strict=True).render(template, {**message.context, "unsubscribe_url": UNSUBSCRIBE})


def test_the_store_plans_every_campaign_and_every_kind_of_email(planned: PlannedStore) -> None:
    by_campaign = {m.campaign for m in planned.emails()}
    assert by_campaign == {c.name for c in planned.campaigns}
    assert {m.template for m in planned.emails()} == set(EMAIL_TEMPLATES)
    contexts = [m.context for m in planned.emails()]
    assert {c["picks"] for c in contexts} >= {"personal", "popular", "none"}
    assert any(c["offer"] for c in contexts) and any(c["cart"] for c in contexts) and any(c["refill"] for c in contexts)
    assert any(c["customer"]["first_name"] is None for c in contexts)


def test_every_template_renders_every_planned_context_without_an_empty_slot(planned: PlannedStore) -> None:
    """Every template × every planned email context (not just its own): strict rendering never fails, and no
    subject or text part has raw Jinja, a None or an empty slot."""
    failures = []
    for message in planned.emails():
        for template in EMAIL_TEMPLATES:
            email = render(template, message)
            where = f"{template} for {message.campaign}/{message.customer_id}"
            failures += [f"{where} subject: {p}" for p in reading_problems(email.subject)]
            failures += [f"{where} text: {p}" for p in reading_problems(email.text)]
            assert "<!doctype html>" in email.html.lower() and email.html.rstrip().endswith("</html>")
    assert not failures, "\n".join(failures)


def test_every_card_renders_every_planned_context(planned: PlannedStore) -> None:
    cards = CardRenderer()
    for message in planned.messages:
        if message.channel != "inapp":
            continue
        for template in cards.template_names():
            card = cards.render(template, message.context)
            assert card["title"].strip() and not reading_problems(card["title"] + "\n" + card["body"]), card


def own_emails(planned: PlannedStore, campaign: str) -> list[tuple[OutboundMessage, RenderedEmail]]:
    found = [(m, render(m.template or "", m)) for m in planned.emails(campaign)]
    assert found, f"no {campaign} email planned"
    return found


def block(text: str, heading: str, ends: tuple[str, ...]) -> str:
    """The text part from ``heading`` to the first of ``ends`` (or the end)."""
    start = text.index(heading) + len(heading)
    stops = [text.index(end, start) for end in ends if end in text[start:]]
    return text[start : min(stops, default=len(text))]


def titles_in(part: str, titles: set[str]) -> set[str]:
    return {title for title in titles if title in part}


def test_replenishment_names_the_product_and_when_it_runs_out(planned: PlannedStore) -> None:
    for message, email in own_emails(planned, "replenishment"):
        refill, trigger = message.context["refill"], message.context["trigger"]
        assert refill is not None and email.subject == f"Running low on {refill['title']}?"
        when = "ran out" if trigger["ran_out"] else "runs out"
        assert (
            f"you ordered {refill['title']} on {trigger['last_ordered_text']}, so by our count it {when} around "
            f"{trigger['runs_out_text']}." in email.text
        )
        assert refill["title"] not in {p["title"] for p in message.context["products"]}


def test_winback_says_how_long_it_has_been(planned: PlannedStore) -> None:
    for message, email in own_emails(planned, "winback"):
        since = message.context["trigger"]["since_last_order"]
        assert f"It's been {since} since your last order" in email.text
        assert re.fullmatch(r"\d+ days|\d+ weeks|about (\d+ months|a year)|over a year", since)


@pytest.mark.parametrize("campaign", ["birthday", "winback"])
def test_a_gift_is_promised_only_with_an_offer_and_then_its_code_is_shown(planned: PlannedStore, campaign: str) -> None:
    seen = set()
    for message, email in own_emails(planned, campaign):
        offer = message.context["offer"]
        seen.add(offer is not None)
        everything = email.subject + "\n" + email.text
        if offer:
            assert offer["code"] in email.text and offer["description"] in email.text
            assert "gift" in (email.subject + email.text).lower()
        else:
            assert not re.search(r"gift|treat|code|% off|discount", everything, re.IGNORECASE), everything
    assert seen == {True, False}, "both an email with an offer and one without"


def test_birthday_codes_come_from_the_pool_once_each_and_an_exhausted_pool_drops_only_the_gift(
    planned: PlannedStore,
) -> None:
    codes = [m.context["offer"]["code"] for m in planned.emails("birthday") if m.context["offer"]]
    assert codes == POOL_CODES  # the one code, to one person
    assert len(planned.emails("birthday")) == 2  # the other still gets their birthday email, without a gift
    assert planned.reports["birthday"].offers.exhausted == {"birthday-codes.csv": 1}
    assert any("exhausted: 1 recipients" in line for line in planned.reports["birthday"].lines())


def test_a_variant_subject_wins(planned: PlannedStore) -> None:
    for campaign, subject in (("winback", WINBACK_SUBJECT), ("weekly-picks", WEEKLY_SUBJECT)):
        for message, email in own_emails(planned, campaign):
            assert (email.subject == subject) == (message.variant == "B"), (campaign, message.variant, email.subject)


def test_the_cart_email_shows_the_cart_and_recommendations_apart(planned: PlannedStore) -> None:
    for message, email in own_emails(planned, "abandoned-cart"):
        cart = {p["title"] for p in message.context["cart"]}
        picks = {p["title"] for p in message.context["products"]}
        every = cart | picks
        assert cart and not cart & picks
        in_cart = block(email.text, "STILL IN YOUR CART", ("Return to your cart",))
        assert titles_in(in_cart, every) == cart  # only what is really in the cart
        if picks:
            heading = "POPULAR RIGHT NOW" if message.context["picks"] == "popular" else "YOU MIGHT ALSO LIKE"
            shown = block(email.text, heading, ("Happy brewing",))
            for product in message.context["products"]:  # "Pairs with <a cart item>" names the cart, rightly
                shown = shown.replace(product["explanation"], "")
            assert titles_in(shown, every) == picks
        else:
            assert "YOU MIGHT ALSO LIKE" not in email.text and "POPULAR RIGHT NOW" not in email.text
        first = message.context["cart"][0]["title"]
        assert first in email.subject


def test_picks_for_someone_without_history_say_they_are_popular(planned: PlannedStore) -> None:
    kinds = set()
    for message, email in own_emails(planned, "weekly-picks"):
        picks = message.context["picks"]
        kinds.add(picks)
        if picks == "popular":
            assert "POPULAR RIGHT NOW" in email.text and "what you've enjoyed" not in email.text
            assert all(p["kind"] == "popular" for p in message.context["products"])
        elif picks == "personal":
            assert "Based on what you've enjoyed so far" in email.text and "POPULAR RIGHT NOW" not in email.text
    assert "popular" in kinds and "personal" in kinds
    cleo = next(m for m in planned.emails("weekly-picks") if m.customer_id == planned.people["cleo"])
    assert cleo.context["picks"] == "popular"  # Cleo has never ordered


def test_every_product_is_shown_with_why_it_was_picked(planned: PlannedStore) -> None:
    for message in planned.emails():
        email = render(message.template or "", message)
        shown = [*message.context["cart"], message.context["refill"], *message.context["products"]]
        for product in filter(None, shown):
            assert product["explanation"] and product["explanation"] in email.text, (product, message.campaign)


def test_the_subject_follows_the_content(planned: PlannedStore) -> None:
    tea_only = 0
    for campaign in ("weekly-picks", "tea-picks"):
        for message, email in own_emails(planned, campaign):
            if message.variant == "B":
                continue  # its own subject
            topics = {p["topic"] for p in message.context["products"]}
            subject = email.subject.lower()
            if "coffee" in subject:
                assert "coffee" in topics and topics <= {"coffee", "tea"}, (subject, topics)
            if "tea" in subject.split():
                assert "tea" in topics and topics <= {"coffee", "tea"}, (subject, topics)
            if topics == {"tea"}:
                tea_only += 1
                assert "tea picks" in subject and "coffee" not in subject
    assert tea_only, "the tea drinker's two-product email is all tea"


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.hrefs += [value or "" for name, value in attrs if name == "href"]


def test_every_store_and_product_link_carries_utm_tags(planned: PlannedStore) -> None:
    for message in planned.messages:
        email = render(message.template or "", message) if message.channel == "email" else None
        links = _context_links(message.context)
        if email is not None:
            parser = _Links()
            parser.feed(email.html)
            links += [href for href in parser.hrefs if href.startswith("http") and href != UNSUBSCRIBE]
        assert links
        for link in links:
            query = parse_qs(urlsplit(link).query)
            assert query == {
                "utm_source": ["omnicast"],
                "utm_medium": [message.channel],
                "utm_campaign": [message.campaign],
                "utm_content": [message.variant],
            }, link


def _context_links(context: dict[str, Any]) -> list[str]:
    products = [*context["products"], *context["cart"], *([context["refill"]] if context["refill"] else [])]
    trigger_links = [v for k, v in context["trigger"].items() if k.endswith("_url")]
    return [context["store"]["url"], *(p["url"] for p in products), *trigger_links]


def test_picks_are_diverse_within_an_email(planned: PlannedStore) -> None:
    for message in planned.emails():
        types = [p["product_type"] for p in message.context["products"]]
        assert all(types.count(t) <= 2 for t in set(types)), (message.campaign, types)


@pytest.mark.parametrize(
    "bad",
    [
        "Hi , your cart is saved.",
        "Hi Courtney, which is about when a bag runs out.",
        "Our roasters have been busy since.",
        "It's been  days since your last order.",
        "Happy birthday, ! From all of us",
        "You left {{ cart[0].title }} in your cart",
        "Running low on None?",
    ],
)
def test_the_reader_catches_what_the_issue_saw(bad: str) -> None:
    assert reading_problems(bad)


def test_the_reader_passes_good_copy() -> None:
    good = (
        "Hi there, your cart is saved and waiting with 2 items in it.\n"
        "It's been about 4 months since your last order, and there's a lot that's new here.\n"
        "Larkspur Coffee · 1 Main St\nUnsubscribe: https://x.example/u/1 · Visit the shop: https://x.example/?a=b"
    )
    assert reading_problems(good) == []
