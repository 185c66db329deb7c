"""Every (state, target, actor) triple through the API: the allowed ones succeed, all others
answer 409 or 403 and change nothing."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from icrs_referral import service
from icrs_referral.lifecycle import STATUSES, TRANSITIONS
from icrs_referral.models import Referral
from icrs_shared.errors import DomainError

if TYPE_CHECKING:
    from conftest import Referral as ReferralService

PROVIDER, REQUESTER = uuid.uuid4(), uuid.uuid4()


async def at_status(referral: ReferralService, status: str) -> Referral:
    row = Referral(
        case_id=uuid.uuid4(),
        need_category="health",
        requester_organization_id=REQUESTER,
        organization_id=PROVIDER,
        service_id=uuid.uuid4(),
        status=status,
    )
    async with referral.app.state.runtime.db.transaction() as session:
        session.add(row)
    return row


def body(target: str) -> dict[str, str]:
    extra = {"rejected": {"reason": "not-eligible"}, "completed": {"outcome": "service-provided"}}
    return {"status": target, **extra.get(target, {})}


def expected(current: str, target: str, actor: str) -> int:
    moves = TRANSITIONS.get(current, {})
    if target not in moves:
        return 409
    return 200 if actor in moves[target] else 403


@pytest.mark.parametrize("actor", ["provider", "requester"])
async def test_every_move_by_every_party(referral: ReferralService, actor: str) -> None:
    org, scopes = (
        (PROVIDER, ("referrals:respond",))
        if actor == "provider"
        else (REQUESTER, ("referrals:read", "referrals:write"))
    )
    headers = referral.issuer.headers(*scopes, organization_id=org, client_id=actor)
    wrong: list[tuple[str, str, int, int]] = []
    for current, target in itertools.product(STATUSES, STATUSES):
        row = await at_status(referral, current)
        r = await referral.client.post(
            f"/v1/referrals/{row.id}/status", json=body(target), headers=headers
        )
        want = expected(current, target, actor)
        if r.status_code != want:
            wrong.append((current, target, want, r.status_code))
            continue
        async with referral.app.state.runtime.db.sessions() as session:
            stored = await session.get(Referral, row.id)
        assert stored is not None
        if want == 200:
            assert (stored.status, stored.version) == (target, 2)
        else:
            assert r.headers["content-type"] == "application/problem+json"
            assert (stored.status, stored.version) == (current, 1), (current, target)
            if want == 409:
                assert r.json()["allowed"] == [
                    s for s, who in TRANSITIONS.get(current, {}).items() if actor in who
                ]
    assert wrong == []


async def test_the_platforms_moves(referral: ReferralService) -> None:
    runtime = referral.app.state.runtime
    for current, target in itertools.product(STATUSES, STATUSES):
        row = await at_status(referral, current)
        allowed = "platform" in TRANSITIONS.get(current, {}).get(target, frozenset())
        async with runtime.db.sessions() as session:
            stored = await session.get(Referral, row.id)
            assert stored is not None
            outcome = await _platform_move(session, runtime, stored, target)
        assert (outcome == "moved") == allowed, (current, target, outcome)
        assert outcome in ("moved", "403", "409")


async def _platform_move(session: Any, runtime: Any, stored: Referral, target: str) -> str:
    try:
        await service.move(
            session=session,
            outbox=runtime.messaging.outbox,
            referral=stored,
            target=target,
            actor="platform",
            actor_id=None,
            reason=body(target).get("reason"),
            outcome=body(target).get("outcome"),
            max_attempts=3,
            now=datetime.now(UTC),
        )
    except DomainError as refused:
        return str(refused.status)
    return "moved"


async def test_if_match_lets_one_of_two_answers_win(referral: ReferralService) -> None:
    row = await at_status(referral, "requested")
    headers = referral.issuer.headers("referrals:respond", organization_id=PROVIDER)
    stale = {**headers, "If-Match": f'"{row.id}.1"'}
    first = await referral.client.post(
        f"/v1/referrals/{row.id}/status", json=body("accepted"), headers=stale
    )
    second = await referral.client.post(
        f"/v1/referrals/{row.id}/status", json=body("rejected"), headers=stale
    )
    assert (first.status_code, second.status_code) == (200, 412)


async def test_bad_answers(referral: ReferralService) -> None:
    row = await at_status(referral, "requested")
    headers = referral.issuer.headers("referrals:respond", organization_id=PROVIDER)
    path = f"/v1/referrals/{row.id}/status"
    for bad, field in [
        ({"status": "done"}, "status"),
        ({"status": "rejected", "reason": "because of <b>"}, "reason"),
        ({"status": "accepted", "colour": "red"}, "colour"),
    ]:
        r = await referral.client.post(path, json=bad, headers=headers)
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"] == field
    r = await referral.client.post(path, json={"status": "rejected"}, headers=headers)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "body.reason"
    assert (await referral.client.post(path, json=body("accepted"))).status_code == 401
    reader = referral.issuer.headers("referrals:read", organization_id=PROVIDER)
    assert (
        await referral.client.post(path, json=body("accepted"), headers=reader)
    ).status_code == 403
