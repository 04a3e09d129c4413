"""What a template is given: the context of one planned message, built from domain data (no database here).

``models/planning.py`` decides who hears what; this module turns that decision into the template contract
(``templates/email/README.md``), so copy reads right for every reason a message exists:

* **why each product is shown**: every product carries ``kind``, the reason it was picked, read from the
  recommender's model and explanation (``again``, ``bought``, ``browsed``, ``taste``, ``history``, ``popular``,
  and ``pairs`` / ``similar`` for related products: "Pairs with X", "Similar to X") or from the trigger (``cart``,
  ``refill``); ``picks`` sums the recommendations up (``personal``, ``popular``,
  ``mixed``, ``none``) and templates choose their intro sentence, heading and subject by it;
* **what the email is about**: ``topic`` (``coffee``, ``tea``, ``coffee and tea`` or ``""``) from the products'
  types, so a tea-only email is never subjected "coffee picks";
* **what goes with a cart**: :func:`cart_pairings` ranks the products related to a cart's items (the
  ``related_products`` table: bought with them, else like them) for the abandoned-cart email, apart from the cart and
  never one of its items;
* **the trigger in words**: dates and durations a sentence can use ("around November 28", "about 4 months");
* **diversity**: at most ``per_category`` products of one type in an email and no product in more than
  ``max_share`` of one campaign's emails (pinned products excepted), decided deterministically;
* **UTM tags** on every store and product link, so a click is attributed even without ``omnicast serve``'s redirect
  (which replaces these tags rather than adding a second set).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from itertools import chain
from typing import Any
from urllib.parse import quote, unquote_plus, urlsplit, urlunsplit

UTM_SOURCE = "omnicast"
OUR_UTM = ("utm_source", "utm_medium", "utm_campaign", "utm_content")
PERSONAL_KINDS = ("again", "bought", "browsed", "taste", "history", "pairs", "similar")
OWN_KINDS = ("cart", "refill")
MAX_CART_ITEMS = 10


# ---- why a product is shown ------------------------------------------------------------------------------------------


def pick_kind(model: str | None, explanation: str | None) -> str:
    """The reason a recommendation was made, from the recommender's model and its explanation
    (``models/recommend/`` writes them): popularity picks are ``popular``, hybrid ones by their explanation."""
    if (model or "").lower() == "popularity":
        return "popular"
    if (model or "").lower() == "pin":  # the store's marketer rules put it there, not the customer's history
        return "featured"
    text = (explanation or "").strip().lower()
    if text.startswith("you bought this before"):
        return "again"
    if text.startswith("because you bought"):
        return "bought"
    if text.startswith("because you showed interest"):
        return "browsed"
    if text.startswith("matches your taste"):
        return "taste"
    if text.startswith("pairs with"):
        return "pairs"
    if text.startswith("similar to"):
        return "similar"
    if text.startswith(("popular", "a customer favourite")):
        return "popular"
    return "history"


def picks_kind(kinds: Iterable[str]) -> str:
    """``personal`` (every pick from the customer's own history), ``popular`` (none), ``mixed`` (some popular or
    featured by the store's rules) or ``none``."""
    found = {kind for kind in kinds if kind not in OWN_KINDS}
    if not found:
        return "none"
    if found == {"popular"}:
        return "popular"
    return "mixed" if found & {"popular", "featured"} else "personal"


def topic_of(product_types: Iterable[str | None]) -> str:
    """What a set of products is, as the word a subject can use: ``coffee``, ``tea``, ``coffee and tea``, or ``""``
    (anything else among them, or nothing known): a tea-only email is never about "coffee"."""
    nouns = set()
    for product_type in product_types:
        noun = _noun(product_type)
        if noun is None:
            return ""
        nouns.add(noun)
    if nouns == {"coffee"} or nouns == {"tea"}:
        return nouns.pop()
    return "coffee and tea" if nouns == {"coffee", "tea"} else ""


def _noun(product_type: str | None) -> str | None:
    words = (product_type or "").casefold().replace("&", " ").split()
    if "coffee" in words or "espresso" in words:
        return "coffee"
    if "tea" in words or "teas" in words:
        return "tea"
    return None


# ---- what goes with a cart -------------------------------------------------------------------------------------------


def cart_pairings(
    cart: Sequence[int], related: Mapping[int, Sequence[tuple[int, float, str]]], limit: int
) -> list[tuple[int, str]]:
    """Products to suggest next to a cart, best first, at most ``limit``: ``(product_id, explanation)``.

    ``related`` gives each cart item's related products, ``(product_id, score, explanation)`` (the explanation names
    the cart item: "Pairs with Ethiopia Guji"). A product related to several cart items scores their sum (it goes
    with more of the cart) and keeps the explanation of the item it relates to most (the earlier cart item on a tie);
    items already in the cart are never suggested. Deterministic: equal scores go by product id.
    """
    in_cart = set(cart)
    total: dict[int, float] = {}
    best: dict[int, tuple[float, int, str]] = {}
    for position, item in enumerate(cart):
        for product, score, explanation in related.get(item, ()):
            if product in in_cart:
                continue
            total[product] = total.get(product, 0.0) + float(score)
            if product not in best or (-float(score), position) < best[product][:2]:
                best[product] = (-float(score), position, explanation)
    ordered = sorted(total, key=lambda product: (-total[product], product))
    return [(product, best[product][2]) for product in ordered[:limit]]


# ---- dates and durations in words ------------------------------------------------------------------------------------


def long_date(value: date | datetime | str) -> str:
    """``2026-11-28`` → ``November 28`` (the year is left out: these dates are near)."""
    day = _as_date(value)
    return f"{day:%B} {day.day}"


def elapsed(days: int) -> str:
    """A time since, as a sentence says it: ``5 days``, ``3 weeks``, ``about 4 months``, ``over a year``."""
    days = max(int(days), 0)
    if days == 1:
        return "a day"
    if days < 14:
        return f"{days} days"
    if days < 60:
        return f"{round(days / 7)} weeks"
    if days < 350:
        months = round(days / 30.4)
        return f"about {months} months" if months != 12 else "about a year"
    if days < 400:
        return "about a year"
    return "over a year"


def _as_date(value: date | datetime | str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return datetime.fromisoformat(str(value)).date()


def trigger_context(kind: str, payload: Mapping[str, Any], today: date, own_titles: Sequence[str]) -> dict[str, Any]:
    """The trigger's payload plus what a sentence needs, in words (the template contract's ``trigger``).

    * ``replenishment``: ``product_title``, ``last_ordered_text`` ("October 1"), ``runs_out_text`` ("November 28")
      and ``ran_out`` (the day has passed);
    * ``churn_risk``: ``days_since_last_order`` and ``since_last_order`` ("about 4 months");
    * ``abandoned_cart``: ``cart_count``;
    * ``birthday``: the payload as it is.
    """
    trigger: dict[str, Any] = {"kind": kind, **payload}
    if kind == "replenishment":
        if own_titles:
            trigger["product_title"] = own_titles[0]
        if payload.get("last_ordered"):
            trigger["last_ordered_text"] = long_date(payload["last_ordered"])
        if payload.get("runs_out_on"):
            runs_out = _as_date(payload["runs_out_on"])
            trigger["runs_out_text"] = long_date(runs_out)
            trigger["ran_out"] = runs_out < today
    elif kind == "churn_risk" and payload.get("days_since_last_order") is not None:
        days = int(payload["days_since_last_order"])
        trigger["days_since_last_order"] = days
        trigger["since_last_order"] = elapsed(days)
    elif kind == "abandoned_cart":
        trigger["cart_count"] = len(own_titles)
    return trigger


# ---- links -----------------------------------------------------------------------------------------------------------


def with_utm(url: str, campaign: str, variant: str | None, medium: str) -> str:
    """``url`` with ``utm_source=omnicast&utm_medium=…&utm_campaign=…&utm_content=<variant>``; any of these four it
    already had are replaced (never duplicated), the rest of the query is kept in order. Non-http(s) values are
    returned unchanged (``channels.render`` refuses them anyway)."""
    if not url or not url.lower().startswith(("http://", "https://")):
        return url
    parts = urlsplit(url)
    kept = [part for part in parts.query.split("&") if part and _param(part) not in OUR_UTM]
    ours = {"utm_source": UTM_SOURCE, "utm_medium": medium, "utm_campaign": campaign, "utm_content": variant}
    added = [f"{name}={quote(value, safe='-._~')}" for name, value in ours.items() if value]
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "&".join(kept + added), parts.fragment))


