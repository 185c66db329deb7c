"""The token endpoint: the client credentials grant, its failures, its rate limits."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from sqlalchemy import update

from icrs_partners.app import create_app
from icrs_partners.credentials import hash_secret, new_client_id, new_secret
from icrs_partners.models import Client, Organization
from icrs_partners.oauth import service as token_service
from icrs_partners.settings import PartnersSettings
from icrs_shared.auth import Caller, JWKSCache, TokenValidator, require_scopes
from icrs_shared.bus import RabbitBus

ISSUER = "http://127.0.0.1:8000"


@dataclass
class Registered:
    client_id: str
    secret: str
    organization_id: uuid.UUID


async def register(
    app: FastAPI,
    *,
    kind: str = "ngo",
    status: str = "active",
    scopes: tuple[str, ...] = ("cases:read", "partners:read"),
    revoked: bool = False,
) -> Registered:
    """An organization and a client, written directly (the organizations API is not
    what these tests are about)."""
    secret = new_secret()
    org = Organization(name="Test organization", kind=kind, status=status)
    client = Client(
        client_id=new_client_id(),
        organization_id=org.id,
        name="test client",
        secret_hash=hash_secret(secret),
        scopes=list(scopes),
        revoked_at=datetime.now(UTC) if revoked else None,
    )
    async with app.state.runtime.db.transaction() as session:
        session.add(org)
        await session.flush()
        session.add(client)
    return Registered(client.client_id, secret, org.id)


async def request_token(
    http: httpx.AsyncClient,
    client_id: str,
    secret: str,
    *,
    method: str = "basic",
    **params: str,
) -> httpx.Response:
    data = {"grant_type": "client_credentials", **params}
    if method == "basic":
        return await http.post("/oauth/token", data=data, auth=httpx.BasicAuth(client_id, secret))
    data.update(client_id=client_id, client_secret=secret)
    return await http.post("/oauth/token", data=data)


async def served_validator(http: httpx.AsyncClient) -> TokenValidator:
    jwks = (await http.get("/.well-known/jwks.json")).json()
    return TokenValidator(jwks=JWKSCache.static(jwks), issuer=ISSUER, audience="icrs")


def segment(token: str, index: int) -> dict[str, Any]:
    part = token.split(".")[index]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


@pytest.fixture
async def server(
    postgres_url: str, rabbit_bus: RabbitBus, tmp_path: Path
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """Partners as deployed: it checks tokens of its own issuer (no `jwks` given), and
    tight rate limits so that a test can reach them."""
    settings = PartnersSettings(
        database_url=postgres_url,
        data_dir=tmp_path,
        public_url=ISSUER,
        bootstrap_admin=False,
        token_burst=3,
        token_rate_per_minute=0.01,
        token_failure_burst=8,
        token_failure_rate_per_minute=0.01,
    )
    app = create_app(settings, rabbit_bus)
    whoami = APIRouter()

    @whoami.get("/test/whoami")
    async def who(caller: Annotated[Caller, Depends(require_scopes("partners:read"))]) -> Any:
        return {"client_id": caller.client_id, "organization_id": caller.organization_id}

    app.include_router(whoami)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://partners") as http:
            yield app, http


@pytest.mark.parametrize("method", ["basic", "post"])
async def test_a_client_gets_a_valid_rfc9068_token(partners: Any, method: str) -> None:
    client = await register(partners.app, scopes=("cases:read", "cases:write", "partners:read"))

    response = await request_token(partners.client, client.client_id, client.secret, method=method)

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "cases:read cases:write partners:read"
    assert 0 < body["expires_in"] <= 900
    caller = await (await served_validator(partners.client)).validate(body["access_token"])
    assert caller.client_id == client.client_id
    assert caller.organization_id == str(client.organization_id)
    assert caller.scopes == {"cases:read", "cases:write", "partners:read"}
    header, claims = segment(body["access_token"], 0), segment(body["access_token"], 1)
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "RS256"
    assert header["kid"] in {
        k["kid"] for k in (await partners.client.get("/.well-known/jwks.json")).json()["keys"]
    }
    assert claims["iss"] == ISSUER
    assert claims["aud"] == "icrs"
    assert claims["sub"] == claims["client_id"] == client.client_id
    assert claims["org"] == str(client.organization_id)
    assert claims["jti"]
    assert claims["exp"] - claims["iat"] == body["expires_in"] <= 900


async def test_a_requested_scope_narrows_the_token(partners: Any) -> None:
    client = await register(partners.app, scopes=("cases:read", "partners:read"))

    response = await request_token(
        partners.client, client.client_id, client.secret, scope="partners:read"
    )

    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "partners:read"
    assert segment(response.json()["access_token"], 1)["scope"] == "partners:read"


async def test_client_failures_all_answer_the_same(partners: Any, monkeypatch: Any) -> None:
    good = await register(partners.app)
    revoked = await register(partners.app, revoked=True)
    suspended = await register(partners.app)
    async with partners.app.state.runtime.db.transaction() as session:
        await session.execute(
            update(Organization)
            .where(Organization.id == suspended.organization_id)  # type: ignore[arg-type]
            .values(status="suspended")
        )
    pending = await register(partners.app, status="pending")
    checked: list[str] = []
    verify = token_service.verify_secret

    def spy(secret: str, stored: str) -> bool:
        checked.append(stored)
        return verify(secret, stored)

    monkeypatch.setattr(token_service, "verify_secret", spy)
    attempts = {
        "unknown client": (new_client_id(), good.secret),
        "wrong secret": (good.client_id, new_secret()),
        "revoked client": (revoked.client_id, revoked.secret),
        "suspended organization": (suspended.client_id, suspended.secret),
        "pending organization": (pending.client_id, pending.secret),
    }
    for method in ("basic", "post"):
        answers = {}
        for name, (client_id, secret) in attempts.items():
            checked.clear()
            response = await request_token(partners.client, client_id, secret, method=method)
            answers[name] = (response.status_code, response.json(), _headers(response))
            # The same scrypt work whether or not the client exists.
            assert len(checked) == 1, name
        first = next(iter(answers.values()))
        assert all(answer == first for answer in answers.values()), answers
        status, body, headers = first
        assert status == 401
        assert body["error"] == "invalid_client"
        assert headers["www-authenticate"].startswith("Basic")
        assert "exist" not in body["error_description"]
    # And the good client still gets its token.
    assert (await request_token(partners.client, good.client_id, good.secret)).status_code == 200


async def test_a_client_id_with_control_characters_is_an_unknown_client(partners: Any) -> None:
    """Found by schemathesis: PostgreSQL refuses NUL in text, and this answered 500."""
    good = await register(partners.app)
    for method in ("basic", "post"):
        for client_id in (good.client_id + "\x00", "\x00", good.client_id + "\n"):
            response = await request_token(partners.client, client_id, good.secret, method=method)
            assert response.status_code == 401, (method, client_id, response.text)
            assert response.json()["error"] == "invalid_client"


def _headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k != "content-length"}


async def test_scopes_beyond_the_client_or_its_kind_are_refused(partners: Any) -> None:
    client = await register(partners.app, kind="service_provider", scopes=("partners:read",))
    # A client row holding a scope its kind may not (say, the kind's scopes were narrowed).
    stale = await register(
        partners.app, kind="service_provider", scopes=("partners:read", "cases:read")
    )

    beyond_client = await request_token(
        partners.client, client.client_id, client.secret, scope="partners:read services:manage"
    )
    beyond_kind = await request_token(
        partners.client, stale.client_id, stale.secret, scope="cases:read"
    )
    unknown = await request_token(
        partners.client, client.client_id, client.secret, scope="everything"
    )
    default = await request_token(partners.client, stale.client_id, stale.secret)

    for response in (beyond_client, beyond_kind, unknown):
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_scope"
    assert default.status_code == 200
    assert default.json()["scope"] == "partners:read"


async def test_other_grants_are_unsupported(partners: Any) -> None:
    client = await register(partners.app)
    for grant in ("password", "authorization_code", "refresh_token", "urn:x"):
        response = await partners.client.post(
            "/oauth/token",
            data={"grant_type": grant},
            auth=httpx.BasicAuth(client.client_id, client.secret),
        )
        assert response.status_code == 400
        assert response.json()["error"] == "unsupported_grant_type"


async def test_malformed_requests_are_invalid(partners: Any) -> None:
    client = await register(partners.app)
    auth = httpx.BasicAuth(client.client_id, client.secret)
    grant = "grant_type=client_credentials"
    form = {"content-type": "application/x-www-form-urlencoded"}
    cases = {
        "no grant type": dict(content="scope=cases%3Aread", headers=form, auth=auth),
        "json body": dict(json={"grant_type": "client_credentials"}, auth=auth),
        "repeated parameter": dict(content=grant + "&" + grant, headers=form, auth=auth),
        "two ways to authenticate": dict(
            content=f"{grant}&client_id={client.client_id}&client_secret={client.secret}",
            headers=form,
            auth=auth,
        ),
        "oversized": dict(content=grant + "&x=" + "a" * 10_000, headers=form, auth=auth),
        "not utf-8": dict(content=b"grant_type=client_credentials&x=%ff", headers=form, auth=auth),
    }
    for name, kwargs in cases.items():
        response = await partners.client.post("/oauth/token", **kwargs)
        assert response.status_code == 400, name
        assert response.json()["error"] == "invalid_request", name
        assert response.headers["content-type"] == "application/json"

    unreadable_basic = await partners.client.post(
        "/oauth/token", content=grant, headers={**form, "authorization": "Basic %%%"}
    )
    no_credentials = await partners.client.post("/oauth/token", content=grant, headers=form)
    assert unreadable_basic.status_code == no_credentials.status_code == 401
    assert unreadable_basic.json()["error"] == no_credentials.json()["error"] == "invalid_client"


async def test_a_flooding_client_is_slowed_and_others_are_not(
    server: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, http = server
    flooding, other = await register(app), await register(app)

    statuses = [
        (await request_token(http, flooding.client_id, flooding.secret)).status_code
        for _ in range(3)
    ]
    refused = await request_token(http, flooding.client_id, flooding.secret)

    assert statuses == [200, 200, 200]
    assert refused.status_code == 429
    assert refused.json()["error"] == "slow_down"
    assert int(refused.headers["retry-after"]) >= 1
    assert (await request_token(http, other.client_id, other.secret)).status_code == 200


async def test_failures_slow_down_their_address_only(
    server: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, _ = server
    client = await register(app)

    def from_address(host: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(host, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://partners")

    async with from_address("192.0.2.1") as attacker, from_address("192.0.2.2") as honest:
        for _ in range(8):
            wrong = await request_token(attacker, client.client_id, new_secret())
            assert wrong.status_code == 401
        blocked = await request_token(attacker, client.client_id, new_secret())
        allowed = await request_token(honest, client.client_id, client.secret)

    assert blocked.status_code == 429
    assert "retry-after" in blocked.headers
    # Guessing at a client's secret does not use up that client's own allowance.
    assert allowed.status_code == 200


async def test_partners_checks_its_own_tokens_from_its_database(
    server: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, http = server
    client = await register(app, scopes=("partners:read", "cases:read"))
    token = (await request_token(http, client.client_id, client.secret)).json()["access_token"]
    narrow = (
        await request_token(http, client.client_id, client.secret, scope="cases:read")
    ).json()["access_token"]

    ok = await http.get("/test/whoami", headers={"Authorization": f"Bearer {token}"})
    forbidden = await http.get("/test/whoami", headers={"Authorization": f"Bearer {narrow}"})

    assert ok.status_code == 200, ok.text
    assert ok.json() == {
        "client_id": client.client_id,
        "organization_id": str(client.organization_id),
    }
    assert forbidden.status_code == 403


async def test_metadata_describes_the_server(partners: Any) -> None:
    from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

    response = await partners.client.get("/.well-known/oauth-authorization-server")

    assert response.status_code == 200
    doc = response.json()
    assert doc["issuer"] == ISSUER
    assert doc["token_endpoint"] == f"{ISSUER}/oauth/token"
    assert doc["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"
    assert doc["grant_types_supported"] == ["client_credentials"]
    assert set(doc["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
    }
    assert "cases:read" in doc["scopes_supported"]
    assert doc["response_types_supported"] == []
    metadata = AuthorizationServerMetadata(doc)
    # Everything RFC 8414 asks of it, except that a server without an authorization
    # endpoint has no response type to list.
    for name in ("issuer", "token_endpoint", "jwks_uri", "scopes_supported"):
        getattr(metadata, f"validate_{name}")()
    metadata.validate_grant_types_supported()
    metadata.validate_token_endpoint_auth_methods_supported()
