"""Who the sample store knows of: people with names, e-mail addresses, postal addresses and phone numbers
consistent with their country and city, and the population's parts (accounts, guests, newsletter-only contacts,
people who only appear in planted dirt).

Faker fills small name, street and company pools per country (seeded; a few thousand calls, never one per row);
people are then drawn from the pools by index, as numpy columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import cache

import numpy as np
import pandas as pd
from faker import Faker

from sample.catalogue import CLUSTER_SHARE, CLUSTERS
from sample.text import PAD2, PAD3, as_text, escape, slugify


@dataclass(frozen=True)
class City:
    """A city customers live in, with what is needed to write a consistent address and phone number."""

    country: str
    name: str
    province: str  # Shopify province code
    region: str  # HubSpot State/Region as typed
    tz: str
    dial: tuple[str, ...]  # national significant number prefixes of landlines
    subscriber_digits: int
    postal: tuple[str, ...]  # postal code prefixes
    weight: float


CITIES = (
    City("US", "New York", "NY", "New York", "America/New_York", ("212", "646", "718"), 7, ("100", "101"), 9),
    City("US", "Brooklyn", "NY", "New York", "America/New_York", ("718", "347"), 7, ("112",), 5),
    City("US", "Boston", "MA", "Massachusetts", "America/New_York", ("617",), 7, ("021",), 4),
    City("US", "Philadelphia", "PA", "Pennsylvania", "America/New_York", ("215", "267"), 7, ("191",), 4),
    City("US", "Atlanta", "GA", "Georgia", "America/New_York", ("404", "678"), 7, ("303",), 3),
    City("US", "Chicago", "IL", "Illinois", "America/Chicago", ("312", "773"), 7, ("606",), 6),
    City("US", "Minneapolis", "MN", "Minnesota", "America/Chicago", ("612",), 7, ("554",), 2),
    City("US", "Austin", "TX", "Texas", "America/Chicago", ("512", "737"), 7, ("787",), 4),
    City("US", "Denver", "CO", "Colorado", "America/Denver", ("303", "720"), 7, ("802",), 3),
    City("US", "Phoenix", "AZ", "Arizona", "America/Phoenix", ("602", "480"), 7, ("850",), 2),
    City("US", "Seattle", "WA", "Washington", "America/Los_Angeles", ("206",), 7, ("981",), 5),
    City("US", "Portland", "OR", "Oregon", "America/Los_Angeles", ("503", "971"), 7, ("972",), 4),
    City("US", "San Francisco", "CA", "California", "America/Los_Angeles", ("415", "628"), 7, ("941",), 5),
    City("US", "Los Angeles", "CA", "California", "America/Los_Angeles", ("213", "323"), 7, ("900",), 5),
    City("US", "Oakland", "CA", "California", "America/Los_Angeles", ("510",), 7, ("946",), 2),
    City("CA", "Toronto", "ON", "Ontario", "America/Toronto", ("416", "647"), 7, ("M5V", "M4C", "M6J"), 5),
    City("CA", "Vancouver", "BC", "British Columbia", "America/Vancouver", ("604",), 7, ("V6B", "V5K"), 3),
    City("CA", "Montréal", "QC", "Quebec", "America/Toronto", ("514",), 7, ("H2X", "H3A"), 2),
    City("CA", "Calgary", "AB", "Alberta", "America/Edmonton", ("403",), 7, ("T2P",), 1),
    City("CA", "Ottawa", "ON", "Ontario", "America/Toronto", ("613",), 7, ("K1P",), 1),
    City("GB", "London", "ENG", "England", "Europe/London", ("207", "208"), 7, ("SW1A", "EC1V", "N1", "SE1"), 7),
    City("GB", "Manchester", "ENG", "England", "Europe/London", ("161",), 7, ("M1", "M4", "M20"), 2),
    City("GB", "Edinburgh", "SCT", "Scotland", "Europe/London", ("1312", "1314", "1316"), 6, ("EH1", "EH3"), 2),
    City("GB", "Bristol", "ENG", "England", "Europe/London", ("1172", "1173", "1179"), 6, ("BS1", "BS6"), 1),
    City("GB", "Leeds", "ENG", "England", "Europe/London", ("1132", "1133", "1134", "1138"), 6, ("LS1", "LS6"), 1),
    City("GB", "Cardiff", "WLS", "Wales", "Europe/London", ("2920",), 6, ("CF10", "CF11"), 1),
    City("DE", "Berlin", "BE", "Berlin", "Europe/Berlin", ("30",), 8, ("10", "12"), 5),
    City("DE", "Hamburg", "HH", "Hamburg", "Europe/Berlin", ("40",), 8, ("20", "22"), 3),
    City("DE", "München", "BY", "Bayern", "Europe/Berlin", ("89",), 8, ("80", "81"), 3),
    City("DE", "Köln", "NW", "Nordrhein-Westfalen", "Europe/Berlin", ("221",), 7, ("50",), 2),
    City("DE", "Frankfurt am Main", "HE", "Hessen", "Europe/Berlin", ("69",), 8, ("60",), 2),
    City("DE", "Leipzig", "SN", "Sachsen", "Europe/Berlin", ("341",), 7, ("04",), 1),
)
COUNTRY_CODE = {"US": "1", "CA": "1", "GB": "44", "DE": "49"}
# Mobile prefixes (national significant number) and subscriber digits, per country; US/CA mobiles look like landlines.
MOBILE = {"GB": (("7723", "7828", "7941", "7507"), 6), "DE": (("151", "176", "160"), 8)}
MOBILE_SHARE = {"US": 0.0, "CA": 0.0, "GB": 0.5, "DE": 0.5}
LOCALES = {"US": "en_US", "CA": "en_CA", "GB": "en_GB", "DE": "de_DE"}
# RFC 2606 reserved domains: a sample address never reaches anyone, whatever a user points the mailer at.
EMAIL_DOMAINS = (
    "example.com",
    "example.net",
    "example.org",
    "mail.example.com",
    "inbox.example.org",
    "post.example.net",
)


@dataclass(frozen=True)
class NamePools:
    """Per country: Faker-made first names, last names, streets and companies, sampled by index (raw, not escaped)."""

    first: dict[str, list[str]]
    last: dict[str, list[str]]
    street: dict[str, list[str]]
    company: dict[str, list[str]]


def name_pools(seed: int, size: int = 400) -> NamePools:
    """Faker pools per country, seeded from ``seed`` (Faker is called a few thousand times, never per row)."""
    pools = NamePools({}, {}, {}, {})
    for offset, (country, locale) in enumerate(LOCALES.items()):
        fake = Faker(locale)
        fake.seed_instance(seed * 101 + offset)
        pools.first[country] = [fake.first_name() for _ in range(size)]
        pools.last[country] = [fake.last_name() for _ in range(size)]
        pools.street[country] = [fake.street_address().replace("\n", ", ") for _ in range(size)]
        pools.company[country] = [fake.company() for _ in range(size // 4)]
    return pools


# ---------------------------------------------------------------- people


def _cycle_table(entries: Sequence[tuple[str, ...]], width: int = 4) -> np.ndarray:
    """A (len(entries), width) table repeating each entry's values, so a random column picks one uniformly."""
    return np.array([[e[i % len(e)] for i in range(width)] for e in entries], dtype=object)


