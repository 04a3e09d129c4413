"""Attribution: which message an order is credited to, and which orders each arm of an experiment placed.

Definitions (the report, its CSVs and the Prefect artifacts all use these):

* **Orders** — rows of ``orders`` with a customer that count as a purchase (:func:`models.interactions.counted_order`:
  not cancelled, not voided, not fully refunded). Revenue = ``total − refunded_amount``; time = ``created_at``.
* **Campaign messages** — ledger rows (``messages``) with a campaign that is not an ad audience (``audience:NAME``
  rows are hashed customer lists, not messages to a person).
* **Touches** — with model ``click`` (the default): each row of ``clicks`` (customer, ``clicked_at``, campaign,
  variant, the ledger row it came from); with model ``delivery``: each campaign message ``sent``, at ``sent_at``.
* **Last touch** — an order is credited to its customer's latest touch at or before it and at most ``window_days``
  earlier (``touch ≤ order ≤ touch + window``); on equal times the higher ledger id wins. An order without such a
  touch is not attributed; an attributed order is credited once, to one (campaign, variant, message). Touches of
  every campaign compete, whatever a report filters on, so filtering never moves an order to an older touch.
* **Exposures** — one per (campaign, arm, occurrence, customer) over the ledger rows that reached the holdout
  decision, which dispatch makes after consent, topic opt-outs, the suppression list and the address check: for a
  variant, rows ``sent``, ``failed``, ``pending`` (deferred), ``sending`` and ``suppressed``/``frequency_cap``; for
  the holdout, rows ``suppressed``/``holdout``. Both arms pass the same gates, so they are comparable, and a customer
  who lost a frequency-cap slot stays in their arm (intent to treat). The **exposure time** is the earliest
  ``created_at`` of the exposure's rows: the ledger claim, made at the same moment for contacted and held-out
  customers of an occurrence (a holdout row is recorded but never sent, so it has no ``sent_at``).
* **Window orders** — for an exposed customer, their orders placed within ``window_days`` after any of their
  exposures in that campaign and arm (``exposure ≤ order ≤ exposure + window``), each order once per (campaign, arm).
  This is how holdout members' orders count for the holdout arm (they had nothing to click or receive), and it is
  the measure lift compares for every arm: the same rule for contacted and held-out customers, independent of the
  attribution model. (Last-click revenue cannot be compared with a holdout, which cannot click.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, get_args

import pandas as pd
from sqlalchemy import not_, select
from sqlalchemy.engine import Connection, Engine

from models.campaigns import HOLDOUT
from models.errors import InputError
from models.interactions import ORDERS, counted_order, read_frame, table_of
from models.schema import Click, Message

__all__ = [
    "AUDIENCE_PREFIX",
    "DEFAULT_MODEL",
    "DEFAULT_WINDOW_DAYS",
    "MODELS",
    "Attribution",
    "AttributionModel",
    "attribute",
    "check_model",
    "exposures_of",
    "load_attribution",
    "window_orders",
]

AttributionModel = Literal["click", "delivery"]
MODELS: tuple[str, ...] = get_args(AttributionModel)
DEFAULT_MODEL: AttributionModel = "click"
DEFAULT_WINDOW_DAYS = 5
AUDIENCE_PREFIX = "audience:"
EXPOSED_STATES = ("sent", "failed", "pending", "sending")
"""Ledger states of a variant's row that reached the holdout decision (``suppressed`` rows: see ``AFTER_HOLDOUT``)."""
AFTER_HOLDOUT = ("frequency_cap",)
"""Suppression reasons dispatch decides after the holdout: such a row's customer was exposed (intent to treat)."""
NO_VARIANT = "-"
"""The arm of a campaign message planned without one."""

MESSAGES = table_of(Message)
CLICKS = table_of(Click)


def check_model(model: str) -> AttributionModel:
    """``model`` if it is an attribution model, else an ``InputError`` naming the choices."""
    if model not in MODELS:
        raise InputError(f"unknown attribution model {model!r}; choose one of: {', '.join(MODELS)}")
    return model  # type: ignore[return-value]


@dataclass
class Attribution:
    """Everything measurement needs, as frames (times are UTC ``datetime64``):

    ``ledger`` campaign messages (id, occurrence_key, customer_id, channel, campaign, variant, state, reason,
    created_at, sent_at); ``exposures`` (campaign, variant, occurrence_key, customer_id, exposed_at, sent, sent_at,
    first_id); ``clicks`` (id, message_id, customer_id, campaign, variant, clicked_at, exposed_at);
    ``orders`` (order_id, customer_id, ordered_at, revenue); ``attributed`` (the orders credited to a touch, with
    message_id, campaign, variant, touched_at, exposed_at). Window orders depend on which exposures a report looks at:
    :func:`window_orders` computes them for a chosen set."""

    model: AttributionModel
    window_days: float
    ledger: pd.DataFrame
    exposures: pd.DataFrame
    clicks: pd.DataFrame
    orders: pd.DataFrame
    attributed: pd.DataFrame


