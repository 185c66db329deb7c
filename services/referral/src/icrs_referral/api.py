"""Routes of the referral service (contract §6)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icrs_shared.auth import Caller, organization_of, require_any_scope, require_scopes
from icrs_shared.errors import FieldError, Forbidden, Invalid
from icrs_shared.http import etag, require_if_match, set_etag
from icrs_shared.pagination import Cursor, Limit, Page, decode_keyset, encode_keyset
from icrs_shared.runtime import ReadingDep, RuntimeDep, SessionDep
from icrs_shared.times import Instant

from . import service
from .lifecycle import LIVE, STATUSES, allowed
from .models import KnownNeed, Referral
from .router import routing_lock
from .schemas import ManualReferral, ReferralOut, StatusChange
from .settings import ReferralSettings

router = APIRouter(prefix="/v1/referrals", tags=["referrals"])

Provider = Annotated[Caller, Depends(require_scopes(service.RESPOND))]
Requester = Annotated[Caller, Depends(require_scopes(service.READ))]
Party = Annotated[Caller, Depends(require_any_scope(service.READ, service.RESPOND, service.WRITE))]
Writer = Annotated[Caller, Depends(require_scopes(service.WRITE))]
Mover = Annotated[Caller, Depends(require_any_scope(service.RESPOND, service.WRITE))]
StatusFilter = Annotated[
    list[str] | None,
    Query(
        description="Only these statuses.", json_schema_extra={"items": {"enum": list(STATUSES)}}
    ),
]
_ETAG = {"ETag": {"description": "The referral's version.", "schema": {"type": "string"}}}


def _settings(request: Request) -> ReferralSettings:
    settings = request.app.state.runtime.settings
    assert isinstance(settings, ReferralSettings)
    return settings


@dataclass(frozen=True)
class _Listing:
    """The page of a list of referrals asked for (the query parameters of every list)."""

    statuses: list[str] | None
    updated_after: datetime | None
    limit: int
    cursor: str | None


async def _listing(
    status: StatusFilter = None,
    updated_after: Annotated[Instant | None, Query()] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> _Listing:
    return _Listing(statuses=status, updated_after=updated_after, limit=limit, cursor=cursor)


Listing = Annotated[_Listing, Depends(_listing)]


async def _page(
    session: AsyncSession, listing: _Listing, party: ColumnElement[bool]
) -> Page[ReferralOut]:
    """The referrals `party` selects, oldest change first, so that polling with
    `updated_after` misses nothing."""
    query = select(Referral).where(party)
    if statuses := listing.statuses:
        if set(statuses) - set(STATUSES):
            raise Invalid(
                "unknown status",
                errors=[FieldError(field="query.status", message="not a status", code="enum")],
            )
        query = query.where(col(Referral.status).in_(statuses))
    if listing.updated_after is not None:
        query = query.where(col(Referral.updated_at) > listing.updated_after)
    after = decode_keyset(listing.cursor, uuid.UUID)
    if after is not None:
        at, last = after
        query = query.where(
            or_(
                col(Referral.updated_at) > at,
                and_(col(Referral.updated_at) == at, col(Referral.id) > last),
            )
        )
    query = query.order_by(col(Referral.updated_at), col(Referral.id)).limit(listing.limit)
    rows = (await session.execute(query)).scalars().all()
    next_cursor = None
    if len(rows) == listing.limit:
        next_cursor = encode_keyset(rows[-1].updated_at, rows[-1].id)
    return Page[ReferralOut](items=[ReferralOut.of(r) for r in rows], next_cursor=next_cursor)


@router.get(
    "/inbox",
    summary="The organization's referral inbox",
    description="Referrals to the caller's organization's services, oldest change first; "
    "poll with `updated_after` or follow `next_cursor`.",
)
async def inbox(caller: Provider, session: ReadingDep, listing: Listing) -> Page[ReferralOut]:
    party = col(Referral.organization_id) == organization_of(caller)
    return await _page(session, listing, party)


@router.get("", summary="Referrals of the organization's cases")
async def requested(caller: Requester, session: ReadingDep, listing: Listing) -> Page[ReferralOut]:
    party = col(Referral.requester_organization_id) == organization_of(caller)
    return await _page(session, listing, party)


@router.post(
    "",
    status_code=201,
    summary="Refer a need to a chosen service",
    description=(
        "For a need of the caller's organization's case that has no live referral. The "
        "service must still fit (area, eligibility, minors, consent, capacity): otherwise "
        "409 `service-does-not-fit` with the reasons."
    ),
    responses={201: {"headers": _ETAG}, 409: {"description": "Referred already, or no fit."}},
)
async def refer(
    body: ManualReferral,
    response: Response,
    caller: Writer,
    session: SessionDep,
    runtime: RuntimeDep,
) -> ReferralOut:
    need = await session.get(KnownNeed, body.need_id)
    await routing_lock(session, case_id=need.case_id if need is not None else None)
    referral = await service.refer_manually(
        session=session,
        outbox=runtime.messaging.outbox,
        caller=caller,
        need_id=body.need_id,
        service_id=body.service_id,
        now=datetime.now(UTC),
    )
    await session.commit()
    set_etag(response, etag(referral.id, referral.version))
    response.headers["Location"] = f"/v1/referrals/{referral.id}"
    return ReferralOut.of(referral)


@router.get("/{referral_id}", summary="Read a referral", responses={200: {"headers": _ETAG}})
async def read(
    referral_id: uuid.UUID, response: Response, caller: Party, session: SessionDep
) -> ReferralOut:
    referral = await service.get_visible(session, referral_id, caller)
    set_etag(response, etag(referral.id, referral.version))
    return ReferralOut.of(referral)


@router.post(
    "/{referral_id}/status",
    summary="Move a referral",
    description=(
        "The provider (referrals:respond) sets received, accepted, rejected (with a reason), "
        "in-progress, on-hold, completed (with an outcome) and failed; the requester "
        "(referrals:write) sets cancelled and entered-in-error. A move not in the lifecycle "
        "answers 409 naming the allowed ones; another party's move 403. `If-Match` is "
        "optional; when sent it must name the current version (412), so two answers at "
        "once cannot both win."
    ),
    responses={200: {"headers": _ETAG}, 409: {"description": "Not allowed from this status."}},
)
async def change_status(
    referral_id: uuid.UUID,
    body: StatusChange,
    request: Request,
    response: Response,
    caller: Mover,
    session: SessionDep,
    runtime: RuntimeDep,
) -> ReferralOut:
    # The routing lock comes before the referral's row lock, as every router takes them.
    # A move to a live status routes nothing; a rejection routes its need again (its case
    # only); any other end frees a place, which may route any case.
    if body.status not in LIVE:
        visible = await service.get_visible(session, referral_id, caller)
        rerouted = body.status in ("rejected", "expired")
        await routing_lock(session, case_id=visible.case_id if rerouted else None)
    referral = await service.get_visible(session, referral_id, caller, for_update=True)
    if request.headers.get("if-match") is not None:
        require_if_match(request, etag(referral.id, referral.version))
    sides = service.side(caller, referral)
    if not sides:
        raise Forbidden("the token's scopes do not let it move this referral")
    actor = (
        "provider"
        if "provider" in sides
        and ("requester" not in sides or body.status in allowed(referral.status, "provider"))
        else "requester"
    )
    settings = _settings(request)
    await service.move(
        session=session,
        outbox=runtime.messaging.outbox,
        referral=referral,
        target=body.status,
        actor=actor,
        actor_id=caller.client_id,
        reason=body.reason,
        outcome=body.outcome,
        max_attempts=settings.referral_max_attempts,
        now=datetime.now(UTC),
    )
    await session.commit()
    set_etag(response, etag(referral.id, referral.version))
    return ReferralOut.of(referral)
