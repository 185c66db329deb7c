"""The closed loop across all four services, on RabbitMQ and PostgreSQL, each service with
its own database, every token from the partners service's own authorization server:
partners are registered, a case is registered with consent and a need, the referral
reaches the partner's inbox, the partner accepts and completes it, the plan shows it, and
the audit log holds every event."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from icrs_audit.app import create_app as create_audit
from icrs_audit.settings import AuditSettings
from icrs_intake.app import create_app as create_intake
from icrs_intake.settings import IntakeSettings
from icrs_partners.app import create_app as create_partners
from icrs_partners.settings import PartnersSettings
from icrs_referral.app import create_app as create_referral
from icrs_referral.settings import ReferralSettings
from icrs_shared.auth import JWKSCache
from icrs_shared.bus import RabbitBus
from icrs_shared.logs import JsonFormatter
from icrs_shared.testing import eventually, record
from icrs_shared.testing.databases import create_database, drop_database

ISSUER = "http://127.0.0.1:8000"


@dataclass
class Platform:
    http: dict[str, httpx.AsyncClient]
    apps: dict[str, FastAPI]
    admin: dict[str, str]

    async def token(self, client_id: str, secret: str) -> dict[str, str]:
        r = await self.http["partners"].post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=httpx.BasicAuth(client_id, secret),
        )
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    async def organization(
        self, name: str, kind: str, scopes: list[str], **verify: Any
    ) -> tuple[str, dict[str, str]]:
        """A verified organization and a token of a client of its own."""
        admin = await self.token(self.admin["client_id"], self.admin["client_secret"])
        partners = self.http["partners"]
        r = await partners.post(
            "/v1/organizations", json={"name": name, "kind": kind, "country": "SO"}, headers=admin
        )
        assert r.status_code == 201, r.text
        org = r.json()["id"]
        r = await partners.post(f"/v1/organizations/{org}/verify", json=verify, headers=admin)
        assert r.status_code == 200, r.text
        r = await partners.post(
            f"/v1/organizations/{org}/clients",
            json={"name": f"{name} system", "scopes": scopes},
            headers=admin,
        )
        assert r.status_code == 201, r.text
        return org, await self.token(r.json()["client_id"], r.json()["client_secret"])


@pytest.fixture
async def platform(
    postgres_server_url: str, rabbit_bus: RabbitBus, tmp_path: Path
) -> AsyncIterator[Platform]:
    async with AsyncExitStack() as stack:
        databases = {}
        for name in ("partners", "intake", "referral", "audit"):
            databases[name] = await create_database(postgres_server_url)
            stack.push_async_callback(drop_database, databases[name])
        common: dict[str, Any] = {"data_dir": tmp_path, "public_url": ISSUER}
        partners = create_partners(
            PartnersSettings(database_url=databases["partners"], **common), rabbit_bus
        )
        # Every other service fetches partners' keys over HTTP, here straight to its app.
        keys = httpx.AsyncClient(transport=httpx.ASGITransport(app=partners))
        stack.push_async_callback(keys.aclose)

        def jwks() -> JWKSCache:
            return JWKSCache(f"{ISSUER}/.well-known/jwks.json", client=keys)

        apps: dict[str, FastAPI] = {
            "partners": partners,
            "intake": create_intake(
                IntakeSettings(database_url=databases["intake"], **common), rabbit_bus, jwks=jwks()
            ),
            "referral": create_referral(
                ReferralSettings(database_url=databases["referral"], **common),
                rabbit_bus,
                jwks=jwks(),
            ),
            "audit": create_audit(
                AuditSettings(
                    database_url=databases["audit"], audit_checkpoint_interval=0.2, **common
                ),
                rabbit_bus,
                jwks=jwks(),
            ),
        }
        http = {}
        for name, app in apps.items():
            await stack.enter_async_context(app.router.lifespan_context(app))
            http[name] = await stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}")
            )
        admin = json.loads((tmp_path / "admin-client.json").read_text())
        yield Platform(http, apps, admin)


async def test_the_closed_loop(
    platform: Platform, rabbit_bus: RabbitBus, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    everything = await record(rabbit_bus, ["#"])
    provider, provider_token = await platform.organization(
        "Hope Clinic",
        "service_provider",
        ["referrals:respond", "services:manage"],
        child_safeguarding=True,
    )
    _, agency = await platform.organization(
        "UN agency", "un_agency", ["cases:write", "cases:read", "referrals:read", "referrals:write"]
    )
    _, auditor = await platform.organization("Auditors", "auditor", ["audit:read"])

    service = await platform.http["partners"].post(
        f"/v1/organizations/{provider}/services",
        json={
            "name": "Primary care",
            "category": "health",
            "languages": ["so"],
            "service_areas": ["SO11"],
            "eligibility": {"accepts_minors": True},
            "capacity": {"maximum": 50, "accepting": True},
            "accept_within": "PT72H",
        },
        headers=provider_token,
    )
    assert service.status_code == 201, service.text

    intake = platform.http["intake"]
    case_body: dict[str, Any] = {
        "person": {
            "given_name": "Hodan",
            "family_name": "Abdi",
            "sex": "female",
            "date_of_birth": "1996-05-02",
            "languages": ["so"],
            "documents": [{"type": "ddr_id", "number": "DDR-7788"}],
        },
        "beneficiary_category": "ex_combatant",
        "programme_track": "DDR",
        "area": "SO1101",
    }
    case = await intake.post("/v1/cases", json=case_body, headers=agency)
    assert case.status_code == 201, case.text
    case_id = case.json()["id"]
    consent = await intake.post(
        f"/v1/cases/{case_id}/consents",
        json={
            "purposes": ["referral"],
            "recipients": {"categories": ["health"], "organizations": []},
            "given_by": "self",
            "expires_at": None,
        },
        headers=agency,
    )
    assert consent.status_code == 201, consent.text
    assessed = await intake.post(
        f"/v1/cases/{case_id}/assessments",
        json={
            "needs": [
                {
                    "category": "health",
                    "priority": "urgent",
                    "note": "Fever for a week",
                    "share_note": True,
                }
            ]
        },
        headers=agency,
    )
    assert assessed.status_code == 201, assessed.text

    referral_http = platform.http["referral"]
    inbox: list[dict[str, Any]] = []

    async def in_the_inbox() -> bool:
        r = await referral_http.get("/v1/referrals/inbox", headers=provider_token)
        inbox[:] = r.json()["items"]
        return len(inbox) == 1

    await eventually(in_the_inbox, within=30)
    referral = inbox[0]
    assert (referral["case_id"], referral["service_id"]) == (case_id, service.json()["id"])

    # The partner reads what it needs, and only that, once intake knows of the referral.
    path = f"/v1/cases/{case_id}/referral-view"

    async def readable() -> bool:
        return (await intake.get(path, headers=provider_token)).status_code == 200

    await eventually(readable, within=30)
    view = await intake.get(path, headers=provider_token)
    assert view.json()["person"]["given_name"] == "Hodan"
    assert "DDR-7788" not in view.text  # documents are not for a health service

    for status in ("accepted", "in-progress"):
        r = await referral_http.post(
            f"/v1/referrals/{referral['id']}/status",
            json={"status": status},
            headers=provider_token,
        )
        assert r.status_code == 200, r.text
    r = await referral_http.post(
        f"/v1/referrals/{referral['id']}/status",
        json={"status": "completed", "outcome": "service-provided"},
        headers=provider_token,
    )
    assert r.status_code == 200, r.text

    async def plan_shows_it() -> bool:
        plan = (await intake.get(f"/v1/cases/{case_id}/plan", headers=agency)).json()
        return [i["status"] for i in plan["items"]] == ["completed"]

    await eventually(plan_shows_it, within=30)

    # The audit log holds every event of the platform, once.
    audit = platform.http["audit"]

    async def all_logged() -> bool:
        ids = {str(e.id) for e in everything.events}
        logged: list[str] = []
        start = 0
        while True:
            page = (
                await audit.get("/v1/log/entries", params={"start": start}, headers=auditor)
            ).json()
            logged += [item["event"]["id"] for item in page["items"]]
            if page["next_cursor"] is None:
                break
            start = int(page["next_cursor"])
        assert len(logged) == len(set(logged)), "an event logged twice"
        return bool(ids) and ids <= set(logged)

    await eventually(all_logged, within=30)
    types = {e.type for e in everything.events}
    assert {
        "icrs.organization.verified",
        "icrs.service.published",
        "icrs.case.registered",
        "icrs.consent.granted",
        "icrs.needs.assessed",
        "icrs.referral.created",
        "icrs.case.accessed",
        "icrs.referral.accepted",
        "icrs.referral.completed",
        "icrs.plan.updated",
    } <= types

    # Requests that fail while carrying the person's data: the answers name the fields at
    # fault and the cases that may be the same person, never the values.
    person = case_body["person"]
    errors: list[httpx.Response] = [
        await intake.post("/v1/cases", json=case_body, headers=agency),  # probable duplicate
        await intake.post(
            "/v1/cases",
            json=case_body | {"person": person | {"date_of_birth": "1996-05-32"}},
            headers=agency,
        ),
        await intake.post(
            "/v1/cases",
            json=case_body | {"person": person | {"sex": "Hodan Abdi", "phone": "DDR-7788"}},
            headers=agency,
        ),
        await intake.patch(
            f"/v1/cases/{case_id}",
            json={"person": {"given_name": "Hodan" * 100, "date_of_birth": "Abdi"}},
            headers=agency | {"If-Match": "*"},
        ),
        await intake.post(
            f"/v1/cases/{case_id}/assessments",
            json={"needs": [{"category": "Fever for a week", "note": "Fever for a week" * 9999}]},
            headers=agency,
        ),
        await intake.get(path, headers=provider_token | {"X-Person": "Hodan Abdi"}),
        await intake.get("/v1/cases", params={"name": "Hodan Abdi"}, headers=provider_token),
    ]
    assert all(400 <= r.status_code < 500 for r in errors), [r.status_code for r in errors]

    # The person's data left intake only through the referral view: not in any event, any
    # log line (as the services format them), any error answer, or the audit log's export.
    personal = ["Hodan", "Abdi", "1996-05-02", "DDR-7788", "Fever for a week"]
    export = await audit.get("/v1/audit/export", params={"format": "jsonl"}, headers=auditor)
    assert export.status_code == 200
    formatter = JsonFormatter()
    # (httpx and httpcore log the test's own requests, query strings and all.)
    logged = "\n".join(
        formatter.format(record)
        for record in caplog.records
        if not record.name.startswith(("httpx", "httpcore"))
    )
    for place, text in [
        ("events", "\n".join(e.to_json().decode() for e in everything.events)),
        ("logs", logged),
        ("audit export", export.text),
        ("error answers", "\n".join(r.text for r in errors)),
    ]:
        found = [value for value in personal if value in text]
        assert found == [], f"{found} in the {place}"
