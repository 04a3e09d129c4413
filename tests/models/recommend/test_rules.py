"""Marketer rules over recommendations: each rule kind, dates (inclusive, store-local), tiers, the errors a marketer
sees (file, line, field), the shipped file, and properties that hold for any candidates and rules."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from models.campaigns import SHIPPED_DIR
from models.interactions import load_catalog
from models.recommend.rules import (
    PIN_MODEL,
    RULES,
    RULES_FILE,
    RuleSet,
    RulesFile,
    customer_standing,
    load_rule_set,
    load_rules,
    sellable_to_suggest,
)
from models.schema import Product
from models.yamlfile import YamlFileError
from tests.models.builders import StoreBuilder, at

TODAY = date(2026, 12, 4)
TYPES = ["Coffee Beans"] * 6 + ["Tea"] * 3 + ["Brewing Gear"] * 2 + ["Gifts"] * 2 + [None]


def catalog(**changes: Any) -> pd.DataFrame:
    """14 products (ids 100…113): beans, teas, gear (not consumable), gifts (one a gift card), one without type."""
    n = len(TYPES)
    frame = pd.DataFrame(
        {
            "item_id": np.arange(100, 100 + n),
            "sku": [f"SKU-{i}" for i in range(n)],
            "handle": [f"product-{i}" for i in range(n)],
            "title": [f"Product {i}" for i in range(n)],
            "product_type": TYPES,
            "vendor": ["Bean & Leaf"] * 10 + ["Hario"] * 4,
            "tags": ["single origin, light", "decaf", "", "", "clearance", "", "new", "", "", "", "", "", "", ""],
            "roast": ["light", "dark", "medium", "light", "dark", "medium"] + [None] * 8,
            "origin": ["Ethiopia", "Colombia", "Kenya", "Brazil", "Peru", "Ethiopia"] + [None] * 8,
            "flavour_notes": ["jasmine|bergamot", "cocoa", "", "", "", "", "grassy|umami"] + [None] * 7,
            "price": 10.0,
            "consumable": [True] * 9 + [False] * 5,
            "inventory_quantity": pd.array([40] * n, dtype="Int64"),
            "published": True,
            "gift_card": [False] * 12 + [True, False],
        }
    )
    for column, values in changes.items():
        frame[column] = values
    return frame


def candidates(users: dict[int, list[int]], model: str = "hybrid") -> pd.DataFrame:
    """Each user's items, best first, scores falling from 1 by 0.1."""
    rows = [
        (user, item, rank, 1.0 - 0.1 * (rank - 1), f"Because {user}/{item}", model)
        for user, items in users.items()
        for rank, item in enumerate(items, start=1)
    ]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rank", "score", "explanation", "model"])


def rules(**spec: Any) -> RuleSet:
    return RuleSet(RulesFile.model_validate(spec))


def picks(result: pd.DataFrame, user: int) -> list[int]:
    return result[result["user_id"] == user].sort_values("rank")["item_id"].tolist()


ALL = list(range(100, 114))


# ---- exclusions -----------------------------------------------------------------------------------------------------


def test_default_rules_exclude_out_of_stock_unpublished_gift_cards_and_owned_gear() -> None:
    stock = pd.array([40, 0, -1, None] + [40] * 10, dtype="Int64")  # 101: 0, 102: below 0, 103: not tracked
    published = [True] * 5 + [False] + [True] * 8  # 105 hidden
    bought = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [109, 100, 110]})  # gear 109; beans 100 may return
    result = RuleSet().apply(
        candidates({1: ALL, 2: ALL}), catalog(inventory_quantity=stock, published=published), bought, TODAY, k=20
    )
    assert picks(result, 1) == [100, 103, 104, 106, 107, 108, 110, 111, 113]
    assert picks(result, 2) == [100, 103, 104, 106, 107, 108, 109, 111, 113]
    assert result.attrs[RULES] == {
        "exclude:out_of_stock": 4,
        "exclude:unpublished": 2,
        "exclude:gift_cards": 2,
        "exclude:purchased_non_consumables": 2,
        "users_short_of_k": 2,
    }
    assert (result[RULES] == "").all() and list(result["rank"][:3]) == [1, 2, 3]


