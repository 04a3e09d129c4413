"""The catalogue and the taste clusters (sample/catalogue.py, sample/products.py): every type, plausible prices,
and tastes a recommender can learn."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

import numpy as np

from tests.sample.reading import PRICE, SHOPIFY_TIME, parses, records, shopify_time


def test_catalogue_has_every_type_consumables_and_plausible_prices(store: tuple[Path, dict]) -> None:
    out, _ = store
    products = [p for p in records(out, "products") if PRICE.fullmatch(p["Variant Price"])]
    by_type = defaultdict(list)
    for p in products:
        by_type[p["Type"]].append(Decimal(p["Variant Price"]))
    assert set(by_type) == {"Coffee Beans", "Brewing Gear", "Filters & Pods", "Tea", "Food", "Gifts"}
    assert statistics.median(by_type["Brewing Gear"]) > statistics.median(by_type["Coffee Beans"])
    assert statistics.median(by_type["Food"]) < statistics.median(by_type["Coffee Beans"])
    beans = [p for p in products if p["Type"] == "Coffee Beans"]
    assert all(p["Roast level (product.metafields.custom.roast_level)"] in {"light", "medium", "dark"} for p in beans)
    replenish = "Replenishment days (product.metafields.custom.replenishment_days)"
    consumable = {"Coffee Beans", "Tea", "Filters & Pods"}
    assert all(bool(p[replenish]) == (p["Type"] in consumable) for p in products)
    assert {"draft", "archived"} <= {p["Status"] for p in products}
    assert len({p["Variant SKU"] for p in products}) == len(products)


def test_taste_clusters_steer_what_customers_buy(store: tuple[Path, dict]) -> None:
    """People who buy tea buy more tea-adjacent things than coffee people do: the signal a recommender learns."""
    out, _ = store
    types = {p["Variant SKU"]: p["Type"] for p in records(out, "products")}
    baskets = defaultdict(Counter)
    for row in records(out, "orders"):
        if row["Lineitem sku"] in types:
            baskets[row["Email"]][types[row["Lineitem sku"]]] += 1
    tea_people = [b for b in baskets.values() if b["Tea"] >= 2]
    others = [b for b in baskets.values() if b["Tea"] == 0 and sum(b.values()) >= 2]
    tea_share = sum(b["Coffee Beans"] for b in tea_people) / sum(sum(b.values()) for b in tea_people)
    other_share = sum(b["Coffee Beans"] for b in others) / sum(sum(b.values()) for b in others)
    assert tea_share < other_share


def test_a_recommender_can_learn_the_tastes(store: tuple[Path, dict]) -> None:
    """Leave each buyer's last new product out: items bought together beat plain popularity at finding it."""
    out, _ = store
    skus = sorted({p["Variant SKU"] for p in records(out, "products") if PRICE.fullmatch(p["Variant Price"])})
    column = {sku: i for i, sku in enumerate(skus)}
    history = defaultdict(list)
    for row in records(out, "orders"):
        if row["Name"] and row["Lineitem sku"] in column and parses(row["Created at"], SHOPIFY_TIME):
            history[row["Email"]].append((shopify_time(row["Created at"]), column[row["Lineitem sku"]]))
    seen = np.zeros((len(history), len(skus)))
    held_out = {}
    for user, bought in enumerate(history.values()):
        distinct = list(dict.fromkeys(item for _, item in sorted(bought)))
        if len(distinct) >= 3:
            held_out[user] = distinct.pop()
        seen[user, distinct] = 1
    popularity = seen.sum(axis=0)
    together = seen.T @ seen
    np.fill_diagonal(together, 0)
    together /= np.sqrt(np.outer(popularity + 1, popularity + 1))
    hits = Counter()
    for user, item in held_out.items():
        for model, scores in (("popularity", popularity.copy()), ("together", together @ seen[user])):
            scores[seen[user] > 0] = -1
            hits[model] += item in np.argsort(-scores)[:10]
    assert len(held_out) > 500
    assert hits["together"] > 1.15 * hits["popularity"]
