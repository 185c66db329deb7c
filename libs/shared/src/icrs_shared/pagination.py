"""Cursor pagination: lists answer `{"items": [...], "next_cursor": ...}` (contract §10).

A cursor is opaque to clients: the sort key of the last item, base64url-encoded JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from .errors import FieldError, Invalid

T = TypeVar("T")
K = TypeVar("K")

Limit = Annotated[int, Query(ge=1, le=200, description="Items per page.")]
Cursor = Annotated[
    str | None, Query(max_length=512, description="`next_cursor` of the previous page.")
]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def encode_cursor(values: dict[str, Any]) -> str:
    raw = json.dumps(values, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    """The values a cursor holds; a 422 naming `cursor` when it is not one of ours."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        values = None
    # No cursor of ours holds a NUL, and PostgreSQL would refuse one in a query's text.
    if not isinstance(values, dict) or b"\\u0000" in raw:
        raise bad_cursor()
    return values


def bad_cursor() -> Invalid:
    """The 422 for a cursor that is not one of ours (or holds what no page of ours wrote)."""
    return Invalid(
        "the cursor is not valid",
        errors=[FieldError(field="query.cursor", message="not a valid cursor", code="cursor")],
    )


def encode_keyset(at: datetime, key: object) -> str:
    """The cursor after the item sorted at (`at`, `key`): a time and a tie-breaking key."""
    return encode_cursor({"t": at.isoformat(), "k": str(key)})


def decode_keyset(cursor: str | None, key: Callable[[str], K]) -> tuple[datetime, K] | None:
    """The (time, key) an `encode_keyset` cursor holds, the key made by `key`; a 422
    naming `cursor` when it holds anything else."""
    values = decode_cursor(cursor)
    if values is None:
        return None
    try:
        at = datetime.fromisoformat(str(values["t"]))
        found = key(str(values["k"]))
        # A time at the calendar's edge with no UTC equivalent would fail in the query.
        utc = at.astimezone(UTC) if at.tzinfo is not None else None
    except (KeyError, TypeError, ValueError, OverflowError):
        raise bad_cursor() from None
    if utc is None:
        raise bad_cursor()
    return utc, found