def test_each_default_exclusion_can_be_turned_off_and_a_purchase_only_counts_when_purchased() -> None:
    off = rules(exclude={"out_of_stock": False, "gift_cards": False, "purchased_non_consumables": False})
    stock = pd.array([0] * 14, dtype="Int64")
    bought = pd.DataFrame({"user_id": [1], "item_id": [109]})
    assert picks(off.apply(candidates({1: ALL}), catalog(inventory_quantity=stock), bought, TODAY, k=20), 1) == ALL
    interactions = bought.assign(purchased=False)  # viewed, never bought
    assert 109 in picks(RuleSet().apply(candidates({1: ALL}), catalog(), interactions, TODAY, k=20), 1)


def test_items_not_in_the_catalogue_are_never_shown() -> None:
    result = RuleSet().apply(candidates({1: [999, 100]}), catalog(), None, TODAY, k=5)
    assert picks(result, 1) == [100] and result.attrs[RULES]["exclude:not_in_catalogue"] == 1


@pytest.mark.parametrize(
    ("match", "gone"),
    [
        ({"sku": "sku-3"}, [103]),  # case-insensitive
        ({"handle": ["product-1", "product-2"]}, [101, 102]),
        ({"product_type": "tea"}, [106, 107, 108]),
        ({"vendor": "Hario"}, [110, 111, 113]),  # 112 is a gift card anyway
        ({"tag": "Light"}, [100]),  # a whole tag: "single origin, light"
        ({"tag": "ligh"}, []),
        ({"roast": "dark", "origin": "Peru"}, [104]),  # every field must hold
        ({"flavour_note": ["umami", "cocoa"]}, [101, 106]),
    ],
)
def test_explicit_exclusions_match_on_product_fields(match: dict[str, Any], gone: list[int]) -> None:
    spec = rules(exclude={"items": [{"name": "out", "match": match}]})
    kept = picks(spec.apply(candidates({1: ALL}), catalog(), None, TODAY, k=20), 1)
    assert sorted(set(ALL) - {112} - set(kept)) == gone


def test_excluded_items_for_placements_that_are_not_personal() -> None:
    spec = rules(
        exclude={
            "items": [
                {"name": "no-decaf", "match": {"tag": "decaf"}},
                {"name": "vip-only", "match": {"sku": "SKU-0"}, "tier": "vip"},
            ]
        },  # fmt: skip
        tiers={"vip": {"spend_at_least": 100}},
    )
    stock = pd.array([40, 40, 0] + [40] * 11, dtype="Int64")
    assert list(spec.excluded_items(catalog(inventory_quantity=stock), TODAY)) == [101, 102, 112]


# ---- pin, bury, boost -----------------------------------------------------------------------------------------------


def test_pins_come_first_in_the_order_listed_even_when_the_model_did_not_propose_them() -> None:
    spec = rules(
        pin=[
            {"name": "gear-first", "match": {"sku": ["SKU-11", "SKU-12", "SKU-9"]}, "explanation": "New this season"},
            {"name": "tea-next", "match": {"handle": "product-7"}},
        ]
    )
    result = spec.apply(candidates({1: [100, 101, 102, 107, 9999]}), catalog(), None, TODAY, k=4)
    mine = result[result["user_id"] == 1].sort_values("rank")
    assert mine["item_id"].tolist() == [111, 109, 107, 100]  # the gift card SKU-12 is never pinned
    assert mine["explanation"].tolist()[:2] == ["New this season"] * 2  # not proposed: the pin's words
    assert mine["explanation"].tolist()[2:] == ["Because 1/107", "Because 1/100"]  # proposed: the model's words
    assert mine["model"].tolist() == [PIN_MODEL, PIN_MODEL, "hybrid", "hybrid"]
    assert mine["score"].tolist() == [0.0, 0.0, 0.7, 1.0]  # the model's score stays (none for an added pin)
    assert mine[RULES].tolist() == ["pin:gear-first", "pin:gear-first", "pin:tea-next", ""]


