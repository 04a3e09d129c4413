"""Turn campaigns, triggers and audiences into planned messages (one ``OutboundMessage`` per person and channel).

Planning never sends: it decides who should hear what, assigns experiment variants (with a holdout group that is
recorded but never contacted), and gathers what templates render (the context contract of
``templates/email/README.md``, built by ``models/context.py``). ``channels.dispatch`` then gates and delivers.
Planning is idempotent: the same day planned twice yields the same ledger keys (so the ledger skips the repeats) and
the same offer codes.

What a message shows, and why:

* the trigger's own products in their own slot: the cart's items (``cart``, only items still in the cart: active
  and not bought since) or the product running low (``refill``); an abandoned-cart or replenishment moment with
  nothing left to show is not planned;
* for an abandoned cart, first what pairs with the cart's items (``models.context.cart_pairings`` over the
  ``related_products`` table: "Pairs with X", never an item of the cart nor gear the customer owns), then the
  customer's own recommendations;
* recommendations (``products``), each with its reason (``kind``, ``explanation``), diverse (``Diversity``: at most
  N per product type in an email, no product in more than a share of the campaign's emails unless pinned);
* the variant's overrides: its ``template`` (the message's template), ``subject`` (``context["subject"]``, which
  the template uses verbatim) and ``offer``;
* the offer, only when the campaign (or variant) has one and a code is there to show (``models/offers.py``): a
  recipient the code pool has run out for is planned without the gift, never promising it;
* UTM tags on every store and product link (per channel: ``utm_medium`` is the channel).

``plan_preview`` plans one campaign for chosen customers without writing anything (no assignment, no offer code,
no ledger row), for ``omnicast preview``.
"""

from __future__ import annotations

import logging
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

from sqlalchemy import func, select, union_all
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from channels.recipients import load_recipients
from models.campaigns import HOLDOUT, Campaign, Offer, Variant
from models.context import (
    MAX_CART_ITEMS,
    Candidate,
    Diversity,
    DiversityReport,
    cart_pairings,
    diversify,
    long_date,
    order_key,
    pick_kind,
    picks_kind,
    tag_links,
    topic_of,
    trigger_context,
)
from models.db import session_scope
from models.errors import InputError
from models.experiments import apply_global_holdout, assign_variant
from models.interactions import EVENTS, ORDER_LINES, ORDERS, PRODUCTS, counted_order
from models.message import OutboundMessage, Recipient
from models.offers import OfferReport, allocate_codes, offer_context
from models.recommend.related import load_related
from models.recommend.rules import sellable_to_suggest
from models.schema import Assignment, Experiment, Product, Recommendation, TriggerOccurrence
from models.schema import Campaign as CampaignRow
from models.segments import Segment, product_likes
from models.segments import members as segment_members

logger = logging.getLogger(__name__)

MAX_CANDIDATES = 20
"""Recommendations read per customer: more than an email shows, so diversity has something to choose from."""


@dataclass(frozen=True)
class StoreInfo:
    """What templates show about the store."""

    name: str
    url: str
    address: str
    currency: str = "USD"

    def as_context(self) -> dict[str, str]:
        return {"name": self.name, "url": self.url, "address": self.address, "currency": self.currency}

    def product_url(self, handle: str) -> str:
        return f"{self.url.rstrip('/')}/products/{handle}"


@dataclass
class Target:
    """One person a campaign reaches for one occurrence."""

    occurrence_key: str
    customer_id: int
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class PlanReport:
    """What planning one campaign did, in counts (for the run's log; no one is named)."""

    campaign: str
    targets: int = 0
    messages: int = 0
    holdout: int = 0
    nothing_to_show: int = 0
    offers: OfferReport = field(default_factory=OfferReport)
    diversity: DiversityReport = field(default_factory=DiversityReport)

    def lines(self) -> list[str]:
        """One line per fact worth a look in the run's log."""
        lines = [
            f"campaign {self.campaign}: {self.messages} messages for {self.targets} people "
            f"({self.holdout} in the holdout, {self.nothing_to_show} left out with nothing to show)"
        ]
        for pool, count in sorted(self.offers.exhausted.items()):
            lines.append(
                f"campaign {self.campaign}: offer code pool {pool} is exhausted: {count} recipients planned "
                "without the offer; add codes to the file"
            )
        if self.diversity.skipped_share or self.diversity.relaxed:
            lines.append(
                f"campaign {self.campaign}: diversity kept {self.diversity.skipped_share} over-used picks out "
                f"(at most {self.diversity.share_limit} emails per product), {self.diversity.skipped_category} "
                f"by the per-type cap; {self.diversity.relaxed} emails kept an over-used pick (nothing else left)"
            )
        return lines


