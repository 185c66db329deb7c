"""The transactional outbox: events are written with the state change that caused them,
and a relay publishes them with confirms, in batches, after commit.

A commit hands its events to the relay of its process, which publishes them at once and
marks them sent with one statement. Whatever was not published so (the process stopped
first, the bus was away or did not confirm) is found by the poll once it is
`sweep_after` seconds old. The relay then catches up: it drops what was handed over and
publishes every unsent row from the table in the order written, as it does at start,
after the bus failed, and when handed-over events waited too long, until it has caught
up. Events go out in the order their commits handed them over or, catching up, in the
order written; an event is published at least once (its consumers' inboxes make a
second publication harmless).

Several replicas may relay from one PostgreSQL database: each claims its batch with
`FOR UPDATE SKIP LOCKED`. On SQLite (one process) the batch is read, published and
marked in short transactions so that no write lock is held while publishing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, delete, event, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from .bus import Bus, BusUnavailable, ConsumersMissing, PublishError
from .db import Database
from .events import Envelope, EventData, EventRegistry
from .telemetry import current_traceparent

log = logging.getLogger(__name__)

_PENDING_KEY = "icrs.outbox.pending"
#: Seconds between tries while a consumer's queue does not exist yet.
CONSUMERS_MISSING_WAIT = 0.5
#: Events handed over by commits that a relay holds at most; past it, it catches up.
HANDED_LIMIT = 10_000


class Outbox:
    """Writes events into the caller's transaction."""

    def __init__(self, table: Table, *, service: str, registry: EventRegistry) -> None:
        self.table = table
        self.source = f"/icrs/{service}"
        self.registry = registry

    def envelope(
        self,
        event_type: str,
        data: EventData,
        *,
        subject: str | uuid.UUID | None = None,
        actor: str | None = None,
        actororg: str | uuid.UUID | None = None,
    ) -> Envelope:
        expected = self.registry[event_type].data
        if not isinstance(data, expected):
            raise TypeError(f"{event_type} carries {expected.__name__}, not {type(data).__name__}")
        return Envelope(
            source=self.source,
            type=event_type,
            subject=str(subject) if subject is not None else None,
            data=data.model_dump(mode="json"),
            actor=actor,
            actororg=str(actororg) if actororg is not None else None,
            traceparent=current_traceparent(),
        )

    async def add(self, session: AsyncSession, *envelopes: Envelope) -> None:
        if not envelopes:
            return
        now = datetime.now(UTC)
        await session.execute(
            self.table.insert(),
            [
                {
                    "event_id": env.id,
                    "event_type": env.type,
                    "body": env.to_json(),
                    "created_at": now,
                    "attempts": 0,
                }
                for env in envelopes
            ],
        )
        # Handed to the relay when the transaction commits, dropped if it rolls back.
        session.sync_session.info.setdefault(_PENDING_KEY, []).extend(envelopes)

    async def emit(
        self,
        session: AsyncSession,
        event_type: str,
        data: EventData,
        *,
        subject: str | uuid.UUID | None = None,
        actor: str | None = None,
        actororg: str | uuid.UUID | None = None,
    ) -> Envelope:
        env = self.envelope(event_type, data, subject=subject, actor=actor, actororg=actororg)
        await self.add(session, env)
        return env


