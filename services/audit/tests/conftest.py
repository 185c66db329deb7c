from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from icrs_audit.app import create_app
from icrs_audit.settings import AuditSettings
from icrs_shared.bus import RabbitBus
from icrs_shared.events import Envelope
from icrs_shared.testing import eventually
from icrs_shared.testing.tokens import TestIssuer


@dataclass
class Audit:
    """The audit service on PostgreSQL and RabbitMQ, with a test token issuer."""

    app: FastAPI
    client: httpx.AsyncClient
    issuer: TestIssuer
    bus: RabbitBus
    settings: AuditSettings

    @property
    def auditor(self) -> dict[str, str]:
        return self.issuer.headers("audit:read", client_id="auditor")

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.client.get(path, params=params, headers=self.auditor)

    async def size(self) -> int:
        from icrs_audit import log

        async with self.app.state.runtime.db.sessions() as session:
            return await log.size(session)

    async def wait_for_size(self, size: int) -> None:
        async def reached() -> bool:
            return await self.size() >= size

        await eventually(reached, within=20)

    async def wait_for_checkpoint(self, size: int) -> str:
        async def signed() -> bool:
            r = await self.get("/v1/log/checkpoint")
            return r.status_code == 200 and r.text.split("\n")[1] == str(size)

        await eventually(signed, within=20)
        return (await self.get("/v1/log/checkpoint")).text

    @staticmethod
    def event(n: int = 0, **changes: Any) -> Envelope:
        fields: dict[str, Any] = {
            "source": "/icrs/referral",
            "type": "icrs.referral.created",
            "subject": str(uuid.uuid4()),
            "actor": "client-a",
            "actororg": str(uuid.UUID(int=1)),
            "data": {"n": n},
        }
        return Envelope(**{**fields, **changes})

    def events(self, count: int, **changes: Any) -> list[Envelope]:
        return [self.event(n, **changes) for n in range(count)]

    async def publish(self, envelopes: Iterable[Envelope]) -> None:
        await self.bus.publish(list(envelopes))


@pytest.fixture
def issuer() -> TestIssuer:
    return TestIssuer()


@pytest.fixture
async def audit_settings(postgres_url: str, issuer: TestIssuer, tmp_path: Path) -> AuditSettings:
    return AuditSettings(
        database_url=postgres_url,
        data_dir=tmp_path,
        public_url=issuer.issuer,
        audit_checkpoint_interval=0.1,
    )


@pytest.fixture
async def audit(
    audit_settings: AuditSettings, rabbit_bus: RabbitBus, issuer: TestIssuer
) -> AsyncIterator[Audit]:
    app = create_app(audit_settings, rabbit_bus, jwks=issuer.jwks())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://audit") as client:
            yield Audit(app, client, issuer, rabbit_bus, audit_settings)
