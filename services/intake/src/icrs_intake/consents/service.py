"""Consent per purpose and recipient: granting, reading, withdrawing, and which consent
covers a provider. Functions here never commit: the request does.

A consent is stored `active` or `withdrawn`; `expired` is read from `expires_at`, so it
needs no job to flip it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icrs_shared.errors import Conflict, FieldError, Invalid, NotFound
from icrs_shared.events.catalog import ConsentEvent
from icrs_shared.outbox import Outbox

from ..models import Case, Consent
from .schemas import ConsentCreate, ConsentStatus


def status_of(consent: Consent, now: datetime | None = None) -> ConsentStatus:
    if consent.status == "withdrawn":
        return "withdrawn"
    expires = consent.expires_at
    if expires is None:
        return "active"
    if expires.tzinfo is None:  # SQLite gives back naive UTC times
        expires = expires.replace(tzinfo=UTC)
    return "expired" if expires <= (now or datetime.now(UTC)) else "active"


def _event(consent: Consent, status: ConsentStatus) -> ConsentEvent:
    return ConsentEvent(
        consent_id=consent.id,
        case_id=consent.case_id,
        organization_id=consent.organization_id,
        purposes=list(consent.purposes),
        recipient_categories=list(consent.recipient_categories),
        recipient_organizations=[uuid.UUID(o) for o in consent.recipient_organizations],
        given_by="guardian" if consent.given_by == "guardian" else "self",
        expires_at=consent.expires_at,
        status=status,
    )


async def grant(
    *, session: AsyncSession, outbox: Outbox, case: Case, data: ConsentCreate, actor: str
) -> Consent:
    """Record a consent and emit `consent.granted`; only on an open case."""
    if case.status != "open":
        raise Conflict(f"a case that is {case.status} takes no new consent")
    if case.is_minor and data.given_by != "guardian":
        raise Invalid(
            "the person is a minor: a guardian gives consent",
            errors=[
                FieldError(
                    field="given_by",
                    message="a minor's consent is given by a guardian",
                    code="guardian_required",
                )
            ],
        )
    consent = Consent(
        case_id=case.id,
        organization_id=case.organization_id,
        purposes=list(data.purposes),
        recipient_categories=list(data.recipients.categories),
        recipient_organizations=[str(o) for o in data.recipients.organizations],
        given_by=data.given_by,
        expires_at=data.expires_at,
        recorded_by=actor,
    )
    session.add(consent)
    await session.flush()
    await outbox.emit(
        session,
        "icrs.consent.granted",
        _event(consent, "active"),
        subject=consent.id,
        actor=actor,
        actororg=case.organization_id,
    )
    return consent


async def get(
    *, session: AsyncSession, case: Case, consent_id: uuid.UUID, for_update: bool = False
) -> Consent:
    consent = await session.get(
        Consent, consent_id, with_for_update=for_update, populate_existing=for_update
    )
    if consent is None or consent.case_id != case.id:
        raise NotFound("no such consent")
    return consent


async def list_for(*, session: AsyncSession, case: Case) -> Sequence[Consent]:
    query = (
        select(Consent)
        .where(col(Consent.case_id) == case.id)
        .order_by(col(Consent.created_at).desc(), col(Consent.id))
    )
    return (await session.execute(query)).scalars().all()


async def withdraw(
    *, session: AsyncSession, outbox: Outbox, case: Case, consent_id: uuid.UUID, actor: str
) -> Consent:
    """Withdraw a consent (active or expired) and emit `consent.withdrawn`, whatever the
    case's status: a person may always take consent back. Withdrawing a withdrawn consent
    changes nothing and emits nothing, so that a retry is harmless."""
    consent = await get(session=session, case=case, consent_id=consent_id, for_update=True)
    if consent.status == "withdrawn":
        return consent
    consent.status, consent.withdrawn_at = "withdrawn", datetime.now(UTC)
    session.add(consent)
    await session.flush()
    await outbox.emit(
        session,
        "icrs.consent.withdrawn",
        _event(consent, "withdrawn"),
        subject=consent.id,
        actor=actor,
        actororg=case.organization_id,
    )
    return consent


async def covering(
    *,
    session: AsyncSession,
    case_id: uuid.UUID,
    purpose: str,
    organization_id: uuid.UUID,
    category: str,
) -> Consent | None:
    """An active consent of the case for `purpose` that names the organization or the
    category of service; None when no consent covers them."""
    query = select(Consent).where(col(Consent.case_id) == case_id, col(Consent.status) == "active")
    now = datetime.now(UTC)
    for consent in (await session.execute(query)).scalars():
        if status_of(consent, now) != "active" or purpose not in consent.purposes:
            continue
        named = str(organization_id) in consent.recipient_organizations
        if named or category in consent.recipient_categories:
            return consent
    return None
