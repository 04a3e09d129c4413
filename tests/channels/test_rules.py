"""Dispatch rules without a database: settings, backoff, and the quiet-hours and send-window arithmetic (DST
included)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from channels.rules import (
    DispatchRules,
    backoff_delay,
    in_quiet_hours,
    local_date,
    next_allowed,
    next_open,
    parse_quiet_hours,
    parse_send_window,
    window_problem,
)

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
NIGHT = (time(21), time(8))

# Zones with ordinary DST, none, 30-minute DST (Lord Howe), 45-minute offsets, a skipped date (Apia, 2011-12-30),
# a 2-hour DST (Troll) and a DST that pauses for Ramadan (Casablanca).
ZONES = [
    "UTC", "America/New_York", "Europe/Berlin", "Europe/London", "Australia/Lord_Howe", "Asia/Kathmandu",
    "Pacific/Chatham", "Pacific/Apia", "Antarctica/Troll", "Africa/Casablanca", "America/St_Johns", "Asia/Tokyo",
]  # fmt: skip


# --- settings --------------------------------------------------------------------------------------------


def test_rules_come_from_the_settings() -> None:
    from flows.settings import Settings

    configured = Settings(_env_file=None, quiet_hours="21:30-07:45", timezone="Europe/Berlin",  # type: ignore[call-arg]
                          email_daily_cap=2, email_weekly_cap=0, campaign_error_threshold=0.5)  # fmt: skip
    rules = DispatchRules.from_settings(configured, in_run_retries=1)
    assert rules.email_daily_cap == 2 and rules.email_weekly_cap == 0
    assert rules.quiet_hours == (time(21, 30), time(7, 45))
    assert rules.default_timezone == "Europe/Berlin" and rules.error_threshold == 0.5
    assert rules.in_run_retries == 1 and rules.max_attempts == 3 * 2
    defaults = DispatchRules.from_settings(Settings(_env_file=None))  # type: ignore[call-arg]
    assert (defaults.email_daily_cap, defaults.email_weekly_cap, defaults.quiet_hours) == (1, 3, None)
    assert defaults.error_min_handovers == 20 and defaults.max_attempts == 9


def test_bad_rules_are_refused() -> None:
    with pytest.raises(ValueError, match="IANA"):
        DispatchRules(default_timezone="Mars/Olympus")
    with pytest.raises(ValueError):
        DispatchRules(error_threshold=0)
    with pytest.raises(ValueError):
        DispatchRules(email_daily_cap=-1)
    with pytest.raises(ValueError, match="HH:MM"):
        parse_quiet_hours("late")
    assert parse_quiet_hours(None) is None and parse_quiet_hours("  ") is None
    assert parse_quiet_hours("21:00-08:00") == NIGHT


def test_a_customer_zone_falls_back_to_the_store_zone() -> None:
    rules = DispatchRules(default_timezone="Europe/Berlin")
    assert rules.zone("America/New_York") == NY
    assert rules.zone(None) == BERLIN and rules.zone("") == BERLIN and rules.zone("Not/AZone") == BERLIN


def test_caps_apply_to_marketing_on_capped_channels_only() -> None:
    rules = DispatchRules()
    assert rules.caps(True, "email")
    assert not rules.caps(False, "email") and not rules.caps(True, "inapp")


# --- backoff --------------------------------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_delay(n, 0.5, 5.0) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff_delay(10_000, 0.5, 5.0) == 5.0


@given(retry=st.integers(min_value=0, max_value=200), share=st.floats(min_value=0, max_value=1, exclude_max=True))
def test_full_jitter_stays_between_zero_and_the_backoff(retry: int, share: float) -> None:
    rules = DispatchRules(random=lambda: share)
    delay = rules.backoff(retry)
    assert 0 <= delay <= min(rules.retry_backoff_max, rules.retry_backoff_base * 2**retry)
    assert DispatchRules(retry_jitter=False).backoff(retry) == backoff_delay(retry, 0.5, 5.0)


# --- quiet hours: examples ------------------------------------------------------------------------------------


def at(zone: ZoneInfo, year: int, month: int, day: int, hour: int, minute: int, *, fold: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=zone, fold=fold).astimezone(UTC)


def test_quiet_hours_window_wraps_midnight() -> None:
    assert in_quiet_hours(at(BERLIN, 2026, 6, 1, 21, 0), BERLIN, NIGHT)
    assert in_quiet_hours(at(BERLIN, 2026, 6, 1, 3, 0), BERLIN, NIGHT)
    assert not in_quiet_hours(at(BERLIN, 2026, 6, 1, 8, 0), BERLIN, NIGHT)  # the end is exclusive
    assert not in_quiet_hours(at(BERLIN, 2026, 6, 1, 20, 59), BERLIN, NIGHT)
    lunch = (time(12), time(13))
    assert in_quiet_hours(at(BERLIN, 2026, 6, 1, 12, 30), BERLIN, lunch)
    assert not in_quiet_hours(at(BERLIN, 2026, 6, 1, 13, 0), BERLIN, lunch)
    assert not in_quiet_hours(at(BERLIN, 2026, 6, 1, 12, 0), BERLIN, (time(12), time(12)))  # empty window
    assert not in_quiet_hours(at(BERLIN, 2026, 6, 1, 3, 0), BERLIN, None)


def test_deferred_to_the_end_of_quiet_hours_in_the_customers_zone() -> None:
    late = at(BERLIN, 2026, 6, 1, 23, 15)
    assert next_allowed(late, BERLIN, NIGHT) == at(BERLIN, 2026, 6, 2, 8, 0)  # tomorrow morning
    early = at(BERLIN, 2026, 6, 2, 5, 0)
    assert next_allowed(early, BERLIN, NIGHT) == at(BERLIN, 2026, 6, 2, 8, 0)  # this morning
    noon = at(BERLIN, 2026, 6, 2, 12, 0)
    assert next_allowed(noon, BERLIN, NIGHT) == noon  # outside: no deferral
    # the same instant is 17:15 in New York: outside its quiet hours
    assert next_allowed(late, NY, NIGHT) == late


def test_a_window_end_skipped_by_spring_forward_ends_at_the_jump() -> None:
    # 2026-03-08 in New York: 02:00 EST jumps to 03:00 EDT; a window ending 02:30 ends at the jump
    now = at(NY, 2026, 3, 8, 1, 50)
    assert next_allowed(now, NY, (time(22), time(2, 30))) == at(NY, 2026, 3, 8, 3, 0)
    # an ordinary 08:00 end is 08:00 EDT, an hour less after midnight than the day before
    assert next_allowed(at(NY, 2026, 3, 7, 23, 0), NY, NIGHT) == at(NY, 2026, 3, 8, 8, 0)


def test_a_window_end_that_happens_twice_is_the_next_one_still_ahead() -> None:
    # 2026-11-01 in New York: 01:00-02:00 happens in EDT, then again in EST
    window = (time(0, 30), time(1, 30))
    assert next_allowed(at(NY, 2026, 11, 1, 0, 45), NY, window) == at(NY, 2026, 11, 1, 1, 30, fold=0)
    second_pass = at(NY, 2026, 11, 1, 1, 10, fold=1)
    assert next_allowed(second_pass, NY, window) == at(NY, 2026, 11, 1, 1, 30, fold=1)


def test_a_skipped_calendar_date_still_has_an_end_of_quiet_hours() -> None:
    apia = ZoneInfo("Pacific/Apia")  # 2011-12-29 23:59:59 -10 was followed by 2011-12-31 00:00:00 +14
    now = at(apia, 2011, 12, 29, 22, 0)
    assert next_allowed(now, apia, NIGHT) == at(apia, 2011, 12, 31, 8, 0)


def test_local_date_is_the_customers_calendar_day() -> None:
    instant = datetime(2026, 6, 1, 23, 30, tzinfo=UTC)
    assert local_date(instant, BERLIN).day == 2 and local_date(instant, NY).day == 1


def test_next_allowed_needs_an_aware_instant() -> None:
    with pytest.raises(ValueError):
        next_allowed(datetime(2026, 6, 1, 23, 0), BERLIN, NIGHT)


# --- quiet hours: properties ----------------------------------------------------------------------------------


@cache
def transitions(zone_name: str) -> list[datetime]:
    """The instants ``zone_name``'s UTC offset changed in 2025-2027 (hourly scan, refined to the second)."""
    zone = ZoneInfo(zone_name)
    found = []
    instant = datetime(2025, 1, 1, tzinfo=UTC)
    offset = instant.astimezone(zone).utcoffset()
    while instant < datetime(2028, 1, 1, tzinfo=UTC):
        later = instant + timedelta(hours=1)
        if later.astimezone(zone).utcoffset() != offset:
            low, high = instant, later
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                low, high = (middle, high) if middle.astimezone(zone).utcoffset() == offset else (low, middle)
            found.append(high.replace(microsecond=0))
            offset = later.astimezone(zone).utcoffset()
        instant = later
    return found or [datetime(2026, 3, 29, 1, tzinfo=UTC)]


