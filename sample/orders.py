"""What the sample store's buyers do: each buyer's segment (one-time, loyal, churned; their staple consumable), the
orders it leads to (one-time buys, replenishment cycles, gift season) with their line items, and what happened to
each order (money, discount, shipping, taxes, refunds, payment, fulfilment).

Everything is numpy columns indexed by buyer (accounts, then guests: person numbers below ``Census.buyers``) or
by order (sorted by creation time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sample.catalogue import CLUSTERS, GIFT, GLOBAL, Catalogue, Taste, sample_products
from sample.clock import Clock
from sample.draws import choose
from sample.people import CITIES, Census, Population

NONE, ONE_TIME, LOYAL, CHURNED = 0, 1, 2, 3
ARCHETYPES = ("no_orders", "one_time", "loyal", "churned")
REGULAR, STAPLE, GIFT_ORDER = 0, 1, 2  # order kinds
LINES_PER_CUSTOMER = 10
TAX_RATE = {
    "NY": 0.08875,
    "MA": 0.0625,
    "PA": 0.06,
    "GA": 0.089,
    "IL": 0.1025,
    "MN": 0.08025,
    "TX": 0.0825,
    "CO": 0.0881,
    "AZ": 0.086,
    "WA": 0.1035,
    "OR": 0.0,
    "CA": 0.0863,
    "ON": 0.13,
    "BC": 0.12,
    "QC": 0.14975,
    "AB": 0.05,
    "ENG": 0.2,
    "SCT": 0.2,
    "WLS": 0.2,
}


# ---------------------------------------------------------------- segments


@dataclass(frozen=True)
class Segments:
    """Per buyer: archetype (index into ARCHETYPES), first order day, last possible day (history days), and for
    repeat buyers the staple consumable they reorder (-1 for others) and how many packs at a time."""

    archetype: np.ndarray
    first_day: np.ndarray
    end_day: np.ndarray
    staple: np.ndarray
    staple_qty: np.ndarray


def segment(population: Population, cat: Catalogue, taste: Taste, clock: Clock, rng: np.random.Generator) -> Segments:
    """Archetypes by taste (gift givers mostly buy once; guests nearly always), first days by season (repeat buyers
    tend to be older customers), churn dates, and each repeat buyer's staple from their cluster's consumables."""
    n_buyers = population.buyers
    cluster = population.cluster[:n_buyers]
    probs = np.where((cluster == GIFT)[:, None], [[0.10, 0.60, 0.15, 0.15]], [[0.10, 0.34, 0.31, 0.25]])
    probs[population.accounts :] = [0.0, 0.88, 0.06, 0.06]
    archetype = np.minimum((rng.random(n_buyers)[:, None] > probs.cumsum(axis=1)).sum(axis=1), CHURNED)
    season = clock.season
    sharp = season**3 / (season**3).sum()
    ramp = np.linspace(1.0, 0.0, clock.days)  # repeat buyers still around tend to be older customers
    loyal, churned = season * (0.5 + 1.5 * ramp), season * (0.6 + ramp)
    draws = [rng.choice(clock.days, n_buyers, p=w / w.sum()) for w in (season, sharp, loyal, churned)]
    first_day = np.select([archetype == LOYAL, archetype == CHURNED, cluster == GIFT], draws[2:] + draws[1:2], draws[0])
    life = 30 + rng.exponential(220, n_buyers)
    stop = clock.days - 60 - rng.exponential(60, n_buyers)
    end_day = np.where(archetype == CHURNED, np.minimum(first_day + life, stop), clock.days)
    staple = np.where(archetype >= LOYAL, sample_products(taste.staple_cdfs, cluster, rng), -1)
    qty = rng.choice([1, 2, 3], size=n_buyers, p=[0.6, 0.3, 0.1])
    days = np.maximum(cat.replenish_days[np.maximum(staple, 0)], 1)
    staple_qty = np.minimum(np.maximum(qty, np.ceil(21 / days)), 3).astype(np.int64)
    return Segments(archetype, first_day, end_day, staple, staple_qty)


def segment_counts(population: Population, segments: Segments) -> dict[str, Any]:
    """manifest.expected: accounts per archetype and per taste cluster."""
    n = population.accounts
    return {
        "buyers": {name: int((segments.archetype[:n] == i).sum()) for i, name in enumerate(ARCHETYPES)},
        "taste_clusters": {c: int((population.cluster[:n] == i).sum()) for i, c in enumerate(CLUSTERS)},
    }


# ---------------------------------------------------------------- orders and their lines


@dataclass(frozen=True)
class Orders:
    """Orders sorted by creation time, plus their line items (sorted by order, staple line first)."""

    buyer: np.ndarray
    ts: np.ndarray
    day: np.ndarray
    kind: np.ndarray
    line_order: np.ndarray
    line_product: np.ndarray
    line_qty: np.ndarray
    line_first: np.ndarray
    first_line: np.ndarray  # index of each order's first line
    n_lines: np.ndarray


def simulate_orders(
    population: Population,
    segments: Segments,
    cat: Catalogue,
    taste: Taste,
    clock: Clock,
    rng: np.random.Generator,
) -> Orders:
    """Order days (one-time, replenishment cycles, gift season), then line items and their products."""
    buyers, days, kinds = [], [], []
    single = np.flatnonzero(segments.archetype == ONE_TIME)
    groups = [(single, segments.first_day[single], REGULAR)]
    groups += [(b, d, STAPLE) for b, d in _replenishment_days(segments, cat, clock, rng)]
    groups.append((*_gift_days(population, segments, clock, rng), GIFT_ORDER))
    for b, d, k in groups:
        buyers.append(b)
        days.append(d)
        kinds.append(np.full(len(b), k))
    buyer, day, kind = np.concatenate(buyers), np.concatenate(days).astype(np.int64), np.concatenate(kinds)
    ts = clock.times_of_day(day, rng)
    order = np.argsort(ts, kind="stable")
    buyer, day, kind, ts = buyer[order], day[order], kind[order], ts[order]
    return _order_lines(buyer, ts, day, kind, population, segments, cat, taste, rng)


def _replenishment_days(
    segments: Segments, cat: Catalogue, clock: Clock, rng: np.random.Generator
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Repeat buyers reorder their staple every replenishment days × quantity, with noise, until they stop."""
    rep = np.flatnonzero(segments.archetype >= LOYAL)
    cycle = cat.replenish_days[segments.staple[rep]] * segments.staple_qty[rep] * rng.lognormal(0, 0.12, len(rep))
    day = segments.first_day[rep].astype(float)
    end = segments.end_day[rep]
    out = [(rep, segments.first_day[rep])]
    alive = np.ones(len(rep), dtype=bool)
    while True:
        idle = np.where(rng.random(len(rep)) < 0.06, 2.0, 1.0)  # a holiday, a forgotten order
        summer = np.where(clock.summer[np.minimum(day.astype(int), clock.days - 1)], 1.3, 1.0)
        day = day + cycle * rng.lognormal(0, 0.15, len(rep)) * idle * summer
        alive &= day < end
        if not alive.any():
            return out
        out.append((rep[alive], day[alive].astype(np.int64)))


