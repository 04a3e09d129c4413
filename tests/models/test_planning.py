"""Planning: who hears what, with which products, in which experiment arm. Plain functions on a real database."""

from __future__ import annotations

from collections import Counter
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from models.campaigns import HOLDOUT, Campaign, load_catalog
from models.errors import InputError
from models.experiments import assign_variant
from models.planning import StoreInfo, plan_audience
from models.planning import plan_campaign as plan_one
from models.schema import Assignment, Recommendation, TriggerOccurrence
from tests.models.builders import StoreBuilder, at

TODAY = date(2026, 11, 27)
CATALOG = load_catalog()


def campaign_by_name(name: str) -> Campaign:
    return CATALOG.campaign(name)


def plan_campaign(engine: Engine, spec: Campaign, today: date, store: StoreInfo) -> list:  # type: ignore[type-arg]
    return plan_one(engine, spec, today, store, CATALOG.segments)
STORE = StoreInfo(name="Bean & Leaf Coffee", url="https://beanandleaf.example", address="1 Roastery Lane")


def _recommend(engine: Engine, customer_id: int, product_ids: list[int]) -> None:
    rows = [
        {"customer_id": customer_id, "product_id": pid, "rank": rank, "score": 1.0 / rank, "model": "hybrid",
         "explanation": f"reason {rank}", "trained_at": at(TODAY)}
        for rank, pid in enumerate(product_ids, start=1)
    ]
    with engine.begin() as conn:
        conn.execute(insert(Recommendation.__table__), rows)  # type: ignore[attr-defined]


def _occurrence(engine: Engine, key: str, kind: str, customer_id: int, payload: dict, due_on: date = TODAY) -> None:
    with engine.begin() as conn:
        conn.execute(insert(TriggerOccurrence.__table__).values(  # type: ignore[attr-defined]
            occurrence_key=key, kind=kind, customer_id=customer_id, due_on=due_on, payload=payload,
            detected_at=at(TODAY)))


@pytest.fixture
def store(engine: Engine) -> StoreBuilder:
    return StoreBuilder(engine)


def test_weekly_picks_reach_each_customer_once_per_channel_with_ranked_explained_products(
    engine: Engine, store: StoreBuilder
) -> None:
    products = [store.product(f"Coffee {i}") for i in range(6)]
    alice = store.customer(first_name="Alice")
    _recommend(engine, alice, products)
    spec = campaign_by_name("weekly-picks")

    messages = plan_campaign(engine, spec, TODAY, STORE)

    assert sorted(m.channel for m in messages) == ["email", "inapp"]
    message = messages[0]
    assert message.occurrence_key == "weekly-picks:2026-W48"
    assert message.context["customer"] == {"first_name": "Alice"}
    titles = [p["title"] for p in message.context["products"]]
    assert titles == ["Coffee 0", "Coffee 1", "Coffee 2", "Coffee 3"]
    assert [p["explanation"] for p in message.context["products"]][:2] == ["reason 1", "reason 2"]
    assert message.context["products"][0]["url"] == "https://beanandleaf.example/products/" + "product-1"


def test_same_week_plans_the_same_ledger_keys(engine: Engine, store: StoreBuilder) -> None:
    product = store.product()
    for _ in range(3):
        _recommend(engine, store.customer(), [product])
    spec = campaign_by_name("weekly-picks")
    monday, friday = date(2026, 11, 23), date(2026, 11, 27)
    first = {m.ledger_key for m in plan_campaign(engine, spec, monday, STORE)}
    again = {m.ledger_key for m in plan_campaign(engine, spec, friday, STORE)}
    assert first == again and len(first) == 6


def test_replenishment_puts_the_product_running_low_first(engine: Engine, store: StoreBuilder) -> None:
    filters, beans = store.product("Paper filters"), store.product("House blend")
    bob = store.customer()
    _recommend(engine, bob, [beans])
    _occurrence(engine, f"replenishment:{bob}:SKU:2026-10-01", "replenishment", bob,
                {"product_id": filters, "sku": "SKU", "last_ordered": "2026-10-01", "runs_out_on": "2026-11-28"})

    message = plan_campaign(engine, campaign_by_name("replenishment"), TODAY, STORE)[0]
    products = message.context["products"]
    assert [p["title"] for p in products] == ["Paper filters", "House blend"]
    assert products[0]["explanation"] == "Time for a refill"
    assert message.context["trigger"]["kind"] == "replenishment"


