"""Previews: the message a campaign would send a given customer today, planned as a run plans it but writing nothing
(no ledger row, no assignment, no offer code), and a spread of sample customers for a gallery (``omnicast preview``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from models.campaigns import HOLDOUT, Campaign
from models.context import MAX_CART_ITEMS, Diversity
from models.errors import InputError
from models.interactions import CART_EVENTS, EVENTS, ORDER_LINES, ORDERS, PRODUCTS, counted_order
from models.message import OutboundMessage
from models.planning import (
    PlanReport,
    StoreInfo,
    Target,
    as_aware,
    assignments_of,
    bought_since,
    broadcast_occurrence,
    campaign_targets,
    plan_targets,
)
from models.schema import Experiment, Recommendation, TriggerOccurrence
from models.segments import Segment


@dataclass
class Preview:
    """``plan_preview``'s answer: the email message per customer asked for, and notes on how it was made."""

    messages: dict[int, OutboundMessage]
    notes: dict[int, list[str]]


def plan_preview(
    engine: Engine,
    spec: Campaign,
    today: date,
    store: StoreInfo,
    segments: Mapping[str, Segment],
    customer_ids: Sequence[int],
    *,
    variant: str | None = None,
    channel: str = "email",
    diversity: Diversity | None = None,
) -> Preview:
    """The message ``spec`` would send each of ``customer_ids`` on ``today`` on ``channel``, planned the way a run
    would (with the campaign's whole audience, so diversity picks the same products) but writing nothing.

    A customer outside today's audience is planned from their latest moment of the campaign's trigger, or one made
    from their data (their last consumable order, their last order, their cart); the notes say so. A customer in
    the holdout is shown the first variant (``variant`` chooses one). ``InputError`` for a customer the campaign
    cannot say anything to (no cart ever, no products)."""
    if variant is not None and spec.variant(variant) is None:
        raise InputError(f"campaign {spec.name!r} has no variant {variant!r}; its variants: {', '.join(spec.variants)}")
    notes: dict[int, list[str]] = {cid: [] for cid in customer_ids}
    with Session(engine) as session:
        try:
            targets = campaign_targets(session, spec, today, segments)
            present = {t.customer_id for t in targets}
            for cid in customer_ids:
                if cid not in present:
                    targets.append(_preview_target(session, spec, today, cid, notes[cid]))
            ids = sorted({t.customer_id for t in targets})
            experiment = session.execute(select(Experiment).where(col(Experiment.name) == spec.name)).scalars().first()
            variants = assignments_of(session, experiment.id if experiment else None, spec, ids, record=False)
            for cid in customer_ids:
                arm = variant or variants.get(cid)
                if arm == HOLDOUT:
                    notes[cid].append(
                        f"in the campaign's holdout (never contacted); showing variant {spec.variants[0]}"
                    )
                    arm = spec.variants[0]
                variants[cid] = arm or spec.variants[0]
            report = PlanReport(spec.name)
            messages = plan_targets(
                session, spec, today, store, targets, variants, diversity or Diversity(), report,
                only=set(customer_ids), dry_run=True, channels=(channel,),
            )  # fmt: skip
        finally:
            session.rollback()
    by_customer = {m.customer_id: m for m in messages}
    for cid in customer_ids:
        if cid not in by_customer:
            raise InputError(
                f"campaign {spec.name!r} has nothing to show customer {cid} (no products to recommend, or the "
                "moment's products are gone)"
            )
    return Preview(by_customer, notes)


def _preview_target(session: Session, spec: Campaign, today: date, customer_id: int, notes: list[str]) -> Target:
    """A target for a customer outside today's audience: their latest moment of the campaign's trigger, or one made
    from their data."""
    if spec.trigger_kind is None:
        notes.append(f"not in segment {spec.segment} today; showing what they would get")
        return Target(broadcast_occurrence(spec, today), customer_id)
    row = (
        session.execute(
            select(TriggerOccurrence)
            .where(col(TriggerOccurrence.kind) == spec.trigger_kind, col(TriggerOccurrence.customer_id) == customer_id)
            .order_by(col(TriggerOccurrence.due_on).desc(), col(TriggerOccurrence.id).desc())
            .limit(1)
        )
        .scalars()
        .first()
    )
    if row is not None:
        notes.append(f"no {spec.trigger_kind} moment due today; showing their moment of {row.due_on.isoformat()}")
        return Target(row.occurrence_key, customer_id, dict(row.payload or {}))
    payload = _sample_payload(session, spec.trigger_kind, customer_id, today)
    notes.append(f"has never had a {spec.trigger_kind} moment; showing one made from their data")
    return Target(f"preview:{spec.name}:{customer_id}", customer_id, payload)


