"""The contract's event-time rule (darkpool.contracts.parse_event_time): one rule, its fast path equal to it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from darkpool.contracts import datetime_to_ms, format_event_time, parse_event_time

# 1970-01-01 .. 9999-12-31, the instants the contract's text form can write
EPOCH_MS = st.integers(min_value=0, max_value=253_402_300_799_999)


@given(EPOCH_MS)
def test_the_contract_form_round_trips(ms: int) -> None:
    text = format_event_time(ms)
    assert parse_event_time(text) == ms
    assert parse_event_time(text) == ms  # the second read comes from the per-second cache


@given(EPOCH_MS)
def test_the_fast_path_equals_the_general_rule(ms: int) -> None:
    text = format_event_time(ms)
    assert parse_event_time(text) == parse_event_time(text[:-1] + "+00:00") == parse_event_time(text[:-1])


def test_offsets_spaces_and_naive_times() -> None:
    assert parse_event_time("2026-11-25T09:30:00.123-05:00") == parse_event_time("2026-11-25T14:30:00.123Z")
    assert parse_event_time("2026-11-25 14:30:00.123Z") == parse_event_time("2026-11-25T14:30:00.123Z")
    assert parse_event_time("2026-11-25T14:30:00") == datetime_to_ms(datetime(2026, 11, 25, 14, 30, tzinfo=UTC))


def test_sub_millisecond_times_round_half_up() -> None:
    assert parse_event_time("2026-11-25T14:30:00.0004Z") == parse_event_time("2026-11-25T14:30:00.000Z")
    assert parse_event_time("2026-11-25T14:30:00.0005Z") == parse_event_time("2026-11-25T14:30:00.001Z")


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-01T00:00:00.000Z", "2026-02-30T14:30:00.000Z",
                                  "2026-11-25T14:30:00.12xZ", "2026-11-25T25:00:00.000Z"])
def test_what_is_not_a_time_raises_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_event_time(text)


def test_a_bad_second_is_not_cached() -> None:
    with pytest.raises(ValueError):
        parse_event_time("2026-02-30T14:30:00.000Z")
    with pytest.raises(ValueError):
        parse_event_time("2026-02-30T14:30:00.001Z")


@given(EPOCH_MS)
def test_the_cached_format_equals_the_plain_formula(ms: int) -> None:
    plain = datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    assert format_event_time(ms) == format_event_time(ms) == plain
