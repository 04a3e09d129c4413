"""The sample store's GA4 events (BigQuery export rows as JSONL): a browsing session around every order (views,
carts, checkout, purchase), sessions without a purchase, and recent abandoned carts, by visitors (GA4
``user_pseudo_id``: devices of accounts and guests, and anonymous browsers).

Events are simulated as numpy columns (:class:`Events`), then written as text: each line is ten pieces looked up in
pre-built JSON fragments (:class:`EventText`) and joined once per chunk, so ~5M lines take seconds, in bounded memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from sample.catalogue import CLUSTER_SHARE, CLUSTERS, GLOBAL, Catalogue, Taste, sample_products
from sample.clock import Clock
from sample.customers import Accounts
from sample.orders import Orders, Segments
from sample.people import Population
from sample.text import PAD3, PAD5, as_text, concat, matrix_text, money, piece_matrix

EVENTS_PER_CUSTOMER = 50
VIEW, CART, CHECKOUT, PURCHASE = 0, 1, 2, 3
EVENT_NAMES = ("view_item", "add_to_cart", "begin_checkout", "purchase")
US = 1_000_000  # microseconds per second (GA4 timestamps)
NULL_ECOMMERCE = ',"ecommerce":{"transaction_id":null,"purchase_revenue":null}'
TRAFFIC = (  # (source, medium, campaign name, share)
    ("google", "organic", "(organic)", 0.33),
    ("(direct)", "(none)", "(direct)", 0.24),
    ("newsletter", "email", "weekly_newsletter", 0.10),
    ("instagram.com", "referral", "(referral)", 0.07),
    ("facebook", "cpc", "bfcm_prospecting", 0.06),
    ("google", "cpc", "brand_search", 0.09),
    ("bing", "organic", "(organic)", 0.03),
    ("brewforum.example.org", "referral", "(referral)", 0.03),
    ("tiktok", "cpc", "spring_launch", 0.05),
)
DEVICES = (("mobile", 0.58), ("desktop", 0.37), ("tablet", 0.05))


@dataclass(frozen=True)
class Visitors:
    """GA4 browsers: who owns each ``user_pseudo_id`` (person or -1), its device, traffic source and taste."""

    owner: np.ndarray
    n_dev: np.ndarray  # per buyer (accounts, then guests)
    dev_start: np.ndarray  # per buyer: their first visitor index
    anon_start: int
    cluster: np.ndarray
    device: np.ndarray
    traffic: np.ndarray
    anon_day: np.ndarray  # the day an anonymous visitor is around


@dataclass(frozen=True)
class Events:
    """Every event, sorted by time (strictly increasing microseconds): visitor, logged-in account (-1: none),
    name (index into EVENT_NAMES), item (product * 3 + quantity - 1 for single-item events, else -1) and order
    (for checkouts and purchases, else -1)."""

    ts: np.ndarray
    visitor: np.ndarray
    user: np.ndarray
    name: np.ndarray
    item: np.ndarray
    order: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)


# ---------------------------------------------------------------- simulation


@dataclass(frozen=True)
class _Browsing:
    """What a session looks at: the visitors' tastes over the catalogue."""

    visitors: Visitors
    taste: Taste
    cat: Catalogue

    def device_of(self, buyer: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One of each buyer's devices (visitor index), at random."""
        vis = self.visitors
        return np.asarray(vis.dev_start[buyer] + (rng.random(len(buyer)) * vis.n_dev[buyer]).astype(np.int64))

    def browsed(self, visitor: np.ndarray, day: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Products a visitor looks at: mostly from their taste cluster; archived ones give way to successors."""
        rows = np.where(rng.random(len(visitor)) < 0.1, GLOBAL, self.visitors.cluster[visitor])
        product = sample_products(self.taste.cdfs, rows, rng)
        return np.where(day > self.cat.archive_day[product], self.cat.replacement[product], product)

    def session_events(
        self,
        start: np.ndarray,
        visitor: np.ndarray,
        user: np.ndarray,
        day: np.ndarray,
        n_views: np.ndarray,
        cart: np.ndarray,
        checkout: np.ndarray,
        rng: np.random.Generator,
    ) -> dict[str, np.ndarray]:
        """Expand sessions into views a minute apart, then add_to_cart of the last item viewed, then checkout."""
        s = np.repeat(np.arange(len(start)), n_views)
        step = np.arange(len(s)) - np.repeat(np.cumsum(n_views) - n_views, n_views)
        view_ts = start[s] + step * 60 * US + rng.integers(0, 50 * US, len(s))
        product = self.browsed(visitor[s], day[s], rng)
        last = product[np.cumsum(n_views) - 1]
        qty = np.where(rng.random(len(start)) < 0.1, 2, 1)
        item = np.where(self.cat.gift_card[last], last * 3, last * 3 + qty - 1)
        cart_ts = start + n_views * 60 * US + rng.integers(0, 50 * US, len(start))
        checkout_ts = cart_ts + rng.integers(30, 300, len(start)) * US
        return _stack(
            ts=[view_ts, cart_ts[cart], checkout_ts[checkout]],
            visitor=[visitor[s], visitor[cart], visitor[checkout]],
            user=[user[s], user[cart], user[checkout]],
            name=[VIEW, CART, CHECKOUT],
            item=[product * 3, item[cart], item[checkout]],
            order=[-1, -1, -1],
        )


def simulate_events(
    population: Population,
    segments: Segments,
    accounts: Accounts,
    orders: Orders,
    cat: Catalogue,
    taste: Taste,
    clock: Clock,
    rng: np.random.Generator,
) -> tuple[Visitors, Events]:
    """The visitors and about EVENTS_PER_CUSTOMER events per account: purchase sessions, recent abandoned carts,
    and browsing sessions filling the rest."""
    visitors = _visitors(population, clock, rng)
    browsing = _Browsing(visitors, taste, cat)
    sessions = _purchase_sessions(orders, population, browsing, clock, rng)
    recent = _recent_carts(orders, population, browsing, clock, rng)
    budget = EVENTS_PER_CUSTOMER * population.accounts - len(sessions["ts"]) - len(recent["ts"])
    parts = [sessions, _browse_sessions(budget, population, segments, accounts, browsing, clock, rng), recent]
    ev = {key: np.concatenate([part[key] for part in parts]) for key in sessions}
    order = np.argsort(ev["ts"], kind="stable")
    ev = {key: values[order] for key, values in ev.items()}
    step = np.arange(len(order))
    ev["ts"] = np.maximum.accumulate(ev["ts"] - step) + step  # strictly increasing: no two lines identical
    return visitors, Events(**ev)


def _visitors(population: Population, clock: Clock, rng: np.random.Generator) -> Visitors:
    """Browsers (GA4 ``user_pseudo_id``): 1–3 devices per account, one per guest, and anonymous visitors."""
    n, g, days = population.accounts, population.guests, clock.days
    n_dev = np.concatenate([1 + (rng.random(n) < 0.35) + (rng.random(n) < 0.10), np.ones(g, dtype=np.int64)])
    owner = np.concatenate([np.repeat(np.arange(n + g), n_dev), np.full(max(10, round(1.2 * n)), -1)])
    total = len(owner)
    cluster = np.where(
        owner >= 0, population.cluster[np.maximum(owner, 0)], rng.choice(len(CLUSTERS), total, p=CLUSTER_SHARE)
    )
    return Visitors(
        owner=owner,
        n_dev=n_dev,
        dev_start=np.cumsum(n_dev) - n_dev,
        anon_start=int(n_dev.sum()),
        cluster=cluster,
        device=rng.choice(len(DEVICES), total, p=[d[1] for d in DEVICES]),
        traffic=rng.choice(len(TRAFFIC), total, p=[t[3] for t in TRAFFIC]),
        anon_day=rng.choice(days, total, p=clock.season),
    )


def _purchase_sessions(
    orders: Orders, population: Population, browsing: _Browsing, clock: Clock, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Per order: view_item and add_to_cart per line, a few other views, begin_checkout, purchase."""
    o, end_us = orders, clock.end_epoch * US
    n_orders = len(o.buyer)
    visitor = browsing.device_of(o.buyer, rng)
    user = np.where((o.buyer < population.accounts) & (rng.random(n_orders) < 0.92), o.buyer, -1)
    created = o.ts * US
    purchase = np.minimum(created + rng.integers(1 * US, 6 * US, n_orders), end_us - 2 * US)
    checkout = created - rng.integers(60 * US, 600 * US, n_orders)
    lo = o.line_order
    position = np.arange(len(lo)) - o.first_line[lo]
    cart = checkout[lo] - (o.n_lines[lo] - position) * rng.integers(20 * US, 180 * US, len(lo))
    view = cart - rng.integers(10 * US, 120 * US, len(lo))
    extra = np.repeat(np.arange(n_orders), rng.poisson(0.8, n_orders))
    extra_product = browsing.browsed(visitor[extra], o.day[extra], rng)
    extra_ts = checkout[extra] - (o.n_lines[extra] + 1) * 200 * US - rng.integers(0, 1200 * US, len(extra))
    single = o.line_product * 3
    return _stack(
        ts=[view, cart, extra_ts, checkout, purchase],
        visitor=[visitor[lo], visitor[lo], visitor[extra], visitor, visitor],
        user=[user[lo], user[lo], user[extra], user, user],
        name=[VIEW, CART, VIEW, CHECKOUT, PURCHASE],
        item=[single, single + o.line_qty - 1, extra_product * 3, -1, -1],
        order=[-1, -1, -1, np.arange(n_orders), np.arange(n_orders)],
    )


def _browse_sessions(
    budget: int,
    population: Population,
    segments: Segments,
    accounts: Accounts,
    browsing: _Browsing,
    clock: Clock,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Sessions without purchase (about ``budget`` events): views, sometimes a cart, sometimes a checkout."""
    n, g, vis, days = population.accounts, population.guests, browsing.visitors, clock.days
    sessions = max(0, int(round(budget / 3.19)))
    who = rng.choice(3, sessions, p=[0.55, 0.05, 0.40])  # account, guest, anonymous
    weight = accounts.order_count + 1.0
    account = rng.choice(n, sessions, p=weight / weight.sum())
    buyer = np.where(who == 0, account, n + rng.integers(0, g, sessions))
    anonymous = vis.anon_start + rng.integers(0, len(vis.owner) - vis.anon_start, sessions)
    visitor = np.where(who == 2, anonymous, browsing.device_of(buyer, rng))
    first_day, end_day = segments.first_day[buyer], segments.end_day[buyer]
    lo = np.maximum(np.where(who == 0, first_day - 30, first_day - 10), 0)
    hi = np.minimum(np.where(who == 0, end_day + 60, first_day + 30), days - 1)
    day = (lo + rng.random(sessions) * (np.maximum(hi, lo) - lo + 1)).astype(np.int64)
    wander = vis.anon_day[visitor] + np.round(rng.normal(0, 10, sessions)).astype(np.int64)
    wander = np.where((wander >= 0) & (wander < days), wander, vis.anon_day[visitor])
    day = np.where(who == 2, wander, day)
    user = np.where((who == 0) & (rng.random(sessions) < 0.55), account, -1)
    start = clock.times_of_day(day, rng) * US + rng.integers(0, US, sessions)
    start = np.minimum(start, (clock.end_epoch - 7200) * US)
    n_views = np.minimum(1 + rng.poisson(1.8, sessions), 8)
    cart = rng.random(sessions) < 0.28
    checkout = cart & (rng.random(sessions) < 0.4)
    return browsing.session_events(start, visitor, user, day, n_views, cart, checkout, rng)


def _recent_carts(
    orders: Orders, population: Population, browsing: _Browsing, clock: Clock, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Logged-in customers who put something in the cart in the last 3 days and have not ordered since a week."""
    n, o, days = population.accounts, orders, clock.days
    last_day = np.full(n, -1)
    account = o.buyer < n
    np.maximum.at(last_day, o.buyer[account], o.day[account])
    candidates = np.flatnonzero((last_day >= 0) & (last_day < days - 7))
    if len(candidates) == 0:
        candidates = np.arange(n)
    chosen = rng.choice(candidates, size=min(len(candidates), max(1, round(0.015 * n))), replace=False)
    k = len(chosen)
    start = (clock.end_epoch - rng.integers(3600, 3 * 86400 - 600, k)) * US
    visitor = browsing.device_of(chosen, rng)
    n_views = 1 + (rng.random(k) < 0.5)
    return browsing.session_events(
        start, visitor, chosen, np.full(k, days - 1), n_views, np.ones(k, dtype=bool), rng.random(k) < 0.6, rng
    )


def _stack(**columns: list[Any]) -> dict[str, np.ndarray]:
    """Stack event columns given per group (arrays, or constants broadcast to the group's length)."""
    sizes = [len(ts) for ts in columns["ts"]]
    out = {}
    for key, groups in columns.items():
        dtype = np.int8 if key == "name" else np.int64
        out[key] = np.concatenate(
            [np.broadcast_to(np.asarray(g, dtype=dtype), (size,)) for g, size in zip(groups, sizes, strict=True)]
        )
    return out


def event_counts(events: Events, orders: Orders, population: Population, clock: Clock) -> dict[str, Any]:
    """manifest.expected: events (by name, anonymous), logged-in customers, and the customers with an abandoned
    cart in the last 3 days (no purchase after it)."""
    ev, o, n = events, orders, population.accounts
    names = np.bincount(ev.name, minlength=len(EVENT_NAMES))
    recent = (ev.name == CART) & (ev.user >= 0) & (ev.ts >= (clock.end_epoch - 3 * 86400) * US)
    latest_cart = np.full(n, -1, dtype=np.int64)
    np.maximum.at(latest_cart, ev.user[recent], ev.ts[recent])
    bought = (ev.name == PURCHASE) & (o.buyer[np.maximum(ev.order, 0)] < n)
    last_purchase = np.full(n, -1, dtype=np.int64)
    np.maximum.at(last_purchase, o.buyer[ev.order[bought]], ev.ts[bought])
    return {
        "events": len(ev),
        "events_by_name": {e: int(c) for e, c in zip(EVENT_NAMES, names, strict=True)},
        "anonymous_events": int((ev.user < 0).sum()),
        "logged_in_customers": int(len(np.unique(ev.user[ev.user >= 0]))),
        "recent_abandoned_carts": int(((latest_cart >= 0) & (latest_cart > last_purchase)).sum()),
    }


# ---------------------------------------------------------------- text


def item_fragments(cat: Catalogue) -> np.ndarray:
    """GA4 ``items[]`` entries per product and quantity 1–3 (index product * 3 + quantity - 1). ASCII-escaped, so
    the event lines are pure ASCII and the 2 GB of store-L events are written without transcoding."""
    return np.array(
        [
            json.dumps(
                {"item_id": sku, "item_name": title, "item_category": kind, "price": int(c) / 100, "quantity": q},
                separators=(",", ":"),
                ensure_ascii=True,
            )
            for sku, title, kind, c in zip(cat.sku, cat.title, cat.type, cat.price_cents, strict=True)
            for q in (1, 2, 3)
        ],
        dtype=object,
    )


@cache
def _traffic_and_device() -> np.ndarray:
    """The line's last piece per (traffic source, device) pair: ``traffic_source`` and ``device`` objects."""
    return np.array(
        [
            f',"traffic_source":{json.dumps({"source": s, "medium": m, "name": c}, separators=(",", ":"))}'
            f',"device":{{"category":"{d}"}}}}\n'
            for s, m, c, _ in TRAFFIC
            for d, _ in DEVICES
        ],
        dtype=object,
    )


@dataclass(frozen=True)
class EventText:
    """Pre-built JSON fragments, so an event line is ten looked-up pieces: per local day (``date``), per high
    digits of the timestamp's seconds (``seconds_high``, from ``seconds_base``), per event name, per visitor
    (``pseudo``: the user_pseudo_id piece; ``tail``: traffic source and device), per account + 1 (``user``),
    per product and quantity (``single``) and per order (``checkout``, ``purchase``) the items and ecommerce."""

    clock: Clock
    seconds_base: int
    date: np.ndarray
    seconds_high: np.ndarray
    name: np.ndarray
    pseudo: np.ndarray
    user: np.ndarray
    single: np.ndarray
    checkout: np.ndarray
    purchase: np.ndarray
    tail: np.ndarray


def event_text(
    events: Events,
    visitors: Visitors,
    orders: Orders,
    order_names: np.ndarray,
    order_totals: np.ndarray,
    accounts: Accounts,
    cat: Catalogue,
    clock: Clock,
    rng: np.random.Generator,
) -> EventText:
    """The fragments for these events; ``rng`` draws the random part of each visitor's user_pseudo_id."""
    o = orders
    fragments = item_fragments(cat)
    line_fragment = fragments[o.line_product * 3 + o.line_qty - 1]
    last = np.r_[o.line_order[1:] != o.line_order[:-1], True]
    items = "[" + np.add.reduceat(line_fragment + np.where(last, "", ","), o.first_line) + "]"
    revenue = ',"ecommerce":{"transaction_id":"' + order_names + '","purchase_revenue":'
    high = events.ts // US // 100_000  # event_timestamp = high digits + 5 + 3 + 3 padded digits
    seconds_base = int(high.min()) if len(high) else 0
    return EventText(
        clock=clock,
        seconds_base=seconds_base,
        date='{"event_date":"' + clock.ga4_dates + '","event_timestamp":',
        seconds_high=as_text(np.arange(seconds_base, int(high.max()) + 1 if len(high) else 1)),
        name=np.array([f',"event_name":"{name}"' for name in EVENT_NAMES], dtype=object),
        pseudo=_pseudo_ids(events, visitors, clock, rng),
        user=np.concatenate(
            [[',"user_id":null,"items":'], ',"user_id":"' + as_text(accounts.customer_id) + '","items":']
        ).astype(object),
        single="[" + fragments + "]" + NULL_ECOMMERCE,
        checkout=items + NULL_ECOMMERCE,
        purchase=items + revenue + money(order_totals) + "}",
        tail=_traffic_and_device()[visitors.traffic * len(DEVICES) + visitors.device],
    )


def _pseudo_ids(events: Events, visitors: Visitors, clock: Clock, rng: np.random.Generator) -> np.ndarray:
    """Per visitor, the ``user_pseudo_id`` piece: GA4's ``<random>.<first seen, epoch seconds>``."""
    first_seen = np.full(len(visitors.owner), clock.start_epoch, dtype=np.int64)
    first_seen[np.unique(events.visitor)] = clock.end_epoch
    np.minimum.at(first_seen, events.visitor, events.ts // US)
    random_part = as_text(1_000_000_000 + rng.choice(9_000_000_000, len(visitors.owner), replace=False))
    return np.asarray(',"user_pseudo_id":"' + random_part + "." + as_text(first_seen) + '"')


def event_pieces(
    events: Events,
    text: EventText,
    idx: np.ndarray,
    pseudo: np.ndarray | None = None,
    body: np.ndarray | None = None,
) -> np.ndarray:
    """The events at ``idx`` as a piece matrix (optionally another user_pseudo_id piece or items body)."""
    ev = events
    ts, name, order, visitor = ev.ts[idx], ev.name[idx], ev.order[idx], ev.visitor[idx]
    if body is None:
        body = np.empty(len(idx), dtype=object)
        single, purchase = order < 0, name == PURCHASE
        body[single] = text.single[ev.item[idx][single]]
        body[~single & ~purchase] = text.checkout[order[~single & ~purchase]]
        body[purchase] = text.purchase[order[purchase]]
    pseudo = text.pseudo[visitor] if pseudo is None else pseudo
    seconds, micros = ts // US, ts % US
    return piece_matrix(
        [
            text.date[text.clock.local_day_index(seconds)],
            text.seconds_high[seconds // 100_000 - text.seconds_base],
            PAD5[seconds % 100_000],
            PAD3[micros // 1000],
            PAD3[micros % 1000],
            text.name[name],
            pseudo,
            text.user[ev.user[idx] + 1],
            body,
            text.tail[visitor],
        ]
    )


def event_lines(
    events: Events,
    text: EventText,
    idx: np.ndarray,
    pseudo: np.ndarray | None = None,
    body: np.ndarray | None = None,
) -> np.ndarray:
    """JSONL lines (one string each) for the events at ``idx``; see :func:`event_pieces`."""
    return concat(list(event_pieces(events, text, idx, pseudo, body).T))


def write_events(
    path: Path,
    events: Events,
    text: EventText,
    dirt_sources: np.ndarray,
    dirt_lines: np.ndarray,
    chunk: int = 1_000_000,
) -> int:
    """Stream the JSONL in chunks (bounded memory), each dirty line right after its source event; returns the
    number of lines."""
    n_events = len(events)
    with path.open("w", encoding="utf-8", newline="") as handle:
        for start in range(0, n_events, chunk):
            stop = min(start + chunk, n_events)
            pieces = event_pieces(events, text, np.arange(start, stop))
            here = (dirt_sources >= start) & (dirt_sources < stop)
            # one dirty line at most per source: append it to the source's last piece
            rows = dirt_sources[here] - start
            pieces[rows, -1] = pieces[rows, -1] + dirt_lines[here]
            handle.write(matrix_text(pieces))
    return n_events + len(dirt_lines)
