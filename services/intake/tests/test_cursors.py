"""Cursors a client made up: a 422 naming the cursor, never a 500 (found by schemathesis:
a time at the calendar's edge, a NUL, a row number no integer column holds)."""

from __future__ import annotations

import base64
import json
import uuid
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Intake


def cursor_of(values: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


KEYSETS = [
    {"t": "0001-01-01T00:00:00+01:00", "k": str(uuid.uuid4())},
    {"t": "2026-01-01T00:00:00", "k": str(uuid.uuid4())},
    {"t": "2026-01-01T00:00:00+00:00", "k": "\x00"},
]


@pytest.mark.parametrize("values", KEYSETS)
@pytest.mark.parametrize("path", ["/v1/cases", "/v1/imports"])
async def test_made_up_keyset_cursors(intake: Intake, path: str, values: object) -> None:
    headers = intake.headers("cases:read", "cases:import")
    r = await intake.client.get(path, params={"cursor": cursor_of(values)}, headers=headers)
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["query.cursor"]


@pytest.mark.parametrize(
    "values",
    [{"row": 2**40, "field": "x"}, {"row": 1e300, "field": "x"}, {"row": 1, "field": "\x00"}],
)
async def test_made_up_rejection_cursors(intake: Intake, values: object) -> None:
    headers = intake.headers("cases:import")
    started = await intake.client.post(
        "/v1/imports",
        content=b"external_id,given_name\n",
        headers={**headers, "Content-Type": "text/csv"},
    )
    assert started.status_code == 202, started.text
    path = f"/v1/imports/{started.json()['id']}"
    r = await intake.client.get(path, params={"cursor": cursor_of(values)}, headers=headers)
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["query.cursor"]
