"""Routes of the audit service (contract §8); every one needs `audit:read`."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import PlainTextResponse, StreamingResponse

from icrs_shared.auth import Caller, require_scopes
from icrs_shared.errors import NotFound
from icrs_shared.events.envelope import TYPE_PREFIX
from icrs_shared.pagination import Cursor, Limit, bad_cursor, decode_cursor, encode_cursor
from icrs_shared.runtime import RuntimeDep, SessionDep
from icrs_shared.text import SearchText
from icrs_shared.times import Instant

from . import checkpoints, search
from . import log as store
from .models import LogEntry
from .schemas import ConsistencyProof, Entries, Entry, InclusionProof, LogKey, b64
from .state import audit_log

Auditor = Annotated[Caller, Depends(require_scopes("audit:read"))]
MAX_INDEX = 2**62
Index = Annotated[int, Query(ge=0, le=MAX_INDEX)]

#: Entries per answer of a range read.
MAX_RANGE = 1000

log_router = APIRouter(prefix="/v1/log", tags=["log"])
audit_router = APIRouter(prefix="/v1/audit", tags=["audit"])


@log_router.get(
    "/checkpoint",
    summary="The latest signed checkpoint",
    description="A C2SP signed note: origin, size, base64 root, blank line, signature.",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}}},
)
async def checkpoint(_: Auditor, session: SessionDep) -> PlainTextResponse:
    latest = await checkpoints.latest_or_404(session)
    return PlainTextResponse(latest.note, headers={"Cache-Control": "no-cache"})


@log_router.get("/key", summary="The key that signs the checkpoints")
async def key(_: Auditor, runtime: RuntimeDep) -> LogKey:
    signer = audit_log(runtime).signer
    return LogKey(
        name=signer.name, public_key=b64(signer.public_key_bytes), verifier=signer.verifier_key
    )


@log_router.get(
    "/entries",
    summary="Entries by index range",
    description=f"`start` inclusive, `end` exclusive; at most {MAX_RANGE} entries an answer.",
)
async def entries(
    _: Auditor,
    session: SessionDep,
    start: Index = 0,
    end: Annotated[int | None, Query(ge=0, le=MAX_INDEX)] = None,
) -> Entries:
    stop = start + MAX_RANGE if end is None else min(end, start + MAX_RANGE)
    rows = await search.entry_range(session, start, stop) if stop > start else []
    more = (end is None or end > stop) and len(rows) == MAX_RANGE
    return Entries(items=[Entry.of(r) for r in rows], next_cursor=str(stop) if more else None)


@log_router.get("/entries/{index}", summary="One entry")
async def entry(
    _: Auditor, session: SessionDep, index: Annotated[int, Path(ge=0, le=MAX_INDEX)]
) -> Entry:
    row = await session.get(LogEntry, index)
    if row is None:
        raise NotFound(f"the log has no entry {index}")
    return Entry.of(row)


@log_router.get(
    "/proofs/inclusion",
    summary="Inclusion proof",
    description="RFC 9162 audit path of entry `index` in the tree of `tree_size` entries "
    "(default: the latest checkpoint's size).",
)
async def inclusion(
    _: Auditor,
    session: SessionDep,
    index: Index,
    tree_size: Annotated[int | None, Query(ge=1, le=MAX_INDEX)] = None,
) -> InclusionProof:
    if tree_size is None:
        tree_size = (await checkpoints.latest_or_404(session)).size
    leaf_hash, hashes = await store.inclusion_proof(session, index, tree_size)
    return InclusionProof(
        index=index, tree_size=tree_size, leaf_hash=b64(leaf_hash), hashes=[b64(h) for h in hashes]
    )


@log_router.get(
    "/proofs/consistency",
    summary="Consistency proof",
    description="RFC 9162 proof that the tree of `second` entries extends that of `first`.",
)
async def consistency(
    _: Auditor,
    session: SessionDep,
    first: Annotated[int, Query(ge=1, le=MAX_INDEX)],
    second: Annotated[int, Query(ge=1, le=MAX_INDEX)],
) -> ConsistencyProof:
    hashes = await store.consistency_proof(session, first, second)
    return ConsistencyProof(first=first, second=second, hashes=[b64(h) for h in hashes])


async def _filters(
    subject: Annotated[SearchText | None, Query(max_length=200)] = None,
    type: Annotated[
        SearchText | None,
        Query(max_length=100, description="`icrs.case.registered` or `case.registered`"),
    ] = None,
    actor: Annotated[SearchText | None, Query(max_length=200, description="The client id.")] = None,
    since: Annotated[Instant | None, Query(description="Event time, inclusive.")] = None,
    until: Annotated[Instant | None, Query(description="Event time, exclusive.")] = None,
) -> search.Filters:
    if type is not None and not type.startswith(TYPE_PREFIX):
        type = TYPE_PREFIX + type
    return search.Filters(subject=subject, type=type, actor=actor, since=since, until=until)


FiltersDep = Annotated[search.Filters, Depends(_filters)]


@audit_router.get("/events", summary="Search the log", description="In index order.")
async def events(
    _: Auditor,
    session: SessionDep,
    filters: FiltersDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Entries:
    rows = await search.find(session, filters, after=_after(cursor), limit=limit)
    next_cursor = encode_cursor({"after": rows[-1].idx}) if len(rows) == limit else None
    return Entries(items=[Entry.of(r) for r in rows], next_cursor=next_cursor)


def _after(cursor: str | None) -> int:
    """The index a cursor of `/v1/audit/events` names (-1: from the start)."""
    values = decode_cursor(cursor)
    if values is None:
        return -1
    after = values.get("after")
    if type(after) is not int or not 0 <= after <= MAX_INDEX:
        raise bad_cursor()
    return after


_CSV_COLUMNS = ("index", "id", "time", "type", "source", "subject", "actor", "actororg", "data")


@audit_router.get(
    "/export",
    summary="Export the log",
    description="Every matching entry, streamed: JSON Lines (one entry per line, as "
    "`/v1/log/entries` gives them) or CSV (one event per row, `data` as JSON).",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/jsonl": {}, "text/csv": {}}}},
)
async def export(
    _: Auditor,
    runtime: RuntimeDep,
    filters: FiltersDep,
    format: Literal["jsonl", "csv"] = "jsonl",
) -> StreamingResponse:
    rows = search.stream(runtime.db, filters)
    body = _csv(rows) if format == "csv" else _jsonl(rows)
    media = "text/csv; charset=utf-8" if format == "csv" else "application/jsonl"
    filename = f"icrs-audit.{format}"
    return StreamingResponse(
        body,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


async def _jsonl(rows: AsyncIterator[LogEntry]) -> AsyncIterator[bytes]:
    async for row in rows:
        yield Entry.of(row).model_dump_json().encode() + b"\n"


async def _csv(rows: AsyncIterator[LogEntry]) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(_CSV_COLUMNS)
    async for row in rows:
        event = json.loads(row.leaf)
        event["index"] = row.idx
        event["data"] = json.dumps(event.get("data", {}), separators=(",", ":"), sort_keys=True)
        writer.writerow([event.get(c, "") for c in _CSV_COLUMNS])
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue().encode()
