"""The in-process bus of the one-process default.

`publish` returns only when every matching consumer has handled the envelope (or
parked it), so an outbox row is marked sent only after its effects are committed:
a crash in between means the relay publishes it again and the inboxes drop the
repeat. Parked envelopes are appended to a JSON-lines file when one is given.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..events import Envelope
from ..telemetry import consume_span
from .base import (
    BusUnavailable,
    ConsumersMissing,
    Handler,
    Parked,
    Subscription,
    topic_matches,
)
from .patience import Stopped, handle_patiently

log = logging.getLogger(__name__)


@dataclass
class _Delivery:
    envelope: Envelope
    done: asyncio.Future[None]
    count: int = 0


class _Consumer:
    def __init__(self, sub: Subscription, bus: InProcessBus) -> None:
        self.sub = sub
        self.bus = bus
        self.queue: asyncio.Queue[_Delivery] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self._current: _Delivery | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    def start(self) -> None:
        if self.task is None:
            name = f"bus:{self.sub.service}.{self.sub.consumer}"
            self.task = asyncio.create_task(self._run(), name=name)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None

    async def drain(self) -> None:
        """Stop after the delivery in hand; those not handled fail their publish, so
        their outbox rows stay unsent and are published again later."""
        await self._idle.wait()
        await self.stop()
        pending = [self._current] if self._current is not None else []
        while not self.queue.empty():
            pending.append(self.queue.get_nowait())
        for d in pending:
            if not d.done.done():
                d.done.set_exception(BusUnavailable("the consumer stopped"))

    async def _run(self) -> None:
        while True:
            delivery = await self.queue.get()
            self._current = delivery
            self._idle.clear()
            try:
                await self._handle(delivery)
            finally:
                self._current = None
                self._idle.set()

    async def _handle(self, d: _Delivery) -> None:
        d.count += 1
        env = d.envelope
        try:
            with consume_span(
                self.sub.consumer, env.type, str(env.id), env.traceparent, system="in-process"
            ):
                await handle_patiently(
                    self.sub.handler,
                    env,
                    stopping=lambda: not self.bus._running,
                    consumer=f"{self.sub.service}.{self.sub.consumer}",
                )
        except Stopped:
            if not d.done.done():
                d.done.set_exception(BusUnavailable("the bus stopped"))
            return
        except Exception as exc:
            if d.count > self.sub.delivery_limit:
                self.bus._park(self.sub, d, type(exc).__name__)
                d.done.set_result(None)
                return
            log.warning(
                "handler failed; will redeliver",
                extra={
                    "consumer": f"{self.sub.service}.{self.sub.consumer}",
                    "event_id": str(env.id),
                    "event_type": env.type,
                    "delivery": d.count,
                    "error_type": type(exc).__name__,
                },
            )
            # Back of the queue after a short pause, so the rest keep flowing.
            loop = asyncio.get_running_loop()
            loop.call_later(min(0.05 * 2**d.count, 2.0), self.queue.put_nowait, d)
            return
        if not d.done.done():
            d.done.set_result(None)


class InProcessBus:
    """`required` names consumers (service, consumer) that must see every event (the audit
    log): while one is not subscribed, nothing is published and events wait in the
    outboxes, as on RabbitMQ (see `RabbitBus`)."""

    def __init__(
        self,
        *,
        delivery_limit: int = 5,
        parking_dir: Path | None = None,
        required: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.delivery_limit = delivery_limit
        self.parking_dir = parking_dir
        self.required = tuple(required)
        self._consumers: list[_Consumer] = []
        self._parked: dict[str, list[Parked]] = {}
        self._running = False

    async def start(self) -> None:
        self._running = True
        for c in self._consumers:
            c.start()

    async def close(self) -> None:
        self._running = False
        await asyncio.gather(*(c.stop() for c in self._consumers))

    async def ready(self) -> bool:
        return self._running

    async def subscribe(
        self,
        service: str,
        consumer: str,
        bindings: Sequence[str],
        handler: Handler,
        *,
        delivery_limit: int | None = None,
        concurrency: int | None = None,
    ) -> None:
        # One delivery at a time per consumer: a publish here waits for its handling.
        sub = Subscription(
            service,
            consumer,
            tuple(bindings),
            handler,
            delivery_limit or self.delivery_limit,
            concurrency,
        )
        if any(c.sub.service == service and c.sub.consumer == consumer for c in self._consumers):
            raise ValueError(f"consumer {service}.{consumer} is already subscribed")
        c = _Consumer(sub, self)
        self._consumers.append(c)
        if self._running:
            c.start()

    async def unsubscribe(self, service: str) -> None:
        stopping = [c for c in self._consumers if c.sub.service == service]
        self._consumers = [c for c in self._consumers if c.sub.service != service]
        await asyncio.gather(*(c.drain() for c in stopping))

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        if not self._running:
            raise BusUnavailable("the in-process bus is not running")
        subscribed = {(c.sub.service, c.sub.consumer) for c in self._consumers}
        for service, consumer in self.required:
            if (service, consumer) not in subscribed:
                raise ConsumersMissing(f"{service}.{consumer} is not subscribed: events wait")
        loop = asyncio.get_running_loop()
        waits: list[asyncio.Future[None]] = []
        for env in envelopes:
            key = env.routing_key
            for c in self._consumers:
                if any(topic_matches(b, key) for b in c.sub.bindings):
                    d = _Delivery(env, loop.create_future())
                    c.queue.put_nowait(d)
                    waits.append(d.done)
        if waits:
            await asyncio.gather(*waits)

    async def parked(self, service: str) -> list[Parked]:
        return list(self._parked.get(service, []))

    def _park(self, sub: Subscription, d: _Delivery, error: str) -> None:
        env = d.envelope
        parked = Parked(
            consumer=sub.consumer,
            reason="delivery_limit",
            deliveries=d.count,
            body=env.to_json(),
            parked_at=datetime.now(UTC),
            event_id=str(env.id),
            event_type=env.type,
            extra={"error_type": error},
        )
        self._parked.setdefault(sub.service, []).append(parked)
        log.error(
            "message parked after its delivery limit",
            extra={
                "consumer": f"{sub.service}.{sub.consumer}",
                "event_id": str(env.id),
                "event_type": env.type,
                "deliveries": d.count,
                "error_type": error,
            },
        )
        if self.parking_dir is not None:
            self.parking_dir.mkdir(parents=True, exist_ok=True)
            line = {
                "consumer": sub.consumer,
                "reason": parked.reason,
                "deliveries": d.count,
                "parked_at": parked.parked_at.isoformat() if parked.parked_at else None,
                "error_type": error,
                "event": json.loads(parked.body),
            }
            with (self.parking_dir / f"{sub.service}.jsonl").open("a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")
