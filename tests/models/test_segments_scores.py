"""Segments over model scores: churn risk, expected purchases, buy probability, CLV and value at risk pick the
customers the models say, and a bad threshold is refused naming file, line and field."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from models.segments import Segment, customer_scores_on, load_segments, members
from models.yamlfile import YamlFileError
from tests.models.builders import StoreBuilder, at

TODAY = date(2026, 11, 27)


def _store(engine: Engine) -> dict[str, int]:
    """60 monthly buyers (so the model is fitted), plus: a big-basket regular who ordered last week, the same
    regular gone quiet for eight months, a one-time buyer of long ago, and someone who never ordered."""
    store = StoreBuilder(engine)
    beans = store.product(replenish_days=30)
    people = {name: store.customer() for name in ("regular", "lapsed", "once", "never")}
    for n in range(60):
        crowd = store.customer()
        for k in range(n % 6 + 1):
            store.order(crowd, at(TODAY - timedelta(days=20 + 30 * k + n % 9)), [(beans, 1)])
    for k in range(10):
        store.order(people["regular"], at(TODAY - timedelta(days=7 + 30 * k)), [(beans, 6)])
        store.order(people["lapsed"], at(TODAY - timedelta(days=240 + 30 * k)), [(beans, 6)])
    store.order(people["once"], at(TODAY - timedelta(days=300)), [(beans, 1)])
    return people


def test_score_conditions_pick_who_the_models_say(engine: Engine) -> None:
    people = _store(engine)

    def segment(*conditions: dict) -> set[str]:
        with engine.connect() as conn:
            found = members(conn, Segment.model_validate({"where": list(conditions)}), TODAY)
        return {name for name, cid in people.items() if cid in found}

    assert segment({"churn_risk_above": 0.5}) == {"lapsed", "once"}
    assert segment({"expected_purchases_at_least": 2}) == {"regular"}  # about 3 in 90 days at one a month
    assert segment({"buy_probability_at_least": 0.8}) == {"regular"}
    assert segment({"clv_at_least": 400}) == {"regular"}  # 12 orders of 60 a year
    assert segment({"value_at_risk_at_least": 300}) == {"lapsed"}  # a big spender who has probably stopped
    assert segment({"churn_risk_above": 0.5}, {"orders_at_least": 2}) == {"lapsed"}
    with engine.connect() as conn:
        scores = customer_scores_on(conn, TODAY).set_index("customer_id")
    assert people["never"] not in scores.index  # no orders, no scores: no score condition holds
    assert scores.loc[people["regular"], "expected_spend"] == pytest.approx(60, rel=0.05)  # six bags of 10


def test_scores_follow_the_orders(sqlite_engine: Engine) -> None:
    """The scores are kept between segments of one run, but an order placed since is seen."""
    store = StoreBuilder(sqlite_engine)
    beans = store.product()
    customer = store.customer()
    store.order(customer, at(TODAY - timedelta(days=200)), [(beans, 1)])
    with sqlite_engine.connect() as conn:
        before = customer_scores_on(conn, TODAY)
        assert customer_scores_on(conn, TODAY) is before
    store.order(customer, at(TODAY - timedelta(days=2)), [(beans, 1)])
    with sqlite_engine.connect() as conn:
        after = customer_scores_on(conn, TODAY)
    assert after["orders"].tolist() == [2] and before["orders"].tolist() == [1]


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("churn_risk_above: 1.5", r"line 5, field segments\.lapsing\.where\[0\]\.churn_risk_above: .*less than 1"),
        ("clv_at_least: -3", r"line 5, field segments\.lapsing\.where\[0\]\.clv_at_least: .*greater than or equal"),
        ("expected_purchases_at_least: lots", r"line 5, field segments\.lapsing\.where\[0\]\.expected_purchases_at_"),
        ("clv_at_least: 10\n        churn_risk_above: 0.5", r"line 5, field segments\.lapsing\.where\[0\]: "
                                                            r"churn_risk_above and clv_at_least together"),
    ],
)  # fmt: skip
def test_a_bad_score_condition_is_refused_with_its_line(tmp_path: Path, condition: str, message: str) -> None:
    path = tmp_path / "segments.yaml"
    path.write_text(f"segments:\n  lapsing:\n    description: x\n    where:\n      - {condition}\n")
    with pytest.raises(YamlFileError, match=message):
        load_segments(path)


def test_the_documented_example_loads(tmp_path: Path) -> None:
    """The score segment models/segments.py shows a marketer is a valid file."""
    import models.segments

    doc = models.segments.__doc__ or ""
    example = doc[doc.index("      lapsing-big-spenders:") :].split('"""')[0]
    path = tmp_path / "segments.yaml"
    path.write_text("segments:\n" + "\n".join(line[4:] for line in example.rstrip().splitlines()) + "\n")
    segments, _ = load_segments(path)
    kinds = [condition.kinds() for condition in segments["lapsing-big-spenders"].where]
    assert kinds == [["churn_risk_above"], ["value_at_risk_at_least"]]
