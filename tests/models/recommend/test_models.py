"""The recommender: one contract for every model, the hybrid's learning and explanations, and the train stage."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from models.interactions import Columns, features_from_wide, load_interactions
from models.recommend import (
    RESULT_COLUMNS,
    HybridLightFM,
    NotFittedError,
    Popularity,
    RecommenderModel,
    UnsupportedUsersError,
    train_and_recommend,
)
from models.recommend.content import ContentBased
from models.recommend.item_to_item import ItemToItem
from models.recommend.ranking import PAD_SCORE, chunk_top_k, padded_width, top_k
from models.recommend.rebuy import Rebuy
from models.schema import Recommendation
from tests.models.builders import StoreBuilder, at, taste_clusters

NOW = datetime(2026, 3, 15, 12, tzinfo=UTC)

MODELS: dict[str, Callable[[], RecommenderModel]] = {
    "hybrid": lambda: HybridLightFM(epochs=5, components=8, num_threads=1, seed=1),
    "popularity": lambda: Popularity(),
    "item_to_item": lambda: ItemToItem(),
    "content": lambda: ContentBased(),
    "rebuy": lambda: Rebuy(),
}


@pytest.fixture(params=sorted(MODELS))
def make_model(request: pytest.FixtureRequest) -> Callable[[], RecommenderModel]:
    return MODELS[request.param]


@pytest.fixture(scope="module")
def clusters() -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    return taste_clusters(users=120, items=40, clusters=4, per_user=6, seed=3)


# ---- the contract, for every model ------------------------------------------------------------------------------
def test_recommend_before_fit_says_to_fit(make_model: Callable[[], RecommenderModel]) -> None:
    with pytest.raises(NotFittedError, match=r"call \.fit\(interactions\)"):
        make_model().recommend([1], k=3)


def test_fit_returns_the_model_and_results_have_the_contract_columns(make_model, clusters) -> None:
    interactions, features, _, _ = clusters
    model = make_model()
    assert model.fit(interactions, features) is model
    result = model.recommend([0, 1, 2], k=5)
    assert tuple(result.columns) == RESULT_COLUMNS
    assert result.groupby(Columns.USER).size().to_dict() == {0: 5, 1: 5, 2: 5}


def test_ranks_count_from_one_and_scores_never_increase_with_rank(make_model, clusters) -> None:
    interactions, features, _, _ = clusters
    result = make_model().fit(interactions, features).recommend(list(range(50)), k=8)
    for _, picks in result.groupby(Columns.USER):
        assert picks[Columns.RANK].tolist() == list(range(1, len(picks) + 1))
        assert picks[Columns.SCORE].is_monotonic_decreasing


def test_seen_items_are_excluded_unless_asked_to_keep_them(make_model, clusters) -> None:
    interactions, features, _, _ = clusters
    model = make_model().fit(interactions, features)
    seen = set(map(tuple, interactions[[Columns.USER, Columns.ITEM]].to_numpy()))
    fresh = model.recommend(list(range(40)), k=10)
    assert not seen & set(map(tuple, fresh[[Columns.USER, Columns.ITEM]].to_numpy()))
    with_seen = model.recommend(list(range(40)), k=40, exclude_seen=False)
    assert seen & set(map(tuple, with_seen[[Columns.USER, Columns.ITEM]].to_numpy()))


def test_excluded_pairs_are_never_recommended(make_model, clusters) -> None:
    interactions, features, _, _ = clusters
    model = make_model().fit(interactions, features)
    favourite = model.recommend([5], k=1)[Columns.ITEM].iloc[0]
    exclude = pd.DataFrame({Columns.USER: [5], Columns.ITEM: [favourite]})
    again = model.recommend([5, 6], k=10, exclude=exclude)
    assert favourite not in again.loc[again[Columns.USER] == 5, Columns.ITEM].tolist()


def test_never_more_than_k_nor_more_than_the_catalogue(make_model) -> None:
    interactions = pd.DataFrame({Columns.USER: [1, 1, 2, 3], Columns.ITEM: [10, 11, 11, 12]})
    model = make_model().fit(interactions)
    result = model.recommend([1, 2, 3], k=50, exclude_seen=False)
    assert result.groupby(Columns.USER).size().max() <= 3


def test_every_recommendation_explains_itself(make_model, clusters) -> None:
    interactions, features, _, _ = clusters
    result = make_model().fit(interactions, features).recommend(list(range(30)), k=5)
    assert (result[Columns.EXPLANATION].str.len() > 10).all()


def test_same_seed_gives_the_same_recommendations(make_model, clusters) -> None:
    interactions, features, _, _ = clusters
    first = make_model().fit(interactions, features).recommend(list(range(30)), k=5)
    second = make_model().fit(interactions, features).recommend(list(range(30)), k=5)
    pd.testing.assert_frame_equal(first, second)


def test_missing_columns_are_named_in_the_error(make_model) -> None:
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['item_id'\]"):
        make_model().fit(pd.DataFrame({Columns.USER: [1]}))


def test_k_below_one_is_refused(make_model, clusters) -> None:
    interactions, features, _, _ = clusters
    with pytest.raises(ValueError, match="at least one"):
        make_model().fit(interactions, features).recommend([0], k=0)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pairs=st.lists(st.tuples(st.integers(0, 12), st.integers(0, 15)), min_size=1, max_size=60),
    k=st.integers(1, 20),
)
def test_rank_order_follows_scores_for_any_interactions(make_model, pairs, k) -> None:
    interactions = pd.DataFrame(pairs, columns=[Columns.USER, Columns.ITEM])
    model = make_model().fit(interactions)
    result = model.recommend(sorted(set(interactions[Columns.USER])), k=k)
    seen = set(pairs)
    for user, picks in result.groupby(Columns.USER):
        assert picks[Columns.RANK].tolist() == list(range(1, len(picks) + 1))
        assert (np.diff(picks[Columns.SCORE].to_numpy()) <= 1e-6).all()
        assert len(picks) <= k
        assert not {(user, item) for item in picks[Columns.ITEM]} & seen


# ---- warm and cold users ------------------------------------------------------------------------------------------
def test_hybrid_refuses_users_it_never_saw_and_says_where_to_send_them(clusters) -> None:
    interactions, features, _, _ = clusters
    model = MODELS["hybrid"]().fit(interactions, features)
    with pytest.raises(UnsupportedUsersError, match="Popularity"):
        model.recommend([0, 999], k=3)
    assert set(model.recommend([0, 999], k=3, on_unsupported="skip")[Columns.USER]) == {0}


def test_popularity_serves_users_it_never_saw(clusters) -> None:
    interactions, _, _, _ = clusters
    result = Popularity().fit(interactions).recommend([999], k=3)
    counts = interactions[Columns.ITEM].value_counts()
    assert result[Columns.ITEM].tolist() == counts.index[:3].tolist()


# ---- the hybrid learns and explains -------------------------------------------------------------------------------
def test_hybrid_beats_popularity_on_held_out_purchases_with_taste_clusters() -> None:
    """precision@10 on each user's held-out items; train interactions are excluded from the candidates."""
    interactions, features, _, _ = taste_clusters(users=400, items=80, clusters=4, per_user=10, seed=0)
    rng = np.random.default_rng(0)
    held_out = interactions.groupby(Columns.USER).sample(n=2, random_state=1)
    train = interactions.drop(held_out.index)
    users = sorted(held_out[Columns.USER].unique())
    rng.shuffle(users)
    precision = {}
    for model in (HybridLightFM(epochs=15, num_threads=1, seed=0), Popularity()):
        picks = model.fit(train, features).recommend(users, k=10, exclude_seen=True)
        hits = picks.merge(held_out, on=[Columns.USER, Columns.ITEM])
        precision[model.name] = len(hits) / (10 * len(users))
    assert precision["hybrid"] > 1.5 * precision["popularity"], precision


