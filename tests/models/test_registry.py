"""The model registry: the time split, the figures, the promotion rules and the table (models/registry.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine

from models.errors import InputError
from models.evaluate_recommendations import evaluate_recommendations
from models.interactions import Columns
from models.registry import (
    KIND,
    NOT_ENOUGH_DATA,
    Decision,
    Serving,
    TimeSplit,
    current_parameters,
    data_window,
    evaluate_candidate,
    fit_arguments,
    holdout_figures,
    judge,
    list_versions,
    promote_by_hand,
    register,
    serving_version,
    summary,
    time_split,
    unjudged,
)
from models.schema import Customer, Order, OrderLine, Product

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def make_store(
    engine: Engine, *, customers: int = 90, days: int = 150, products: int = 24, loyalty: float = 0.6, seed: int = 0
) -> None:
    """A coffee-like store: four taste clusters, each customer re-buying a favourite of theirs (share ``loyalty`` of
    the orders) every one to four weeks and trying others of their cluster, for ``days`` before :data:`NOW` (bulk
    inserts: fast)."""
    rng = np.random.default_rng(seed)
    cluster_of_item = np.arange(products) % 4
    roasts = ("light", "medium", "dark", "espresso")
    product_rows = [
        {"id": i + 1, "sku": f"SKU-{i}", "handle": f"p-{i}", "title": f"Coffee {i}", "product_type": "Coffee",
         "roast": roasts[cluster_of_item[i]], "origin": f"origin{i % 5}", "flavour_notes": f"note{cluster_of_item[i]}",
         "price": 10.0 + i % 3, "consumable": True, "active": True}
        for i in range(products)
    ]  # fmt: skip
    customer_rows, order_rows, line_rows = [], [], []
    order_id = 0
    for c in range(customers):
        customer_rows.append({"id": c + 1, "email": f"c{c}@example.com", "created_at": NOW, "updated_at": NOW})
        own = np.flatnonzero(cluster_of_item == rng.integers(0, 4))
        favourite = int(rng.choice(own))
        moment = NOW - timedelta(days=days) + timedelta(days=float(rng.uniform(0, 20)))
        while moment < NOW:
            order_id += 1
            item = favourite if rng.random() < loyalty else int(rng.choice(own))
            order_rows.append({"id": order_id, "external_id": f"#{order_id}", "customer_id": c + 1,
                               "created_at": moment, "total": 10.0, "financial_status": "paid"})  # fmt: skip
            line_rows.append({"order_id": order_id, "line_number": 1, "product_id": item + 1, "quantity": 1,
                              "price": 10.0})  # fmt: skip
            moment += timedelta(days=float(rng.uniform(7, 28)))
    with engine.begin() as conn:
        conn.execute(insert(Product.__table__), product_rows)  # type: ignore[attr-defined]
        conn.execute(insert(Customer.__table__), customer_rows)  # type: ignore[attr-defined]
        conn.execute(insert(Order.__table__), order_rows)  # type: ignore[attr-defined]
        conn.execute(insert(OrderLine.__table__), line_rows)  # type: ignore[attr-defined]


def by_epochs(parameters: dict[str, Any], split: TimeSplit) -> dict[str, Any]:
    """Stand-in figures: NDCG grows with the epochs, so tests choose who wins; counts every call."""
    by_epochs.calls.append(parameters)  # type: ignore[attr-defined]
    score = parameters.get("epochs", 15) / 100
    return {p: {"ndcg_at_k": score, "precision_at_k": score, "recall_at_k": score, "users": 50, "k": 10}
            for p in ("exclude_seen", "include_seen")}  # fmt: skip


by_epochs.calls = []  # type: ignore[attr-defined]


def params(epochs: int = 15, **more: Any) -> dict[str, Any]:
    return {**current_parameters(), "epochs": epochs, **more}


def run(engine: Engine, parameters: dict[str, Any], *, force: bool = False, now: datetime = NOW) -> Decision:
    decision = evaluate_candidate(engine, now, parameters, force=force, figures=by_epochs, with_harness=False)
    register(engine, decision, now)
    return decision


def statuses(engine: Engine) -> dict[int, str]:
    return {row.version: row.status for row in list_versions(engine)}


@pytest.fixture
def store(sqlite_engine: Engine) -> Engine:
    make_store(sqlite_engine)
    by_epochs.calls.clear()  # type: ignore[attr-defined]
    return sqlite_engine


# ---- the rules, one by one --------------------------------------------------------------------------------------
SERVING = Serving(version=3, parameters=params())


@pytest.mark.parametrize(
    ("case", "expected", "words"),
    [
        ({"candidate_score": 0.52, "serving_score": 0.50}, "serving", "beats v3 (NDCG@10 with re-buys 0.5200 vs"),
        ({"candidate_score": 0.48, "serving_score": 0.50}, "rejected", "does not beat v3"),
        ({"candidate_score": 0.50, "serving_score": 0.50}, "rejected", "v3 keeps serving"),
        ({"candidate_score": 0.50, "serving_score": 0.50, "same_parameters": True}, "serving", "same parameters as v3"),
        ({"candidate_score": 0.40, "serving_score": 0.50, "force": True}, "serving", "--force"),
        ({"serving": None, "candidate_score": 0.40}, "serving", "first model"),
        ({"shortfall": f"{NOT_ENOUGH_DATA}: 3 days"}, "serving", NOT_ENOUGH_DATA),
        ({"serving": None, "shortfall": f"{NOT_ENOUGH_DATA}: 3 days"}, "serving", f"first model; {NOT_ENOUGH_DATA}"),
        ({"serving": Serving(3, params(), pinned=True), "candidate_score": 0.9, "serving_score": 0.1}, "candidate",
         "promoted by hand"),
        ({"serving_usable": "model kind 'x'"}, "serving", "cannot run on this omnicast"),
    ],
)  # fmt: skip
def test_each_rule_gives_its_status_and_says_why(case: dict[str, Any], expected: str, words: str) -> None:
    arguments: dict[str, Any] = {"serving": SERVING, "serving_usable": None, "shortfall": None,
                                 "candidate_score": None, "serving_score": None, "same_parameters": False,
                                 "force": False, **case}  # fmt: skip
    status, reason = judge(**arguments)
    assert status == expected
    assert words in reason


# ---- promotion on a database -------------------------------------------------------------------------------------
def test_the_first_model_is_promoted_with_its_window_and_holdout(store: Engine) -> None:
    decision = run(store, params())
    (row,) = list_versions(store)
    assert (row.version, row.status, row.promoted_at) == (1, "serving", NOW)
    assert row.reason.startswith("first model")
    assert row.holdout_start == NOW - timedelta(days=28) and row.holdout_end == NOW
    assert row.first_interaction_at is not None and row.first_interaction_at < NOW - timedelta(days=129)
    assert row.last_interaction_at is not None and row.last_interaction_at <= NOW
    assert row.parameters == params() and row.parameters["kind"] == KIND
    assert row.evaluation["candidate"]["include_seen"]["ndcg_at_k"] == 0.15
    assert row.evaluation["split"]["test_customers"] >= 20
    assert decision.serve_parameters == params()


def test_a_better_candidate_is_promoted_and_the_serving_one_retired(store: Engine) -> None:
    run(store, params(15))
    later = NOW + timedelta(days=1)
    decision = run(store, params(20), now=later)
    assert decision.promoted and "beats v1" in decision.reason
    assert statuses(store) == {1: "retired", 2: "serving"}
    assert list_versions(store)[1].retired_at == later
    assert decision.serve_parameters == params(20)


def test_a_worse_candidate_is_rejected_and_the_picks_keep_the_serving_parameters(store: Engine) -> None:
    run(store, params(15))
    decision = run(store, params(5))
    assert decision.status == "rejected"
    assert "not promoted: does not beat v1 (NDCG@10 with re-buys 0.0500 vs 0.1500 for v1)" in decision.reason
    assert decision.serve_parameters == params(15)
    assert statuses(store) == {1: "serving", 2: "rejected"}
    assert serving_version(store) == Serving(1, params(15))
    # both were judged on the same split: the serving parameters re-fitted there
    assert [c["epochs"] for c in by_epochs.calls[-2:]] == [5, 15]  # type: ignore[attr-defined]


def test_force_promotes_a_worse_candidate_and_says_so(store: Engine) -> None:
    run(store, params(15))
    decision = run(store, params(5), force=True)
    assert decision.promoted and "--force" in decision.reason and "0.0500 vs 0.1500" in decision.reason
    assert statuses(store) == {1: "retired", 2: "serving"}


def test_the_same_parameters_are_a_refit_promoted_without_fitting_twice(store: Engine) -> None:
    run(store, params(15))
    by_epochs.calls.clear()  # type: ignore[attr-defined]
    decision = run(store, params(15))
    assert decision.promoted and "same parameters as v1, re-fitted on newer data" in decision.reason
    assert len(by_epochs.calls) == 1  # type: ignore[attr-defined]
    assert decision.evaluation["serving"]["same_parameters"] is True


def test_a_store_with_two_weeks_of_data_is_promoted_as_not_evaluated(sqlite_engine: Engine) -> None:
    make_store(sqlite_engine, days=30)
    decision = run(sqlite_engine, params())
    assert decision.promoted and NOT_ENOUGH_DATA in decision.reason and "before the 28-day holdout" in decision.reason
    (row,) = list_versions(sqlite_engine)
    assert row.holdout_start is None and "candidate" not in row.evaluation
    assert row.evaluation["not_evaluated"].startswith(NOT_ENOUGH_DATA)


def test_too_few_buyers_in_the_holdout_promotes_and_says_how_many(sqlite_engine: Engine) -> None:
    make_store(sqlite_engine, customers=8)
    run(sqlite_engine, params(15))
    decision = run(sqlite_engine, params(5))  # would lose, but cannot be judged
    assert decision.promoted
    assert "customers known before the 28-day holdout bought in it (needs 20)" in decision.reason


def test_an_empty_store_registers_a_first_model_without_evaluation(sqlite_engine: Engine) -> None:
    assert data_window(sqlite_engine, NOW) == (None, None)
    decision = run(sqlite_engine, params())
    assert decision.promoted and "no purchases or events yet" in decision.reason


# ---- rolling back ------------------------------------------------------------------------------------------------
def test_promoting_by_hand_rolls_back_and_pins_until_forced(store: Engine) -> None:
    run(store, params(15))
    run(store, params(20))
    row = promote_by_hand(store, 1, NOW + timedelta(hours=1))
    assert row.status == "serving" and row.pinned and "in place of v2" in row.reason
    assert statuses(store) == {1: "serving", 2: "retired"}
    decision = run(store, params(30))  # better, but v1 is pinned
    assert decision.status == "candidate" and "promoted by hand" in decision.reason
    assert decision.serve_parameters == params(15)
    assert statuses(store)[3] == "candidate"
    forced = run(store, params(30), force=True)
    assert forced.promoted
    assert statuses(store) == {1: "retired", 2: "retired", 3: "candidate", 4: "serving"}
    assert not any(r.pinned for r in list_versions(store))


def test_promoting_an_unknown_version_or_unrunnable_parameters_is_refused(store: Engine) -> None:
    with pytest.raises(InputError, match="no model version 7"):
        promote_by_hand(store, 7)
    run(store, params(15))
    register(store, Decision("rejected", "old", {"kind": "something-else"}, {}, 1), NOW)
    with pytest.raises(InputError, match="v2 cannot serve on this omnicast: model kind 'something-else'"):
        promote_by_hand(store, 2)
    assert statuses(store) == {1: "serving", 2: "rejected"}


def test_serving_parameters_this_release_cannot_run_give_way_to_the_candidate(store: Engine) -> None:
    register(store, Decision("serving", "first model", {"kind": KIND, "dropout": 0.5}, {}, None), NOW)
    decision = run(store, params())
    assert decision.promoted and "dropout are no longer taken by this omnicast" in decision.reason
    assert decision.serve_parameters == params()


def test_parameters_added_since_take_the_current_defaults() -> None:
    old = {"kind": KIND, "epochs": 10}
    assert fit_arguments(old) == {"epochs": 10}
    assert set(current_parameters()) >= {"kind", "epochs", "components", "seed"}
    assert unjudged(current_parameters()) == []  # every parameter of today's release reaches the holdout fit
    assert unjudged({"kind": KIND, "epochs": 3, "rebuy_weight": 0.5}) == ["rebuy_weight"]


# ---- the real figures ------------------------------------------------------------------------------------------
def test_the_split_fits_on_the_past_and_judges_on_the_holdout_purchases(store: Engine) -> None:
    first, _ = data_window(store, NOW)
    split = time_split(store, NOW, first)
    assert isinstance(split, TimeSplit)
    start = NOW - timedelta(days=28)
    assert (split.train[Columns.TIMESTAMP] <= start).all()
    with store.connect() as conn:
        bought_after = conn.execute(
            select(func.count()).select_from(Order.__table__).where(Order.created_at > start)  # type: ignore[attr-defined,arg-type]
        ).scalar_one()
    assert len(split.test) == bought_after


def test_the_figures_are_the_harness_figures_of_production_s_model(store: Engine) -> None:
    """The registry ranks with the model the harness calls ``hybrid``: same split, same NDCG@10 in both protocols
    (if this fails, the harness and the registry fit different models and the registry judges the wrong one)."""
    first, _ = data_window(store, NOW)
    split = time_split(store, NOW, first)
    assert isinstance(split, TimeSplit)
    ours = holdout_figures(current_parameters(), split)
    for protocol, include_seen in (("exclude_seen", False), ("include_seen", True)):
        harness = evaluate_recommendations(split.train, split.test, split.features, k=10, include_seen=include_seen)
        assert ours[protocol]["ndcg_at_k"] == pytest.approx(harness["hybrid"]["ndcg_at_k"], abs=1e-6)
        assert ours[protocol]["users"] == harness["hybrid"]["users"]
    assert all(0 < ours[protocol]["ndcg_at_k"] <= 1 for protocol in ("exclude_seen", "include_seen"))


def test_a_real_run_records_both_protocols_and_the_harness(engine: Engine) -> None:
    make_store(engine)
    decision = evaluate_candidate(engine, NOW)
    row = register(engine, decision, NOW)
    evaluation = row.evaluation
    assert set(evaluation["harness"]) == {"exclude_seen", "include_seen"}
    assert {"hybrid", "popularity", "lightfm_default"} <= set(evaluation["harness"]["include_seen"])
    listed = summary(row)
    assert listed["ndcg_at_10"]["include_seen"] == evaluation["candidate"]["include_seen"]["ndcg_at_k"] > 0
    assert listed["vs_serving"] is None and listed["status"] == "serving"
    second = register(engine, evaluate_candidate(engine, NOW, params(5)), NOW)
    versus = summary(second)["vs_serving"]
    assert versus["version"] == 1
    assert versus["difference"] == pytest.approx(
        second.evaluation["candidate"]["include_seen"]["ndcg_at_k"] - versus["ndcg_at_10"]
    )
    assert second.status == ("serving" if versus["difference"] > 0 else "rejected")


def test_a_store_of_pure_re_buys_is_judged_on_re_buys_and_says_the_other_protocol_has_no_one(
    sqlite_engine: Engine,
) -> None:
    from flows.train import evaluation_markdown

    make_store(sqlite_engine, loyalty=1.0)
    row = register(sqlite_engine, evaluate_candidate(sqlite_engine, NOW), NOW)
    candidate = row.evaluation["candidate"]
    assert candidate["exclude_seen"]["users"] == 0 and candidate["exclude_seen"]["ndcg_at_k"] is None
    assert candidate["include_seen"]["users"] >= 20 and row.status == "serving"
    assert "nothing to evaluate" in row.evaluation["harness"]["exclude_seen"]["not_evaluated"]
    markdown = evaluation_markdown(row)
    assert "| harness: popularity |" in markdown and "harness, exclude_seen: not evaluated" in markdown
