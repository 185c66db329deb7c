"""Routes of consents (contract §5): grant, list, read, withdraw."""

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
from ..models import Consent, idempotency_keys
from ..state import organization_of
from . import service as consents
from .schemas import ConsentCreate, ConsentOut, RecipientsOut

router = APIRouter(prefix="/v1/cases", tags=["consents"])

Writer = Annotated[Caller, Depends(require_scopes("cases:write"))]
Reader = Annotated[Caller, Depends(require_scopes("cases:read"))]
CaseId = Annotated[uuid.UUID, Path(description="The case's id.")]
ConsentId = Annotated[uuid.UUID, Path(description="The consent's id.")]


def render(consent: Consent) -> ConsentOut:
    return ConsentOut(
        id=consent.id,
        case_id=consent.case_id,
        purposes=list(consent.purposes),
        recipients=RecipientsOut(
            categories=list(consent.recipient_categories),
            organizations=[uuid.UUID(o) for o in consent.recipient_organizations],
        ),
        given_by=consent.given_by,
        status=consents.status_of(consent),
        expires_at=consent.expires_at,
        created_at=consent.created_at,
        withdrawn_at=consent.withdrawn_at,
        recorded_by=consent.recorded_by,
    )


@router.post(
    "/{case_id}/consents",
    status_code=201,
    response_model=ConsentOut,
    summary="Record a consent",
    description=(
        "Consent for `purposes`, to services of the `recipients.categories` or to the "
        "`recipients.organizations` named. A minor's consent is given by a guardian (422 "
        "naming `given_by` otherwise). A closed or erased case takes no new consent (409). "
        "Emits `consent.granted`. Accepts `Idempotency-Key`."
    ),
    responses={409: {"description": "The case is closed or erased."}},
)
async def grant_consent(
    case_id: CaseId,
    body: ConsentCreate,
    request: Request,
    caller: Writer,
    session: SessionDep,
    runtime: RuntimeDep,
) -> JSONResponse:
    case = await cases.get(session, case_id, organization_of(caller))
    idem = await Idempotency.begin(session, idempotency_keys, request, caller.client_id)
    if idem.replay is not None:
        # Only the id is kept with the key: answer from the consent as it is now.
        stored = uuid.UUID(json.loads(bytes(idem.replay.body))["id"])
        consent = await consents.get(session=session, case=case, consent_id=stored)
        return _created(consent, replayed=True)
    consent = await consents.grant(
        session=session,
        outbox=runtime.messaging.outbox,
        case=case,
        data=body,
        actor=caller.client_id,
    )
    await idem.save(session, 201, {"id": str(consent.id)})
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise Conflict("a request with this Idempotency-Key is in progress: retry") from None
    return _created(consent)


def _created(consent: Consent, *, replayed: bool = False) -> JSONResponse:
    headers = {"Location": f"/v1/cases/{consent.case_id}/consents/{consent.id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(jsonable_encoder(render(consent)), status_code=201, headers=headers)


@router.get(
    "/{case_id}/consents",
    summary="List a case's consents",
    description="Newest first, each with its status: `active`, `withdrawn` or `expired`.",
)
async def list_consents(case_id: CaseId, caller: Reader, session: SessionDep) -> Page[ConsentOut]:
    case = await cases.get(session, case_id, organization_of(caller))
    items = [render(c) for c in await consents.list_for(session=session, case=case)]
    return Page[ConsentOut](items=items)


@router.get("/{case_id}/consents/{consent_id}", summary="Read a consent")
async def read_consent(
    case_id: CaseId, consent_id: ConsentId, caller: Reader, session: SessionDep
) -> ConsentOut:
    case = await cases.get(session, case_id, organization_of(caller))
    return render(await consents.get(session=session, case=case, consent_id=consent_id))


@router.post(
    "/{case_id}/consents/{consent_id}/withdraw",
    summary="Withdraw a consent",
    description=(
        "The consent no longer allows anything; `consent.withdrawn` tells the referral "
        "service, which cancels the referrals it covered. Possible whatever the case's "
        "status. Withdrawing a withdrawn consent answers 200 with it unchanged, and emits "
        "nothing again."
    ),
)
async def withdraw_consent(
    case_id: CaseId,
    consent_id: ConsentId,
    caller: Writer,
    session: SessionDep,
    runtime: RuntimeDep,
) -> ConsentOut:
    case = await cases.get(session, case_id, organization_of(caller))
    consent = await consents.withdraw(
        session=session,
        outbox=runtime.messaging.outbox,
        case=case,
        consent_id=consent_id,
        actor=caller.client_id,
    )
    await session.commit()
    return render(consent)