_CITY_COUNTRY = np.array([c.country for c in CITIES], dtype=object)
_POSTAL = _cycle_table([c.postal for c in CITIES], width=12)
_DIAL = _cycle_table([c.dial for c in CITIES], width=12)
_SUBSCRIBER_DIGITS = np.array([c.subscriber_digits for c in CITIES])


@dataclass(frozen=True)
class People:
    """Everyone the store knows of, as parallel columns (index = person number). Text is raw (not CSV-escaped)."""

    first: np.ndarray
    last: np.ndarray
    email: np.ndarray  # lowercase, unique, valid
    country: np.ndarray  # ISO alpha-2
    city: np.ndarray  # index into CITIES
    street: np.ndarray
    address2: np.ndarray
    company: np.ndarray
    zip: np.ndarray
    phone: np.ndarray  # E.164, unique
    phone_national: np.ndarray  # the same number as people type it in their country

    def __len__(self) -> int:
        return len(self.email)


def build_people(n: int, pools: NamePools, rng: np.random.Generator) -> People:
    """``n`` people with names, a unique e-mail, an address and a unique phone number, consistent per country."""
    weights = np.array([c.weight for c in CITIES], dtype=float)
    city = rng.choice(len(CITIES), size=n, p=weights / weights.sum())
    country = _CITY_COUNTRY[city]
    first, last = _pick(pools.first, country, rng), _pick(pools.last, country, rng)
    email = _unique_emails(_email_locals(first, last, rng), rng)
    north_america = (country == "US") | (country == "CA")
    apartment = north_america & (rng.random(n) < 0.15)
    address2 = np.where(
        apartment,
        "Apt. " + as_text(rng.integers(1, 40, n)) + np.array(list("ABCD"), dtype=object)[rng.integers(0, 4, n)],
        "",
    )
    company = np.where(rng.random(n) < 0.05, _pick(pools.company, country, rng), "")
    phone, national = _phones(city, rng)
    return People(
        first=first,
        last=last,
        email=email,
        country=country,
        city=city,
        street=_pick(pools.street, country, rng),
        address2=address2,
        company=company,
        zip=_postal_codes(city, rng),
        phone=phone,
        phone_national=national,
    )


