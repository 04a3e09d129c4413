"""What the sample store sells and who likes what: the catalogue (≤ 5,000 products, one variant each) and the
latent taste clusters that steer what customers view and buy.

Products are drawn from small hand-written tables (origins, teas, gear, consumables, food, gifts) in TYPE_SHARE
proportions, with Zipf popularity; :class:`Taste` turns popularity, kind affinity and flavour notes into per-cluster
sampling tables for the order and browsing simulations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sample.text import slugify

STORE_NAME = "Larkspur Coffee & Provisions"
HOUSE_VENDOR = "Larkspur Roasters"
CURRENCY = "USD"

# Taste clusters: latent groups of customers that steer what they view and buy.
CLUSTERS = ("fruity_light", "chocolatey_dark", "tea_people", "gear_nerds", "espresso_pods", "gift_givers")
CLUSTER_SHARE = np.array([0.22, 0.24, 0.14, 0.12, 0.13, 0.15])

# Product kinds (finer than Shopify's Type) and how much each cluster likes them (rows: kinds, cols: CLUSTERS).
KIND_AFFINITY: dict[str, tuple[float, ...]] = {
    "bean_light": (1.0, 0.05, 0.05, 0.4, 0.1, 0.05),
    "bean_medium": (0.15, 0.5, 0.05, 0.3, 0.2, 0.05),
    "bean_dark": (0.05, 1.0, 0.03, 0.1, 0.5, 0.05),
    "tea": (0.05, 0.03, 1.0, 0.05, 0.03, 0.15),
    "grinder": (0.4, 0.1, 0.03, 1.0, 0.1, 0.05),
    "kettle": (0.3, 0.05, 0.5, 1.0, 0.05, 0.05),
    "dripper": (0.5, 0.05, 0.05, 1.0, 0.05, 0.05),
    "gear_other": (0.1, 0.4, 0.1, 0.6, 0.4, 0.1),
    "paper_filter": (0.8, 0.1, 0.05, 0.7, 0.05, 0.03),
    "pod": (0.03, 0.2, 0.03, 0.05, 1.0, 0.05),
    "care": (0.05, 0.1, 0.05, 0.3, 0.6, 0.03),
    "chocolate": (0.05, 0.6, 0.1, 0.05, 0.2, 0.6),
    "biscuit": (0.05, 0.2, 0.6, 0.05, 0.1, 0.5),
    "gift_set": (0.05, 0.05, 0.05, 0.05, 0.05, 1.0),
    "gift_card": (0.02, 0.02, 0.02, 0.02, 0.02, 0.6),
}
KINDS = tuple(KIND_AFFINITY)
AFFINITY = np.array([KIND_AFFINITY[k] for k in KINDS]) + 0.01  # nobody is entirely closed to anything
# Flavour notes each cluster is drawn to: within a kind, products with more of them are preferred (×1 to ×8.5),
# so the taste is visible in the products' own metadata, as a hybrid recommender's item features.
FAVOURITE_NOTES: dict[str, frozenset[str]] = {
    "fruity_light": frozenset(
        {
            "jasmine",
            "bergamot",
            "blueberry",
            "lemon",
            "peach",
            "blackcurrant",
            "cherry",
            "apricot",
            "grapefruit",
            "raspberry",
            "lime",
            "floral",
            "honeysuckle",
            "red apple",
            "plum",
            "orange",
        }
    ),
    "chocolatey_dark": frozenset(
        {
            "dark chocolate",
            "milk chocolate",
            "cocoa",
            "caramel",
            "hazelnut",
            "toffee",
            "molasses",
            "brown sugar",
            "toasted nut",
            "treacle",
            "almond",
        }
    ),
    "tea_people": frozenset(
        {
            "grassy",
            "umami",
            "malty",
            "muscatel",
            "orchid",
            "jasmine",
            "bergamot",
            "honey",
            "smoky",
            "toasted rice",
            "creamy",
            "vanilla",
        }
    ),
    "gear_nerds": frozenset({"floral", "black tea", "lime", "stone fruit", "apricot", "peach"}),
    "espresso_pods": frozenset({"dark chocolate", "smoky", "cocoa", "spice", "licorice", "tobacco", "cedar"}),
    "gift_givers": frozenset({"vanilla", "orange", "honey", "caramel"}),
}

# (country, SKU code, regions, usual roast) for coffee origins; "House" are the roastery's blends.
_BEAN_ORIGINS = (
    ("Ethiopia", "ETH", ("Yirgacheffe", "Sidamo", "Guji", "Limu"), "light"),
    ("Kenya", "KEN", ("Nyeri", "Kirinyaga", "Embu"), "light"),
    ("Rwanda", "RWA", ("Nyamasheke", "Huye"), "light"),
    ("Burundi", "BDI", ("Kayanza", "Ngozi"), "light"),
    ("Panama", "PAN", ("Boquete", "Volcán"), "light"),
    ("Colombia", "COL", ("Huila", "Nariño", "Cauca", "Tolima"), "medium"),
    ("Costa Rica", "CRI", ("Tarrazú", "West Valley"), "medium"),
    ("Guatemala", "GTM", ("Antigua", "Huehuetenango"), "medium"),
    ("Honduras", "HND", ("Santa Bárbara", "Marcala"), "medium"),
    ("El Salvador", "SLV", ("Santa Ana", "Apaneca"), "medium"),
    ("Peru", "PER", ("Cajamarca", "Cusco"), "medium"),
    ("Papua New Guinea", "PNG", ("Western Highlands",), "medium"),
    ("Brazil", "BRA", ("Cerrado Mineiro", "Sul de Minas", "Mogiana"), "dark"),
    ("Mexico", "MEX", ("Chiapas", "Oaxaca"), "dark"),
    ("Nicaragua", "NIC", ("Jinotega", "Nueva Segovia"), "dark"),
    ("Sumatra", "IDN", ("Aceh Gayo", "Lintong"), "dark"),
    ("India", "IND", ("Chikmagalur",), "dark"),
    ("House", "BLD", ("Morning", "Espresso", "Midnight", "Sunday", "Harvest"), "dark"),
)
_PROCESSES = ("Washed", "Natural", "Honey", "Anaerobic")
_LOTS = (
    "Finca La Esperanza",
    "Gatomboya",
    "Konga",
    "El Paraíso",
    "Kiawamururu",
    "La Joya",
    "Bombe",
    "Santa Rosa",
    "Chelbesa",
    "Las Flores",
    "Karogoto",
    "Buesaco",
    "Ndaroini",
    "El Injerto",
    "Mahembe",
)
_NOTES = {
    "light": (
        "jasmine",
        "bergamot",
        "blueberry",
        "lemon",
        "peach",
        "blackcurrant",
        "cherry",
        "apricot",
        "black tea",
        "grapefruit",
        "raspberry",
        "lime",
        "floral",
        "honeysuckle",
    ),
    "medium": (
        "caramel",
        "red apple",
        "milk chocolate",
        "hazelnut",
        "brown sugar",
        "orange",
        "almond",
        "honey",
        "plum",
        "toffee",
        "cocoa",
    ),
    "dark": (
        "dark chocolate",
        "molasses",
        "cocoa",
        "toasted nut",
        "cedar",
        "smoky",
        "licorice",
        "tobacco",
        "dried fig",
        "spice",
        "treacle",
    ),
}

# (name, origin, notes) for teas.
_TEAS = (
    ("Sencha", "Japan", ("grassy", "umami", "seaweed")),
    ("Gyokuro", "Japan", ("umami", "sweet pea", "marine")),
    ("Genmaicha", "Japan", ("toasted rice", "grassy")),
    ("Matcha", "Japan", ("umami", "vegetal", "creamy")),
    ("Darjeeling First Flush", "India", ("muscatel", "floral", "citrus")),
    ("Assam", "India", ("malty", "honey")),
    ("Ceylon", "Sri Lanka", ("citrus", "brisk")),
    ("Earl Grey", "Sri Lanka", ("bergamot", "citrus")),
    ("Breakfast Blend", "Kenya", ("malty", "brisk")),
    ("Tieguanyin Oolong", "China", ("orchid", "creamy")),
    ("Dong Ding Oolong", "Taiwan", ("roasted", "stone fruit")),
    ("Jasmine Pearls", "China", ("jasmine", "sweet")),
    ("Lapsang Souchong", "China", ("smoky", "pine")),
    ("Rooibos", "South Africa", ("honey", "vanilla")),
    ("Chamomile", "Egypt", ("apple", "hay")),
)
_TEA_STYLES = ("", "Reserve", "Organic", "Estate", "Spring Harvest", "Autumn Harvest", "Loose Leaf")

_GEAR_VENDORS = ("Northfield", "Ferro & Co", "Kettlewell", "Grindwright", "Pourwell", "Steepwise", "Alder Works")
# (name, kind, price range in dollars, grams)
_GEAR = (
    ("Hand Grinder", "grinder", (60, 250), 650),
    ("Electric Burr Grinder", "grinder", (120, 450), 3200),
    ("Gooseneck Kettle", "kettle", (40, 90), 900),
    ("Electric Gooseneck Kettle", "kettle", (90, 180), 1300),
    ("Ceramic Dripper", "dripper", (18, 45), 400),
    ("Glass Dripper", "dripper", (15, 35), 300),
    ("Brewing Scale", "gear_other", (25, 80), 500),
    ("French Press", "gear_other", (25, 60), 800),
    ("Cold Brew Bottle", "gear_other", (25, 40), 700),
    ("Milk Frother", "gear_other", (30, 120), 600),
    ("Glass Server", "gear_other", (20, 45), 450),
    ("Travel Mug", "gear_other", (20, 35), 350),
)
_GEAR_MODELS = ("One", "Pro", "Mini", "S", "Classic", "II", "Air", "Studio", "Go", "Plus")
# (name, kind, price range, replenishment days per unit, grams)
_CONSUMABLES = (
    ("Paper Filters 01 (100 pcs)", "paper_filter", (4, 7), 50, 150),
    ("Paper Filters 02 (100 pcs)", "paper_filter", (4, 7), 50, 180),
    ("Flat-Bottom Filters 185 (100 pcs)", "paper_filter", (5, 8), 50, 170),
    ("Bonded Square Filters (100 pcs)", "paper_filter", (9, 13), 60, 300),
    ("Press Micro Filters (350 pcs)", "paper_filter", (5, 8), 175, 120),
    ("Compostable Espresso Pods (10 pcs)", "pod", (5, 8), 10, 60),
    ("Compostable Lungo Pods (10 pcs)", "pod", (5, 8), 10, 60),
    ("Compostable Espresso Pods (30 pcs)", "pod", (13, 19), 30, 180),
    ("Decaf Pods (10 pcs)", "pod", (5, 8), 12, 60),
    ("Descaler (2 sachets)", "care", (8, 13), 90, 100),
    ("Grinder Cleaning Tablets (3 x 35 g)", "care", (11, 16), 120, 120),
    ("Espresso Machine Cleaning Tablets (60 pcs)", "care", (9, 15), 120, 150),
)
_FOOD = (
    ("Dark Chocolate 72% {o}", "chocolate", (5, 9)),
    ("Milk Chocolate Sea Salt", "chocolate", (4, 7)),
    ("Chocolate-Covered Espresso Beans", "chocolate", (6, 10)),
    ("Dark Chocolate Orange", "chocolate", (5, 8)),
    ("Almond Biscotti", "biscuit", (5, 8)),
    ("Stroopwafels (8 pcs)", "biscuit", (5, 7)),
    ("Butter Shortbread", "biscuit", (5, 9)),
    ("Hazelnut Cantucci", "biscuit", (6, 9)),
    ("Ginger Biscuits", "biscuit", (4, 7)),
    ("Coffee Granola Crunch", "biscuit", (7, 11)),
)
_CACAO = ("Peru", "Ecuador", "Madagascar", "Ghana", "Tanzania", "Dominican Republic", "Vietnam", "Belize")
_FOOD_MAKERS = ("Larkspur Kitchen", "Cacao & Crumb", "Bakehouse North", "Hollow Oak Chocolate")
_GIFT_SETS = (
    "Coffee Lover's Gift Set",
    "Tea Discovery Box",
    "Pour-Over Starter Kit",
    "Espresso Tasting Flight",
    "Holiday Gift Box",
    "Chocolate & Coffee Pairing Set",
    "Single-Origin Trio",
    "Cosy Morning Hamper",
)
GIFT_CARD_VALUES = (25, 50, 100)

TYPE_SHARE = {
    "Coffee Beans": 0.34,
    "Tea": 0.14,
    "Brewing Gear": 0.16,
    "Filters & Pods": 0.10,
    "Food": 0.16,
    "Gifts": 0.10,
}


@dataclass(frozen=True)
class Catalogue:
    """The products, one variant each, as parallel columns (index = product number)."""

    sku: np.ndarray
    title: np.ndarray
    type: np.ndarray
    kind: np.ndarray  # index into KINDS
    vendor: np.ndarray
    price_cents: np.ndarray
    compare_cents: np.ndarray  # 0 = no compare-at price
    grams: np.ndarray
    replenish_days: np.ndarray  # 0 = not a consumable
    roast: np.ndarray
    origin: np.ndarray
    notes: np.ndarray  # "; "-separated
    option_name: np.ndarray
    option_value: np.ndarray
    status: np.ndarray  # active | draft | archived
    gift_card: np.ndarray  # bool
    popularity: np.ndarray  # Zipf weight, 0 for drafts
    archive_day: np.ndarray  # history day from which an archived product no longer sells (H for others)
    replacement: np.ndarray  # what a customer buys instead once it is archived (itself for others)

    def __len__(self) -> int:
        return len(self.sku)


def product_count(customers: int) -> int:
    """Catalogue size for a store: one product per 20 customers, between 60 and 5,000."""
    return int(min(max(customers // 20, 60), 5000))


def _split_counts(total: int) -> dict[str, int]:
    """How many products of each Type (at least a few of each, gift cards included in Gifts)."""
    counts = {t: max(int(round(total * s)), 6) for t, s in TYPE_SHARE.items()}
    counts["Coffee Beans"] += total - sum(counts.values())
    return counts


def _beans(n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        country, code, regions, usual = _BEAN_ORIGINS[int(rng.integers(len(_BEAN_ORIGINS)))]
        region = regions[int(rng.integers(len(regions)))]
        roasts = ("light", "medium", "dark")
        roast = usual if rng.random() < 0.7 else roasts[int(rng.integers(3))]
        if country == "House":
            title, origin = f"{region} Blend", "Blend"
        else:
            process = _PROCESSES[int(rng.choice(4, p=[0.5, 0.3, 0.15, 0.05]))]
            lot = f" {_LOTS[int(rng.integers(len(_LOTS)))]}" if rng.random() < 0.4 else ""
            title, origin = f"{country} {region}{lot} {process}", country
        big = rng.random() < 0.2
        notes = rng.choice(_NOTES[roast], size=3, replace=False)
        dollars = rng.uniform(12, 16) if origin == "Blend" else rng.uniform(14, 24) + (10 if code == "PAN" else 0)
        rows.append(
            {
                "sku": f"BEAN-{code}-{i + 1:03d}",
                "title": title + (" (1kg)" if big else ""),
                "type": "Coffee Beans",
                "kind": f"bean_{roast}",
                "vendor": HOUSE_VENDOR,
                "price": dollars * (3.2 if big else 1.0),
                "grams": 1000 if big else 250,
                "replenish": int(rng.integers(50, 71) if big else rng.integers(14, 22)),
                "roast": roast,
                "origin": origin,
                "notes": "; ".join(notes),
                "option": ("Size", "1kg" if big else "250g"),
            }
        )
    return rows


def _teas(n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        name, origin, notes = _TEAS[int(rng.integers(len(_TEAS)))]
        style = _TEA_STYLES[int(rng.integers(len(_TEA_STYLES)))]
        matcha = name == "Matcha"
        code = slugify(origin)[:3].upper()
        rows.append(
            {
                "sku": f"TEA-{code}-{i + 1:03d}",
                "title": f"{name} {style}".strip(),
                "type": "Tea",
                "kind": "tea",
                "vendor": HOUSE_VENDOR,
                "price": rng.uniform(18, 28) if matcha else rng.uniform(8, 22),
                "grams": 30 if matcha else 100,
                "replenish": int(rng.integers(21, 29) if matcha else rng.integers(30, 46)),
                "roast": "",
                "origin": origin,
                "notes": "; ".join(notes),
                "option": ("Size", "30g" if matcha else "100g"),
            }
        )
    return rows


def _gear(n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        name, kind, (lo, hi), grams = _GEAR[int(rng.integers(len(_GEAR)))]
        vendor = _GEAR_VENDORS[int(rng.integers(len(_GEAR_VENDORS)))]
        model = _GEAR_MODELS[int(rng.integers(len(_GEAR_MODELS)))]
        rows.append(
            {
                "sku": f"GEAR-{kind[:3].upper()}-{i + 1:03d}",
                "title": f"{vendor} {name} {model}",
                "type": "Brewing Gear",
                "kind": kind,
                "vendor": vendor,
                "price": rng.uniform(lo, hi),
                "grams": grams,
                "replenish": 0,
                "roast": "",
                "origin": "",
                "notes": "",
                "option": ("Title", "Default Title"),
            }
        )
    return rows


def _consumables(n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        name, kind, (lo, hi), days, grams = _CONSUMABLES[i % len(_CONSUMABLES)]
        vendor = HOUSE_VENDOR if i < len(_CONSUMABLES) else _GEAR_VENDORS[int(rng.integers(len(_GEAR_VENDORS)))]
        prefix = {"paper_filter": "FILT", "pod": "POD", "care": "CARE"}[kind]
        rows.append(
            {
                "sku": f"{prefix}-{slugify(name)[:3].upper()}-{i + 1:03d}",
                "title": f"{vendor} {name}",
                "type": "Filters & Pods",
                "kind": kind,
                "vendor": vendor,
                "price": rng.uniform(lo, hi),
                "grams": grams,
                "replenish": days,
                "roast": "",
                "origin": "",
                "notes": "",
                "option": ("Title", "Default Title"),
            }
        )
    return rows


def _food(n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        name, kind, (lo, hi) = _FOOD[i % len(_FOOD)]
        maker = _FOOD_MAKERS[int(rng.integers(len(_FOOD_MAKERS)))]
        title = name.format(o=_CACAO[int(rng.integers(len(_CACAO)))])
        rows.append(
            {
                "sku": f"FOOD-{kind[:3].upper()}-{i + 1:03d}",
                "title": f"{maker} {title}",
                "type": "Food",
                "kind": kind,
                "vendor": maker,
                "price": rng.uniform(lo, hi),
                "grams": 100,
                "replenish": 0,
                "roast": "",
                "origin": "",
                "notes": "",
                "option": ("Title", "Default Title"),
            }
        )
    return rows


def _gifts(n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    rows = [
        {
            "sku": f"GIFT-CRD-{value:03d}",
            "title": f"Gift Card ${value}",
            "type": "Gifts",
            "kind": "gift_card",
            "vendor": STORE_NAME,
            "price": float(value),
            "grams": 0,
            "replenish": 0,
            "roast": "",
            "origin": "",
            "notes": "",
            "option": ("Denomination", f"${value}"),
        }
        for value in GIFT_CARD_VALUES
    ]
    for i in range(n - len(rows)):
        name = _GIFT_SETS[i % len(_GIFT_SETS)]
        edition = "" if i < len(_GIFT_SETS) else f" No. {i // len(_GIFT_SETS) + 1}"
        rows.append(
            {
                "sku": f"GIFT-SET-{i + 1:03d}",
                "title": name + edition,
                "type": "Gifts",
                "kind": "gift_set",
                "vendor": HOUSE_VENDOR,
                "price": rng.uniform(30, 95),
                "grams": 1200,
                "replenish": 0,
                "roast": "",
                "origin": "",
                "notes": "",
                "option": ("Title", "Default Title"),
            }
        )
    return rows


def build_catalogue(n_products: int, history_days: int, rng: np.random.Generator) -> Catalogue:
    """The store's products: kinds in TYPE_SHARE proportions, Zipf popularity, a few drafts and archived ones."""
    counts = _split_counts(n_products)
    rows = (
        _beans(counts["Coffee Beans"], rng)
        + _teas(counts["Tea"], rng)
        + _gear(counts["Brewing Gear"], rng)
        + _consumables(counts["Filters & Pods"], rng)
        + _food(counts["Food"], rng)
        + _gifts(counts["Gifts"], rng)
    )
    n = len(rows)
    price = np.array([round(r["price"] * 2) / 2 - 0.01 if r["kind"] != "gift_card" else r["price"] for r in rows])
    price_cents = np.round(price * 100).astype(np.int64)
    on_sale = (rng.random(n) < 0.08) & (np.array([r["kind"] for r in rows]) != "gift_card")
    compare = np.maximum(np.round(price_cents * rng.uniform(1.15, 1.35, n) / 100) * 100 - 1, price_cents + 100)
    compare_cents = np.where(on_sale, compare, 0)
    kind = np.array([KINDS.index(r["kind"]) for r in rows])
    grams = np.array([r["grams"] for r in rows])
    gift_card = kind == KINDS.index("gift_card")
    status = rng.choice(np.array(["active", "draft", "archived"]), size=n, p=[0.91, 0.04, 0.05])
    status[gift_card] = "active"
    popularity = (1.0 + rng.permutation(n)) ** -0.8
    popularity[status == "draft"] = 0.0
    archive_day = np.full(n, history_days)
    archived = status == "archived"
    archive_day[archived] = rng.integers(history_days // 4, 3 * history_days // 4, archived.sum())
    return Catalogue(
        sku=np.array([r["sku"] for r in rows], dtype=object),
        title=np.array([r["title"] for r in rows], dtype=object),
        type=np.array([r["type"] for r in rows], dtype=object),
        kind=kind,
        vendor=np.array([r["vendor"] for r in rows], dtype=object),
        price_cents=price_cents,
        compare_cents=compare_cents.astype(np.int64),
        grams=grams,
        replenish_days=np.array([r["replenish"] for r in rows]),
        roast=np.array([r["roast"] for r in rows], dtype=object),
        origin=np.array([r["origin"] for r in rows], dtype=object),
        notes=np.array([r["notes"] for r in rows], dtype=object),
        option_name=np.array([r["option"][0] for r in rows], dtype=object),
        option_value=np.array([r["option"][1] for r in rows], dtype=object),
        status=status.astype(object),
        gift_card=gift_card,
        popularity=popularity,
        archive_day=archive_day,
        replacement=_replacements(kind, grams, status, rng),
    )


def _replacements(kind: np.ndarray, grams: np.ndarray, status: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each archived product, an active product of the same kind and pack size its buyers move to (the same
    kind of any size when there is none); other products map to themselves."""
    replacement = np.arange(len(kind))
    active = status == "active"
    for gone in np.flatnonzero(status == "archived"):
        pool = np.flatnonzero(active & (kind == kind[gone]) & (grams == grams[gone]))
        if len(pool) == 0:
            pool = np.flatnonzero(active & (kind == kind[gone]))
        replacement[gone] = rng.choice(pool if len(pool) else np.flatnonzero(active))
    return replacement


# ---------------------------------------------------------------- taste


def note_affinity(cat: Catalogue) -> np.ndarray:
    """(clusters, products): 1 + 2.5 per flavour note of the product among the cluster's favourites."""
    notes = [set(n.split("; ")) if n else set() for n in cat.notes]
    return np.array([[1.0 + 2.5 * len(n & FAVOURITE_NOTES[c]) for n in notes] for c in CLUSTERS])


def cluster_cdfs(cat: Catalogue) -> np.ndarray:
    """Cumulative P(product | cluster): Zipf popularity × the cluster's affinity for the product's kind × its
    liking for the product's flavour notes."""
    weights = cat.popularity[None, :] * AFFINITY[cat.kind].T * note_affinity(cat)
    cdf = np.cumsum(weights, axis=1)
    return np.asarray(cdf / cdf[:, -1:])


GIFT = CLUSTERS.index("gift_givers")
GLOBAL = len(CLUSTERS)  # the extra CDF row: plain popularity, for exploring outside one's cluster


@dataclass(frozen=True)
class Taste:
    """Cumulative sampling tables over the catalogue: ``cdfs`` per taste cluster plus a last :data:`GLOBAL` row
    (plain popularity), and ``staple_cdfs`` per cluster over the active consumables a repeat buyer reorders."""

    cdfs: np.ndarray
    staple_cdfs: np.ndarray


def taste_of(cat: Catalogue) -> Taste:
    """The clusters' sampling tables for this catalogue."""
    cdfs = np.vstack([cluster_cdfs(cat), np.cumsum(cat.popularity) / cat.popularity.sum()])
    consumable = (cat.replenish_days > 0) & (cat.status == "active")
    weights = cat.popularity[None, :] * AFFINITY[cat.kind].T * note_affinity(cat) * consumable
    return Taste(cdfs=cdfs, staple_cdfs=np.cumsum(weights, axis=1) / weights.sum(axis=1, keepdims=True))


def sample_products(cdfs: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One product per draw, from the CDF row (taste cluster) each draw names."""
    out = np.empty(len(rows), dtype=np.int64)
    u = rng.random(len(rows))
    for row in np.unique(rows):
        mask = rows == row
        out[mask] = np.searchsorted(cdfs[row], u[mask], side="right")
    return np.asarray(np.minimum(out, cdfs.shape[1] - 1))


def catalogue_counts(cat: Catalogue) -> dict[str, Any]:
    """manifest.expected: products, and products by status."""
    status = pd.Series(cat.status).value_counts()
    return {
        "products": len(cat),
        "products_by_status": {s: int(status.get(s, 0)) for s in ("active", "draft", "archived")},
    }