def test_stale_occurrences_are_not_planned(engine: Engine, store: StoreBuilder) -> None:
    carol = store.customer()
    _occurrence(engine, f"birthday:{carol}:2026", "birthday", carol, {"birthday": "10-01"}, due_on=date(2026, 10, 1))
    assert plan_campaign(engine, campaign_by_name("birthday"), TODAY, STORE) == []


def test_a_birthday_detected_ahead_is_sent_on_the_day(engine: Engine, store: StoreBuilder) -> None:
    dan = store.customer()
    birthday = date(2026, 11, 30)
    _occurrence(engine, f"birthday:{dan}:2026", "birthday", dan, {"birthday": "11-30"}, due_on=birthday)
    spec = campaign_by_name("birthday")
    assert plan_campaign(engine, spec, TODAY, STORE) == []
    on_the_day = plan_campaign(engine, spec, birthday, STORE)
    assert {m.channel for m in on_the_day} == {"email", "inapp"}


def test_variant_assignments_are_recorded_and_stable(engine: Engine, store: StoreBuilder) -> None:
    product = store.product()
    customers = [store.customer() for _ in range(40)]
    for cid in customers:
        _recommend(engine, cid, [product])
    spec = campaign_by_name("weekly-picks")
    first = {m.customer_id: m.variant for m in plan_campaign(engine, spec, TODAY, STORE)}
    second = {m.customer_id: m.variant for m in plan_campaign(engine, spec, TODAY, STORE)}
    assert first == second
    with engine.connect() as conn:
        stored = dict(conn.execute(select(Assignment.customer_id, Assignment.variant)).all())
    assert stored == first


@settings(max_examples=25, deadline=None)
@given(st.text(min_size=1, max_size=20), st.integers(min_value=0, max_value=50))
def test_holdout_share_is_close_to_the_configured_percent(experiment: str, percent: int) -> None:
    variants = Counter(assign_variant(experiment, cid, ("A", "B"), percent) for cid in range(4000))
    assert abs(variants[HOLDOUT] / 4000 - percent / 100) < 0.035
    assert set(variants) <= {HOLDOUT, "A", "B"}


def test_high_value_audience_is_the_top_tenth_by_net_spend(engine: Engine, store: StoreBuilder) -> None:
    product = store.product()
    spenders = [store.customer() for _ in range(20)]
    for rank, cid in enumerate(spenders, start=1):
        store.order(cid, at("2026-06-01"), [(product, rank)])
    refunded_big = store.customer()
    store.order(refunded_big, at("2026-06-01"), [(product, 100)], refunded_amount=1000.0)
    cancelled_big = store.customer()
    store.order(cancelled_big, at("2026-06-01"), [(product, 100)], cancelled_at=at("2026-06-02"))

    messages = plan_audience(engine, "high-value", CATALOG.audiences["high-value"], CATALOG.segments, TODAY)

    members = {m.customer_id for m in messages}
    assert members == set(spenders[-2:])
    assert {m.channel for m in messages} == {"meta", "google"}
    assert {m.occurrence_key for m in messages} == {"audience:high-value"}


def test_unknown_campaign_names_the_known_ones() -> None:
    with pytest.raises(InputError, match="weekly-picks"):
        campaign_by_name("black-friday")


def test_variant_weights_split_the_contacted_customers_in_proportion() -> None:
    arms = Counter(assign_variant("subject-test", cid, ("A", "B"), 10, (3, 1)) for cid in range(20_000))
    contacted = arms["A"] + arms["B"]
    assert abs(arms[HOLDOUT] / 20_000 - 0.10) < 0.01
    assert abs(arms["A"] / contacted - 0.75) < 0.015


def test_a_campaign_outside_its_dates_or_disabled_plans_nothing(engine: Engine, store: StoreBuilder) -> None:
    product = store.product()
    _recommend(engine, store.customer(), [product])
    picks = campaign_by_name("weekly-picks")
    ended = Campaign(picks.spec.model_copy(update={"end": date(2026, 11, 1)}), picks.file)
    disabled = Campaign(picks.spec.model_copy(update={"enabled": False}), picks.file)
    assert plan_campaign(engine, picks, TODAY, STORE) != []
    assert plan_campaign(engine, ended, TODAY, STORE) == [] and plan_campaign(engine, disabled, TODAY, STORE) == []
