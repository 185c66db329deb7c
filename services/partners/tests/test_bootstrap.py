"""The platform administrator's client: made once, stored hashed, rotated on request."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from icrs_partners.bootstrap import PLATFORM_ORGANIZATION_ID, ensure_admin, write_admin_file
from icrs_partners.credentials import hash_secret, verify_secret
from icrs_partners.models import Client, Organization, outbox_table
from icrs_partners.scopes import ALL_SCOPES, KIND_SCOPES, Kind, beyond_kind
from icrs_shared.db import Database
from icrs_shared.events import Envelope, platform_events
from icrs_shared.migrate import upgrade
from icrs_shared.outbox import Outbox


@pytest.fixture
async def db(postgres_url: str) -> AsyncIterator[Database]:
    database = Database(postgres_url)
    await upgrade(database, "icrs_partners")
    try:
        yield database
    finally:
        await database.dispose()


def outbox() -> Outbox:
    return Outbox(outbox_table, service="partners", registry=platform_events())


async def test_admin_is_made_once_with_a_hashed_secret(db: Database) -> None:
    async with db.transaction() as s:
        issued = await ensure_admin(s, outbox())
    assert issued is not None
    assert set(issued.scopes) == ALL_SCOPES
    async with db.transaction() as s:
        assert await ensure_admin(s, outbox()) is None
    async with db.sessions() as s:
        org = await s.get(Organization, PLATFORM_ORGANIZATION_ID)
        clients = (await s.execute(select(Client))).scalars().all()
        events = (await s.execute(select(outbox_table.c.body))).scalars().all()
    assert org is not None
    assert (org.kind, org.status) == ("platform", "active")
    [client] = clients
    assert client.client_id == issued.client_id
    assert issued.client_secret not in client.secret_hash
    assert verify_secret(issued.client_secret, client.secret_hash)
    types = [Envelope.from_json(b).type for b in events]
    assert types == ["icrs.organization.registered", "icrs.client.issued"]
    assert all(issued.client_secret.encode() not in b for b in events)


async def test_rotation_revokes_the_old_client(db: Database) -> None:
    async with db.transaction() as s:
        first = await ensure_admin(s, outbox())
    async with db.transaction() as s:
        second = await ensure_admin(s, outbox(), rotate=True)
    assert first is not None
    assert second is not None
    assert first.client_id != second.client_id
    async with db.sessions() as s:
        rows = {c.client_id: c.revoked_at for c in (await s.execute(select(Client))).scalars()}
    assert rows[first.client_id] is not None
    assert rows[second.client_id] is None


def test_secret_hashes_verify_only_the_right_secret() -> None:
    stored = hash_secret("s3cret")
    assert verify_secret("s3cret", stored)
    assert not verify_secret("s3cret!", stored)
    assert not verify_secret("s3cret", "plain$text")
    assert hash_secret("s3cret") != stored  # salted


def test_admin_file_is_private(tmp_path: pytest.TempPathFactory) -> None:
    from pathlib import Path

    from icrs_partners.bootstrap import IssuedClient

    path = write_admin_file(Path(str(tmp_path)), IssuedClient("id1", "secret1", []))
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert json.loads(path.read_text()) == {"client_id": "id1", "client_secret": "secret1"}


def test_kinds_never_exceed_the_scope_list() -> None:
    assert all(scopes <= ALL_SCOPES for scopes in KIND_SCOPES.values())
    assert beyond_kind(Kind.SERVICE_PROVIDER, {"referrals:respond", "cases:read"}) == {"cases:read"}
    assert "partners:admin" not in KIND_SCOPES[Kind.NGO]
    assert KIND_SCOPES[Kind.AUDITOR] == {"audit:read", "reports:read"}
