import base64
import json
import uuid
from datetime import UTC, datetime

import pytest

from icrs_shared.errors import Invalid
from icrs_shared.pagination import decode_cursor, decode_keyset, encode_keyset


def cursor_of(values: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def test_a_keyset_cursor_round_trips() -> None:
    at, key = datetime(2026, 3, 14, 9, 30, tzinfo=UTC), uuid.uuid4()
    assert decode_keyset(encode_keyset(at, key), uuid.UUID) == (at, key)
    assert decode_keyset(None, uuid.UUID) is None


@pytest.mark.parametrize(
    "values",
    [
        {"t": "0001-01-01T00:00:00+01:00", "k": "x"},  # no UTC equivalent: was a 500
        {"t": "2026-03-14T09:30:00", "k": "x"},  # no offset
        {"t": "2026-03-14T09:30:00+00:00", "k": "a\x00b"},  # PostgreSQL refuses NUL: a 500
        {"t": "yesterday", "k": "x"},
        {"k": "x"},
        [1, 2],
    ],
)
def test_made_up_cursors_are_invalid(values: object) -> None:
    with pytest.raises(Invalid) as refused:
        decode_keyset(cursor_of(values), str)
    assert refused.value.errors is not None
    assert refused.value.errors[0].field == "query.cursor"


def test_a_cursor_that_is_not_base64_json_is_invalid() -> None:
    for cursor in ("%%%", "bm90IGpzb24", cursor_of("a string")):
        with pytest.raises(Invalid):
            decode_cursor(cursor)
