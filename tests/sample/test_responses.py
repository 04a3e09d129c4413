"""Simulated responses (sample/responses.py): deterministic, idempotent, stronger for contacted customers and
for relevant picks, and written as orders the Shopify loader accepts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine

from models.db import make_engine, upgrade
from models.schema import Click, Customer, Message, Order, OrderLine, Product, Recommendation
from sample.layout import ORDERS_PATH
from sample.responses import RESPONSES_FILE, ResponseRates, simulate_responses
from sources.formats import ORDER_COLUMNS
from sources.shopify import read_orders
from sources.validate import Intake

SENT_AT = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
CUSTOMERS = 320  # 0–159 contacted (email; even ones also an in-app card), 160–319 held out
STORE_URL = "https://shop.example"


def _store(tmp_path: Path) -> tuple[Engine, Path]:
    """A database with products, a year of history, picks and one campaign's ledger; an empty orders export."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{tmp_path / 'omnicast.db'}"
    upgrade(url)
    engine = make_engine(url)
    beans = [
        dict(
            sku=f"BEAN-{i}",
            handle=f"bean-{i}",
            title=f"Kenya {i}",
            product_type="Coffee Beans",
            roast="light",
            origin=None,
            flavour_notes="jasmine|peach",
            price=18.0 + i,
            vendor="Roasters",
        )
        for i in range(3)
    ]
    teas = [
        dict(
            sku=f"TEA-{i}",
            handle=f"tea-{i}",
            title=f"Sencha {i}",
            product_type="Tea",
            roast=None,
            origin="Japan",
            flavour_notes="grassy|umami",
            price=12.0 + i,
            vendor="Tea Co",
        )
        for i in range(3)
    ]
    with engine.begin() as conn:
        conn.execute(insert(Product.__table__), beans + teas)  # type: ignore[attr-defined]
        ids = list(conn.execute(select(Product.id).order_by(Product.id)).scalars())
        bean_ids, tea_ids = ids[:3], ids[3:]
        conn.execute(
            insert(Customer.__table__),
            [  # type: ignore[attr-defined]
                {
                    "id": n + 1,
                    "email": f"c{n}@example.com",
                    "first_name": "Ann",
                    "last_name": f"Lee{n}",
                    "city": "Boston",
                    "region": "MA",
                    "country": "US",
                    "zip": "02110",
                }
                for n in range(CUSTOMERS)
            ],
        )
        orders, lines = [], []
        for n in range(CUSTOMERS):  # everyone bought beans monthly; half the picks are beans (relevant), half tea
            for month in range(12):
                order_id = n * 12 + month + 1
                orders.append(
                    {
                        "id": order_id,
                        "external_id": f"#{order_id}",
                        "customer_id": n + 1,
                        "total": 18.0,
                        "created_at": SENT_AT - timedelta(days=30 * month + 5),
                    }
                )
                lines.append({"order_id": order_id, "line_number": 1, "product_id": bean_ids[0], "quantity": 1})
        conn.execute(insert(Order.__table__), orders)  # type: ignore[attr-defined]
        conn.execute(insert(OrderLine.__table__), lines)  # type: ignore[attr-defined]
        picks = [
            {"customer_id": n + 1, "product_id": pid, "rank": rank, "score": 1.0, "model": "hybrid", "explanation": "x"}
            for n in range(CUSTOMERS)
            for rank, pid in enumerate(bean_ids if n % 4 < 2 else tea_ids, start=1)
        ]
        conn.execute(insert(Recommendation.__table__), picks)  # type: ignore[attr-defined]
        ledger = []
        for n in range(CUSTOMERS):
            held = n >= CUSTOMERS // 2
            row = {
                "occurrence_key": "weekly:2026-W49",
                "customer_id": n + 1,
                "campaign": "weekly",
                "variant": "holdout" if held else "A",
                "template": "weekly_picks",
                "created_at": SENT_AT,
                "updated_at": SENT_AT,
                "reason": None,
                "sent_at": None,
            }
            if held:
                ledger.append({**row, "channel": "email", "state": "suppressed", "reason": "holdout"})
                continue
            ledger.append({**row, "channel": "email", "state": "sent", "sent_at": SENT_AT + timedelta(minutes=1)})
            if n % 2 == 0:
                ledger.append({**row, "channel": "inapp", "state": "sent", "sent_at": SENT_AT + timedelta(minutes=1)})
        ledger.append(
            {
                "occurrence_key": "audience:vip",
                "customer_id": 1,
                "campaign": "audience:vip",
                "channel": "meta",
                "state": "sent",
                "variant": None,
                "template": None,
                "sent_at": SENT_AT,
                "created_at": SENT_AT,
                "updated_at": SENT_AT,
                "reason": None,
            }
        )
        conn.execute(insert(Message.__table__), ledger)  # type: ignore[attr-defined]
    data = tmp_path / "data"
    (data / "shopify").mkdir(parents=True)
    (data / ORDERS_PATH).write_text(",".join(ORDER_COLUMNS) + "\n")
    return engine, data


