"""Queries of imports: the import rows, their rejections, and the cases rows refer to."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import and_, insert, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from ..cases.names import erased_key
from ..crypto import Keyring
from ..models import Case, CaseIndex, Import, ImportRejection
from .rows import Rejection

Outcome = Literal["created", "updated", "unchanged", "rejected"]


@dataclass
class Tally:
    """What a run of rows did; every row is counted once."""

    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0

    def count(self, outcome: Outcome) -> None:
        self.rows += 1
        setattr(self, outcome, getattr(self, outcome) + 1)


async def get(
    session: AsyncSession, import_id: uuid.UUID, organization_id: uuid.UUID
) -> Import | None:
    found = await session.get(Import, import_id, populate_existing=True)
    return found if found is not None and found.organization_id == organization_id else None


async def page(
    session: AsyncSession,
    organization_id: uuid.UUID,
    *,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> Sequence[Import]:
    """The organization's imports, newest first."""
    query = select(Import).where(col(Import.organization_id) == organization_id)
    if after is not None:
        at, last = after
        query = query.where(
            or_(
                col(Import.started_at) < at,
                and_(col(Import.started_at) == at, col(Import.id) < last),
            )
        )
    query = query.order_by(col(Import.started_at).desc(), col(Import.id).desc()).limit(limit)
    return (await session.execute(query)).scalars().all()


async def rejections(
    session: AsyncSession,
    import_id: uuid.UUID,
    *,
    limit: int,
    after: tuple[int, str] | None,
) -> Sequence[ImportRejection]:
    query = select(ImportRejection).where(col(ImportRejection.import_id) == import_id)
    if after is not None:
        row, where = after
        query = query.where(
            or_(
                col(ImportRejection.row) > row,
                and_(col(ImportRejection.row) == row, col(ImportRejection.field) > where),
            )
        )
    query = query.order_by(col(ImportRejection.row), col(ImportRejection.field)).limit(limit)
    return (await session.execute(query)).scalars().all()


async def add_rejections(
    session: AsyncSession, import_id: uuid.UUID, found: Sequence[Rejection]
) -> None:
    if found:
        values = [
            {"import_id": import_id, "row": r.row, "field": r.field, "reason": r.reason}
            for r in found
        ]
        await session.execute(insert(ImportRejection), values)


async def add_counts(session: AsyncSession, import_id: uuid.UUID, tally: Tally) -> None:
    await session.execute(
        update(Import)
        .where(col(Import.id) == import_id)
        .values(
            rows=col(Import.rows) + tally.rows,
            created=col(Import.created) + tally.created,
            updated=col(Import.updated) + tally.updated,
            unchanged=col(Import.unchanged) + tally.unchanged,
            rejected=col(Import.rejected) + tally.rejected,
        )
    )


async def end(
    session: AsyncSession, import_id: uuid.UUID, status: str, *, rows: int | None = None
) -> bool:
    """Mark a running import ended; with `rows`, only if it has not moved on since."""
    query = update(Import).where(col(Import.id) == import_id, col(Import.status) == "running")
    if rows is not None:
        query = query.where(col(Import.rows) == rows)
    result = await session.execute(
        query.values(status=status, finished_at=datetime.now(UTC)),
        execution_options={"synchronize_session": False},
    )
    return bool(getattr(result, "rowcount", 0))


async def cases_by_external_id(
    session: AsyncSession, organization_id: uuid.UUID, external_ids: Collection[str]
) -> dict[str, Case]:
    if not external_ids:
        return {}
    # Pairs of the unique key, not `organization_id = .. AND external_id IN (..)`: each pair
    # is one probe of the unique index, whatever the planner believes of the organization's
    # share of the table (right after a bulk load its statistics are stale, and the other
    # form scanned every case of the organization for each batch).
    key = tuple_(col(Case.organization_id), col(Case.external_id))
    query = select(Case).where(key.in_([(organization_id, e) for e in external_ids]))
    found = (await session.execute(query)).scalars().all()
    return {case.external_id: case for case in found if case.external_id is not None}


async def erased_external_ids(
    session: AsyncSession,
    keyring: Keyring,
    organization_id: uuid.UUID,
    external_ids: Collection[str],
) -> set[str]:
    """Those of `external_ids` whose case was erased (known by keyed hash only)."""
    digests = {keyring.blind("erased", erased_key(organization_id, e)): e for e in external_ids}
    if not digests:
        return set()
    query = select(col(CaseIndex.digest)).where(
        col(CaseIndex.kind) == "erased", col(CaseIndex.digest).in_(list(digests))
    )
    return {digests[d] for d in (await session.execute(query)).scalars().all()}