def _gift_days(
    population: Population, segments: Segments, clock: Clock, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Extra orders from repeat buyers between Nov 10 and Dec 22 (gift givers nearly always)."""
    cal = clock.calendar
    window = (((cal.month == 10) & (cal.dom >= 10)) | ((cal.month == 11) & (cal.dom <= 22))).to_numpy()
    buyers, days = [], []
    for year in np.unique(cal.date.dt.year[window]):
        span = np.flatnonzero(window & (cal.date.dt.year == year).to_numpy())
        alive = (segments.archetype >= LOYAL) & (segments.first_day <= span[0]) & (segments.end_day >= span[-1])
        p = np.where(population.cluster[: len(alive)] == GIFT, 0.85, 0.35)
        chosen = np.flatnonzero(alive & (rng.random(len(alive)) < p))
        weights = clock.season[span] / clock.season[span].sum()
        buyers.append(chosen)
        days.append(rng.choice(span, size=len(chosen), p=weights))
    return np.concatenate(buyers).astype(np.int64), np.concatenate(days).astype(np.int64)


def _order_lines(
    buyer: np.ndarray,
    ts: np.ndarray,
    day: np.ndarray,
    kind: np.ndarray,
    population: Population,
    segments: Segments,
    cat: Catalogue,
    taste: Taste,
    rng: np.random.Generator,
) -> Orders:
    """Line items: the staple first on reorders, then Poisson-many picks from the buyer's taste (or gifts)."""
    n_orders = len(buyer)
    lam = max(0.1, (LINES_PER_CUSTOMER * population.accounts * 1.03 - n_orders) / n_orders)
    staple = kind == STAPLE
    extra = np.minimum(rng.poisson(lam, n_orders) + ~staple, 7)
    e_order = np.repeat(np.arange(n_orders), extra)
    rows = population.cluster[buyer[e_order]]
    rows = np.where((kind[e_order] == GIFT_ORDER) & (rng.random(len(e_order)) < 0.7), GIFT, rows)
    rows = np.where(rng.random(len(e_order)) < 0.05, GLOBAL, rows)
    e_product = sample_products(taste.cdfs, rows, rng)
    archived = day[e_order] > cat.archive_day[e_product]
    e_product = np.where(archived, cat.replacement[e_product], e_product)
    e_qty = np.where(cat.gift_card[e_product], 1, rng.choice([1, 2, 3], len(e_order), p=[0.85, 0.12, 0.03]))
    s_order = np.flatnonzero(staple)
    order = np.concatenate([s_order, e_order])
    product = np.concatenate([segments.staple[buyer[s_order]], e_product])
    qty = np.concatenate([segments.staple_qty[buyer[s_order]], e_qty])
    position = np.concatenate([np.zeros(len(s_order)), np.arange(len(e_order)) + 1])
    sort = np.lexsort((position, order))
    order, product, qty = order[sort], product[sort], qty[sort]
    keep = ~pd.DataFrame({"o": order, "p": product}).duplicated().to_numpy()
    order, product, qty = order[keep], product[keep], qty[keep]
    first = np.r_[True, order[1:] != order[:-1]]
    return Orders(
        buyer=buyer,
        ts=ts,
        day=day,
        kind=kind,
        line_order=order,
        line_product=product,
        line_qty=qty.astype(np.int64),
        line_first=first,
        first_line=np.flatnonzero(first),
        n_lines=np.bincount(order, minlength=n_orders),
    )


def replenishment_counts(
    population: Population, segments: Segments, orders: Orders, cat: Catalogue, clock: Clock
) -> dict[str, int]:
    """manifest.expected: how many active repeat buyers are overdue / due within 7 days for their staple, by the
    data itself."""
    o, n = orders, population.accounts
    staple_line = (segments.staple[o.buyer[o.line_order]] == o.line_product) & (o.buyer[o.line_order] < n)
    buyer = o.buyer[o.line_order[staple_line]]
    last_day = np.full(n, -1)
    np.maximum.at(last_day, buyer, o.day[o.line_order[staple_line]])
    times = np.bincount(buyer, minlength=n)
    loyal = (segments.archetype[:n] == LOYAL) & (times >= 2)
    due = last_day + cat.replenish_days[np.maximum(segments.staple[:n], 0)] * segments.staple_qty[:n]
    h = clock.days
    return {
        "repeat_buyers_with_cycles": int(((segments.archetype[:n] >= LOYAL) & (times >= 2)).sum()),
        "replenishment_overdue": int((loyal & (due < h)).sum()),
        "replenishment_due_next_7_days": int((loyal & (due >= h) & (due <= h + 7)).sum()),
    }


# ---------------------------------------------------------------- what happened to each order


def order_facts(
    orders: Orders, cat: Catalogue, population: Population, clock: Clock, rng: np.random.Generator
) -> pd.DataFrame:
    """Per order: money (cents), discount, shipping, taxes, status, payment, refund and fulfilment times."""
    o, people = orders, population.people
    n_orders = len(o.buyer)
    line_cents = cat.price_cents[o.line_product] * o.line_qty
    gift_card = cat.gift_card[o.line_product]
    subtotal = np.bincount(o.line_order, weights=line_cents, minlength=n_orders).astype(np.int64)
    cards = np.bincount(o.line_order, weights=line_cents * gift_card, minlength=n_orders).astype(np.int64)
    ships = np.bincount(o.line_order, weights=~gift_card, minlength=n_orders) > 0
    code, discount = _discounts(subtotal - cards, orders, population, clock, rng)
    goods = subtotal - cards - discount
    city = people.city[o.buyer]
    domestic = people.country[o.buyer] == "US"
    express = domestic & (rng.random(n_orders) < 0.07)
    free = np.where(domestic, goods >= 5000, goods >= 10000)
    shipping = np.where(express, 1295, np.where(free, 0, np.where(domestic, 595, 1495))) * ships
    method = np.where(
        express,
        "Express Shipping",
        np.where(free, "Free Shipping", np.where(domestic, "Standard Shipping", "International Shipping")),
    )
    rate = np.array([TAX_RATE.get(c.province, 0.19) for c in CITIES])[city]
    taxes = np.round(np.maximum(goods, 0) * rate).astype(np.int64)
    total = subtotal - discount + shipping + taxes
    money = {
        "subtotal": subtotal,
        "discount_code": code,
        "discount": discount,
        "shipping": shipping,
        "method": np.where(ships, method, ""),
        "taxes": taxes,
        "total": total,
        "ships": ships,
        "cards_only": ~ships,
    }
    return pd.DataFrame({**money, **_fate(total, ~ships, orders, cat, clock, rng)})


def _discounts(
    eligible: np.ndarray, orders: Orders, census: Census, clock: Clock, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Discount codes: BFCM20 in Black Friday week, WELCOME10 on first orders, SUMMER15, FRIENDS5."""
    o = orders
    n_orders = len(o.buyer)
    first_of_buyer = ~pd.Series(o.buyer).duplicated().to_numpy() & (o.buyer < census.accounts)
    u = rng.random(n_orders)
    bfcm = clock.bfcm[o.day] & (u < 0.45)
    welcome = first_of_buyer & (u < 0.25)
    summer = clock.summer[o.day] & (u < 0.08)
    friends = (u > 0.97) & (eligible >= 2000)
    code = np.select([bfcm, welcome, summer, friends], ["BFCM20", "WELCOME10", "SUMMER15", "FRIENDS5"], "")
    pct = np.select([bfcm, welcome, summer], [0.20, 0.10, 0.15], 0.0)
    amount = np.where(friends & (code == "FRIENDS5"), 500, np.round(eligible * pct)).astype(np.int64)
    return code.astype(object), amount


def _fate(
    total: np.ndarray, cards_only: np.ndarray, orders: Orders, cat: Catalogue, clock: Clock, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Financial status (refunds, voids, pending), payment and fulfilment times, all before as_of."""
    o, end = orders, clock.end_epoch
    n_orders = len(o.buyer)
    u = rng.random(n_orders)
    recent = o.ts >= end - 3 * 86400
    status = np.select(
        [u < 0.008, u < 0.026, u < 0.048, recent & (u > 0.9)],
        ["voided", "refunded", "partially_refunded", "pending"],
        "paid",
    )
    cancelled = (status == "voided") | ((status == "refunded") & (rng.random(n_orders) < 0.5))
    cancel_ts = np.minimum(o.ts + rng.integers(1800, 3 * 86400, n_orders), end - 1)
    unit = cat.price_cents[o.line_product[o.first_line]]
    refund = np.select(
        [status == "refunded", status == "partially_refunded"],
        [total, np.clip(np.minimum(unit, total // 2), 1, None)],
        0,
    )
    paid = np.isin(status, ["paid", "refunded", "partially_refunded"])
    fulfil_ts = o.ts + np.where(cards_only, 5, rng.integers(8 * 3600, 3 * 86400, n_orders))
    fulfilled = np.isin(status, ["paid", "partially_refunded"]) | ((status == "refunded") & ~cancelled)
    fulfilled &= fulfil_ts < end
    return {
        "status": status,
        "refund": refund.astype(np.int64),
        "paid_ts": np.where(paid, np.minimum(o.ts + rng.integers(2, 40, n_orders), end - 1), -1),
        "fulfilled_ts": np.where(fulfilled, fulfil_ts, -1),
        "cancelled_ts": np.where(cancelled, cancel_ts, -1),
        "payment": choose(
            ["Shopify Payments", "PayPal Express Checkout", "gift_card", "Manual"],
            [0.74, 0.2, 0.04, 0.02],
            n_orders,
            rng,
        ),
        "source": choose(["web", "shopify_draft_order", "pos"], [0.95, 0.03, 0.02], n_orders, rng),
        "net": np.where(paid, total - refund, 0),
    }


def order_counts(orders: Orders, facts: pd.DataFrame, census: Census, clock: Clock) -> dict[str, Any]:
    """manifest.expected: orders and lines, by status and by month (UTC), cancelled orders, distinct guests."""
    o = orders
    status = facts["status"].value_counts()
    month = pd.Series(clock.utc_dates(o.ts)).str[:7].value_counts()
    return {
        "orders": len(o.buyer),
        "order_lines": len(o.line_order),
        "orders_by_status": {
            s: int(status.get(s, 0)) for s in ("paid", "pending", "refunded", "partially_refunded", "voided")
        },
        "cancelled_orders": int((facts["cancelled_ts"] >= 0).sum()),
        "guest_emails": int(len(np.unique(o.buyer[o.buyer >= census.accounts]))),
        "orders_by_month": {m: int(c) for m, c in sorted(month.items())},
    }
