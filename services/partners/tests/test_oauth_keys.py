"""Token-signing keys: encrypted at rest, rotated by hand or by age, published until the
tokens they signed have expired."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from icrs_partners.app import create_app
from icrs_partners.credentials import hash_secret, new_client_id, new_secret
from icrs_partners.models import Client, Organization, SigningKey
from icrs_partners.oauth import keys as signing
from icrs_partners.oauth.kek import KEK_FILE, KeyEncryptionError, load_kek, unseal
from icrs_partners.oauth.keystore import CACHE_SECONDS, PUBLISH_AHEAD, KeyStore
from icrs_partners.oauth.state import authorization_server
from icrs_partners.settings import PartnersSettings
from icrs_shared.auth import InvalidToken, JWKSCache, TokenValidator
from icrs_shared.bus import RabbitBus
from icrs_shared.db import Database
from icrs_shared.migrate import upgrade

ISSUER = "http://127.0.0.1:8000"


class Clock:
    """Wall-clock time that a test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


class Partners:
    def __init__(self, settings: PartnersSettings, bus: RabbitBus) -> None:
        self.settings = settings
        self.app = create_app(settings, bus)
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://partners"
        )

    @property
    def keys(self) -> KeyStore:
        return authorization_server(self.app.state.runtime).keys

    async def client(self) -> tuple[str, str]:
        secret = new_secret()
        org = Organization(name="Test organization", kind="ngo", status="active")
        client = Client(
            client_id=new_client_id(),
            organization_id=org.id,
            name="test client",
            secret_hash=hash_secret(secret),
            scopes=["cases:read"],
        )
        async with self.app.state.runtime.db.transaction() as session:
            session.add(org)
            await session.flush()
            session.add(client)
        return client.client_id, secret

    async def token(self, client: tuple[str, str]) -> str:
        response = await self.http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=httpx.BasicAuth(*client),
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    async def kids(self) -> set[str]:
        return {k["kid"] for k in (await self.http.get("/.well-known/jwks.json")).json()["keys"]}

    async def validate(self, token: str) -> None:
        """Checked as another service would: against the JWKS served now."""
        jwks = (await self.http.get("/.well-known/jwks.json")).json()
        validator = TokenValidator(jwks=JWKSCache.static(jwks), issuer=ISSUER, audience="icrs")
        await validator.validate(token)


def kid_of(token: str) -> str:
    header = token.split(".")[0]
    kid: str = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]
    return kid


@pytest.fixture
def settings(postgres_url: str, tmp_path: Path) -> PartnersSettings:
    return PartnersSettings(
        database_url=postgres_url, data_dir=tmp_path, public_url=ISSUER, bootstrap_admin=False
    )


@pytest.fixture
async def partners(settings: PartnersSettings, rabbit_bus: RabbitBus) -> AsyncIterator[Partners]:
    service = Partners(settings, rabbit_bus)
    async with service.app.router.lifespan_context(service.app), service.http:
        yield service


async def test_old_tokens_stay_valid_until_they_expire(partners: Partners) -> None:
    clock = Clock()
    partners.keys.clock = clock
    client = await partners.client()
    before = await partners.token(client)
    old_kid = kid_of(before)

    await partners.keys.rotate()
    after = await partners.token(client)

    assert kid_of(after) != old_kid
    assert await partners.kids() == {old_kid, kid_of(after)}
    await partners.validate(before)
    await partners.validate(after)
    # Published as long as a token it signed may live (900 s at most), with the leeway.
    assert partners.keys.retention >= timedelta(seconds=900 + partners.settings.auth_leeway)
    clock.advance(partners.keys.retention - timedelta(seconds=1))
    assert old_kid in await partners.kids()
    clock.advance(timedelta(seconds=2))
    assert await partners.kids() == {kid_of(after)}
    with pytest.raises(InvalidToken, match="signing key unknown"):
        await partners.validate(before)
    await partners.validate(after)


async def test_a_key_can_be_published_before_it_signs(partners: Partners) -> None:
    clock = Clock()
    partners.keys.clock = clock
    client = await partners.client()
    old_kid = kid_of(await partners.token(client))

    new = await partners.keys.rotate(activate_in=PUBLISH_AHEAD)

    assert await partners.kids() == {old_kid, new.kid}
    assert kid_of(await partners.token(client)) == old_kid
    clock.advance(PUBLISH_AHEAD)
    assert kid_of(await partners.token(client)) == new.kid


async def test_an_old_key_is_replaced_on_its_own(
    settings: PartnersSettings, rabbit_bus: RabbitBus
) -> None:
    service = Partners(settings.model_copy(update={"signing_key_rotation_days": 1}), rabbit_bus)
    async with service.app.router.lifespan_context(service.app), service.http:
        clock = Clock()
        service.keys.clock = clock
        client = await service.client()
        first = kid_of(await service.token(client))

        clock.advance(timedelta(days=1) - PUBLISH_AHEAD - timedelta(seconds=1))
        assert await service.kids() == {first}
        clock.advance(timedelta(seconds=CACHE_SECONDS))
        kids = await service.kids()
        [successor] = kids - {first}
        assert kid_of(await service.token(client)) == first  # published ahead of use
        clock.advance(PUBLISH_AHEAD)
        assert kid_of(await service.token(client)) == successor


