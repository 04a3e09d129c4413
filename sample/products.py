"""The Shopify products export of the sample store: one row per product (one variant each), with the store's
metafields (flavour notes, roast, origin, replenishment days) as columns."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sample.catalogue import KINDS, STORE_NAME, Catalogue
from sample.text import as_text, escape, money, slugify
from sources.formats import PRODUCT_COLUMNS

CATEGORY = {
    "Coffee Beans": "Food, Beverages & Tobacco > Beverages > Coffee",
    "Tea": "Food, Beverages & Tobacco > Beverages > Tea & Infusions",
    "Brewing Gear": "Home & Garden > Kitchen & Dining > Kitchen Appliances > Coffee Makers & Espresso Machines",
    "Filters & Pods": "Home & Garden > Kitchen & Dining > Kitchen Appliance Accessories > Coffee Maker Accessories",
    "Food": "Food, Beverages & Tobacco > Food Items > Candy & Chocolate",
    "Gifts": "Arts & Entertainment > Party & Celebration > Gift Giving",
}


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