@dataclass(frozen=True)
class _Item:
    """A product with why it is shown."""

    product: Product
    explanation: str
    kind: str


def broadcast_occurrence(spec: Campaign, today: date) -> str:
    """Broadcasts go out once per ISO week: the week is the occurrence."""
    year, week, _ = today.isocalendar()
    return f"{spec.name}:{year}-W{week:02d}"


def plan_campaign(
    engine: Engine,
    spec: Campaign,
    today: date,
    store: StoreInfo,
    segments: Mapping[str, Segment] | None = None,
    *,
    diversity: Diversity | None = None,
    global_holdout_percent: float = 0.0,
    report: PlanReport | None = None,
) -> list[OutboundMessage]:
    """Planned messages of one campaign for ``today`` (holdout members included, marked ``variant='holdout'``).

    ``segments`` are the catalog's (a segment campaign needs its segment); a campaign outside its dates or disabled
    plans nothing. Records the campaign, its experiment, new assignments and offer codes; logs counts."""
    report = report if report is not None else PlanReport(spec.name)
    if not spec.runs_on(today):
        return []
    with session_scope(engine) as session:
        experiment_id = _ensure_campaign(session, spec)
        targets = campaign_targets(session, spec, today, segments or {})
        if not targets:
            return []
        ids = sorted({t.customer_id for t in targets})
        variants = assignments_of(session, experiment_id, spec, ids, record=True)
        variants = apply_global_holdout(variants, global_holdout_percent)
        messages = plan_targets(session, spec, today, store, targets, variants, diversity or Diversity(), report)
    for line in report.lines():
        _log().info(line)
    return messages


# ---- the plan --------------------------------------------------------------------------------------------------------


def plan_targets(
    session: Session,
    spec: Campaign,
    today: date,
    store: StoreInfo,
    targets: list[Target],
    variants: Mapping[int, str],
    diversity: Diversity,
    report: PlanReport,
    *,
    only: set[int] | None = None,
    dry_run: bool = False,
    channels: Sequence[str] | None = None,
) -> list[OutboundMessage]:
    """Messages for ``targets`` (only those of ``only`` when given; diversity still sees them all)."""
    ids = sorted({t.customer_id for t in targets})
    depth = max(spec.products * 3, MAX_CANDIDATES) * (5 if spec.likes else 1)
    candidates = _candidates(session, ids, depth)
    fallback, owned = _popular_fallback(session, ids, today, spec.likes) if spec.products else ([], set())
    known = {c for c, items in candidates.items() if any(item.kind != "popular" for item in items)}
    if spec.likes:  # a "likes fruity" campaign shows fruity picks: the customer's own first, then popular ones
        candidates = {c: [item for item in items if _liked(item, spec.likes)] for c, items in candidates.items()}
    own = own_items(session, targets)
    if spec.trigger_kind == "abandoned_cart":
        candidates = _with_cart_pairings(session, own, candidates, spec.likes)
    kept: list[Target] = []
    for target in targets:
        if spec.trigger_kind in ("abandoned_cart", "replenishment") and not own.get(_key(target)):
            report.nothing_to_show += 1  # the cart was bought or emptied, the product is gone: nothing to say
            continue
        kept.append(target)
    ordered = sorted(kept, key=lambda t: order_key(spec.name, t.occurrence_key, t.customer_id))
    as_candidate = _Candidates()
    chosen = diversify(
        [
            (
                _key(t),
                [as_candidate(item) for item in own.get(_key(t), [])],
                [as_candidate(item) for item in candidates.get(t.customer_id, [])],
                variants.get(t.customer_id) != HOLDOUT,
            )
            for t in ordered
        ],
        spec.products,
        diversity,
        report.diversity,
        fallback=[as_candidate(item) for item in fallback],
        blocked=lambda key, product_id: (cast(tuple[str, int], key)[1], product_id) in owned,
    )
    output = [t for t in kept if only is None or t.customer_id in only]
    recipients = _recipients(session, {t.customer_id for t in output})
    offers = _offers(session, spec, output, variants, report.offers, dry_run=dry_run)
    messages: list[OutboundMessage] = []
    report.targets = len(output)
    for target in output:
        recipient = recipients.get(target.customer_id)
        if recipient is None:
            continue
        arm = variants[target.customer_id]
        mine = {item.product.id: item for item in [*fallback, *candidates.get(target.customer_id, [])]}
        picks = [mine[c.product_id] for c in chosen.get(_key(target), [])]
        if spec.trigger_kind is None and not picks:
            report.nothing_to_show += 1
            continue  # a picks email with no picks says nothing
        report.holdout += arm == HOLDOUT
        context = _context(spec, today, store, target, recipient, arm, own.get(_key(target), []), picks,
                           offers.get(_key(target)), taste_known=target.customer_id in known)  # fmt: skip
        chosen_variant = spec.variant(arm)
        template = (chosen_variant.template if chosen_variant else None) or spec.template
        for channel in channels or spec.channels:
            messages.append(
                OutboundMessage(
                    occurrence_key=target.occurrence_key,
                    channel=channel,
                    recipient=recipient,
                    campaign=spec.name,
                    template=template,
                    variant=arm,
                    context=tag_links(context, spec.name, arm, channel),
                    priority=spec.priority,
                    send_window=spec.send_window,
                )
            )
    report.messages = len(messages)
    return messages