def test_because_you_bought_names_the_bought_item_most_similar_in_embedding_space(clusters) -> None:
    interactions, features, _, _ = clusters
    interactions = interactions.assign(purchased=True)
    names = {item: f"Coffee {item}" for item in range(40)}
    model = HybridLightFM(epochs=10, components=16, num_threads=1).fit(interactions, features)
    result = model.recommend(list(range(40)), k=5, item_names=names)
    anchored = result[result[Columns.EXPLANATION].str.startswith("Because you bought ")]
    assert len(anchored) > 0
    vectors = model.item_unit_vectors_
    rows = model.items_.rows
    for user, item, text in anchored[[Columns.USER, Columns.ITEM, Columns.EXPLANATION]].itertuples(index=False):
        bought = interactions.loc[interactions[Columns.USER] == user, Columns.ITEM].to_numpy()
        sims = vectors[rows(bought)] @ vectors[rows([item])[0]]
        assert text == f"Because you bought {names[bought[np.argmax(sims)]]}"
        assert sims.max() >= model.anchor_threshold


def test_taste_explanation_names_features_the_item_shares_with_the_history() -> None:
    wide = pd.DataFrame(
        {
            Columns.ITEM: [1, 2, 3],
            "roast": ["dark", "dark", "light"],
            "note": ["chocolate|nutty", "chocolate", "citrus"],
        }
    )
    interactions = pd.DataFrame({Columns.USER: [7, 8, 8], Columns.ITEM: [1, 1, 3]})
    model = HybridLightFM(epochs=1, num_threads=1, anchor_threshold=2.0)  # no anchor can pass: show features
    result = model.fit(interactions, features_from_wide(wide, Columns.ITEM)).recommend([7], k=2)
    reasons = dict(zip(result[Columns.ITEM], result[Columns.EXPLANATION], strict=True))
    assert reasons == {
        2: "Matches your taste for chocolate notes and dark roasts",
        3: "Picked for you from your shopping history",
    }


