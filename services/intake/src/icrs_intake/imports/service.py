"""Imports (contract §5): a file of rows, each matched to a case by its external id.

`start` records the import and hands the received file to a task of this process, which
reads it in batches of `BATCH_ROWS` rows. Each batch is one transaction: its rows'
effects and events, its rejections and the import's counts, so the counts always tell
exactly what is stored. A batch that fails is stored again row by row, so that only the
rows at fault are rejected. Memory stays flat: rows are parsed as they are read, a batch
at a time, and the external ids seen so far wait on disk (see `repeats`).

Every row is accounted for: `rows` = `created` + `updated` + `unchanged` + `rejected`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from icrs_shared.errors import Conflict, NotFound
from icrs_shared.events.catalog import ImportCompleted
from icrs_shared.http import Idempotency
from icrs_shared.logs import exception_fields
from icrs_shared.pagination import (
    bad_cursor,
    decode_cursor,
    decode_keyset,
    encode_cursor,
    encode_keyset,
)
from icrs_shared.runtime import Runtime

from ..cases.create import create_cases
from ..cases.schemas import CaseCreate
from ..crypto import Keyring
from ..models import Import, ImportRejection
from ..settings import IntakeSettings
from . import repository
from .apply import apply, source_digest
from .repeats import FirstRows
from .repository import Tally
from .rows import Row, read
from .running import STOP_TIMEOUT, RunningImports, running_of
from .upload import Upload

log = logging.getLogger(__name__)

#: Rows stored per transaction.
BATCH_ROWS = 250
#: The largest row number a rejection can have (the column is a 32-bit integer).
_MAX_ROW = 2**31 - 1

#: Errors that one row can cause (a constraint, a value the database refuses); any
#: other error (the database gone) stops the import as `failed`.
_ROW_ERRORS = (IntegrityError, DataError)
_T = TypeVar("_T")


@dataclass(frozen=True)
class _Job:
    runtime: Runtime
    keyring: Keyring
    settings: IntakeSettings
    import_id: uuid.UUID
    organization_id: uuid.UUID
    actor: str


async def start(
    *,
    runtime: Runtime,
    keyring: Keyring,
    settings: IntakeSettings,
    upload: Upload,
    organization_id: uuid.UUID,
    actor: str,
    idempotency: Idempotency,
) -> Import:
    """Record the import and start reading `upload` (which the import's task now owns)."""
    imported = Import(organization_id=organization_id, format=upload.format, started_by=actor)
    try:
        async with runtime.db.transaction() as session:
            session.add(imported)
            await session.flush()
            await idempotency.save(session, 202, {"id": str(imported.id)})
    except IntegrityError:
        # Only the idempotency key can clash: the same request is being answered.
        raise Conflict(
            "a request with this Idempotency-Key is being answered: send it again later"
        ) from None
    job = _Job(runtime, keyring, settings, imported.id, organization_id, actor)
    running_of(runtime).launch(imported.id, _run(job, upload), cleanup=upload.close)
    upload.taken = True
    log.info("import started", extra={"import_id": str(imported.id), "format": upload.format})
    return imported


async def earlier(*, session: AsyncSession, idempotency: Idempotency) -> uuid.UUID | None:
    """The import an earlier request with this Idempotency-Key started, if any."""
    if idempotency.key is None:
        return None
    table = idempotency.table
    query = select(table).where(
        table.c.client_id == idempotency.client_id, table.c.key == idempotency.key
    )
    row = (await session.execute(query)).first()
    if row is None:
        return None
    if row.fingerprint != idempotency.fingerprint:
        raise Conflict("this Idempotency-Key was used for another request")
    return uuid.UUID(row.body["id"])


# The import's task ----------------------------------------------------------------


async def _run(job: _Job, upload: Upload) -> None:
    try:
        with upload, FirstRows() as first:
            problems, rows = read(upload.format, upload.spool.open())
            async with job.runtime.db.transaction() as session:
                await repository.add_rejections(session, job.import_id, problems)
            while batch := await _in_thread(_next_batch, rows, first):
                await _store(job, batch)
        await _complete(job)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(_end(job, "interrupted"), STOP_TIMEOUT / 2)
        log.warning("import interrupted", extra={"import_id": str(job.import_id)})
        raise
    except Exception as exc:
        # The error's text may quote a row's values: only its type and frames are logged.
        log.error("import failed", extra={"import_id": str(job.import_id), **exception_fields(exc)})
        with contextlib.suppress(Exception):
            await _end(job, "failed")


def _next_batch(rows: Iterator[Row], first: FirstRows) -> list[Row]:
    batch = list(islice(rows, BATCH_ROWS))
    first.claim(batch)
    return batch


async def _in_thread(work: Callable[..., _T], *args: object) -> _T:
    """Parsing off the event loop, so that requests are answered during an import."""
    future = asyncio.get_running_loop().run_in_executor(None, functools.partial(work, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        # A thread cannot be stopped: let it finish before the files it reads are closed.
        await asyncio.wait([future])
        raise


async def _store(job: _Job, batch: Sequence[Row]) -> None:
    try:
        async with job.runtime.db.transaction() as session:
            await _apply_rows(job, session, batch)
    except _ROW_ERRORS:
        log.info("a batch failed: storing it row by row", extra={"import_id": str(job.import_id)})
        await _store_one_by_one(job, batch)


async def _store_one_by_one(job: _Job, batch: Sequence[Row]) -> None:
    async with job.runtime.db.transaction() as session:
        await _apply_rows(job, session, [row for row in batch if row.case is None])
    for row in batch:
        if row.case is None:
            continue
        try:
            async with job.runtime.db.transaction() as session:
                await _apply_rows(job, session, [row])
        except IntegrityError:
            row.reject("row", "could not be stored: it conflicts with data stored already")
        except DataError:
            row.reject("row", "could not be stored: a value does not fit")
        else:
            continue
        async with job.runtime.db.transaction() as session:
            await _apply_rows(job, session, [row])


async def _apply_rows(job: _Job, session: AsyncSession, rows: Sequence[Row]) -> None:
    """Apply `rows` (rejected ones are only counted) and record what they did."""
    ids = [row.case.external_id for row in rows if row.case and row.case.external_id]
    existing = await repository.cases_by_external_id(session, job.organization_id, ids)
    missing = [i for i in ids if i not in existing]
    erased = await repository.erased_external_ids(
        session, job.keyring, job.organization_id, missing
    )
    tally = Tally()
    new: list[tuple[CaseCreate, bytes]] = []
    for row in rows:
        if row.case is None or row.case.external_id is None:
            tally.count("rejected")
            continue
        digest = source_digest(job.keyring, row.case)
        case = existing.get(row.case.external_id)
        if case is None and row.case.external_id in erased:
            row.reject("external_id", "this person's data was erased: not registered again")
            tally.count("rejected")
            continue
        if case is None:
            new.append((row.case, digest))
            tally.count("created")
            continue
        outcome = await apply(
            session=session,
            outbox=job.runtime.messaging.outbox,
            keyring=job.keyring,
            row=row,
            digest=digest,
            case=case,
            actor=job.actor,
        )
        tally.count(outcome)
    await create_cases(
        session=session,
        outbox=job.runtime.messaging.outbox,
        keyring=job.keyring,
        settings=job.settings,
        organization_id=job.organization_id,
        actor=job.actor,
        new=new,
    )
    found = [rejection for row in rows for rejection in row.rejections]
    await repository.add_rejections(session, job.import_id, found)
    await repository.add_counts(session, job.import_id, tally)


async def _complete(job: _Job) -> None:
    async with job.runtime.db.transaction() as session:
        imported = await session.get(Import, job.import_id, with_for_update=True)
        assert imported is not None
        imported.status, imported.finished_at = "completed", datetime.now(UTC)
        session.add(imported)
        await job.runtime.messaging.outbox.emit(
            session,
            "icrs.import.completed",
            ImportCompleted(
                import_id=imported.id,
                organization_id=imported.organization_id,
                created=imported.created,
                updated=imported.updated,
                unchanged=imported.unchanged,
                rejected=imported.rejected,
            ),
            subject=imported.id,
            actor=job.actor,
            actororg=imported.organization_id,
        )
    counts = ("rows", "created", "updated", "unchanged", "rejected")
    log.info(
        "import completed",
        extra={
            "import_id": str(job.import_id),
            "counts": {k: getattr(imported, k) for k in counts},
        },
    )


async def _end(job: _Job, status: str) -> None:
    async with job.runtime.db.transaction() as session:
        await repository.end(session, job.import_id, status)


# Reading ------------------------------------------------------------------------------


async def read_import(
    *,
    session: AsyncSession,
    running: RunningImports,
    import_id: uuid.UUID,
    organization_id: uuid.UUID,
) -> Import:
    """The organization's import (404 for any other). The caller commits: reading may
    mark an import that stopped elsewhere `interrupted`."""
    imported = await repository.get(session, import_id, organization_id)
    if imported is None:
        raise NotFound("no such import")
    await _settle(session, running, imported)
    return imported


async def rejections(
    *, session: AsyncSession, import_id: uuid.UUID, limit: int, cursor: str | None
) -> tuple[Sequence[ImportRejection], str | None]:
    after = decode_cursor(cursor)
    try:
        start = None if after is None else (int(after["row"]), str(after["field"]))
    except (KeyError, TypeError, ValueError, OverflowError):
        raise bad_cursor() from None
    if start is not None and not 0 <= start[0] <= _MAX_ROW:
        raise bad_cursor()  # no row of ours; the database's integer could not even hold it
    found = await repository.rejections(session, import_id, limit=limit, after=start)
    if len(found) < limit:
        return found, None
    return found, encode_cursor({"row": found[-1].row, "field": found[-1].field})


async def list_imports(
    *,
    session: AsyncSession,
    running: RunningImports,
    organization_id: uuid.UUID,
    limit: int,
    cursor: str | None,
) -> tuple[Sequence[Import], str | None]:
    """The organization's imports, newest first. The caller commits (see `read_import`)."""
    start = decode_keyset(cursor, uuid.UUID)
    found = await repository.page(session, organization_id, limit=limit, after=start)
    for imported in found:
        await _settle(session, running, imported)
    if len(found) < limit:
        return found, None
    tail = found[-1]
    return found, encode_keyset(tail.started_at, tail.id)


async def _settle(session: AsyncSession, running: RunningImports, imported: Import) -> None:
    """Mark a running import whose process is gone `interrupted` (see `running`)."""
    if imported.status != "running":
        running.forget(imported.id)
        return
    if running.is_running(imported.id):
        return
    if not running.stalled(imported.id, imported.rows):
        return
    if await repository.end(session, imported.id, "interrupted", rows=imported.rows):
        log.warning("import found interrupted", extra={"import_id": str(imported.id)})
    running.forget(imported.id)
    await session.refresh(imported)
