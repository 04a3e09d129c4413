"""Reading GA4 events: one row per item, bad lines quarantined by line number, repeats skipped."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sources.analytics import events_per_line, read_events
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
