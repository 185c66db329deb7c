"""Routes of the partners service: the service directory (contract §4)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse

from icrs_shared.auth import Caller, require_any_scope, require_scopes
from icrs_shared.errors import FieldError, Forbidden, Invalid
from icrs_shared.http import Idempotency, etag, require_if_match, set_etag
from icrs_shared.pagination import Cursor, Limit, Page, decode_cursor, encode_cursor
from icrs_shared.runtime import RuntimeDep, SessionDep

from ..models import Service, idempotency_keys
from . import service as directory
from .areas import PCODE_QUERY_PATTERN
from .exporting import export_directory
from .importing import import_directory
from .repository import After, ServiceQuery
from .schemas import ImportReport, ServiceOut, ServicePatch, ServiceSpec
from .vocabulary import BeneficiaryCategory, Category, ProgrammeTrack, ServiceStatus, Sex

router = APIRouter(tags=["services"])

Manager = Annotated[Caller, Depends(require_any_scope(directory.MANAGE, directory.ADMIN))]
Reader = Annotated[
    Caller, Depends(require_any_scope(directory.READ, directory.MANAGE, directory.ADMIN))
]
Exporter = Annotated[Caller, Depends(require_any_scope(directory.READ, directory.ADMIN))]
Admin = Annotated[Caller, Depends(require_scopes(directory.ADMIN))]

IncludeInactive = Annotated[
    bool,
    Query(
        description="Also services of pending and suspended organizations (partners:admin, "
        "or services:manage with organization_id naming the caller's own organization)."
    ),
]


def _location(service: Service) -> str:
    return f"/v1/services/{service.id}"


@router.post(
    "/v1/organizations/{organization_id}/services",
    status_code=201,
    response_model=ServiceOut,
    summary="Add a service to an organization's directory entry",
)
async def create_service(
    organization_id: uuid.UUID,
    spec: ServiceSpec,
    request: Request,
    response: Response,
    caller: Manager,
    session: SessionDep,
    runtime: RuntimeDep,
) -> Any:
    idem = await Idempotency.begin(session, idempotency_keys, request, caller.client_id)
    if idem.replay is not None:
        return idem.replay
    service, org = await directory.create(
        session=session,
        outbox=runtime.messaging.outbox,
        caller=caller,
        organization_id=organization_id,
        spec=spec,
    )
    out = ServiceOut.of(service, org.name)
    headers = {"ETag": etag(service.id, service.version), "Location": _location(service)}
    await idem.save(session, 201, out.model_dump(mode="json"), headers=headers)
    await session.commit()
    response.headers.update(headers)
    return out


@router.get(
    "/v1/services/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/json": {}}, "description": "HSDS 3.0 JSON"}},
    summary="The directory as Open Referral HSDS 3.0 JSON",
)
async def export_services(
    caller: Exporter,
    runtime: RuntimeDep,
    include_inactive_organizations: Annotated[
        bool, Query(description="Also pending and suspended organizations (partners:admin).")
    ] = False,
) -> StreamingResponse:
    if include_inactive_organizations and not directory.is_admin(caller):
        raise Forbidden("include_inactive_organizations needs partners:admin")
    chunks = export_directory(
        runtime.db,
        active_only=not include_inactive_organizations,
        show_contact=directory.is_admin(caller),
    )
    return StreamingResponse(chunks, media_type="application/json")


@router.post(
    "/v1/services/import",
    response_model=ImportReport,
    summary="Load organizations and services from HSDS JSON",
)
async def import_services(
    document: Annotated[
        list[Any],
        Body(
            description="A list of HSDS organizations each with its `services`, or of HSDS "
            "services each with its `organization_id`."
        ),
    ],
    request: Request,
    caller: Admin,
    session: SessionDep,
    runtime: RuntimeDep,
) -> Any:
    idem = await Idempotency.begin(session, idempotency_keys, request, caller.client_id)
    if idem.replay is not None:
        return idem.replay
    report = await import_directory(
        session=session, outbox=runtime.messaging.outbox, caller=caller, document=document
    )
    await idem.save(session, 200, report.model_dump(mode="json"))
    await session.commit()
    return report


@router.get("/v1/services", response_model=Page[ServiceOut], summary="Search the directory")
async def search_services(
    caller: Reader,
    session: SessionDep,
    category: Category | None = None,
    area: Annotated[
        str | None,
        Query(
            pattern=PCODE_QUERY_PATTERN,
            description="A P-code: services covering it or any area that contains it.",
        ),
    ] = None,
    language: Annotated[
        str | None, Query(pattern=r"^[A-Za-z]{2,3}$", description="ISO 639-1 or 639-3 code.")
    ] = None,
    age: Annotated[
        int | None, Query(ge=0, le=120, description="Below 18, also accepts_minors.")
    ] = None,
    sex: Sex | None = None,
    beneficiary_category: BeneficiaryCategory | None = None,
    programme_track: ProgrammeTrack | None = None,
    minor: Annotated[bool, Query(description="Only services that accept minors.")] = False,
    status: ServiceStatus = "active",
    organization_id: uuid.UUID | None = None,
    include_inactive_organizations: IncludeInactive = False,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[ServiceOut]:
    query = ServiceQuery(
        status=status,
        category=category,
        area=area.upper() if area else None,
        language=language.lower() if language else None,
        age=age,
        sex=sex,
        beneficiary_category=beneficiary_category,
        programme_track=programme_track,
        minor=minor,
        organization_id=organization_id,
        active_organizations_only=not include_inactive_organizations,
    )
    rows = await directory.find(
        session=session, caller=caller, query=query, after=_after(cursor), limit=limit + 1
    )
    items = [ServiceOut.of(s, name) for s, name in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1][0]
        next_cursor = encode_cursor({"name": last.name, "id": str(last.id)})
    return Page[ServiceOut](items=items, next_cursor=next_cursor)


def _after(cursor: str | None) -> After | None:
    values = decode_cursor(cursor)
    if values is None:
        return None
    try:
        name, last_id = values["name"], uuid.UUID(values["id"])
        if not isinstance(name, str):
            raise TypeError
    except (KeyError, TypeError, ValueError):
        raise Invalid(
            "the cursor is not valid",
            errors=[FieldError(field="query.cursor", message="not a valid cursor", code="cursor")],
        ) from None
    return name, last_id


@router.get("/v1/services/{service_id}", response_model=ServiceOut, summary="One service")
async def get_service(
    service_id: uuid.UUID, caller: Reader, session: SessionDep, response: Response
) -> ServiceOut:
    service, org = await directory.get(session=session, caller=caller, service_id=service_id)
    set_etag(response, etag(service.id, service.version))
    return ServiceOut.of(service, org.name)


@router.patch(
    "/v1/services/{service_id}",
    response_model=ServiceOut,
    summary="Change a service (JSON merge patch; If-Match required)",
    openapi_extra={
        "requestBody": {
            "content": {
                "application/merge-patch+json": {
                    "schema": {"$ref": "#/components/schemas/ServicePatch"}
                }
            }
        }
    },
)
async def update_service(
    service_id: uuid.UUID,
    patch: ServicePatch,
    request: Request,
    response: Response,
    caller: Manager,
    session: SessionDep,
    runtime: RuntimeDep,
) -> ServiceOut:
    service, org = await directory.for_change(session=session, caller=caller, service_id=service_id)
    require_if_match(request, etag(service.id, service.version))
    await directory.update(
        session=session,
        outbox=runtime.messaging.outbox,
        service=service,
        organization=org,
        patch=patch,
        actor=caller,
    )
    await session.commit()
    set_etag(response, etag(service.id, service.version))
    return ServiceOut.of(service, org.name)
