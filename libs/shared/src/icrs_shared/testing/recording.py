"""Recording the events a bus delivers, for tests to wait on and inspect."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from ..bus import Bus
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
