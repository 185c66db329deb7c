"""Recording the events a bus delivers, and the statements a database runs, for tests to
wait on and inspect."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event

from ..bus import Bus
from ..db import Database
from ..events import Envelope
from .waiting import eventually


class Recorder:
    """Every event delivered to a queue of its own, in delivery order."""

    def __init__(self) -> None:
        self.events: list[Envelope] = []

    async def __call__(self, envelope: Envelope) -> None:
        self.events.append(envelope)

    async def wait_for(self, count: int, within: float = 10.0) -> list[Envelope]:
        await eventually(lambda: len(self.events) >= count, within=within)
        return self.events[:count]

    def of_type(self, event_type: str) -> list[Envelope]:
        return [e for e in self.events if e.type == event_type]


async def record(bus: Bus, bindings: Sequence[str], *, service: str = "test") -> Recorder:
    """A recorder subscribed to `bindings` on a queue of its own."""
    recorder = Recorder()
    await bus.subscribe(service, f"recorder-{uuid.uuid4().hex[:8]}", list(bindings), recorder)
    return recorder


@dataclass(frozen=True)
class Statement:
    sql: str
    params: Any


@contextmanager
def statements(db: Database) -> Iterator[list[Statement]]:
    """Every statement `db`'s engine sends to its database inside the block, in order."""
    seen: list[Statement] = []

    def note(conn: Any, cursor: Any, sql: str, params: Any, *_: Any) -> None:
        seen.append(Statement(sql, params))

    event.listen(db.engine.sync_engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", note)
