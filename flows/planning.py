"""Turn campaigns, triggers and audiences into planned messages (one ``OutboundMessage`` per person and channel).

Planning never sends: it decides who should hear what, assigns experiment variants (with a holdout group that is
recorded but never contacted), and gathers what templates render. ``channels.dispatch`` then gates and delivers.
Planning is idempotent: the same day planned twice yields the same ledger keys, so the ledger skips the repeats.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from channels.recipients import load_recipients
from models.db import session_scope
from models.errors import InputError
from models.message import OutboundMessage, Recipient
from models.schema import (
    Assignment,
    Campaign,
    Experiment,
    Order,
    Product,
    Recommendation,
    TriggerOccurrence,
)

HOLDOUT = "holdout"


@dataclass(frozen=True)
class StoreInfo:
    """What templates show about the store."""

    name: str
    url: str
    address: str

    def as_context(self) -> dict[str, str]:
        return {"name": self.name, "url": self.url, "address": self.address}


@dataclass(frozen=True)
class CampaignSpec:
    """A campaign: who (everyone with picks, or one trigger kind), what (template), where (channels)."""

    name: str
    template: str
    channels: tuple[str, ...]
    trigger_kind: str | None = None
    products: int = 4
    holdout_percent: int = 10
    variants: tuple[str, ...] = ("A",)
    lookback_days: int = 7

    @property
    def kind(self) -> str:
        return "triggered" if self.trigger_kind else "broadcast"


@dataclass(frozen=True)
class AudienceSpec:
    """An ad audience kept in step on ad platforms: members are added once (the ledger key is per audience)."""

    name: str
    platforms: tuple[str, ...] = ("meta", "google")
    description: str = ""


DEFAULT_CAMPAIGNS: tuple[CampaignSpec, ...] = (
    CampaignSpec("weekly-picks", "weekly_picks", ("email", "inapp"), products=4),
    CampaignSpec("birthday", "birthday", ("email", "inapp"), trigger_kind="birthday", products=3),
    CampaignSpec("replenishment", "replenishment", ("email", "inapp"), trigger_kind="replenishment", products=2),
    CampaignSpec("winback", "winback", ("email",), trigger_kind="churn_risk", products=3),
    CampaignSpec("abandoned-cart", "abandoned_cart", ("email", "inapp"), trigger_kind="abandoned_cart", products=2),
)

DEFAULT_AUDIENCES: tuple[AudienceSpec, ...] = (
    AudienceSpec("churn-risk", description="customers with a current churn-risk trigger"),
    AudienceSpec("high-value", description="top 10% of customers by net spend"),
)


@dataclass
class Target:
    """One person a campaign reaches for one occurrence."""

    occurrence_key: str
    customer_id: int
    payload: dict[str, Any] = field(default_factory=dict)


def campaign_by_name(name: str, specs: Sequence[CampaignSpec] = DEFAULT_CAMPAIGNS) -> CampaignSpec:
    for spec in specs:
        if spec.name == name:
            return spec
    known = ", ".join(spec.name for spec in specs)
    raise InputError(f"no campaign named {name!r}; known campaigns: {known}")


def broadcast_occurrence(spec: CampaignSpec, today: date) -> str:
    """Broadcasts go out once per ISO week: the week is the occurrence."""
    year, week, _ = today.isocalendar()
    return f"{spec.name}:{year}-W{week:02d}"


def assign_variant(experiment: str, customer_id: int, variants: Sequence[str], holdout_percent: int) -> str:
    """Deterministic bucket from a hash of (experiment, customer): stable across runs and machines."""
    digest = hashlib.sha256(f"{experiment}:{customer_id}".encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") % 10_000
    if bucket < holdout_percent * 100:
        return HOLDOUT
    return variants[bucket % len(variants)]


def plan_campaign(engine: Engine, spec: CampaignSpec, today: date, store: StoreInfo) -> list[OutboundMessage]:
    """Planned messages of one campaign for ``today`` (holdout members included, marked ``variant='holdout'``)."""
    with session_scope(engine) as session:
        experiment_id = _ensure_campaign(session, spec)
        targets = _targets(session, spec, today)
        if not targets:
            return []
        ids = sorted({t.customer_id for t in targets})
        variants = _assignments(session, experiment_id, spec, ids)
        recipients = _recipients(session, ids)
        picks = _picks(session, ids, spec.products)
        trigger_products = _products(session, _trigger_product_ids(targets))
    messages = []
    for target in targets:
        recipient = recipients.get(target.customer_id)
        if recipient is None:
            continue
        products = _context_products(target, picks.get(target.customer_id, []), trigger_products, spec.products)
        if spec.trigger_kind is None and not products:
            continue  # a picks email with no picks says nothing
        context = {
            "store": store.as_context(),
            "customer": {"first_name": recipient.first_name},
            "products": [_product_context(p, store) for p in products],
            "trigger": {"kind": spec.trigger_kind or "broadcast", **target.payload},
        }
        for channel in spec.channels:
            messages.append(
                OutboundMessage(
                    occurrence_key=target.occurrence_key,
                    channel=channel,
                    recipient=recipient,
                    campaign=spec.name,
                    template=spec.template,
                    variant=variants[target.customer_id],
                    context=context,
                )
            )
    return messages


def plan_audience(engine: Engine, spec: AudienceSpec, today: date) -> list[OutboundMessage]:
    """One message per member and platform; the occurrence is the audience itself, so a member is added once."""
    with session_scope(engine) as session:
        members = _audience_members(session, spec.name, today)
        recipients = _recipients(session, members)
    return [
        OutboundMessage(
            occurrence_key=f"audience:{spec.name}",
            channel=platform,
            recipient=recipients[customer_id],
            campaign=f"audience:{spec.name}",
            audience=spec.name,
        )
        for customer_id in members
        if customer_id in recipients
        for platform in spec.platforms
    ]


def _ensure_campaign(session: Session, spec: CampaignSpec) -> int:
    """Record the campaign and its experiment (so assignments and reports can refer to them); return experiment id."""
    campaign = session.execute(select(Campaign).where(col(Campaign.name) == spec.name)).scalars().first()
    if campaign is None:
        campaign = Campaign(
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
            holdout_percent=spec.holdout_percent,
        )
        session.add(experiment)
        session.flush()
    return int(experiment.id)  # type: ignore[arg-type]


def _targets(session: Session, spec: CampaignSpec, today: date) -> list[Target]:
    if spec.trigger_kind is None:
        key = broadcast_occurrence(spec, today)
        ids = session.execute(select(col(Recommendation.customer_id)).distinct()).scalars().all()
        return [Target(key, int(cid)) for cid in sorted(ids)]
    rows = session.execute(
        select(TriggerOccurrence)
        .where(col(TriggerOccurrence.kind) == spec.trigger_kind)
        .where(col(TriggerOccurrence.due_on) >= today - timedelta(days=spec.lookback_days))
        .where(col(TriggerOccurrence.due_on) <= today)  # detected ahead (a birthday next week), sent when due
        .order_by(col(TriggerOccurrence.id))
    ).scalars()
    return [Target(row.occurrence_key, row.customer_id, dict(row.payload or {})) for row in rows]


def _assignments(session: Session, experiment_id: int, spec: CampaignSpec, ids: list[int]) -> dict[int, str]:
    """Existing assignments win; new customers are bucketed and recorded."""
    existing = dict(
        session.execute(
            select(col(Assignment.customer_id), col(Assignment.variant))
            .where(col(Assignment.experiment_id) == experiment_id)
            .where(col(Assignment.customer_id).in_(ids))
        ).all()
    )
    fresh = [cid for cid in ids if cid not in existing]
    new = {cid: assign_variant(spec.name, cid, spec.variants, spec.holdout_percent) for cid in fresh}
    session.add_all(Assignment(experiment_id=experiment_id, customer_id=cid, variant=v) for cid, v in new.items())
    return {**existing, **new}


def _recipients(session: Session, ids: Iterable[int]) -> dict[int, Recipient]:
    return load_recipients(session.connection(), ids)


def _picks(session: Session, ids: list[int], limit: int) -> dict[int, list[tuple[Product, str]]]:
    """Each customer's top recommendations, best first, with their explanation."""
    rows = session.execute(
        select(col(Recommendation.customer_id), col(Recommendation.explanation), Product)
        .join(Product, col(Product.id) == col(Recommendation.product_id))
        .where(col(Recommendation.customer_id).in_(ids))
        .where(col(Recommendation.rank) <= limit)
        .order_by(col(Recommendation.customer_id), col(Recommendation.rank))
    ).all()
    picks: dict[int, list[tuple[Product, str]]] = defaultdict(list)
    for customer_id, explanation, product in rows:
        picks[customer_id].append((product, explanation))
    return picks


