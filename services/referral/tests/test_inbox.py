"""The partner's inbox and the requester's list: only one's own, filtered, paged."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from icrs_referral.models import Referral

if TYPE_CHECKING:
    from conftest import Referral as ReferralService

PROVIDER, OTHER, REQUESTER = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
T0 = datetime(2026, 11, 28, 8, tzinfo=UTC)


async def stored(referral: ReferralService, n: int, **fields: Any) -> Referral:
    values: dict[str, Any] = {
        "case_id": uuid.uuid4(),
        "need_category": "health",
        "requester_organization_id": REQUESTER,
        "organization_id": PROVIDER,
        "service_id": uuid.uuid4(),
        "updated_at": T0 + timedelta(minutes=n),
    }
    row = Referral(**{**values, **fields})
    async with referral.app.state.runtime.db.transaction() as session:
        session.add(row)
    return row


async def pages(
    referral: ReferralService, path: str, headers: dict[str, str], **params: Any
) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        query = {**params, "limit": 2, **({"cursor": cursor} if cursor else {})}
        r = await referral.client.get(path, params=query, headers=headers)
        assert r.status_code == 200, r.text
        seen += [item["id"] for item in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return seen


async def test_inbox_filters_and_pages(referral: ReferralService) -> None:
    rows = [
        await stored(referral, n, status="requested" if n % 2 else "accepted") for n in range(5)
    ]
    await stored(referral, 9, organization_id=OTHER)
    provider = referral.issuer.headers("referrals:respond", organization_id=PROVIDER)
    everything = await pages(referral, "/v1/referrals/inbox", provider)
    assert everything == [str(r.id) for r in rows]  # oldest change first, no other provider's
    requested = await pages(referral, "/v1/referrals/inbox", provider, status="requested")
    assert requested == [str(r.id) for r in rows if r.status == "requested"]
    later = await pages(
        referral,
        "/v1/referrals/inbox",
        provider,
        updated_after=(T0 + timedelta(minutes=2)).isoformat(),
    )
    assert later == [str(r.id) for r in rows[3:]]
    bad = await referral.client.get(
        "/v1/referrals/inbox", params={"status": "nope"}, headers=provider
    )
    assert bad.status_code == 422
    bad = await referral.client.get(
        "/v1/referrals/inbox", params={"cursor": "e30"}, headers=provider
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "query.cursor"


async def test_the_requester_sees_its_cases_referrals(referral: ReferralService) -> None:
    mine = await stored(referral, 1)
    await stored(referral, 2, requester_organization_id=uuid.uuid4())
    requester = referral.issuer.headers("referrals:read", organization_id=REQUESTER)
    assert await pages(referral, "/v1/referrals", requester) == [str(mine.id)]
    r = await referral.client.get(f"/v1/referrals/{mine.id}", headers=requester)
    assert r.status_code == 200
    assert r.headers["etag"] == f'"{mine.id}.1"'
    stranger = referral.issuer.headers("referrals:read", organization_id=uuid.uuid4())
    assert (
        await referral.client.get(f"/v1/referrals/{mine.id}", headers=stranger)
    ).status_code == 404
    assert (await referral.client.get("/v1/referrals/inbox", headers=requester)).status_code == 403
    assert (await referral.client.get("/v1/referrals")).status_code == 401


async def test_bad_times_and_cursors_are_problems_not_500s(referral: ReferralService) -> None:
    """Found by schemathesis: numbers were taken for seconds since 1970, and a time or a
    cursor with no UTC equivalent answered 500."""
    await stored(referral, 1)
    headers = referral.issuer.headers(
        "referrals:respond", "referrals:read", "reports:read", organization_id=PROVIDER
    )
    at_the_edge = {"t": "0001-01-01T00:00:00+01:00", "k": str(uuid.uuid4())}
    edge_cursor = base64.urlsafe_b64encode(json.dumps(at_the_edge).encode()).decode()
    for path in ("/v1/referrals/inbox", "/v1/referrals"):
        for params, field in [
            ({"updated_after": "906"}, "query.updated_after"),
            ({"updated_after": "8.5e-219"}, "query.updated_after"),
            ({"updated_after": "0001-01-01T00:00:00+01:00"}, "query.updated_after"),
            ({"cursor": edge_cursor}, "query.cursor"),
        ]:
            r = await referral.client.get(path, params=params, headers=headers)
            assert r.status_code == 422, (path, params, r.text)
            assert [e["field"] for e in r.json()["errors"]] == [field]
    for params in ({"since": "0.0"}, {"until": "-3e-212"}):
        r = await referral.client.get("/v1/reports/referrals", params=params, headers=headers)
        assert r.status_code == 422, (params, r.text)
