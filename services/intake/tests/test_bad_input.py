"""Bad input to the case routes: a 422 problem naming the field, never a 500, and never
the bad value echoed back (it may be someone's personal data)."""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from icrs_shared.errors import PROBLEM_JSON

if TYPE_CHECKING:
    from conftest import Intake

BODY: dict[str, Any] = {
    "person": {
        "given_name": "Amina",
        "family_name": "Warsame",
        "aliases": [],
        "sex": "female",
        "date_of_birth": "1998-03-14",
        "languages": ["so"],
        "contact": {"phone": "+252 61 1111111"},
        "documents": [{"type": "ddr_id", "number": "DDR-0001"}],
    },
    "beneficiary_category": "ex_combatant",
    "programme_track": "DDR",
    "area": "SO1101",
    "duplicates_checked": True,
}
_DROP = object()


def case(path: str = "", value: Any = _DROP, **changes: Any) -> dict[str, Any]:
    """The valid body with one value at a dotted `path` set, or dropped when no value."""
    body = copy.deepcopy(BODY)
    body.update(changes)
    if path:
        *parents, last = path.split(".")
        target: Any = body
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if value is _DROP:
            del target[last]
        else:
            target[last] = value
    return body


def raw(body: dict[str, Any], **replace: str) -> bytes:
    """The body as JSON text, with placeholders replaced by raw JSON (`"@name"` -> text)."""
    text = json.dumps(body)
    for name, json_text in replace.items():
        text = text.replace(f'"@{name}"', json_text)
    return text.encode()


def deep(depth: int) -> bytes:
    return b'{"person": ' + b"[" * depth + b"]" * depth + b"}"


@dataclass(frozen=True)
class Bad:
    """A bad request: its body (JSON-encoded unless bytes), the field its 422 names, and
    what must not come back in the answer."""

    body: Any
    field: str
    secret: str | None = None
    content_type: str = "application/json"

    def request(self, headers: dict[str, str]) -> dict[str, Any]:
        """The keyword arguments of the request, with `headers` added to its own."""
        content = self.body if isinstance(self.body, bytes) else json.dumps(self.body).encode()
        return {"content": content, "headers": {**headers, "Content-Type": self.content_type}}


def table(rows: dict[str, Bad]) -> list[Any]:
    return [pytest.param(bad, id=name) for name, bad in rows.items()]


