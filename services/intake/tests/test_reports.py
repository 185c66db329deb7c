"""The case report: counts by dimension, small cells withheld, the caller's cases only."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from icrs_intake.app import create_app
from icrs_intake.settings import IntakeSettings
from icrs_shared.bus import InProcessBus
from icrs_shared.disclosure import protect
from icrs_shared.errors import PROBLEM_JSON
from icrs_shared.testing.tokens import TestIssuer

if TYPE_CHECKING:
    from conftest import Intake

REPORT = "/v1/reports/cases"

# Twenty cases; each list gives one dimension's value of case 0, 1, 2, ...
TRACKS = ["DDR"] * 12 + ["CVR"] * 6 + ["community"] * 2
CATEGORIES = ["ex_combatant"] * 10 + ["associate"] * 5 + ["dependent"] * 5
SEXES = ["female"] * 14 + ["male"] * 3 + ["other"] * 3
AGES = [30] * 10 + [40] * 8 + [20, 60]
AREAS = ["SO1101"] * 6 + ["SO1102"] * 5 + ["SO2201"] * 5 + ["SO2202"] * 4


def case(i: int, *, track: str, category: str, sex: str, age: int, area: str) -> dict[str, Any]:
    return {
        "person": {
            "given_name": f"Given{i}",
            "family_name": f"Family{i}",
            "sex": sex,
            "estimated_age": age,
        },
        "beneficiary_category": category,
        "programme_track": track,
        "area": area,
        "duplicates_checked": True,
    }


def cases() -> list[dict[str, Any]]:
    rows = zip(TRACKS, CATEGORIES, SEXES, AGES, AREAS, strict=True)
    return [
        case(i, track=t, category=c, sex=s, age=a, area=ar)
        for i, (t, c, s, a, ar) in enumerate(rows)
    ]


def shown(value: str, count: int) -> dict[str, Any]:
    return {"value": value, "count": count, "suppressed": False}


def hidden(value: str) -> dict[str, Any]:
    return {"value": value, "count": None, "suppressed": True}


def reporter(intake: Intake, organization_id: uuid.UUID | None = None) -> dict[str, str]:
    return intake.headers("reports:read", organization_id=organization_id)


async def report(intake: Intake, **params: Any) -> dict[str, Any]:
    r = await intake.client.get(REPORT, params=params, headers=reporter(intake))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


# The suppression rules on their own --------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "withheld"),
    [
        pytest.param({"a": 7, "b": 5}, set(), id="nothing small"),
        pytest.param({"a": 7, "b": 0}, set(), id="zero is not listed"),
        pytest.param({"a": 9, "b": 6, "c": 2}, {"b", "c"}, id="one small: the next too"),
        pytest.param({"a": 9, "b": 6, "c": 6, "d": 2}, {"b", "d"}, id="tie: first value"),
        pytest.param({"a": 9, "b": 3, "c": 2}, {"b", "c"}, id="two small"),
        pytest.param({"a": 9, "b": 1, "c": 1}, {"a", "b", "c"}, id="two ones: the next too"),
        pytest.param({"a": 9, "b": 8, "c": 1, "d": 1}, {"b", "c", "d"}, id="ones: next too"),
        pytest.param({"a": 4}, {"a"}, id="a single small cell"),
        pytest.param({"a": 1, "b": 1, "c": 1}, {"a", "b", "c"}, id="all ones"),
    ],
)
def test_protect(counts: dict[str, int], withheld: set[str]) -> None:
    cells = protect(counts)
    assert [c.value for c in cells] == sorted(v for v, n in counts.items() if n > 0)
    assert {c.value for c in cells if c.suppressed} == withheld
    for c in cells:
        assert c.count == (None if c.suppressed else counts[c.value])


def test_protect_never_leaves_a_withheld_cell_recoverable() -> None:
    # Whatever the counts, the withheld cells of a dimension are none, or two or more
    # whose sum (the total minus the shown cells) could be made up in more than one way.
    for a in range(6):
        for b in range(6):
            for c in range(8):
                counts = {"a": a, "b": b, "c": c, "d": 12}
                withheld = [counts[x.value] for x in protect(counts) if x.suppressed]
                assert len(withheld) != 1
                assert not withheld or sum(withheld) > len(withheld)


# Through the API -----------------------------------------------------------------------


async def test_counts_with_small_cells_withheld(intake: Intake) -> None:
    for body in cases():
        await intake.register(body)
    # Closed cases are counted.
    first = (await intake.client.get("/v1/cases", headers=intake.caseworker)).json()["items"][0]
    r = await intake.client.post(f"/v1/cases/{first['id']}/close", headers=intake.caseworker)
    assert r.status_code == 200

    body = await report(intake)
    assert body["total"] == 20
    assert body["total_suppressed"] is False
    assert body["suppressed_below"] == 5
    assert body["area_level"] == 4
    by = body["by"]
    # community (2) is small; CVR, the next smallest, goes with it.
    assert by["programme_track"] == [hidden("CVR"), shown("DDR", 12), hidden("community")]
    assert by["beneficiary_category"] == [
        shown("associate", 5),
        shown("dependent", 5),
        shown("ex_combatant", 10),
    ]
    # Two small cells (3 and 3): their sum, 6, does not tell either.
    assert by["sex"] == [shown("female", 14), hidden("male"), hidden("other")]
    # 18-24 and 50-64 hold one case each: their sum would tell both, so 35-49 goes too.
    assert by["age_band"] == [
        hidden("18-24"),
        shown("25-34", 10),
        hidden("35-49"),
        hidden("50-64"),
    ]
    assert by["area"] == [shown("SO11", 11), shown("SO22", 9)]

    by_district = (await report(intake, area_level=6))["by"]["area"]
    # SO2202 (4) is small; SO1102 and SO2201 tie at 5, the first by value goes with it.
    assert by_district == [
        shown("SO1101", 6),
        hidden("SO1102"),
        shown("SO2201", 5),
        hidden("SO2202"),
    ]
    assert (await report(intake, area_level=2))["by"]["area"] == [shown("SO", 20)]


async def test_filters(intake: Intake) -> None:
    for body in cases():
        await intake.register(body)
    ddr = await report(intake, programme_track="DDR")
    assert ddr["total"] == 12
    assert ddr["by"]["programme_track"] == [shown("DDR", 12)]
    # Ten ex-combatants and two associates: the two are withheld, and the ten with them.
    assert ddr["by"]["beneficiary_category"] == [hidden("associate"), hidden("ex_combatant")]
    assert ddr["by"]["sex"] == [shown("female", 12)]

    today = datetime.now(UTC).date()
    assert (await report(intake, since=today.isoformat()))["total"] == 20
    assert (await report(intake, until=today.isoformat()))["total"] == 20
    assert (await report(intake, since=today.isoformat(), until=today.isoformat()))["total"] == 20
    empty = await report(intake, until=(today - timedelta(days=1)).isoformat())
    assert empty["total"] == 0
    assert empty["total_suppressed"] is False
    assert all(cells == [] for cells in empty["by"].values())
    assert (await report(intake, since=(today + timedelta(days=1)).isoformat()))["total"] == 0
    # The last day there is: no overflow past it.
    assert (await report(intake, since="0001-01-01", until="9999-12-31"))["total"] == 20


async def test_a_small_total_is_withheld_with_every_cell(intake: Intake) -> None:
    for body in cases()[:3]:
        await intake.register(body)
    body = await report(intake)
    assert body["total"] is None
    assert body["total_suppressed"] is True
    assert body["by"]["programme_track"] == [hidden("DDR")]
    assert all(cell["suppressed"] for cells in body["by"].values() for cell in cells)


async def test_only_the_callers_live_cases_count(intake: Intake) -> None:
    for body in cases()[:5]:
        await intake.register(body)
    # Another organization's cases.
    other = uuid.uuid4()
    other_writer = intake.headers("cases:write", organization_id=other)
    for i in range(6):
        body = case(100 + i, track="DDRR", category="dependent", sex="male", age=50, area="SO33")
        await intake.register(body, headers=other_writer)
    # Erased cases.
    for i in range(5):
        body = case(200 + i, track="CVR", category="associate", sex="male", age=50, area="SO44")
        created = await intake.register(body)
        r = await intake.client.delete(f"/v1/cases/{created['id']}", headers=intake.caseworker)
        assert r.status_code == 204

    body = await report(intake)
    assert body["total"] == 5
    assert body["by"]["programme_track"] == [shown("DDR", 5)]
    assert body["by"]["area"] == [shown("SO11", 5)]

    r = await intake.client.get(REPORT, headers=reporter(intake, other))
    assert r.status_code == 200
    assert r.json()["total"] == 6
    assert r.json()["by"]["programme_track"] == [shown("DDRR", 6)]


async def test_scope_and_token(intake: Intake) -> None:
    r = await intake.client.get(REPORT)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = await intake.client.get(REPORT, headers=intake.headers("cases:read", "cases:write"))
    assert r.status_code == 403
    assert r.headers["content-type"] == PROBLEM_JSON
    r = await intake.client.get(REPORT, headers=intake.issuer.headers("reports:read"))
    assert r.status_code == 403


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"area_level": "0"}, "query.area_level"),
        ({"area_level": "1"}, "query.area_level"),
        ({"area_level": "17"}, "query.area_level"),
        ({"area_level": "-4"}, "query.area_level"),
        ({"area_level": "4.5"}, "query.area_level"),
        ({"area_level": "four"}, "query.area_level"),
        ({"area_level": ""}, "query.area_level"),
        ({"area_level": "9" * 40}, "query.area_level"),
        ({"programme_track": "ddr"}, "query.programme_track"),
        ({"since": "2023-02-30"}, "query.since"),
        ({"until": "yesterday"}, "query.until"),
        ({"since": "2026-01-02", "until": "2026-01-01"}, "query.until"),
        # Found by schemathesis: numbers were taken for days since 1970.
        ({"since": "0.0"}, "query.since"),
        ({"until": "-5e-132"}, "query.until"),
    ],
)
async def test_bad_parameters(intake: Intake, params: dict[str, str], field: str) -> None:
    r = await intake.client.get(REPORT, params=params, headers=reporter(intake))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM_JSON
    assert [e["field"] for e in r.json()["errors"]] == [field]


@pytest.fixture
async def embedded(tmp_path: Path, issuer: TestIssuer) -> AsyncIterator[httpx.AsyncClient]:
    """The service on its embedded default: a SQLite file and the in-process bus."""
    settings = IntakeSettings(data_dir=tmp_path, database_url=None, public_url=issuer.issuer)
    bus = InProcessBus()
    await bus.start()
    app = create_app(settings, bus, jwks=issuer.jwks())
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
                yield client
    finally:
        await bus.close()


async def test_the_report_on_sqlite(embedded: httpx.AsyncClient, issuer: TestIssuer) -> None:
    org = uuid.uuid4()
    writer = issuer.headers("cases:write", organization_id=org, client_id="writer")
    for body in cases():
        r = await embedded.post("/v1/cases", json=body, headers=writer)
        assert r.status_code == 201, r.text
    headers = issuer.headers("reports:read", organization_id=org, client_id="reporter")
    r = await embedded.get(REPORT, params={"area_level": 6}, headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == 20
    assert body["by"]["programme_track"] == [hidden("CVR"), shown("DDR", 12), hidden("community")]
    assert body["by"]["area"] == [
        shown("SO1101", 6),
        hidden("SO1102"),
        shown("SO2201", 5),
        hidden("SO2202"),
    ]
    today = datetime.now(UTC).date().isoformat()
    r = await embedded.get(REPORT, params={"since": today, "until": today}, headers=headers)
    assert r.json()["total"] == 20
