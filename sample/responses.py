"""Simulated responses to the messages omnicast sent from the sample store (``omnicast demo``): clicks on tracked
links, and orders after a message, so the report has real lift to show (docs/SAMPLE_DATA.md, "Responses").

After a day's sends, :func:`simulate_responses` reads the ledger rows not simulated yet (campaign messages; ad
audiences are no message to a person) and, per customer, draws deterministically (a hash of the seed and the row,
no random state):

* **clicks** — each sent email is clicked with probability ``click_base + click_relevant × r``, where ``r`` is how
  relevant the email's picks are to the customer (below); the click goes to one of the picks (more likely the more
  relevant one), a median ~1.5 h after the send. It is written to the ``clicks`` table like the redirect of
  ``omnicast serve`` writes it (message id, campaign, variant, the product URL).
* **orders** — at most one per customer per simulated day, the first of: an order after a click (probability
  ``buy_after_click + buy_after_click_relevant × r`` of the clicked pick, about an hour after the click, buying that
  pick); an order after a message that was not clicked (email or in-app card, ``buy_after_send +
  buy_after_send_relevant × r``, a pick); the customer's **baseline** (their own pace: orders in the year before ÷
  365 × the horizon, between 0.2 % and 15 %; buying their usual product). Contacted customers get all three;
  held-out customers (the holdout), customers a frequency cap left out and those who opted out only the baseline:
  that difference is the lift the report measures. Orders are appended to ``shopify/orders_export.csv`` as a Shopify
  export writes them (Name ``#R<customer>-<yyyymmdd>``, tag ``simulated-response``, paid, unfulfilled, free shipping
  over $50, no tax, blank ``Accepts Marketing`` so they state no consent) and reach the database with the next sync.
* **relevance** ``r`` of a pick — the share of its features (type, roast, origin, flavour notes) among those of the
  products the customer bought before; of an email, its best pick's. The picks are the message's trigger products
  (the item running low, the cart) and the customer's top recommendations. Better recommendations, more response.
* **timing** — every response falls within ``horizon_hours`` (20 h) after its message: inside the default 5-day
  attribution window, and never more than a day after the sync's clock, which refuses later orders as "in the
  future".

Idempotent: the ledger keys simulated are kept in ``responses.json`` next to the store and never simulated again; a
click is not written for a message that already has one, nor an order whose Name the file already holds (so a run
stopped half-way, run again, writes only what is missing).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import NormalDist
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import insert, not_, select
from sqlalchemy.engine import Engine

from models.campaigns import HOLDOUT
from models.interactions import CUSTOMERS, ORDER_LINES, ORDERS, PRODUCTS, counted_order, read_frame, table_of
from models.schema import Click, Message, Recommendation, TriggerOccurrence
from sample.clock import STORE_TZ
from sample.layout import ORDERS_PATH

__all__ = ["RESPONSES_FILE", "ResponseRates", "ResponseReport", "simulate_responses"]

RESPONSES_FILE = "responses.json"
TAG = "simulated-response"
PICKS = 4
AUDIENCE_PREFIX = "audience:"

MESSAGES, CLICKS = table_of(Message), table_of(Click)
RECOMMENDATIONS, OCCURRENCES = table_of(Recommendation), table_of(TriggerOccurrence)


@dataclass(frozen=True)
class ResponseRates:
    """The response model's probabilities (see the module docstring); ``r`` is a relevance in [0, 1]."""

    click_base: float = 0.04
    click_relevant: float = 0.16
    buy_after_click: float = 0.25
    buy_after_click_relevant: float = 0.25
    buy_after_send: float = 0.01
    buy_after_send_relevant: float = 0.02
    baseline_min: float = 0.002
    baseline_max: float = 0.15
    horizon_hours: float = 20.0


@dataclass
class ResponseReport:
    """What one simulation wrote (``skipped`` when every message had been simulated already)."""

    messages: int = 0
    customers: int = 0
    clicks: int = 0
    orders: int = 0
    revenue: float = 0.0
    orders_by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def skipped(self) -> bool:
        return self.messages == 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "revenue": round(self.revenue, 2)}


