"""Reading entries: by index range, and by subject, type, actor and time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icrs_shared.db import Database

from .models import LogEntry

_IDX = col(LogEntry.idx)  # the sort key of every read


@dataclass(frozen=True)
class Filters:
    subject: str | None = None
    type: str | None = None
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def apply(self, query: Select[Any]) -> Select[Any]:
        if self.subject is not None:
            query = query.where(col(LogEntry.subject) == self.subject)
        if self.type is not None:
            query = query.where(col(LogEntry.type) == self.type)
        if self.actor is not None:
            query = query.where(col(LogEntry.actor) == self.actor)
        if self.since is not None:
            query = query.where(col(LogEntry.time) >= self.since)
        if self.until is not None:
            query = query.where(col(LogEntry.time) < self.until)
        return query


async def entry_range(session: AsyncSession, start: int, end: int) -> Sequence[LogEntry]:
    query = select(LogEntry).where(start <= _IDX, end > _IDX).order_by(_IDX)
    rows: Sequence[LogEntry] = (await session.execute(query)).scalars().all()
    return rows


async def find(
    session: AsyncSession, filters: Filters, *, after: int, limit: int
) -> Sequence[LogEntry]:
    query = filters.apply(select(LogEntry).where(after < _IDX)).order_by(_IDX).limit(limit)
    rows: Sequence[LogEntry] = (await session.execute(query)).scalars().all()
    return rows


async def stream(db: Database, filters: Filters, *, page: int = 1000) -> AsyncIterator[LogEntry]:
    """Every matching entry in index order, a page per short transaction."""
    after = -1
    while True:
        async with db.sessions() as session:
            rows = await find(session, filters, after=after, limit=page)
        for row in rows:
            yield row
        if len(rows) < page:
            return
        after = rows[-1].idx