class OutboxRelay:
    """Publishes committed outbox rows: those its process's commits hand over at once,
    the others from the table (polling every `poll_interval`), in the order written."""

    def __init__(
        self,
        db: Database,
        table: Table,
        bus: Bus,
        *,
        batch_size: int = 200,
        poll_interval: float = 0.5,
        sweep_after: float = 2.0,
        retention: timedelta = timedelta(days=7),
        name: str = "outbox",
    ) -> None:
        self.db, self.table, self.bus = db, table, bus
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.sweep_after = sweep_after
        self.retention = retention
        self.name = name
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_cleanup = datetime.min.replace(tzinfo=UTC)
        self._last_sweep = float("-inf")
        #: Publishing from the table, everything unsent in order, until caught up; what
        #: is handed over meanwhile is dropped (it is in the table).
        self._catching_up = True
        #: Commits whose events were dropped while catching up.
        self._dropped = 0
        self._listener_target = db.session_class
        #: (when handed over, event), in commit order.
        self._handed: deque[tuple[float, Envelope]] = deque()
        self.published = 0

    def wake(self) -> None:
        self._wake.set()

    def _after_commit(self, session: Session) -> None:
        envelopes = session.info.pop(_PENDING_KEY, None)
        if not envelopes:
            return
        if self._catching_up:
            # The table's claims take them: handing them over would publish them twice.
            self._dropped += 1
        elif len(self._handed) + len(envelopes) > HANDED_LIMIT:
            self._catch_up()
        else:
            now = time.monotonic()
            self._handed.extend((now, env) for env in envelopes)
        self._wake.set()

    def _after_rollback(self, session: Session) -> None:
        session.info.pop(_PENDING_KEY, None)

    async def start(self) -> None:
        event.listen(self._listener_target, "after_commit", self._after_commit)
        event.listen(self._listener_target, "after_rollback", self._after_rollback)
        self._task = asyncio.create_task(self._run(), name=f"relay:{self.name}")

    async def stop(self) -> None:
        event.remove(self._listener_target, "after_commit", self._after_commit)
        event.remove(self._listener_target, "after_rollback", self._after_rollback)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._handed.clear()

    async def _run(self) -> None:
        backoff = 0.0
        while True:
            try:
                sent = await self.relay_once()
                backoff = 0.0
            except ConsumersMissing as exc:
                # A service that has not started yet may be there any moment.
                if backoff != CONSUMERS_MISSING_WAIT:
                    log.info(
                        "outbox events wait for a consumer's queue",
                        extra={"relay": self.name, "error": str(exc)},
                    )
                backoff = CONSUMERS_MISSING_WAIT
                sent = 0
            except (BusUnavailable, PublishError) as exc:
                backoff = min(max(backoff * 2, 0.5), 10.0)
                self._catch_up()  # they wait in the table
                log.warning(
                    "outbox events wait: the bus did not confirm them",
                    extra={"relay": self.name, "error_type": type(exc).__name__},
                )
                sent = 0
            except Exception as exc:
                backoff = min(max(backoff * 2, 0.5), 10.0)
                self._catch_up()
                log.exception(
                    "outbox relay error",
                    extra={"relay": self.name, "error_type": type(exc).__name__},
                )
                sent = 0
            if backoff:
                await asyncio.sleep(backoff)
                continue
            if sent >= self.batch_size or self._handed or self._catching_up:
                continue
            await self._maybe_cleanup()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            self._wake.clear()

    async def relay_once(self) -> int:
        """Publish one batch; return how many events were marked sent. The batch is what
        commits handed over; when nothing was, or at least every poll interval, the
        table is asked whether a row was left unsent `sweep_after` seconds after it was
        written. Then, as at start, after the bus failed and when handed-over events
        waited too long, the relay catches up: the batch is the oldest unsent rows of the
        table, until fewer than a batch are left."""
        sent = 0
        if not self._catching_up:
            sent = await self._relay_handed()  # may find it must catch up
            if not self._catching_up:
                now = time.monotonic()
                if sent and now - self._last_sweep < self.poll_interval:
                    return sent
                self._last_sweep = now
                if not await self._left_behind():
                    return sent
                self._catch_up()  # what was handed over is in the table too
        self._last_sweep = time.monotonic()
        dropped = self._dropped
        claimed = await self._relay_table()
        # Caught up, unless a commit during the claim dropped its events: the claim may
        # have looked before that commit, and the next one takes them.
        if claimed < self.batch_size and self._dropped == dropped:
            self._catching_up = False  # what commits from now on is handed over
        return sent + claimed

    def _catch_up(self) -> None:
        self._catching_up = True
        self._handed.clear()

    async def _relay_handed(self) -> int:
        """Publish the oldest handed-over events, then mark the confirmed ones sent with
        one statement. When the oldest waited more than half of `sweep_after`, the relay
        catches up from the table instead: another replica may soon find them left behind,
        and what was written before them must not be overtaken."""
        if not self._handed:
            return 0
        if self._handed[0][0] < time.monotonic() - self.sweep_after / 2:
            self._catch_up()
            return 0
        batch = [self._handed.popleft() for _ in range(min(self.batch_size, len(self._handed)))]
        try:
            confirmed = await self._publish_envelopes([env for _, env in batch])
        except ConsumersMissing:
            self._handed.extendleft(reversed(batch))  # to try again soon
            raise
        t = self.table
        async with self.db.at_once() as session:
            await session.execute(
                update(t)
                .where(t.c.event_id.in_(confirmed), t.c.sent_at.is_(None))
                .values(sent_at=datetime.now(UTC))
            )
        self.published += len(confirmed)
        return len(confirmed)

    def _pending(self) -> Any:
        """The oldest unsent rows."""
        t = self.table
        return (
            select(t.c.id, t.c.event_id, t.c.body)
            .where(t.c.sent_at.is_(None))
            .order_by(t.c.id)
            .limit(self.batch_size)
        )

    async def _left_behind(self) -> bool:
        """Whether a row is unsent `sweep_after` seconds after it was written; asked
        outside a transaction, so that an idle poll is one round trip."""
        t = self.table
        written = datetime.now(UTC) - timedelta(seconds=self.sweep_after)
        query = select(t.c.id).where(t.c.sent_at.is_(None), t.c.created_at <= written).limit(1)
        async with self.db.at_once() as session:
            return (await session.execute(query)).first() is not None

    async def _relay_table(self) -> int:
        if self.db.is_sqlite:
            return await self._relay_sqlite()
        return await self._relay_locked()

    async def _relay_locked(self) -> int:
        """Claim a batch and mark it sent in one statement, publish, commit: a batch the
        broker does not confirm is rolled back (or, for the rows it did not confirm, put
        back with one more attempt)."""
        t = self.table
        claimed = self._pending().with_for_update(skip_locked=True).with_only_columns(t.c.id)
        claim = (
            update(t)
            .where(t.c.id.in_(claimed.scalar_subquery()))
            .values(sent_at=datetime.now(UTC))
            .returning(t.c.id, t.c.event_id, t.c.body)
        )
        async with self.db.transaction() as session:
            rows = sorted((await session.execute(claim)).all(), key=lambda r: r.id)
            if not rows:
                return 0
            confirmed = await self._publish(rows)
            failed = [r.id for r in rows if r.event_id not in confirmed]
            if failed:
                await session.execute(
                    update(t)
                    .where(t.c.id.in_(failed))
                    .values(sent_at=None, attempts=t.c.attempts + 1)
                )
        self.published += len(confirmed)
        return len(confirmed)

    async def _relay_sqlite(self) -> int:
        async with self.db.sessions() as session:
            rows = (await session.execute(self._pending())).all()
        if not rows:
            return 0
        confirmed = await self._publish(rows)
        async with self.db.transaction() as session:
            await self._mark(session, rows, confirmed)
        return len(confirmed)

    async def _publish(self, rows: Sequence[Any]) -> set[uuid.UUID]:
        return await self._publish_envelopes([Envelope.from_json(r.body) for r in rows])

    async def _publish_envelopes(self, envelopes: list[Envelope]) -> set[uuid.UUID]:
        """The ids of `envelopes` the bus confirmed; raises when it confirmed none."""
        try:
            await self.bus.publish(envelopes)
        except PublishError as exc:
            confirmed = {uuid.UUID(i) for i in exc.confirmed}
            if not confirmed:
                raise
            return confirmed
        return {e.id for e in envelopes}

    async def _mark(
        self, session: AsyncSession, rows: Sequence[Any], confirmed: set[uuid.UUID]
    ) -> None:
        t = self.table
        now = datetime.now(UTC)
        sent = [r.id for r in rows if r.event_id in confirmed]
        failed = [r.id for r in rows if r.event_id not in confirmed]
        if sent:
            await session.execute(update(t).where(t.c.id.in_(sent)).values(sent_at=now))
            self.published += len(sent)
        if failed:
            await session.execute(
                update(t).where(t.c.id.in_(failed)).values(attempts=t.c.attempts + 1)
            )

    async def _maybe_cleanup(self) -> None:
        now = datetime.now(UTC)
        if now - self._last_cleanup < timedelta(minutes=10):
            return
        self._last_cleanup = now
        t = self.table
        async with self.db.transaction() as session:
            await session.execute(delete(t).where(t.c.sent_at < now - self.retention))

    async def pending(self) -> int:
        t = self.table
        async with self.db.sessions() as session:
            query = select(func.count()).select_from(t).where(t.c.sent_at.is_(None))
            return int((await session.execute(query)).scalar_one())
