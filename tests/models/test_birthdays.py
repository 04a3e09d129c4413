"""Birthday moments: the coming week, each customer's own timezone, and Feb 29."""

from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from models.birthdays import celebration_date, find_birthdays, local_today, upcoming_birthdays
from tests.models.builders import StoreBuilder

UTC_ZONE = ZoneInfo("UTC")


def _found(engine: Engine, today: str, store_tz: str = "UTC") -> pd.DataFrame:
    return find_birthdays(engine, date.fromisoformat(today), ZoneInfo(store_tz))


def test_birthday_in_the_coming_week_is_found_with_its_payload(sqlite_engine: Engine) -> None:
    customer = StoreBuilder(sqlite_engine).customer(birthday=date(1990, 3, 12))
    found = _found(sqlite_engine, "2026-03-10")
    assert found.to_dict("records") == [
        {
            "occurrence_key": f"birthday:{customer}:2026",
            "customer_id": customer,
            "due_on": date(2026, 3, 12),
            "payload": {"birthday": "03-12"},
        }
    ]


def test_birthday_today_is_found_and_one_a_week_away_is_not_yet(sqlite_engine: Engine) -> None:
    store = StoreBuilder(sqlite_engine)
    today_one = store.customer(birthday=date(1980, 3, 10))
    store.customer(birthday=date(1980, 3, 17))  # today + 7: next week's run
    store.customer(birthday=date(1980, 3, 9))  # yesterday: too late
    assert _found(sqlite_engine, "2026-03-10")["customer_id"].tolist() == [today_one]


def test_feb29_birthday_is_celebrated_on_feb28_in_common_years(sqlite_engine: Engine) -> None:
    customer = StoreBuilder(sqlite_engine).customer(birthday=date(2000, 2, 29))
    found = _found(sqlite_engine, "2027-02-25")
    assert found["due_on"].tolist() == [date(2027, 2, 28)]
    assert found["payload"].tolist() == [{"birthday": "02-29"}]
    assert found["occurrence_key"].tolist() == [f"birthday:{customer}:2027"]


def test_feb29_birthday_is_celebrated_on_feb29_in_leap_years() -> None:
    assert celebration_date(date(2000, 2, 29), 2028) == date(2028, 2, 29)
    assert celebration_date(date(2000, 2, 29), 2100) == date(2100, 2, 28)


def test_window_crossing_new_year_keys_the_birthday_by_next_year(sqlite_engine: Engine) -> None:
    customer = StoreBuilder(sqlite_engine).customer(birthday=date(1975, 1, 2))
    found = _found(sqlite_engine, "2026-12-29")
    assert found["occurrence_key"].tolist() == [f"birthday:{customer}:2027"]
    assert found["due_on"].tolist() == [date(2027, 1, 2)]


def test_customer_timezone_decides_which_day_is_their_today(sqlite_engine: Engine) -> None:
    store = StoreBuilder(sqlite_engine)
    ahead = store.customer(birthday=date(1990, 3, 17), timezone="Pacific/Kiritimati")  # UTC+14
    store.customer(birthday=date(1990, 3, 17))  # store timezone: a week away, not yet
    assert _found(sqlite_engine, "2026-03-10")["customer_id"].tolist() == [ahead]


def test_unknown_profile_timezone_falls_back_to_the_store_timezone(sqlite_engine: Engine) -> None:
    customer = StoreBuilder(sqlite_engine).customer(birthday=date(1990, 3, 10), timezone="Mars/Olympus")
    assert _found(sqlite_engine, "2026-03-10", "Europe/Berlin")["customer_id"].tolist() == [customer]


def test_local_today_is_the_customers_date_at_noon_store_time() -> None:
    assert local_today(date(2026, 3, 10), ZoneInfo("Europe/Berlin"), "America/Los_Angeles") == date(2026, 3, 10)
    assert local_today(date(2026, 3, 10), UTC_ZONE, "Pacific/Kiritimati") == date(2026, 3, 11)
    assert local_today(date(2026, 3, 10), UTC_ZONE, None) == date(2026, 3, 10)


@settings(max_examples=60, deadline=None)
@given(
    birthday=st.dates(min_value=date(1920, 1, 1), max_value=date(2010, 12, 31))
    | st.sampled_from([date(1996, 2, 29), date(2000, 2, 29), date(1990, 2, 28), date(1990, 3, 1)]),
    first_day=st.dates(min_value=date(2023, 1, 1), max_value=date(2030, 12, 31)),
)
def test_daily_runs_find_each_yearly_celebration_exactly_in_its_week(birthday: date, first_day: date) -> None:
    """Runs on 800 consecutive days: every celebration year appears, on the right day, only in its own week."""
    days = [first_day + timedelta(days=n) for n in range(800)]
    customers = pd.DataFrame({"customer_id": 1, "birthday": [birthday] * len(days), "local_today": days})
    found = upcoming_birthdays(customers)
    for run_day, celebrated in zip(found["local_today"], found["celebrated_on"], strict=True):
        assert run_day <= celebrated < run_day + timedelta(days=7)
        assert celebrated == celebration_date(birthday, celebrated.year)
    expected = {
        celebration_date(birthday, year)
        for year in range(first_day.year, first_day.year + 4)
        if first_day <= celebration_date(birthday, year) < days[-1] + timedelta(days=7)
    }
    assert set(found["celebrated_on"]) == expected
    assert len(found) == sum(
        1 for day in days for c in expected if day <= c < day + timedelta(days=7)
    )  # each celebration is seen on exactly its seven run days (fewer at the edges)
