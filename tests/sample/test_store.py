"""The sample store generator as a whole: the same inputs give the same bytes, bad arguments are refused in
one line, progress names the stages, and small stores of any seed and day are consistent."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.errors import InputError
from sample import write_sample
from tests.sample.reading import AS_OF, audit, clean_events, digest, read_csv, records


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    first = write_sample(tmp_path / "a", customers=60, seed=3, as_of=AS_OF)
    second = write_sample(tmp_path / "b", customers=60, seed=3, as_of=AS_OF)
    other = write_sample(tmp_path / "c", customers=60, seed=4, as_of=AS_OF)
    assert first == second
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    theirs = digest(tmp_path / "c")
    assert all(theirs[name] != ours for name, ours in digest(tmp_path / "a").items())
    assert other["seed"] == 4


def test_fewer_than_ten_customers_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 10 customers"):
        write_sample(tmp_path, customers=9)


def test_an_output_folder_under_a_file_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "report.txt").write_text("not a folder", encoding="utf-8")
    with pytest.raises(InputError, match=r"^sample --out .*report\.txt/store: cannot create the folder there"):
        write_sample(tmp_path / "report.txt" / "store", customers=10)


def test_progress_names_each_stage(tmp_path: Path) -> None:
    stages: list[str] = []
    write_sample(tmp_path, customers=10, seed=1, as_of=AS_OF, progress=stages.append)
    assert stages[:2] == ["products", "customers"] and "events" in stages


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    customers=st.integers(min_value=10, max_value=60),
    seed=st.integers(min_value=0, max_value=2**31),
    as_of=st.dates(min_value=date(2020, 1, 1), max_value=date(2035, 12, 31)),
)
def test_small_stores_are_consistent_for_any_seed_and_day(
    tmp_path_factory: pytest.TempPathFactory, customers: int, seed: int, as_of: date
) -> None:
    out = tmp_path_factory.mktemp("small")
    manifest = write_sample(out, customers=customers, seed=seed, as_of=as_of)
    assert audit(out) == manifest["dirt"]
    limit = datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC).timestamp() * 1_000_000
    assert all(e["event_timestamp"] < limit for e in clean_events(out))
    for name, info in manifest["files"].items():
        lines = len((out / name).read_text(encoding="utf-8").splitlines())
        assert info["rows"] == (lines if name.endswith(".jsonl") else len(read_csv(out / name)[1]))
    names = {o["Name"] for o in records(out, "orders") if o["Name"] and o["Total"]}
    purchases = [e["ecommerce"]["transaction_id"] for e in clean_events(out) if e["event_name"] == "purchase"]
    assert sorted(purchases) == sorted(names)
