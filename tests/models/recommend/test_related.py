"""Related products: co-purchase item-to-item, content-based TF-IDF, and the blend written to ``related_products``."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from models.interactions import Columns, load_catalog, load_interactions
from models.recommend.content import ContentBased, content_features, feature_tokens
from models.recommend.item_to_item import RELATED, ItemToItem
from models.recommend.related import RelatedSettings, load_related, related_products, write_related_products
from models.schema import RelatedProduct
from tests.models.builders import StoreBuilder, at

NOW = datetime(2026, 3, 15, 12, tzinfo=UTC)


def baskets(*groups: tuple[list[int], int]) -> pd.DataFrame:
    """Purchases: each ``(items, times)`` is bought together by ``times`` distinct customers."""
    rows, user = [], 0
    for items, times in groups:
        for _ in range(times):
            rows += [(user, item) for item in items]
            user += 1
    return pd.DataFrame(rows, columns=[Columns.USER, Columns.ITEM]).assign(purchased=True)


def catalog(rows: list[tuple[int, str, str, str, str]]) -> pd.DataFrame:
    """``item_id, title, product_type, roast, flavour_notes`` (``|``-separated notes)."""
    return pd.DataFrame(rows, columns=[Columns.ITEM, "title", "product_type", "roast", "flavour_notes"])


def related_of(frame: pd.DataFrame, item: int) -> list[int]:
    return frame.loc[frame[Columns.ITEM] == item, RELATED].tolist()


# ---- co-purchase ------------------------------------------------------------------------------------------------
def test_co_purchased_items_rank_first_and_never_the_item_itself() -> None:
    interactions = baskets(([1, 2], 8), ([1, 3], 2), ([4, 5], 6), ([1], 3), ([3], 2))
    model = ItemToItem().fit(interactions)
    related = model.related([1, 2, 3], k=5)
    assert related_of(related, 1) == [2, 3]
    assert related_of(related, 2) == [1]
    assert related_of(related, 3) == [1]
    assert not (related[Columns.ITEM] == related[RELATED]).any()
    picks = model.recommend([8], k=2, exclude_seen=True, item_names={2: "Kenya AA"})  # user 8 bought 1 and 3
    assert picks[Columns.ITEM].tolist()[0] == 2
    assert picks[Columns.EXPLANATION].tolist()[0] == "Pairs with 1"  # 2 pairs with 1 only (names default to ids)


def test_shrinkage_keeps_a_one_off_niche_pair_below_a_well_supported_one() -> None:
    # 10 and 11 are each bought once, together: cosine 1. 1 and 2 share 12 of their 20 and 15 baskets.
    interactions = baskets(([1, 2], 12), ([1], 8), ([2], 3), ([10, 11, 1], 1))
    model = ItemToItem(shrinkage=5.0).fit(interactions)
    sims = model.related([1, 10], k=3).set_index([Columns.ITEM, RELATED])[Columns.SCORE]
    assert sims[(1, 2)] > sims[(10, 11)]
    plain = ItemToItem(shrinkage=0.0).fit(interactions).related([10], k=1)
    assert plain[Columns.SCORE].iloc[0] == pytest.approx(1.0 / np.sqrt(1 * 1))  # what shrinkage protects from
    assert related_of(ItemToItem(min_support=2).fit(interactions).related([10], k=3), 10) == []


def test_co_purchase_similarity_is_symmetric_and_deterministic() -> None:
    rng = np.random.default_rng(5)
    interactions = pd.DataFrame({Columns.USER: rng.integers(0, 60, 400), Columns.ITEM: rng.integers(0, 25, 400)})
    interactions = interactions.drop_duplicates().assign(purchased=True)
    model = ItemToItem(neighbours=1000).fit(interactions)
    dense = model.similarity_.toarray()
    np.testing.assert_allclose(dense, dense.T, rtol=1e-6)
    assert (np.diag(dense) == 0).all()
    shuffled = interactions.sample(frac=1.0, random_state=3)
    again = ItemToItem(neighbours=1000).fit(shuffled).related(list(range(25)), k=5)
    pd.testing.assert_frame_equal(model.related(list(range(25)), k=5), again)


def test_orders_are_the_baskets_when_the_interactions_carry_them() -> None:
    # one customer bought 1 with 2 in one order and 3 in another: by order, 1 pairs with 2 only
    rows = pd.DataFrame(
        {Columns.USER: [7, 7, 7, 8, 8], Columns.ITEM: [1, 2, 3, 1, 2], "basket_id": ["a", "a", "b", "c", "c"]}
    )
    assert related_of(ItemToItem().fit(rows).related([1], k=5), 1) == [2]
    assert related_of(ItemToItem().fit(rows.drop(columns="basket_id")).related([1], k=5), 1) == [2, 3]


# ---- content ----------------------------------------------------------------------------------------------------
def coffee_catalog() -> pd.DataFrame:
    return catalog(
        [
            (1, "Ethiopia Guji Natural", "Coffee", "light", "blueberry|jasmine"),
            (2, "Ethiopia Yirgacheffe Washed", "Coffee", "light", "jasmine|lemon"),
            (3, "Brazil Cerrado", "Coffee", "dark", "chocolate|nutty"),
            (4, "Sumatra Mandheling", "Coffee", "dark", "chocolate|earthy"),
            (5, "Burr Grinder", "Gear", None, None),
            (6, "Ethiopia Sidamo Natural", "Coffee", "light", "blueberry|bergamot"),  # new: nobody bought it
        ]
    )


def test_content_tokens_keep_whole_values_and_their_words() -> None:
    assert feature_tokens(["roast=Dark", "title=The Ethiopia Guji", "bare"]) == [
        "roast=dark", "dark", "title=the ethiopia guji", "ethiopia", "guji", "bare",
    ]  # fmt: skip
    features = content_features(catalog([(1, "A", "Coffee", None, None)]).assign(tags="decaf, Swiss Water"))
    assert sorted(features[Columns.FEATURE]) == ["product_type=Coffee", "tag=Swiss Water", "tag=decaf", "title=A"]


def test_a_cold_item_gets_content_neighbours_and_is_a_neighbour_of_what_it_resembles() -> None:
    items = coffee_catalog()
    interactions = baskets(([1, 3], 3), ([2, 4], 3), ([3, 5], 2))  # item 6 was never bought
    model = ContentBased().fit(interactions, content_features(items))
    related = model.related([6, 1, 5], k=3)
    assert related_of(related, 6)[0] == 1  # Ethiopia, natural, light, blueberry
    assert 6 in related_of(related, 1)[:2]
    assert 6 not in related_of(related, 6)
    assert 5 not in related_of(related, 6)  # a grinder shares nothing with a light Ethiopian: no similarity
    sims = model.related([1, 6], k=5).set_index([Columns.ITEM, RELATED])[Columns.SCORE]
    assert sims[(1, 6)] == pytest.approx(sims[(6, 1)])  # cosine is symmetric
    picks = model.recommend([0], k=1, item_names={1: "Ethiopia Guji Natural"})  # user 0 bought 1 and 3
    assert picks[[Columns.ITEM, Columns.EXPLANATION]].values.tolist() == [[6, "Similar to Ethiopia Guji Natural"]]


# ---- the blend ----------------------------------------------------------------------------------------------------
def test_blend_uses_co_purchase_where_supported_and_content_for_cold_and_thin_items() -> None:
    items = coffee_catalog()
    interactions = baskets(([1, 3], 20), ([2, 4], 20), ([3, 5], 3))
    frame = related_products(items, interactions, k=3)
    first = frame[frame[Columns.RANK] == 1].set_index(Columns.ITEM)
    assert first.loc[1, RELATED] == 3 and first.loc[1, "kind"] == "co_purchase"
    assert first.loc[1, Columns.EXPLANATION] == "Pairs with Ethiopia Guji Natural"
    assert first.loc[6, "kind"] == "content" and first.loc[6, RELATED] == 1  # the cold item: content only
    assert first.loc[6, Columns.EXPLANATION] == "Similar to Ethiopia Sidamo Natural"
    assert 6 in related_of(frame, 1)  # and it is shown next to what it resembles
    assert not (frame[Columns.ITEM] == frame[RELATED]).any()
    assert frame.groupby(Columns.ITEM)[Columns.SCORE].apply(lambda s: s.is_monotonic_decreasing).all()
    pd.testing.assert_frame_equal(frame, related_products(items.iloc[::-1], interactions.iloc[::-1], k=3))


def test_of_two_products_as_similar_the_one_that_sells_comes_first() -> None:
    items = catalog(
        [
            (1, "Kenya Nyeri", "Coffee", "light", "blackcurrant"),  # new
            (2, "Kenya Kirinyaga", "Coffee", "light", "blackcurrant"),
            (3, "Kenya Kiambu", "Coffee", "light", "blackcurrant"),
        ]
    )
    interactions = baskets(([2], 1), ([3], 6))
    frame = related_products(items, interactions, k=2)
    assert related_of(frame, 1) == [3, 2]
    alone = related_products(items, interactions, k=2, settings=RelatedSettings(popularity_share=0.0))
    scores = alone[alone[Columns.ITEM] == 1][Columns.SCORE].to_numpy()
    assert scores[0] == pytest.approx(scores[1], abs=1e-5)  # similarity alone: a tie (best seller by a hair)


def test_a_store_without_purchases_still_gets_content_related_products() -> None:
    empty = pd.DataFrame({Columns.USER: [], Columns.ITEM: []})
    frame = related_products(coffee_catalog(), empty, k=2)
    assert set(frame["kind"]) == {"content"}
    assert related_of(frame, 3) == [4, 1]  # dark and chocolatey first, then another coffee


def test_gift_cards_and_unpublished_products_are_never_related() -> None:
    items = coffee_catalog().assign(gift_card=[False] * 5 + [True], published=[True, True, True, False, True, True])
    frame = related_products(items, baskets(([1, 3], 5), ([3, 4], 5)), k=5)
    assert not set(frame[RELATED]) & {4, 6}


# ---- the table ------------------------------------------------------------------------------------------------------
def test_write_replaces_the_table_and_load_reads_active_products_best_first(engine: Engine) -> None:
    store = StoreBuilder(engine)
    guji = store.product("Ethiopia Guji Natural", roast="light", flavour_notes="blueberry|jasmine", tags="natural")
    brazil = store.product("Brazil Cerrado", roast="dark", flavour_notes="chocolate|nutty")
    sumatra = store.product("Sumatra Mandheling", roast="dark", flavour_notes="chocolate|earthy")
    sidamo = store.product("Ethiopia Sidamo Natural", roast="light", flavour_notes="blueberry", tags="natural")
    for _ in range(4):
        customer = store.customer()
        store.order(customer, at("2026-03-01"), [(guji, 1), (brazil, 1)])
    written = write_related_products(engine, load_catalog(engine), load_interactions(engine, NOW), NOW, k=2)
    assert written == 8
    assert write_related_products(engine, load_catalog(engine), load_interactions(engine, NOW), NOW, k=2) == 8
    with engine.connect() as conn:
        rows = conn.execute(select(RelatedProduct).order_by(RelatedProduct.product_id, RelatedProduct.rank)).all()
    assert len(rows) == 8
    stored = load_related(engine, [guji, sidamo, 999])
    assert [p.related_product_id for p in stored[guji]] == [brazil, sidamo]
    assert stored[guji][0].kind == "co_purchase" and stored[guji][0].explanation == "Pairs with Ethiopia Guji Natural"
    assert stored[sidamo][0].related_product_id == guji and stored[sidamo][0].kind == "content"
    assert 999 not in stored
    assert [p.related_product_id for p in load_related(engine, [brazil], per_product=1)[brazil]] == [guji]
    products = RelatedProduct.metadata.tables["products"]
    with engine.begin() as conn:  # sold out since the training: not suggested any more
        conn.execute(update(products).where(products.c.id == brazil).values(inventory_quantity=0))
    assert brazil not in [p.related_product_id for p in load_related(engine, [guji])[guji]]
    del sumatra