def simulate_responses(
    engine: Engine,
    store_dir: Path,
    *,
    seed: int,
    store_url: str,
    rates: ResponseRates | None = None,
) -> ResponseReport:
    """Simulate clicks and orders for the campaign messages of the ledger not simulated yet (module docstring).

    ``store_dir`` is the sample store (holding ``shopify/orders_export.csv``); ``store_url`` is where product pages
    live (the clicks' targets). Returns what was written; the orders reach the database with the next sync."""
    rates = rates or ResponseRates()
    marker = store_dir / RESPONSES_FILE
    state = _read_marker(marker)
    done = set(state.get("ledger_keys", []))
    ledger = _ledger(engine)
    if ledger.empty:  # nothing was sent (an empty frame's columns are not strings)
        return ResponseReport(messages=0)
    ledger["key"] = ledger["occurrence_key"] + "|" + ledger["customer_id"].astype(str) + "|" + ledger["channel"]
    fresh = ledger[~ledger["key"].isin(done)]
    report = ResponseReport(messages=len(fresh))
    if fresh.empty:
        return report
    world = _World.load(engine, set(fresh["occurrence_key"]))
    clicks: list[dict[str, Any]] = []
    orders: list[_Order] = []
    by_customer: dict[int, list[Any]] = defaultdict(list)
    for row in fresh.itertuples(index=False):
        by_customer[int(row.customer_id)].append(row)
    for customer_id, rows in sorted(by_customer.items()):
        clicked, order = _respond(customer_id, rows, world, seed, store_url, rates)
        clicks += clicked
        if order is not None:
            orders.append(order)
    report.customers = int(fresh["customer_id"].nunique())
    report.clicks = _write_clicks(engine, clicks)
    written = _append_orders(store_dir / ORDERS_PATH, orders, world)
    report.orders = len(written)
    report.revenue = sum(order.total for order in written)
    report.orders_by_kind = dict(sorted(_count(order.kind for order in written).items()))
    rounds = [*state.get("rounds", []), report.as_dict()]
    _write_marker(marker, {"seed": seed, "rounds": rounds, "ledger_keys": sorted(done | set(fresh["key"]))})
    return report


# ---------------------------------------------------------------- reading


def _read_marker(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _write_marker(path: Path, state: Mapping[str, Any]) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(state, indent=1) + "\n")
    temporary.replace(path)


def _ledger(engine: Engine) -> pd.DataFrame:
    m = MESSAGES.c
    stmt = (
        select(
            m.id, m.occurrence_key, m.customer_id, m.channel, m.campaign, m.variant, m.state, m.created_at, m.sent_at
        )
        .where(m.campaign.is_not(None), not_(m.campaign.startswith(AUDIENCE_PREFIX, autoescape=True)))
        .where(m.state.in_(("sent", "suppressed", "failed")))
        .order_by(m.id)
    )
    ledger = read_frame(engine, stmt, datetimes=["created_at", "sent_at"])
    ledger["customer_id"] = ledger["customer_id"].astype("int64")
    return ledger


@dataclass
class _Product:
    id: int
    sku: str
    title: str
    handle: str
    price: float
    vendor: str
    features: frozenset[str]


