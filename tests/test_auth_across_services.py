"""Tokens of the partners service's authorization server, checked by another service
(intake) exactly as deployed: against the JWKS partners publishes. And an external OpenID
Connect issuer configured instead."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from authlib.deprecate import AuthlibDeprecationWarning
from fastapi import APIRouter, Depends, FastAPI
from joserfc import jwt
from joserfc.jwk import RSAKey

from icrs_intake.app import create_app as create_intake
from icrs_intake.settings import IntakeSettings
from icrs_partners.app import create_app as create_partners
from icrs_partners.credentials import hash_secret, new_client_id, new_secret
from icrs_partners.models import Client, Organization
from icrs_partners.oauth.state import authorization_server
from icrs_partners.settings import PartnersSettings
from icrs_shared.auth import Caller, JWKSCache, require_scopes
from icrs_shared.bus import RabbitBus
from icrs_shared.testing.databases import create_database, drop_database
from icrs_shared.testing.tokens import TestIssuer

with warnings.catch_warnings():
    # authlib's httpx integration would rather have httpx2; httpx is what this project uses.
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client

ISSUER = "http://127.0.0.1:8000"
PROBE = "/v1/cases/_test/whoami"  # no route of intake has this shape


def probe_router() -> APIRouter:
    """A test-only route of intake that needs `cases:read`."""
    router = APIRouter()

    @router.get(PROBE)
    async def probe(caller: Annotated[Caller, Depends(require_scopes("cases:read"))]) -> Any:
        return {"client_id": caller.client_id, "organization_id": caller.organization_id}

    return router


@dataclass
class Platform:
    partners: FastAPI
    partners_http: httpx.AsyncClient
    intake_http: httpx.AsyncClient
    data_dir: Path
    partners_database: str

    async def register(self, *scopes: str, kind: str = "ngo") -> tuple[str, str, uuid.UUID]:
        secret = new_secret()
        org = Organization(name="Test organization", kind=kind, status="active")
        client = Client(
            client_id=new_client_id(),
            organization_id=org.id,
            name="test client",
            secret_hash=hash_secret(secret),
            scopes=list(scopes),
        )
        async with self.partners.state.runtime.db.transaction() as session:
            session.add(org)
            await session.flush()
            session.add(client)
        return client.client_id, secret, org.id

    async def token(self, client_id: str, secret: str, **params: str) -> str:
        response = await self.partners_http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials", **params},
            auth=httpx.BasicAuth(client_id, secret),
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    async def probe(self, token: str) -> httpx.Response:
        return await self.intake_http.get(PROBE, headers={"Authorization": f"Bearer {token}"})

    async def signing_key(self) -> RSAKey:
        return await authorization_server(self.partners.state.runtime).keys.signing_key()


@pytest.fixture
async def intake_database(postgres_server_url: str) -> AsyncIterator[str]:
    url = await create_database(postgres_server_url)
    try:
        yield url
    finally:
        await drop_database(url)


@pytest.fixture
async def platform(
    postgres_url: str, intake_database: str, rabbit_bus: RabbitBus, tmp_path: Path
) -> AsyncIterator[Platform]:
    common: dict[str, Any] = {"data_dir": tmp_path, "public_url": ISSUER}
    partners = create_partners(
        PartnersSettings(database_url=postgres_url, bootstrap_admin=False, **common), rabbit_bus
    )
    intake_settings = IntakeSettings(database_url=intake_database, **common)
    # Intake fetches partners' JWKS over HTTP, as in a deployment; here the HTTP goes
    # straight to the partners app. No refresh throttle: a test rotates within seconds.
    keys_client = httpx.AsyncClient(transport=httpx.ASGITransport(app=partners))
    jwks = JWKSCache(intake_settings.jwks_url, client=keys_client, min_refresh_interval=0)
    intake = create_intake(intake_settings, rabbit_bus, jwks=jwks)
    intake.include_router(probe_router())
    async with (
        partners.router.lifespan_context(partners),
        intake.router.lifespan_context(intake),
        keys_client,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=partners), base_url="http://partners"
        ) as partners_http,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=intake), base_url="http://intake"
        ) as intake_http,
    ):
        yield Platform(partners, partners_http, intake_http, tmp_path, postgres_url)


def claims_of(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return claims


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


async def test_a_partners_token_opens_a_route_of_intake(platform: Platform) -> None:
    client_id, secret, org = await platform.register("cases:read")

    response = await platform.probe(await platform.token(client_id, secret))

    assert response.status_code == 200, response.text
    assert response.json() == {"client_id": client_id, "organization_id": str(org)}


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
async def test_a_token_fetched_with_authlibs_own_client_is_accepted(
    platform: Platform, method: str
) -> None:
    client_id, secret, org = await platform.register("cases:read", "referrals:read")
    async with AsyncOAuth2Client(
        client_id,
        secret,
        token_endpoint_auth_method=method,
        scope="cases:read",
        transport=httpx.ASGITransport(app=platform.partners),
    ) as oauth:
        token = await oauth.fetch_token(f"{ISSUER}/oauth/token", grant_type="client_credentials")

    assert token["token_type"] == "Bearer"
    assert token["scope"] == "cases:read"
    response = await platform.probe(token["access_token"])
    assert response.status_code == 200, response.text
    assert response.json()["organization_id"] == str(org)


async def test_untrustworthy_tokens_are_refused(platform: Platform) -> None:
    client_id, secret, _ = await platform.register("cases:read")
    genuine = await platform.token(client_id, secret)
    claims = claims_of(genuine)
    key = await platform.signing_key()
    header = {"alg": "RS256", "typ": "at+jwt", "kid": key.kid}
    now = int(time.time())

    def signed(**changes: Any) -> str:
        return jwt.encode(header, {**claims, **changes}, key)

    stranger = TestIssuer(issuer="https://other-issuer.example")
    unknown_key = RSAKey.generate_key(2048, parameters={"alg": "RS256", "use": "sig"})
    unknown_key.ensure_kid()  # a thumbprint, as the kids partners publishes
    tokens = {
        "another issuer": stranger.token("cases:read", organization_id=uuid.uuid4()),
        "another issuer, signed with a known key": signed(iss="https://other-issuer.example"),
        "expired": signed(iat=now - 1200, exp=now - 600),
        "unknown key": jwt.encode({**header, "kid": unknown_key.kid}, claims, unknown_key),
        "alg none": b64({**header, "alg": "none"}) + "." + b64(claims) + ".",
        "wrong audience": signed(aud="another-api"),
        "wrong type": jwt.encode({**header, "typ": "JWT"}, claims, key),
        "tampered": genuine.rsplit(".", 2)[0]
        + "."
        + b64({**claims, "scope": "cases:write"})
        + "."
        + genuine.rsplit(".", 1)[1],
    }
    # The same key and claims, re-signed: accepted, so each refusal below is for its one flaw.
    assert (await platform.probe(signed())).status_code == 200
    assert (await platform.probe(genuine)).status_code == 200

    for name, token in tokens.items():
        response = await platform.probe(token)
        assert response.status_code == 401, name
        assert response.headers["www-authenticate"].startswith("Bearer"), name
        assert response.headers["content-type"] == "application/problem+json"
    missing = await platform.intake_http.get(PROBE)
    assert missing.status_code == 401


async def test_a_token_without_the_scope_is_forbidden(platform: Platform) -> None:
    client_id, secret, _ = await platform.register("cases:read", "referrals:read")

    response = await platform.probe(await platform.token(client_id, secret, scope="referrals:read"))

    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


async def test_rotating_the_key_by_hand_keeps_tokens_valid(platform: Platform) -> None:
    client_id, secret, _ = await platform.register("cases:read")
    before = await platform.token(client_id, secret)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ICRS_", "OTEL_"))}
    env.update(
        ICRS_PARTNERS_DATABASE_URL=platform.partners_database,
        ICRS_DATA_DIR=str(platform.data_dir),
    )

    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "icrs.cli", "admin", "rotate-signing-key", "--activate-in", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    kid = json.loads(result.stdout)["kid"]
    await authorization_server(platform.partners.state.runtime).keys.refresh()
    after = await platform.token(client_id, secret)
    assert json.loads(base64.urlsafe_b64decode(after.split(".")[0] + "=="))["kid"] == kid
    assert (await platform.probe(before)).status_code == 200
    assert (await platform.probe(after)).status_code == 200


IDP = "https://idp.example.org/realms/icrs"
IDP_JWKS = f"{IDP}/protocol/openid-connect/certs"


async def test_an_external_issuer_can_be_configured_instead(
    postgres_url: str, intake_database: str, rabbit_bus: RabbitBus, tmp_path: Path
) -> None:
    idp = TestIssuer(issuer=IDP)

    def serve_jwks(request: httpx.Request) -> httpx.Response:
        if str(request.url) == IDP_JWKS:
            return httpx.Response(200, json={"keys": [idp.key.as_dict(private=False)]})
        return httpx.Response(404)

    partners = create_partners(
        PartnersSettings(
            database_url=postgres_url, data_dir=tmp_path, public_url=ISSUER, bootstrap_admin=False
        ),
        rabbit_bus,
    )
    settings = IntakeSettings(
        database_url=intake_database,
        data_dir=tmp_path,
        public_url=ISSUER,
        auth_issuer=IDP,
        auth_jwks_url=IDP_JWKS,
        auth_org_claim="icrs_organization",
    )
    idp_client = httpx.AsyncClient(transport=httpx.MockTransport(serve_jwks))
    intake = create_intake(
        settings, rabbit_bus, jwks=JWKSCache(settings.jwks_url, client=idp_client)
    )
    intake.include_router(probe_router())
    org = str(uuid.uuid4())
    async with (
        partners.router.lifespan_context(partners),
        intake.router.lifespan_context(intake),
        idp_client,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=partners), base_url="http://partners"
        ) as partners_http,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=intake), base_url="http://intake"
        ) as intake_http,
    ):
        built_in = Platform(partners, partners_http, intake_http, tmp_path, postgres_url)
        client_id, secret, _ = await built_in.register("cases:read")
        external = idp.headers("cases:read", client_id="idp-client", icrs_organization=org)

        accepted = await intake_http.get(PROBE, headers=external)
        refused = await built_in.probe(await built_in.token(client_id, secret))

    assert accepted.status_code == 200, accepted.text
    assert accepted.json() == {"client_id": "idp-client", "organization_id": org}
    assert refused.status_code == 401