def _param(part: str) -> str:
    return unquote_plus(part.split("=", 1)[0]).strip().lower()


def tag_links(context: Mapping[str, Any], campaign: str, variant: str | None, medium: str) -> dict[str, Any]:
    """A copy of a planned context whose every store and product link carries the UTM tags for this channel."""

    def tag(url: Any) -> Any:
        return with_utm(url, campaign, variant, medium) if isinstance(url, str) else url

    tagged = dict(context)
    tagged["store"] = {**context["store"], "url": tag(context["store"]["url"])}
    for key in ("products", "cart"):
        tagged[key] = [{**item, "url": tag(item["url"])} for item in context.get(key) or []]
    if context.get("refill"):
        tagged["refill"] = {**context["refill"], "url": tag(context["refill"]["url"])}
    trigger = dict(context.get("trigger") or {})
    for key in [k for k in trigger if k.endswith("_url")]:
        trigger[key] = tag(trigger[key])
    tagged["trigger"] = trigger
    return tagged


# ---- diversity -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Diversity:
    """How varied one campaign's picks are.

    ``per_category``: at most this many products of one ``product_type`` in one email (the trigger's own products
    count too, so picks next to a coffee refill lean to something else). ``max_share``: no product in more than this
    share of the campaign's contacted emails, unless pinned (the trigger's own products always are; ``pinned`` adds
    SKUs); applied from ``min_emails`` emails on (below that a share says little). An email whose candidates all hit
    the share cap still gets its best one (``relaxed`` counts those), so nobody's email comes out empty.
    """

    per_category: int = 2
    max_share: float = 0.3
    min_emails: int = 20
    pinned: frozenset[str] = field(default_factory=frozenset)

    def share_limit(self, emails: int) -> int | None:
        """How many of ``emails`` one product may appear in; ``None`` when the cap does not apply."""
        if emails < self.min_emails or self.max_share >= 1:
            return None
        return max(1, math.floor(self.max_share * emails))