LONG = "Q" * 10_000
REGISTRATION = {
    # Wrong types.
    "name is a number": Bad(case("person.given_name", 918273645), "person.given_name", "918273645"),
    "name is a list": Bad(case("person.family_name", ["Xq1"]), "person.family_name"),
    "aliases is a string": Bad(case("person.aliases", "Zarqa Vix"), "person.aliases", "Zarqa Vix"),
    "person is a string": Bad(case(person="Zarqa Vix"), "person", "Zarqa Vix"),
    "documents is an object": Bad(case("person.documents", {"a": 1}), "person.documents"),
    "checked is a string": Bad(case(duplicates_checked="yes"), "duplicates_checked"),
    "age is a word": Bad(
        case("person.estimated_age", "thirtyish", date_of_birth=None),
        "person.estimated_age",
        "thirtyish",
    ),
    "age is a fraction": Bad(case("person.estimated_age", 30.5), "person.estimated_age"),
    "area is a number": Bad(case(area=1101), "area"),
    # Impossible dates.
    "30 February": Bad(case("person.date_of_birth", "2023-02-30"), "person.date_of_birth"),
    "year 0": Bad(case("person.date_of_birth", "0000-01-01"), "person.date_of_birth"),
    "born in the future": Bad(case("person.date_of_birth", "2999-01-01"), "person.date_of_birth"),
    "born before 1900": Bad(case("person.date_of_birth", "1850-05-05"), "person.date_of_birth"),
    "not a date": Bad(
        case("person.date_of_birth", "14 March 98"), "person.date_of_birth", "14 March 98"
    ),
    "month 13": Bad(case(demobilization_date="2026-13-01"), "demobilization_date"),
    "demobilized in the future": Bad(case(demobilization_date="2999-01-01"), "demobilization_date"),
    # Unknown codes.
    "sex": Bad(case("person.sex", "zzqsex"), "person.sex", "zzqsex"),
    "beneficiary category": Bad(
        case(beneficiary_category="zzq_category"), "beneficiary_category", "zzq_category"
    ),
    "programme track in lower case": Bad(case(programme_track="ddr"), "programme_track"),
    "programme track": Bad(case(programme_track="ZZQTRACK"), "programme_track", "ZZQTRACK"),
    "document type with spaces": Bad(
        case("person.documents.0.type", "ddr zzq id"), "person.documents.0.type", "ddr zzq id"
    ),
    "empty document number": Bad(
        case("person.documents.0.number", " "), "person.documents.0.number"
    ),
    "language": Bad(case("person.languages", ["zzqlang"]), "person.languages.0", "zzqlang"),
    "vulnerability": Bad(case(vulnerabilities=["Zzq Code!"]), "vulnerabilities.0", "Zzq Code!"),
    "external id": Bad(case(external_id="has zzq spaces"), "external_id", "has zzq spaces"),
    "email": Bad(
        case("person.contact", {"email": "zzq at example"}),
        "person.contact.email",
        "zzq at example",
    ),
    "phone": Bad(case("person.contact", {"phone": "0612 999"}), "person.contact.phone", "0612 999"),
    # Oversized.
    "10,000-character name": Bad(case("person.given_name", LONG), "person.given_name", LONG[:200]),
    "1,000 aliases": Bad(
        case("person.aliases", [f"Zqa{i}" for i in range(1000)]), "person.aliases"
    ),
    "11 documents": Bad(
        case("person.documents", [{"type": "ddr_id", "number": f"Z{i}"} for i in range(11)]),
        "person.documents",
    ),
    # Odd unicode.
    "lone surrogate": Bad(
        raw(case("person.given_name", "@name"), name='"Zq\\ud800x"'), "person.given_name"
    ),
    "NUL": Bad(case("person.given_name", "Zq\u0000rq"), "person.given_name", "Zq\u0000rq"),
    "bidi override": Bad(
        case("person.family_name", "Zq\u202erqv"), "person.family_name", "Zq\u202erqv"
    ),
    "zero-width space": Bad(
        case("person.aliases", ["Zq\u200brqv"]), "person.aliases.0", "Zq\u200brqv"
    ),
    "line separator": Bad(case("person.given_name", "Zq\u2028rq"), "person.given_name"),
    "private use": Bad(case("person.given_name", "Zq\ue000rq"), "person.given_name"),
    # Not a case.
    "not JSON": Bad(b'{"person": {"given_name": "Zqrvx"', "body", "Zqrvx"),
    "JSON array": Bad([BODY], "body"),
    "JSON string": Bad("Zqrvx Amina", "body", "Zqrvx Amina"),
    "JSON number": Bad(12, "body"),
    "JSON null": Bad(None, "body"),
    "empty body": Bad(b"", "body"),
    "not JSON content": Bad(json.dumps(BODY).encode(), "body", content_type="text/plain"),
    "nested 30 deep": Bad(deep(30), "person"),
    # Deeper than ICRS_MAX_JSON_DEPTH: refused before it is parsed.
    "nested 200 deep": Bad(deep(200), "body"),
    "nested 100,000 deep": Bad(deep(100_000), "body"),
    # Fields.
    "extra field": Bad(case(zzq_extra=1), "zzq_extra"),
    "extra person field": Bad(case("person.zzq_tribe", "Zqrvx"), "person.zzq_tribe", "Zqrvx"),
    "no person": Bad(case("person"), "person"),
    "no given name": Bad(case("person.given_name"), "person.given_name"),
    "no area": Bad(case("area"), "area"),
    "neither birth date nor age": Bad(case("person.date_of_birth"), "person"),
    # Numbers out of range.
    "negative age": Bad(
        case("person.estimated_age", -7777, date_of_birth=None), "person.estimated_age", "7777"
    ),
    "huge age": Bad(
        case("person.estimated_age", 10**30, date_of_birth=None),
        "person.estimated_age",
        str(10**30),
    ),
    "infinite age": Bad(
        raw(case("person.estimated_age", "@age"), age="1e999"), "person.estimated_age"
    ),
    # Areas.
    "area too short": Bad(case(area="S"), "area"),
    "area with a dash": Bad(case(area="SO-11ZQ"), "area", "SO-11ZQ"),
    "area of digits": Bad(case(area="123456"), "area", "123456"),
    "area too long": Bad(case(area="SO" + "1" * 20), "area"),
}