def load_attribution(
    connectable: Engine | Connection, model: str = DEFAULT_MODEL, window_days: float = DEFAULT_WINDOW_DAYS
) -> Attribution:
    """Read the ledger, clicks and orders once and attribute every order (see the module docstring)."""
    chosen = check_model(model)
    if window_days <= 0:
        raise InputError(f"the attribution window must be positive (got {window_days} days)")
    if isinstance(connectable, Engine):
        with connectable.connect() as conn:
            return load_attribution(conn, chosen, window_days)
    ledger = _load_ledger(connectable)
    clicks = _load_clicks(connectable, ledger)
    orders = _load_orders(connectable)
    return Attribution(
        model=chosen,
        window_days=window_days,
        ledger=ledger,
        exposures=exposures_of(ledger),
        clicks=clicks,
        orders=orders,
        attributed=attribute(orders, _touches(chosen, ledger, clicks), timedelta(days=window_days)),
    )


def _load_ledger(conn: Connection) -> pd.DataFrame:
    m = MESSAGES.c
    stmt = (
        select(
            m.id,
            m.occurrence_key,
            m.customer_id,
            m.channel,
            m.campaign,
            m.variant,
            m.state,
            m.reason,
            m.created_at,
            m.sent_at,
        )
        .where(m.campaign.is_not(None), not_(m.campaign.startswith(AUDIENCE_PREFIX, autoescape=True)))
        .order_by(m.id)
    )
    ledger = read_frame(conn, stmt, datetimes=["created_at", "sent_at"])
    ledger["variant"] = ledger["variant"].fillna(NO_VARIANT).astype(object)
    ledger["id"] = ledger["id"].astype("int64")
    ledger["customer_id"] = ledger["customer_id"].astype("int64")
    return ledger


def _load_clicks(conn: Connection, ledger: pd.DataFrame) -> pd.DataFrame:
    c = CLICKS.c
    stmt = (
        select(c.id, c.message_id, c.customer_id, c.campaign, c.variant, c.clicked_at)
        .where(c.customer_id.is_not(None), c.campaign.is_not(None))
        .where(not_(c.campaign.startswith(AUDIENCE_PREFIX, autoescape=True)))
        .order_by(c.id)
    )
    clicks = read_frame(conn, stmt, datetimes=["clicked_at"])
    clicks["variant"] = clicks["variant"].fillna(NO_VARIANT).astype(object)
    clicks["customer_id"] = clicks["customer_id"].astype("int64")
    clicks["message_id"] = pd.array(clicks["message_id"], dtype="Int64")
    # A click belongs to the period of the message it came from (its exposure), else to its own time.
    created = clicks[["message_id"]].merge(
        ledger[["id", "created_at"]], how="left", left_on="message_id", right_on="id"
    )["created_at"]
    clicks["exposed_at"] = created.set_axis(clicks.index).where(created.notna().to_numpy(), clicks["clicked_at"])
    clicks["exposed_at"] = pd.to_datetime(clicks["exposed_at"], utc=True)
    return clicks


def _load_orders(conn: Connection) -> pd.DataFrame:
    o = ORDERS.c
    stmt = (
        select(
            o.id.label("order_id"),
            o.customer_id,
            o.created_at.label("ordered_at"),
            (o.total - o.refunded_amount).label("revenue"),
        )
        .where(o.customer_id.is_not(None), counted_order())
        .order_by(o.created_at, o.id)
    )
    orders = read_frame(conn, stmt, datetimes=["ordered_at"])
    orders["customer_id"] = orders["customer_id"].astype("int64")
    orders["order_id"] = orders["order_id"].astype("int64")
    orders["revenue"] = orders["revenue"].astype(float).round(2)
    return orders


def exposed_rows(ledger: pd.DataFrame) -> pd.Series:
    """Which ledger rows reached the holdout decision (see the module docstring), as a boolean mask."""
    holdout = ledger["variant"] == HOLDOUT
    suppressed = ledger["state"] == "suppressed"
    variant_rows = ~holdout & (
        ledger["state"].isin(EXPOSED_STATES) | (suppressed & ledger["reason"].isin(AFTER_HOLDOUT))
    )
    return variant_rows | (holdout & suppressed & (ledger["reason"] == HOLDOUT))


