"""Sessions outside the caller's transaction on the real PostgreSQL: reads without BEGIN,
a counter that commits at once, and consumers that skip the events they do not want."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from icrs_shared.db import Database
from icrs_shared.events import Envelope
from icrs_shared.inbox import Inbox, once_per_event

from .conftest import effects, inbox_table

#: The id of the statement's transaction (assigning one).
TRANSACTION_ID = text("SELECT txid_current()")


async def own_transactions(session: AsyncSession) -> bool:
    """Whether two statements of `session` run in transactions of their own."""
    first = (await session.execute(TRANSACTION_ID)).scalar_one()
    return bool((await session.execute(TRANSACTION_ID)).scalar_one() != first)


async def test_an_at_once_session_runs_each_statement_in_a_transaction_of_its_own(
    db: Database,
) -> None:
    async with db.at_once() as session:
        assert await own_transactions(session)
    # A plain session's statements share the transaction its first one began: the
    # at-once session's connection went back to the pool in its default mode.
    async with db.sessions() as session:
        assert not await own_transactions(session)
    async with db.transaction() as session:
        assert not await own_transactions(session)


async def test_apart_commits_each_statement_while_the_callers_transaction_goes_on(
    db: Database,
) -> None:
    note = f"apart-{uuid.uuid4()}"
    async with db.transaction() as caller:
        await caller.execute(TRANSACTION_ID)
        async with db.apart() as own:
            await own.execute(effects.insert().values(event_id="-", note=note))
            assert await own_transactions(own)
        # Committed already: another connection sees it before the caller commits.
        async with db.at_once() as other:
            seen = await other.execute(select(func.count()).where(effects.c.note == note))
            assert seen.scalar_one() == 1
        await caller.rollback()
    async with db.at_once() as other:
        seen = await other.execute(select(func.count()).where(effects.c.note == note))
        assert seen.scalar_one() == 1


def envelope() -> Envelope:
    return Envelope(source="/icrs/test", type="icrs.case.erased", data={"n": 1})


async def test_an_event_a_consumer_does_not_want_leaves_no_inbox_row(db: Database) -> None:
    handled: list[uuid.UUID] = []
    asked: list[uuid.UUID] = []
    wanted_ids: set[uuid.UUID] = set()

    async def wanted(session: AsyncSession, env: Envelope) -> bool:
        asked.append(env.id)
        # Asked outside any transaction.
        assert await own_transactions(session)
        return env.id in wanted_ids

    async def effect(session: AsyncSession, env: Envelope) -> None:
        handled.append(env.id)

    consumer = f"picky-{uuid.uuid4().hex[:8]}"
    handle = once_per_event(db, Inbox(inbox_table), consumer, effect, wanted=wanted)
    unwanted, wanted_one = envelope(), envelope()
    wanted_ids.add(wanted_one.id)
    for env in (unwanted, wanted_one, unwanted, wanted_one):
        await handle(env)

    assert asked == [unwanted.id, wanted_one.id, unwanted.id, wanted_one.id]
    assert handled == [wanted_one.id]  # the second delivery of it found its inbox row
    async with db.at_once() as session:
        rows = await session.execute(
            select(inbox_table.c.event_id).where(inbox_table.c.consumer == consumer)
        )
        assert rows.scalars().all() == [wanted_one.id]
