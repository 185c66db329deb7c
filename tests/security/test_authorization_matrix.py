"""The authorization matrix over every route of every service, generated from their
OpenAPI documents, so that a new route cannot be forgotten: without a token, with an
expired, forged, unsigned, foreign or misaddressed one, every protected route answers
401; with a valid token lacking its scope, 403 (or 404 where any organization may ask
but this one has nothing); never data. Only the routes listed in PUBLIC answer anyone."""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import RSAKey

from icrs.services import SERVICES
from icrs_shared.bus import RabbitBus
from icrs_shared.testing.databases import create_database, drop_database
from icrs_shared.testing.tokens import TestIssuer

#: Routes anyone may call: health, the API description, and the authorization server's own.
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("POST", "/oauth/token"),
    ("GET", "/.well-known/jwks.json"),
    ("GET", "/.well-known/oauth-authorization-server"),
}
_METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture
async def services(
    postgres_server_url: str, rabbit_bus: RabbitBus, tmp_path: Path
) -> AsyncIterator[tuple[TestIssuer, dict[str, httpx.AsyncClient], dict[str, FastAPI]]]:
    issuer = TestIssuer()
    async with AsyncExitStack() as stack:
        clients: dict[str, httpx.AsyncClient] = {}
        apps: dict[str, FastAPI] = {}
        for name, entry in SERVICES.items():
            url = await create_database(postgres_server_url)
            stack.push_async_callback(drop_database, url)
            settings = entry.make_settings(
                database_url=url, data_dir=tmp_path / name, public_url=issuer.issuer
            )
            app = entry.create_app(settings, rabbit_bus, jwks=issuer.jwks())
            await stack.enter_async_context(app.router.lifespan_context(app))
            clients[name] = await stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}")
            )
            apps[name] = app
        yield issuer, clients, apps


def routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every operation in the app's OpenAPI document."""
    found = []
    for path, item in app.openapi()["paths"].items():
        for method in _METHODS:
            if method in item:
                found.append((method.upper(), path))
    return found


def concrete(path: str) -> str:
    """The path with every parameter filled in (ids of nothing that exists)."""
    return re.sub(
        r"\{[^}]+\}", lambda m: "1" if m.group(0) == "{index}" else str(uuid.uuid4()), path
    )


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def untrustworthy(issuer: TestIssuer) -> dict[str, str]:
    """Tokens that must all be refused with 401, by name."""
    org = uuid.uuid4()
    valid = issuer.token("audit:read", "cases:read", organization_id=org)
    head, payload, signature = valid.split(".")
    forged = f"{head}.{payload}.{signature[:-4]}{'AAAA' if signature[-4:] != 'AAAA' else 'BBBB'}"
    now = int(time.time())
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    unsigned = f"{b64({'alg': 'none', 'typ': 'at+jwt'})}.{b64({**claims, 'iat': now})}."
    stranger = RSAKey.generate_key(2048, parameters={"kid": issuer.key.kid})
    foreign = jwt.encode({"alg": "RS256", "typ": "at+jwt", "kid": issuer.key.kid}, claims, stranger)
    return {
        "expired": issuer.token("audit:read", organization_id=org, lifetime=-600),
        "forged signature": forged,
        "alg none": unsigned,
        "another key": foreign,
        "other issuer": issuer.token("audit:read", organization_id=org, iss="http://evil.example"),
        "wrong audience": issuer.token("audit:read", organization_id=org, aud="another-api"),
        "not a token": "not.a.token",
    }


async def test_every_route_of_every_service(
    services: tuple[TestIssuer, dict[str, httpx.AsyncClient], dict[str, FastAPI]],
) -> None:
    issuer, clients, apps = services
    bad_tokens = untrustworthy(issuer)
    no_scope = {"Authorization": f"Bearer {issuer.token(organization_id=uuid.uuid4())}"}
    checked = 0
    problems: list[str] = []
    for name, app in apps.items():
        http = clients[name]
        for method, template in routes(app):
            if (method, template) in PUBLIC:
                continue
            path = concrete(template)

            async def call(headers: dict[str, str]) -> httpx.Response:
                return await http.request(method, path, headers=headers, json={})  # noqa: B023

            anonymous = await call({})
            if (
                anonymous.status_code != 401
                or "bearer" not in anonymous.headers.get("www-authenticate", "").lower()
            ):
                problems.append(
                    f"{name} {method} {template}: anonymous got {anonymous.status_code}"
                )
                continue
            for what, token in bad_tokens.items():
                r = await call({"Authorization": f"Bearer {token}"})
                if r.status_code != 401:
                    problems.append(f"{name} {method} {template}: {what} got {r.status_code}")
            r = await call(no_scope)
            if r.status_code not in (403, 404):
                problems.append(f"{name} {method} {template}: no scope got {r.status_code}")
            elif r.headers["content-type"] != "application/problem+json":
                problems.append(f"{name} {method} {template}: no scope answered without a problem")
            checked += 1
    assert problems == []
    assert checked >= 40  # every service's routes were reached


async def test_the_public_routes_are_the_expected_ones(
    services: tuple[TestIssuer, dict[str, httpx.AsyncClient], dict[str, FastAPI]],
) -> None:
    _, clients, apps = services
    open_routes = set()
    for name, app in apps.items():
        for method, template in routes(app):
            r = await clients[name].request(method, concrete(template), json={})
            if r.status_code != 401:
                open_routes.add((method, template))
    assert open_routes == PUBLIC