def test_a_pinned_product_the_customer_owns_is_not_pinned_for_them() -> None:
    spec = rules(pin=[{"name": "grinder", "match": {"sku": "SKU-10"}}])
    bought = pd.DataFrame({"user_id": [1], "item_id": [110]})
    result = spec.apply(candidates({1: [100, 101], 2: [100, 101]}), catalog(), bought, TODAY, k=2)
    assert picks(result, 1) == [100, 101] and picks(result, 2) == [110, 100]


def test_buried_products_follow_every_other_candidate() -> None:
    spec = rules(bury=[{"name": "clearance-last", "match": {"tag": "clearance"}}])
    assert picks(spec.apply(candidates({1: [104, 100, 101]}), catalog(), None, TODAY, k=2), 1) == [100, 101]
    short = spec.apply(candidates({1: [104, 100]}), catalog(), None, TODAY, k=2)  # too few others: it stays, last
    assert picks(short, 1) == [100, 104] and short[RULES].tolist() == ["", "bury:clearance-last"]


def test_boosts_work_on_each_customers_own_scale() -> None:
    multiply = rules(boost=[{"name": "teas", "match": {"product_type": "Tea"}, "multiply": 2.5}])
    add = rules(boost=[{"name": "teas", "match": {"product_type": "Tea"}, "add": 0.5}])
    # scores 1.0, 0.9, …, 0.5 are 1, 0.8, 0.6, 0.4, 0.2, 0 on the 0–1 scale: the tea (0.2) × 2.5 = 0.5, or + 0.5 = 0.7
    users = {1: [100, 101, 102, 103, 106, 104]}
    assert picks(multiply.apply(candidates(users), catalog(), None, TODAY, k=6), 1) == [100, 101, 102, 106, 103, 104]
    boosted = add.apply(candidates(users), catalog(), None, TODAY, k=6)
    assert picks(boosted, 1) == [100, 101, 106, 102, 103, 104]
    assert boosted.attrs[RULES] == {"boost:teas": 1}
    assert boosted.set_index("item_id").loc[106, "score"] == pytest.approx(0.6)  # the model's score is kept


def test_boosts_compound_in_file_order_and_ties_keep_the_models_order() -> None:
    spec = rules(
        boost=[
            {"name": "teas", "match": {"product_type": "Tea"}, "add": 0.2},
            {"name": "grassy", "match": {"flavour_note": "grassy"}, "multiply": 2},
        ]
    )
    # 106 (tea, grassy) is last of three: 0 → (0 + 0.2) × 2 = 0.4; 107 (tea): 0.5 + 0.2 = 0.7, ties nothing
    result = spec.apply(candidates({1: [100, 107, 106]}), catalog(), None, TODAY, k=3)
    assert picks(result, 1) == [100, 107, 106]
    assert result[RULES].tolist() == ["", "boost:teas", "boost:teas, boost:grassy"]


def test_a_boost_lifts_a_pick_among_equal_scores_and_users_may_come_interleaved() -> None:
    spec = rules(boost=[{"name": "teas", "match": {"product_type": "Tea"}, "add": 0.01}])
    frame = candidates({1: [100, 101, 106], 2: [102, 107]})
    frame["score"] = 0.5
    frame = frame.iloc[[0, 3, 1, 4, 2]]  # users 1, 2, 1, 2, 1
    result = spec.apply(frame, catalog(), None, TODAY, k=3)
    assert picks(result, 1) == [106, 100, 101] and picks(result, 2) == [107, 102]
    assert result["user_id"].tolist() == [1, 1, 1, 2, 2]


