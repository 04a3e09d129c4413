"""In-app cards taken back when their reason ended: a cart card after the purchase, a refill card after the reorder;
through the real dispatch path into the JSONL feed, once."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert
from sqlalchemy.engine import Engine

from channels.dispatch import dispatch
from channels.inapp import InAppFeedChannel
from channels.outbox import ledger_hash
from channels.render import CardRenderer
from models.message import OutboundMessage, Recipient
from models.retractions import plan_retractions
from models.schema import TriggerOccurrence
from tests.channels.conftest import grant
from tests.models.builders import StoreBuilder, at

TODAY = date(2026, 12, 8)
NOW = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)


def occurrence(engine: Engine, key: str, kind: str, customer_id: int, payload: dict) -> None:  # type: ignore[type-arg]
    with engine.begin() as conn:
        conn.execute(insert(TriggerOccurrence.__table__).values(  # type: ignore[attr-defined]
            occurrence_key=key, kind=kind, customer_id=customer_id, due_on=TODAY, payload=payload,
            detected_at=at("2026-12-05"),
        ))  # fmt: skip


def card(key: str, customer_id: int, campaign: str) -> OutboundMessage:
    return OutboundMessage(
        occurrence_key=key, channel="inapp", recipient=Recipient(customer_id=customer_id, first_name="Ann"),
        campaign=campaign, template="weekly_picks", variant="A",
        context={"store": {"name": "Bean & Leaf", "url": "https://shop.example"}, "products": [], "picks": "none"},
    )  # fmt: skip


@pytest.fixture
def feed(tmp_path: Path) -> InAppFeedChannel:
    return InAppFeedChannel(tmp_path, CardRenderer(), clock=lambda: NOW)


def test_cards_whose_cart_was_bought_or_refill_reordered_are_taken_back_once(
    engine: Engine, feed: InAppFeedChannel, tmp_path: Path
) -> None:
    store = StoreBuilder(engine)
    beans, tea = store.product("Beans"), store.product("Tea")
    buyer, waiter, refiller = store.customer(), store.customer(), store.customer()
    with engine.begin() as conn:
        grant(conn, [buyer, waiter, refiller], "granted", "inapp")
    cart = {"product_ids": [beans], "skus": [], "cart_at": at("2026-12-05", 18).isoformat()}
    occurrence(engine, f"abandoned_cart:{buyer}:2026-12-05", "abandoned_cart", buyer, cart)
    occurrence(engine, f"abandoned_cart:{waiter}:2026-12-05", "abandoned_cart", waiter, cart)
    occurrence(engine, f"replenishment:{refiller}:{tea}", "replenishment", refiller,
               {"product_id": tea, "last_ordered": "2026-10-01"})  # fmt: skip
    cards = [card(f"abandoned_cart:{buyer}:2026-12-05", buyer, "abandoned-cart"),
             card(f"abandoned_cart:{waiter}:2026-12-05", waiter, "abandoned-cart"),
             card(f"replenishment:{refiller}:{tea}", refiller, "replenishment")]  # fmt: skip
    dispatch(engine, cards, {"inapp": feed}, now=NOW)
    assert plan_retractions(engine, NOW) == []  # nobody bought anything yet

    store.order(buyer, at("2026-12-06", 9), [(beans, 1)])
    store.order(refiller, at("2026-12-07", 9), [(tea, 2)])
    retractions = plan_retractions(engine, NOW)

    assert sorted(r.customer_id for r in retractions) == sorted([buyer, refiller])
    assert all(r.retract and r.channel == "inapp" and r.occurrence_key.endswith(":retract") for r in retractions)
    report = dispatch(engine, retractions, {"inapp": feed}, now=NOW)
    assert report.total_sent == 2
    lines = [json.loads(line) for path in tmp_path.glob("*.jsonl") for line in path.read_text().splitlines()]
    taken_back = {line["retracts"] for line in lines if line.get("event") == "card.retracted"}
    assert taken_back == {ledger_hash(c.ledger_key) for c in cards if c.customer_id in (buyer, refiller)}
    again = dispatch(engine, plan_retractions(engine, NOW), {"inapp": feed}, now=NOW)
    assert again.total_sent == 0  # one retraction per card, ever