UPDATE = {
    "name is a number": Bad(
        {"person": {"given_name": 918273645}}, "person.given_name", "918273645"
    ),
    "30 February": Bad({"person": {"date_of_birth": "2023-02-30"}}, "person.date_of_birth"),
    "born in the future": Bad({"person": {"date_of_birth": "2999-01-01"}}, "person.date_of_birth"),
    "sex": Bad({"person": {"sex": "zzqsex"}}, "person.sex", "zzqsex"),
    "programme track": Bad({"programme_track": "ZZQTRACK"}, "programme_track", "ZZQTRACK"),
    "1,000 aliases": Bad({"person": {"aliases": ["Zqa"] * 1000}}, "person.aliases"),
    "bidi override": Bad({"person": {"family_name": "Zq\u202erqv"}}, "person.family_name"),
    "status": Bad({"status": "closed"}, "status"),
    "person is a list": Bad({"person": []}, "person"),
    "JSON array": Bad([], "body"),
    "not JSON": Bad(b"{'area': 'SO11'}", "body"),
    "empty body": Bad(b"", "body"),
    "area": Bad({"area": "S"}, "area"),
    "negative age": Bad({"person": {"estimated_age": -7777}}, "person.estimated_age", "7777"),
    # Each of the person's fields may be null in a patch; the merged person may not.
    "null given name": Bad({"person": {"given_name": None}}, "person.given_name"),
    "null date of birth, no age": Bad({"person": {"date_of_birth": None}}, "person"),
    "null aliases": Bad({"person": {"aliases": None}}, "person.aliases"),
    "null contact": Bad({"person": {"contact": None}}, "person.contact"),
}


def cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


# Query parameters of GET /v1/cases (`body` holds them).
SEARCH = {
    "limit 0": Bad({"limit": "0"}, "query.limit"),
    "limit -1": Bad({"limit": "-1"}, "query.limit"),
    "limit 201": Bad({"limit": "201"}, "query.limit"),
    "limit huge": Bad({"limit": str(10**30)}, "query.limit"),
    "limit a word": Bad({"limit": "zzqmany"}, "query.limit", "zzqmany"),
    "cursor not base64": Bad({"cursor": "!!zzq!!"}, "query.cursor", "zzq"),
    "cursor not JSON": Bad({"cursor": base64.urlsafe_b64encode(b"{zzq").decode()}, "query.cursor"),
    "cursor a list": Bad({"cursor": cursor(["zzq"])}, "query.cursor", "zzq"),
    "cursor too long": Bad({"cursor": "A" * 600}, "query.cursor"),
    "cursor without keys": Bad({"cursor": cursor({})}, "query.cursor"),
    "cursor with a bad time": Bad(
        {"cursor": cursor({"t": "zzq", "id": "zzq"})}, "query.cursor", "zzq"
    ),
    "cursor with a bad id": Bad(
        {"cursor": cursor({"t": "2026-01-01T00:00:00+00:00", "id": "zzq"})},
        "query.cursor",
        "zzq",
    ),
    "cursor of numbers": Bad({"cursor": cursor({"t": 5, "id": 7})}, "query.cursor"),
    "empty name": Bad({"name": ""}, "query.name"),
    "name too long": Bad({"name": "Zq" * 101}, "query.name", "Zq" * 101),
    "case number too long": Bad({"case_number": "ICRS-" + "9" * 40}, "query.case_number"),
    "external id too long": Bad({"external_id": "X" * 65}, "query.external_id", "X" * 65),
}


