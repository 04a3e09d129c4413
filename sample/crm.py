"""The sample store's HubSpot contacts export: most accounts (some with the e-mail typed differently), some guests,
and newsletter-only contacts, with consents, birthdays, loyalty tiers and time zones."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from sample.clock import Clock
from sample.customers import Accounts
from sample.draws import choose
from sample.orders import Orders
from sample.people import Population, city_field, city_names, email_variant
from sample.text import as_text, escape


@dataclass(frozen=True)
class Contacts:
    """The export's clean rows, by creation time: each row's person number, its columns (escaped, CRM_COLUMNS
    order), whether it carries a phone, and the date of birth (NaT when blank)."""

    who: np.ndarray
    columns: list[np.ndarray | str]
    has_phone: np.ndarray
    birth: np.ndarray


def contacts(
    population: Population, accounts: Accounts, orders: Orders, clock: Clock, rng: np.random.Generator
) -> Contacts:
    """The CRM's accounts and guests (``Census.crm_accounts``, ``crm_guests``) and the newsletter-only contacts."""
    only = np.arange(population.buyers, population.known)
    who = np.concatenate([population.crm_accounts, population.crm_guests, only])
    created = _created(who, population, accounts, orders, clock, rng)
    order = np.argsort(created, kind="stable")
    who, created = who[order], created[order]
    record = as_text(51_000_000_000 + np.cumsum(rng.integers(1, 5_000, len(who))))
    columns, has_phone, birth = contact_columns(who, record, created, population, accounts, clock, rng)
    return Contacts(who, columns, has_phone, birth)


def _created(
    who: np.ndarray,
    population: Population,
    accounts: Accounts,
    orders: Orders,
    clock: Clock,
    rng: np.random.Generator,
) -> np.ndarray:
    """Contact creation: after sign-up (accounts), after the first order (guests), any day (newsletter)."""
    o, end, n = orders, clock.end_epoch, population.accounts
    first_order = np.full(population.buyers, end - 1, dtype=np.int64)
    np.minimum.at(first_order, o.buyer, o.ts)
    since = np.where(
        who < n,
        accounts.signup_ts[np.minimum(who, n - 1)],
        first_order[np.minimum(who, len(first_order) - 1)],
    )
    newsletter = who >= population.buyers
    since = np.where(newsletter, clock.times_of_day(rng.choice(clock.days, len(who), p=clock.season), rng), since)
    return np.asarray(np.minimum(since + np.where(newsletter, 0, rng.integers(60, 2 * 86400, len(who))), end - 60))


def contact_columns(
    who: np.ndarray,
    record: np.ndarray,
    created: np.ndarray,
    population: Population,
    accounts: Accounts,
    clock: Clock,
    rng: np.random.Generator,
) -> tuple[list[np.ndarray | str], np.ndarray, np.ndarray]:
    """The export's columns (escaped), which rows carry a phone, and the dates of birth (NaT when blank)."""
    p, k, n = population.people, len(who), population.accounts
    account = who < n
    guest = (who >= n) & (who < population.buyers)
    acc = np.minimum(who, n - 1)
    shop_phone = account & accounts.shop_phone[acc]
    email = np.where((account | guest) & (rng.random(k) < 0.35), email_variant(p.email[who], rng), p.email[who])
    phone_share = np.select([shop_phone, account, guest], [0.8, 0.3, 0.4], 0.35)
    has_phone = rng.random(k) < phone_share
    dob = birth_dates(k, clock.as_of, rng)
    spent = np.where(account, accounts.spent[acc], 0)
    tier = np.select([spent >= 50000, spent >= 20000, spent > 0], ["Gold", "Silver", "Bronze"], "")
    tier = np.where(account & (rng.random(k) > 0.1), tier, "")
    accepts = account & accounts.accepts_email[acc]
    email_consent = np.empty(k, dtype=object)
    for mask, shares in (
        (accepts, [0.8, 0.08, 0.12]),
        (account & ~accepts, [0.3, 0.45, 0.25]),
        (guest, [0.5, 0.2, 0.3]),
        (~account & ~guest, [0.85, 0.1, 0.05]),
    ):
        email_consent[mask] = choose(["Subscribed", "Unsubscribed", ""], shares, int(mask.sum()), rng)
    marketing = (email_consent == "Subscribed") | (rng.random(k) < 0.3)
    tz = np.where(rng.random(k) < 0.12, "", city_field("tz")[p.city[who]])
    modified = created + (rng.random(k) * (clock.end_epoch - 60 - created)).astype(np.int64)
    cols: list[np.ndarray | str] = [
        record,
        escape(p.first[who]),
        escape(p.last[who]),
        email,
        np.where(has_phone, p.phone_national[who], ""),
        np.where(pd.isna(dob), "", pd.Series(dob).dt.strftime("%Y-%m-%d").to_numpy(dtype=object)),
        tier.astype(object),
        np.where(marketing, "Marketing contact", "Non-marketing contact"),
        email_consent,
        choose(["true", "false", ""], [0.45, 0.3, 0.25], k, rng),
        choose(["true", "false", ""], [0.5, 0.2, 0.3], k, rng),
        tz.astype(object),
        escape(city_names()[p.city[who]]),
        escape(city_field("region")[p.city[who]]),
        p.country[who],
        p.zip[who],
        clock.crm_time(created),
        clock.crm_time(modified),
    ]
    return cols, has_phone, dob


