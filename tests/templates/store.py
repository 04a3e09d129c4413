"""A small store whose planned messages exercise every template the way a real day does.

Built with ``StoreBuilder`` (customers, products, orders, cart events), then the real pipeline: trigger detection
(``models.triggers``), the recommender (``models.recommend``: hybrid picks for customers with history, popularity
for new ones) and planning (``models.planning``) of the shipped campaigns plus variants that override the subject,
the template and the offer (a static code, and a pool CSV with fewer codes than recipients). Nothing here writes a
context by hand: the tests see what planning really produces.

The people, and the moment each one has on ``TODAY``:

* Ava: coffee regular; her Guji runs out in two days (replenishment), cart with a dripper (abandoned cart);
* Ben: tea only, regular (weekly picks only);
* Cleo: new, no orders (popular picks), birthday today;
* Dan: three orders long ago (win-back);
* Eve: coffee and tea, birthday today, lapsed too (win-back);
* an unnamed customer with a cart of two coffees and no orders (abandoned cart; "Hi there").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Engine

from models.campaigns import Campaign, CampaignFile, Catalog, Offer, Variant, load_catalog
from models.message import OutboundMessage
from models.planning import PlanReport, StoreInfo, plan_campaign
from models.recommend import train_and_recommend
from models.schema import Product
from models.triggers import detect_triggers
from tests.models.builders import StoreBuilder, at

TODAY = date(2026, 11, 27)
STORE = StoreInfo(name="Bean & Leaf Coffee", url="https://beanandleaf.example", address="12 Roastery Lane, Portland")
POOL_CODES = ["BDAY-0001"]
WINBACK_SUBJECT = "A welcome-back gift, just for you"
WEEKLY_SUBJECT = "Picked for you this week"


@dataclass
class PlannedStore:
    """The store's database, its campaigns as planned today, and who is who."""

    engine: Engine
    catalog: Catalog
    campaigns: list[Campaign]
    messages: list[OutboundMessage]
    reports: dict[str, PlanReport]
    people: dict[str, int]

    def emails(self, campaign: str | None = None) -> list[OutboundMessage]:
        return [m for m in self.messages if m.channel == "email" and (campaign is None or m.campaign == campaign)]


def build_store(engine: Engine) -> dict[str, int]:
    """Products, customers, orders and cart events; returns the customers' ids by name."""
    shop = StoreBuilder(engine)
    coffee = dict(product_type="Coffee Beans", consumable=True, replenish_days=30)
    tea = dict(product_type="Tea", consumable=True, replenish_days=45)
    p = {
        "guji": shop.product("Ethiopia Guji Honey", roast="light", flavour_notes="berry|floral", price=22.0, **coffee),
        "huila": shop.product("Colombia Huila", roast="medium", flavour_notes="caramel|cocoa", price=18.5, **coffee),
        "espresso": shop.product("House Espresso Blend", roast="dark", flavour_notes="cocoa", price=17.0, **coffee),
        "kenya": shop.product("Kenya Nyeri AA", roast="light", flavour_notes="berry|citrus", price=24.0, **coffee),
        "sumatra": shop.product("Sumatra Lintong", roast="dark", flavour_notes="earthy", price=19.0, **coffee),
        "earl": shop.product("Earl Grey Supreme", flavour_notes="citrus|floral", price=14.0, **tea),
        "sencha": shop.product("Sencha Spring Harvest", flavour_notes="grassy", price=16.0, **tea),
        "genmaicha": shop.product("Genmaicha Organic", flavour_notes="toasty", price=15.0, **tea),
        "oolong": shop.product("Milk Oolong", flavour_notes="creamy|floral", price=21.0, **tea),
        "dripper": shop.product("Ceramic Pour-Over Dripper", consumable=False, product_type="Brewing Gear", price=32.0),
        "grinder": shop.product("Hand Burr Grinder", consumable=False, product_type="Brewing Gear", price=89.0),
        "filters": shop.product("Paper Filters (100)", product_type="Filters & Pods", replenish_days=90, price=6.5),
        "biscotti": shop.product("Almond Biscotti", product_type="Food", consumable=True, price=7.0),
    }
    with engine.begin() as conn:  # half the catalog has pictures (the other half shows the no-image layout)
        for n, key in enumerate(p):
            if n % 2 == 0:
                conn.execute(
                    update(Product.__table__)  # type: ignore[arg-type]
                    .where(Product.__table__.c.id == p[key])  # type: ignore[attr-defined]
                    .values(image_url=f"https://cdn.beanandleaf.example/products/{key}.jpg")
                )
    people = {
        "ava": shop.customer(first_name="Ava"),
        "ben": shop.customer(first_name="Ben"),
        "cleo": shop.customer(first_name="Cleo", birthday=date(1990, TODAY.month, TODAY.day)),
        "dan": shop.customer(first_name="Dan"),
        "eve": shop.customer(first_name="Eve", birthday=date(1985, TODAY.month, TODAY.day)),
        "anon": shop.customer(),
    }
    day = lambda n: at(TODAY - timedelta(days=n))  # noqa: E731
    # Ava: a coffee every month; the last Guji 28 days ago runs out in 2 days. Yesterday she carted a dripper.
    for n, item in ((118, "huila"), (88, "espresso"), (58, "kenya"), (28, "guji")):
        shop.order(people["ava"], day(n), [(p[item], 1), (p["filters"], 1)] if n == 118 else [(p[item], 1)])
    shop.event(people["ava"], "add_to_cart", p["dripper"], day(1))
    # Ben: tea only, every few weeks, most recently 10 days ago.
    for n, item in ((100, "earl"), (70, "sencha"), (40, "earl"), (10, "genmaicha")):
        shop.order(people["ben"], day(n), [(p[item], 1)])
    # Dan: three orders, a month apart, the last 200 days ago: lapsed.
    for n, item in ((260, "espresso"), (230, "sumatra"), (200, "espresso")):
        shop.order(people["dan"], day(n), [(p[item], 2)])
    # Eve: coffee and tea, lapsed (last order 150 days ago), birthday today.
    for n, items in ((240, ("huila", "earl")), (210, ("kenya",)), (180, ("oolong", "grinder")), (150, ("huila",))):
        shop.order(people["eve"], day(n), [(p[item], 1) for item in items])
    # The unnamed customer: two coffees in the cart two days ago, one of them viewed again yesterday.
    shop.event(people["anon"], "add_to_cart", p["kenya"], day(2))
    shop.event(people["anon"], "add_to_cart", p["sumatra"], day(2))
    shop.event(people["anon"], "begin_checkout", p["kenya"], day(1))
    # More shoppers so popularity has something to rank and the recommender something to learn.
    for n in range(8):
        other = shop.customer(first_name=f"Reg{n}")
        for k, item in enumerate(("espresso", "huila", "earl", "genmaicha", "kenya", "biscotti")[n % 3 : n % 3 + 3]):
            shop.order(other, day(20 + 9 * k + n), [(p[item], 1)])
    return people


