from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from pydantic import TypeAdapter, ValidationError

from icrs_shared.times import AwareInstant, Day, Instant

DAY = TypeAdapter(Day)
INSTANT = TypeAdapter(Instant)
AWARE = TypeAdapter(AwareInstant)


def test_iso_text_is_read_and_times_come_back_in_utc() -> None:
    assert DAY.validate_python("2026-03-14") == date(2026, 3, 14)
    east = INSTANT.validate_python("2026-03-14T09:30:00+03:00")
    assert east == datetime(2026, 3, 14, 6, 30, tzinfo=UTC)
    assert east.utcoffset() == timedelta(0)
    assert INSTANT.validate_python("2026-03-14T09:30:00") == datetime(
        2026, 3, 14, 9, 30, tzinfo=UTC
    )
    plus_one = datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    assert AWARE.validate_python(plus_one) == datetime(2025, 12, 31, 23, tzinfo=UTC)


@pytest.mark.parametrize("value", [0, 1.5, "0", "0.0", "-5e-132", " 906 ", True])
@pytest.mark.parametrize("adapter", [DAY, INSTANT, AWARE])
def test_numbers_are_not_dates_or_times(adapter: TypeAdapter[object], value: object) -> None:
    with pytest.raises(ValidationError, match="ISO 8601"):
        adapter.validate_python(value)


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_time_with_no_utc_equivalent_is_invalid(value: str) -> None:
    for adapter in (INSTANT, AWARE):
        with pytest.raises(ValidationError, match="years 1 to 9999"):
            adapter.validate_python(value)


def test_an_aware_instant_needs_its_offset() -> None:
    with pytest.raises(ValidationError):
        AWARE.validate_python("2026-03-14T09:30:00")
