"""The train stage: fit on the database, store every customer's top picks (hybrid for warm customers, popularity
for cold ones) in ``recommendations``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sqlalchemy import delete, insert
from sqlalchemy.engine import Engine

from models.interactions import (
    Columns,
    IdMap,
    aggregate_interactions,
    item_features,
    load_catalog,
    load_customer_ids,
    load_signals,
    owned_gear,
    table_of,
)
from models.recommend.base import RESULT_COLUMNS
from models.recommend.hybrid import HybridLightFM
from models.recommend.popularity import Popularity
from models.recommend.rebuy import infer_consumables
from models.recommend.related import write_related_products
from models.recommend.rules import RuleSet, customer_standing
from models.schema import Recommendation, utcnow


@dataclass(frozen=True)
class TrainReport:
    """What one training run did, for the flow's artifact and the day summary."""

    customers: int
    warm_customers: int
    cold_customers: int
    items: int
    interactions: int
    recommendations: int
    fit_seconds: float
    score_seconds: float
    load_seconds: float = 0.0
    write_seconds: float = 0.0
    consumables: int = 0
    related_products: int = 0
    rules: dict[str, Any] = field(default_factory=dict)
    model_settings: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return (
            f"customers scored: {self.customers} ({self.warm_customers} warm → hybrid, "
            f"{self.cold_customers} cold → popularity)\n"
            f"items: {self.items}, interactions: {self.interactions}, recommendations: {self.recommendations}\n"
            f"load: {self.load_seconds:.2f} s, fit: {self.fit_seconds:.2f} s, scoring: {self.score_seconds:.2f} s, "
            f"write: {self.write_seconds:.2f} s\n"
            f"consumables (inferred from repeat purchases): {self.consumables}; "
            f"related products stored (co-purchase and content): {self.related_products}\n"
            f"hybrid: {_choices_line(self.model_settings)}\n"
            f"marketer rules: {_rules_line(self.rules)}"
        )


def _rules_line(counts: dict[str, Any]) -> str:
    done = {name: count for name, count in counts.items() if count}
    return ", ".join(f"{name} {count}" for name, count in sorted(done.items())) or "nothing changed"


def _choices_line(settings: dict[str, Any]) -> str:
    if not settings:
        return "not fitted (no interactions)"
    if not settings.get("validated"):
        return f"{settings.get('epochs')} epochs, production settings (too little history to validate choices)"
    weight = settings.get("item_identity_weight")
    if weight is None:
        features = "features weighed like identities"
    elif weight == 1.0:
        features = "product features unused"
    else:
        features = f"{weight:.0%} of each product's weight on its identity"
    blend = "re-buys blended" if settings.get("rebuy_blend") else "no re-buy blend"
    popularity = settings.get("popularity_weight") or 0
    return (
        f"{settings.get('epochs')} epochs, weights {settings.get('weighting')}, {features}, "
        f"popularity blend {popularity:g}, {blend} "
        f"(chosen on a {settings.get('validation')} split: NDCG@10 {settings.get('validation_ndcg_at_10')})"
    )


def train_and_recommend(
    engine: Engine,
    *,
    k: int = 10,
    now: datetime | None = None,
    seed: int = 0,
    epochs: int = 15,
    components: int = 32,
    num_threads: int = 2,
    rules: RuleSet | None = None,
    store_tz: str = "UTC",
) -> TrainReport:
    """Fit on the database, recommend ``k`` active products to every customer and replace ``recommendations``.

    Customers with interactions get :class:`HybridLightFM` picks (bought gear excluded; consumables, inferred from
    repeat purchases, may return at their learned re-buy probability);
    the others get :class:`Popularity`. Deterministic for a ``seed`` when ``num_threads=1``.
    """
    now = now or utcnow()
    started = time.perf_counter()
    catalog = load_catalog(engine)
    signals = load_signals(engine, now)
    interactions = aggregate_interactions(signals)
    customers = load_customer_ids(engine)
    names = dict(zip(catalog[Columns.ITEM], catalog["title"], strict=True))
    loaded = time.perf_counter()
    models = _fit_models(signals, item_features(catalog), now, seed, epochs, components, num_threads)
    fitted = time.perf_counter()
    catalog = with_inferred_consumables(catalog, signals)
    rules = rules if rules is not None else RuleSet()
    today = now.astimezone(ZoneInfo(store_tz)).date()
    standing = customer_standing(engine, today) if rules.uses_tiers else None
    picks = _recommend_all(models, customers, interactions, catalog, names, rules.candidates_needed(k))
    picks = _with_rules(picks, rules, catalog, interactions, today, standing, k)
    scored = time.perf_counter()
    write_recommendations(engine, picks, now)
    related = write_related_products(engine, catalog, signals, now, k=k)
    warm = int(models[0].is_warm(customers).sum()) if models else 0
    return TrainReport(
        customers=len(customers),
        warm_customers=warm,
        cold_customers=len(customers) - warm,
        items=len(catalog),
        interactions=len(interactions),
        recommendations=len(picks),
        fit_seconds=round(fitted - loaded, 3),
        score_seconds=round(scored - fitted, 3),
        load_seconds=round(loaded - started, 3),
        write_seconds=round(time.perf_counter() - scored, 3),
        consumables=int(catalog["consumable"].sum()),
        related_products=related,
        rules=dict(picks.attrs.get("rules", {})),
        model_settings=models[0].settings() if models else {},
    )


