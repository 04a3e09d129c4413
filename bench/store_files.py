"""Export a store's purchases as the evaluate commands' input files, split at a date.

    .venv/bin/python bench/store_files.py [--database sqlite:///demo/omnicast.db] [--split 2026-09-03] [--out DIR]

writes DIR/train.csv and DIR/test.csv (``user_id,item_id,timestamp``: counted order lines before / from the split),
DIR/items.csv (``item_id,product_type,roast,origin,notes,price``) and DIR/transactions.csv (``customer_id,date,amount``
for ``omnicast evaluate churn``). Then, e.g.:

    .venv/bin/omnicast evaluate recommendations --train DIR/train.csv --test DIR/test.csv --item-features DIR/items.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from sqlalchemy import create_engine, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.interactions import ORDER_LINES, ORDERS, PRODUCTS, counted_order, read_frame  # noqa: E402


def export(database: str, split: str, out: Path) -> dict[str, int]:
    engine = create_engine(database)
    lines = read_frame(
        engine,
        select(
            ORDERS.c.customer_id.label("user_id"),
            ORDER_LINES.c.product_id.label("item_id"),
            ORDERS.c.created_at.label("timestamp"),
            ORDERS.c.total,
        )  # fmt: skip
        .join(ORDERS, ORDERS.c.id == ORDER_LINES.c.order_id)
        .where(ORDERS.c.customer_id.is_not(None), ORDER_LINES.c.product_id.is_not(None), counted_order()),
        datetimes=["timestamp"],
    )
    cut = pd.Timestamp(split, tz="UTC")
    out.mkdir(parents=True, exist_ok=True)
    frame = lines[["user_id", "item_id", "timestamp"]]
    frame[frame["timestamp"] < cut].to_csv(out / "train.csv", index=False)
    frame[frame["timestamp"] >= cut].to_csv(out / "test.csv", index=False)
    products = read_frame(
        engine,
        select(
            PRODUCTS.c.id.label("item_id"),
            PRODUCTS.c.product_type,
            PRODUCTS.c.roast,
            PRODUCTS.c.origin,
            PRODUCTS.c.flavour_notes.label("notes"),
            PRODUCTS.c.price,
        ),  # fmt: skip
    )
    products.to_csv(out / "items.csv", index=False)
    orders = lines.drop_duplicates(["user_id", "timestamp"])
    pd.DataFrame(
        {"customer_id": orders["user_id"], "date": orders["timestamp"].dt.date, "amount": orders["total"]}
    ).to_csv(out / "transactions.csv", index=False)
    return {"train": int((frame["timestamp"] < cut).sum()), "test": int((frame["timestamp"] >= cut).sum()),
            "items": len(products), "orders": len(orders)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="sqlite:///demo/omnicast.db")
    parser.add_argument("--split", default="2026-09-03")
    parser.add_argument("--out", type=Path, default=Path("/tmp/omnicast-store-files"))
    args = parser.parse_args()
    counts = export(args.database, args.split, args.out)
    print(f"{args.out}: " + ", ".join(f"{name} {count:,}" for name, count in counts.items()))


if __name__ == "__main__":
    main()
