"""How a GA4 BigQuery export types the columns the sample's events use: what the events become when a test or the
ingest benchmark writes them as Parquet, as BigQuery writes them (item names and categories, revenue, device and
campaign name included, which the reader skips)."""

from __future__ import annotations

import pyarrow as pa

ITEM = pa.struct(
    [
        ("item_id", pa.string()),
        ("item_name", pa.string()),
        ("item_category", pa.string()),
        ("price", pa.float64()),
        ("quantity", pa.int64()),
    ]
)
EVENTS_SCHEMA = pa.schema(
    [
        ("event_date", pa.string()),
        ("event_timestamp", pa.int64()),
        ("event_name", pa.string()),
        ("user_pseudo_id", pa.string()),
        ("user_id", pa.string()),
        ("items", pa.list_(ITEM)),
        ("ecommerce", pa.struct([("transaction_id", pa.string()), ("purchase_revenue", pa.float64())])),
        ("traffic_source", pa.struct([("source", pa.string()), ("medium", pa.string()), ("name", pa.string())])),
        ("device", pa.struct([("category", pa.string())])),
    ]
)
