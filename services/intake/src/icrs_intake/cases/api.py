"""Routes of cases (contract §5): register, search, read, update, close, erase."""

from __future__ import annotations

import json
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from icrs_shared.auth import Caller, require_scopes
from icrs_shared.http import Idempotency, etag, require_if_match, set_etag
from icrs_shared.pagination import Cursor, Limit, Page
from icrs_shared.runtime import RuntimeDep, SessionDep
from icrs_shared.text import SearchText

from ..models import Case, idempotency_keys
from ..state import KeyringDep, SettingsDep, organization_of
from . import search
from . import service as cases
from .schemas import CaseCreate, CaseOut, CasePatch, CaseSummary

router = APIRouter(prefix="/v1/cases", tags=["cases"])

Writer = Annotated[Caller, Depends(require_scopes("cases:write"))]
Reader = Annotated[Caller, Depends(require_scopes("cases:read"))]
CaseId = Annotated[uuid.UUID, Path(description="The case's id.")]

_ETAG = {"ETag": {"description": "The case's version.", "schema": {"type": "string"}}}


def render(opened: cases.Opened) -> CaseOut:
    case, profile = opened.case, opened.profile
    return CaseOut(
        id=case.id,
        case_number=case.case_number,
        organization_id=case.organization_id,
        status=case.status,
        version=case.version,
        person=profile.person if profile is not None else None,
        beneficiary_category=case.beneficiary_category,
        programme_track=case.programme_track,
        area=case.area,
        demobilization_date=profile.demobilization_date if profile is not None else None,
        external_id=case.external_id,
        vulnerabilities=profile.vulnerabilities if profile is not None else [],
        is_minor=case.is_minor,
        age_band=case.age_band,
        created_at=case.created_at,
        updated_at=case.updated_at,
        closed_at=case.closed_at,
        erased_at=case.erased_at,
    )


def _etag(case: Case) -> str:
    return etag(case.id, case.version)


@router.post(
    "",
    status_code=201,
    response_model=CaseOut,
    summary="Register a case",
    description=(
        "A probable duplicate (the same document, or a close name and birth date in the same "
        "area) answers 409 `probable-duplicate` listing what the caller may see of each: "
        "its own cases in full, another organization's only as that organization's id. "
        "Send `duplicates_checked: true` to register anyway. A person under 18 is a minor: "
        "a `child_protection` need is raised at once. Accepts `Idempotency-Key`."
    ),
    responses={
        201: {"headers": _ETAG},
        409: {"description": "Probable duplicate, or the external_id names another case."},
    },
)
async def register_case(
    body: CaseCreate,
    request: Request,
    caller: Writer,
    session: SessionDep,
    runtime: RuntimeDep,
    keyring: KeyringDep,
    settings: SettingsDep,
) -> Response:
    org = organization_of(caller)
    idem = await Idempotency.begin(session, idempotency_keys, request, caller.client_id)
    if idem.replay is not None:
        # Only the id is kept with the key (never personal data): answer from the case.
        stored = uuid.UUID(json.loads(bytes(idem.replay.body))["id"])
        opened = await cases.open_case(session, keyring, await cases.get(session, stored, org))
        return _created(opened, replayed=True)
    opened = await cases.register(
        session=session,
        outbox=runtime.messaging.outbox,
        keyring=keyring,
        settings=settings,
        data=body,
        organization_id=org,
        actor=caller.client_id,
    )
    await idem.save(session, 201, {"id": str(opened.case.id)})
    await session.commit()
    return _created(opened)