@dataclass
class _World:
    """What the simulation reads about the customers of one round."""

    products: dict[int, _Product]
    customers: dict[int, dict[str, Any]]
    bought: dict[int, frozenset[str]]
    usual: dict[int, int]
    pace: dict[int, float]
    picks: dict[int, list[int]]
    trigger_products: dict[str, list[int]]

    @classmethod
    def load(cls, engine: Engine, occurrences: set[str]) -> _World:
        with engine.connect() as conn:
            p = PRODUCTS.c
            rows = conn.execute(
                select(
                    p.id,
                    p.sku,
                    p.title,
                    p.handle,
                    p.price,
                    p.vendor,
                    p.product_type,
                    p.roast,
                    p.origin,
                    p.flavour_notes,
                ).where(p.active.is_(True))
            ).all()
            products = {
                int(r.id): _Product(
                    int(r.id), r.sku, r.title, r.handle, float(r.price or 0), r.vendor or "", _features(r)
                )
                for r in rows
            }
            c = CUSTOMERS.c
            customers = {
                int(r.id): r._asdict()
                for r in conn.execute(
                    select(c.id, c.email, c.first_name, c.last_name, c.city, c.region, c.country, c.zip, c.phone).where(
                        c.erased_at.is_(None), c.email.is_not(None)
                    )
                ).all()
            }
            o, line = ORDERS.c, ORDER_LINES.c
            history = read_frame(
                conn,
                select(o.customer_id, o.created_at, line.product_id, line.quantity)
                .join(ORDER_LINES, line.order_id == o.id)
                .where(o.customer_id.is_not(None), line.product_id.is_not(None), counted_order()),
                datetimes=["created_at"],
            )
            r = RECOMMENDATIONS.c
            recommended = conn.execute(
                select(r.customer_id, r.product_id).where(r.rank <= PICKS).order_by(r.customer_id, r.rank)
            ).all()
            t = OCCURRENCES.c
            triggers = conn.execute(
                select(t.occurrence_key, t.payload).where(t.occurrence_key.in_(sorted(occurrences)))
            ).all()
        bought: dict[int, frozenset[str]] = {}
        usual: dict[int, int] = {}
        pace: dict[int, float] = {}
        history = history[history["product_id"].isin(list(products))]
        if not history.empty:
            history = history.astype({"customer_id": "int64", "product_id": "int64"})
            pairs = history.groupby(["customer_id", "product_id"], sort=True)["quantity"].sum().reset_index()
            for cid, pid in zip(pairs["customer_id"].tolist(), pairs["product_id"].tolist(), strict=True):
                bought[cid] = bought.get(cid, frozenset()) | products[pid].features
            top = pairs.sort_values(["customer_id", "quantity"], ascending=[True, False], kind="stable")
            top = top.drop_duplicates("customer_id")
            usual = dict(zip(top["customer_id"].tolist(), top["product_id"].tolist(), strict=True))
            recent = history[history["created_at"] > history["created_at"].max() - pd.Timedelta(days=365)]
            days = recent.assign(day=recent["created_at"].dt.date).groupby("customer_id")["day"].nunique()
            pace = {int(cid): n / 365 for cid, n in days.items()}
        picks: dict[int, list[int]] = defaultdict(list)
        for cid, pid in recommended:
            if int(pid) in products:
                picks[int(cid)].append(int(pid))
        trigger_products = {key: _payload_products(payload) for key, payload in triggers}
        return cls(products, customers, bought, usual, pace, dict(picks), trigger_products)

    def relevance(self, customer_id: int, product_id: int) -> float:
        product = self.products.get(product_id)
        if product is None or not product.features:
            return 0.0
        return len(product.features & self.bought.get(customer_id, frozenset())) / len(product.features)


def _features(row: Any) -> frozenset[str]:
    found = {f"type={row.product_type}"} if row.product_type else set()
    found |= {f"roast={row.roast}"} if row.roast else set()
    found |= {f"origin={row.origin}"} if row.origin else set()
    found |= {f"note={note.strip().lower()}" for note in (row.flavour_notes or "").split("|") if note.strip()}
    return frozenset(found)


def _payload_products(payload: Any) -> list[int]:
    payload = payload if isinstance(payload, dict) else json.loads(payload or "{}")
    found = [int(payload["product_id"])] if "product_id" in payload else []
    return found + [int(pid) for pid in payload.get("product_ids", [])]


# ---------------------------------------------------------------- drawing


