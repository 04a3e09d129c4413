"""The cart placement: the abandoned-cart email suggests what pairs with the cart, apart from the cart itself."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import insert
from sqlalchemy.engine import Engine

from channels.render import EmailRenderer
from models.campaigns import Campaign, CampaignFile
from models.campaigns import load_catalog as load_campaigns
from models.context import cart_pairings, pick_kind, picks_kind
from models.interactions import load_catalog, load_interactions
from models.planning import PlanReport, StoreInfo, plan_campaign
from models.recommend.related import write_related_products
from models.schema import TriggerOccurrence
from tests.models.builders import StoreBuilder, at

TODAY = date(2026, 11, 27)
NOW = datetime(2026, 11, 27, 6, tzinfo=UTC)
STORE = StoreInfo(name="Bean & Leaf Coffee", url="https://beanandleaf.example", address="1 Roastery Lane")


def test_cart_pairings_sum_over_the_cart_keep_the_strongest_reason_and_never_suggest_the_cart() -> None:
    related = {
        1: [(2, 0.9, "Pairs with Guji"), (3, 0.5, "Pairs with Guji"), (10, 0.4, "Pairs with Guji")],
        2: [(1, 0.9, "Pairs with Dripper"), (3, 0.6, "Similar to Dripper"), (11, 0.8, "Pairs with Dripper")],
    }
    assert cart_pairings([1, 2], related, limit=5) == [
        (3, "Similar to Dripper"),  # 0.5 + 0.6: goes with both, named after the one it goes with most
        (11, "Pairs with Dripper"),
        (10, "Pairs with Guji"),
    ]
    assert cart_pairings([1, 2], related, limit=1) == [(3, "Similar to Dripper")]
    assert cart_pairings([7], related, limit=5) == []
    assert cart_pairings([1], {1: [(5, 0.5, "a"), (4, 0.5, "b")]}, limit=5) == [(4, "b"), (5, "a")]  # ties by id


def test_related_explanations_have_their_own_kinds_and_count_as_personal() -> None:
    assert pick_kind("hybrid", "Pairs with Ethiopia Guji") == "pairs"
    assert pick_kind("item_to_item", "Similar to Kenya AA") == "similar"
    assert picks_kind(["pairs", "similar"]) == "personal"
    assert picks_kind(["pairs", "popular"]) == "mixed"


def _cart(engine: Engine, customer: int, products: list[int]) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(TriggerOccurrence.__table__).values(  # type: ignore[attr-defined]
                occurrence_key=f"abandoned_cart:{customer}:2026-11-26",
                kind="abandoned_cart",
                customer_id=customer,
                due_on=TODAY,
                payload={"product_ids": products, "skus": [], "cart_at": at("2026-11-26", 18).isoformat()},
                detected_at=at(TODAY),
            )
        )


def test_the_cart_email_suggests_what_pairs_with_the_cart_and_reads_right(engine: Engine) -> None:
    store = StoreBuilder(engine)
    guji = store.product("Ethiopia Guji", roast="light", flavour_notes="blueberry|jasmine", replenish_days=21)
    dripper = store.product("Ceramic Dripper", product_type="Brewing Gear", consumable=False, price=28.0)
    filters = store.product("Paper Filters", product_type="Brewing Gear", price=6.0)
    kenya = store.product("Kenya Nyeri", roast="light", flavour_notes="blackcurrant|jasmine")
    store.product("Brazil Cerrado", roast="dark", flavour_notes="chocolate|nutty")
    for n in range(6):  # guji is bought with the dripper and the filters
        customer = store.customer()
        store.order(customer, at("2026-10-01"), [(guji, 1), (dripper, 1), (filters, 1)] if n < 4 else [(guji, 1)])
    shopper, owner = store.customer(first_name="Ava"), store.customer(first_name="Ben")
    store.order(owner, at("2026-09-01"), [(dripper, 1)])  # Ben owns a dripper: never offered again
    _cart(engine, shopper, [guji])
    _cart(engine, owner, [guji, kenya])
    write_related_products(engine, load_catalog(engine), load_interactions(engine, NOW), NOW, k=5)

    shipped = load_campaigns().campaign("abandoned-cart")  # showing 4 products in all, the cart's first
    spec = Campaign(CampaignFile.model_validate({**shipped.spec.model_dump(), "products": 4}), shipped.file)
    messages = plan_campaign(engine, spec, TODAY, STORE, report=PlanReport("abandoned-cart"))
    emails = {m.customer_id: m for m in messages if m.channel == "email"}
    ava = emails[shopper].context
    assert [p["title"] for p in ava["cart"]] == ["Ethiopia Guji"]
    suggested = [(p["title"], p["explanation"], p["kind"]) for p in ava["products"]]
    assert suggested[:2] == [  # the filters first: bought with it as often, and more particular to it
        ("Paper Filters", "Pairs with Ethiopia Guji", "pairs"),
        ("Ceramic Dripper", "Pairs with Ethiopia Guji", "pairs"),
    ]
    assert "Ethiopia Guji" not in [title for title, _, _ in suggested]
    ben = emails[owner].context
    assert [p["title"] for p in ben["cart"]] == ["Ethiopia Guji", "Kenya Nyeri"]
    assert not {"Ceramic Dripper", "Ethiopia Guji", "Kenya Nyeri"} & {p["title"] for p in ben["products"]}
    assert ben["products"][0]["title"] == "Paper Filters"

    email = EmailRenderer(strict=True).render(
        "abandoned_cart", {**emails[shopper].context, "unsubscribe_url": "https://x.example/u"}
    )
    text = email.text
    cart_part = text[text.index("STILL IN YOUR CART") : text.index("Return to your cart")]
    picks_part = text[text.index("YOU MIGHT ALSO LIKE") :]
    assert "Ethiopia Guji" in cart_part and "Ceramic Dripper" not in cart_part
    assert "Ceramic Dripper" in picks_part and "Pairs with Ethiopia Guji" in picks_part
    assert "Ethiopia Guji" in email.subject