def assert_invalid(r: httpx.Response, field: str, secret: str | None = None) -> None:
    assert r.status_code == 422, r.text[:500]
    assert r.headers["content-type"] == PROBLEM_JSON
    problem = r.json()
    assert problem["status"] == 422
    assert problem["type"] == "urn:icrs:problem:validation-error"
    assert field in [e["field"] for e in problem["errors"]], problem["errors"]
    if secret is not None:
        assert secret not in r.text
        assert json.dumps(secret)[1:-1] not in r.text


@pytest.mark.parametrize("bad", table(REGISTRATION))
async def test_registration(intake: Intake, bad: Bad) -> None:
    r = await intake.client.post("/v1/cases", **bad.request(intake.caseworker))
    assert_invalid(r, bad.field, bad.secret)


async def test_the_body_the_rows_start_from_is_valid(intake: Intake) -> None:
    r = await intake.client.post("/v1/cases", json=case(), headers=intake.caseworker)
    assert r.status_code == 201, r.text


async def test_a_field_name_that_is_no_text(intake: Intake) -> None:
    # An extra field is named in the answer: a lone surrogate in its name must not
    # break the answer's encoding.
    body = raw(case(**{"@key": 1}), key='"Zq\\ud800"')
    headers = {**intake.caseworker, "Content-Type": "application/json"}
    r = await intake.client.post("/v1/cases", content=body, headers=headers)
    assert r.status_code == 422, r.text[:500]
    assert r.headers["content-type"] == PROBLEM_JSON


async def registered(intake: Intake) -> tuple[str, dict[str, str]]:
    created = await intake.register(case())
    headers = {**intake.caseworker, "If-Match": f'"{created["id"]}.1"'}
    return f"/v1/cases/{created['id']}", headers


@pytest.mark.parametrize("bad", table(UPDATE))
async def test_update(intake: Intake, bad: Bad) -> None:
    path, headers = await registered(intake)
    r = await intake.client.patch(path, **bad.request(headers))
    assert_invalid(r, bad.field, bad.secret)
    r = await intake.client.get(path, headers=intake.caseworker)
    assert r.json()["version"] == 1


async def test_update_of_no_case(intake: Intake) -> None:
    headers = {**intake.caseworker, "If-Match": '"x.1"'}
    r = await intake.client.patch("/v1/cases/zzq-not-an-id", json={}, headers=headers)
    assert_invalid(r, "path.case_id", "zzq-not-an-id")


@pytest.mark.parametrize("bad", table(SEARCH))
async def test_search(intake: Intake, bad: Bad) -> None:
    r = await intake.client.get("/v1/cases", params=bad.body, headers=intake.caseworker)
    assert_invalid(r, bad.field, bad.secret)


# Whatever is posted --------------------------------------------------------------------

PROPERTY = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# Text with every code point, lone surrogates included (JSON can carry them as escapes).
TEXT = st.text(st.characters(exclude_categories=()), max_size=30)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
    | st.sampled_from(["", "DDR", "female", "ex_combatant", "SO1101", "1998-03-14"])
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
PERSON_LIKE = st.dictionaries(st.sampled_from(sorted(BODY["person"])), JSON, max_size=8)
CASE_LIKE = st.dictionaries(
    st.sampled_from(sorted(BODY)), JSON | PERSON_LIKE, max_size=6
) | st.fixed_dictionaries(
    {"person": PERSON_LIKE}, optional={k: JSON for k in BODY if k != "person"}
)


def assert_problem_4xx(r: httpx.Response) -> None:
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:500])
    assert r.headers["content-type"] == PROBLEM_JSON


@PROPERTY
@given(body=JSON | CASE_LIKE)
async def test_any_json_gets_a_problem(intake: Intake, body: Any) -> None:
    content = json.dumps(body).encode()
    headers = {**intake.caseworker, "Content-Type": "application/json"}
    assert_problem_4xx(await intake.client.post("/v1/cases", content=content, headers=headers))


@PROPERTY
@given(content=st.binary(max_size=200) | TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")))
async def test_any_bytes_get_a_problem(intake: Intake, content: bytes) -> None:
    headers = {**intake.caseworker, "Content-Type": "application/json"}
    assert_problem_4xx(await intake.client.post("/v1/cases", content=content, headers=headers))