clock_times = st.one_of(
    st.times().map(lambda t: t.replace(microsecond=0)),
    st.sampled_from([time(h, m) for h in (0, 1, 2, 3, 21, 22, 23) for m in (0, 30)]),  # near DST changes
)
windows = st.one_of(st.none(), st.tuples(clock_times, clock_times))


@st.composite
def instants(draw: st.DrawFn) -> tuple[datetime, ZoneInfo]:
    zone_name = draw(st.sampled_from(ZONES))
    if draw(st.booleans()):  # anywhere in 2000-2040
        naive = draw(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1)))
        return naive.replace(tzinfo=UTC), ZoneInfo(zone_name)
    near = draw(st.sampled_from(transitions(zone_name)))  # within a day of a DST change
    return near + timedelta(seconds=draw(st.integers(min_value=-86_400, max_value=86_400))), ZoneInfo(zone_name)


@settings(max_examples=600, deadline=None)
@given(point=instants(), window=windows)
@example(point=(datetime(2011, 12, 30, 8, 0, tzinfo=UTC), ZoneInfo("Pacific/Apia")), window=NIGHT)
def test_a_deferral_is_never_inside_quiet_hours_never_early_and_never_needless(
    point: tuple[datetime, ZoneInfo], window: tuple[time, time] | None
) -> None:
    now, zone = point
    allowed = next_allowed(now, zone, window)
    assert allowed >= now
    assert not in_quiet_hours(allowed, zone, window)
    if not in_quiet_hours(now, zone, window):
        assert allowed == now
    else:  # and it is the first allowed second: the one before it is still quiet
        assert allowed - now <= timedelta(days=2)
        just_before = allowed - timedelta(seconds=1)
        assert just_before < now or in_quiet_hours(just_before, zone, window)