@dataclass(frozen=True)
class Candidate:
    """A product that may be shown, with why."""

    product_id: int
    sku: str
    product_type: str | None
    explanation: str
    kind: str


@dataclass
class DiversityReport:
    """What diversity changed in one plan (counts only)."""

    share_limit: int | None = None
    skipped_category: int = 0
    skipped_share: int = 0
    relaxed: int = 0


def category(product_type: str | None, product_id: int) -> Hashable:
    """Products of one type share a category (case-insensitive); an untyped product is its own."""
    name = (product_type or "").strip().casefold()
    return name if name else ("untyped", product_id)


def order_key(campaign: str, occurrence_key: str, customer_id: int) -> str:
    """A stable shuffle of a campaign's emails: who meets the share cap first is not decided by customer id."""
    return hashlib.sha256(f"{campaign}\0{occurrence_key}\0{customer_id}".encode()).hexdigest()


def diversify(
    emails: Sequence[tuple[Hashable, Sequence[Candidate], Sequence[Candidate], bool]],
    limit: int,
    diversity: Diversity,
    report: DiversityReport | None = None,
    *,
    fallback: Sequence[Candidate] = (),
    blocked: Callable[[Hashable, int], bool] | None = None,
) -> dict[Hashable, list[Candidate]]:
    """Choose each email's recommendations, in the order given (see :func:`order_key`).

    ``emails``: ``(key, own products, ranked candidates, contacted)`` — own products (the cart, the refill) are shown
    anyway and fill the email first; recommendations fill it up to ``limit`` products in all, from the email's own
    candidates, then from ``fallback`` (the same for every email: the store's best sellers), skipping what
    ``blocked(key, product_id)`` rules out. Holdout emails (``contacted`` false) follow the per-email rule but do
    not use up a product's share. Deterministic.
    """
    report = report if report is not None else DiversityReport()
    share = diversity.share_limit(sum(1 for *_, contacted in emails if contacted))
    report.share_limit = share
    uses: Counter[int] = Counter()
    chosen: dict[Hashable, list[Candidate]] = {}
    for key, own, candidates, contacted in emails:
        per_type: Counter[Hashable] = Counter()
        seen = {c.product_id for c in own}
        picks: list[Candidate] = []
        held_back: list[Candidate] = []
        for n, candidate in enumerate(chain(candidates, fallback)):
            if len(own) + len(picks) >= limit:
                break
            if candidate.product_id in seen:
                continue
            if n >= len(candidates) and blocked is not None and blocked(key, candidate.product_id):
                continue
            cat = category(candidate.product_type, candidate.product_id)
            if per_type[cat] >= diversity.per_category:
                report.skipped_category += 1
                continue
            pinned = candidate.sku in diversity.pinned
            if share is not None and not pinned and uses[candidate.product_id] >= share:
                report.skipped_share += 1
                held_back.append(candidate)
                continue
            picks.append(candidate)
            seen.add(candidate.product_id)
            per_type[cat] += 1
        if not own and not picks and held_back and limit > 0:  # better a product too often than an empty email:
            picks.append(min(held_back, key=lambda c: uses[c.product_id]))  # the least used of the best ones
            report.relaxed += 1
        if contacted:
            uses.update(c.product_id for c in picks)
        chosen[key] = picks
    return chosen