def _key(target: Target) -> tuple[str, int]:
    return (target.occurrence_key, target.customer_id)


class _Candidates:
    """``_Item`` → ``Candidate``, one per distinct item (items are shared between customers: see ``_candidates``)."""

    def __init__(self) -> None:
        self._made: dict[int, Candidate] = {}

    def __call__(self, item: _Item) -> Candidate:
        made = self._made.get(id(item))
        if made is None:
            product = item.product
            made = Candidate(int(product.id or 0), product.sku, product.product_type, item.explanation, item.kind)
            self._made[id(item)] = made
        return made


def _context(
    spec: Campaign,
    today: date,
    store: StoreInfo,
    target: Target,
    recipient: Recipient,
    arm: str,
    own: list[_Item],
    picks: list[_Item],
    offer: dict[str, str] | None,
    *,
    taste_known: bool,
) -> dict[str, Any]:
    """The template contract for one message (before the per-channel UTM tags)."""
    kind = spec.trigger_kind or "broadcast"
    variant = spec.variant(arm)
    cart = [_product_context(item, store) for item in own] if kind == "abandoned_cart" else []
    refill = _product_context(own[0], store) if kind == "replenishment" and own else None
    products = [_product_context(item, store) for item in picks]
    trigger = trigger_context(kind, target.payload, today, [item.product.title for item in own])
    if kind == "abandoned_cart":
        trigger["cart_url"] = f"{store.url.rstrip('/')}/cart"
    shown = [*own, *picks]
    return {
        "store": store.as_context(),
        "customer": {"first_name": recipient.first_name},
        "campaign": spec.name,
        "variant": arm,
        "subject": variant.subject if variant else None,
        "offer": offer,
        "topic": topic_of(item.product.product_type for item in shown),
        "picks": picks_kind(item.kind for item in picks),
        "taste_known": taste_known,
        "products": products,
        "cart": cart,
        "refill": refill,
        "trigger": trigger,
    }


def _product_context(item: _Item, store: StoreInfo) -> dict[str, Any]:
    product = item.product
    return {
        "sku": product.sku,
        "title": product.title,
        "url": store.product_url(product.handle),
        "image_url": product.image_url,
        "price": product.price,
        "explanation": item.explanation,
        "kind": item.kind,
        "product_type": product.product_type,
        "topic": topic_of([product.product_type]),
    }


# ---- who -------------------------------------------------------------------------------------------------------------


def _ensure_campaign(session: Session, spec: Campaign) -> int:
    """Record the campaign and its experiment (so assignments and reports can refer to them); return experiment id."""
    campaign = session.execute(select(CampaignRow).where(col(CampaignRow.name) == spec.name)).scalars().first()
    if campaign is None:
        campaign = CampaignRow(
            name=spec.name,
            kind=spec.kind,
            trigger_kind=spec.trigger_kind,
            template=spec.template,
            channels=",".join(spec.channels),
        )
        session.add(campaign)
        session.flush()
    experiment = session.execute(select(Experiment).where(col(Experiment.name) == spec.name)).scalars().first()
    if experiment is None:
        experiment = Experiment(
            campaign_id=campaign.id,  # type: ignore[arg-type]
            name=spec.name,
            variants=list(spec.variants),
            holdout_percent=round(spec.holdout_percent),
        )
        session.add(experiment)
        session.flush()
    return int(experiment.id)  # type: ignore[arg-type]


