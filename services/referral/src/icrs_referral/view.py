"""The referral service's view of the other services, kept from their events.

Events may come late or twice; the view converges whatever the order:
- an organization follows its latest event by time;
- a service and a case follow their latest (version, time);
- an erased case stays erased, a withdrawn consent stays withdrawn;
- a need is recorded once, from the first `needs.assessed` that names it.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel

from icrs_shared.events import Envelope
from icrs_shared.events.catalog import (
    CaseErased,
    CaseEvent,
    ConsentEvent,
    NeedsAssessed,
    OrganizationEvent,
    ServiceEvent,
)

from .models import KnownCase, KnownConsent, KnownNeed, KnownOrganization, KnownService
from .router import routes_alone

M = TypeVar("M", bound=SQLModel)


async def _locked(
    session: AsyncSession, model: type[M], key: uuid.UUID, *, case_id: uuid.UUID | None = None
) -> M | None:
    """The row of `key`, with the entity locked until the transaction ends, whether or not
    it has a row yet: two events about a new entity then apply one after the other
    instead of both inserting it. A routing lock that the transaction holds alone, or
    holds for the entity's case (`case_id`), locks it already."""
    if session.get_bind().dialect.name == "postgresql" and not routes_alone(session, case_id):
        digest = hashlib.sha256(f"{model.__name__}:{key}".encode()).digest()
        lock = int.from_bytes(digest[:8], "big", signed=True)
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock})
    return await session.get(model, key)


async def organization(session: AsyncSession, envelope: Envelope) -> None:
    data = OrganizationEvent.model_validate(envelope.data)
    row = await _locked(session, KnownOrganization, data.organization_id)
    if row is not None and row.event_time >= envelope.time:
        return
    row = row or KnownOrganization(id=data.organization_id, kind=data.kind, status=data.status)
    row.kind, row.status = data.kind, data.status
    row.child_safeguarding = data.child_safeguarding
    row.event_time = envelope.time
    session.add(row)


async def service(session: AsyncSession, envelope: Envelope) -> None:
    data = ServiceEvent.model_validate(envelope.data)
    row = await _locked(session, KnownService, data.service_id)
    if row is not None and (row.version, row.event_time) >= (data.version, envelope.time):
        return
    withdrawn = envelope.type == "icrs.service.withdrawn"
    status = data.status if not withdrawn or data.status != "active" else "withdrawn"
    fields: dict[str, Any] = {
        "organization_id": data.organization_id,
        "category": data.category,
        "status": status,
        "areas": list(data.service_areas),
        "languages": list(data.languages),
        "eligibility": data.eligibility.model_dump(),
        "maximum": data.capacity.maximum,
        "accepting": data.capacity.accepting,
        "accept_within_seconds": data.accept_within_seconds,
        "version": data.version,
        "event_time": envelope.time,
    }
    if row is None:
        row = KnownService(id=data.service_id, **fields)
    else:
        for name, value in fields.items():
            setattr(row, name, value)
    session.add(row)


async def case(session: AsyncSession, envelope: Envelope) -> None:
    if envelope.type == "icrs.case.erased":
        erased = CaseErased.model_validate(envelope.data)
        row = await _locked(session, KnownCase, erased.case_id, case_id=erased.case_id)
        row = row or KnownCase(id=erased.case_id, organization_id=erased.organization_id)
        row.status, row.event_time = "erased", max(row.event_time, envelope.time)
        session.add(row)
        return
    if envelope.type == "icrs.case.accessed":
        return
    data = CaseEvent.model_validate(envelope.data)
    row = await _locked(session, KnownCase, data.case_id, case_id=data.case_id)
    if row is not None and (
        row.status == "erased" or (row.version, row.event_time) >= (data.version, envelope.time)
    ):
        return
    row = row or KnownCase(id=data.case_id, organization_id=data.organization_id)
    row.organization_id = data.organization_id
    row.is_minor, row.sex, row.age_band = data.is_minor, data.sex, data.age_band
    row.area, row.languages = data.area, list(data.languages)
    row.beneficiary_category = data.beneficiary_category
    row.programme_track = data.programme_track
    row.status, row.version, row.event_time = data.status, data.version, envelope.time
    session.add(row)


async def consent(session: AsyncSession, envelope: Envelope) -> None:
    data = ConsentEvent.model_validate(envelope.data)
    row = await _locked(session, KnownConsent, data.consent_id, case_id=data.case_id)
    withdrawn = envelope.type == "icrs.consent.withdrawn" or data.status == "withdrawn"
    if row is not None and (row.withdrawn or not withdrawn):
        return  # granted once is all a grant says; withdrawn is final
    row = row or KnownConsent(id=data.consent_id, case_id=data.case_id)
    row.purposes = list(data.purposes)
    row.categories = list(data.recipient_categories)
    row.organizations = [str(o) for o in data.recipient_organizations]
    row.expires_at = data.expires_at
    row.withdrawn = withdrawn
    row.event_time = envelope.time
    session.add(row)


async def needs(session: AsyncSession, envelope: Envelope) -> list[KnownNeed]:
    """The needs the assessment adds to the view (those not seen before)."""
    data = NeedsAssessed.model_validate(envelope.data)
    added = []
    for need in data.needs:
        if await _locked(session, KnownNeed, need.need_id, case_id=data.case_id) is not None:
            continue
        row = KnownNeed(
            id=need.need_id,
            case_id=data.case_id,
            assessment_id=data.assessment_id,
            requester_organization_id=data.organization_id,
            category=need.category,
            priority=need.priority,
        )
        session.add(row)
        added.append(row)
    return added