def campaigns(folder: Path) -> list[Campaign]:
    """The shipped campaigns, with variants that change subject, template and offer, and offers with codes.

    * ``birthday``: a pool of one code for two recipients (one goes without: the pool is exhausted);
    * ``winback``: variant A without an offer, B with a static code and its own subject (no holdout);
    * ``weekly-picks``: variant B with its own subject; ``tea-picks``: two products, so a tea drinker's email is
      all tea.
    """
    shipped = load_catalog()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "birthday-codes.csv").write_text("code\n" + "\n".join(POOL_CODES) + "\n", encoding="utf-8")

    def edit(shipped_name: str, **changes: Any) -> Campaign:
        spec = shipped.campaign(shipped_name).spec
        data = {**spec.model_dump(), **changes}
        return Campaign(CampaignFile.model_validate(data), folder / f"{data['name']}.yaml")

    gift = Offer(pool="birthday-codes.csv", description="15% off your next order")
    comeback = Offer(code="COMEBACK15", description="15% off your first order back")
    return [
        edit("abandoned-cart", holdout_percent=0),
        edit("replenishment", holdout_percent=0),
        edit("birthday", holdout_percent=0, offer=gift.model_dump()),
        edit(
            "winback",
            holdout_percent=0,
            variants=[
                Variant(name="A").model_dump(),
                Variant(name="B", subject=WINBACK_SUBJECT, offer=comeback).model_dump(),
            ],
        ),
        edit(
            "weekly-picks",
            holdout_percent=0,
            variants=[
                Variant(name="A").model_dump(),
                Variant(name="B", subject=WEEKLY_SUBJECT).model_dump(),
            ],
        ),
        edit("weekly-picks", name="tea-picks", holdout_percent=0, products=2),
    ]


def plan_store(engine: Engine, folder: Path) -> PlannedStore:
    """Build the store, detect today's moments, train, and plan every campaign for ``TODAY``."""
    people = build_store(engine)
    detect_triggers(engine, TODAY)
    train_and_recommend(engine, k=10, now=at(TODAY, 0), num_threads=1)
    catalog = load_catalog()
    specs = campaigns(folder)
    messages: list[OutboundMessage] = []
    reports: dict[str, PlanReport] = {}
    for spec in specs:
        reports[spec.name] = PlanReport(spec.name)
        messages += plan_campaign(engine, spec, TODAY, STORE, catalog.segments, report=reports[spec.name])
    return PlannedStore(engine, catalog, specs, messages, reports, people)
