"""Exporting the directory as HSDS JSON, streamed: a list of organizations, each with
its services, read a batch of organizations at a time in short transactions, so that
neither the process nor the database holds the whole directory at once."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

from icrs_shared.db import Database

from . import repository
from .hsds import organization_to_hsds

BATCH = 100


async def export_directory(
    db: Database, *, active_only: bool, show_contact: bool, batch: int = BATCH
) -> AsyncIterator[bytes]:
    """JSON chunks of the export, in organization id order; services by (name, id)."""
    yield b"["
    after: uuid.UUID | None = None
    first = True
    while True:
        async with db.sessions() as session:
            orgs = await repository.organizations_page(
                session, after=after, limit=batch, active_only=active_only
            )
            services = await repository.services_of(session, [o.id for o in orgs])
        for org in orgs:
            body = organization_to_hsds(org, services[org.id], show_contact=show_contact)
            yield (b"" if first else b",\n") + json.dumps(body, ensure_ascii=False).encode()
            first = False
        if len(orgs) < batch:
            break
        after = orgs[-1].id
    yield b"]\n"
