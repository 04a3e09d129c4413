"""What the sample store sells and where its customers live: the catalogue, the taste clusters, the geography.

Everything here is small (≤ 5,000 products, a few dozen cities, name pools of a few hundred) and feeds
``sources/sample.py``, which samples rows from it by index. Values that go into a CSV are escaped here, once per
pool value, so the big tables can be joined without looking at each row again.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from faker import Faker

STORE_NAME = "Larkspur Coffee & Provisions"
HOUSE_VENDOR = "Larkspur Roasters"

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

PRODUCT_COLUMNS = (
    "Handle",
    "Title",
    "Body (HTML)",
    "Vendor",
    "Product Category",
    "Type",
    "Tags",
    "Published",
    "Option1 Name",
    "Option1 Value",
    "Variant SKU",
    "Variant Grams",
    "Variant Inventory Qty",
    "Variant Price",
    "Variant Compare At Price",
    "Variant Requires Shipping",
    "Variant Taxable",
    "Image Src",
    "Image Position",
    "Image Alt Text",
    "Gift Card",
    "SEO Title",
    "SEO Description",
    "Flavour notes (product.metafields.custom.flavour_notes)",
    "Roast level (product.metafields.custom.roast_level)",
    "Origin (product.metafields.custom.origin)",
    "Replenishment days (product.metafields.custom.replenishment_days)",
    "Status",
)

CATEGORY = {
    "Coffee Beans": "Food, Beverages & Tobacco > Beverages > Coffee",
    "Tea": "Food, Beverages & Tobacco > Beverages > Tea & Infusions",
    "Brewing Gear": "Home & Garden > Kitchen & Dining > Kitchen Appliances > Coffee Makers & Espresso Machines",
    "Filters & Pods": "Home & Garden > Kitchen & Dining > Kitchen Appliance Accessories > Coffee Maker Accessories",
    "Food": "Food, Beverages & Tobacco > Food Items > Candy & Chocolate",
    "Gifts": "Arts & Entertainment > Party & Celebration > Gift Giving",
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


def csv_escape(values: Sequence[str]) -> np.ndarray:
    """RFC 4180 quoting, applied once to a pool of values (object array), so rows built from it need no quoting."""
    out = [f'"{v.replace(chr(34), chr(34) * 2)}"' if re.search(r'[",\r\n]', v) else v for v in values]
    return np.array(out, dtype=object)


def slugify(text: str) -> str:
    """A Shopify-style handle or e-mail local part: lowercase ASCII letters, digits and dashes."""
    text = text.replace("ß", "ss").replace("ä", "ae").replace("ö", "oe").replace("ü", "ue")
    text = text.replace("Ä", "Ae").replace("Ö", "Oe").replace("Ü", "Ue").replace("&", "and")
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


@dataclass
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


# ---------------------------------------------------------------- geography


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


@dataclass
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

PAD2 = np.array([f"{i:02d}" for i in range(100)], dtype=object)
PAD3 = np.array([f"{i:03d}" for i in range(1000)], dtype=object)
PAD5 = np.array([f"{i:05d}" for i in range(100000)], dtype=object)


def as_text(values: np.ndarray) -> np.ndarray:
    """Integers as an object array of decimal strings (C-speed conversion, object dtype for concatenation)."""
    return np.asarray(values).astype(str).astype(object)


def _cycle_table(entries: Sequence[tuple[str, ...]], width: int = 4) -> np.ndarray:
    """A (len(entries), width) table repeating each entry's values, so a random column picks one uniformly."""
    return np.array([[e[i % len(e)] for i in range(width)] for e in entries], dtype=object)


_CITY_COUNTRY = np.array([c.country for c in CITIES], dtype=object)
_POSTAL = _cycle_table([c.postal for c in CITIES], width=12)
_DIAL = _cycle_table([c.dial for c in CITIES], width=12)
_SUBSCRIBER_DIGITS = np.array([c.subscriber_digits for c in CITIES])


@dataclass
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


# ---------------------------------------------------------------- CSV and JSON text, built column-wise

ROW_END = "\x1f"  # unit separator: never in the data, splits joined text back into rows


