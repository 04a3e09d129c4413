"""The sample store's accounts and its Shopify customers export: when each account signed up, its customer id, what
it said about e-mail marketing, whether the shop holds its phone, and what it spent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sample.clock import Clock
from sample.orders import Orders, Segments
from sample.people import Population, city_field, city_names
from sample.text import as_text, escape, money

CUSTOMER_NOTES = (
    "Prefers whole beans, no grinding",
    "Wholesale enquiry - call before shipping",
    'Asked for "less packaging"',
    "Allergic to nuts",
)


@dataclass(frozen=True)
class Accounts:
    """Per account (person numbers below ``Census.accounts``): net spend (cents) and order count, sign-up time,
    Shopify customer id, ``Accepts Email Marketing``, and whether the shop has their phone."""

    spent: np.ndarray
    order_count: np.ndarray
    signup_ts: np.ndarray
    customer_id: np.ndarray
    accepts_email: np.ndarray
    shop_phone: np.ndarray

    @property
    def last_id(self) -> int:
        """The highest customer id handed out."""
        return int(self.customer_id.max())


def open_accounts(
    population: Population,
    segments: Segments,
    orders: Orders,
    facts: pd.DataFrame,
    clock: Clock,
    rng: np.random.Generator,
) -> Accounts:
    """Spend from the orders' net amounts; sign-ups before the first order; ids in sign-up order; 55% say yes to
    e-mail marketing, and the shop has the phone of 55%."""
    n, o = population.accounts, orders
    account = o.buyer < n
    spent = np.bincount(o.buyer[account], weights=facts["net"][account], minlength=n).astype(np.int64)
    order_count = np.bincount(o.buyer[account], minlength=n)
    signup_ts = _signups(n, segments, orders, clock, rng)
    ids = 7_012_000_000_000 + np.cumsum(rng.integers(1, 40_000, n))
    customer_id = np.empty(n, dtype=np.int64)
    customer_id[np.argsort(signup_ts, kind="stable")] = ids
    accepts_email = rng.random(n) < 0.55
    shop_phone = rng.random(n) < 0.55
    return Accounts(spent, order_count, signup_ts, customer_id, accepts_email, shop_phone)


def _signups(n: int, segments: Segments, orders: Orders, clock: Clock, rng: np.random.Generator) -> np.ndarray:
    """Account creation: at the first checkout for most, days or weeks before it for some; never after it."""
    o = orders
    first_ts = np.full(n, clock.end_epoch - 1, dtype=np.int64)
    account = o.buyer < n
    np.minimum.at(first_ts, o.buyer[account], o.ts[account])
    lead = np.where(rng.random(n) < 0.7, 0, rng.integers(1, 60, n))
    day = np.clip(segments.first_day[:n] - lead, 0, clock.days - 1)
    return np.asarray(np.minimum(clock.times_of_day(day, rng), first_ts - 60))


def customer_columns(
    who: np.ndarray,
    ids: np.ndarray,
    email: np.ndarray,
    spent: np.ndarray,
    count: np.ndarray,
    population: Population,
    accounts: Accounts,
    rng: np.random.Generator,
) -> list[np.ndarray | str]:
    """The export's columns for the given people, in CUSTOMER_COLUMNS order (escaped). People without an account
    (planted rows) get a random e-mail answer and no phone."""
    p, k, n = population.people, len(who), population.accounts
    city = p.city[who]
    accepts = np.where(who < n, accounts.accepts_email[np.minimum(who, n - 1)], rng.random(k) < 0.5)
    has_phone = (who < n) & accounts.shop_phone[np.minimum(who, n - 1)]
    sms = has_phone & (rng.random(k) < 0.3)
    exempt = (p.company[who] != "") & (rng.random(k) < 0.2)
    tags = pd.Series(np.where(accepts & (rng.random(k) < 0.4), "newsletter", ""), dtype=object)
    tags = (
        tags.str.cat(np.where(spent >= 50000, "vip", ""), sep=", ")
        .str.cat(np.where(exempt, "wholesale", ""), sep=", ")
        .str.replace(r"^(, )+|(, )+$", "", regex=True)
        .str.replace(r"(, )+", ", ", regex=True)
    )
    note = np.where(
        rng.random(k) < 0.02, np.array(CUSTOMER_NOTES, dtype=object)[rng.integers(0, len(CUSTOMER_NOTES), k)], ""
    )
    address_phone = np.where(has_phone & (rng.random(k) < 0.3), p.phone_national[who], "")
    yes_no = np.array(["no", "yes"], dtype=object)
    return [
        np.where(ids == "", "", "'" + ids),
        escape(p.first[who]),
        escape(p.last[who]),
        email,
        yes_no[accepts * 1],
        escape(p.company[who]),
        escape(p.street[who]),
        p.address2[who],
        escape(city_names()[city]),
        city_field("province")[city],
        p.country[who],
        p.zip[who],
        address_phone,
        np.where(has_phone, "'" + p.phone[who], ""),
        yes_no[sms * 1],
        money(spent),
        as_text(count),
        escape(note),
        yes_no[exempt * 1],
        escape(tags.to_numpy(dtype=object)),
    ]


def account_columns(population: Population, accounts: Accounts, rng: np.random.Generator) -> list[np.ndarray | str]:
    """The export's columns of every account, in account order."""
    n = population.accounts
    return customer_columns(
        np.arange(n),
        as_text(accounts.customer_id),
        population.people.email[:n],
        accounts.spent,
        accounts.order_count,
        population,
        accounts,
        rng,
    )


def customer_counts(population: Population, loadable_extra_rows: int) -> dict[str, Any]:
    """manifest.expected: accounts, and the customer rows a reader loads: the accounts plus the planted duplicate
    rows and the accounts with an invalid e-mail (loaded without it)."""
    n = population.accounts
    return {"customers": n, "customer_rows_loadable": n + loadable_extra_rows}