def test_hybrid_uses_user_features_when_given(clusters) -> None:
    interactions, features, user_cluster, _ = clusters
    users = pd.DataFrame({Columns.USER: np.arange(len(user_cluster)), "tier": [f"t{c}" for c in user_cluster]})
    user_features = features_from_wide(users, Columns.USER)
    model = HybridLightFM(epochs=3, components=8, num_threads=1).fit(interactions, features, user_features)
    assert model.user_matrix_.shape == (len(model.users_), len(model.users_) + 4)  # identity + 4 tiers
    assert len(model.recommend([0, 1], k=3)) == 6


def test_popular_this_month_is_said_only_of_items_with_recent_interactions() -> None:
    interactions = pd.DataFrame(
        {
            Columns.USER: [1, 2, 3, 4],
            Columns.ITEM: [10, 10, 10, 20],
            Columns.TIMESTAMP: [datetime(2025, 6, 1, tzinfo=UTC)] * 3 + [datetime(2026, 3, 10, tzinfo=UTC)],
        }
    )
    result = Popularity(now=NOW).fit(interactions).recommend([99], k=2)
    reasons = dict(zip(result[Columns.ITEM], result[Columns.EXPLANATION], strict=True))
    assert reasons == {10: "A customer favourite", 20: "Popular this month"}


# ---- ranking mechanics ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [40, 80])
def test_a_long_top_k_over_a_large_catalogue_equals_a_full_sort(k: int) -> None:
    """Marketer rules over-fetch candidates: the blocks shrink for a long top k instead of sorting whole rows."""
    rng = np.random.default_rng(k)
    n_items = 5000
    width = padded_width(n_items)
    scores = np.full((32, width), PAD_SCORE, dtype=np.float32)
    scores[:, :n_items] = rng.standard_normal((32, n_items))
    blocked = sp.csr_matrix((32, n_items), dtype=np.float32)
    items, values = top_k(lambda rows: scores[rows].copy(), np.arange(32), blocked, k)
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(items, expected)
    np.testing.assert_array_equal(values, np.take_along_axis(scores, expected, axis=1))


def test_blockwise_top_k_equals_a_full_sort() -> None:
    rng = np.random.default_rng(4)
    scores = rng.standard_normal((64, 3000)).astype(np.float32)
    scores[:, ::7] = -np.inf  # masked cells
    items, values = chunk_top_k(scores.copy(), 10, block=100)
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(items, expected)
    np.testing.assert_array_equal(values, np.take_along_axis(scores, expected, axis=1))


def test_large_catalogue_uses_the_same_ranking_as_lightfm_predict() -> None:
    rng = np.random.default_rng(2)
    interactions = pd.DataFrame({Columns.USER: rng.integers(0, 50, 600), Columns.ITEM: rng.integers(0, 2500, 600)})
    model = HybridLightFM(epochs=2, components=8, num_threads=1).fit(interactions)
    top = model.recommend([0, 1], k=5, exclude_seen=False)
    for user, picks in top.groupby(Columns.USER):
        row = model.users_.rows([user])[0]
        scores = model.lightfm_.predict(
            int(row), np.arange(len(model.items_), dtype=np.int32), model.item_matrix_, model.user_matrix_
        )
        expected = model.items_.external[np.argsort(-scores, kind="stable")[:5]]
        assert picks[Columns.ITEM].tolist() == expected.tolist()
        np.testing.assert_allclose(picks[Columns.SCORE], np.sort(scores)[::-1][:5], rtol=1e-4)


def test_rank_rows_skips_blocked_cells() -> None:
    interactions = pd.DataFrame({Columns.USER: [1, 2], Columns.ITEM: [10, 11]})
    model = Popularity().fit(interactions)
    blocked = sp.csr_matrix(np.array([[1.0, 0.0]]))
    items, _ = model.rank_rows(np.array([-1]), 2, blocked)
    assert items.tolist() == [[1, -1]]


