"""Routes of imports (contract §5): post a file of cases, follow what became of each row."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from icrs_shared.auth import Caller, require_scopes
from icrs_shared.errors import PROBLEM_JSON, FieldError, Invalid, Problem
from icrs_shared.http import IDEMPOTENCY_HEADER, Idempotency
from icrs_shared.pagination import Cursor, Limit, Page
from icrs_shared.runtime import RuntimeDep, SessionDep

from ..models import Import, idempotency_keys
from ..state import KeyringDep, SettingsDep, organization_of
from . import service as imports
from . import upload as uploads
from .rows import COLUMNS, LIST_SEPARATOR
from .running import lifespan, running_of
from .schemas import ImportOut, ImportSummary, RejectionOut

router = APIRouter(prefix="/v1/imports", tags=["imports"], lifespan=lifespan)

Importer = Annotated[Caller, Depends(require_scopes("cases:import"))]
ImportId = Annotated[uuid.UUID, Path(description="The import's id.")]

_FILE = {"schema": {"type": "string"}}
_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": (
            "The file itself, in UTF-8. CSV: a header row naming the columns "
            f"({', '.join(COLUMNS)}); lists are separated by `{LIST_SEPARATOR}`; "
            "unknown columns are reported and ignored. NDJSON: one object per line in the "
            "shape of `POST /v1/cases`. Every row needs an `external_id`."
        ),
        "content": {media: _FILE for media in uploads.MEDIA_TYPES},
    }
}
_PROBLEM: dict[str, Any] = {"model": Problem, "content": {PROBLEM_JSON: {}}}
_LOCATION = {"Location": {"description": "The import's URL.", "schema": {"type": "string"}}}


def _summary(imported: Import) -> ImportSummary:
    return ImportSummary.model_validate(imported, from_attributes=True)


def _accepted(imported: Import, *, replayed: bool = False) -> JSONResponse:
    headers = {"Location": f"/v1/imports/{imported.id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(jsonable_encoder(_summary(imported)), status_code=202, headers=headers)


@router.post(
    "",
    status_code=202,
    response_model=ImportSummary,
    summary="Import cases from a file",
    description=(
        "The body is the file: `text/csv` or `application/x-ndjson` (or `application/jsonl`), "
        "at most `ICRS_MAX_IMPORT_BYTES` (200 MiB by default). Answers 202 at once and imports "
        "in the background; follow it at the `Location`. Rows are matched to the "
        "organization's cases by `external_id`: a new one is registered, a known one is "
        "updated when its row changed and left alone when it did not, so importing the "
        "same file again changes nothing. An import cut short by a restart reads as "
        "`interrupted`: post the file again. Accepts `Idempotency-Key`."
    ),
    openapi_extra=_BODY,
    responses={
        202: {"headers": _LOCATION},
        413: {**_PROBLEM, "description": "The file is too large."},
        415: {**_PROBLEM, "description": "Not CSV or NDJSON, or not UTF-8."},
        429: {**_PROBLEM, "description": "Too many imports running: retry later."},
    },
)
async def start_import(
    request: Request,
    caller: Importer,
    runtime: RuntimeDep,
    keyring: KeyringDep,
    settings: SettingsDep,
) -> Response:
    organization_id = organization_of(caller)
    file_format = uploads.format_of(request.headers.get("content-type"))
    key = _idempotency_key(request)
    async with uploads.receive(
        running_of(runtime),
        request.stream(),
        format=file_format,
        declared_size=request.headers.get("content-length"),
        limit=settings.max_import_bytes,
    ) as received:
        idempotency = Idempotency(idempotency_keys, caller.client_id, key, received.fingerprint)
        async with runtime.db.sessions() as session:
            earlier = await imports.earlier(session=session, idempotency=idempotency)
            if earlier is not None:
                found = await imports.read_import(
                    session=session,
                    running=running_of(runtime),
                    import_id=earlier,
                    organization_id=organization_id,
                )
                await session.commit()
                return _accepted(found, replayed=True)
        imported = await imports.start(
            runtime=runtime,
            keyring=keyring,
            settings=settings,
            upload=received,
            organization_id=organization_id,
            actor=caller.client_id,
            idempotency=idempotency,
        )
    return _accepted(imported)


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER.lower())
    if key is not None and not 1 <= len(key) <= 255:
        field = f"header.{IDEMPOTENCY_HEADER}"
        error = FieldError(field=field, message="1 to 255 characters", code="length")
        raise Invalid("Idempotency-Key must have 1 to 255 characters", errors=[error])
    return key


@router.get(
    "",
    summary="List the organization's imports",
    description="Newest first, without their rejections.",
)
async def list_imports(
    caller: Importer,
    session: SessionDep,
    runtime: RuntimeDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[ImportSummary]:
    found, next_cursor = await imports.list_imports(
        session=session,
        running=running_of(runtime),
        organization_id=organization_of(caller),
        limit=limit,
        cursor=cursor,
    )
    await session.commit()
    return Page[ImportSummary](items=[_summary(i) for i in found], next_cursor=next_cursor)


@router.get(
    "/{import_id}",
    summary="Read an import",
    description=(
        "Its status and counts (`rows` = `created` + `updated` + `unchanged` + `rejected`), "
        "and a page of its rejections: each names the row, the field and the reason, never "
        "the value. `limit` and `cursor` page through the rejections."
    ),
)
async def read_import(
    import_id: ImportId,
    caller: Importer,
    session: SessionDep,
    runtime: RuntimeDep,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> ImportOut:
    imported = await imports.read_import(
        session=session,
        running=running_of(runtime),
        import_id=import_id,
        organization_id=organization_of(caller),
    )
    await session.commit()
    found, next_cursor = await imports.rejections(
        session=session, import_id=imported.id, limit=limit, cursor=cursor
    )
    return ImportOut(
        **_summary(imported).model_dump(),
        rejections=[RejectionOut.model_validate(r, from_attributes=True) for r in found],
        next_cursor=next_cursor,
    )
