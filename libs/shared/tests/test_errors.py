import datetime as dt

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from icrs_shared.errors import (
    PROBLEM_RESPONSES,
    Conflict,
    FieldError,
    Invalid,
    install_problem_handlers,
)

PERSONAL = "Amina Hassan"


class Person(BaseModel):
    given_name: str
    date_of_birth: dt.date


def make_app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/people")
    async def create(person: Person) -> dict[str, str]:
        return {"ok": person.given_name}

    @app.get("/conflict")
    async def conflict() -> None:
        raise Conflict("a probable duplicate exists", extra={"candidates": ["c1"]})

    @app.get("/invalid")
    async def invalid() -> None:
        raise Invalid(errors=[FieldError(field="area", message="unknown code", code="unknown")])

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError(f"database said: duplicate key ({PERSONAL})")

    return app


@pytest.fixture
async def client() -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=make_app(), raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://t")


async def test_validation_errors_name_each_field_and_never_echo_input(
    client: httpx.AsyncClient,
) -> None:
    r = await client.post("/people", json={"given_name": PERSONAL, "date_of_birth": "1998-02-30"})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"] == "urn:icrs:problem:validation-error"
    assert body["status"] == 422
    assert [e["field"] for e in body["errors"]] == ["date_of_birth"]
    assert PERSONAL not in r.text
    assert "1998-02-30" not in r.text


async def test_malformed_json_is_a_problem_not_a_crash(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/people", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"


async def test_domain_errors_render_with_their_status_and_extras(client: httpx.AsyncClient) -> None:
    r = await client.get("/conflict")
    assert r.status_code == 409
    assert r.json() == {
        "type": "urn:icrs:problem:conflict",
        "title": "Conflict",
        "status": 409,
        "detail": "a probable duplicate exists",
        "candidates": ["c1"],
    }
    r = await client.get("/invalid")
    assert r.status_code == 422
    assert r.json()["errors"] == [{"field": "area", "message": "unknown code", "code": "unknown"}]


async def test_unknown_route_and_method_are_problems(client: httpx.AsyncClient) -> None:
    r = await client.get("/nowhere")
    assert (r.status_code, r.headers["content-type"]) == (404, "application/problem+json")
    r = await client.delete("/people")
    assert r.status_code == 405
    assert r.json()["status"] == 405


async def test_unexpected_errors_say_nothing_of_their_cause(client: httpx.AsyncClient) -> None:
    r = await client.get("/boom")
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    assert PERSONAL not in r.text
    assert "duplicate key" not in r.text


def test_openapi_documents_problems_as_they_are_served() -> None:
    """Found by schemathesis: errors were documented as `application/json` with the Problem
    schema (never sent) beside an `application/problem+json` without one."""
    app = FastAPI(responses=PROBLEM_RESPONSES)
    install_problem_handlers(app)

    @app.get("/thing", responses={409: {"description": "Taken."}})
    async def thing() -> dict[str, str]:
        return {}

    @app.get("/text", response_class=PlainTextResponse)
    async def text() -> str:
        return "text"

    responses = app.openapi()["paths"]["/thing"]["get"]["responses"]
    assert list(responses["200"]["content"]) == ["application/json"]  # left as it was
    for status in ("404", "409", "422"):
        assert responses[status]["content"] == {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        }
    assert responses["409"]["description"] == "Taken."
    plain = app.openapi()["paths"]["/text"]["get"]["responses"]
    assert list(plain["200"]["content"]) == ["text/plain"]
    assert list(plain["404"]["content"]) == ["application/problem+json"]
    assert app.openapi()["components"]["schemas"]["Problem"]["required"] == [
        "type",
        "title",
        "status",
    ]
