"""Registering an organization: what is accepted, what is refused (422 naming the field),
Idempotency-Key, and listing with filters and cursors."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import func, select

from icrs_partners.bootstrap import PLATFORM_ORGANIZATION_ID
from icrs_partners.models import Organization, outbox_table

if TYPE_CHECKING:
    from conftest import Partners

VALID: dict[str, Any] = {
    "name": "Hope Clinic",
    "kind": "service_provider",
    "country": "SO",
    "contact": {"email": "referrals@hope.example", "phone": "+252 61 0000000"},
}


def admin(partners: Partners, **headers: str) -> dict[str, str]:
    token = partners.issuer.headers("partners:admin", organization_id=PLATFORM_ORGANIZATION_ID)
    return {**token, **headers}


def without(key: str) -> dict[str, Any]:
    return {k: v for k, v in VALID.items() if k != key}


async def count(partners: Partners) -> int:
    async with partners.app.state.runtime.db.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(Organization))).scalar())


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**VALID, "kind": "platform"}, "kind"),
        ({**VALID, "kind": "bank"}, "kind"),
        ({**VALID, "kind": None}, "kind"),
        ({**VALID, "country": "ZZ"}, "country"),
        ({**VALID, "country": "Somalia"}, "country"),
        ({**VALID, "country": "S"}, "country"),
        ({**VALID, "name": "x" * 10_240}, "name"),
        ({**VALID, "name": "   "}, "name"),
        ({**VALID, "name": ""}, "name"),
        ({**VALID, "name": 42}, "name"),
        ({**VALID, "name": "Hope\u202eenilC"}, "name"),  # right-to-left override
        ({**VALID, "name": "Hope\u200bClinic"}, "name"),  # zero-width space
        ({**VALID, "name": "Hope\nClinic"}, "name"),
        ({**VALID, "name": "Hope\x00Clinic"}, "name"),
        ({**VALID, "name": "Hope\ue000"}, "name"),  # private use
        ({**VALID, "contact": {"email": "not-an-address"}}, "contact.email"),
        ({**VALID, "contact": {"email": "a@b"}}, "contact.email"),
        ({**VALID, "contact": {"email": "x" * 300 + "@hope.example"}}, "contact.email"),
        ({**VALID, "contact": {"phone": "12345"}}, "contact.phone"),
        ({**VALID, "contact": {"phone": "+252 61 000000000000000"}}, "contact.phone"),
        ({**VALID, "contact": {"phone": "call me"}}, "contact.phone"),
        ({**VALID, "contact": {"fax": "+252 61 0000000"}}, "contact.fax"),
        ({**VALID, "contact": "referrals@hope.example"}, "contact"),
        ({**VALID, "status": "active"}, "status"),
        (without("name"), "name"),
        (without("kind"), "kind"),
        (without("country"), "country"),
    ],
)
async def test_bad_input_is_refused_naming_the_field(
    partners: Partners, body: dict[str, Any], field: str
) -> None:
    r = await partners.client.post("/v1/organizations", json=body, headers=admin(partners))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in r.json()["errors"]]
    assert "x" * 300 not in r.text  # the input is not echoed
    assert await count(partners) == 0


async def test_a_lone_surrogate_is_422_not_500(partners: Partners) -> None:
    raw = json.dumps(VALID).replace("Hope Clinic", "Hope \\ud800")
    headers = admin(partners, **{"Content-Type": "application/json"})
    r = await partners.client.post("/v1/organizations", content=raw, headers=headers)
    assert r.status_code == 422
    assert await count(partners) == 0


async def test_not_json_is_422(partners: Partners) -> None:
    headers = admin(partners, **{"Content-Type": "application/json"})
    r = await partners.client.post("/v1/organizations", content=b"{name:", headers=headers)
    assert r.status_code == 422


async def test_accepted_input_is_normalized(partners: Partners) -> None:
    body = {
        "name": "  Xarunta  Caafimaadka   Hope ",
        "kind": "ngo",
        "country": "so",
        "contact": {"email": "Referrals@Hope.EXAMPLE", "phone": " +252 (61) 000-0000 "},
    }
    r = await partners.client.post("/v1/organizations", json=body, headers=admin(partners))
    assert r.status_code == 201, r.text
    org = r.json()
    assert org["name"] == "Xarunta Caafimaadka Hope"
    assert org["country"] == "SO"
    assert org["contact"] == {"email": "Referrals@hope.example", "phone": "+252 (61) 000-0000"}


@pytest.mark.parametrize(
    "name",
    [
        "مستشفى الأمل",  # Arabic
        "می\u200cخواهم",  # noqa: RUF001 - Persian, with the zero-width non-joiner it needs
        "Ururka Haweenka ee Gobolka Banaadir",
        "Cafe\u0301",  # decomposed: stored composed (NFC)
        "ONG Espérance – Nord-Kivu",  # noqa: RUF001
        "n" * 200,
    ],
)
async def test_names_in_any_script_are_accepted(partners: Partners, name: str) -> None:
    body = {**VALID, "name": name}
    r = await partners.client.post("/v1/organizations", json=body, headers=admin(partners))
    assert r.status_code == 201, r.text
    assert r.json()["name"] == name.replace("Cafe\u0301", "Café")


async def test_contact_is_optional(partners: Partners) -> None:
    r = await partners.client.post(
        "/v1/organizations", json=without("contact"), headers=admin(partners)
    )
    assert r.status_code == 201
    assert r.json()["contact"] == {"email": None, "phone": None}


async def test_the_same_idempotency_key_creates_once(partners: Partners) -> None:
    headers = admin(partners, **{"Idempotency-Key": "org-1"})
    first = await partners.client.post("/v1/organizations", json=VALID, headers=headers)
    again = await partners.client.post("/v1/organizations", json=VALID, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["etag"] == first.headers["etag"]
    assert again.headers["idempotent-replayed"] == "true"
    assert await count(partners) == 1

    other = await partners.client.post(
        "/v1/organizations", json={**VALID, "name": "Other"}, headers=headers
    )
    assert other.status_code == 409
    assert await count(partners) == 1
    async with partners.app.state.runtime.db.sessions() as session:
        types = (await session.execute(select(outbox_table.c.event_type))).scalars().all()
    assert types == ["icrs.organization.registered"]

    # Keys belong to the client that sent them.
    someone_else = partners.issuer.headers(
        "partners:admin", organization_id=PLATFORM_ORGANIZATION_ID, client_id="admin-2"
    )
    r = await partners.client.post(
        "/v1/organizations", json=VALID, headers={**someone_else, "Idempotency-Key": "org-1"}
    )
    assert r.status_code == 201
    assert r.json()["id"] != first.json()["id"]


async def test_list_filters_and_pages(partners: Partners) -> None:
    ids: dict[str, str] = {}
    for i, kind in enumerate(["ngo", "ngo", "auditor", "ngo", "government"]):
        body = {**VALID, "name": f"Org {i}", "kind": kind}
        r = await partners.client.post("/v1/organizations", json=body, headers=admin(partners))
        ids[r.json()["id"]] = kind
    first_ngo = next(i for i, k in ids.items() if k == "ngo")
    await partners.client.post(f"/v1/organizations/{first_ngo}/verify", headers=admin(partners))

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        r = await partners.client.get("/v1/organizations", params=params, headers=admin(partners))
        assert r.status_code == 200
        page = r.json()
        assert len(page["items"]) <= 2
        seen += [o["id"] for o in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(ids)  # creation order, each once
    assert pages == 3

    r = await partners.client.get(
        "/v1/organizations", params={"kind": "ngo"}, headers=admin(partners)
    )
    assert {o["id"] for o in r.json()["items"]} == {i for i, k in ids.items() if k == "ngo"}
    r = await partners.client.get(
        "/v1/organizations", params={"kind": "ngo", "status": "active"}, headers=admin(partners)
    )
    assert [o["id"] for o in r.json()["items"]] == [first_ngo]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"cursor": "not-a-cursor"}, "query.cursor"),
        ({"cursor": "eyJ0IjoxfQ"}, "query.cursor"),  # {"t":1}
        ({"status": "deleted"}, "query.status"),
        ({"kind": "bank"}, "query.kind"),
        ({"limit": "0"}, "query.limit"),
    ],
)
async def test_list_refuses_bad_queries(
    partners: Partners, params: dict[str, str], field: str
) -> None:
    r = await partners.client.get("/v1/organizations", params=params, headers=admin(partners))
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == [field]
