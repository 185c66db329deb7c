from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from icrs_intake.app import create_app
from icrs_intake.settings import IntakeSettings
from icrs_shared.bus import RabbitBus
from icrs_shared.testing import Recorder, record
from icrs_shared.testing.tokens import TestIssuer

PERSON: dict[str, Any] = {
    "given_name": "Amina",
    "family_name": "Warsame",
    "aliases": [],
    "sex": "female",
    "date_of_birth": "1998-03-14",
    "languages": ["so"],
    "contact": {"phone": "+252 61 1111111"},
    "documents": [{"type": "ddr_id", "number": "DDR-0001"}],
}
CASE: dict[str, Any] = {
    "person": PERSON,
    "beneficiary_category": "ex_combatant",
    "programme_track": "DDR",
    "area": "SO1101",
    "demobilization_date": "2026-10-01",
    "external_id": None,
}


def case_body(**changes: Any) -> dict[str, Any]:
    """The contract's example case, with `changes` (`person` merged one level deep)."""
    body = copy.deepcopy(CASE)
    person = changes.pop("person", {})
    body["person"].update(person)
    body.update(changes)
    return body


@dataclass
class Intake:
    """The intake service on PostgreSQL and RabbitMQ, with a test token issuer."""

    app: FastAPI
    client: httpx.AsyncClient
    issuer: TestIssuer
    bus: RabbitBus
    settings: IntakeSettings
    organization_id: uuid.UUID = field(default_factory=uuid.uuid4)

    def headers(self, *scopes: str, organization_id: uuid.UUID | None = None) -> dict[str, str]:
        org = organization_id or self.organization_id
        return self.issuer.headers(*scopes, organization_id=org, client_id=f"client-{org}")

    body = staticmethod(case_body)

    @property
    def caseworker(self) -> dict[str, str]:
        return self.headers("cases:write", "cases:read")

    async def register(self, body: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        headers = kw.pop("headers", None) or self.caseworker
        r = await self.client.post("/v1/cases", json=body or case_body(**kw), headers=headers)
        assert r.status_code == 201, r.text
        created: dict[str, Any] = r.json()
        return created

    async def record(self, *bindings: str) -> Recorder:
        return await record(self.bus, bindings)


@pytest.fixture
def issuer() -> TestIssuer:
    return TestIssuer()


@pytest.fixture
def intake_settings(postgres_url: str, issuer: TestIssuer, tmp_path: Path) -> IntakeSettings:
    return IntakeSettings(database_url=postgres_url, data_dir=tmp_path, public_url=issuer.issuer)


@pytest.fixture
async def intake(
    intake_settings: IntakeSettings, rabbit_bus: RabbitBus, issuer: TestIssuer
) -> AsyncIterator[Intake]:
    app = create_app(intake_settings, rabbit_bus, jwks=issuer.jwks())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
            yield Intake(app, client, issuer, rabbit_bus, intake_settings)
