"""Routes of needs assessments (contract §5): record one, read them."""

from __future__ import annotations

import json
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError

from icrs_shared.auth import Caller, require_scopes
from icrs_shared.errors import Conflict
from icrs_shared.http import Idempotency
from icrs_shared.pagination import Page
from icrs_shared.runtime import RuntimeDep, SessionDep

from ..cases import service as cases
from ..models import idempotency_keys
from ..state import KeyringDep, organization_of
from . import service as needs
from .schemas import AssessmentCreate, AssessmentOut, NeedOut

router = APIRouter(prefix="/v1/cases", tags=["assessments"])

Writer = Annotated[Caller, Depends(require_scopes("cases:write"))]
Reader = Annotated[Caller, Depends(require_scopes("cases:read"))]
CaseId = Annotated[uuid.UUID, Path(description="The case's id.")]
AssessmentId = Annotated[uuid.UUID, Path(description="The assessment's id.")]


def render(recorded: needs.Recorded, data_key: bytes | None) -> AssessmentOut:
    a = recorded.assessment
    return AssessmentOut(
        id=a.id,
        case_id=a.case_id,
        needs=[
            NeedOut(
                id=n.id,
                category=n.category,
                priority=n.priority,
                note=needs.note_of(n, data_key),
                share_note=n.share_note,
                status=n.status,
            )
            for n in recorded.needs
        ],
        recorded_by=a.recorded_by,
        created_at=a.created_at,
    )


@router.post(
    "/{case_id}/assessments",
    status_code=201,
    response_model=AssessmentOut,
    summary="Record a needs assessment",
    description=(
        "Each need: a category of service, a priority, and a note the provider may read in "
        "the referral view only when `share_note` is true. Emits `needs.assessed`, which "
        "starts routing, and `plan.updated`: the needs are the plan's items. A closed or "
        "erased case takes no assessment (409). Accepts `Idempotency-Key`."
    ),
    responses={409: {"description": "The case is closed or erased."}},
)
async def record_assessment(
    case_id: CaseId,
    body: AssessmentCreate,
    request: Request,
    caller: Writer,
    session: SessionDep,
    runtime: RuntimeDep,
    keyring: KeyringDep,
) -> JSONResponse:
    case = await cases.get(session, case_id, organization_of(caller))
    data_key = await cases.data_key(session, keyring, case)
    idem = await Idempotency.begin(session, idempotency_keys, request, caller.client_id)
    if idem.replay is not None:
        # Only the id is kept with the key (never a note): answer from the assessment.
        stored = uuid.UUID(json.loads(bytes(idem.replay.body))["id"])
        recorded = await needs.get(session=session, case=case, assessment_id=stored)
        return _created(recorded, data_key, replayed=True)
    recorded = await needs.assess(
        session=session,
        outbox=runtime.messaging.outbox,
        case=case,
        data_key=data_key,
        needs=body.needs,
        actor=caller.client_id,
    )
    await idem.save(session, 201, {"id": str(recorded.assessment.id)})
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise Conflict("a request with this Idempotency-Key is in progress: retry") from None
    return _created(recorded, data_key)


def _created(
    recorded: needs.Recorded, data_key: bytes | None, *, replayed: bool = False
) -> JSONResponse:
    a = recorded.assessment
    headers = {"Location": f"/v1/cases/{a.case_id}/assessments/{a.id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    content = jsonable_encoder(render(recorded, data_key))
    return JSONResponse(content, status_code=201, headers=headers)


@router.get(
    "/{case_id}/assessments",
    summary="List a case's needs assessments",
    description="Newest first, each with its needs (notes in clear) and their status.",
)
async def list_assessments(
    case_id: CaseId, caller: Reader, session: SessionDep, keyring: KeyringDep
) -> Page[AssessmentOut]:
    case = await cases.get(session, case_id, organization_of(caller))
    data_key = await cases.data_key(session, keyring, case)
    found = await needs.list_for(session=session, case=case)
    return Page[AssessmentOut](items=[render(r, data_key) for r in found])


@router.get("/{case_id}/assessments/{assessment_id}", summary="Read a needs assessment")
async def read_assessment(
    case_id: CaseId,
    assessment_id: AssessmentId,
    caller: Reader,
    session: SessionDep,
    keyring: KeyringDep,
) -> AssessmentOut:
    case = await cases.get(session, case_id, organization_of(caller))
    data_key = await cases.data_key(session, keyring, case)
    recorded = await needs.get(session=session, case=case, assessment_id=assessment_id)
    return render(recorded, data_key)
