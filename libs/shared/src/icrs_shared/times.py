"""Dates and times that clients send: ISO 8601 text, as the OpenAPI document says.

Pydantic also takes a number for them (seconds since 1970), which the document does not
allow and no caller means. And a time with an offset at the edge of the calendar
(`0001-01-01T00:00:00+01:00`) has no UTC equivalent: it would fail later, wherever it is
compared or stored, as a 500. Both are refused here, as invalid input.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BeforeValidator


def _not_a_number(value: object) -> object:
    if isinstance(value, int | float) or (isinstance(value, str) and _is_number(value)):
        raise ValueError("must be ISO 8601 text such as 2026-03-14 or 2026-03-14T09:30:00Z")
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def in_utc(value: datetime) -> datetime:
    """The same time in UTC; a time without an offset is taken to be in UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("must fall within the years 1 to 9999 in UTC") from None


#: A calendar day, `2026-03-14`.
Day = Annotated[date, BeforeValidator(_not_a_number)]
#: A time, given in UTC when it has no offset, and given back in UTC.
Instant = Annotated[datetime, BeforeValidator(_not_a_number), AfterValidator(in_utc)]
#: A time that must name its offset, given back in UTC.
AwareInstant = Annotated[AwareDatetime, BeforeValidator(_not_a_number), AfterValidator(in_utc)]
