"""Routing and the referral lifecycle on the real broker and database: the view filled
by events as the other services publish them, referrals made, answered, re-routed,
expired, unmatched and matched later, cancelled when consent goes."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, text
from sqlmodel import col

from icrs_referral import view
from icrs_referral.models import KnownCase, KnownNeed, KnownService, Referral
from icrs_referral.router import _key, capacity_locks, routing_lock
from icrs_referral.service import expire_due
from icrs_referral.situation import ACCEPTANCE_WINDOW, NEUTRAL, load_and_acceptance
from icrs_shared.events import Envelope
from icrs_shared.testing import eventually, record, statements

if TYPE_CHECKING:
    from conftest import Referral as ReferralService

REQUESTER = uuid.uuid4()


class World:
    """Publishes what partners and intake would, and reads what referral made of it."""

    def __init__(self, referral: ReferralService) -> None:
        self.referral = referral
        self.case_id = uuid.uuid4()

    async def send(self, source: str, event_type: str, subject: uuid.UUID, **data: Any) -> None:
        envelope = Envelope(
            source=f"/icrs/{source}", type=event_type, subject=str(subject), data=data
        )
        await self.referral.bus.publish([envelope])

    async def organization(
        self,
        *,
        safeguarding: bool = False,
        status: str = "active",
        org: uuid.UUID | None = None,
        event: str = "icrs.organization.verified",
    ) -> uuid.UUID:
        org = org or uuid.uuid4()
        await self.send(
            "partners",
            event,
            org,
            organization_id=str(org),
            kind="service_provider",
            status=status,
            child_safeguarding=safeguarding,
        )
        return org

    async def service(
        self, org: uuid.UUID, *, category: str = "health", version: int = 1, **changes: Any
    ) -> uuid.UUID:
        sid = changes.pop("service_id", None) or uuid.uuid4()
        data: dict[str, Any] = {
            "service_id": str(sid),
            "organization_id": str(org),
            "category": category,
            "status": "active",
            "service_areas": ["SO11"],
            "languages": [],
            "eligibility": {"accepts_minors": True},
            "capacity": {"maximum": 10, "accepting": True},
            "accept_within_seconds": 3600,
            "version": version,
        }
        data.update(changes)
        kind = "icrs.service.published" if version == 1 else "icrs.service.updated"
        await self.send("partners", kind, sid, **data)
        return sid

    async def case(self, **changes: Any) -> None:
        data: dict[str, Any] = {
            "case_id": str(self.case_id),
            "organization_id": str(REQUESTER),
            "version": 1,
            "is_minor": False,
            "sex": "female",
            "age_band": "25-34",
            "area": "SO1101",
            "languages": ["so"],
            "beneficiary_category": "ex_combatant",
            "programme_track": "DDR",
            "status": "open",
        }
        data.update(changes)
        await self.send("intake", "icrs.case.registered", self.case_id, **data)

    async def consent(self, *categories: str, withdraw: uuid.UUID | None = None) -> uuid.UUID:
        cid = withdraw or uuid.uuid4()
        await self.send(
            "intake",
            "icrs.consent.withdrawn" if withdraw else "icrs.consent.granted",
            self.case_id,
            consent_id=str(cid),
            case_id=str(self.case_id),
            organization_id=str(REQUESTER),
            purposes=["referral"],
            recipient_categories=list(categories),
            status="withdrawn" if withdraw else "active",
        )
        return cid

    async def need(self, category: str = "health") -> uuid.UUID:
        need = uuid.uuid4()
        await self.send(
            "intake",
            "icrs.needs.assessed",
            self.case_id,
            assessment_id=str(uuid.uuid4()),
            case_id=str(self.case_id),
            organization_id=str(REQUESTER),
            needs=[{"need_id": str(need), "category": category, "priority": "high"}],
        )
        return need

    async def referrals(self, need: uuid.UUID) -> list[Referral]:
        async with self.referral.app.state.runtime.db.sessions() as session:
            query = select(Referral).where(Referral.need_id == need).order_by(Referral.attempt)  # type: ignore[arg-type]
            return list((await session.execute(query)).scalars())

    async def wait_referrals(self, need: uuid.UUID, count: int) -> list[Referral]:
        async def enough() -> bool:
            return len(await self.referrals(need)) >= count

        await eventually(enough, within=15)
        return await self.referrals(need)

    async def need_row(self, need: uuid.UUID) -> KnownNeed | None:
        async with self.referral.app.state.runtime.db.sessions() as session:
            return await session.get(KnownNeed, need)

    async def wait_need(
        self, need: uuid.UUID, status: str, reasons: list[str] | None = None
    ) -> KnownNeed:
        """Wait for the need's status (and reasons): events may come in any order, so an
        earlier state may show first."""

        async def reached() -> bool:
            row = await self.need_row(need)
            return (
                row is not None
                and row.status == status
                and (reasons is None or row.reasons == reasons)
            )

        await eventually(reached, within=15)
        row = await self.need_row(need)
        assert row is not None
        return row

    def provider(self, org: uuid.UUID) -> dict[str, str]:
        return self.referral.issuer.headers(
            "referrals:respond", organization_id=org, client_id=f"p-{org}"
        )

    @property
    def requester(self) -> dict[str, str]:
        return self.referral.issuer.headers(
            "referrals:read", "referrals:write", organization_id=REQUESTER, client_id="r"
        )

    async def move(self, referral_id: uuid.UUID, headers: dict[str, str], **body: Any) -> Any:
        return await self.referral.client.post(
            f"/v1/referrals/{referral_id}/status", json=body, headers=headers
        )


async def test_closed_loop(referral: ReferralService) -> None:
    world = World(referral)
    events = await record(referral.bus, ["referral.#"])
    org = await world.organization()
    sid = await world.service(org)
    await world.case()
    await world.consent("health")
    need = await world.need()
    [made] = await world.wait_referrals(need, 1)
    assert (made.service_id, made.organization_id, made.status) == (sid, org, "requested")
    assert made.routing["chosen"] == str(sid)
    assert made.accept_by is not None

    inbox = await referral.client.get("/v1/referrals/inbox", headers=world.provider(org))
    assert [r["id"] for r in inbox.json()["items"]] == [str(made.id)]
    mine = await referral.client.get("/v1/referrals", headers=world.requester)
    assert [r["id"] for r in mine.json()["items"]] == [str(made.id)]
    other = world.provider(uuid.uuid4())
    assert (await referral.client.get(f"/v1/referrals/{made.id}", headers=other)).status_code == 404

    for status in ("received", "accepted", "in-progress"):
        r = await world.move(made.id, world.provider(org), status=status)
        assert r.status_code == 200, r.text
    r = await world.move(made.id, world.provider(org), status="completed")
    assert r.status_code == 422  # an outcome is needed
    r = await world.move(
        made.id, world.provider(org), status="completed", outcome="service-provided"
    )
    assert r.json()["status"] == "completed"

    # The need may show unmatched first, if it came before the case or the consent.
    def moves() -> list[Any]:
        return [e for e in events.events if e.type != "icrs.referral.unmatched"]

    await eventually(lambda: len(moves()) >= 5)
    seen = moves()
    assert [e.type for e in seen] == [
        "icrs.referral.created",
        "icrs.referral.received",
        "icrs.referral.accepted",
        "icrs.referral.started",
        "icrs.referral.completed",
    ]
    assert seen[-1].data["outcome"] == "service-provided"
    assert (await world.move(made.id, world.provider(org), status="failed")).status_code == 409


async def test_rejection_and_expiry_reroute_then_unmatched(referral: ReferralService) -> None:
    world = World(referral)
    orgs = [await world.organization() for _ in range(3)]
    # The district service first, then the region's, then the country's.
    first = await world.service(orgs[0], service_areas=["SO1101"])
    second = await world.service(orgs[1], service_areas=["SO11"])
    third = await world.service(orgs[2], service_areas=["SO"])
    await world.case()
    await world.consent("health")
    need = await world.need()
    [one] = await world.wait_referrals(need, 1)
    assert one.service_id == first

    r = await world.move(one.id, world.provider(orgs[0]), status="rejected", reason="at-capacity")
    assert r.status_code == 200, r.text
    two = (await world.wait_referrals(need, 2))[1]
    assert (two.service_id, two.attempt, two.previous_referral_id) == (second, 2, one.id)

    later = datetime.now(UTC) + timedelta(hours=2)
    runtime = referral.app.state.runtime
    assert await expire_due(runtime.db, runtime.messaging.outbox, now=later, max_attempts=3) == 1
    three = (await world.wait_referrals(need, 3))[2]
    assert (three.service_id, three.attempt) == (third, 3)
    assert (await world.referrals(need))[1].status == "expired"

    r = await world.move(three.id, world.provider(orgs[2]), status="rejected", reason="other")
    assert r.status_code == 200
    await world.wait_need(need, "unmatched", ["attempts-exhausted"])


async def test_unmatched_with_reasons_then_matched_when_a_service_comes(
    referral: ReferralService,
) -> None:
    world = World(referral)
    org = await world.organization()
    await world.service(org, category="housing", service_areas=["SO22"])
    await world.case()
    await world.consent("housing")
    need = await world.need("housing")
    await world.wait_need(need, "unmatched", ["area"])
    sid = await world.service(org, category="housing")
    [made] = await world.wait_referrals(need, 1)
    assert made.service_id == sid


async def test_a_need_waiting_for_its_provider_is_matched_when_the_provider_is_verified(
    referral: ReferralService,
) -> None:
    world = World(referral)
    org = await world.organization(status="pending", event="icrs.organization.registered")
    sid = await world.service(org, category="legal_aid")
    await world.case()
    await world.consent("legal_aid")
    need = await world.need("legal_aid")
    await world.wait_need(need, "unmatched", ["organization-inactive"])
    await world.organization(org=org)
    [made] = await world.wait_referrals(need, 1)
    assert made.service_id == sid


async def test_a_minor_goes_to_a_safeguarding_verified_organization_only(
    referral: ReferralService,
) -> None:
    world = World(referral)
    unverified = await world.organization(safeguarding=False)
    verified = await world.organization(safeguarding=True)
    await world.service(unverified, category="child_protection", service_areas=["SO1101"])
    sid = await world.service(verified, category="child_protection", service_areas=["SO"])
    await world.case(is_minor=True, age_band="15-17")
    await world.consent("child_protection")
    need = await world.need("child_protection")
    [made] = await world.wait_referrals(need, 1)
    assert made.service_id == sid
    assert made.routing["left_out"][0]["reasons"] == ["no-child-safeguarding"]


async def test_consent_limits_categories_and_its_withdrawal_cancels(
    referral: ReferralService,
) -> None:
    world = World(referral)
    events = await record(referral.bus, ["referral.cancelled", "referral.unmatched"])
    org = await world.organization()
    await world.service(org, category="legal")
    await world.service(org, category="health")
    await world.case()
    consent = await world.consent("health")
    legal = await world.need("legal")
    await world.wait_need(legal, "unmatched", ["no-consent"])
    health = await world.need("health")
    await world.wait_referrals(health, 1)
    await world.consent(withdraw=consent)

    async def cancelled() -> bool:
        return (await world.referrals(health))[0].status == "cancelled"

    await eventually(cancelled, within=15)
    assert (await world.referrals(health))[0].reason == "consent-withdrawn"
    await eventually(lambda: any(e.type == "icrs.referral.cancelled" for e in events.events))


async def test_capacity_full_waits_and_freed_capacity_matches(referral: ReferralService) -> None:
    world = World(referral)
    org = await world.organization()
    await world.service(org, capacity={"maximum": 1, "accepting": True})
    await world.case()
    await world.consent("health")
    first = await world.need()
    [one] = await world.wait_referrals(first, 1)
    second = await world.need()
    await world.wait_need(second, "unmatched", ["at-capacity"])
    r = await world.move(one.id, world.requester, status="cancelled")
    assert r.status_code == 200, r.text
    [made] = await world.wait_referrals(second, 1)
    assert made.service_id == one.service_id


async def test_cases_route_side_by_side(referral: ReferralService) -> None:
    """While one case's routing holds its lock, another case's need is routed."""
    busy, other = World(referral), World(referral)
    org = await busy.organization()
    await busy.service(org)
    for world in (busy, other):
        await world.case()
        await world.consent("health")
    async with referral.app.state.runtime.db.transaction() as session:
        await routing_lock(session, case_id=busy.case_id)
        need = await other.need()
        [made] = await other.wait_referrals(need, 1)
    assert made.case_id == other.case_id


async def test_cases_routed_at_once_do_not_overfill_a_service(referral: ReferralService) -> None:
    worlds = [World(referral) for _ in range(6)]
    org = await worlds[0].organization()
    sid = await worlds[0].service(org, capacity={"maximum": 2, "accepting": True})
    for world in worlds:
        await world.case()
        await world.consent("health")
    needs = [uuid.uuid4() for _ in worlds]
    await referral.bus.publish(
        [
            Envelope(
                source="/icrs/intake",
                type="icrs.needs.assessed",
                subject=str(world.case_id),
                data={
                    "assessment_id": str(uuid.uuid4()),
                    "case_id": str(world.case_id),
                    "organization_id": str(REQUESTER),
                    "needs": [{"need_id": str(need), "category": "health", "priority": "high"}],
                },
            )
            for world, need in zip(worlds, needs, strict=True)
        ]
    )

    async def settled() -> bool:
        rows = [await world.need_row(need) for world, need in zip(worlds, needs, strict=True)]
        return all(r is not None and r.status in ("referred", "unmatched") for r in rows)

    await eventually(settled, within=15)
    async with referral.app.state.runtime.db.sessions() as session:
        live = (
            await session.execute(select(Referral).where(Referral.service_id == sid))  # type: ignore[arg-type]
        ).scalars()
        assert len(list(live)) == 2
    rows = [await world.need_row(need) for world, need in zip(worlds, needs, strict=True)]
    assert sorted(r.status for r in rows if r is not None) == ["referred"] * 2 + ["unmatched"] * 4


async def test_women_only_service(referral: ReferralService) -> None:
    world = World(referral)
    org = await world.organization()
    await world.service(org, category="gbv", eligibility={"sexes": ["female"]})
    await world.case(sex="male")
    await world.consent("gbv")
    need = await world.need("gbv")
    await world.wait_need(need, "unmatched", ["sex"])


async def test_a_manual_referral_is_still_checked(referral: ReferralService) -> None:
    world = World(referral)
    org = await world.organization()
    near = await world.service(org, service_areas=["SO1101"])
    far = await world.service(org, service_areas=["SO22"])
    full = await world.service(org, capacity={"maximum": 0, "accepting": True})
    await world.case()
    await world.consent("health")
    need = await world.need()
    [auto] = await world.wait_referrals(need, 1)
    assert auto.service_id == near

    async def refer(service_id: uuid.UUID, headers: dict[str, str] | None = None) -> Any:
        return await referral.client.post(
            "/v1/referrals",
            json={"need_id": str(need), "service_id": str(service_id)},
            headers=headers or world.requester,
        )

    r = await refer(far)
    assert r.status_code == 409  # referred already
    assert (await world.move(auto.id, world.requester, status="cancelled")).status_code == 200
    r = await refer(far)
    assert r.status_code == 409
    assert r.json()["type"] == "urn:icrs:problem:service-does-not-fit"
    assert r.json()["reasons"] == ["area"]
    assert (await refer(full)).json()["reasons"] == ["at-capacity"]
    other = referral.issuer.headers("referrals:write", organization_id=uuid.uuid4())
    assert (await refer(near, other)).status_code == 404
    r = await refer(near)
    assert r.status_code == 201, r.text
    assert r.json()["routing"] == {"chosen": str(near), "manual": True, "reasons": []}
    assert r.json()["attempt"] == 2


async def test_the_referral_report(referral: ReferralService) -> None:
    world = World(referral)
    org = await world.organization()
    await world.service(org, capacity={"maximum": 20, "accepting": True})
    await world.case()
    await world.consent("health", "legal")
    needs = [await world.need() for _ in range(6)]
    made = [(await world.wait_referrals(n, 1))[0] for n in needs]
    for i, one in enumerate(made):
        assert (await world.move(one.id, world.provider(org), status="accepted")).status_code == 200
        if i < 5:
            r = await world.move(
                one.id, world.provider(org), status="completed", outcome="service-provided"
            )
            assert r.status_code == 200
    legal = await world.need("legal")
    await world.wait_need(legal, "unmatched", ["no-service"])

    reports = referral.issuer.headers("reports:read", organization_id=REQUESTER)
    body = (await referral.client.get("/v1/reports/referrals", headers=reports)).json()
    assert body["total"] == 6
    assert body["by"]["need_category"] == [{"value": "health", "count": 6, "suppressed": False}]
    assert body["by"]["area"] == [{"value": "SO11", "count": 6, "suppressed": False}]
    # One accepted, five completed: the one is withheld, and so the five too.
    assert [c["suppressed"] for c in body["by"]["status"]] == [True, True]
    assert body["acceptance_rate"] == 1.0
    assert body["median_hours_to_accept"] is not None
    assert body["median_hours_to_complete"] is not None
    assert body["unmatched_by_reason"] == [
        {"value": "no-service", "count": None, "suppressed": True}
    ]
    provider = referral.issuer.headers("reports:read", organization_id=org)
    theirs = await referral.client.get(
        "/v1/reports/referrals", params={"side": "provider"}, headers=provider
    )
    assert theirs.json()["total"] == 6
    assert theirs.json()["unmatched_by_reason"] == []
    none = referral.issuer.headers("referrals:read", organization_id=REQUESTER)
    assert (await referral.client.get("/v1/reports/referrals", headers=none)).status_code == 403


async def test_erasure_cancels_the_cases_live_referrals(referral: ReferralService) -> None:
    world = World(referral)
    org = await world.organization()
    await world.service(org)
    await world.case()
    await world.consent("health")
    need = await world.need()
    [made] = await world.wait_referrals(need, 1)
    await world.send(
        "intake",
        "icrs.case.erased",
        world.case_id,
        case_id=str(world.case_id),
        organization_id=str(REQUESTER),
    )

    async def cancelled() -> bool:
        return (await world.referrals(need))[0].status == "cancelled"

    await eventually(cancelled, within=15)
    assert (await world.referrals(need))[0].reason == "case-erased"
    assert made.id == (await world.referrals(need))[0].id


async def test_routing_reads_of_a_service_do_not_grow_with_its_past(
    referral: ReferralService,
) -> None:
    """A service's load is its live referrals and its acceptance record its latest
    answered ones; both are read in one query, through partial indexes, whatever its
    history."""
    busy, quiet, old = uuid.uuid4(), uuid.uuid4(), datetime(2020, 1, 1, tzinfo=UTC)

    def row(status: str, at: datetime) -> Referral:
        return Referral(
            case_id=uuid.uuid4(),
            need_category="health",
            requester_organization_id=REQUESTER,
            organization_id=uuid.uuid4(),
            service_id=busy,
            status=status,
            created_at=at,
            updated_at=at,
        )

    db = referral.app.state.runtime.db
    async with db.transaction() as session:
        # Long ago it declined everything; of late it accepts everything.
        session.add_all(row("rejected", old + timedelta(minutes=i)) for i in range(300))
        recent = datetime.now(UTC) - timedelta(days=1)
        statuses = ["accepted", "in-progress", "completed", "failed"]
        session.add_all(
            row(statuses[i % 4], recent + timedelta(minutes=i)) for i in range(ACCEPTANCE_WINDOW)
        )
        session.add_all(row(s, recent) for s in ("requested", "received", "cancelled"))
    async with db.transaction() as session:
        loads, acceptance = await load_and_acceptance(session, [busy, quiet])
        # requested, received, and the accepted and in-progress half of the window
        assert loads == {busy: 2 + ACCEPTANCE_WINDOW // 2}
        assert acceptance == {busy: 1.0, quiet: NEUTRAL}
        if db.is_sqlite:
            return
        await session.execute(text("ANALYZE referrals"))
        with statements(db) as seen:
            await load_and_acceptance(session, [busy])
        conn = await session.connection()
        plans = []
        for statement in seen:
            explained = await conn.exec_driver_sql(
                "EXPLAIN " + statement.sql, tuple(statement.params)
            )
            plans.append("\n".join(r[0] for r in explained))
    [plan] = plans  # one query
    assert "ix_referrals_live_service" in plan, plan
    assert "ix_referrals_answered_service" in plan, plan
    assert "Limit" in plan, plan


async def test_a_routing_locks_every_capacity_of_the_category_before_choosing(
    referral: ReferralService,
) -> None:
    """Routings lock the places of all a category's services with a capacity, in one
    order, before counting loads: two routings cannot wait for each other in a circle.
    While another transaction holds the lock of a service it will not choose, a routing
    waits for it."""
    world = World(referral)
    org = await world.organization()
    near = await world.service(org, service_areas=["SO1101"])
    far = await world.service(org, service_areas=["SO11"])
    await world.case()
    await world.consent("health")
    db = referral.app.state.runtime.db

    async def known() -> bool:
        async with db.sessions() as session:
            query = select(KnownService).where(col(KnownService.id).in_([near, far]))
            return len((await session.execute(query)).all()) == 2

    await eventually(known, within=15)
    async with db.transaction() as session:
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _key("service", far)})
        need = await world.need()
        await asyncio.sleep(1.5)
        assert await world.referrals(need) == []  # waiting for the far service's lock
    [made] = await world.wait_referrals(need, 1)
    assert made.service_id == near


async def test_capacity_locks_are_taken_again_in_a_sessions_next_transaction(
    referral: ReferralService,
) -> None:
    service = KnownService(
        id=uuid.uuid4(),
        organization_id=uuid.uuid4(),
        category="health",
        status="active",
        maximum=2,
        event_time=datetime.now(UTC),
    )
    async with referral.app.state.runtime.db.sessions() as session:
        for _ in range(2):
            async with session.begin():
                assert await capacity_locks(session, [service])  # taken
                assert not await capacity_locks(session, [service])  # held already


async def test_a_view_entity_is_locked_once_under_the_routing_lock(
    referral: ReferralService,
) -> None:
    """An event's entity takes an advisory lock of its own unless the transaction holds
    the routing lock alone or the lock of the entity's case, which keep it apart already."""
    db = referral.app.state.runtime.db
    case_id, other = uuid.uuid4(), uuid.uuid4()

    async def advisory_locks(session: Any) -> int:
        query = text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        )
        return int((await session.execute(query)).scalar_one())

    async with db.transaction() as session:
        await view._locked(session, KnownCase, case_id, case_id=case_id)
        assert await advisory_locks(session) == 1
    async with db.transaction() as session:
        await routing_lock(session, case_id=case_id)
        assert await advisory_locks(session) == 2  # the routing lock shared, the case's
        await view._locked(session, KnownCase, case_id, case_id=case_id)
        assert await advisory_locks(session) == 2
        await view._locked(session, KnownCase, other, case_id=other)
        assert await advisory_locks(session) == 3
    async with db.transaction() as session:
        await routing_lock(session)
        await view._locked(session, KnownService, uuid.uuid4())
        await view._locked(session, KnownCase, other, case_id=other)
        assert await advisory_locks(session) == 1
    async with db.transaction() as session:  # a new transaction holds nothing
        await view._locked(session, KnownService, uuid.uuid4())
        assert await advisory_locks(session) == 1
