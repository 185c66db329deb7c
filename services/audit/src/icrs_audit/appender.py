"""Batched appends: deliveries wait while their batch is written in one transaction, and
are acked only once their index is committed."""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress

from icrs_shared.db import Database
from icrs_shared.events import Envelope

from . import log as store
from .merkle import Frontier

logger = logging.getLogger(__name__)

_Item = tuple[Envelope, "asyncio.Future[int]"]


class Appender:
    """Collects concurrent deliveries into batches of up to `batch_size`.

    The first envelope of a batch waits at most `batch_wait` seconds for others. When a
    batch fails, its envelopes are written one by one, and a delivery whose own write
    fails raises, so the bus delivers it again (and parks it past its limit).
    """

    def __init__(self, db: Database, *, batch_size: int = 500, batch_wait: float = 0.05) -> None:
        self.db = db
        self.batch_size = batch_size
        self.batch_wait = batch_wait
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._frontier: Frontier | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="audit:appender")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while not self._queue.empty():
            _, future = self._queue.get_nowait()
            if not future.done():
                future.set_exception(RuntimeError("the audit log is stopping"))

    async def append(self, envelope: Envelope) -> int:
        """The envelope's index in the log, once committed (its first, if seen before)."""
        if self._task is None:
            raise RuntimeError("the appender is not running")
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        await self._queue.put((envelope, future))
        return await future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            await self._fill(batch)
            live = [(e, f) for e, f in batch if not f.done()]
            if not live:
                continue
            try:
                await self._settle(live)
            except asyncio.CancelledError:
                for _, future in live:
                    future.cancel()
                raise

    async def _settle(self, items: list[_Item]) -> None:
        try:
            indexes = await self._write([e for e, _ in items])
        except Exception as exc:
            self._frontier = None
            if len(items) > 1:
                # One bad envelope must not hold back the rest: write them one by one.
                for item in items:
                    await self._settle([item])
                return
            logger.warning(
                "an audit append failed; the event will be delivered again",
                extra={"event_type": items[0][0].type, "error_type": type(exc).__name__},
            )
            if not items[0][1].done():
                items[0][1].set_exception(exc)
            return
        for (_, future), index in zip(items, indexes, strict=True):
            if not future.done():
                future.set_result(index)

    async def _fill(self, batch: list[_Item]) -> None:
        waited = False
        while len(batch) < self.batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                if waited:
                    return
                await asyncio.sleep(self.batch_wait)
                waited = True

    async def _write(self, envelopes: list[Envelope]) -> list[int]:
        async with self.db.transaction() as session:
            indexes, frontier = await store.append(session, envelopes, self._frontier)
        self._frontier = frontier
        return indexes