def test_max_per_category_walks_down_the_list_and_pins_count_toward_it() -> None:
    cap = {"field": "product_type", "max": 2}
    spec = rules(max_per_category=cap)
    users = {1: [100, 101, 102, 106, 103, 107, 108, 113]}
    assert picks(spec.apply(candidates(users), catalog(), None, TODAY, k=5), 1) == [100, 101, 106, 107, 113]
    pinned = rules(max_per_category=cap, pin=[{"name": "beans", "match": {"sku": ["SKU-5", "SKU-4", "SKU-3"]}}])
    result = pinned.apply(candidates(users), catalog(), None, TODAY, k=5)
    assert picks(result, 1) == [105, 104, 103, 106, 107]  # three pinned beans stay; no more beans after them
    assert result.attrs[RULES]["max_per_category"] >= 3
    by_vendor = rules(max_per_category={"field": "vendor", "max": 1})
    assert picks(by_vendor.apply(candidates(users), catalog(), None, TODAY, k=5), 1) == [100, 113]


# ---- dates and tiers ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("today", "boosted"),
    [(date(2026, 11, 30), False), (date(2026, 12, 1), True), (date(2026, 12, 24), True), (date(2026, 12, 25), False)],
)
def test_date_ranges_include_both_days(today: date, boosted: bool) -> None:
    spec = rules(
        boost=[
            {"name": "xmas", "match": {"product_type": "Tea"}, "add": 5, "from": "2026-12-01", "until": "2026-12-24"}
        ]
    )
    assert (picks(spec.apply(candidates({1: [100, 106]}), catalog(), None, today, k=2), 1)[0] == 106) is boosted
    assert ("boost" in spec.active(today)) is boosted


def test_open_ended_dates() -> None:
    spec = rules(bury=[{"name": "later", "match": {"sku": "SKU-0"}, "from": "2026-12-04"}])
    assert picks(spec.apply(candidates({1: [100, 101]}), catalog(), None, date(2026, 12, 3), k=2), 1) == [100, 101]
    assert picks(spec.apply(candidates({1: [100, 101]}), catalog(), None, date(2030, 1, 1), k=2), 1) == [101, 100]


def test_tier_rules_apply_only_to_customers_in_the_tier() -> None:
    spec = rules(
        tiers={
            "vip": {"spend_at_least": 500},
            "newcomers": {"orders_at_most": 0},
            "gold": {"loyalty_tier": ["Gold", "Platinum"], "orders_at_least": 2},
        },
        pin=[{"name": "welcome", "match": {"sku": "SKU-8"}, "tier": "newcomers"}],
        exclude={"items": [{"name": "no-cheap-for-vips", "match": {"sku": "SKU-0"}, "tier": "vip"}]},
        boost=[{"name": "gold-teas", "match": {"product_type": "Tea"}, "add": 5, "tier": ["gold"]}],
    )
    standing = pd.DataFrame(
        {
            "user_id": [1, 2, 3],
            "orders": [3, 2, 0],
            "spend": [800.0, 100.0, 0.0],
            "loyalty_tier": [None, "gold", None],
        }
    )  # user 4 is absent: no orders, no tier (a newcomer)
    users = {u: [100, 101, 106] for u in (1, 2, 3, 4)}
    result = spec.apply(candidates(users), catalog(), None, TODAY, standing, k=3)
    assert picks(result, 1) == [101, 106]
    assert picks(result, 2) == [106, 100, 101]
    assert picks(result, 3) == picks(result, 4) == [108, 100, 101]
    with pytest.raises(ValueError, match="pass customers"):
        spec.apply(candidates(users), catalog(), None, TODAY, k=3)