def _trigger_product_ids(targets: Iterable[Target]) -> set[int]:
    ids: set[int] = set()
    for target in targets:
        if "product_id" in target.payload:
            ids.add(int(target.payload["product_id"]))
        ids.update(int(pid) for pid in target.payload.get("product_ids", []))
    return ids


def _products(session: Session, ids: set[int]) -> dict[int, Product]:
    if not ids:
        return {}
    rows = session.execute(select(Product).where(col(Product.id).in_(ids))).scalars()
    return {row.id: row for row in rows if row.id is not None}


def _context_products(
    target: Target,
    picks: list[tuple[Product, str]],
    trigger_products: dict[int, Product],
    limit: int,
) -> list[tuple[Product, str]]:
    """The trigger's own products first (the item running low, the cart), then recommendations up to ``limit``."""
    payload = target.payload
    if "product_id" in payload:
        own, reason = [int(payload["product_id"])], "Time for a refill"
    else:
        own, reason = [int(pid) for pid in payload.get("product_ids", [])], "Still in your cart"
    chosen = [(trigger_products[pid], reason) for pid in own if pid in trigger_products]
    seen = {product.id for product, _ in chosen}
    for product, explanation in picks:
        if len(chosen) >= limit:
            break
        if product.id not in seen:
            chosen.append((product, explanation))
            seen.add(product.id)
    return chosen