def campaign_targets(session: Session, spec: Campaign, today: date, segments: Mapping[str, Segment]) -> list[Target]:
    if spec.trigger_kind is None:
        key = broadcast_occurrence(spec, today)
        segment = segments.get(spec.segment or "")
        if segment is None:
            raise InputError(f"campaign {spec.name!r}: its segment {spec.segment!r} is not defined in segments.yaml")
        return [Target(key, cid) for cid in segment_members(session.connection(), segment, today)]
    rows = session.execute(
        select(TriggerOccurrence)
        .where(col(TriggerOccurrence.kind) == spec.trigger_kind)
        .where(col(TriggerOccurrence.due_on) >= today - timedelta(days=spec.lookback_days))
        .where(col(TriggerOccurrence.due_on) <= today)  # detected ahead (a birthday next week), sent when due
        .order_by(col(TriggerOccurrence.id))
    ).scalars()
    return [Target(row.occurrence_key, row.customer_id, dict(row.payload or {})) for row in rows]


def assignments_of(
    session: Session, experiment_id: int | None, spec: Campaign, ids: list[int], *, record: bool
) -> dict[int, str]:
    """Existing assignments win; new customers are bucketed (and recorded when ``record``)."""
    existing: dict[int, str] = {}
    if experiment_id is not None:
        for start in range(0, len(ids), 5_000):
            existing.update(
                session.execute(
                    select(col(Assignment.customer_id), col(Assignment.variant))
                    .where(col(Assignment.experiment_id) == experiment_id)
                    .where(col(Assignment.customer_id).in_(ids[start : start + 5_000]))
                )
                .tuples()
                .all()
            )
    fresh = [cid for cid in ids if cid not in existing]
    new = {cid: assign_variant(spec.name, cid, spec.variants, spec.holdout_percent, spec.weights) for cid in fresh}
    if record and experiment_id is not None:
        session.add_all(Assignment(experiment_id=experiment_id, customer_id=cid, variant=v) for cid, v in new.items())
    return {**existing, **new}


def _recipients(session: Session, ids: Iterable[int]) -> dict[int, Recipient]:
    return load_recipients(session.connection(), ids)


# ---- what ------------------------------------------------------------------------------------------------------------


def _candidates(session: Session, ids: list[int], limit: int) -> dict[int, list[_Item]]:
    """Each customer's top recommendations (active products), best first, with their explanation and kind."""
    picks: dict[int, list[_Item]] = defaultdict(list)
    items: dict[tuple[int | None, str, str], _Item] = {}  # one object per (product, reason): customers share them
    for start in range(0, len(ids), 5_000):
        rows = session.execute(
            select(col(Recommendation.customer_id), col(Recommendation.explanation), col(Recommendation.model), Product)
            .join(Product, col(Product.id) == col(Recommendation.product_id))
            .where(col(Recommendation.customer_id).in_(ids[start : start + 5_000]))
            .where(col(Recommendation.rank) <= limit)
            .where(col(Product.active).is_(True))
            .order_by(col(Recommendation.customer_id), col(Recommendation.rank))
        ).all()
        for customer_id, explanation, model, product in rows:
            key = (product.id, explanation, model)
            item = items.get(key)
            if item is None:
                item = items[key] = _Item(product, explanation, pick_kind(model, explanation))
            picks[customer_id].append(item)
    return picks


def _popular_fallback(
    session: Session, ids: list[int], today: date, likes: Sequence[str] = ()
) -> tuple[list[_Item], set[tuple[int, int]]]:
    """The store's best sellers (``popular``; only those mentioning one of ``likes`` when given), offered after each
    customer's own recommendations: when diversity has used those up, an email is filled with what sells rather
    than left short. Also the (customer, product) pairs of gear a customer already bought, which is not offered
    again (consumables may be)."""
    if likes:
        popular = [item for item in _popular(session, today, 10 * MAX_CANDIDATES) if _liked(item, likes)]
        popular = popular[:MAX_CANDIDATES]
    else:
        popular = _popular(session, today)
    gear = [item.product.id for item in popular if not item.product.consumable]
    owned: set[tuple[int, int]] = set()
    for start in range(0, len(ids) if gear else 0, 5_000):
        owned.update(
            (int(customer), int(product))
            for customer, product in session.execute(
                select(ORDERS.c.customer_id, ORDER_LINES.c.product_id)
                .select_from(ORDER_LINES.join(ORDERS, ORDERS.c.id == ORDER_LINES.c.order_id))
                .where(ORDERS.c.customer_id.in_(ids[start : start + 5_000]), ORDER_LINES.c.product_id.in_(gear))
                .distinct()
            ).tuples()
        )
    return popular, owned


