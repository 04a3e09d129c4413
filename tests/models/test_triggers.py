"""Trigger detection as a whole: every kind runs, and each moment is recorded once, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import date

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from models.schema import TriggerOccurrence
from models.triggers import DETECTORS, detect_triggers, record_occurrences
from tests.models.builders import StoreBuilder, at

TODAY = date(2026, 3, 10)


def one_of_each(engine: Engine) -> dict[str, int]:
    """A store with one moment of every kind due on TODAY."""
    store = StoreBuilder(engine)
    beans = store.product("Colombia Huila", replenish_days=14)
    ids = {
        "birthday": store.customer(birthday=date(1988, 3, 12)),
        "replenishment": store.customer(),
        "churn_risk": store.customer(),
        "abandoned_cart": store.customer(),
    }
    store.order(ids["replenishment"], at("2026-02-26"), [(beans, 1)])  # runs out on Mar 12
    for day in ("2025-10-01", "2025-10-31", "2025-11-30"):
        store.order(ids["churn_risk"], at(day), [(beans, 1)])
    store.event(ids["abandoned_cart"], "add_to_cart", beans, at("2026-03-09", 18))
    return ids


def _stored(engine: Engine) -> pd.DataFrame:
    with engine.connect() as conn:
        rows = conn.execute(select(TriggerOccurrence).order_by(TriggerOccurrence.id)).all()
    return pd.DataFrame([dict(row._mapping) for row in rows])


def test_every_kind_is_detected_and_counted(engine: Engine) -> None:
    ids = one_of_each(engine)
    assert detect_triggers(engine, TODAY) == {kind: 1 for kind in DETECTORS}
    stored = _stored(engine)
    assert dict(zip(stored["kind"], stored["customer_id"], strict=True)) == ids


def test_second_run_same_day_adds_no_occurrences(engine: Engine) -> None:
    one_of_each(engine)
    detect_triggers(engine, TODAY)
    assert detect_triggers(engine, TODAY) == {kind: 0 for kind in DETECTORS}
    assert len(_stored(engine)) == 4


def test_next_day_run_for_the_same_moments_adds_nothing(engine: Engine) -> None:
    one_of_each(engine)
    detect_triggers(engine, TODAY)
    assert sum(detect_triggers(engine, date(2026, 3, 11)).values()) == 0
    assert len(_stored(engine)) == 4


def test_payloads_are_stored_as_the_planner_reads_them(engine: Engine) -> None:
    ids = one_of_each(engine)
    detect_triggers(engine, TODAY)
    payloads = dict(zip(_stored(engine)["kind"], _stored(engine)["payload"], strict=True))
    assert payloads["birthday"] == {"birthday": "03-12"}
    assert set(payloads["replenishment"]) == {"product_id", "sku", "last_ordered", "runs_out_on"}
    assert {"days_since_last_order", "expected_gap_days", "p_active", "value_at_risk"} <= set(payloads["churn_risk"])
    assert payloads["abandoned_cart"]["cart_at"] == "2026-03-09T18:00:00+00:00"
    assert ids["abandoned_cart"] > 0


def test_kinds_limit_the_run(engine: Engine) -> None:
    one_of_each(engine)
    assert detect_triggers(engine, TODAY, kinds=["birthday"]) == {"birthday": 1}


def test_unknown_kind_is_refused_with_the_known_ones(sqlite_engine: Engine) -> None:
    with pytest.raises(ValueError, match="unknown trigger kind.*'anniversary'.*known kinds: birthday"):
        detect_triggers(sqlite_engine, TODAY, kinds=["anniversary"])


def test_bad_store_timezone_is_refused_with_an_example(sqlite_engine: Engine) -> None:
    with pytest.raises(ValueError, match="Europe/Berlin"):
        detect_triggers(sqlite_engine, TODAY, store_timezone="Middle/Earth")


def test_empty_store_finds_nothing(engine: Engine) -> None:
    assert detect_triggers(engine, TODAY, store_timezone="America/New_York") == {kind: 0 for kind in DETECTORS}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=st.lists(st.integers(0, 15), max_size=30), again=st.lists(st.integers(0, 25), max_size=30))
def test_occurrence_keys_are_recorded_once_however_often_they_come(engine: Engine, keys, again) -> None:
    prefix = uuid.uuid4().hex[:8]  # hypothesis reuses the database across examples
    customer = StoreBuilder(engine).customer()

    def frame(numbers: list[int]) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "occurrence_key": [f"test:{prefix}:{n}" for n in numbers],
                "customer_id": customer,
                "due_on": TODAY,
                "payload": [{"n": n} for n in numbers],
            }
        )

    assert record_occurrences(engine, "test", frame(keys)) == len(set(keys))
    assert record_occurrences(engine, "test", frame(keys)) == 0
    assert record_occurrences(engine, "test", frame(again)) == len(set(again) - set(keys))
    with engine.connect() as conn:
        stored = conn.execute(
            select(func.count()).where(TriggerOccurrence.occurrence_key.like(f"test:{prefix}:%"))  # type: ignore[attr-defined]
        ).scalar_one()
    assert stored == len(set(keys) | set(again))
