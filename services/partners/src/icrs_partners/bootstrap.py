"""The platform organization and its administrator's client (contract §2)."""

from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icrs_shared.events.catalog import ClientEvent, OrganizationEvent
from icrs_shared.outbox import Outbox
from icrs_shared.runtime import Runtime

from .credentials import hash_secret, new_client_id, new_secret
from .models import Client, Organization
from .scopes import KIND_SCOPES, Kind

log = logging.getLogger(__name__)

PLATFORM_ORGANIZATION_ID = uuid.uuid5(uuid.NAMESPACE_URL, "urn:icrs:organization:platform")
ADMIN_CLIENT_NAME = "platform administrator"
ADMIN_FILE = "admin-client.json"


@dataclass(frozen=True)
class IssuedClient:
    client_id: str
    client_secret: str
    scopes: list[str]


async def ensure_admin(
    session: AsyncSession, outbox: Outbox, *, rotate: bool = False
) -> IssuedClient | None:
    """Make the platform organization and its administrator's client if missing.

    Returns the new credentials, or None when an administrator's client already
    exists and `rotate` is not asked for (its secret cannot be shown again).
    """
    org = await session.get(Organization, PLATFORM_ORGANIZATION_ID)
    if org is None:
        org = Organization(
            id=PLATFORM_ORGANIZATION_ID,
            name="ICRS platform",
            kind=Kind.PLATFORM,
            status="active",
        )
        session.add(org)
        await session.flush()
        await outbox.emit(
            session,
            "icrs.organization.registered",
            OrganizationEvent(organization_id=org.id, kind=org.kind, status=org.status),
            subject=org.id,
        )
    live = (
        (
            await session.execute(
                select(Client).where(
                    col(Client.organization_id) == PLATFORM_ORGANIZATION_ID,
                    col(Client.name) == ADMIN_CLIENT_NAME,
                    col(Client.revoked_at).is_(None),
                )
            )
        )
        .scalars()
        .all()
    )
    if live and not rotate:
        return None
    if live:
        now = datetime.now(UTC)
        await session.execute(
            update(Client)
            .where(col(Client.client_id).in_([c.client_id for c in live]))
            .values(revoked_at=now)
        )
        for old in live:
            await outbox.emit(
                session,
                "icrs.client.revoked",
                ClientEvent(client_id=old.client_id, organization_id=org.id, scopes=old.scopes),
                subject=old.client_id,
            )
    secret = new_secret()
    scopes = sorted(KIND_SCOPES[Kind.PLATFORM])
    client = Client(
        client_id=new_client_id(),
        organization_id=org.id,
        name=ADMIN_CLIENT_NAME,
        secret_hash=hash_secret(secret),
        scopes=scopes,
    )
    session.add(client)
    await session.flush()
    await outbox.emit(
        session,
        "icrs.client.issued",
        ClientEvent(client_id=client.client_id, organization_id=org.id, scopes=scopes),
        subject=client.client_id,
    )
    return IssuedClient(client.client_id, secret, scopes)


def write_admin_file(data_dir: Path, issued: IssuedClient) -> Path:
    """Write the credentials readable by the owner only (0600), atomically."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / ADMIN_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"client_id": issued.client_id, "client_secret": issued.client_secret}, f)
        f.write("\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


async def bootstrap_admin(runtime: Runtime) -> None:
    """On start: make the administrator's client the first time, and write its file."""
    if not getattr(runtime.settings, "bootstrap_admin", False):
        return
    try:
        async with runtime.db.transaction() as session:
            issued = await ensure_admin(session, runtime.messaging.outbox)
    except IntegrityError:
        # Another replica made it at the same moment.
        return
    if issued is None:
        return
    path = write_admin_file(runtime.settings.data_dir, issued)
    runtime.extras["admin_client"] = issued
    log.info(
        "platform administrator's client created",
        extra={"client_id": issued.client_id, "credentials_file": str(path)},
    )
