"""Turn campaigns, triggers and audiences into planned messages (one ``OutboundMessage`` per person and channel).

Planning never sends: it decides who should hear what, assigns experiment variants (with a holdout group that is
recorded but never contacted), and gathers what templates render. ``channels.dispatch`` then gates and delivers.
Planning is idempotent: the same day planned twice yields the same ledger keys, so the ledger skips the repeats.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from channels.recipients import load_recipients
from models.campaigns import Campaign
from models.db import session_scope
from models.errors import InputError
from models.experiments import assign_variant
from models.message import OutboundMessage, Recipient
from models.schema import Assignment, Experiment, Product, Recommendation, TriggerOccurrence
from models.schema import Campaign as CampaignRow
from models.segments import AudienceDef, Segment
from models.segments import members as segment_members


@dataclass(frozen=True)
class StoreInfo:
    """What templates show about the store."""

    name: str
    url: str
    address: str

    def as_context(self) -> dict[str, str]:
        return {"name": self.name, "url": self.url, "address": self.address}


@dataclass
class Target:
    """One person a campaign reaches for one occurrence."""

    occurrence_key: str
    customer_id: int
    payload: dict[str, Any] = field(default_factory=dict)


def broadcast_occurrence(spec: Campaign, today: date) -> str:
    """Broadcasts go out once per ISO week: the week is the occurrence."""
    year, week, _ = today.isocalendar()
    return f"{spec.name}:{year}-W{week:02d}"


def plan_campaign(
    engine: Engine, spec: Campaign, today: date, store: StoreInfo, segments: Mapping[str, Segment] | None = None
) -> list[OutboundMessage]:
    """Planned messages of one campaign for ``today`` (holdout members included, marked ``variant='holdout'``).

    ``segments`` are the catalog's (a segment campaign needs its segment); a campaign outside its dates or disabled
    plans nothing."""
    if not spec.runs_on(today):
        return []
    with session_scope(engine) as session:
        experiment_id = _ensure_campaign(session, spec)
        targets = _targets(session, spec, today, segments or {})
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


def plan_audience(
    engine: Engine, name: str, audience: AudienceDef, segments: Mapping[str, Segment], today: date
) -> list[OutboundMessage]:
    """One message per member and platform; the occurrence is the audience itself, so a member is added once."""
    with session_scope(engine) as session:
        members = segment_members(session.connection(), segments[audience.segment], today)
        recipients = _recipients(session, members)
    return [
        OutboundMessage(
            occurrence_key=f"audience:{name}",
            channel=platform,
            recipient=recipients[customer_id],
            campaign=f"audience:{name}",
            audience=name,
        )
        for customer_id in members
        if customer_id in recipients
        for platform in audience.platforms
    ]


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


def _targets(session: Session, spec: Campaign, today: date, segments: Mapping[str, Segment]) -> list[Target]:
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


def _assignments(session: Session, experiment_id: int, spec: Campaign, ids: list[int]) -> dict[int, str]:
    """Existing assignments win; new customers are bucketed and recorded."""
    existing = dict(
        session.execute(
            select(col(Assignment.customer_id), col(Assignment.variant))
            .where(col(Assignment.experiment_id) == experiment_id)
            .where(col(Assignment.customer_id).in_(ids))
        ).all()
    )
    fresh = [cid for cid in ids if cid not in existing]
    new = {cid: assign_variant(spec.name, cid, spec.variants, spec.holdout_percent, spec.weights) for cid in fresh}
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
