"""The transactional outbox: events are written with the state change that caused them,
and a relay publishes them with confirms, in batches, after commit.

A commit hands its events to the relay of its process, which publishes them at once and
marks them sent with one statement. Whatever was not published so (the process stopped
first, the bus was away or did not confirm, the relay fell behind) is swept from the
table once it is `sweep_after` seconds old, at every poll: an event is published at
least once, and its consumers' inboxes make a second publication harmless.

Several replicas may relay from one PostgreSQL database: each sweeps its batch with
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
#: Events handed over by commits that a relay holds at most; the sweep takes the others.
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
    the others when they are `sweep_after` seconds old (polling every `poll_interval`)."""

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
        if len(self._handed) + len(envelopes) <= HANDED_LIMIT:
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
                self._handed.clear()  # they wait in the table for the sweep
                log.warning(
                    "outbox events wait: the bus did not confirm them",
                    extra={"relay": self.name, "error_type": type(exc).__name__},
                )
                sent = 0
            except Exception as exc:
                backoff = min(max(backoff * 2, 0.5), 10.0)
                self._handed.clear()
                log.exception(
                    "outbox relay error",
                    extra={"relay": self.name, "error_type": type(exc).__name__},
                )
                sent = 0
            if backoff:
                await asyncio.sleep(backoff)
                continue
            if sent >= self.batch_size or self._handed:
                continue
            await self._maybe_cleanup()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            self._wake.clear()

    async def relay_once(self) -> int:
        """Publish a batch of what commits handed over; sweep the table when nothing was,
        or at least every poll interval. Return how many events were marked sent."""
        sent = await self._relay_handed()
        now = time.monotonic()
        if sent and now - self._last_sweep < self.poll_interval:
            return sent
        self._last_sweep = now
        if self.db.is_sqlite:
            return sent + await self._relay_sqlite()
        return sent + await self._relay_locked()

    async def _relay_handed(self) -> int:
        """Publish the oldest handed-over events, then mark the confirmed ones sent with
        one statement. Events handed over more than half of `sweep_after` ago are left to
        the sweep, so that a relay that fell behind and the sweep of another replica do
        not both publish them."""
        oldest = time.monotonic() - self.sweep_after / 2
        batch: list[tuple[float, Envelope]] = []
        while self._handed and len(batch) < self.batch_size:
            handed = self._handed.popleft()
            if handed[0] >= oldest:
                batch.append(handed)
        if not batch:
            return 0
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
        """The oldest unsent rows old enough to sweep."""
        t = self.table
        swept = datetime.now(UTC) - timedelta(seconds=self.sweep_after)
        return (
            select(t.c.id, t.c.event_id, t.c.body)
            .where(t.c.sent_at.is_(None), t.c.created_at <= swept)
            .order_by(t.c.id)
            .limit(self.batch_size)
        )

    async def _relay_locked(self) -> int:
        """Claim a batch and mark it sent in one statement, publish, commit: a batch the
        broker does not confirm is rolled back (or, for the rows it did not confirm, put
        back with one more attempt). Whether there is anything to sweep is asked first
        outside a transaction: an idle poll is one round trip."""
        t = self.table
        pending = self._pending()
        async with self.db.at_once() as session:
            if (await session.execute(pending.with_only_columns(t.c.id).limit(1))).first() is None:
                return 0
        claimed = pending.with_for_update(skip_locked=True).with_only_columns(t.c.id)
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