def birth_dates(k: int, as_of: date, rng: np.random.Generator) -> np.ndarray:
    """Dates of birth for 55% of contacts (NaT for the rest), with some on Feb 29 and some in the next 7 days."""
    low = np.datetime64("1950-01-01")
    dob = low + rng.integers(0, (np.datetime64("2006-12-31") - low).astype(int) + 1, k)
    present = rng.random(k) < 0.55
    chosen = rng.permutation(np.flatnonzero(present))
    n_leap = max(1, round(0.002 * len(chosen)))
    n_soon = max(2, round(0.01 * len(chosen)))
    leap_years = rng.choice(np.arange(1952, 2005, 4), n_leap)
    dob[chosen[:n_leap]] = np.array([f"{y}-02-29" for y in leap_years], dtype="datetime64[D]")
    soon = [as_of + timedelta(days=int(d)) for d in rng.integers(1, 8, n_soon)]
    years = rng.integers(1955, 2005, n_soon)
    dob[chosen[n_leap : n_leap + n_soon]] = np.array(
        [
            f"{(y - y % 4) if (d.month, d.day) == (2, 29) else y}-{d.month:02d}-{d.day:02d}"
            for y, d in zip(years, soon, strict=True)
        ][: len(chosen[n_leap : n_leap + n_soon])],
        dtype="datetime64[D]",
    )
    out = dob.astype("datetime64[ns]")
    out[~present] = np.datetime64("NaT")
    return out


def contact_counts(
    contacts: Contacts,
    kept: np.ndarray,
    bad_birthday: np.ndarray,
    population: Population,
    accounts: Accounts,
    invalid_email_accounts: int,
    clock: Clock,
) -> dict[str, Any]:
    """manifest.expected, counted over the contacts a correct reader keeps (``kept``; a birthday broken on purpose
    does not count): birthdays (Feb 29, next 7 days), contacts by kind, non-marketing contacts (and those whose
    Shopify account opted in), and the distinct people a correct identity resolution finds."""
    births = pd.Series(contacts.birth)[kept & ~bad_birthday]
    md = births.dt.strftime("%m-%d")
    upcoming = [(clock.as_of + timedelta(days=d)).strftime("%m-%d") for d in range(1, 8)]
    status = np.asarray(contacts.columns[7], dtype=object)
    non_marketing = kept & (status == "Non-marketing contact")
    who, n = contacts.who, population.accounts
    opted_in = (who < n) & accounts.accepts_email[np.minimum(who, n - 1)]
    return {
        "contacts_with_birthday": int(births.notna().sum()),
        "feb29_birthdays": int((md == "02-29").sum()),
        "birthdays_next_7_days": int(md.isin(upcoming).sum()),
        "crm_contacts": len(who),
        "crm_store_customers": len(population.crm_accounts),
        "crm_guests": len(population.crm_guests),
        "crm_only_contacts": population.crm_only,
        "crm_non_marketing_contacts": int(non_marketing.sum()),
        "crm_non_marketing_shopify_opt_ins": int((non_marketing & opted_in).sum()),
        "distinct_people": population.known + invalid_email_accounts,
    }