def _popular(session: Session, today: date, count: int = MAX_CANDIDATES) -> list[_Item]:
    """The best-selling active products: by units in counted orders of the last 30 days ("Popular this month"),
    then of all time ("A customer favourite")."""
    month_ago = datetime.combine(today - timedelta(days=30), datetime.min.time(), tzinfo=UTC)
    until = datetime.combine(today + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    units = func.sum(ORDER_LINES.c.quantity)
    base = (
        select(ORDER_LINES.c.product_id, units.label("units"))
        .select_from(ORDER_LINES.join(ORDERS, ORDERS.c.id == ORDER_LINES.c.order_id))
        .join(PRODUCTS, PRODUCTS.c.id == ORDER_LINES.c.product_id)
        .where(counted_order(), PRODUCTS.c.active.is_(True), ORDERS.c.created_at < until, sellable_to_suggest())
        .group_by(ORDER_LINES.c.product_id)
        .order_by(units.desc(), ORDER_LINES.c.product_id)
        .limit(count)
    )
    recent = [int(pid) for pid, _ in session.execute(base.where(ORDERS.c.created_at >= month_ago)).tuples()]
    ever = [int(pid) for pid, _ in session.execute(base).tuples() if int(pid) not in recent]
    products = _products(session, set(recent) | set(ever))
    ranked = [(pid, "Popular this month") for pid in recent] + [(pid, "A customer favourite") for pid in ever]
    return [_Item(products[pid], reason, "popular") for pid, reason in ranked[:count] if pid in products]


def _with_cart_pairings(
    session: Session,
    own: Mapping[tuple[str, int], list[_Item]],
    candidates: Mapping[int, list[_Item]],
    likes: Sequence[str],
) -> dict[int, list[_Item]]:
    """Each cart's customer's candidates with what pairs with the cart first (``kind`` ``pairs``/``similar``, from
    ``related_products``), then their own recommendations; nothing in the cart, no gear they already bought."""
    carts = {key[1]: [int(item.product.id or 0) for item in items] for key, items in own.items() if items}
    related = load_related(session.connection(), {pid for pids in carts.values() for pid in pids}, MAX_CANDIDATES)
    products = _products(session, {p.related_product_id for pairs in related.values() for p in pairs})
    gear = {pid for pid, product in products.items() if not product.consumable}
    owned = bought_since(session, set(carts), gear, datetime(1970, 1, 1, tzinfo=UTC))
    out = dict(candidates)
    for customer, cart in carts.items():
        suggestions = cart_pairings(
            cart, {pid: [(p.related_product_id, p.score, p.explanation) for p in related.get(pid, [])] for pid in cart},
            MAX_CANDIDATES,
        )  # fmt: skip
        paired = [
            _Item(products[pid], text, pick_kind(None, text))
            for pid, text in suggestions
            if pid in products and (customer, pid) not in owned
        ]
        paired = [item for item in paired if not likes or _liked(item, likes)]
        shown = {*cart, *(item.product.id for item in paired)}
        out[customer] = paired + [item for item in candidates.get(customer, []) if item.product.id not in shown]
    return out


def _liked(item: _Item, likes: Sequence[str]) -> bool:
    return product_likes(item.product.flavour_notes, item.product.tags, likes)


def own_items(session: Session, targets: list[Target]) -> dict[tuple[str, int], list[_Item]]:
    """The trigger's own products per target, as they are now: the cart's items not bought since the cart (active
    ones, most recent first), or the product running low unless reordered since; the rest have none."""
    wanted: dict[tuple[str, int], list[int]] = {}
    since: dict[tuple[str, int], datetime] = {}
    refills: dict[tuple[str, int], Any] = {}
    for target in targets:
        payload = target.payload
        if "product_id" in payload:
            refills[_key(target)] = payload.get("last_ordered")
            wanted[_key(target)] = [int(payload["product_id"])]
            last = payload.get("last_ordered")
            if last:
                since[_key(target)] = datetime.combine(date.fromisoformat(str(last)) + timedelta(days=1),
                                                       datetime.min.time(), tzinfo=UTC)  # fmt: skip
        elif payload.get("product_ids"):
            wanted[_key(target)] = [int(pid) for pid in payload["product_ids"]][:MAX_CART_ITEMS]
            if payload.get("cart_at"):
                since[_key(target)] = as_aware(datetime.fromisoformat(str(payload["cart_at"])))
    if not wanted:
        return {}
    product_ids = {pid for pids in wanted.values() for pid in pids}
    products = _products(session, product_ids)
    bought = bought_since(session, {key[1] for key in since}, product_ids, min(since.values(), default=None))
    own: dict[tuple[str, int], list[_Item]] = {}
    for key, pids in wanted.items():
        moment = since.get(key)
        items = []
        for pid in pids:
            product = products.get(pid)
            if product is None or not product.active:
                continue
            if moment is not None and any(when >= moment for when in bought.get((key[1], pid), [])):
                continue
            if key in refills:
                items.append(_Item(product, _refill_reason(refills[key]), "refill"))
            else:
                items.append(_Item(product, "Waiting in your cart", "cart"))
        own[key] = items
    return own


def _refill_reason(last_ordered: Any) -> str:
    return f"You ordered it on {long_date(last_ordered)}" if last_ordered else "Time for a refill"


def _products(session: Session, ids: set[int]) -> dict[int, Product]:
    if not ids:
        return {}
    rows = session.execute(select(Product).where(col(Product.id).in_(sorted(ids)))).scalars()
    return {row.id: row for row in rows if row.id is not None}


def bought_since(
    session: Session, customers: set[int], products: set[int], since: datetime | None
) -> dict[tuple[int, int], list[datetime]]:
    """When each (customer, product) was bought (an order line of a counted order, or an analytics purchase) since
    ``since``."""
    if not customers or not products or since is None:
        return {}
    orders = (
        select(ORDERS.c.customer_id, ORDER_LINES.c.product_id, ORDERS.c.created_at.label("at"))
        .select_from(ORDER_LINES.join(ORDERS, ORDERS.c.id == ORDER_LINES.c.order_id))
        .where(ORDERS.c.customer_id.in_(sorted(customers)), ORDER_LINES.c.product_id.in_(sorted(products)))
        .where(ORDERS.c.created_at >= since, counted_order())
    )
    events = select(EVENTS.c.customer_id, EVENTS.c.product_id, EVENTS.c.occurred_at.label("at")).where(
        EVENTS.c.customer_id.in_(sorted(customers)),
        EVENTS.c.product_id.in_(sorted(products)),
        EVENTS.c.event_name == "purchase",
        EVENTS.c.occurred_at >= since,
    )
    found: dict[tuple[int, int], list[datetime]] = defaultdict(list)
    for customer, product, at in session.execute(union_all(orders, events)).tuples():
        found[(int(customer), int(product))].append(as_aware(at))
    return found


def as_aware(moment: datetime | str) -> datetime:
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# ---- offers ----------------------------------------------------------------------------------------------------------


def _offers(
    session: Session,
    spec: Campaign,
    targets: list[Target],
    variants: Mapping[int, str],
    report: OfferReport,
    *,
    dry_run: bool,
) -> dict[tuple[str, int], dict[str, str]]:
    """The offer each contacted target shows (the variant's offer, else the campaign's), with its code."""
    groups: dict[int, tuple[Offer, list[tuple[str, int]]]] = {}
    for target in targets:
        arm = variants.get(target.customer_id)
        if arm is None or arm == HOLDOUT:
            continue  # the holdout is never contacted: no code spent on it
        offer = _offer_of(spec, spec.variant(arm))
        if offer is None:
            continue
        groups.setdefault(id(offer), (offer, []))[1].append(_key(target))
    shown: dict[tuple[str, int], dict[str, str]] = {}
    conn = session.connection()
    for offer, holders in groups.values():
        codes = allocate_codes(conn, spec, offer, holders, dry_run=dry_run, report=report)
        shown.update({holder: offer_context(offer, code) for holder, code in codes.items()})
    return shown


def _offer_of(spec: Campaign, variant: Variant | None) -> Offer | None:
    if variant is not None and variant.offer is not None:
        return variant.offer
    return spec.spec.offer


# ---- preview ---------------------------------------------------------------------------------------------------------


def _log() -> logging.Logger | logging.LoggerAdapter[Any]:
    """The Prefect run logger inside a flow or task (its lines reach the UI), this module's logger outside one."""
    if "prefect" not in sys.modules:
        return logger
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logger