def test_customer_standing_counts_orders_before_today_net_of_refunds(engine: Engine) -> None:
    store = StoreBuilder(engine)
    product = store.product()
    big, gold, nobody = store.customer(), store.customer(loyalty_tier="Gold"), store.customer()
    store.order(big, at("2026-11-01"), [(product, 30)], refunded_amount=50.0)
    store.order(big, at("2026-11-02"), [(product, 1)], cancelled_at=at("2026-11-03"))
    store.order(big, at(TODAY), [(product, 1)])  # today: not yet
    standing = customer_standing(engine, TODAY).set_index("user_id")
    assert standing.loc[big, ["orders", "spend"]].tolist() == [1, 250.0]
    assert standing.loc[gold, ["orders", "spend", "loyalty_tier"]].tolist() == [0, 0.0, "Gold"]
    assert nobody not in standing.index


def test_the_catalogue_from_the_database_carries_what_the_rules_need(engine: Engine) -> None:
    store = StoreBuilder(engine)
    card, gear, sold_out = store.product(), store.product(consumable=False), store.product()
    with engine.begin() as conn:
        table = Product.__table__  # type: ignore[attr-defined]
        conn.execute(update(table).where(table.c.id == card).values(gift_card=True))
        conn.execute(update(table).where(table.c.id == gear).values(published=False))
        conn.execute(update(table).where(table.c.id == sold_out).values(inventory_quantity=0))
    frame = load_catalog(engine)
    assert list(RuleSet().excluded_items(frame, TODAY)) == [card, gear, sold_out]
    assert frame["inventory_quantity"].isna().sum() == 2


def test_best_seller_lists_leave_out_what_the_default_rules_exclude(engine: Engine) -> None:
    store = StoreBuilder(engine)
    ids = [store.product() for _ in range(5)]
    table = Product.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        conn.execute(update(table).where(table.c.id == ids[0]).values(gift_card=True))
        conn.execute(update(table).where(table.c.id == ids[1]).values(published=False))
        conn.execute(update(table).where(table.c.id == ids[2]).values(inventory_quantity=0))
        conn.execute(update(table).where(table.c.id == ids[3]).values(inventory_quantity=7))
        suggested = set(conn.execute(select(table.c.id).where(sellable_to_suggest())).scalars())
    assert suggested == {ids[3], ids[4]}
    assert suggested == set(ids) - set(RuleSet().excluded_items(load_catalog(engine), TODAY))


# ---- the file -------------------------------------------------------------------------------------------------------


def test_the_shipped_rules_file_is_valid_shows_every_kind_and_is_what_a_folder_uses() -> None:
    shipped = load_rule_set(None)
    assert shipped.file == SHIPPED_DIR / RULES_FILE
    spec = shipped.spec
    assert spec.exclude.items and spec.pin and spec.bury and spec.boost and spec.tiers
    text = (SHIPPED_DIR / RULES_FILE).read_text()
    assert "max_per_category:" in text  # shown, commented out
    assert shipped.candidates_needed(10) >= 25


def test_a_folder_without_a_rules_file_gets_the_default_exclusions(tmp_path: Path) -> None:
    defaults = load_rule_set(tmp_path)
    assert defaults.file is None and defaults.spec == RulesFile()
    assert defaults.candidates_needed(10) == 25 and rules(max_per_category={"max": 3}).candidates_needed(10) == 40
    empty = tmp_path / RULES_FILE
    empty.write_text("# nothing yet\n")
    assert load_rules(empty).spec == RulesFile()


