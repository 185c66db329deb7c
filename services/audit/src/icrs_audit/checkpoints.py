"""Signed checkpoints: a new one whenever the log has grown, at most every few seconds,
and never one that is inconsistent with the last one signed."""

from __future__ import annotations

import asyncio
import logging
import zlib
from contextlib import suppress
from datetime import UTC, datetime

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icrs_shared.db import Database
from icrs_shared.errors import NotFound

from . import log as store
from . import merkle
from .models import Checkpoint
from .note import Checkpoint as CheckpointBody
from .note import Signer

logger = logging.getLogger(__name__)

_LOCK = zlib.crc32(b"icrs-audit:checkpoint")


class InconsistentLog(RuntimeError):
    """The log's stored tree does not extend the last signed checkpoint."""


async def latest(session: AsyncSession) -> Checkpoint | None:
    query = select(Checkpoint).order_by(col(Checkpoint.size).desc()).limit(1)
    found: Checkpoint | None = (await session.execute(query)).scalars().first()
    return found


async def latest_or_404(session: AsyncSession) -> Checkpoint:
    found = await latest(session)
    if found is None:
        raise NotFound("the log has no checkpoint yet")
    return found


async def sign_if_grown(db: Database, signer: Signer, origin: str) -> Checkpoint | None:
    """Sign the log at its current size if no checkpoint has that size; replicas take
    turns. Raises InconsistentLog instead of signing a tree that does not extend the
    last checkpoint."""
    async with db.transaction() as session:
        if db.dialect == "postgresql":
            await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK})
        last = await latest(session)
        size = await store.size(session)
        if last is not None and last.size >= size:
            return None
        root = await store.root(session, size)
        if last is not None and last.size > 0:
            proof = await store.consistency_proof(session, last.size, size)
            if not merkle.verify_consistency(last.size, size, last.root, root, proof):
                raise InconsistentLog(
                    f"the tree of {size} entries does not extend the checkpoint of {last.size}"
                )
        body = CheckpointBody(origin=origin, size=size, root=root).body()
        checkpoint = Checkpoint(
            size=size, root=root, note=signer.sign(body), signed_at=datetime.now(UTC)
        )
        session.add(checkpoint)
    return checkpoint


class Checkpointer:
    """Signs a checkpoint every `interval` seconds when the log has grown."""

    def __init__(self, db: Database, signer: Signer, origin: str, *, interval: float) -> None:
        self.db = db
        self.signer = signer
        self.origin = origin
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await sign_if_grown(self.db, self.signer, self.origin)
        self._task = asyncio.create_task(self._run(), name="audit:checkpointer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await sign_if_grown(self.db, self.signer, self.origin)
            except InconsistentLog as exc:
                logger.error("refusing to sign a checkpoint: %s", exc)
            except Exception as exc:
                logger.warning(
                    "checkpoint not signed this time", extra={"error_type": type(exc).__name__}
                )