# --- a campaign's send window ---------------------------------------------------------------------------------


def test_a_send_window_defers_to_its_next_opening_in_the_customers_zone() -> None:
    evening = datetime(2026, 12, 8, 23, 30, tzinfo=UTC)  # 18:30 in New York
    assert next_open(evening, NY, None, "09:00-20:00") == evening  # inside the window: now
    assert next_open(evening, NY, None, "10:00-12:00") == datetime(2026, 12, 9, 15, 0, tzinfo=UTC)  # 10:00 NY
    late = datetime(2026, 12, 9, 2, 0, tzinfo=UTC)  # 21:00 NY, inside the quiet hours 21-08
    assert next_open(late, NY, NIGHT, "07:00-22:00") == datetime(2026, 12, 9, 13, 0, tzinfo=UTC)  # 08:00 NY
    assert next_open(late, NY, NIGHT, "09:30-11:00") == datetime(2026, 12, 9, 14, 30, tzinfo=UTC)  # 09:30 NY
    assert next_open(late, NY, None, "22:00-06:00") == datetime(2026, 12, 9, 3, 0, tzinfo=UTC)  # wraps midnight


def test_a_send_window_that_can_never_open_is_named() -> None:
    assert window_problem(NIGHT, "09:00-20:00") is None and window_problem(None, "22:00-23:00") is None
    problem = window_problem(NIGHT, "22:00-23:00")
    assert problem == "send window 22:00-23:00 lies wholly inside the quiet hours 21:00-08:00"
    assert window_problem(NIGHT, "07:00-08:00") is not None and window_problem(NIGHT, "07:59-08:01") is None
    with pytest.raises(ValueError, match="lies wholly inside"):
        next_open(datetime(2026, 12, 9, 2, 0, tzinfo=UTC), NY, NIGHT, "22:00-23:00")
    with pytest.raises(ValueError, match="starts where it ends"):
        parse_send_window("09:00-09:00")


@settings(max_examples=300, deadline=None)
@given(point=instants(), quiet=windows, opening=clock_times, closing=clock_times)
def test_a_send_window_deferral_is_open_never_early_and_never_needless(
    point: tuple[datetime, ZoneInfo], quiet: tuple[time, time] | None, opening: time, closing: time
) -> None:
    now, zone = point
    window = f"{opening:%H:%M}-{closing:%H:%M}"
    if opening.replace(second=0) == closing.replace(second=0) or window_problem(
        None if quiet is None else (quiet[0].replace(second=0), quiet[1].replace(second=0)), window
    ):
        return
    quiet = None if quiet is None else (quiet[0].replace(second=0), quiet[1].replace(second=0))
    closed = parse_send_window(window)

    def open_at(instant: datetime) -> bool:
        return not in_quiet_hours(instant, zone, quiet) and not in_quiet_hours(instant, zone, closed)

    allowed = next_open(now, zone, quiet, window)
    assert allowed >= now and open_at(allowed)
    if open_at(now):
        assert allowed == now
    else:
        assert allowed - now <= timedelta(days=3)
        just_before = allowed - timedelta(seconds=1)
        assert just_before < now or not open_at(just_before)
