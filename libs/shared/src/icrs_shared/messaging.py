"""A service's messaging: its outbox and relay, its consumers behind the inbox."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import MetaData

from .bus import Bus
from .db import Database
from .events import EventRegistry, platform_events
from .inbox import Inbox, TransactionalHandler, Wanted, once_per_event
from .outbox import Outbox, OutboxRelay
from .settings import Settings
from .tables import messaging_tables

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Consumer:
    name: str
    bindings: tuple[str, ...]
    handler: TransactionalHandler
    wanted: Wanted | None = None


class Consumers:
    """Event handlers a service declares (usually at module level in `consumers.py`)."""

    def __init__(self) -> None:
        self.items: list[Consumer] = []

    def on(
        self, name: str, *bindings: str, wanted: Wanted | None = None
    ) -> Callable[[TransactionalHandler], TransactionalHandler]:
        """Register a handler of the events bound; with `wanted`, an event it has nothing
        to do with (by a read outside any transaction) is acked untouched."""

        def register(handler: TransactionalHandler) -> TransactionalHandler:
            self.items.append(Consumer(name, bindings, handler, wanted))
            return handler

        return register


class Messaging:
    def __init__(
        self,
        *,
        service: str,
        db: Database,
        bus: Bus,
        metadata: MetaData,
        settings: Settings,
        registry: EventRegistry | None = None,
    ) -> None:
        outbox_table, inbox_table = messaging_tables(metadata)
        self.service = service
        self.db = db
        self.bus = bus
        self.settings = settings
        self.registry = registry or platform_events()
        self.outbox = Outbox(outbox_table, service=service, registry=self.registry)
        self.inbox = Inbox(inbox_table)
        self.relay = OutboxRelay(
            db,
            outbox_table,
            bus,
            batch_size=settings.outbox_batch_size,
            poll_interval=settings.outbox_poll_interval,
            sweep_after=settings.outbox_sweep_after,
            retention=timedelta(hours=settings.outbox_retention_hours),
            name=service,
        )
        self._consumers: list[Consumer] = []
        self._janitor: asyncio.Task[None] | None = None

    def consume(self, consumers: Consumers | Sequence[Consumer]) -> None:
        items = consumers.items if isinstance(consumers, Consumers) else consumers
        self._consumers.extend(items)

    async def start(self) -> None:
        for c in self._consumers:
            handler = once_per_event(self.db, self.inbox, c.name, c.handler, wanted=c.wanted)
            await self.bus.subscribe(self.service, c.name, c.bindings, handler)
        await self.relay.start()
        self._janitor = asyncio.create_task(self._forget_old(), name=f"inbox:{self.service}")

    async def stop(self) -> None:
        if self._janitor is not None:
            self._janitor.cancel()
            await asyncio.gather(self._janitor, return_exceptions=True)
        await self.relay.stop()

    async def _forget_old(self) -> None:
        age = timedelta(hours=self.settings.inbox_retention_hours)
        while True:
            await asyncio.sleep(3600)
            try:
                async with self.db.transaction() as session:
                    await self.inbox.forget_before(session, age)
            except Exception as exc:
                log.warning("inbox clean-up failed", extra={"error_type": type(exc).__name__})
