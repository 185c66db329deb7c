"""The referral view route (contract §5): what a provider may see of a case."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from icrs_shared.auth import Caller, require_scopes
from icrs_shared.runtime import RuntimeDep, SessionDep

from ..state import KeyringDep, organization_of
from . import service as views
from .schemas import ReferralView

router = APIRouter(prefix="/v1/cases", tags=["referral view"])

Provider = Annotated[Caller, Depends(require_scopes("referrals:respond"))]
CaseId = Annotated[uuid.UUID, Path(description="The case's id.")]


@router.get(
    "/{case_id}/referral-view",
    response_model=ReferralView,
    response_model_exclude_none=True,
    summary="Read what a referral's provider may see of the case",
    description=(
        "For an organization that holds a referral for the case in a live state (requested, "
        "received, accepted, in-progress, on-hold); 404 for any other. Only while an active "
        "consent of the person for `referral` names the organization or the need's category "
        "of service (403 `consent-required` otherwise). Shows the fields that category of "
        "service needs, the need, and its note when the caseworker shared it; a field that "
        "is absent was not shared. Name `referral_id` when the organization holds several "
        "live referrals for the case. Every read emits `case.accessed`."
    ),
    responses={403: {"description": "No consent covers the organization for this need."}},
)
async def read_referral_view(
    case_id: CaseId,
    response: Response,
    caller: Provider,
    session: SessionDep,
    runtime: RuntimeDep,
    keyring: KeyringDep,
    referral_id: Annotated[
        uuid.UUID | None, Query(description="The referral the view is for.")
    ] = None,
) -> ReferralView:
    view = await views.read(
        session=session,
        outbox=runtime.messaging.outbox,
        keyring=keyring,
        case_id=case_id,
        organization_id=organization_of(caller),
        referral_id=referral_id,
        actor=caller.client_id,
    )
    await session.commit()
    response.headers["Cache-Control"] = "no-store"
    return view
