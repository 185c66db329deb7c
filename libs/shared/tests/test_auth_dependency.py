from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from joserfc import jwt
from joserfc.jwk import RSAKey

from icrs_shared.auth import Caller, JWKSCache, TokenValidator, require_scopes
from icrs_shared.errors import PROBLEM_JSON, install_problem_handlers

ISSUER = "https://issuer.test"
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})


def token(scope: str = "cases:read", **changes: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": "icrs",
        "sub": "client-a",
        "client_id": "client-a",
        "org": "org-1",
        "scope": scope,
        "jti": "t-1",
        "iat": now,
        "exp": now + 300,
        **changes,
    }
    return jwt.encode({"alg": "RS256", "typ": "at+jwt", "kid": "k1"}, claims, KEY)


def make_app(*, with_validator: bool = True) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    if with_validator:
        jwks = JWKSCache.static({"keys": [KEY.as_dict(private=False)]})
        app.state.token_validator = TokenValidator(jwks=jwks, issuer=ISSUER, audience="icrs")

    @app.get("/cases")
    async def list_cases(
        caller: Annotated[Caller, Depends(require_scopes("cases:read"))],
    ) -> dict[str, Any]:
        return {
            "client_id": caller.client_id,
            "organization_id": caller.organization_id,
            "scopes": sorted(caller.scopes),
            "subject": caller.subject,
            "token_id": caller.token_id,
        }

    @app.post("/cases")
    async def register_case(
        caller: Annotated[Caller, Depends(require_scopes("cases:write", "cases:read"))],
    ) -> dict[str, str]:
        return {"client_id": caller.client_id}

    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(make_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://icrs.test") as client:
        yield client


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


async def test_valid_token_reaches_the_route_as_a_caller(client: httpx.AsyncClient) -> None:
    response = await client.get("/cases", headers=bearer(token("cases:read referrals:read")))
    assert response.status_code == 200
    assert response.json() == {
        "client_id": "client-a",
        "organization_id": "org-1",
        "scopes": ["cases:read", "referrals:read"],
        "subject": "client-a",
        "token_id": "t-1",
    }


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic Y2xpZW50OnNlY3JldA=="}, {"Authorization": "Bearer "}],
)
async def test_missing_token_is_a_401_with_a_bare_challenge(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get("/cases", headers=headers)
    body = assert_problem(response, 401)
    assert response.headers["www-authenticate"] == 'Bearer realm="icrs"'
    assert body["detail"] == "bearer token required"


async def test_invalid_token_is_a_401_invalid_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/cases", headers=bearer("not-a-token"))
    body = assert_problem(response, 401)
    assert response.headers["www-authenticate"] == (
        'Bearer realm="icrs", error="invalid_token", error_description="token malformed"'
    )
    assert body["detail"] == "token malformed"


async def test_expired_token_says_so(client: httpx.AsyncClient) -> None:
    expired = token(exp=int(time.time()) - 3600)
    response = await client.get("/cases", headers=bearer(expired))
    body = assert_problem(response, 401)
    assert 'error_description="token expired"' in response.headers["www-authenticate"]
    assert expired not in response.text
    assert body["detail"] == "token expired"


async def test_token_lacking_the_scope_is_a_403_insufficient_scope(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/cases", headers=bearer(token("referrals:read")))
    body = assert_problem(response, 403)
    assert response.headers["www-authenticate"] == (
        'Bearer realm="icrs", error="insufficient_scope", scope="cases:read"'
    )
    assert "cases:read" in body["detail"]


async def test_every_required_scope_is_needed(client: httpx.AsyncClient) -> None:
    response = await client.post("/cases", headers=bearer(token("cases:read")))
    assert_problem(response, 403)
    assert 'scope="cases:read cases:write"' in response.headers["www-authenticate"]
    response = await client.post("/cases", headers=bearer(token("cases:read cases:write")))
    assert response.status_code == 200


def test_openapi_documents_the_bearer_requirement() -> None:
    document = make_app().openapi()
    scheme = document["components"]["securitySchemes"]["bearer"]
    assert scheme["type"] == "http"
    assert scheme["scheme"] == "bearer"
    assert scheme["bearerFormat"] == "JWT"
    assert document["paths"]["/cases"]["get"]["security"] == [{"bearer": ["cases:read"]}]
    assert document["paths"]["/cases"]["post"]["security"] == [
        {"bearer": ["cases:read", "cases:write"]}
    ]


async def test_an_app_without_a_validator_fails_closed() -> None:
    transport = httpx.ASGITransport(make_app(with_validator=False), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://icrs.test") as client:
        response = await client.get("/cases", headers=bearer(token()))
    assert_problem(response, 500)
