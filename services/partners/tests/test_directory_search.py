"""Finding services: area hierarchy, eligibility, language, status, pagination; on
PostgreSQL and on the one-process default, SQLite."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import col

from icrs_partners.app import create_app
from icrs_partners.models import Organization
from icrs_partners.settings import PartnersSettings
from icrs_shared.bus import InProcessBus
from icrs_shared.db import Database
from icrs_shared.testing.tokens import TestIssuer


@dataclass
class Directory:
    client: httpx.AsyncClient
    issuer: TestIssuer
    db: Database

    def admin(self) -> dict[str, str]:
        return self.issuer.headers("partners:admin")

    def reader(self, organization_id: uuid.UUID | None = None) -> dict[str, str]:
        return self.issuer.headers("partners:read", organization_id=organization_id)

    async def org(self, name: str, status: str = "active") -> uuid.UUID:
        async with self.db.transaction() as s:
            org = Organization(name=name, kind="service_provider", country="SO", status=status)
            s.add(org)
        return org.id

    async def set_status(self, org_id: uuid.UUID, status: str) -> None:
        async with self.db.transaction() as s:
            await s.execute(
                update(Organization).where(col(Organization.id) == org_id).values(status=status)
            )

    async def service(self, org_id: uuid.UUID, name: str, **fields: Any) -> str:
        body = {"name": name, "category": "health", "service_areas": ["SO"], **fields}
        response = await self.client.post(
            f"/v1/organizations/{org_id}/services", json=body, headers=self.admin()
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def names(self, headers: dict[str, str] | None = None, **params: Any) -> list[str]:
        response = await self.client.get(
            "/v1/services", params=params, headers=headers or self.reader()
        )
        assert response.status_code == 200, response.text
        return [item["name"] for item in response.json()["items"]]


@pytest.fixture(params=["postgres", "sqlite"])
def directory(request: pytest.FixtureRequest) -> Directory:
    if request.param == "postgres":
        partners = request.getfixturevalue("partners")
        return Directory(partners.client, partners.issuer, partners.app.state.runtime.db)
    found: Directory = request.getfixturevalue("sqlite_directory")
    return found


@pytest.fixture
async def sqlite_directory(issuer: TestIssuer, tmp_path: Path) -> AsyncIterator[Directory]:
    """The partners service as the one-process default runs it: SQLite, in-process bus."""
    settings = PartnersSettings(data_dir=tmp_path, public_url=issuer.issuer, bootstrap_admin=False)
    bus = InProcessBus()
    await bus.start()
    app = create_app(settings, bus, jwks=issuer.jwks())
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://partners") as client:
                yield Directory(client, issuer, app.state.runtime.db)
    finally:
        await bus.close()


async def test_an_area_finds_the_services_covering_it_and_no_narrower_ones(
    directory: Directory,
) -> None:
    org = await directory.org("Hope")
    await directory.service(org, "country", service_areas=["SO"])
    await directory.service(org, "region", service_areas=["SO11"])
    await directory.service(org, "district", service_areas=["SO1101"])
    await directory.service(org, "other district", service_areas=["SO1102"])
    await directory.service(org, "village", service_areas=["SO110199"])
    await directory.service(org, "kenya", service_areas=["KE"])
    await directory.service(org, "two regions", service_areas=["SO12", "SO11"])

    assert await directory.names(area="SO1101") == ["country", "district", "region", "two regions"]
    assert await directory.names(area="so11") == ["country", "region", "two regions"]
    assert await directory.names(area="SO") == ["country"]
    assert await directory.names(area="KE01") == ["kenya"]
    assert await directory.names(area="ET") == []
    bad = await directory.client.get(
        "/v1/services", params={"area": "Banadir"}, headers=directory.reader()
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "query.area"


async def test_category_language_and_eligibility_filters(directory: Directory) -> None:
    org = await directory.org("Hope")
    await directory.service(org, "clinic", languages=["so", "ar"])
    await directory.service(org, "lawyers", category="legal", languages=["en"])
    await directory.service(
        org, "adults", eligibility={"min_age": 18, "sexes": ["female"]}, languages=["so"]
    )
    await directory.service(
        org,
        "youth",
        eligibility={
            "min_age": 12,
            "max_age": 24,
            "accepts_minors": True,
            "beneficiary_categories": ["youth_at_risk", "dependent"],
            "programme_tracks": ["CVR"],
        },
    )
    await directory.service(
        org,
        "ex-combatants",
        eligibility={
            "sexes": ["male", "other"],
            "beneficiary_categories": ["ex_combatant"],
            "programme_tracks": ["DDR", "DDRR"],
        },
    )
    everything = ["adults", "clinic", "ex-combatants", "lawyers", "youth"]
    assert await directory.names() == everything
    assert await directory.names(category="legal") == ["lawyers"]
    assert await directory.names(language="so") == ["adults", "clinic"]
    assert await directory.names(language="AR") == ["clinic"]
    assert await directory.names(age=30) == ["adults", "clinic", "ex-combatants", "lawyers"]
    assert await directory.names(age=20) == [
        "adults",
        "clinic",
        "ex-combatants",
        "lawyers",
        "youth",
    ]
    # under 18: only services that take minors, and whose ages fit
    assert await directory.names(age=15) == ["youth"]
    assert await directory.names(minor="true") == ["youth"]
    assert await directory.names(sex="female") == ["adults", "clinic", "lawyers", "youth"]
    assert await directory.names(sex="male") == ["clinic", "ex-combatants", "lawyers", "youth"]
    assert await directory.names(beneficiary_category="dependent") == [
        "adults",
        "clinic",
        "lawyers",
        "youth",
    ]
    assert await directory.names(beneficiary_category="ex_combatant") == [
        "adults",
        "clinic",
        "ex-combatants",
        "lawyers",
    ]
    assert await directory.names(programme_track="DDR") == [
        "adults",
        "clinic",
        "ex-combatants",
        "lawyers",
    ]
    assert await directory.names(programme_track="DDRR", sex="other") == [
        "clinic",
        "ex-combatants",
        "lawyers",
    ]
    for params, field in (
        ({"category": "food"}, "query.category"),
        ({"sex": "x"}, "query.sex"),
        ({"age": -1}, "query.age"),
        ({"language": "somali"}, "query.language"),
    ):
        bad = await directory.client.get("/v1/services", params=params, headers=directory.reader())
        assert bad.status_code == 422
        assert bad.json()["errors"][0]["field"] == field


async def test_only_active_services_of_active_organizations_are_listed(
    directory: Directory,
) -> None:
    active = await directory.org("Active")
    suspended = await directory.org("Suspended")
    pending = await directory.org("Pending", status="pending")
    await directory.service(active, "open")
    await directory.service(active, "closed", status="temporarily closed")
    hidden = await directory.service(suspended, "of a suspended organization")
    await directory.service(pending, "of a pending organization")
    await directory.set_status(suspended, "suspended")

    assert await directory.names() == ["open"]
    assert await directory.names(status="temporarily closed") == ["closed"]
    listed = await directory.client.get("/v1/services", headers=directory.reader())
    assert listed.json()["items"][0]["organization_name"] == "Active"

    refused = await directory.client.get(
        "/v1/services",
        params={"include_inactive_organizations": "true"},
        headers=directory.reader(),
    )
    assert refused.status_code == 403
    assert await directory.names(directory.admin(), include_inactive_organizations="true") == [
        "of a pending organization",
        "of a suspended organization",
        "open",
    ]
    own = directory.issuer.headers("services:manage", organization_id=pending)
    assert await directory.names(
        own, organization_id=str(pending), include_inactive_organizations="true"
    ) == ["of a pending organization"]
    assert await directory.names(organization_id=str(active)) == ["open"]

    assert (
        await directory.client.get(f"/v1/services/{hidden}", headers=directory.reader())
    ).status_code == 404
    assert (
        await directory.client.get(f"/v1/services/{hidden}", headers=directory.admin())
    ).status_code == 200


async def test_pages_follow_name_then_id_without_gaps_or_repeats(directory: Directory) -> None:
    org = await directory.org("Hope")
    made = []
    for i in range(11):
        # several services share a name: the id breaks the tie
        name = f"service {i // 3:02d}"
        made.append((name, await directory.service(org, name)))
    seen: list[tuple[str, str]] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (
            await directory.client.get("/v1/services", params=params, headers=directory.reader())
        ).json()
        seen.extend((item["name"], item["id"]) for item in page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        # a page made between two reads is found in its place, not skipped
        if pages == 2:
            made.append(("service 99", await directory.service(org, "service 99")))
    assert pages == 4
    assert len(seen) == len(set(seen)) == 12
    assert seen == sorted(made, key=lambda m: (m[0], uuid.UUID(m[1])))
    bad = await directory.client.get(
        "/v1/services", params={"cursor": "bm90LWEtY3Vyc29y"}, headers=directory.reader()
    )
    assert bad.status_code == 422
