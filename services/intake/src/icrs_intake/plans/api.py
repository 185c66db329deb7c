"""Routes of the reintegration plan (contract §5): read it, set its goals and review date."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response

from icrs_shared.auth import Caller, require_scopes
from icrs_shared.http import etag, require_if_match, set_etag
from icrs_shared.runtime import RuntimeDep, SessionDep

from ..cases import service as cases
from ..state import KeyringDep, organization_of
from . import service as plans
from .schemas import PlanOut, PlanUpdate

router = APIRouter(prefix="/v1/cases", tags=["plans"])

Writer = Annotated[Caller, Depends(require_scopes("cases:write"))]
Reader = Annotated[Caller, Depends(require_scopes("cases:read"))]
CaseId = Annotated[uuid.UUID, Path(description="The case's id.")]

_ETAG = {"ETag": {"description": "The plan's version.", "schema": {"type": "string"}}}


@router.get(
    "/{case_id}/plan",
    summary="Read the reintegration plan",
    description=(
        "Its goals and review date, and its items: each need of the case with the state of "
        "its latest referral (`open` before any, `unmatched` when no service fits). The "
        "version, and the ETag, change with every change to the plan, an item's included."
    ),
    responses={200: {"headers": _ETAG}},
)
async def read_plan(
    case_id: CaseId, response: Response, caller: Reader, session: SessionDep, keyring: KeyringDep
) -> PlanOut:
    opened = await cases.open_case(
        session, keyring, await cases.get(session, case_id, organization_of(caller))
    )
    plan = await plans.read(session=session, case=opened.case, data_key=opened.data_key)
    set_etag(response, etag(case_id, plan.version))
    return plan


@router.put(
    "/{case_id}/plan",
    summary="Set the plan's goals and review date",
    description=(
        "Replaces both (null clears one). Needs `If-Match` with the plan's ETag once the "
        "plan has a version (428 without, 412 when it changed); before that, `If-Match` is "
        "optional. The items follow the referrals and are not set here. Emits `plan.updated`."
    ),
    responses={200: {"headers": _ETAG}, 409: {"description": "The case is closed or erased."}},
)
async def update_plan(
    case_id: CaseId,
    body: PlanUpdate,
    request: Request,
    response: Response,
    caller: Writer,
    session: SessionDep,
    runtime: RuntimeDep,
    keyring: KeyringDep,
) -> PlanOut:
    case = await cases.get(session, case_id, organization_of(caller))
    existing = await plans.current(session=session, case_id=case.id)
    version = existing.version if existing is not None else 0
    if existing is not None or request.headers.get("if-match") is not None:
        require_if_match(request, etag(case.id, version))
    opened = await cases.open_case(session, keyring, case)
    plan = await plans.update_plan(
        session=session,
        outbox=runtime.messaging.outbox,
        case=case,
        data_key=opened.data_key,
        data=body,
        version=version,
        actor=caller.client_id,
    )
    await session.commit()
    set_etag(response, etag(case.id, plan.version))
    return plan