def _sample_payload(session: Session, kind: str, customer_id: int, today: date) -> dict[str, Any]:
    """A trigger payload for a customer who never had one, from their own data (for previews only)."""
    conn = session.connection()
    if kind == "churn_risk":
        last = conn.execute(
            select(func.max(ORDERS.c.created_at)).where(ORDERS.c.customer_id == customer_id, counted_order())
        ).scalar()
        return {"days_since_last_order": (today - as_aware(last).date()).days} if last else {}
    if kind == "replenishment":
        row = conn.execute(
            select(ORDER_LINES.c.product_id, ORDERS.c.created_at, ORDER_LINES.c.quantity, PRODUCTS.c.replenish_days)
            .select_from(
                ORDER_LINES.join(ORDERS, ORDERS.c.id == ORDER_LINES.c.order_id).join(
                    PRODUCTS, PRODUCTS.c.id == ORDER_LINES.c.product_id
                )
            )
            .where(ORDERS.c.customer_id == customer_id, PRODUCTS.c.consumable.is_(True), counted_order())
            .order_by(ORDERS.c.created_at.desc())
            .limit(1)
        ).first()
        if row is None:
            raise InputError(
                f"customer {customer_id} never bought a consumable: there is no refill to remind them of; "
                "preview another customer or use --sample"
            )
        ordered = as_aware(row.created_at).date()
        runs_out = ordered + timedelta(days=int(row.replenish_days or 30) * max(int(row.quantity or 1), 1))
        return {"product_id": int(row.product_id), "last_ordered": ordered.isoformat(),
                "runs_out_on": runs_out.isoformat()}  # fmt: skip
    if kind == "abandoned_cart":
        rows = conn.execute(
            select(EVENTS.c.product_id, func.max(EVENTS.c.occurred_at).label("at"))
            .where(
                EVENTS.c.customer_id == customer_id,
                EVENTS.c.event_name.in_(CART_EVENTS),
                EVENTS.c.product_id.is_not(None),
            )  # fmt: skip
            .group_by(EVENTS.c.product_id)
            .order_by(func.max(EVENTS.c.occurred_at).desc())
            .limit(MAX_CART_ITEMS)
        ).all()
        moments = {int(r.product_id): as_aware(r.at) for r in rows}
        bought = bought_since(session, {customer_id}, set(moments), min(moments.values(), default=None))
        still = [
            pid for pid, at in moments.items() if not any(when >= at for when in bought.get((customer_id, pid), []))
        ]
        if not still:
            raise InputError(
                f"customer {customer_id} has nothing left in a cart (never carted anything, or bought it all): an "
                "abandoned-cart email would have nothing to show; preview another customer or use --sample"
            )
        return {"product_ids": still, "cart_at": max(moments[pid] for pid in still).isoformat()}
    return {}


def preview_sample(
    engine: Engine, spec: Campaign, today: date, segments: Mapping[str, Segment], count: int
) -> list[int]:
    """Up to ``count`` customers to preview ``spec`` for: spread over today's audience, then (for a trigger) people
    with an earlier moment of it, then anyone with recommendations. Deterministic."""
    with Session(engine) as session:
        try:
            audience = sorted({t.customer_id for t in campaign_targets(session, spec, today, segments)})
            chosen = _spread(audience, count)
            if len(chosen) < count and spec.trigger_kind is not None:
                earlier = session.execute(
                    select(col(TriggerOccurrence.customer_id))
                    .where(col(TriggerOccurrence.kind) == spec.trigger_kind)
                    .group_by(col(TriggerOccurrence.customer_id))
                    .order_by(func.max(col(TriggerOccurrence.due_on)).desc(), col(TriggerOccurrence.customer_id))
                    .limit(count * 4)
                ).scalars()
                chosen += [cid for cid in _spread([c for c in earlier if c not in chosen], count - len(chosen))]
            if len(chosen) < count and spec.trigger_kind not in ("abandoned_cart", "replenishment"):
                more = session.execute(
                    select(col(Recommendation.customer_id)).distinct().order_by(col(Recommendation.customer_id))
                    .limit(count * 20)
                ).scalars()  # fmt: skip
                chosen += _spread([c for c in more if c not in chosen], count - len(chosen))
        finally:
            session.rollback()
    return chosen[:count]


def _spread(ids: Sequence[int], count: int) -> list[int]:
    """``count`` of ``ids`` spread evenly (first, last and between), in order."""
    if count <= 0 or not ids:
        return []
    if len(ids) <= count:
        return list(ids)
    step = (len(ids) - 1) / max(count - 1, 1)
    return list(dict.fromkeys(ids[round(i * step)] for i in range(count)))


