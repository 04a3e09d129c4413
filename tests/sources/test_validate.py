"""The reading machinery every reader shares: CSV records, numbers, URLs, and the two scopes of quarantine."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sources import validate
from sources.validate import (
    MAX_FIELD_CHARS,
    ROW,
    UNTERMINATED,
    Intake,
    SourceFileError,
    parse_numbers,
    read_csv,
    set_aside_each,
    web_url,
)

HEADER = "id,name,note"


def read(tmp_path: Path, *lines: str, name: str = "things.csv") -> tuple[Intake, pd.DataFrame]:
    path = tmp_path / name
    path.write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    intake = Intake("things", path.name)
    return intake, read_csv(path, intake, ["id"], "export the things again")


# --- CSV records --------------------------------------------------------------------------------------


def test_a_stray_quote_costs_only_its_own_line_and_the_others_keep_their_numbers(tmp_path: Path) -> None:
    intake, frame = read(tmp_path, "1,ann,ok", '2,"bob,oops', "3,cy,ok", "4,di,ok", "", "5,ed,ok")
    assert list(frame[ROW]) == [1, 3, 4, 5] and list(frame["name"]) == ["ann", "cy", "di", "ed"]
    entry = intake.quarantine().iloc[0]
    assert (entry["row_number"], entry["reason"], entry["scope"]) == (2, UNTERMINATED, "row")
    assert intake.count(len(frame)).rows_read == 5


def test_a_quoted_cell_over_several_lines_is_one_row(tmp_path: Path) -> None:
    intake, frame = read(tmp_path, '1,ann,"first line\nsecond, with a comma"', "2,bob,ok")
    assert list(frame["note"]) == ["first line\nsecond, with a comma", "ok"]
    assert list(frame[ROW]) == [1, 2] and intake.rows_quarantined == 0


def test_an_oversized_cell_quarantines_its_row_naming_the_column(tmp_path: Path) -> None:
    intake, frame = read(tmp_path, "1,ann,ok", f"2,bob,{'x' * (MAX_FIELD_CHARS + 1)}", "3,cy,ok")
    assert list(frame["id"]) == ["1", "3"]
    entry = intake.quarantine().iloc[0]
    assert (entry["row_number"], entry["column"]) == (2, "note")
    assert len(entry["raw"]) < 2_000  # the raw row keeps the start of the cell, not all of it


def test_the_fast_path_reads_ordinary_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object) -> None:
        raise AssertionError("the exact reader ran on an ordinary file")

    monkeypatch.setattr(validate, "_read_exact", refuse)
    _, frame = read(tmp_path, "1,ann,ok", "2,bob,short", '3,cy,"quoted, fine"')
    assert len(frame) == 3


def test_a_duplicated_column_name_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "things.csv"
    path.write_text("id,name,name\n1,a,b\n", encoding="utf-8")
    with pytest.raises(SourceFileError) as error:
        read_csv(path, Intake("things", path.name), ["id"], "export the things again")
    assert str(error.value) == (
        "things.csv: column 'name' appears twice in the header (columns 2 and 3) — rename or delete one of them, "
        "or export the file again; export the things again"
    )


_good = st.builds(lambda i, name: f"{i},{name},ok", st.integers(1, 999), st.sampled_from(["ann", "bob", "cy"]))
_bad = st.sampled_from(['7,"open,quote', "8,too,many,fields", "9,short", "", "10,nul\x00here,x", '11,"two\nlines",ok'])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(_good, _bad), max_size=30))
def test_every_row_is_loaded_quarantined_or_a_duplicate_whatever_the_mix(tmp_path: Path, lines: list[str]) -> None:
    intake, frame = read(tmp_path, *lines)
    count = intake.count(len(frame))  # raises when a row went missing
    assert count.reconciles
    assert set(frame.columns) == {"id", "name", "note", ROW}
    assert frame[ROW].is_unique and frame[ROW].is_monotonic_increasing
    assert not frame["name"].str.contains("\x00").any()  # never reaches a database


# --- values -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "number", "invalid"),
    [("14.50", 14.5, False), (" -3 ", -3.0, False), (".5", 0.5, False), ("", None, False), ("14,50", None, True),
     ("1E+10", None, True), ("1e10", None, True), ("inf", None, True), ("NaN", None, True), ("N/A", None, True),
     ("0x1A", None, True), ("1_000", None, True)],
)  # fmt: skip
def test_numbers_are_plain_decimals_with_a_dot(text: str, number: float | None, invalid: bool) -> None:
    numbers, bad = parse_numbers(pd.Series([text, "2.00"], dtype=str))
    assert (None if pd.isna(numbers[0]) else numbers[0]) == number
    assert bool(bad[0]) is invalid and numbers[1] == 2.0


@pytest.mark.parametrize(
    "url",
    ["javascript:alert(1)", " JavaScript:alert(1)", "data:image/png;base64,AAAA", "vbscript:msgbox", "/relative.jpg",
     "relative.jpg", "//evil.example/x.jpg", "https://", "https://exa mple.com/x.jpg", 'https://x.com/"onerror=',
     "https://x.com/<script>", "ftp://x.com/a.jpg", "https://x.com:99999/a.jpg", "https://x.com\\@evil.example/",
     "http://[::1"],
)  # fmt: skip
def test_unsafe_or_relative_urls_are_refused(url: str) -> None:
    assert web_url(url) is None


@given(st.text(max_size=60))
def test_an_accepted_url_is_always_absolute_http_without_blanks_or_quotes(text: str) -> None:
    url = web_url(text)
    if url is not None:
        assert url.lower().startswith(("http://", "https://"))
        assert not any(ch in url for ch in " \t\r\n\"'<>`\\")


def test_set_aside_cells_are_recorded_once_per_cell_with_the_first_reason(tmp_path: Path) -> None:
    intake, frame = read(tmp_path, "1,ann,ok", "2,bob,ok")
    unknown = set_aside_each(
        intake,
        frame,
        [
            ("name", frame["name"] == "bob", "first reason"),
            ("name", frame["id"] != "", "second reason"),
            ("note", frame["id"] == "1", "a note problem"),
        ],
    )
    entries = intake.quarantine()
    assert list(zip(entries["row_number"], entries["column"], entries["reason"], strict=True)) == [
        (1, "name", "second reason"),
        (1, "note", "a note problem"),
        (2, "name", "first reason"),
    ]
    assert set(entries["scope"]) == {"field"} and intake.fields_quarantined == 3 and intake.rows_quarantined == 0
    assert list(unknown["name"]) == [True, True] and list(unknown["note"]) == [True, False]


def test_quarantined_raw_row_is_the_row_as_read(tmp_path: Path) -> None:
    intake, frame = read(tmp_path, "1,ann,ok", "2,bob,ok")
    intake.set_aside(frame, frame["id"] == "2", "name", "why")
    assert json.loads(intake.quarantine().iloc[0]["raw"]) == {"id": "2", "name": "bob", "note": "ok"}
