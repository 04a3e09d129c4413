"""The products export's merchandising columns (stock, Published, Gift Card), which the recommendation rules read:
what they load as, what a bad cell does, and what the sample store writes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, select

from models.interactions import table_of
from models.schema import Product
from sample import write_sample
from sources.shopify import read_products
from sources.validate import Intake
from tests.models.test_sync import T2, sync
from tests.sources.test_shopify import append_lines, row_text, store_copy


def _read(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    intake = Intake("products", path.name)
    products = read_products(path, intake).set_index("sku")
    return products, intake.quarantine()


def test_stock_published_and_gift_card_are_read(tmp_path: Path) -> None:
    path = store_copy(tmp_path) / "products_export.csv"
    append_lines(
        path,
        row_text(path, **{"Variant SKU": "BEAN-OUT-1", "Variant Inventory Qty": "0", "Published": "TRUE"}),
        row_text(path, **{"Variant SKU": "BEAN-HID-1", "Variant Inventory Qty": "-2", "Published": "FALSE"}),
        row_text(path, **{"Variant SKU": "GIFT-CRD-1", "Variant Inventory Qty": "", "Gift Card": "TRUE"}),
    )
    products, quarantine = _read(path)
    assert quarantine.empty
    assert products.loc["BEAN-ETH-001", "inventory_quantity"] == 40
    assert products.loc["BEAN-OUT-1", "inventory_quantity"] == 0
    assert products.loc["BEAN-HID-1", ["inventory_quantity", "published"]].tolist() == [-2, False]
    assert products.loc["GIFT-CRD-1", "inventory_quantity"] is None  # blank: not tracked, counts as in stock
    assert products.loc["GIFT-CRD-1", "gift_card"] and not products.loc["BEAN-ETH-001", "gift_card"]
    assert products["published"].drop("BEAN-HID-1").all()


def test_untracked_or_oversold_variants_have_no_stock_figure(tmp_path: Path) -> None:
    path = store_copy(tmp_path) / "products_export.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame["Variant Inventory Tracker"] = ["shopify", "", "shopify", "shopify", "shopify", "shopify"]
    frame["Variant Inventory Policy"] = ["deny", "deny", "continue", "deny", "", "deny"]
    frame["Variant Inventory Qty"] = "0"
    frame.to_csv(path, index=False)
    products, quarantine = _read(path)
    assert quarantine.empty
    stock = products["inventory_quantity"].to_dict()
    assert stock["BEAN-ETH-001"] == 0  # tracked, not sold when out: out of stock
    assert stock["BEAN-COL-002"] is None  # not tracked
    assert stock["TEA-SEN-001"] is None  # sold when out of stock (policy continue)
    assert stock["GEAR-V60-01"] == 0


def test_older_exports_without_the_columns_keep_the_defaults(tmp_path: Path) -> None:
    path = store_copy(tmp_path) / "products_export.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.drop(columns=["Variant Inventory Qty", "Published", "Gift Card"]).to_csv(path, index=False)
    products, quarantine = _read(path)
    assert quarantine.empty
    assert products["inventory_quantity"].isna().all()
    assert products["published"].all() and not products["gift_card"].any()


def test_second_variant_row_inherits_published_and_gift_card(tmp_path: Path) -> None:
    path = store_copy(tmp_path) / "products_export.csv"
    append_lines(path, row_text(path, Title="", Published="", **{"Gift Card": "", "Variant SKU": "BEAN-ETH-1KG"}))
    edit = pd.read_csv(path, dtype=str, keep_default_na=False)
    edit.loc[0, ["Published", "Gift Card"]] = ["FALSE", "TRUE"]
    edit.to_csv(path, index=False)
    products, _ = _read(path)
    assert products.loc["BEAN-ETH-1KG", ["published", "gift_card"]].tolist() == [False, True]


@pytest.mark.parametrize(
    ("column", "cell", "field", "loaded_as", "reason"),
    [
        ("Variant Inventory Qty", "lots", "inventory_quantity", None, "not a whole number: loaded as not tracked"),
        ("Variant Inventory Qty", "2.5", "inventory_quantity", None, "not a whole number: loaded as not tracked"),
        ("Published", "maybe", "published", False, "not TRUE/FALSE: loaded as not published"),
        ("Gift Card", "sometimes", "gift_card", True, "not TRUE/FALSE: loaded as a gift card"),
    ],
)
def test_a_bad_cell_is_set_aside_and_the_product_loads_on_the_safe_side(
    tmp_path: Path, column: str, cell: str, field: str, loaded_as: object, reason: str
) -> None:
    path = store_copy(tmp_path) / "products_export.csv"
    append_lines(path, row_text(path, **{"Variant SKU": "BEAN-BAD-1", column: cell}))
    products, quarantine = _read(path)
    assert products.loc["BEAN-BAD-1", field] == loaded_as  # the row is loaded
    assert list(quarantine["column"]) == [column]
    assert list(quarantine["scope"]) == ["field"]
    assert reason in quarantine["reason"].iloc[0]
    assert list(quarantine["row_number"]) == [7]


def test_the_sample_store_has_gift_cards_one_unpublished_product_and_some_out_of_stock(tmp_path: Path) -> None:
    write_sample(tmp_path, customers=1200, seed=3)
    products, _ = _read(tmp_path / "shopify" / "products_export.csv")
    active = products[products["active"]]
    gift_cards = products[products["gift_card"]]
    assert len(gift_cards) >= 3 and gift_cards.index.str.startswith("GIFT-CRD").all()
    assert gift_cards["inventory_quantity"].isna().all()  # not tracked
    assert (~active["published"]).sum() == 1
    out = active["inventory_quantity"].notna() & (active["inventory_quantity"].fillna(1) <= 0)
    assert 1 <= out.sum() <= 0.15 * len(active)


def test_a_resync_updates_stock_publication_and_gift_card(engine: Engine, tmp_path: Path) -> None:
    store = store_copy(tmp_path)
    sync(engine, store, None, None)
    path = store / "products_export.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.loc[0, ["Variant Inventory Qty", "Published", "Gift Card"]] = ["0", "FALSE", "TRUE"]
    frame.to_csv(path, index=False)
    sync(engine, store, None, None, run_id="run-2", now=T2)
    table = table_of(Product)
    mine = table.c.sku == "BEAN-ETH-001"
    with engine.connect() as conn:
        row = conn.execute(select(table.c.inventory_quantity, table.c.published, table.c.gift_card).where(mine)).one()
        others = conn.execute(select(table.c.published, table.c.gift_card).where(~mine)).all()
    assert tuple(row) == (0, False, True)
    assert all(tuple(other) == (True, False) for other in others)