def _pick(pool_by_country: dict[str, list[str]], country: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One pool value per person from their country's pool, picked by index."""
    out = np.empty(len(country), dtype=object)
    for code, pool in pool_by_country.items():
        mask = country == code
        out[mask] = np.array(pool, dtype=object)[rng.integers(len(pool), size=int(mask.sum()))]
    return out


def _email_locals(first: np.ndarray, last: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Local parts built the ways people build them: jane.doe, janedoe, jdoe, jane_doe, jane.doe87, doe.jane."""
    first_slug = {v: slugify(v).replace("-", "") or "customer" for v in np.unique(first)}
    last_slug = {v: slugify(v).replace("-", "") or "shopper" for v in np.unique(last)}
    f = pd.Series(first).map(first_slug).to_numpy(dtype=object)
    surname = pd.Series(last).map(last_slug).to_numpy(dtype=object)
    initial = pd.Series(f).str[0].to_numpy(dtype=object)
    year = PAD2[rng.integers(0, 100, len(f))]
    patterns = [
        f + "." + surname,
        f + surname,
        initial + surname,
        f + "_" + surname,
        f + "." + surname + year,
        surname + "." + f,
    ]
    choice = rng.choice(len(patterns), size=len(f), p=[0.35, 0.15, 0.15, 0.1, 0.15, 0.1])
    return np.choose(choice, patterns)


def _unique_emails(local: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Attach domains and number repeated addresses (jane.doe412@...) until every address is unique."""
    shares = [0.3, 0.2, 0.2, 0.1, 0.1, 0.1]
    domain = np.array(EMAIL_DOMAINS, dtype=object)[rng.choice(len(EMAIL_DOMAINS), len(local), p=shares)]
    email = local + "@" + domain
    while True:
        repeat = pd.Series(email).duplicated().to_numpy()
        if not repeat.any():
            return np.asarray(email)
        email[repeat] = local[repeat] + as_text(rng.integers(2, 10000, int(repeat.sum()))) + "@" + domain[repeat]


def _postal_codes(city: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Postal codes in each country's shape, starting with a prefix belonging to the person's city."""
    n = len(city)
    prefix = _POSTAL[city, rng.integers(0, _POSTAL.shape[1], n)]
    country = _CITY_COUNTRY[city]
    letters = np.array(list("ABDEFGHJLNPQRSTUWXYZ"), dtype=object)
    digit = as_text(rng.integers(1, 10, n))
    out = np.where(country == "US", prefix + PAD2[rng.integers(0, 100, n)], prefix + PAD3[rng.integers(0, 1000, n)])
    ca_tail = " " + digit + letters[rng.integers(0, len(letters), n)] + as_text(rng.integers(0, 10, n))
    gb_tail = " " + digit + letters[rng.integers(0, len(letters), n)] + letters[rng.integers(0, len(letters), n)]
    out = np.where(country == "CA", prefix + ca_tail, out)
    return np.asarray(np.where(country == "GB", prefix + gb_tail, out))


def _phones(city: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Unique phone numbers: E.164 and the national format people type (``(415) 555-0123``, ``030 1234567``)."""
    n = len(city)
    country = _CITY_COUNTRY[city]
    prefix = _DIAL[city, rng.integers(0, _DIAL.shape[1], n)]
    digits = _SUBSCRIBER_DIGITS[city].copy()
    for code, (mobile_prefixes, mobile_digits) in MOBILE.items():
        mobile = (country == code) & (rng.random(n) < MOBILE_SHARE[code])
        prefix[mobile] = np.array(mobile_prefixes, dtype=object)[rng.integers(0, len(mobile_prefixes), mobile.sum())]
        digits[mobile] = mobile_digits
    nsn = prefix + _subscribers(digits, rng)
    calling = pd.Series(country).map(COUNTRY_CODE).to_numpy(dtype=object)
    while True:
        repeat = pd.Series(calling + nsn).duplicated().to_numpy()
        if not repeat.any():
            break
        nsn[repeat] = prefix[repeat] + _subscribers(digits[repeat], rng)
    return "+" + calling + nsn, _national(nsn, country)


def _subscribers(digits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Subscriber numbers of the given lengths, never starting with 0 or 1 (as numbering plans require)."""
    low = 2 * 10 ** (digits - 1)
    return as_text(low + (rng.random(len(digits)) * (10**digits - low)).astype(np.int64))


def _national(nsn: np.ndarray, country: np.ndarray) -> np.ndarray:
    """National formatting: ``(AAA) EEE-LLLL`` in North America, ``0AA AAAA AAAA`` style in GB and DE."""
    s = pd.Series(nsn)
    north_america = "(" + s.str[:3] + ") " + s.str[3:6] + "-" + s.str[6:]
    # GB area codes: 2 digits for 020/029, 4 for mobiles (07xxx), else 3; German ones are the dialled prefix.
    gb_area = np.where(s.str[0] == "2", 2, np.where(s.str[0] == "7", 4, 3))
    de_area = np.where(s.str[:2].isin(["30", "40", "89", "69"]), 2, 3)
    area = np.where(country == "GB", gb_area, de_area)
    out = north_america.to_numpy(dtype=object)
    for width in (2, 3, 4):
        for code in ("GB", "DE"):
            mask = (country == code) & (area == width)
            if not mask.any():
                continue
            part = s[mask]
            rest = part.str[width:]
            if code == "GB" and width < 4:
                rest = rest.str[:-4] + " " + rest.str[-4:]
            out[mask] = ("0" + part.str[:width] + " " + rest).to_numpy(dtype=object)
    return np.asarray(out)


def email_variant(email: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same address as someone else typed it: other case and/or surrounding spaces (never identical)."""
    s = pd.Series(email, dtype=object)
    kind = rng.integers(0, 4, len(email))
    variants = [s.str.title(), s.str.upper(), " " + s + " ", s.str.title() + "  "]
    return np.choose(kind, [v.to_numpy(dtype=object) for v in variants])


@cache
def city_names() -> np.ndarray:
    """The name of each city in CITIES (raw), indexed like ``People.city``."""
    return np.array([c.name for c in CITIES], dtype=object)


@cache
def city_field(name: str) -> np.ndarray:
    """One City field (``province``, ``region``, ``tz``) of each city in CITIES, indexed like ``People.city``."""
    return np.array([getattr(c, name) for c in CITIES], dtype=object)


def address_fields(full_name: np.ndarray, people: People, who: np.ndarray) -> list[np.ndarray]:
    """Name, City, Zip, Province, Country of the given people (order billing/shipping columns)."""
    city = people.city[who]
    return [
        full_name[who],
        escape(city_names())[city],
        people.zip[who],
        city_field("province")[city],
        people.country[who],
    ]


# ---------------------------------------------------------------- the population


@dataclass(frozen=True)
class Census:
    """How many people of each kind the store knows of, before any is drawn. Person numbers run: accounts
    ``[0, accounts)``, guests (ordered without an account), newsletter-only contacts (CRM only), then the people
    who only appear in planted dirt. ``crm_accounts`` and ``crm_guests`` are the buyers also in the CRM."""

    accounts: int
    guests: int
    crm_only: int
    crm_accounts: np.ndarray
    crm_guests: np.ndarray

    @property
    def buyers(self) -> int:
        """Accounts and guests: everyone who can order."""
        return self.accounts + self.guests

    @property
    def known(self) -> int:
        """Everyone outside the planted dirt (the first dirt-only person's number)."""
        return self.accounts + self.guests + self.crm_only

    @property
    def crm_rows(self) -> int:
        """Clean rows of the CRM export."""
        return len(self.crm_accounts) + len(self.crm_guests) + self.crm_only


def take_census(accounts: int, rng: np.random.Generator) -> Census:
    """Guests are 10% and newsletter-only contacts 25% of the accounts; 85% of the accounts and 30% of the guests
    are also CRM contacts."""
    guests = max(1, int(round(0.10 * accounts)))
    crm_only = max(1, int(round(0.25 * accounts)))
    crm_accounts = np.sort(rng.permutation(accounts)[: int(round(0.85 * accounts))])
    crm_guests = np.sort(accounts + rng.permutation(guests)[: int(round(0.30 * guests))])
    return Census(accounts, guests, crm_only, crm_accounts, crm_guests)


@dataclass(frozen=True)
class Population(Census):
    """The census drawn: ``people`` and ``cluster`` (taste, index into CLUSTERS) for every person, including
    ``customer_extras`` people of the customers export's dirt and then ``crm_extras`` of the CRM's (the last)."""

    customer_extras: int
    crm_extras: int
    people: People
    cluster: np.ndarray

    @property
    def customer_extra_people(self) -> np.ndarray:
        return np.arange(self.known, self.known + self.customer_extras)

    @property
    def crm_extra_people(self) -> np.ndarray:
        return np.arange(len(self.people) - self.crm_extras, len(self.people))


def populate(census: Census, customer_extras: int, crm_extras: int, seed: int, rng: np.random.Generator) -> Population:
    """Draw everyone of the census plus the given dirt-only people, and their taste clusters."""
    total = census.known + customer_extras + crm_extras
    people = build_people(total, name_pools(seed, size=int(np.clip(total // 4, 40, 400))), rng)
    cluster = rng.choice(len(CLUSTERS), size=total, p=CLUSTER_SHARE)
    counted = {f.name: getattr(census, f.name) for f in fields(Census)}
    return Population(**counted, customer_extras=customer_extras, crm_extras=crm_extras, people=people, cluster=cluster)