def _error(tmp_path: Path, text: str) -> str:
    path = tmp_path / RULES_FILE
    path.write_text(text)
    with pytest.raises(YamlFileError) as caught:
        load_rules(path)
    message = str(caught.value)
    assert message.startswith(str(path))
    return message.removeprefix(str(path))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pin:\n  - name: a\n    match: {sku: [A, B}\n", ", line 3: not valid YAML"),
        ("- just\n- a list\n", ", line 1: a rules file is a mapping"),
        ("exclude:\n  gift_card: false\n", ", line 2, field exclude.gift_card: unknown field 'gift_card'; fields "
         "here: purchased_non_consumables, out_of_stock, unpublished, gift_cards, items"),
        ("boost:\n  - name: b\n    match: {product_type: Tea}\n    from: 2026-12-01\n    util: 2026-12-24\n"
         "    add: 1\n", ", line 5, field boost[0].util: unknown field 'util'; fields here: name, match, tier, from, "
         "until, multiply, add"),
        ("bury:\n  - name: b\n    match:\n      colour: red\n", ", line 4, field bury[0].match.colour: unknown field "
         "'colour'; fields here: sku, handle, product_type, vendor, tag, roast, origin, flavour_note"),
        ("max_per_category:\n  field: colour\n  max: 2\n", ", line 2, field max_per_category.field: Input should be "
         "'product_type', 'vendor', 'roast' or 'origin'"),
        ("boost:\n  - name: b\n    match: {tag: x}\n    add: 1\n    from: 2026-12-24\n    until: 2026-12-01\n",
         ", line 2, field boost[0]: until (2026-12-01) is before from (2026-12-24)"),
        ("boost:\n  - name: b\n    match: {tag: x}\n    add: 1\n    from: 2026-02-30\n",
         ", line 5: 2026-02-30 is not a date (day is out of range for month); write YYYY-MM-DD"),
        ("boost:\n  - name: b\n    match: {tag: x}\n    add: 1\n    from: 30.12.2026\n",
         ", line 5, field boost[0].from: Input should be a valid date"),
        ("pin:\n  - name: p\n    match: {product_type: Tea}\n", ", line 3, field pin[0].match: a pin names its "
         "products by sku or handle"),
        ("bury:\n  - name: b\n    match: {}\n", ", line 3, field bury[0].match: name at least one field"),
        ("bury:\n  - match: {tag: x}\n", ", line 2, field bury[0].name: 'name' is missing"),
        ("bury:\n  - name: Old Stock\n    match: {tag: x}\n", ", line 2, field bury[0].name: String should match"),
        ("boost:\n  - name: b\n    match: {tag: x}\n", ", line 2, field boost[0]: give multiply"),
        ("bury:\n  - {name: b, match: {tag: x}}\nboost:\n  - {name: b, match: {tag: y}, add: 1}\n",
         ", line 4, field boost[0].name: 'b' is used twice"),
        ("tiers:\n  vip: {spend_at_least: 500}\nbury:\n  - name: b\n    match: {tag: x}\n    tier: vips\n",
         ", line 6, field bury[0].tier: unknown tier 'vips'; tiers: vip"),
        ("tiers:\n  vip: {}\n", ", line 2, field tiers.vip: give at least one condition"),
        ("tiers:\n  vip: {spend: 500}\n", ", line 2, field tiers.vip.spend: unknown field 'spend'; fields here: "
         "spend_at_least, orders_at_least, orders_at_most, loyalty_tier"),
    ],
)  # fmt: skip
def test_errors_name_the_line_and_the_field(tmp_path: Path, text: str, expected: str) -> None:
    assert _error(tmp_path, text).startswith(expected)


