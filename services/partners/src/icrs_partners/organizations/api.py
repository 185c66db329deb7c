"""Routes of the partners service: organizations and their OAuth clients (contract §4)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from icrs_shared.auth import Caller, require_scopes
from icrs_shared.errors import PROBLEM_JSON, problem_body
from icrs_shared.http import Idempotency, etag, require_if_match, set_etag
from icrs_shared.pagination import Cursor, Limit, Page
from icrs_shared.runtime import RuntimeDep, SessionDep
from icrs_shared.text import SearchText

from ..models import Organization, idempotency_keys
from ..scopes import Kind
from . import service
from .schemas import (
    ClientCreate,
    ClientIssued,
    ClientOut,
    OrganizationCreate,
    OrganizationOut,
    OrganizationStatus,
    VerifyRequest,
)

router = APIRouter(prefix="/v1/organizations", tags=["organizations"])

Admin = Annotated[Caller, Depends(require_scopes(service.ADMIN_SCOPE))]
Authenticated = Annotated[Caller, Depends(require_scopes())]
OrganizationId = Annotated[uuid.UUID, Path(description="The organization's id.")]
ClientId = Annotated[SearchText, Path(max_length=64, description="The client's `client_id`.")]

_ETAG_HEADER = {
    "ETag": {"description": "The organization's version.", "schema": {"type": "string"}}
}
_TRANSITION_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"headers": _ETAG_HEADER},
    409: {"description": "Not allowed in the organization's status; `allowed` names what is."},
    412: {"description": "If-Match names another version."},
}


def _organization(org: Organization, response: Response) -> OrganizationOut:
    set_etag(response, etag(org.id, org.version))
    return OrganizationOut.of(org, show_contact=True)


def _precondition(request: Request) -> service.Precondition | None:
    """If-Match is optional on state changes; when sent, it must name the current version."""
    if request.headers.get("if-match") is None:
        return None
    return lambda current: require_if_match(request, current)


# Organizations -------------------------------------------------------------------


@router.post(
    "",
    status_code=201,
    response_model=OrganizationOut,
    summary="Register an organization",
    description=(
        "Starts `pending`: it gets no tokens and no referrals until verified. Accepts "
        "`Idempotency-Key`: a retry with the same key and body answers as the first request "
        "did; the same key with another body answers 409."
    ),
    responses={201: {"headers": {"Location": {"schema": {"type": "string"}}, **_ETAG_HEADER}}},
)
async def register_organization(
    body: OrganizationCreate,
    request: Request,
    caller: Admin,
    session: SessionDep,
    runtime: RuntimeDep,
) -> Response:
    idem = await Idempotency.begin(session, idempotency_keys, request, caller.client_id)
    if idem.replay is not None:
        return idem.replay
    org = await service.register(
        session=session, outbox=runtime.messaging.outbox, data=body, actor=caller
    )
    content = jsonable_encoder(OrganizationOut.of(org, show_contact=True))
    headers = {"Location": f"/v1/organizations/{org.id}", "ETag": etag(org.id, org.version)}
    await idem.save(session, 201, content, headers)
    replay = await idem.commit(session, request)
    return replay or JSONResponse(content, status_code=201, headers=headers)


@router.get("", summary="List organizations")
async def list_organizations(
    caller: Admin,
    session: SessionDep,
    status: Annotated[OrganizationStatus | None, Query()] = None,
    kind: Annotated[Kind | None, Query()] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[OrganizationOut]:
    rows, next_cursor = await service.list_organizations(
        session=session, status=status, kind=kind, limit=limit, cursor=cursor
    )
    items = [OrganizationOut.of(org, show_contact=True) for org in rows]
    return Page[OrganizationOut](items=items, next_cursor=next_cursor)


@router.get(
    "/{organization_id}",
    summary="Read an organization",
    description=(
        "The administrator reads any organization, a client its own organization; with "
        "`partners:read`, active organizations are readable without their contact details."
    ),
    responses={200: {"headers": _ETAG_HEADER}},
)
async def get_organization(
    organization_id: OrganizationId, response: Response, caller: Authenticated, session: SessionDep
) -> OrganizationOut:
    org, show_contact = await service.read(
        session=session, organization_id=organization_id, caller=caller
    )
    set_etag(response, etag(org.id, org.version))
    return OrganizationOut.of(org, show_contact=show_contact)


@router.post(
    "/{organization_id}/verify",
    summary="Verify an organization",
    description=(
        "pending → active: its active services enter routing (`service.published`). On an "
        "active organization, records `child_safeguarding` anew. A suspended organization "
        "is reactivated instead (409)."
    ),
    responses=_TRANSITION_RESPONSES,
)
async def verify_organization(
    organization_id: OrganizationId,
    request: Request,
    response: Response,
    caller: Admin,
    session: SessionDep,
    runtime: RuntimeDep,
    body: VerifyRequest | None = None,
) -> OrganizationOut:
    org = await service.verify(
        session=session,
        outbox=runtime.messaging.outbox,
        organization_id=organization_id,
        child_safeguarding=body.child_safeguarding if body is not None else None,
        actor=caller,
        precondition=_precondition(request),
    )
    await session.commit()
    return _organization(org, response)


@router.post(
    "/{organization_id}/suspend",
    summary="Suspend an organization",
    description=(
        "Takes effect at once: its clients get no more tokens and its services leave "
        "routing (`service.withdrawn`). The platform organization cannot be suspended."
    ),
    responses=_TRANSITION_RESPONSES,
)
async def suspend_organization(
    organization_id: OrganizationId,
    request: Request,
    response: Response,
    caller: Admin,
    session: SessionDep,
    runtime: RuntimeDep,
) -> OrganizationOut:
    org = await service.suspend(
        session=session,
        outbox=runtime.messaging.outbox,
        organization_id=organization_id,
        actor=caller,
        precondition=_precondition(request),
    )
    await session.commit()
    return _organization(org, response)


@router.post(
    "/{organization_id}/reactivate",
    summary="Reactivate a suspended organization",
    description=(
        "Back to active if it had been verified (its active services are published again), "
        "else back to pending."
    ),
    responses=_TRANSITION_RESPONSES,
)
async def reactivate_organization(
    organization_id: OrganizationId,
    request: Request,
    response: Response,
    caller: Admin,
    session: SessionDep,
    runtime: RuntimeDep,
) -> OrganizationOut:
    org = await service.reactivate(
        session=session,
        outbox=runtime.messaging.outbox,
        organization_id=organization_id,
        actor=caller,
        precondition=_precondition(request),
    )
    await session.commit()
    return _organization(org, response)


# Clients -------------------------------------------------------------------------


@router.post(
    "/{organization_id}/clients",
    status_code=201,
    response_model=ClientIssued,
    tags=["clients"],
    summary="Issue an OAuth client",
    description=(
        "`scopes` must be within what the organization's kind allows (422 names those that "
        "are not). The `client_secret` is in this answer only; it is stored hashed and can "
        "never be shown again. Accepts `Idempotency-Key`, but since secrets are never "
        "stored, a retry with the same key does not repeat the answer: it answers 409 "
        "`client-already-issued` with the `client_id` that was issued. If that first answer "
        "was lost, revoke that client and issue another."
    ),
    responses={409: {"description": "The organization is suspended, or already issued."}},
)
async def issue_client(
    organization_id: OrganizationId,
    body: ClientCreate,
    request: Request,
    caller: Admin,
    session: SessionDep,
    runtime: RuntimeDep,
) -> Response:
    idem = await Idempotency.begin(session, idempotency_keys, request, caller.client_id)
    if idem.replay is not None:
        return idem.replay
    client, secret = await service.issue_client(
        session=session,
        outbox=runtime.messaging.outbox,
        organization_id=organization_id,
        data=body,
        actor=caller,
    )
    already = problem_body(
        409,
        code="client-already-issued",
        title="Client already issued",
        detail="a client was issued for this Idempotency-Key; its secret is shown only once",
        extra={"client_id": client.client_id, "organization_id": str(organization_id)},
    )
    await idem.save(session, 409, already, {"Content-Type": PROBLEM_JSON})
    replay = await idem.commit(session, request)
    if replay is not None:
        return replay
    issued = ClientIssued(
        client_id=client.client_id,
        client_secret=secret,
        name=client.name,
        organization_id=client.organization_id,
        scopes=sorted(client.scopes),
        created_at=client.created_at,
    )
    return JSONResponse(
        jsonable_encoder(issued),
        status_code=201,
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


@router.get(
    "/{organization_id}/clients",
    tags=["clients"],
    summary="List an organization's clients",
    description="Revoked clients included, with `revoked_at`. Never a secret nor its hash.",
)
async def list_clients(
    organization_id: OrganizationId,
    caller: Admin,
    session: SessionDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[ClientOut]:
    rows, next_cursor = await service.list_clients(
        session=session, organization_id=organization_id, limit=limit, cursor=cursor
    )
    return Page[ClientOut](items=[ClientOut.of(c) for c in rows], next_cursor=next_cursor)


@router.delete(
    "/{organization_id}/clients/{client_id}",
    status_code=204,
    tags=["clients"],
    summary="Revoke a client",
    description=(
        "It gets no new tokens (those already issued expire within their lifetime). "
        "Revoking a revoked client answers 204."
    ),
    response_class=Response,
)
async def revoke_client(
    organization_id: OrganizationId,
    client_id: ClientId,
    caller: Admin,
    session: SessionDep,
    runtime: RuntimeDep,
) -> Response:
    await service.revoke_client(
        session=session,
        outbox=runtime.messaging.outbox,
        organization_id=organization_id,
        client_id=client_id,
        actor=caller,
    )
    await session.commit()
    return Response(status_code=204)
