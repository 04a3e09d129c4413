"""Segments: named groups of customers, defined in ``campaigns/segments.yaml`` over profile fields, orders, triggers and
recommendations, used by broadcast campaigns and ad audiences.

A segment is a list of conditions that must all hold (an empty list: every customer)::

    segments:
      fruity-fans:
        description: Customers whose picks lean fruity
        where:
          - likes: fruity              # a recommended product's flavour notes or tags mention it
          - orders_at_least: 2
      lapsing-vips:
        where:
          - trigger: churn_risk        # a churn-risk trigger due in the last 30 days
            within_days: 30
          - spend_top_share: 0.2       # the top 20 % by net spend

Conditions: ``has_recommendations: true``, ``trigger: KIND`` (+ ``within_days``), ``likes: WORD`` (or a list:
any of them), ``orders_at_least: N``, ``spend_at_least: AMOUNT``, ``spend_top_share: SHARE``,
``ordered_within_days: N``, ``not_ordered_within_days: N``, ``profile: {FIELD: VALUE or [VALUES]}`` over country,
region, city, loyalty_tier, timezone.

Scores from the repeat-purchase and spend models (``models/churn.py``, ``models/value.py``), computed as of the day's
start over the customers with counted orders (someone who never ordered has none and matches none of these):
``expected_purchases_at_least: N`` (expected purchases in the next 90 days), ``buy_probability_at_least: P``
(P(at least one purchase in the next 90 days), 0 to 1), ``churn_risk_above: P`` (1 − P(still active), 0 to 1),
``clv_at_least: AMOUNT`` (expected net spend over the next 365 days, undiscounted) and ``value_at_risk_at_least:
AMOUNT`` ((1 − P(active)) × the 365 days' value if still active: what the store stands to lose)::

      lapsing-big-spenders:
        where:
          - churn_risk_above: 0.5
          - value_at_risk_at_least: 200
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Connection

from models.schema import Customer, Order, Product, Recommendation, TriggerOccurrence
from models.yamlfile import YamlFileError, field_name, load_with_lines, validation_problem, where

SEGMENT_FILE = "segments.yaml"
_CUSTOMERS = Customer.__table__  # type: ignore[attr-defined]
_ORDERS = Order.__table__  # type: ignore[attr-defined]
_PRODUCTS = Product.__table__  # type: ignore[attr-defined]
_RECS = Recommendation.__table__  # type: ignore[attr-defined]
_TRIGGERS_T = TriggerOccurrence.__table__  # type: ignore[attr-defined]
PROFILE_FIELDS = ("country", "region", "city", "loyalty_tier", "timezone")
_TRIGGERS = ("abandoned_cart", "birthday", "churn_risk", "replenishment")


class Condition(BaseModel):
    """One condition of a segment; exactly one kind per list item (``within_days`` goes with ``trigger``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    has_recommendations: bool | None = None
    trigger: str | None = None
    within_days: int | None = Field(None, ge=0, le=365)
    likes: str | list[str] | None = None
    orders_at_least: int | None = Field(None, ge=1)
    spend_at_least: float | None = Field(None, ge=0)
    spend_top_share: float | None = Field(None, gt=0, le=1)
    ordered_within_days: int | None = Field(None, ge=1, le=3650)
    not_ordered_within_days: int | None = Field(None, ge=1, le=3650)
    profile: dict[str, str | list[str]] | None = None
    expected_purchases_at_least: float | None = Field(None, gt=0)
    buy_probability_at_least: float | None = Field(None, gt=0, le=1)
    churn_risk_above: float | None = Field(None, ge=0, lt=1)
    clv_at_least: float | None = Field(None, ge=0)
    value_at_risk_at_least: float | None = Field(None, ge=0)

    @field_validator("likes")
    @classmethod
    def _words(cls, value: str | list[str] | None) -> str | list[str] | None:
        words = [value] if isinstance(value, str) else (value or [])
        if value is not None and (not words or any(not 2 <= len(word.strip()) <= 40 for word in words)):
            raise ValueError("give a word (2 to 40 letters) or a list of them, e.g. [apricot, lemon, berry]")
        return value

    @field_validator("trigger")
    @classmethod
    def _trigger(cls, value: str | None) -> str | None:
        if value is not None and value not in _TRIGGERS:
            raise ValueError(f"unknown trigger {value!r}; one of: {', '.join(_TRIGGERS)}")
        return value

    @field_validator("profile")
    @classmethod
    def _profile(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        for name in value or {}:
            if name not in PROFILE_FIELDS:
                raise ValueError(f"unknown profile field {name!r}; one of: {', '.join(PROFILE_FIELDS)}")
        return value

    def kinds(self) -> list[str]:
        return [name for name, value in self if value is not None and name != "within_days"]

    def liked_words(self) -> list[str]:
        """The words of a ``likes`` condition, lower-cased (none for other kinds)."""
        return like_words(self.likes)


class Segment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    where: list[Condition] = Field(default_factory=list)

    def liked_words(self) -> list[str]:
        """Every word its ``likes`` conditions name: what its members are known to like."""
        return [word for condition in self.where for word in condition.liked_words()]


def like_words(value: str | list[str] | None) -> list[str]:
    """``likes: fruit`` or ``likes: [fruit, berry]`` as lower-cased words."""
    words = [value] if isinstance(value, str) else (value or [])
    return [word.strip().lower() for word in words]


def product_likes(flavour_notes: str | None, tags: str | None, words: Sequence[str]) -> bool:
    """Whether a product's flavour notes or tags mention one of ``words`` (as the ``likes`` condition judges it)."""
    text = f"{flavour_notes or ''}\n{tags or ''}".lower()
    return any(word in text for word in words)


class AudienceDef(BaseModel):
    """An ad audience kept in step with a segment on the ad platforms."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    segment: str
    platforms: list[str] = Field(default_factory=lambda: ["meta", "google", "tiktok"], min_length=1)
    description: str = ""

    @field_validator("platforms")
    @classmethod
    def _platforms(cls, value: list[str]) -> list[str]:
        unknown = [p for p in value if p not in ("meta", "google", "tiktok")]
        if unknown:
            raise ValueError(f"unknown ad platform {unknown[0]!r}; one of: meta, google, tiktok")
        return value


class _SegmentFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    segments: dict[str, Segment]
    audiences: dict[str, AudienceDef] = Field(default_factory=dict)


def load_segments(path: Path) -> tuple[dict[str, Segment], dict[str, AudienceDef]]:
    """The segments and ad audiences of ``path``; :class:`YamlFileError` naming file, line and field otherwise."""
    data, lines = load_with_lines(path)
    try:
        parsed = _SegmentFile.model_validate(data if data is not None else {"segments": {}})
    except ValidationError as exc:
        raise YamlFileError(validation_problem(path, lines, exc, _SegmentFile)) from None
    for name, segment in parsed.segments.items():
        for index, condition in enumerate(segment.where):
            kinds = condition.kinds()
            if len(kinds) != 1:
                loc: tuple[str | int, ...] = ("segments", name, "where", index)
                what = "no condition" if not kinds else f"{' and '.join(kinds)} together"
                raise YamlFileError(
                    f"{path}, line {where(lines, loc)}, field {field_name(loc)}: {what}; give one condition per "
                    "list item (they all must hold)"
                )
            if condition.within_days is not None and condition.trigger is None:
                loc = ("segments", name, "where", index, "within_days")
                raise YamlFileError(f"{path}, line {where(lines, loc)}, field {field_name(loc)}: goes with trigger")
    for name, audience in parsed.audiences.items():
        if audience.segment not in parsed.segments:
            loc = ("audiences", name, "segment")
            raise YamlFileError(
                f"{path}, line {where(lines, loc)}, field {field_name(loc)}: unknown segment {audience.segment!r}; "
                f"segments: {', '.join(sorted(parsed.segments))}"
            )
    return dict(parsed.segments), dict(parsed.audiences)


def members(conn: Connection, segment: Segment, today: date) -> list[int]:
    """The customer ids in ``segment`` on ``today`` (erased customers never), sorted."""
    ids: set[int] | None = None
    for condition in segment.where:
        found = _condition(conn, condition, today)
        ids = found if ids is None else ids & found
        if not ids:
            return []
    everyone = set(conn.execute(select(_CUSTOMERS.c.id).where(_CUSTOMERS.c.erased_at.is_(None))).scalars())
    return sorted(everyone if ids is None else ids & everyone)


def _condition(conn: Connection, c: Condition, today: date) -> set[int]:
    if c.has_recommendations is not None:
        having = set(conn.execute(select(_RECS.c.customer_id).distinct()).scalars())
        if c.has_recommendations:
            return having
        return set(conn.execute(select(_CUSTOMERS.c.id)).scalars()) - having
    if c.trigger is not None:
        query = select(_TRIGGERS_T.c.customer_id).where(_TRIGGERS_T.c.kind == c.trigger)
        query = query.where(_TRIGGERS_T.c.due_on <= today)
        if c.within_days is not None:
            query = query.where(_TRIGGERS_T.c.due_on >= today - timedelta(days=c.within_days))
        return set(conn.execute(query.distinct()).scalars())
    if c.likes is not None:
        patterns = [f"%{word}%" for word in c.liked_words()]
        query = (
            select(_RECS.c.customer_id)
            .join(Product, _PRODUCTS.c.id == _RECS.c.product_id)
            .where(
                or_(
                    *(
                        column.like(pattern)
                        for pattern in patterns
                        for column in (func.lower(_PRODUCTS.c.flavour_notes), func.lower(_PRODUCTS.c.tags))
                    )
                )
            )
            .distinct()
        )
        return set(conn.execute(query).scalars())
    if c.profile is not None:
        query = select(_CUSTOMERS.c.id)
        for name, value in c.profile.items():
            column = _CUSTOMERS.c[name]
            values = value if isinstance(value, list) else [value]
            query = query.where(column.in_(values))
        return set(conn.execute(query).scalars())
    score = next((name for name in _SCORE_CONDITIONS if getattr(c, name) is not None), None)
    if score is not None:
        column, above = _SCORE_CONDITIONS[score]
        scores = customer_scores_on(conn, today)
        value = scores[column] if column != "churn_risk" else 1.0 - scores["p_active"]
        threshold = float(getattr(c, score))
        chosen = value > threshold if above else value >= threshold
        return {int(customer) for customer in scores.loc[chosen, "customer_id"]}
    return _order_condition(conn, c, today)


_SCORE_CONDITIONS: dict[str, tuple[str, bool]] = {  # condition: (score column, strictly above)
    "expected_purchases_at_least": ("expected_purchases_90d", False),
    "buy_probability_at_least": ("p_buy_90d", False),
    "churn_risk_above": ("churn_risk", True),
    "clv_at_least": ("clv_365d", False),
    "value_at_risk_at_least": ("value_at_risk", False),
}
_SCORE_CACHE: dict[tuple[date, str], pd.DataFrame] = {}


def customer_scores_on(conn: Connection, today: date) -> pd.DataFrame:
    """Every customer's scores (``models.value.customer_scores``) from the counted orders placed before ``today``
    (UTC days), as of ``today``. The last result is kept by day and a digest of those orders, so the segments of a
    run share one fit while any change to the orders is scored afresh."""
    from models.churn import load_orders  # the models (scipy) load only when a segment uses a score
    from models.value import customer_scores

    orders = load_orders(conn, ZoneInfo("UTC"), before=datetime.combine(today, time(), UTC))
    digest = hashlib.sha256(pd.util.hash_pandas_object(orders, index=False).to_numpy().tobytes()).hexdigest()
    key = (today, digest)
    if key not in _SCORE_CACHE:
        empty = pd.DataFrame(columns=["customer_id", "p_active", *(column for column, _ in _SCORE_CONDITIONS.values())])
        _SCORE_CACHE.clear()
        _SCORE_CACHE[key] = customer_scores(orders, today) if len(orders) else empty
    return _SCORE_CACHE[key]


def _order_condition(conn: Connection, c: Condition, today: date) -> set[int]:
    start_of_day = datetime.combine(today, time(), UTC)  # judged as of the day's start: a rerun sees the same orders
    live = and_(
        _ORDERS.c.customer_id.is_not(None), _ORDERS.c.cancelled_at.is_(None), _ORDERS.c.created_at < start_of_day
    )
    if c.orders_at_least is not None:
        query = (
            select(_ORDERS.c.customer_id).where(live).group_by(_ORDERS.c.customer_id)
            .having(func.count() >= c.orders_at_least)
        )  # fmt: skip
        return set(conn.execute(query).scalars())
    net = func.sum(_ORDERS.c.total - _ORDERS.c.refunded_amount)
    if c.spend_at_least is not None:
        query = select(_ORDERS.c.customer_id).where(live).group_by(_ORDERS.c.customer_id)
        query = query.having(net >= c.spend_at_least)
        return set(conn.execute(query).scalars())
    if c.spend_top_share is not None:
        rows = conn.execute(
            select(_ORDERS.c.customer_id, net.label("net")).where(live).group_by(_ORDERS.c.customer_id)
            .order_by(net.desc(), _ORDERS.c.customer_id)
        ).all()  # fmt: skip
        spenders = [int(cid) for cid, total in rows if total and total > 0]
        keep = max(1, int(len(spenders) * c.spend_top_share)) if spenders else 0
        return set(spenders[:keep])
    days = c.ordered_within_days or c.not_ordered_within_days or 0
    since = datetime.combine(today - timedelta(days=days), time(), UTC)
    query = select(_ORDERS.c.customer_id).where(live, _ORDERS.c.created_at >= since).distinct()
    recent = set(conn.execute(query).scalars())
    if c.ordered_within_days is not None:
        return recent
    buyers = set(conn.execute(select(_ORDERS.c.customer_id).where(live).distinct()).scalars())
    return buyers - recent