async def test_private_keys_are_stored_encrypted(
    partners: Partners, settings: PartnersSettings
) -> None:
    kek_file = settings.data_dir / KEK_FILE
    assert oct(kek_file.stat().st_mode & 0o777) == "0o600"
    async with partners.app.state.runtime.db.sessions() as session:
        [row] = (await session.execute(select(SigningKey))).scalars().all()
    assert row.alg == "RS256"
    assert not {"d", "p", "q", "dp", "dq", "qi"} & row.public_jwk.keys()
    assert b'"d"' not in row.private_jwk_encrypted
    private = json.loads(unseal(load_kek(settings), row.kid, row.private_jwk_encrypted))
    assert private["n"] == row.public_jwk["n"]
    assert "d" in private
    # The ciphertext is bound to its key id.
    with pytest.raises(KeyEncryptionError):
        unseal(load_kek(settings), "another-kid", row.private_jwk_encrypted)


async def test_a_different_key_encryption_key_stops_the_start(
    settings: PartnersSettings, rabbit_bus: RabbitBus
) -> None:
    first = Partners(settings, rabbit_bus)
    async with first.app.router.lifespan_context(first.app), first.http:
        pass
    other = base64.b64encode(secrets.token_bytes(32)).decode()
    wrong = Partners(
        settings.model_copy(update={"signing_key_encryption_key": SecretStr(other)}), rabbit_bus
    )

    with pytest.raises(KeyEncryptionError):
        async with wrong.app.router.lifespan_context(wrong.app):
            pass


async def test_a_configured_key_encryption_key_needs_no_file(
    settings: PartnersSettings, rabbit_bus: RabbitBus
) -> None:
    kek = base64.b64encode(secrets.token_bytes(32)).decode()
    configured = Partners(
        settings.model_copy(update={"signing_key_encryption_key": SecretStr(kek)}), rabbit_bus
    )
    async with configured.app.router.lifespan_context(configured.app), configured.http:
        client = await configured.client()
        await configured.validate(await configured.token(client))
    assert not (settings.data_dir / KEK_FILE).exists()


def test_a_malformed_key_encryption_key_is_refused(settings: PartnersSettings) -> None:
    short = base64.b64encode(b"too short").decode()
    with pytest.raises(KeyEncryptionError, match="32 bytes"):
        load_kek(settings.model_copy(update={"signing_key_encryption_key": SecretStr(short)}))


async def test_replicas_starting_together_make_one_key(postgres_url: str) -> None:
    databases = [Database(postgres_url) for _ in range(3)]
    await upgrade(databases[0], "icrs_partners")
    kek = secrets.token_bytes(32)
    clock = Clock()
    stores = [
        KeyStore(db, kek=kek, rotate_after=timedelta(days=1), leeway=30, clock=clock)
        for db in databases
    ]
    try:
        await asyncio.gather(*(s.refresh() for s in stores))
        async with databases[0].sessions() as session:
            assert len((await session.execute(select(SigningKey))).scalars().all()) == 1
        # And when the key comes due, one successor.
        clock.advance(timedelta(days=1))
        await asyncio.gather(*(s.refresh() for s in stores))
        async with databases[0].sessions() as session:
            rows = (await session.execute(select(SigningKey))).scalars().all()
        assert len(rows) == 2
        assert len({(await s.signing_key()).kid for s in stores}) == 1
    finally:
        for db in databases:
            await db.dispose()


def _key(kid: str, activated: datetime, retired: datetime | None = None) -> SigningKey:
    return SigningKey(
        kid=kid,
        alg="RS256",
        public_jwk={},
        private_jwk_encrypted=b"",
        created_at=activated,
        activated_at=activated,
        retired_at=retired,
    )


def test_which_key_signs_and_which_are_published() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    hour = timedelta(hours=1)
    old = _key("old", t0, retired=t0 + hour)
    new = _key("new", t0 + hour)
    keys = [old, new]

    assert signing.active_key(keys, t0) is old
    assert signing.active_key(keys, t0 + hour) is new
    assert signing.active_key(keys, t0 - hour) is None
    retention = timedelta(minutes=20)
    assert signing.published_keys(keys, t0, retention) == keys  # new: published ahead
    assert (
        signing.published_keys(keys, t0 + hour + retention - timedelta(seconds=1), retention)
        == keys
    )
    assert signing.published_keys(keys, t0 + hour + retention, retention) == [new]


def test_when_a_new_key_is_needed() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    day, ahead = timedelta(days=1), timedelta(minutes=5)
    current = _key("a", t0)

    def due(keys: list[SigningKey], now: datetime) -> Any:
        return signing.next_activation(keys, now, rotate_after=day, publish_ahead=ahead)

    assert due([], t0) == t0
    assert due([current], t0 + day - ahead - timedelta(seconds=1)) is None
    assert due([current], t0 + day - ahead) == t0 + day
    # A successor is already scheduled: nothing more to do.
    scheduled = [_key("a", t0, retired=t0 + day), _key("b", t0 + day)]
    assert due(scheduled, t0 + day - ahead) is None
    # Timestamps read back from SQLite come without a zone.
    naive = _key("n", t0.replace(tzinfo=None))
    assert signing.active_key([naive], t0) is naive


async def test_known_keys_are_served_while_the_database_is_away(postgres_url: str) -> None:
    db = Database(postgres_url)
    await upgrade(db, "icrs_partners")
    clock = Clock()
    store = KeyStore(
        db, kek=secrets.token_bytes(32), rotate_after=timedelta(days=1), leeway=30, clock=clock
    )
    unreachable = Database("postgresql+asyncpg://postgres@127.0.0.1:1/nowhere")
    try:
        published = await store.jwks()
        kid = (await store.signing_key()).kid
        store.db = unreachable
        clock.advance(timedelta(seconds=CACHE_SECONDS + 1))

        assert await store.jwks() == published
        assert (await store.signing_key()).kid == kid
    finally:
        await db.dispose()
        await unreachable.dispose()