# ---- the train stage on the database -----------------------------------------------------------------------------
def coffee_store(engine: Engine) -> dict[str, int]:
    """Two taste camps (chocolatey darks, fruity lights), a grinder, a retired coffee and one customer who never
    shopped. Returns ids by name."""
    store = StoreBuilder(engine)
    ids: dict[str, int] = {}
    darks = [("Brazil Cerrado", "Brazil"), ("Sumatra Mandheling", "Sumatra"), ("Guatemala Huehue", "Guatemala")]
    lights = [("Ethiopia Yirgacheffe", "Ethiopia"), ("Kenya Nyeri", "Kenya"), ("Rwanda Huye", "Rwanda")]
    for title, origin in darks:
        ids[title] = store.product(
            title, roast="dark", origin=origin, flavour_notes="chocolate|nutty", replenish_days=14
        )
    for title, origin in lights:
        ids[title] = store.product(
            title, roast="light", origin=origin, flavour_notes="citrus|floral", replenish_days=14
        )
    ids["Grinder"] = store.product("Burr Grinder", consumable=False, product_type="Gear", price=120.0)
    ids["Retired"] = store.product("Retired Blend", roast="dark", flavour_notes="chocolate", active=False)
    for n in range(12):
        camp = darks if n % 2 == 0 else lights
        customer = store.customer()
        ids[f"customer{n}"] = customer
        store.order(customer, at("2026-02-01"), [(ids[camp[n % 3][0]], 1), (ids["Retired"], 1)])
        store.event(customer, "view_item", ids[camp[(n + 1) % 3][0]], at("2026-03-01"))
        if n < 4:
            store.order(customer, at("2026-02-10"), [(ids["Grinder"], 1)])
    ids["refunder"] = store.customer()
    store.order(ids["refunder"], at("2026-03-01"), [(ids["Kenya Nyeri"], 1)], financial_status="refunded")
    ids["newcomer"] = store.customer()
    return ids


def _stored(engine: Engine) -> pd.DataFrame:
    with engine.connect() as conn:
        rows = conn.execute(select(Recommendation).order_by(Recommendation.customer_id, Recommendation.rank)).all()
    return pd.DataFrame([dict(row._mapping) for row in rows])


def test_interactions_weigh_purchases_over_carts_over_views_and_fade_with_age(sqlite_engine: Engine) -> None:
    store = StoreBuilder(sqlite_engine)
    bought, carted, viewed, old_view, later, refunded = (store.product() for _ in range(6))
    retired = store.product(active=False)
    customer = store.customer()
    store.order(customer, at("2026-03-14"), [(bought, 1), (retired, 1)])
    store.order(customer, at("2025-12-14"), [(bought, 1)])  # 91 days before now: counts about half
    store.order(customer, at("2026-03-16"), [(later, 1)])  # after "now": not yet
    store.order(customer, at("2026-03-01"), [(refunded, 1)], financial_status="refunded", refunded_amount=10.0)
    store.event(customer, "add_to_cart", carted, at("2026-03-14"))
    store.event(customer, "view_item", viewed, at("2026-03-14"))
    store.event(customer, "view_item", old_view, at("2025-12-01"))  # beyond the 90-day view lookback
    frame = load_interactions(sqlite_engine, NOW).set_index(Columns.ITEM)
    assert sorted(frame.index) == sorted([bought, carted, viewed])
    weight = frame[Columns.WEIGHT]
    assert weight[bought] == pytest.approx(5 * 2 ** (-1.0 / 90) + 5 * 2 ** (-91.0 / 90), rel=1e-3)
    assert weight[carted] == pytest.approx(2 * 2 ** (-1.0 / 90), rel=1e-3)
    assert weight[viewed] == pytest.approx(0.5 * 2 ** (-1.0 / 90), rel=1e-3)
    assert frame[Columns.PURCHASED].to_dict() == {bought: True, carted: False, viewed: False}


def test_recommendations_exclude_bought_gear_but_not_consumables(sqlite_engine: Engine) -> None:
    ids = coffee_store(sqlite_engine)
    train_and_recommend(sqlite_engine, k=7, now=NOW, num_threads=1)
    stored = _stored(sqlite_engine)
    for n in range(4):
        picks = stored[stored["customer_id"] == ids[f"customer{n}"]]
        assert ids["Grinder"] not in picks["product_id"].tolist()
    bought_coffee = ids["Brazil Cerrado"]
    picks = stored[stored["customer_id"] == ids["customer0"]]
    assert bought_coffee in picks["product_id"].tolist()  # 7 of 7 sellable items left: a consumable comes back
    assert picks.loc[picks["product_id"] == bought_coffee, "explanation"].iloc[0] == "You bought this before"