def money(cents: np.ndarray) -> np.ndarray:
    """Integer cents as decimal strings with a dot (``1450`` → ``14.50``)."""
    cents = np.asarray(cents, dtype=np.int64)
    return np.asarray(as_text(cents // 100) + "." + PAD2[cents % 100])


def escape(values: np.ndarray) -> np.ndarray:
    """RFC 4180 quoting for a column of raw text (quotes only the cells that need it)."""
    series = pd.Series(values, dtype=object)
    needs = series.str.contains(r'[",\r\n]', regex=True).to_numpy(dtype=bool)
    out = series.to_numpy(dtype=object).copy()
    out[needs] = '"' + series[needs].str.replace('"', '""', regex=False).to_numpy(dtype=object) + '"'
    return np.asarray(out)


def piece_matrix(pieces: Sequence[np.ndarray | str], sep: str | None = None, end: str = "") -> np.ndarray:
    """A (rows, pieces) object matrix whose row-wise concatenation is each row's text. Joining one flat list
    of references once is several times faster than concatenating strings column by column."""
    n = max(len(p) for p in pieces if not isinstance(p, str))
    step = 1 if sep is None else 2
    width = step * len(pieces) + (sep is None and end != "")
    matrix = np.empty((n, width), dtype=object)
    for i, piece in enumerate(pieces):
        matrix[:, step * i] = piece
    if sep is not None:
        matrix[:, 1::2] = sep
    if end:
        matrix[:, -1] = end
    return matrix


def matrix_text(matrix: np.ndarray) -> str:
    return "".join(matrix.ravel().tolist())


def concat(pieces: Sequence[np.ndarray | str], sep: str | None = None, end: str = "") -> np.ndarray:
    """Row-wise concatenation of pieces (arrays or constants) into one string per row."""
    matrix = piece_matrix(pieces, sep, end + ROW_END)
    if len(matrix) == 0:
        return np.empty(0, dtype=object)
    return np.array(matrix_text(matrix).split(ROW_END)[:-1], dtype=object)


def join_fields(fields: Sequence[np.ndarray | str]) -> np.ndarray:
    """Comma-joined text from already-escaped columns (arrays or constants), one string per row."""
    return concat(fields, sep=",")


def join_row(fields: Sequence[np.ndarray | str]) -> np.ndarray:
    """CSV lines (with newline) from already-escaped columns."""
    return concat(fields, sep=",", end="\n")


# ---------------------------------------------------------------- products export


def product_columns(cat: Catalogue, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The products export's columns (escaped), keyed by PRODUCT_COLUMNS names."""
    handle = pd.Series([slugify(t) for t in cat.title], dtype=object)
    repeat = handle.groupby(handle).cumcount()
    handle = np.where(repeat > 0, handle + "-" + as_text(repeat + 1), handle).astype(object)
    description = np.array([_describe(cat, i) for i in range(len(cat))], dtype=object)
    body = '<p class="lead">' + description + "</p><ul><li>" + cat.option_name + ": " + cat.option_value + "</li></ul>"
    stock = np.where(rng.random(len(cat)) < 0.04, 0, rng.integers(1, 300, len(cat)))
    stock_text = np.where(cat.gift_card, "", as_text(stock))  # gift cards: inventory not tracked
    ships = np.where(cat.gift_card, "FALSE", "TRUE")
    return dict(
        zip(
            PRODUCT_COLUMNS,
            [
                handle,
                escape(cat.title),
                escape(body),
                escape(cat.vendor),
                escape(_category(cat.type)),
                escape(cat.type),
                escape(_tags(cat)),
                np.where(published(cat), "TRUE", "FALSE"),
                cat.option_name,
                cat.option_value,
                cat.sku,
                as_text(cat.grams),
                stock_text,
                money(cat.price_cents),
                np.where(cat.compare_cents > 0, money(cat.compare_cents), ""),
                ships,
                ships,
                "https://cdn.shopify.com/s/files/1/0612/3456/7890/files/" + handle + ".jpg",
                "1",
                escape(cat.title),
                np.where(cat.gift_card, "TRUE", "FALSE"),
                escape(cat.title + " | " + STORE_NAME),
                escape(description),
                escape(cat.notes),
                cat.roast,
                escape(cat.origin),
                np.where(cat.replenish_days > 0, as_text(cat.replenish_days), ""),
                cat.status,
            ],
            strict=True,
        )
    )


def published(cat: Catalogue) -> np.ndarray:
    """Active products are on the online store, except one: the least popular active gift set (or else product),
    kept for wholesale and point-of-sale orders, sold but never recommended."""
    shown = cat.status == "active"
    hidden = shown & ~cat.gift_card & (cat.kind == KINDS.index("gift_set"))
    pool = np.flatnonzero(hidden if hidden.any() else shown & ~cat.gift_card)
    if len(pool):
        shown = shown.copy()
        shown[pool[np.argmin(cat.popularity[pool])]] = False
    return shown


def malformed_products(cols: dict[str, np.ndarray], cat: Catalogue, k: int, rng: np.random.Generator) -> np.ndarray:
    """Extra product rows a reader must refuse (never sold): a Title with an unquoted comma, a row cut short,
    ``Variant Price`` of ``N/A`` or ``14,50``. Their SKUs (``…-IMP-…``) appear nowhere else."""
    source = rng.choice(len(cat), size=k, replace=k > len(cat))
    rows = {c: np.broadcast_to(v, (len(cat),))[source].astype(object) for c, v in cols.items()}
    number = np.array([f"{i + 1:03d}" for i in range(k)], dtype=object)
    rows["Variant SKU"] = pd.Series(cat.sku[source]).str.split("-").str[0].to_numpy(dtype=object) + "-IMP-" + number
    rows["Handle"] = rows["Handle"] + "-import-" + number
    variant = np.arange(k) % 4
    rows["Title"] = np.where(variant == 0, cat.title[source] + ", imported", rows["Title"])
    rows["Variant Price"] = np.select(
        [variant == 2, variant == 3],
        ["N/A", '"' + pd.Series(money(cat.price_cents[source])).str.replace(".", ",").to_numpy(dtype=object) + '"'],
        rows["Variant Price"],
    )
    lines = join_row([rows[c] for c in PRODUCT_COLUMNS])
    cut = variant == 1
    lines[cut] = join_row([rows[c][cut] for c in PRODUCT_COLUMNS[:22]])
    return lines


def _describe(cat: Catalogue, i: int) -> str:
    """One or two sentences about a product, in the store's voice."""
    kind, title = KINDS[cat.kind[i]], cat.title[i]
    notes = cat.notes[i].replace("; ", ", ")
    if kind.startswith("bean_"):
        where = "a blend" if cat.origin[i] == "Blend" else f"single origin from {cat.origin[i]}"
        return f"{cat.roast[i].title()} roast, {where}. Notes of {notes}."
    if kind == "tea":
        return f"Loose-leaf tea from {cat.origin[i]}. Tasting notes: {notes}."
    if cat.replenish_days[i] > 0:
        return f"{title}. One pack lasts about {cat.replenish_days[i]} days of daily brewing."
    if kind == "gift_card":
        return "Give the gift of great coffee. Delivered by e-mail, never expires."
    if kind == "gift_set":
        return f"{title}: a curated box, wrapped and ready to give."
    if kind in ("chocolate", "biscuit"):
        return f"{title}, made in small batches. Pairs well with our coffees."
    return f"{title} by {cat.vendor[i]}, built for everyday brewing."


def _category(types: np.ndarray) -> np.ndarray:
    return np.asarray(pd.Series(types).map(CATEGORY).to_numpy(dtype=object))


def _tags(cat: Catalogue) -> np.ndarray:
    """Shopify tags (comma-separated): type, roast, origin, kind, holiday for gifts."""
    kind = np.array(KINDS, dtype=object)[cat.kind]
    base = pd.Series(cat.type).str.lower().to_numpy(dtype=object)
    roast = np.where(cat.roast != "", ", " + cat.roast + " roast", "")
    origin = np.where(cat.origin != "", ", " + pd.Series(cat.origin).str.lower().to_numpy(dtype=object), "")
    holiday = np.where(cat.type == "Gifts", ", holiday", "")
    return np.asarray(
        base + roast + origin + ", " + pd.Series(kind).str.replace("_", " ").to_numpy(dtype=object) + holiday
    )


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


def item_blocks(cat: Catalogue, name: np.ndarray | None = None, price: np.ndarray | None = None) -> np.ndarray:
    """Per product, the order row's ``Lineitem name … Lineitem taxable`` fields (name and price overridable)."""
    ships = np.where(cat.gift_card, "false", "true")
    return join_fields(
        [
            escape(cat.title) if name is None else name,
            money(cat.price_cents) if price is None else price,
            np.where(cat.compare_cents > 0, money(cat.compare_cents), ""),
            cat.sku,
            ships,
            ships,
        ]
    )


def retired_products(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SKUs the catalogue no longer has (``BEAN-RET-001`` …), with a name and a price in cents."""
    i = np.arange(k)
    prefix = np.array(["BEAN", "TEA", "GEAR", "FOOD"], dtype=object)[i % 4]
    sku = prefix + "-RET-" + np.array([f"{v + 1:03d}" for v in i], dtype=object)
    name = "Retired " + np.array(["House Blend", "Tea Sampler", "Dripper", "Biscotti"], dtype=object)[i % 4] + " No. "
    return sku, name + as_text(i + 1), 999 + 250 * (i % 8)
