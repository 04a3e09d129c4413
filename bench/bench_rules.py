"""Benchmark: marketer rules applied to every customer's candidates (100k customers × 5k products by default).

The candidates are what the recommender hands the rules: ``RuleSet.candidates_needed(k)`` per customer, best first,
with explanations. Measured in the same run, for the default rules (the four exclusions, with ~1M purchases), the
shipped file and a rule set of every kind (exclusions by tag, a tier-limited pin, dated boosts, a burial and a
per-category cap): the baseline (no rules: each customer's first k candidates, the cut the train stage makes today)
and the rules. ``--model`` also fits the hybrid on bench_recommender's synthetic store and times ranking k versus
ranking the shipped rules' over-fetch plus the rules (the whole top-k path; slow: it fits LightFM first).

    .venv/bin/python bench/bench_rules.py [--users 100000] [--items 5000] [--k 10] [--repeat 3] [--model]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Callable
from datetime import date
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.interactions import Columns  # noqa: E402
from models.recommend.rules import RuleSet, RulesFile, load_rule_set  # noqa: E402

TODAY = date(2026, 12, 4)
TYPES = ("Coffee Beans", "Tea", "Brewing Gear", "Filters & Pods", "Food", "Gifts")
TYPE_SHARE = (0.34, 0.14, 0.16, 0.10, 0.16, 0.10)
FULL_RULES = {
    "exclude": {"items": [{"name": "no-samples", "match": {"tag": "sample"}}]},
    "tiers": {"vip": {"spend_at_least": 300}, "newcomers": {"orders_at_most": 1}},
    "pin": [{"name": "starter", "match": {"sku": ["SKU-00007", "SKU-00042"]}, "tier": "newcomers"}],
    "bury": [{"name": "clearance-last", "match": {"tag": "clearance"}}],
    "boost": [
        {"name": "holiday-gifts", "match": {"product_type": "Gifts"}, "multiply": 1.3, "from": "2026-11-20",
         "until": "2026-12-24"},
        {"name": "vip-teas", "match": {"product_type": "Tea", "tag": "new"}, "add": 0.2, "tier": "vip"},
    ],
    "max_per_category": {"field": "product_type", "max": 4},
}  # fmt: skip


def synthetic_catalog(items: int, rng: np.random.Generator) -> pd.DataFrame:
    kind = rng.choice(len(TYPES), items, p=TYPE_SHARE)
    tags = rng.choice(["", "new", "clearance", "sample", "single origin, light", "decaf"], items,
                      p=[0.6, 0.1, 0.05, 0.02, 0.18, 0.05])  # fmt: skip
    stock = np.where(rng.random(items) < 0.04, 0, rng.integers(1, 300, items))
    gift_card = (np.array(TYPES)[kind] == "Gifts") & (rng.random(items) < 0.05)
    return pd.DataFrame(
        {
            Columns.ITEM: np.arange(items),
            "sku": [f"SKU-{i:05d}" for i in range(items)],
            "handle": [f"product-{i}" for i in range(items)],
            "product_type": np.array(TYPES, dtype=object)[kind],
            "vendor": rng.choice(["Bean & Leaf", "Hario", "Fellow", "Acme"], items),
            "tags": tags,
            "roast": rng.choice(["light", "medium", "dark"], items),
            "origin": rng.choice(["Ethiopia", "Colombia", "Kenya", "Brazil"], items),
            "flavour_notes": "chocolate|cherry",
            "consumable": np.isin(kind, [0, 1, 3]),
            "inventory_quantity": pd.array(
                [None if card else int(n) for card, n in zip(gift_card, stock, strict=True)], dtype="Int64"
            ),  # gift cards: not tracked
            "published": rng.random(items) > 0.002,
            "gift_card": gift_card,
        }
    )


def synthetic_candidates(users: int, items: int, per_user: int, rng: np.random.Generator) -> pd.DataFrame:
    """``per_user`` distinct items per customer drawn by Zipf popularity, scores falling, a handful of sentences."""
    popularity = 1.0 / np.arange(1, items + 1) ** 0.8
    draws = rng.choice(items, (users, per_user * 2), p=popularity / popularity.sum())
    draws.sort(axis=1)
    first = np.ones(draws.shape, dtype=bool)
    first[:, 1:] = draws[:, 1:] != draws[:, :-1]
    keyed = np.where(first, rng.random(draws.shape), 2.0)  # duplicates sort last
    order = np.argsort(keyed, axis=1)[:, :per_user]
    item = np.take_along_axis(draws, order, axis=1)
    valid = np.take_along_axis(first, order, axis=1)
    score = np.sort(rng.normal(0, 1, (users, per_user)), axis=1)[:, ::-1]
    sentences = np.array(
        ["Because you bought Ethiopia Guji", "Matches your taste for cherry notes", "Popular this month", ""],
        dtype=object,
    )
    user = np.repeat(np.arange(users), per_user)
    frame = pd.DataFrame(
        {
            Columns.USER: user,
            Columns.ITEM: item.ravel(),
            Columns.RANK: np.tile(np.arange(1, per_user + 1), users),
            Columns.SCORE: score.ravel(),
            Columns.EXPLANATION: sentences[rng.integers(0, len(sentences), users * per_user)],
            Columns.MODEL: "hybrid",
        }
    )
    return frame[valid.ravel()].reset_index(drop=True)


def synthetic_purchases(users: int, items: int, per_user: float, rng: np.random.Generator) -> pd.DataFrame:
    counts = rng.poisson(per_user, users)
    return pd.DataFrame(
        {Columns.USER: np.repeat(np.arange(users), counts), Columns.ITEM: rng.integers(0, items, counts.sum())}
    ).drop_duplicates()


def _first_k(candidates: pd.DataFrame, k: int) -> pd.DataFrame:
    return candidates[candidates[Columns.RANK] <= k]


def _best_of(repeat: int, run: Callable[[], object]) -> tuple[float, object]:
    """Fastest of ``repeat`` timed runs (the machine may be shared) and the last result."""
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--purchases-per-user", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the best is reported")
    parser.add_argument("--model", action="store_true", help="also time the hybrid's ranking with the over-fetch")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    k = args.k
    rule_sets = {
        "default rules (the 4 exclusions)": RuleSet(),
        "shipped rules (campaigns/recommendation-rules.yaml)": load_rule_set(None),
        "every rule kind, cap 4 per type": RuleSet(RulesFile.model_validate(FULL_RULES)),
    }
    catalog = synthetic_catalog(args.items, rng)
    widest = max(rules.candidates_needed(k) for rules in rule_sets.values())
    candidates = synthetic_candidates(args.users, args.items, widest, rng)
    purchases = synthetic_purchases(args.users, args.items, args.purchases_per_user, rng)
    spend = rng.gamma(1.5, 120, args.users)
    customers = pd.DataFrame(
        {Columns.USER: np.arange(args.users), "orders": rng.poisson(2, args.users), "spend": spend,
         "loyalty_tier": None}
    )  # fmt: skip
    print(f"{args.users:,} customers × {args.items:,} products, k={k}, {len(purchases):,} purchases")
    for label, rules in rule_sets.items():
        fetched = rules.candidates_needed(k)
        mine = candidates[candidates[Columns.RANK] <= fetched].reset_index(drop=True)
        baseline, _ = _best_of(args.repeat, partial(_first_k, mine, k))
        seconds, result = _best_of(args.repeat, partial(rules.apply, mine, catalog, purchases, TODAY, customers, k=k))
        assert isinstance(result, pd.DataFrame)
        print(
            f"{label}: {fetched} candidates per customer ({len(mine):,}); baseline, no rules (first {k}): "
            f"{baseline:.3f} s; rules: {seconds:.3f} s (+{seconds - baseline:.3f} s), best of {args.repeat}\n"
            f"  {len(result):,} picks; {result.attrs['rules']}"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of this process: {peak:,.0f} MB")
    if args.model:
        _with_model(args, load_rule_set(None), catalog, purchases, customers)


def _with_model(
    args: argparse.Namespace, rules: RuleSet, catalog: pd.DataFrame, purchases: pd.DataFrame, customers: pd.DataFrame
) -> None:
    from bench.bench_recommender import synthetic_store
    from models.recommend import HybridLightFM

    interactions, features = synthetic_store(args.users, args.items, 10.3, 40, seed=0)
    model = HybridLightFM(num_threads=2, validate=False).fit(interactions, features)
    rows = np.arange(len(model.users_))
    users = model.users_.external
    plain, _ = _best_of(args.repeat, lambda: model.rank_rows(rows, args.k, model.seen_))
    print(f"hybrid: rank top-{args.k} for {len(rows):,} users, best of {args.repeat}: {plain:.2f} s")
    over = rules.candidates_needed(args.k)
    wide, _ = _best_of(args.repeat, lambda: model.rank_rows(rows, over, model.seen_))
    candidates = model.recommend(users, over, exclude_seen=False)
    applied, _ = _best_of(args.repeat, lambda: rules.apply(candidates, catalog, purchases, TODAY, customers, k=args.k))
    print(f"hybrid: rank top-{over} {wide:.2f} s + full rules {applied:.2f} s = {wide + applied:.2f} s")


if __name__ == "__main__":
    main()
