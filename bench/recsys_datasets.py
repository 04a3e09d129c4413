"""Generated evaluation datasets with the shapes of the public ones the recommender is judged on (none is committed).

* ``ratings``: MovieLens-like explicit feedback turned implicit (LightFM's protocol): users rate items drawn from a
  latent-taste model with strong item popularity; ratings >= 4 are the positives; a random 80/20 split of each
  user's positives, no timestamps, item features (genres, one or several per item, and a year bin) that carry part
  of the taste signal, user features (age band, occupation) that carry a little.
* ``grocery``: basket data where most purchases are re-buys: each customer has a repertoire of staples bought again
  at their own rhythm (some items are consumables, others are bought once), plus discoveries driven by taste;
  timestamps; split at a date (train before, test after).

    .venv/bin/python bench/recsys_datasets.py OUT_DIR    # writes OUT_DIR/{ratings,grocery}/{train,test,items}.csv
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd


def ratings(seed: int = 0, users: int = 940, items: int = 1680, factors: int = 8) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    genres = np.array(["drama", "comedy", "action", "thriller", "romance", "scifi", "horror", "kids", "doc", "war"])
    item_genre = rng.integers(0, len(genres), size=(items, 2))
    genre_taste = rng.normal(size=(len(genres), factors))
    item_vec = 0.6 * genre_taste[item_genre].mean(axis=1) + 0.8 * rng.normal(size=(items, factors))
    age = rng.integers(0, 5, size=users)
    age_taste = rng.normal(size=(5, factors))
    user_vec = 0.3 * age_taste[age] + rng.normal(size=(users, factors))
    popularity = rng.zipf(1.6, size=items).clip(max=400).astype(float)
    rows = []
    for u in range(users):
        n = int(rng.integers(20, 200))
        p = popularity / popularity.sum()
        seen = rng.choice(items, size=min(n, items), replace=False, p=p)
        affinity = item_vec[seen] @ user_vec[u] / np.sqrt(factors)
        rating = np.clip(np.round(3.3 + 1.1 * affinity + rng.normal(scale=0.8, size=len(seen))), 1, 5)
        rows.append(pd.DataFrame({"user_id": u + 1, "item_id": seen + 1, "rating": rating}))
    frame = pd.concat(rows, ignore_index=True)
    positives = frame[frame["rating"] >= 4].sample(frac=1.0, random_state=seed)
    per_user = positives.groupby("user_id")
    test_mask = per_user.cumcount() < per_user["item_id"].transform("size") * 0.2
    train, test = positives[~test_mask], positives[test_mask]
    year = rng.integers(1950, 2000, size=items)
    item_features = pd.DataFrame(
        {
            "item_id": np.arange(1, items + 1),
            "genre": ["|".join(sorted({genres[a], genres[b]})) for a, b in item_genre],
            "year": year,
        }
    )
    user_features = pd.DataFrame(
        {"user_id": np.arange(1, users + 1), "age": age * 10 + 15, "occupation": rng.choice(list("abcdefghij"), users)}
    )
    return {
        "train": train[["user_id", "item_id"]],
        "test": test[["user_id", "item_id"]],
        "items": item_features,
        "users": user_features,
    }


def grocery(seed: int = 0, users: int = 3000, items: int = 800, factors: int = 6) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    aisles = np.array(["dairy", "produce", "bakery", "snacks", "drinks", "frozen", "pantry", "household"])
    item_aisle = rng.integers(0, len(aisles), size=items)
    aisle_taste = rng.normal(size=(len(aisles), factors))
    item_vec = 0.7 * aisle_taste[item_aisle] + 0.7 * rng.normal(size=(items, factors))
    user_vec = rng.normal(size=(users, factors))
    consumable = rng.random(items) < 0.6
    popularity = rng.zipf(1.8, size=items).clip(max=200).astype(float)
    start = pd.Timestamp("2025-01-01", tz="UTC")
    days = 365
    rows = []
    for u in range(users):
        affinity = item_vec @ user_vec[u] / np.sqrt(factors) + 0.6 * np.log(popularity)
        p = np.exp(affinity - affinity.max())
        p /= p.sum()
        repertoire = rng.choice(items, size=int(rng.integers(3, 15)), replace=False, p=p)
        trips = np.sort(rng.choice(days, size=int(rng.integers(4, 40)), replace=False))
        rate = rng.uniform(0.2, 0.9, size=len(repertoire)) * np.where(consumable[repertoire], 1.0, 0.05)
        bought_once: set[int] = set()
        for day in trips:
            basket = set(repertoire[rng.random(len(repertoire)) < rate].tolist())
            basket -= {i for i in bought_once if not consumable[i]}
            discoveries = rng.choice(items, size=int(rng.integers(0, 3)), replace=False, p=p)
            basket |= {int(i) for i in discoveries if consumable[i] or i not in bought_once}
            if rng.random() < 0.1:  # tastes drift: a discovery joins the repertoire
                repertoire = np.append(repertoire, rng.choice(items, p=p))
                rate = np.append(rate, rng.uniform(0.2, 0.9) * (1.0 if consumable[repertoire[-1]] else 0.05))
            bought_once |= basket
            stamp = start + pd.Timedelta(days=int(day), hours=int(rng.integers(8, 20)))
            rows.extend((u + 1, i + 1, stamp) for i in basket)
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    cut = start + pd.Timedelta(days=int(days * 0.8))
    train, test = frame[frame["timestamp"] < cut], frame[frame["timestamp"] >= cut]
    item_features = pd.DataFrame(
        {"item_id": np.arange(1, items + 1), "aisle": aisles[item_aisle], "price": rng.gamma(2.0, 2.0, size=items)}
    )
    return {"train": train, "test": test.drop(columns="timestamp"), "items": item_features}


def write(out: Path) -> None:
    for name, maker in (("ratings", ratings), ("grocery", grocery)):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        frames = maker()
        for part, frame in frames.items():
            frame.to_csv(folder / f"{part}.csv", index=False)
        print(f"{folder}: " + ", ".join(f"{p} {len(f)} rows" for p, f in frames.items()))


if __name__ == "__main__":
    write(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/recsys"))
