"""The in-process bus of the one-process default.

`publish` returns only when every matching consumer has handled the envelope (or
parked it), so an outbox row is marked sent only after its effects are committed:
a crash in between means the relay publishes it again and the inboxes drop the
repeat. Parked envelopes are appended to a JSON-lines file when a parking directory is
given; the bus then also takes in the ones an operator put back (`icrs parked replay`,
see `parking`), every `replay_every` seconds, and hands each to its consumer again.
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
from . import parking
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
        replay_every: float = 1.0,
    ) -> None:
        self.delivery_limit = delivery_limit
        self.parking_dir = parking_dir
        self.required = tuple(required)
        self.replay_every = replay_every
        self._consumers: list[_Consumer] = []
        self._parked: dict[str, list[Parked]] = {}
        self._running = False
        self._replayer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._running = True
        for c in self._consumers:
            c.start()
        if self.parking_dir is not None and self._replayer is None:
            self._replayer = asyncio.create_task(self._replaying(), name="bus:replay")

    async def close(self) -> None:
        self._running = False
        if self._replayer is not None:
            self._replayer.cancel()
            await asyncio.gather(self._replayer, return_exceptions=True)
            self._replayer = None
        await asyncio.gather(*(c.stop() for c in self._consumers))

    async def _replaying(self) -> None:
        while True:
            try:
                await self.replay_put_back()
            except (OSError, ValueError) as exc:
                log.error("parked messages put back could not be read", exc_info=exc)
            await asyncio.sleep(self.replay_every)

    async def replay_put_back(self) -> int:
        """Hand the messages put back in the parking directory to their consumers, one at a
        time, each with its deliveries counted anew; how many were handled (or parked
        again). A message whose consumer is not subscribed (yet) waits for a later round."""
        if self.parking_dir is None:
            return 0
        directory = self.parking_dir
        handed = 0
        for service, lines in (await asyncio.to_thread(parking.take_replays, directory)).items():
            left: list[parking.Line] = []
            done = 0  # lines[:done] are handled, parked again or left
            try:
                for line in lines:
                    consumer = self._consumer(service, str(line.get("consumer")))
                    if consumer is None or not self._running:
                        left.append(line)
                        done += 1
                        continue
                    try:
                        env = Envelope.from_json(json.dumps(line["event"]))
                    except (KeyError, ValueError) as exc:
                        log.error(
                            "a message put back is not an event: parked again",
                            extra={"consumer": f"{service}.{consumer.sub.consumer}"},
                            exc_info=exc,
                        )
                        parking.park_line(directory, service, line)
                        done += 1
                        continue
                    # Its record goes; one failing again is parked with a new one.
                    self._forget_parked(service, consumer.sub.consumer, str(env.id))
                    d = _Delivery(env, asyncio.get_running_loop().create_future())
                    consumer.queue.put_nowait(d)
                    try:
                        await d.done
                    except BusUnavailable:
                        break  # the consumer stopped: the rest waits for the next start
                    done += 1
                    handed += 1
                    log.info(
                        "parked message handed to its consumer again",
                        extra={
                            "consumer": f"{service}.{consumer.sub.consumer}",
                            "event_id": str(env.id),
                            "event_type": env.type,
                        },
                    )
            finally:
                # Also when cancelled mid-way: what is not done stays for the next round.
                parking.done_replaying(directory, service, left + lines[done:])
        return handed

    def _consumer(self, service: str, name: str) -> _Consumer | None:
        for c in self._consumers:
            if c.sub.service == service and c.sub.consumer == name:
                return c
        return None

    def _forget_parked(self, service: str, consumer: str, event_id: str) -> None:
        self._parked[service] = [
            p
            for p in self._parked.get(service, [])
            if not (p.consumer == consumer and p.event_id == event_id)
        ]

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
            parking.park(self.parking_dir, sub.service, parked)