def with_inferred_consumables(catalog: pd.DataFrame, signals: pd.DataFrame) -> pd.DataFrame:
    """The catalogue with ``consumable`` inferred from purchases (:func:`infer_consumables`); the catalogue's own
    flag stands for products too new or too rarely bought to tell."""
    items = IdMap(catalog[Columns.ITEM])
    known = catalog["consumable"].to_numpy(dtype=bool)
    purchases = signals[signals[Columns.PURCHASED]] if len(signals) else signals
    inferred = infer_consumables(purchases, items, known) if len(purchases) else known
    if "gift_card" in catalog:  # bought again as presents, never "run out of"
        inferred = inferred & ~catalog["gift_card"].fillna(False).to_numpy(dtype=bool)
    return catalog.assign(consumable=inferred)


def _fit_models(
    interactions: pd.DataFrame,
    features: pd.DataFrame,
    now: datetime,
    seed: int,
    epochs: int,
    components: int,
    num_threads: int,
) -> tuple[HybridLightFM, Popularity] | None:
    if interactions.empty:
        return None
    hybrid = HybridLightFM(components=components, epochs=epochs, seed=seed, num_threads=num_threads)
    return hybrid.fit(interactions, features), Popularity(now=now).fit(interactions, features)


def _recommend_all(
    models: tuple[HybridLightFM, Popularity] | None,
    customers: np.ndarray,
    interactions: pd.DataFrame,
    catalog: pd.DataFrame,
    names: dict[Any, str],
    k: int,
) -> pd.DataFrame:
    """Hybrid candidates for warm customers, popularity for cold ones (``k`` each, best first, a customer's rows
    together), with a ``model`` column saying which."""
    if models is None or len(customers) == 0:
        return pd.DataFrame(columns=[*RESULT_COLUMNS, Columns.MODEL])
    hybrid, popularity = models
    warm = hybrid.is_warm(customers)
    owned = owned_gear(interactions, catalog)
    warm_picks = hybrid.recommend(customers[warm], k, exclude_seen=False, exclude=owned, item_names=names)
    cold_picks = popularity.recommend(customers[~warm], k, exclude_seen=False, item_names=names)
    warm_picks[Columns.MODEL] = hybrid.name
    cold_picks[Columns.MODEL] = popularity.name
    return pd.concat([warm_picks, cold_picks], ignore_index=True)


def _with_rules(
    candidates: pd.DataFrame,
    rules: RuleSet,
    catalog: pd.DataFrame,
    interactions: pd.DataFrame,
    today: date,
    standing: pd.DataFrame | None,
    k: int,
) -> pd.DataFrame:
    """The marketer rules over the candidates: ``k`` picks per customer, a ``rules`` column saying what they did."""
    if candidates.empty:
        return candidates.assign(rules="")
    return rules.apply(candidates, catalog, interactions, today, standing, k=k)


def write_recommendations(engine: Engine, picks: pd.DataFrame, trained_at: datetime) -> None:
    """Replace every stored recommendation with ``picks`` in one transaction (readers see old or new, never half)."""
    table = table_of(Recommendation)
    rows = [
        {
            "customer_id": int(user),
            "product_id": int(item),
            "rank": int(rank),
            "score": float(score),
            "model": str(model),
            "explanation": str(text),
            "rules": str(applied),
            "trained_at": trained_at,
        }
        for user, item, rank, score, model, text, applied in zip(
            picks[Columns.USER],
            picks[Columns.ITEM],
            picks[Columns.RANK],
            picks[Columns.SCORE],
            picks[Columns.MODEL],
            picks[Columns.EXPLANATION],
            picks["rules"] if "rules" in picks else [""] * len(picks),
            strict=True,
        )
    ]
    with engine.begin() as conn:
        conn.execute(delete(table))
        if rows:
            conn.execute(insert(table), rows)
