"""The inbox: a consumer records each event id in the transaction of its effect, so a
redelivered event has no second effect. The bus acks only after that commit."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Insert, Table, bindparam, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from .bus import Handler
from .db import Database
from .events import Envelope

TransactionalHandler = Callable[[AsyncSession, Envelope], Awaitable[None]]
#: Whether a consumer has anything to do with an event, asked before any transaction
#: through a `Database.at_once` session: an event it has nothing to do with is acked
#: without a transaction or an inbox row.
Wanted = Callable[[AsyncSession, Envelope], Awaitable[bool]]


class Inbox:
    def __init__(self, table: Table) -> None:
        self.table = table
        # The claim's statement, made once per dialect (every delivery runs it).
        self._claims: dict[str, Insert] = {}

    def _claim(self, dialect: str) -> Insert:
        stmt = self._claims.get(dialect)
        if stmt is None:
            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            columns = ("consumer", "event_id", "processed_at")
            stmt = (
                insert(self.table)
                .values({c: bindparam(c) for c in columns})
                .on_conflict_do_nothing()
            )
            self._claims[dialect] = stmt
        return stmt

    async def claim(self, session: AsyncSession, consumer: str, event_id: uuid.UUID) -> bool:
        """Record the event for `consumer`; False when it was already processed.

        On PostgreSQL a concurrent second delivery waits on the first one's row lock
        and then finds it, so two deliveries in flight still have one effect.
        """
        values = {"consumer": consumer, "event_id": event_id, "processed_at": datetime.now(UTC)}
        dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
        result = await session.execute(self._claim(dialect), values)
        return bool(getattr(result, "rowcount", 0) == 1)

    async def forget_before(self, session: AsyncSession, age: timedelta) -> None:
        cutoff = datetime.now(UTC) - age
        await session.execute(delete(self.table).where(self.table.c.processed_at < cutoff))


def once_per_event(
    db: Database,
    inbox: Inbox,
    consumer: str,
    handler: TransactionalHandler,
    *,
    wanted: Wanted | None = None,
) -> Handler:
    """A bus handler that runs `handler` at most once per event id, in one transaction;
    with `wanted`, only for the events it wants."""

    async def handle(envelope: Envelope) -> None:
        if wanted is not None:
            async with db.at_once() as session:
                if not await wanted(session, envelope):
                    return
        async with db.transaction() as session:
            if await inbox.claim(session, consumer, envelope.id):
                await handler(session, envelope)

    return handle