def _created(opened: cases.Opened, *, replayed: bool = False) -> JSONResponse:
    headers = {"ETag": _etag(opened.case), "Location": f"/v1/cases/{opened.case.id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    content = jsonable_encoder(render(opened))
    return JSONResponse(content, status_code=201, headers=headers)


@router.get(
    "",
    summary="Find the organization's cases",
    description=(
        "By `case_number`, `external_id`, or `name` (every word of it must match a word of "
        "the person's names or aliases, ignoring case and accents). Without a filter, every "
        "case of the organization, newest first."
    ),
)
async def find_cases(
    caller: Reader,
    session: SessionDep,
    keyring: KeyringDep,
    case_number: Annotated[SearchText | None, Query(max_length=32)] = None,
    external_id: Annotated[SearchText | None, Query(max_length=64)] = None,
    name: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[CaseSummary]:
    rows, next_cursor = await search.find(
        session=session,
        keyring=keyring,
        organization_id=organization_of(caller),
        case_number=case_number,
        external_id=external_id,
        name=name,
        limit=limit,
        cursor=cursor,
    )
    items = [await search.summary(session, keyring, row) for row in rows]
    return Page[CaseSummary](items=items, next_cursor=next_cursor)


@router.get("/{case_id}", summary="Read a case", responses={200: {"headers": _ETAG}})
async def read_case(
    case_id: CaseId, response: Response, caller: Reader, session: SessionDep, keyring: KeyringDep
) -> CaseOut:
    case = await cases.get(session, case_id, organization_of(caller))
    set_etag(response, _etag(case))
    return render(await cases.open_case(session, keyring, case))


@router.patch(
    "/{case_id}",
    summary="Update a case",
    description=(
        "Needs `If-Match` with the case's ETag (428 without, 412 when it changed). Fields "
        "given replace the case's; `person` fields replace the person's one by one."
    ),
    responses={
        200: {"headers": _ETAG},
        409: {"description": "The case is closed or erased, or the external_id names another."},
    },
)
async def update_case(
    case_id: CaseId,
    body: CasePatch,
    request: Request,
    response: Response,
    caller: Writer,
    session: SessionDep,
    runtime: RuntimeDep,
    keyring: KeyringDep,
) -> CaseOut:
    case = await cases.get(session, case_id, organization_of(caller))
    require_if_match(request, _etag(case))
    opened = await cases.update_case(
        session=session,
        outbox=runtime.messaging.outbox,
        keyring=keyring,
        opened=await cases.open_case(session, keyring, case),
        patch=body,
        actor=caller.client_id,
    )
    await session.commit()
    set_etag(response, _etag(opened.case))
    return render(opened)


@router.post(
    "/{case_id}/close",
    summary="Close a case",
    description="`If-Match` is optional; when sent, it must name the current version.",
    responses={200: {"headers": _ETAG}, 409: {"description": "Not open."}},
)
async def close_case(
    case_id: CaseId,
    request: Request,
    response: Response,
    caller: Writer,
    session: SessionDep,
    runtime: RuntimeDep,
    keyring: KeyringDep,
) -> CaseOut:
    case = await cases.get(session, case_id, organization_of(caller))
    if request.headers.get("if-match") is not None:
        require_if_match(request, _etag(case))
    await cases.close(
        session=session, outbox=runtime.messaging.outbox, case=case, actor=caller.client_id
    )
    await session.commit()
    set_etag(response, _etag(case))
    return render(await cases.open_case(session, keyring, case))


@router.delete(
    "/{case_id}",
    status_code=204,
    response_class=Response,
    summary="Erase a case's personal data",
    description=(
        "Crypto-shredding: the case's data key is destroyed, with its encrypted profile, "
        "notes and keyed hashes; no API, later backup or log can give the personal data back. "
        "Its pseudonymous history (ids, codes, events, referrals, the audit log) stays, and "
        "`case.erased` tells the other services. Erasing an erased case answers 204."
    ),
)
async def erase_case(
    case_id: CaseId, caller: Writer, session: SessionDep, runtime: RuntimeDep, keyring: KeyringDep
) -> Response:
    case = await cases.get(session, case_id, organization_of(caller))
    await cases.erase(
        session=session,
        outbox=runtime.messaging.outbox,
        keyring=keyring,
        case=case,
        actor=caller.client_id,
    )
    await session.commit()
    await runtime.db.forget_deleted()
    return Response(status_code=204)