def _clicks(engine: Engine) -> list[tuple]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                select(
                    Click.message_id, Click.customer_id, Click.campaign, Click.variant, Click.url, Click.clicked_at
                ).order_by(Click.message_id)
            )
        ]


@pytest.fixture
def store(tmp_path: Path) -> tuple[Engine, Path]:
    engine, data = _store(tmp_path)
    yield engine, data
    engine.dispose()


def test_contacted_customers_respond_more_and_relevant_picks_more_still(store: tuple[Engine, Path]) -> None:
    engine, data = store
    report = simulate_responses(engine, data, seed=7, store_url=STORE_URL)
    assert report.messages == CUSTOMERS + CUSTOMERS // 4 and report.customers == CUSTOMERS  # not the audience row
    clicks = _clicks(engine)
    assert report.clicks == len(clicks) > 0
    clickers = {customer for _, customer, *_ in clicks}
    assert all(cid <= CUSTOMERS // 2 for cid in clickers)  # the holdout was never contacted: it cannot click
    assert all(url.startswith(f"{STORE_URL}/products/") for *_, url, _ in clicks)
    relevant = sum(1 for cid in clickers if (cid - 1) % 4 < 2)  # customers whose picks are the beans they buy
    assert relevant > 2 * (len(clickers) - relevant)
    horizon = timedelta(hours=ResponseRates().horizon_hours)
    assert all(SENT_AT < at.replace(tzinfo=UTC) <= SENT_AT + horizon for *_, at in clicks)

    intake = Intake("orders", "orders_export.csv")
    loaded = read_orders(data / ORDERS_PATH, intake, {f"BEAN-{i}" for i in range(3)} | {f"TEA-{i}" for i in range(3)})
    assert intake.rows_quarantined == 0 and not intake.set_aside_cells  # orders a sync loads as they are
    orders = loaded.orders
    assert len(orders) == report.orders > 0
    assert orders["total"].sum() == pytest.approx(report.revenue)
    assert orders["accepts_marketing"].isna().all()  # a simulated order states no consent
    assert (orders["created_at"] > SENT_AT).all() and (orders["created_at"] <= SENT_AT + horizon).all()
    buyers = orders["email"].str.extract(r"c(\d+)@")[0].astype(int)
    contacted, held = (buyers < CUSTOMERS // 2).sum(), (buyers >= CUSTOMERS // 2).sum()
    assert contacted > 2 * held  # the lift the report measures
    assert report.orders_by_kind["after_click"] > 0 and sum(report.orders_by_kind.values()) == report.orders


def test_the_same_seed_gives_the_same_responses(tmp_path: Path) -> None:
    first_engine, first = _store(tmp_path / "one")
    second_engine, second = _store(tmp_path / "two")
    try:
        a = simulate_responses(first_engine, first, seed=3, store_url=STORE_URL)
        b = simulate_responses(second_engine, second, seed=3, store_url=STORE_URL)
        assert a == b
        assert (first / ORDERS_PATH).read_bytes() == (second / ORDERS_PATH).read_bytes()
        assert _clicks(first_engine) == _clicks(second_engine)
    finally:
        first_engine.dispose()
        second_engine.dispose()


def test_a_second_simulation_writes_nothing(store: tuple[Engine, Path]) -> None:
    engine, data = store
    first = simulate_responses(engine, data, seed=7, store_url=STORE_URL)
    written, clicks = (data / ORDERS_PATH).read_bytes(), _clicks(engine)
    again = simulate_responses(engine, data, seed=7, store_url=STORE_URL)
    assert again.skipped and again.orders == again.clicks == 0
    marker = json.loads((data / RESPONSES_FILE).read_text())
    assert len(marker["rounds"]) == 1 and marker["rounds"][0]["orders"] == first.orders
    # A run stopped before it recorded what it simulated writes, run again, only what is missing: nothing.
    (data / RESPONSES_FILE).unlink()
    redo = simulate_responses(engine, data, seed=7, store_url=STORE_URL)
    assert redo.messages == first.messages and redo.orders == redo.clicks == 0
    assert (data / ORDERS_PATH).read_bytes() == written and _clicks(engine) == clicks


def test_new_messages_are_simulated_later(store: tuple[Engine, Path]) -> None:
    engine, data = store
    simulate_responses(engine, data, seed=7, store_url=STORE_URL)
    later = SENT_AT + timedelta(days=7)
    with engine.begin() as conn:
        conn.execute(
            insert(Message.__table__),
            [  # type: ignore[attr-defined]
                {
                    "occurrence_key": "weekly:2026-W50",
                    "customer_id": n + 1,
                    "campaign": "weekly",
                    "variant": "A",
                    "channel": "email",
                    "state": "sent",
                    "created_at": later,
                    "updated_at": later,
                    "sent_at": later,
                }
                for n in range(40)
            ],
        )
        before = conn.execute(select(func.count()).select_from(Click.__table__)).scalar_one()  # type: ignore[arg-type]
    report = simulate_responses(engine, data, seed=7, store_url=STORE_URL)
    assert report.messages == 40 and report.customers == 40
    assert len(_clicks(engine)) == before + report.clicks