def _uniform(seed: int, *parts: object) -> float:
    """A uniform draw in [0, 1) from a hash of the seed and ``parts``: the same inputs, the same draw."""
    digest = hashlib.blake2b(":".join(map(str, (seed, *parts))).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _lognormal(u: float, median_minutes: float, sigma: float = 0.8) -> timedelta:
    z = NormalDist().inv_cdf(min(max(u, 1e-9), 1 - 1e-9))
    return timedelta(minutes=median_minutes * math.exp(sigma * z))


@dataclass
class _Order:
    customer_id: int
    kind: str
    """after_click | after_message | baseline"""
    at: datetime
    anchor: datetime
    lines: list[tuple[int, int]]
    """(product id, quantity)"""
    total: float = 0.0

    @property
    def name(self) -> str:
        return f"#R{self.customer_id}-{self.anchor.astimezone(ZoneInfo(STORE_TZ)):%Y%m%d}"


def _respond(
    customer_id: int,
    rows: list[Any],
    world: _World,
    seed: int,
    store_url: str,
    rates: ResponseRates,
) -> tuple[list[dict[str, Any]], _Order | None]:
    """One customer's clicks and (at most one) order for their messages of this round."""
    horizon = timedelta(hours=rates.horizon_hours)
    anchor = min(row.created_at for row in rows).to_pydatetime()
    candidates: list[_Order] = []
    clicks: list[dict[str, Any]] = []
    sent = [row for row in rows if row.state == "sent" and not pd.isna(row.sent_at) and row.variant != HOLDOUT]
    for row in sent:
        sent_at = row.sent_at.to_pydatetime()
        picks = _message_picks(world, customer_id, row.occurrence_key)
        scores = [world.relevance(customer_id, pid) for pid in picks]
        best = max(scores, default=0.0)
        click_chance = rates.click_base + rates.click_relevant * best
        if row.channel == "email" and picks and _uniform(seed, "click", row.key) < click_chance:
            pick = _weighted_choice(picks, [0.1 + s for s in scores], _uniform(seed, "pick", row.key))
            at = min(sent_at + _lognormal(_uniform(seed, "click-time", row.key), 90), sent_at + horizon / 2)
            clicks.append(
                {
                    "message_id": int(row.id),
                    "customer_id": customer_id,
                    "campaign": row.campaign,
                    "variant": row.variant,
                    "url": f"{store_url.rstrip('/')}/products/{world.products[pick].handle}",
                    "clicked_at": at,
                }
            )
            chance = rates.buy_after_click + rates.buy_after_click_relevant * world.relevance(customer_id, pick)
            if _uniform(seed, "buy-after-click", row.key) < chance:
                delay = _lognormal(_uniform(seed, "buy-time", row.key), 45)
                when = min(at + delay, sent_at + horizon)
                candidates.append(_Order(customer_id, "after_click", when, anchor, [(pick, 1)]))
            continue
        if picks and _uniform(seed, "buy-after-message", row.key) < (
            rates.buy_after_send + rates.buy_after_send_relevant * best
        ):
            pick = _weighted_choice(picks, [0.1 + s for s in scores], _uniform(seed, "message-pick", row.key))
            when = sent_at + horizon * _uniform(seed, "message-time", row.key)
            candidates.append(_Order(customer_id, "after_message", when, anchor, [(pick, 1)]))
    baseline = min(
        max(world.pace.get(customer_id, 0.0) * horizon / timedelta(days=1), rates.baseline_min), rates.baseline_max
    )
    own = world.usual.get(customer_id) or next(iter(world.picks.get(customer_id, [])), None)
    day = f"{anchor:%Y%m%d}"
    if own is not None and _uniform(seed, "baseline", customer_id, day) < baseline:
        when = anchor + horizon * _uniform(seed, "baseline-time", customer_id, day)
        candidates.append(_Order(customer_id, "baseline", when, anchor, [(own, 1)]))
    if customer_id not in world.customers or not candidates:
        return clicks, None
    order = min(candidates, key=lambda o: o.at)
    if _uniform(seed, "staple", customer_id, day) < 0.25 and own is not None and own != order.lines[0][0]:
        order.lines.append((own, 1))
    return clicks, order


def _message_picks(world: _World, customer_id: int, occurrence_key: str) -> list[int]:
    """The products a message showed: its trigger's own products, then the customer's top recommendations."""
    chosen: list[int] = []
    for pid in [*world.trigger_products.get(occurrence_key, []), *world.picks.get(customer_id, [])]:
        if pid in world.products and pid not in chosen:
            chosen.append(pid)
    return chosen[:PICKS]


def _weighted_choice(options: list[int], weights: list[float], u: float) -> int:
    point = u * sum(weights)
    for option, weight in zip(options, weights, strict=True):
        if point < weight:
            return option
        point -= weight
    return options[-1]


def _count(values: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for value in values:
        counts[value] += 1
    return counts


# ---------------------------------------------------------------- writing


def _write_clicks(engine: Engine, clicks: list[dict[str, Any]]) -> int:
    if not clicks:
        return 0
    with engine.begin() as conn:
        ids = sorted({click["message_id"] for click in clicks})
        seen = set(conn.execute(select(CLICKS.c.message_id).where(CLICKS.c.message_id.in_(ids))).scalars())
        new = [click for click in clicks if click["message_id"] not in seen]
        if new:
            conn.execute(insert(CLICKS), new)
    return len(new)


def _stamp(at: datetime) -> str:
    return at.astimezone(ZoneInfo(STORE_TZ)).strftime("%Y-%m-%d %H:%M:%S %z")


def _append_orders(path: Path, orders: list[_Order], world: _World) -> list[_Order]:
    """Append the orders whose Name the export does not hold yet, as Shopify rows; return those written."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        name_at = header.index("Name")
        names = {row[name_at] for row in reader if len(row) > name_at}
    written = []
    rows: list[list[str]] = []
    for order in sorted(orders, key=lambda o: (o.at, o.customer_id)):
        if order.name in names:
            continue
        rows += _order_rows(order, world, header)
        written.append(order)
    if rows:
        with path.open("a", newline="", encoding="utf-8") as handle:
            csv.writer(handle, lineterminator="\n").writerows(rows)
    return written


def _order_rows(order: _Order, world: _World, header: list[str]) -> list[list[str]]:
    customer = world.customers[order.customer_id]
    products = [(world.products[pid], quantity) for pid, quantity in order.lines]
    subtotal = round(sum(p.price * quantity for p, quantity in products), 2)
    shipping = 0.0 if subtotal >= 50 else 5.95
    order.total = round(subtotal + shipping, 2)
    created = _stamp(order.at.astimezone(UTC))
    name = " ".join(part for part in (customer["first_name"], customer["last_name"]) if part)
    ident = str(5609000000000 + int(_uniform(0, order.name) * 999_999_999))
    first = {
        "Financial Status": "paid",
        "Paid at": created,
        "Fulfillment Status": "unfulfilled",
        "Currency": "USD",
        "Subtotal": f"{subtotal:.2f}",
        "Shipping": f"{shipping:.2f}",
        "Taxes": "0.00",
        "Total": f"{order.total:.2f}",
        "Discount Amount": "0.00",
        "Shipping Method": "Free Shipping" if shipping == 0 else "Standard Shipping",
        "Billing Name": name,
        "Billing City": customer["city"] or "",
        "Billing Zip": customer["zip"] or "",
        "Billing Province": customer["region"] or "",
        "Billing Country": customer["country"] or "",
        "Billing Phone": customer["phone"] or "",
        "Shipping Name": name,
        "Shipping City": customer["city"] or "",
        "Shipping Zip": customer["zip"] or "",
        "Shipping Province": customer["region"] or "",
        "Shipping Country": customer["country"] or "",
        "Payment Method": "Shopify Payments",
        "Refunded Amount": "0.00",
        "Tags": TAG,
        "Source": "web",
    }
    rows = []
    for index, (product, quantity) in enumerate(products):
        values = {
            "Name": order.name,
            "Email": customer["email"],
            "Created at": created,
            "Lineitem quantity": str(quantity),
            "Lineitem name": product.title,
            "Lineitem price": f"{product.price:.2f}",
            "Lineitem sku": product.sku,
            "Lineitem requires shipping": "true",
            "Lineitem taxable": "true",
            "Lineitem fulfillment status": "pending",
            "Vendor": product.vendor,
            "Id": ident,
            **(first if index == 0 else {}),
        }
        rows.append([values.get(column, "") for column in header])
    return rows
