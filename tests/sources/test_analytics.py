"""Reading GA4 events: one row per item, bad lines quarantined by line number, repeats skipped; the columnar reader
(JSONL blocks, Parquet batches) reads what the row-by-row reader read, however the file is cut."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sample.bigquery import EVENTS_SCHEMA
from sources.analytics import Ga4File, events_per_line, read_events
from sources.base import ReadContext, SourceConfig
from sources.validate import Intake, SourceFileError

EVENTS = Path(__file__).resolve().parents[1] / "data" / "sources" / "ga4_events.jsonl"
SKUS = {"BEAN-ETH-001", "BEAN-COL-002", "TEA-SEN-001", "FLT-V60-100", "GEAR-V60-01", "GIFT-BOX-01"}
GOOD = EVENTS.read_text(encoding="utf-8").splitlines()


def event(**changes: object) -> str:
    base = json.loads(GOOD[1])
    base.update(changes)
    return json.dumps(base)


def read(tmp_path: Path, *lines: str) -> tuple[Intake, object]:
    path = tmp_path / "ga4_events.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    intake = Intake("analytics", path.name)
    return intake, read_events(path, intake, SKUS)


def test_events_are_flattened_one_row_per_item() -> None:
    intake = Intake("analytics", EVENTS.name)
    events = read_events(EVENTS, intake, SKUS)
    purchase = events[events["event_name"] == "purchase"]
    assert list(purchase["sku"]) == ["BEAN-ETH-001", "FLT-V60-100"]
    assert list(purchase["quantity"]) == [1, 2]
    assert list(purchase["value"]) == [14.5, 12.0]
    assert set(purchase["transaction_id"]) == {"#1001"}
    assert events_per_line(events) == 5 and intake.count(5).reconciles


def test_occurred_at_comes_from_microsecond_timestamps_in_utc() -> None:
    events = read_events(EVENTS, Intake("analytics", "x"), SKUS)
    first = events.iloc[0]["occurred_at"]
    assert first.isoformat() == "2026-10-01T20:00:00.123456+00:00"
    assert events.iloc[0]["traffic_source"] == "google / organic"


def test_bad_lines_are_quarantined_by_line_number_and_repeats_skipped(tmp_path: Path) -> None:
    intake, events = read(
        tmp_path,
        GOOD[0],
        '{"event_name": "view_item", "event_timestamp": 17956',  # cut off mid-line
        event(user_pseudo_id=None),
        "",
        event(items=[{"item_id": "BEAN-GONE-404", "price": 1.0, "quantity": 1}]),
        GOOD[0],
        event(event_timestamp="yesterday"),
        GOOD[2],
    )
    quarantined = intake.quarantine()
    assert list(quarantined["row_number"]) == [2, 3, 5, 7]  # line numbers; the blank line 4 is no row
    assert list(quarantined["column"]) == [None, "user_pseudo_id", "items", "event_timestamp"]
    assert "unknown SKU 'BEAN-GONE-404'" in quarantined["reason"].iloc[2]
    assert json.loads(quarantined["raw"].iloc[0]).startswith('{"event_name"')  # stored as a JSON string
    assert json.loads(quarantined["raw"].iloc[1])["user_pseudo_id"] is None  # stored as the object it was
    assert intake.duplicates_skipped == 1
    assert intake.count(events_per_line(events)).rows_read == 7


def test_event_without_items_is_one_row_without_sku(tmp_path: Path) -> None:
    _, events = read(tmp_path, event(items=[]))
    assert len(events) == 1 and pd.isna(events.iloc[0]["sku"])


def test_file_of_only_non_json_lines_is_not_jsonl(tmp_path: Path) -> None:
    with pytest.raises(SourceFileError, match="not JSONL"):
        read(tmp_path, "event_name,user_pseudo_id", "view_item,123")


def test_json_array_file_is_not_jsonl() -> None:
    path = Path(__file__).resolve().parents[1] / "data" / "bad" / "ga4_events_array.json"
    with pytest.raises(SourceFileError, match=r"ga4_events_array.json: not JSONL .*NEWLINE_DELIMITED_JSON"):
        read_events(path, Intake("analytics", path.name), SKUS)


def test_missing_analytics_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(SourceFileError, match=r"ga4_events.jsonl: file not found"):
        read_events(tmp_path / "ga4_events.jsonl", Intake("analytics", "ga4_events.jsonl"), SKUS)


_good = st.sampled_from(GOOD)
_bad = st.sampled_from(
    [
        "not json at all",
        event(user_pseudo_id=""),
        event(event_name=None),
        event(items=[{"item_id": "NOPE-1", "quantity": 1}]),
        event(items="BEAN-ETH-001"),
        "[1, 2, 3]",
    ]
)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.booleans(), _good, _bad), min_size=1, max_size=40))
def test_every_line_is_loaded_quarantined_or_skipped_as_duplicate(tmp_path_factory, mix) -> None:  # type: ignore[no-untyped-def]
    lines = [good if is_good else bad for is_good, good, bad in mix]
    assume(any(line in GOOD for line in lines[:20]))  # else it is no JSONL file at all (tested above)
    intake, events = read(tmp_path_factory.mktemp("events"), *lines)
    unique_good = len({line for line in lines if line in GOOD})
    repeats = len(lines) - len(set(lines))
    count = intake.count(events_per_line(events))
    assert count.rows_read == len(lines)
    assert count.rows_loaded == unique_good
    assert count.duplicates_skipped == repeats
    assert count.rows_quarantined == len({line for line in lines if line not in GOOD})


def test_event_with_nul_in_a_stored_text_is_quarantined_whole(tmp_path: Path) -> None:
    items = [{"item_id": "BEAN-ETH-001", "quantity": 1, "price": 1.0}, {"item_id": "TEA-SEN-001", "quantity": 2}]
    intake, events = read(tmp_path, GOOD[0], event(user_id="70123\u00004", items=items), GOOD[2])
    entry = intake.quarantine().iloc[0]
    assert (entry["row_number"], entry["column"]) == (2, "user_id") and "NUL" in entry["reason"]
    assert set(events["_row"]) == {1, 3} and not events["user_id"].astype(str).str.contains("\x00").any()
    assert intake.count(events_per_line(events)).reconciles


def test_event_from_the_future_is_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "ga4_events.jsonl"
    path.write_text("\n".join([GOOD[0], event(event_timestamp=3_976_502_400_123_456)]) + "\n", encoding="utf-8")
    intake = Intake("analytics", path.name)
    events = read_events(path, intake, SKUS, now=datetime(2026, 11, 25, tzinfo=UTC))
    assert list(events["_row"]) == [1]
    assert intake.quarantine().iloc[0]["reason"] == "event_timestamp is in the future (after the sync's clock + 1 day)"


# --- the columnar reader: JSONL blocks and Parquet batches ---------------------------------------------

NOW = datetime(2026, 11, 25, tzinfo=UTC)


def as_parquet(path: Path, lines: list[str], row_group_size: int = 3) -> Path:
    """The events of ``lines`` (JSON objects) as a Parquet export, a few rows per row group."""
    pq.write_table(
        pa.Table.from_pylist([json.loads(line) for line in lines], schema=EVENTS_SCHEMA),
        path,
        row_group_size=row_group_size,
    )
    return path


def read_both(tmp_path: Path, lines: list[str], **options: object) -> tuple[pd.DataFrame, Intake, pd.DataFrame, Intake]:
    """The lines read by the columnar reader and row by row (the reader this module always had)."""
    path = tmp_path / "ga4_events.jsonl"
    path.write_bytes(b"\n".join(line.encode("utf-8", errors="surrogateescape") for line in lines) + b"\n")
    fast, slow = Intake("analytics", path.name), Intake("analytics", path.name)
    fast_events = read_events(path, fast, SKUS, NOW, **options)  # type: ignore[arg-type]
    slow_events = read_events(path, slow, SKUS, NOW, row_by_row=True)
    return fast_events, fast, slow_events, slow


def assert_same_read(
    events: pd.DataFrame, intake: Intake, expected_events: pd.DataFrame, expected_intake: Intake
) -> None:
    """Same rows, same types, same quarantine (row, column, reason, raw), same counts."""
    pd.testing.assert_frame_equal(events, expected_events)
    pd.testing.assert_frame_equal(
        intake.quarantine().reset_index(drop=True), expected_intake.quarantine().reset_index(drop=True)
    )
    counts = (intake.rows_read, intake.duplicates_skipped)
    assert counts == (expected_intake.rows_read, expected_intake.duplicates_skipped)


def test_parquet_and_jsonl_of_the_same_events_give_equal_frames(tmp_path: Path) -> None:
    lines = [
        *GOOD,
        event(user_pseudo_id=None),  # quarantined: missing user_pseudo_id
        event(items=[{"item_id": "BEAN-GONE-404", "price": 1.0, "quantity": 1}]),  # quarantined: unknown SKU
        GOOD[2],  # a repeat: skipped
        event(event_timestamp=3_976_502_400_123_456),  # quarantined: in the future
        event(items=[], traffic_source=None, user_id="  7012345678904 "),  # one row without SKU, id trimmed
        event(items=None, ecommerce={"transaction_id": "#1002"}),
    ]
    jsonl = tmp_path / "ga4_events.jsonl"
    jsonl.write_text("\n".join(lines) + "\n", encoding="utf-8")
    parquet = as_parquet(tmp_path / "ga4_events.parquet", lines)
    from_jsonl, from_parquet = Intake("analytics", jsonl.name), Intake("analytics", parquet.name)
    events = read_events(jsonl, from_jsonl, SKUS, NOW)
    pd.testing.assert_frame_equal(read_events(parquet, from_parquet, SKUS, NOW, batch_rows=4), events)
    jsonl_quarantine, parquet_quarantine = from_jsonl.quarantine(), from_parquet.quarantine()
    assert list(parquet_quarantine["row_number"]) == list(jsonl_quarantine["row_number"]) == [6, 7, 9]
    assert list(parquet_quarantine["reason"]) == list(jsonl_quarantine["reason"])
    assert from_parquet.duplicates_skipped == from_jsonl.duplicates_skipped == 1
    assert from_parquet.count(events_per_line(events)).reconciles
    assert from_jsonl.count(events_per_line(events)).reconciles
    assert set(events.loc[events["_row"] == 10, "user_id"]) == {"7012345678904"}


def test_parquet_items_are_flattened_one_row_per_item(tmp_path: Path) -> None:
    events = read_events(as_parquet(tmp_path / "events.parquet", GOOD), Intake("analytics", "events.parquet"), SKUS)
    purchase = events[events["event_name"] == "purchase"]
    assert list(purchase["sku"]) == ["BEAN-ETH-001", "FLT-V60-100"]
    assert list(purchase["quantity"]) == [1, 2] and list(purchase["value"]) == [14.5, 12.0]
    assert list(purchase["_row"]) == [3, 3] and set(purchase["transaction_id"]) == {"#1001"}


def test_parquet_without_the_event_columns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ga4_events.parquet"
    pq.write_table(pa.table({"event_name": ["view_item"], "user_pseudo_id": ["1.2"]}), path)
    with pytest.raises(SourceFileError, match=r"ga4_events.parquet: not a GA4 events export — no column event_time"):
        read_events(path, Intake("analytics", path.name), SKUS)
    path.write_text("event_name,user_pseudo_id\n", encoding="utf-8")
    with pytest.raises(SourceFileError, match=r"ga4_events.parquet: not a Parquet file"):
        read_events(path, Intake("analytics", path.name), SKUS)


@pytest.mark.parametrize(
    "bad",
    [
        '{"event_name": "view_item", "event_timestamp": 17956',  # cut off: not JSON
        event(event_timestamp="1790957400123456"),  # a string stamp (the row path reads its digits)
        event(event_timestamp=1790957400123456.0),  # a float stamp: not microseconds
        event(user_pseudo_id=1111111111),  # a number as the device id: its text
        event(items="BEAN-ETH-001"),  # items is not a list
        event(items=[{"item_id": "BEAN-ETH-001", "quantity": "2"}]),  # quantity is not a number
        event(items=["BEAN-ETH-001"]),  # an item is not an object
        event(ecommerce="#1001"),  # no object: no transaction
        "[1, 2, 3]",
        event(user_id="70123\u00004"),
    ],
)
def test_a_block_with_one_bad_line_loads_every_good_line(tmp_path: Path, bad: str) -> None:
    good = [event(event_timestamp=1790957400123456 + i, user_pseudo_id=f"{i}.1700000000") for i in range(300)]
    fast_events, fast, slow_events, slow = read_both(tmp_path, [*good[:150], bad, *good[150:]])
    assert_same_read(fast_events, fast, slow_events, slow)
    assert 300 <= events_per_line(fast_events) <= 301 and fast.rows_quarantined <= 1
    assert set(fast_events["_row"]) >= set(range(1, 151)) | set(range(152, 302))


_LINES = st.sampled_from(
    [
        *GOOD,
        "",
        "   ",
        "not json at all",
        "[1, 2, 3]",
        '"just a string"',
        "{}",
        '{"event_name": "view_item", "event_timestamp": 17956',
        event(user_pseudo_id=""),
        event(user_pseudo_id="  padded.device  "),
        event(user_pseudo_id=12345),
        event(user_pseudo_id=True),
        event(event_name=None),
        event(event_timestamp=-5),
        event(event_timestamp=0),
        event(event_timestamp="1790957400123456"),
        event(event_timestamp=" 1790957400123456 "),
        event(event_timestamp=1.5e15),
        event(event_timestamp=2**63),
        event(event_timestamp=3_976_502_400_123_456),
        event(items=[{"item_id": "NOPE-1", "quantity": 1}]),
        event(items="BEAN-ETH-001"),
        event(items={}),
        event(items=False),
        event(items=[None]),
        event(items=[{}]),
        event(items=[{"item_id": " BEAN-ETH-001 ", "quantity": 2.5, "price": 3}]),
        event(items=[{"item_id": "BEAN-ETH-001", "quantity": 1e30}]),
        event(items=[{"item_id": "BEAN-ETH-001", "quantity": True}]),
        event(items=[{"item_id": "BEAN-ETH-001", "price": "1.5"}]),
        event(items=[{"item_id": 42, "quantity": 1}]),
        event(items=[{"item_id": "BEAN-ETH-001"}, {"item_id": "NOPE-2"}, {"quantity": 1e30}]),
        event(traffic_source={"source": "google"}),
        event(traffic_source={"medium": " email "}),
        event(traffic_source="google"),
        event(ecommerce={"transaction_id": 1001}),
        event(user_id="70123\u00004"),
        event(event_name="view\u0000item"),
        GOOD[0].replace('"price": 14.5', '"price": NaN'),
        GOOD[0].replace('"price": 14.5', '"price": Infinity'),
        GOOD[0].replace('"name": "(organic)"', '"name": -Infinity'),
        GOOD[0].replace('"Coffee Beans"', '"Caf\udce9"'),  # Latin-1 é: invalid UTF-8
        GOOD[0].replace('"Coffee Beans"', '"Caf\u00e9"'),  # valid UTF-8
        "\ufeff" + GOOD[1],  # a byte order mark
        GOOD[1] + " " + GOOD[2],  # two objects on one line
        "\t " + GOOD[3] + " \r",
        "\x0b" + GOOD[4],
        GOOD[0].replace('"device"', '"nested": ' + "[" * 1100 + "]" * 1100 + ', "device"'),
        GOOD[0].replace('"user_id": null', '"user_id": null, "user_id": "7012345678901"'),  # a key twice
        GOOD[0].replace('"user_pseudo_id"', '"user_\\u0070seudo_id"'),  # an escaped key
    ]
)


@settings(max_examples=30, deadline=None)
@given(lines=st.lists(_LINES, min_size=1, max_size=40), block_bytes=st.integers(min_value=400, max_value=20_000))
def test_any_cut_into_blocks_reads_as_the_row_by_row_reader(tmp_path_factory, lines, block_bytes) -> None:  # type: ignore[no-untyped-def]
    assume(any(line.lstrip().startswith("{") for line in lines[:1]) or any(line in GOOD for line in lines[:20]))
    fast_events, fast, slow_events, slow = read_both(tmp_path_factory.mktemp("events"), lines, block_bytes=block_bytes)
    assert_same_read(fast_events, fast, slow_events, slow)
    assert fast.count(events_per_line(fast_events)).reconciles


def test_file_read_in_one_block_or_many_gives_the_same_frame(tmp_path: Path) -> None:
    lines = [event(event_timestamp=1790957400123456 + i, user_pseudo_id=f"{i % 7}.17") for i in range(60)]
    lines[43] = lines[5]  # a repeat across blocks
    lines[30] = "garbage"
    path = tmp_path / "ga4_events.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    reads = []
    for block_bytes in (1, 5000, 1 << 24):  # one line a block (a line longer than a block), a few, all
        intake = Intake("analytics", path.name)
        reads.append((read_events(path, intake, SKUS, NOW, block_bytes=block_bytes), intake))
    for events, intake in reads[1:]:
        assert_same_read(events, intake, *reads[0])
    assert reads[0][1].duplicates_skipped == 1 and reads[0][1].rows_quarantined == 1


# --- the reader behind the source protocol -------------------------------------------------------------


def config(url: str) -> SourceConfig:
    return SourceConfig("analytics", url, "OMNICAST_ANALYTICS_URL (--analytics)")


@pytest.mark.parametrize(
    ("name", "found"),
    [("gone.jsonl", r"points at nothing"), ("folder", r"points at a directory"), ("events.csv", r"not a \.jsonl")],
)
def test_ga4_file_check_names_the_setting(tmp_path: Path, name: str, found: str) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "events.csv").write_text("event_name\n", encoding="utf-8")
    with pytest.raises(SourceFileError, match=rf"^OMNICAST_ANALYTICS_URL \(--analytics\).* {found}.*bq extract"):
        Ga4File(config(str(tmp_path / name))).check()


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_ga4_file_reads_events_with_their_intake(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"ga4_events{suffix}"
    if suffix == ".parquet":
        as_parquet(path, GOOD)
    else:
        path.write_text("\n".join(GOOD) + "\n", encoding="utf-8")
    said: list[str] = []
    context = ReadContext(known_skus=SKUS, default_country="US", now=NOW, say=said.append)
    reader = Ga4File(config(f"file://{path}"))
    reader.check()
    read = reader.read(context)
    assert (read.role, read.platform, read.location) == ("analytics", "ga4", str(path))
    assert list(read.frames) == ["events"] and list(read.intakes) == ["analytics"]
    assert read.intakes["analytics"].file == path.name
    assert len(read.frames["events"]) == 6 and said == ["analytics: 6 event items read"]
