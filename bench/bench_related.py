"""Offline check of related products on the sample store: coverage, and leave-one-out within later baskets.

The store (``omnicast sample`` + ``omnicast sync`` into a scratch SQLite file, unless ``--db`` names a synced
database) is split in time: related products are built from the interactions up to ``--days`` before the last order
(what ``load_interactions`` reads at that moment), and judged on the orders after it. For every later order with two
or more distinct products and every ordered pair (a, b) in it, a hit is b among the top ``--k`` related products of
a (the product page of a shows b). Models: co-purchase item-to-item over customers (what ``related_products``
uses) and over orders, content (TF-IDF), the blend written to ``related_products`` (for several
``support_prior``), and popularity (the ``k`` best sellers but a). Also: the share of products with related
products, and the pairs whose anchor nobody had bought before the split (cold items).

With ``--scale``: the time of ``related_products`` and of both models' fit and top-10 for every user on the
synthetic store of ``bench_recommender.py`` (100k users × 5k products, about a million interactions).

    .venv/bin/python bench/bench_related.py [--customers 2000] [--days 90] [--k 10] [--db sqlite:///demo/omnicast.db]
    .venv/bin/python bench/bench_related.py --scale
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from models.db import make_engine  # noqa: E402
from models.interactions import (  # noqa: E402
    ORDER_LINES,
    ORDERS,
    PRODUCTS,
    Columns,
    counted_order,
    load_catalog,
    load_interactions,
    read_frame,
)
from models.recommend.content import ContentBased, content_features  # noqa: E402
from models.recommend.item_to_item import BASKET, RELATED, ItemToItem  # noqa: E402
from models.recommend.related import RelatedSettings, related_products, with_content_columns  # noqa: E402


def synced_store(folder: Path, customers: int) -> str:
    """A sample store written and synced into ``folder``; returns its database URL."""
    omnicast = str(Path(sys.executable).with_name("omnicast"))
    url = f"sqlite:///{folder / 'omnicast.db'}"
    env = {**os.environ, "OMNICAST_DATABASE_URL": url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    store = folder / "store"
    subprocess.run([omnicast, "sample", "--out", str(store), "--customers", str(customers), "--as-of", "2026-12-01"],
                   check=True, env=env, capture_output=True)  # fmt: skip
    sources = ["--store", str(store / "shopify"), "--crm", str(store / "hubspot_contacts.csv"),
               "--analytics", str(store / "ga4_events.jsonl")]  # fmt: skip
    subprocess.run([omnicast, "sync", *sources], check=True, env=env, capture_output=True)
    return url


def order_lines(engine, since=None, until=None) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    """Distinct (order, customer, active product) of counted orders in (since, until]."""
    stmt = (
        select(ORDERS.c.id.label(BASKET), ORDERS.c.customer_id.label(Columns.USER),
               ORDER_LINES.c.product_id.label(Columns.ITEM))
        .select_from(ORDER_LINES.join(ORDERS, ORDERS.c.id == ORDER_LINES.c.order_id)
                     .join(PRODUCTS, PRODUCTS.c.id == ORDER_LINES.c.product_id))
        .where(counted_order(), PRODUCTS.c.active.is_(True), ORDERS.c.customer_id.is_not(None))
        .distinct()
    )  # fmt: skip
    if since is not None:
        stmt = stmt.where(ORDERS.c.created_at > since)
    if until is not None:
        stmt = stmt.where(ORDERS.c.created_at <= until)
    return read_frame(engine, stmt)


def test_pairs(lines: pd.DataFrame) -> pd.DataFrame:
    """Every ordered pair (anchor, target) of distinct products bought in one order."""
    pairs = lines.merge(lines, on=BASKET, suffixes=("_a", "_b"))
    pairs = pairs[pairs[f"{Columns.ITEM}_a"] != pairs[f"{Columns.ITEM}_b"]]
    return pairs.rename(columns={f"{Columns.ITEM}_a": "anchor", f"{Columns.ITEM}_b": "target"})[["anchor", "target"]]


def hit_rate(related: pd.DataFrame, pairs: pd.DataFrame, k: int) -> float:
    top = related[related[Columns.RANK] <= k][[Columns.ITEM, RELATED]].drop_duplicates()
    hits = pairs.merge(top, left_on=["anchor", "target"], right_on=[Columns.ITEM, RELATED], how="inner")
    return len(hits) / max(len(pairs), 1)


def popularity_related(catalog_ids: np.ndarray, train: pd.DataFrame, k: int) -> pd.DataFrame:
    bought = train[train[Columns.PURCHASED]]
    counts = bought[Columns.ITEM].value_counts()
    ranked = [item for item in counts.index if item in set(catalog_ids)] + sorted(set(catalog_ids) - set(counts.index))
    rows = []
    for item in catalog_ids:
        others = [other for other in ranked[: k + 1] if other != item][:k]
        rows += [(item, other, rank) for rank, other in enumerate(others, start=1)]
    return pd.DataFrame(rows, columns=[Columns.ITEM, RELATED, Columns.RANK])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--days", type=int, default=90, help="the test window: orders in the last DAYS days")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--cold", type=float, default=0.15, help="share of products made new (no train data)")
    parser.add_argument("--scale", action="store_true", help="time the models on 100k users × 5k products instead")
    parser.add_argument("--db", help="a synced omnicast database (default: a fresh sample store)")
    args = parser.parse_args()
    if args.scale:
        scale()
        return
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        url = args.db or synced_store(Path(folder), args.customers)
        print(f"store: {'given database' if args.db else f'omnicast sample --customers {args.customers}'} "
              f"({time.perf_counter() - started:.0f} s to build)")  # fmt: skip
        run(make_engine(url), args.days, args.k, args.cold)


def run(engine, days: int, k: int, cold_share: float) -> None:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        last = conn.execute(select(func.max(ORDERS.c.created_at))).scalar_one()
    last = pd.Timestamp(last).tz_localize("UTC") if pd.Timestamp(last).tzinfo is None else pd.Timestamp(last)
    split = (last - timedelta(days=days)).to_pydatetime()
    catalog = with_content_columns(engine, load_catalog(engine))
    ids = catalog[Columns.ITEM].to_numpy()
    train = load_interactions(engine, split)
    test = order_lines(engine, since=split)
    test = test[test[BASKET].map(test[BASKET].value_counts()) >= 2]
    pairs = test_pairs(test)
    rng = np.random.default_rng(0)  # products made new: their train interactions dropped, as if just listed
    made_cold = set(rng.choice(ids, size=round(cold_share * len(ids)), replace=False).tolist())
    train = train[~train[Columns.ITEM].isin(made_cold)]
    bought_before = set(train.loc[train[Columns.PURCHASED], Columns.ITEM])
    cold_pairs = pairs[~pairs["anchor"].isin(bought_before)]
    to_cold_pairs = pairs[pairs["anchor"].isin(bought_before) & ~pairs["target"].isin(bought_before)]
    print(f"catalogue: {len(ids)} active products; train: {len(train)} interactions up to {split:%Y-%m-%d} "
          f"({len(bought_before)} products bought); test: {test[BASKET].nunique()} later orders with 2+ products, "
          f"{len(pairs)} (anchor, target) pairs; {len(made_cold)} products made new (train data dropped): "
          f"{len(cold_pairs)} pairs with a new anchor, {len(to_cold_pairs)} with a new target")  # fmt: skip
    features = content_features(catalog)
    train_orders = order_lines(engine, until=split)
    train_orders = train_orders[~train_orders[Columns.ITEM].isin(made_cold)]
    models: dict[str, pd.DataFrame] = {}
    timings: dict[str, float] = {}

    def timed(name: str, build) -> None:  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        models[name] = build()
        timings[name] = time.perf_counter() - started

    timed("co_purchase (customers)", lambda: ItemToItem().fit(train).related(ids, k))
    for shrinkage in (0.0, 20.0):
        timed(f"  … shrinkage={shrinkage:g} (default 5)",
              lambda s=shrinkage: ItemToItem(shrinkage=s).fit(train).related(ids, k))  # fmt: skip
    timed("co_purchase (orders)", lambda: ItemToItem().fit(train_orders.assign(purchased=True)).related(ids, k))
    timed("content", lambda: ContentBased().fit(train, features).related(ids, k))
    variants = {"blend (as written)": RelatedSettings(), "  … popularity_share=0 (default 0.5)":
                RelatedSettings(popularity_share=0.0)}  # fmt: skip
    for prior in (1.0, 5.0, 20.0):
        variants[f"  … support_prior={prior:g} (default 2)"] = RelatedSettings(support_prior=prior)
    for name, settings in variants.items():
        timed(name, lambda s=settings: related_products(catalog, train, k, s))
    timed("popularity", lambda: popularity_related(ids, train, k))
    head = f"{'HR@' + str(k):>8} {'new→':>8} {'→new':>8} {'with any':>9} {'with ' + str(k):>8} {'secs':>6}"
    print(f"\n{'model':38} {head}")
    for name, related in models.items():
        counts = related.groupby(Columns.ITEM).size().reindex(ids, fill_value=0)
        print(f"{name:38} {hit_rate(related, pairs, k):8.3f} {hit_rate(related, cold_pairs, k):8.3f} "
              f"{hit_rate(related, to_cold_pairs, k):8.3f} "
              f"{(counts > 0).mean():9.1%} {(counts >= k).mean():8.1%} {timings[name]:6.2f}")  # fmt: skip
    blend = related_products(catalog, load_interactions(engine, last.to_pydatetime()), k)
    counts = blend.groupby(Columns.ITEM).size().reindex(ids, fill_value=0)
    kinds = blend["kind"].value_counts(normalize=True).round(3).to_dict()
    print(f"\nas written on all data (k={k}): {(counts > 0).mean():.1%} of {len(ids)} products have related products, "
          f"{(counts >= k).mean():.1%} a full {k}; rows by kind {kinds}")  # fmt: skip


def scale(users: int = 100_000, items: int = 5_000) -> None:
    from bench_recommender import synthetic_store

    interactions, features = synthetic_store(users, items, 10.0, 40, 0)
    kinds = features.assign(kind=features[Columns.FEATURE].str.split("=").str[0],
                            value=features[Columns.FEATURE].str.split("=").str[1])  # fmt: skip
    catalog = kinds.pivot_table(index=Columns.ITEM, columns="kind", values="value", aggfunc="|".join).reset_index()
    catalog["title"] = catalog["origin"].astype(str) + " lot " + catalog[Columns.ITEM].astype(str)
    catalog = catalog.rename(columns={"note": "flavour_notes"})
    print(f"synthetic store: {users} users × {items} products, {len(interactions)} interactions "
          f"({int(interactions[Columns.PURCHASED].sum())} purchases)")  # fmt: skip
    started = time.perf_counter()
    written = related_products(catalog, interactions, 10)
    print(f"related_products (k=10): {time.perf_counter() - started:.1f} s, {len(written)} rows")
    for model, extra in ((ItemToItem(), None), (ContentBased(), features)):
        started = time.perf_counter()
        model.fit(interactions, extra)
        fitted = time.perf_counter()
        model.recommend(np.arange(users), 10)
        print(f"{model.name}: fit {fitted - started:.1f} s, top-10 with explanations for {users} users "
              f"{time.perf_counter() - fitted:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