def exposures_of(ledger: pd.DataFrame) -> pd.DataFrame:
    """One row per (campaign, variant, occurrence_key, customer_id): ``exposed_at`` (earliest created_at),
    ``sent`` (any of its rows sent), ``sent_at`` (earliest), ``first_id`` (its lowest ledger id)."""
    rows = ledger[exposed_rows(ledger)]
    keys = ["campaign", "variant", "occurrence_key", "customer_id"]
    if rows.empty:
        frame = pd.DataFrame(columns=[*keys, "exposed_at", "sent", "sent_at", "first_id"])
        frame["exposed_at"] = pd.to_datetime(frame["exposed_at"], utc=True)
        frame["sent_at"] = pd.to_datetime(frame["sent_at"], utc=True)
        return frame
    rows = rows.assign(sent=rows["state"] == "sent", sent_time=rows["sent_at"].where(rows["state"] == "sent"))
    grouped = rows.groupby(keys, sort=True, dropna=False)
    return grouped.agg(
        exposed_at=("created_at", "min"), sent=("sent", "any"), sent_at=("sent_time", "min"), first_id=("id", "min")
    ).reset_index()


def _touches(model: AttributionModel, ledger: pd.DataFrame, clicks: pd.DataFrame) -> pd.DataFrame:
    """``message_id, customer_id, campaign, variant, touched_at, exposed_at`` for the attribution model."""
    if model == "click":
        frame = clicks.rename(columns={"clicked_at": "touched_at"})
        frame = frame.assign(message_id=frame["message_id"].fillna(-1).astype("int64"), order_key=frame["id"])
    else:
        sent = ledger[(ledger["state"] == "sent") & ledger["sent_at"].notna()]
        frame = sent.rename(columns={"id": "message_id", "sent_at": "touched_at", "created_at": "exposed_at"})
        frame = frame.assign(order_key=frame["message_id"])
    columns = ["message_id", "customer_id", "campaign", "variant", "touched_at", "exposed_at", "order_key"]
    return frame[columns].reset_index(drop=True)


def attribute(orders: pd.DataFrame, touches: pd.DataFrame, window: timedelta) -> pd.DataFrame:
    """The orders credited to a touch (last touch within ``window`` before the order), with the touch's
    ``message_id, campaign, variant, touched_at, exposed_at``. ``touches`` has those columns plus ``customer_id``
    and ``order_key`` (the tie-break: on equal times the higher key is the later touch)."""
    columns = [
        "order_id",
        "customer_id",
        "ordered_at",
        "revenue",
        "message_id",
        "campaign",
        "variant",
        "touched_at",
        "exposed_at",
    ]
    if orders.empty or touches.empty:
        return _empty(columns, ["ordered_at", "touched_at", "exposed_at"])
    left = orders.sort_values(["ordered_at", "order_id"], kind="stable")
    right = touches.sort_values(["touched_at", "order_key"], kind="stable").drop(columns="order_key")
    right = right.rename(columns={"customer_id": "touch_customer"})
    right["customer_id"] = right["touch_customer"]
    matched = pd.merge_asof(
        left,
        right.drop(columns="touch_customer"),
        left_on="ordered_at",
        right_on="touched_at",
        by="customer_id",
        direction="backward",
        tolerance=pd.Timedelta(window),
        allow_exact_matches=True,
    )
    credited = matched[matched["touched_at"].notna()].copy()
    credited["message_id"] = credited["message_id"].astype("int64")
    return credited[columns].sort_values(["ordered_at", "order_id"]).reset_index(drop=True)


def window_orders(exposures: pd.DataFrame, orders: pd.DataFrame, window: timedelta) -> pd.DataFrame:
    """``campaign, variant, customer_id, order_id, ordered_at, revenue, exposed_at`` for every order placed within
    ``window`` after one of the customer's exposures in that campaign and arm (each order once per campaign and arm;
    ``exposed_at`` is the earliest exposure whose window holds it)."""
    columns = ["campaign", "variant", "customer_id", "order_id", "ordered_at", "revenue", "exposed_at"]
    if exposures.empty or orders.empty:
        return _empty(columns, ["ordered_at", "exposed_at"])
    pairs = exposures[["campaign", "variant", "customer_id", "exposed_at"]].merge(orders, on="customer_id")
    delay = pairs["ordered_at"] - pairs["exposed_at"]
    inside = pairs[(delay >= pd.Timedelta(0)) & (delay <= pd.Timedelta(window))]
    inside = inside.sort_values(["campaign", "variant", "order_id", "exposed_at"], kind="stable")
    inside = inside.drop_duplicates(["campaign", "variant", "order_id"], keep="first")
    return inside[columns].sort_values(["campaign", "variant", "ordered_at", "order_id"]).reset_index(drop=True)


def _empty(columns: list[str], times: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame({name: pd.Series(dtype=object) for name in columns})
    for name in times:
        frame[name] = pd.Series(dtype="datetime64[ns, UTC]")
    for name in ("order_id", "customer_id", "message_id"):
        if name in frame:
            frame[name] = pd.Series(dtype="int64")
    if "revenue" in frame:
        frame["revenue"] = pd.Series(dtype=float)
    return frame