# ---- properties -----------------------------------------------------------------------------------------------------


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[RuleSet, pd.DataFrame, pd.DataFrame, pd.DataFrame, int, date]:
    n_items = len(TYPES)
    stock = draw(st.lists(st.sampled_from([None, 0, 5]), min_size=n_items, max_size=n_items))
    published = draw(st.lists(st.booleans().map(lambda b: b or False), min_size=n_items, max_size=n_items))
    frame = catalog(inventory_quantity=pd.array(stock, dtype="Int64"), published=[p or True for p in published])
    frame.loc[draw(st.integers(0, n_items - 1)), "published"] = False
    skus = st.sampled_from([f"SKU-{i}" for i in range(n_items)])
    types = st.sampled_from(["Coffee Beans", "Tea", "Brewing Gear", "Gifts"])
    day = st.dates(date(2026, 11, 1), date(2026, 12, 31))
    spec: dict[str, Any] = {"exclude": {"items": [{"name": "x", "match": {"sku": draw(skus)}}]}}
    spec["pin"] = [{"name": f"p{i}", "match": {"sku": draw(st.lists(skus, min_size=1, max_size=3))},
                    "from": draw(st.none() | day)} for i in range(draw(st.integers(0, 2)))]  # fmt: skip
    spec["boost"] = [{"name": f"b{i}", "match": {"product_type": draw(types)}, "multiply": draw(st.floats(0.1, 5)),
                      "add": draw(st.floats(-2, 2))} for i in range(draw(st.integers(0, 2)))]  # fmt: skip
    spec["bury"] = [{"name": "z", "match": {"product_type": draw(types)}}] if draw(st.booleans()) else []
    if draw(st.booleans()):
        spec["max_per_category"] = {"max": draw(st.integers(1, 3))}
    users = {
        user: draw(st.lists(st.integers(100, 100 + n_items), min_size=1, max_size=n_items + 1, unique=True))
        for user in range(draw(st.integers(1, 6)))
    }
    cands = candidates(users)
    cands["score"] = draw(st.lists(st.floats(-5, 5), min_size=len(cands), max_size=len(cands)))
    cands = cands.sort_values(["user_id", "score"], ascending=[True, False], kind="stable")
    bought = pd.DataFrame(
        draw(st.lists(st.tuples(st.integers(0, 5), st.integers(100, 113)), max_size=10)), columns=["user_id", "item_id"]
    )
    return rules(**spec), frame, cands, bought, draw(st.integers(1, 6)), draw(day)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_apply_never_shows_excluded_items_nor_too_many_and_pins_lead(
    scenario: tuple[RuleSet, pd.DataFrame, pd.DataFrame, pd.DataFrame, int, date],
) -> None:
    spec, frame, cands, bought, k, today = scenario
    result = spec.apply(cands, frame, bought, today, k=k)
    by_id = frame.set_index("item_id")
    durable = set(by_id.index[~by_id["consumable"]])
    owned = {(u, i) for u, i in zip(bought["user_id"], bought["item_id"], strict=True) if i in durable}
    excluded = set(spec.excluded_items(frame, today)) | (set(range(90, 200)) - set(by_id.index))
    assert not set(result["item_id"]) & excluded
    assert not {(u, i) for u, i in zip(result["user_id"], result["item_id"], strict=True)} & owned
    assert not result.duplicated(["user_id", "item_id"]).any()
    assert set(result["user_id"]) <= set(cands["user_id"])
    pinned = [
        sku for rule in spec.spec.pin if rule.active_on(today) for sku in rule.match.given()["sku"]
    ]  # in pin order
    pinned_ids = list(dict.fromkeys(int(by_id.index[by_id["sku"].str.lower() == sku][0]) for sku in pinned))
    cap = spec.spec.max_per_category
    for user, mine in result.groupby("user_id"):
        mine = mine.sort_values("rank")
        assert mine["rank"].tolist() == list(range(1, len(mine) + 1)) and len(mine) <= k
        allowed = [i for i in pinned_ids if i not in excluded and (user, i) not in owned]
        expected_lead = allowed[: min(k, len(allowed))]
        assert mine["item_id"].tolist()[: len(expected_lead)] == expected_lead
        if cap is not None:
            types = by_id.loc[mine["item_id"], "product_type"].dropna()
            pins_of = by_id.loc[expected_lead, "product_type"].dropna().value_counts()
            for kind, count in types.value_counts().items():
                assert count <= max(cap.max, int(pins_of.get(kind, 0)))
        proposed = set(cands.loc[cands["user_id"] == user, "item_id"])
        assert set(mine["item_id"]) <= proposed | set(pinned_ids)
        if cap is None and not spec.spec.bury:
            usable = [i for i in proposed if i not in excluded and (user, i) not in owned]
            assert len(mine) == min(k, len(set(usable) | set(allowed)))