def test_cold_user_gets_popular_items_with_honest_explanation(sqlite_engine: Engine) -> None:
    ids = coffee_store(sqlite_engine)
    report = train_and_recommend(sqlite_engine, k=3, now=NOW, num_threads=1)
    stored = _stored(sqlite_engine)
    newcomer = stored[stored["customer_id"] == ids["newcomer"]]
    assert newcomer["model"].unique().tolist() == ["popularity"]
    assert newcomer["rank"].tolist() == [1, 2, 3]
    assert set(newcomer["explanation"]) <= {"Popular this month", "A customer favourite"}
    assert report.cold_customers == 2 and report.warm_customers == 12  # the refunder bought nothing that counts
    warm = stored[stored["customer_id"] == ids["customer1"]]
    assert warm["model"].unique().tolist() == ["hybrid"]


def test_refunded_purchases_do_not_count(sqlite_engine: Engine) -> None:
    ids = coffee_store(sqlite_engine)
    train_and_recommend(sqlite_engine, k=3, now=NOW, num_threads=1)
    stored = _stored(sqlite_engine)
    refunder = stored[stored["customer_id"] == ids["refunder"]]
    assert refunder["model"].unique().tolist() == ["popularity"]
    assert not refunder["explanation"].str.contains("bought").any()


def test_inactive_products_are_never_recommended(sqlite_engine: Engine) -> None:
    ids = coffee_store(sqlite_engine)
    report = train_and_recommend(sqlite_engine, k=10, now=NOW, num_threads=1)
    assert ids["Retired"] not in _stored(sqlite_engine)["product_id"].tolist()
    assert report.items == 7


def test_hybrid_explanations_name_real_purchases(sqlite_engine: Engine) -> None:
    ids = coffee_store(sqlite_engine)
    train_and_recommend(sqlite_engine, k=3, now=NOW, num_threads=1)
    stored = _stored(sqlite_engine)
    customer = ids["customer2"]  # bought Guatemala Huehue (and the retired blend, which is no longer sold)
    for text in stored.loc[stored["customer_id"] == customer, "explanation"]:
        if text.startswith("Because you bought "):
            assert text == "Because you bought Guatemala Huehue"


def test_training_replaces_previous_recommendations(engine: Engine) -> None:
    coffee_store(engine)
    first = train_and_recommend(engine, k=4, now=NOW, num_threads=1, epochs=3)
    second = train_and_recommend(engine, k=4, now=NOW, num_threads=1, epochs=3)
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(Recommendation)).scalar_one()
    assert count == first.recommendations == second.recommendations == 14 * 4


def test_training_is_deterministic_for_a_seed_on_one_thread(sqlite_engine: Engine) -> None:
    coffee_store(sqlite_engine)
    train_and_recommend(sqlite_engine, k=5, now=NOW, num_threads=1, seed=7)
    first = _stored(sqlite_engine).drop(columns=["id"])
    train_and_recommend(sqlite_engine, k=5, now=NOW, num_threads=1, seed=7)
    pd.testing.assert_frame_equal(first, _stored(sqlite_engine).drop(columns=["id"]))


def test_store_without_interactions_trains_to_no_recommendations(sqlite_engine: Engine) -> None:
    store = StoreBuilder(sqlite_engine)
    store.customer()
    store.product("Lonely Coffee")
    report = train_and_recommend(sqlite_engine, now=NOW)
    assert (report.customers, report.recommendations, report.interactions) == (1, 0, 0)
    assert "1 cold" in str(report)


@pytest.mark.parametrize("weight", [None, 0.8, 1.0])
def test_the_train_report_says_what_validation_chose(weight: float | None) -> None:
    from models.recommend.train import TrainReport

    settings = {"validated": True, "validation": "time", "epochs": 20, "weighting": "binary",
                "item_identity_weight": weight, "popularity_weight": 0.5, "rebuy_blend": True,
                "validation_ndcg_at_10": 0.31}  # fmt: skip
    report = TrainReport(1, 1, 0, 1, 1, 1, 0.1, 0.1, model_settings=settings, rules={"pin:new": 2, "bury:x": 0})
    text = str(report)
    assert "20 epochs, weights binary" in text and "popularity blend 0.5, re-buys blended" in text
    assert {None: "features weighed like identities", 0.8: "80% of each", 1.0: "features unused"}[weight] in text
    assert "marketer rules: pin:new 2" in text and "bury" not in text
    unvalidated = TrainReport(1, 1, 0, 1, 1, 1, 0.1, 0.1, model_settings={"validated": False, "epochs": 15})
    assert "too little history to validate" in str(unvalidated)