def _product_context(item: tuple[Product, str], store: StoreInfo) -> dict[str, Any]:
    product, explanation = item
    return {
        "sku": product.sku,
        "title": product.title,
        "url": f"{store.url.rstrip('/')}/products/{product.handle}",
        "image_url": product.image_url,
        "price": product.price,
        "explanation": explanation,
    }


def _audience_members(session: Session, name: str, today: date) -> list[int]:
    if name == "churn-risk":
        ids = session.execute(
            select(col(TriggerOccurrence.customer_id))
            .where(col(TriggerOccurrence.kind) == "churn_risk")
            .where(col(TriggerOccurrence.due_on) >= today - timedelta(days=30))
            .distinct()
        ).scalars()
        return sorted(int(i) for i in ids)
    if name == "high-value":
        return _top_spenders(session, share=0.10)
    raise InputError(f"no audience named {name!r}; known audiences: churn-risk, high-value")


def _top_spenders(session: Session, share: float) -> list[int]:
    """Customers in the top ``share`` by net spend (order totals minus refunds, cancelled orders excluded)."""
    net = func.sum(col(Order.total) - col(Order.refunded_amount)).label("net")
    rows = session.execute(
        select(col(Order.customer_id), net)
        .where(col(Order.customer_id).is_not(None))
        .where(col(Order.cancelled_at).is_(None))
        .group_by(col(Order.customer_id))
        .order_by(net.desc(), col(Order.customer_id))
    ).all()
    spenders = [(int(cid), float(total)) for cid, total in rows if total and total > 0]
    keep = max(1, int(len(spenders) * share)) if spenders else 0
    return sorted(cid for cid, _ in spenders[:keep])
