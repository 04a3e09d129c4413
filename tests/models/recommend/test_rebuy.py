"""Re-buys: consumables inferred from purchases, the learned re-buy probability and its blend into the hybrid."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.evaluate_recommendations import evaluate_recommendations
from models.interactions import Columns, IdMap
from models.recommend import HybridLightFM
from models.recommend.rebuy import MIN_EXPOSED_BUYERS, Rebuy, infer_consumables, item_statistics
from tests.models.builders import baskets

CUT = pd.Timestamp("2026-07-01", tz="UTC")


@pytest.fixture(scope="module")
def store() -> tuple[pd.DataFrame, np.ndarray]:
    return baskets()


def test_consumables_are_inferred_from_repeat_purchases(store: tuple[pd.DataFrame, np.ndarray]) -> None:
    interactions, consumable = store
    items = IdMap(interactions[Columns.ITEM])
    inferred = infer_consumables(interactions, items)
    stats = item_statistics(interactions, items)
    judged = stats["exposed_buyers"].to_numpy() >= MIN_EXPOSED_BUYERS  # too few: the catalogue's flag stands
    truth = consumable[items.external.to_numpy()]
    assert judged.sum() >= 20
    assert (inferred[judged] == truth[judged]).mean() >= 0.9
    repeat_rate = stats["repeat_rate"].to_numpy()
    assert repeat_rate[truth & judged].mean() > 3 * repeat_rate[~truth & judged].mean()


def test_too_little_evidence_keeps_the_catalogue_flag() -> None:
    one = pd.DataFrame({Columns.USER: [1, 2], Columns.ITEM: ["grinder", "grinder"]})
    items = IdMap(["grinder", "beans"])
    assert list(infer_consumables(one, items, known=np.array([False, True]))) == [False, True]
    assert list(infer_consumables(one, items)) == [True, True]  # unknown: never hide what may be needed again
    # 40 buyers of a tea in the last month, none back yet: too soon to say it is bought once
    days = pd.Timestamp("2026-06-01", tz="UTC") + pd.to_timedelta(range(40), "D")
    recent = pd.DataFrame({Columns.USER: range(40), Columns.ITEM: "tea", Columns.TIMESTAMP: days})
    assert list(infer_consumables(recent, IdMap(["tea"]), known=np.array([True]))) == [True]


def test_the_rebuy_model_puts_a_customers_own_staples_first(store: tuple[pd.DataFrame, np.ndarray]) -> None:
    interactions, consumable = store
    model = Rebuy().fit(interactions)
    assert model.logit_ is not None
    assert model.logit_.coefficients()["item_repeat_logit"] > 0  # repeatable items are bought again
    assert model.logit_.coefficients()["log_count"] > 0  # and so are the ones bought often
    picks = model.recommend([0], 5, exclude_seen=False)
    mine = set(interactions.loc[interactions[Columns.USER] == 0, Columns.ITEM])
    assert set(picks[Columns.ITEM]) <= mine | set(range(80))
    top = picks.iloc[0]
    assert top[Columns.ITEM] in mine and consumable[top[Columns.ITEM]]
    bought = interactions[(interactions[Columns.USER] == 0)].groupby(Columns.ITEM).size()
    for item, text in zip(picks[Columns.ITEM], picks[Columns.EXPLANATION], strict=True):
        expected = {0: "Popular with our customers", 1: "You bought this before"}.get(
            int(bought.get(item, 0)), "You buy this regularly"
        )
        assert text == expected, (item, text)


def test_the_blended_hybrid_wins_on_rebuys_and_loses_nothing_on_new_items(
    store: tuple[pd.DataFrame, np.ndarray],
) -> None:
    interactions, _ = store
    train = interactions[interactions[Columns.TIMESTAMP] < CUT]
    test = interactions[interactions[Columns.TIMESTAMP] >= CUT]
    with_seen = evaluate_recommendations(train, test, include_seen=True)
    assert with_seen["hybrid"]["settings"]["rebuy_blend"] is True
    for rival in ("rebuy", "popularity", "lightfm_default"):
        assert with_seen["hybrid"]["ndcg_at_k"] > with_seen[rival]["ndcg_at_k"], rival
    unblended = HybridLightFM(num_threads=1, blend_rebuys=False).fit(train)
    blended = HybridLightFM(num_threads=1).fit(train)
    users = test[Columns.USER].unique()
    # without own items the blend changes nothing: it only re-scores items the customer already has
    plain = unblended.recommend(users, 10, exclude_seen=True)
    mixed = blended.recommend(users, 10, exclude_seen=True)
    assert plain[Columns.ITEM].tolist() == mixed[Columns.ITEM].tolist()


def test_a_gift_card_bought_again_and_again_is_never_a_consumable() -> None:
    from models.recommend.train import with_inferred_consumables

    user = np.arange(80) % 40  # 40 buyers, each twice, 100 days apart: all had time to come back, and did
    days = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(user + np.where(np.arange(80) < 40, 0, 100), "D")
    signals = pd.DataFrame({Columns.USER: user, Columns.ITEM: 7, Columns.TIMESTAMP: days, Columns.PURCHASED: True})
    catalog = pd.DataFrame({Columns.ITEM: [7, 8], "consumable": [False, False], "gift_card": [True, False]})
    assert list(infer_consumables(signals, IdMap([7, 8]), known=np.array([False, False]))) == [True, False]
    assert list(with_inferred_consumables(catalog, signals)["consumable"]) == [False, False]
