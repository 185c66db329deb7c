from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from icrs_referral.app import create_app
from icrs_referral.settings import ReferralSettings
from icrs_shared.bus import RabbitBus
from icrs_shared.testing.tokens import TestIssuer


@dataclass
class Referral:
    """The referral service on PostgreSQL and RabbitMQ, with a test token issuer."""

    app: FastAPI
    client: httpx.AsyncClient
    issuer: TestIssuer
    bus: RabbitBus


@pytest.fixture
def issuer() -> TestIssuer:
    return TestIssuer()


@pytest.fixture
async def referral(
    postgres_url: str, rabbit_bus: RabbitBus, issuer: TestIssuer, tmp_path: Path
) -> AsyncIterator[Referral]:
    settings = ReferralSettings(
        database_url=postgres_url, data_dir=tmp_path, public_url=issuer.issuer
    )
    app = create_app(settings, rabbit_bus, jwks=issuer.jwks())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://referral") as client:
            yield Referral(app, client, issuer, rabbit_bus)
