"""RabbitBus: the bus on RabbitMQ with aio-pika.

Topology (names prefixed by the namespace, empty in production):
- `icrs.events`: durable topic exchange every service publishes to;
- `icrs.<service>.<consumer>`: one durable quorum queue per consumer, bound with the
  consumer's patterns, with an explicit `x-delivery-limit` and at-least-once
  dead-lettering to the service's dead-letter exchange;
- `icrs.<service>.dlx` (fanout) -> `icrs.<service>.parking`: what a service gave up on.

Failed deliveries are counted by the consumers, not by the broker. RabbitMQ's delivery
count also rises when a delivery comes back because its connection or channel closed,
so a message in flight through a few connection losses would be parked although no
handler ever failed on it. A handler that fails has its message put back as a copy, at
the tail of its queue, carrying its count of failures (`x-icrs-failures`); after the
subscription's limit of failures, the message is rejected to parking. The broker's
`x-delivery-limit` stays as the backstop for deliveries that come back with no verdict
(connection losses, a process killed in a handler): when a copy reaches it, the consumer
renews the copy, carrying what it spent (`x-icrs-returned`), up to `RETURNS_PER_LIMIT`
times the limit in all; past that, the next return parks it.

A topic exchange drops what no queue is bound for. The consumers that must see what is
published (`icrs serve` names every consumer of the platform) are named in `required`:
until their queues exist, nothing is published and events wait in the outboxes, so that
a service starting before them loses none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustConnection,
)
from aio_pika.exceptions import ChannelInvalidStateError
from pydantic import ValidationError

from ..events import Envelope
from ..telemetry import consume_span, publish_span
from .base import (
    BusUnavailable,
    ConsumersMissing,
    Handler,
    Parked,
    PublishError,
    Subscription,
)
from .patience import Stopped, handle_patiently

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/cloudevents+json"
_ACK_ERRORS = (ChannelInvalidStateError, aiormq.exceptions.AMQPError, ConnectionError)
#: Header of a copy put back after failures: how many handlers failed on the message.
FAILURES = "x-icrs-failures"
#: Header of a renewed copy: deliveries of earlier copies that came back with no verdict.
RETURNED = "x-icrs-returned"
#: Deliveries with no verdict a message may have in all, as a multiple of the limit.
RETURNS_PER_LIMIT = 4
#: Headers the broker sets on a delivery or a dead-lettering; a copy starts without them.
_BROKER_HEADERS = ("x-delivery-count", "x-death")


class RabbitBus:
    def __init__(
        self,
        url: str,
        *,
        exchange: str = "icrs.events",
        namespace: str = "",
        prefetch: int = 200,
        delivery_limit: int = 5,
        concurrency: int = 32,
        publish_timeout: float = 15.0,
        connection_name: str = "icrs",
        required: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.url = url
        self.namespace = namespace
        self.exchange_name = namespace + exchange
        self.prefetch = prefetch
        self.delivery_limit = delivery_limit
        self.concurrency = concurrency
        self.publish_timeout = publish_timeout
        self.connection_name = connection_name
        #: (service, consumer) whose queues must exist before anything is published.
        self.required = tuple(required)
        self._required_found = not self.required
        self._conn: AbstractRobustConnection | None = None
        self._pub_channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._subs: list[Subscription] = []
        #: Every subscription this bus has had, for the topology it declared.
        self._declared: dict[tuple[str, str], Subscription] = {}
        self._consuming: set[tuple[str, str]] = set()
        self._consumers: dict[tuple[str, str], tuple[AbstractChannel, Any, str]] = {}
        self._connected = asyncio.Event()
        self._connector: asyncio.Task[None] | None = None
        self._closing = False
        self._inflight: set[asyncio.Task[None]] = set()

    # names -----------------------------------------------------------------

    def queue_name(self, service: str, consumer: str) -> str:
        return f"{self.namespace}icrs.{service}.{consumer}"

    def dlx_name(self, service: str) -> str:
        return f"{self.namespace}icrs.{service}.dlx"

    def parking_name(self, service: str) -> str:
        return f"{self.namespace}icrs.{service}.parking"

    # lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Connect, or keep trying in the background while the broker is away."""
        self._closing = False
        try:
            await self._connect()
        except Exception as exc:
            log.warning(
                "broker unreachable; retrying in the background",
                extra={"error_type": type(exc).__name__},
            )
            self._connector = asyncio.create_task(self._keep_connecting(), name="bus:connect")

    async def _keep_connecting(self) -> None:
        delay = 0.5
        while not self._closing:
            await asyncio.sleep(delay)
            try:
                await self._connect()
            except Exception as exc:
                delay = min(delay * 2, 10.0)
                log.debug("broker still unreachable", extra={"error_type": type(exc).__name__})
            else:
                log.info("connected to the broker")
                return

    async def _connect(self) -> None:
        conn = await aio_pika.connect_robust(
            self.url,
            reconnect_interval=1,
            client_properties={"connection_name": self.connection_name},
        )
        try:
            channel = await conn.channel(publisher_confirms=True)
            self._exchange = await channel.declare_exchange(
                self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
            )
        except Exception:
            await conn.close()
            raise
        self._conn, self._pub_channel = conn, channel
        self._connected.set()
        for sub in list(self._subs):
            await self._consume(sub)

    async def close(self) -> None:
        self._closing = True
        if self._connector is not None:
            self._connector.cancel()
            await asyncio.gather(self._connector, return_exceptions=True)
        self._connected.clear()
        if self._inflight:
            # Let handlers that are running finish their transactions.
            await asyncio.wait(self._inflight, timeout=10)
        if self._conn is not None:
            await self._conn.close()
        self._conn = self._pub_channel = self._exchange = None
        self._consuming.clear()
        self._consumers.clear()

    async def ready(self) -> bool:
        conn = self._conn
        return conn is not None and not conn.is_closed and conn.connected.is_set()

    # publishing ------------------------------------------------------------

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        exchange = self._exchange
        if exchange is None or not await self.ready():
            raise BusUnavailable("not connected to the broker")
        if not self._required_found:
            await self._find_required()
        confirmed: set[str] = set()

        async def one(env: Envelope) -> None:
            with publish_span(env.type, str(env.id), env.traceparent):
                message = aio_pika.Message(
                    env.to_json(),
                    content_type=CONTENT_TYPE,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=str(env.id),
                    type=env.type,
                    timestamp=env.time,
                    app_id=env.source,
                )
                await exchange.publish(
                    message, env.routing_key, mandatory=False, timeout=self.publish_timeout
                )
            confirmed.add(str(env.id))

        results = await asyncio.gather(*(one(e) for e in envelopes), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            first = failures[0]
            raise PublishError(
                f"{len(failures)} of {len(envelopes)} not confirmed ({type(first).__name__})",
                frozenset(confirmed),
            ) from first

    async def _find_required(self) -> None:
        conn = self._conn
        if conn is None:
            raise BusUnavailable("not connected to the broker")
        for service, consumer in self.required:
            name = self.queue_name(service, consumer)
            try:
                # A passive declare of a missing queue closes its channel: one of its own.
                async with conn.channel() as channel:
                    await channel.declare_queue(name, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                raise ConsumersMissing(
                    f"queue {name} does not exist yet: events wait until {service} has started"
                ) from None
        self._required_found = True

    # consuming -------------------------------------------------------------

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
        if any(s.service == service and s.consumer == consumer for s in self._subs):
            raise ValueError(f"consumer {service}.{consumer} is already subscribed")
        sub = Subscription(
            service,
            consumer,
            tuple(bindings),
            handler,
            delivery_limit or self.delivery_limit,
            concurrency,
        )
        self._subs.append(sub)
        self._declared[(service, consumer)] = sub
        if self._conn is not None and self._connected.is_set():
            await self._consume(sub)

    async def _declare(self, channel: AbstractChannel, sub: Subscription) -> Any:
        dlx = await channel.declare_exchange(
            self.dlx_name(sub.service), aio_pika.ExchangeType.FANOUT, durable=True
        )
        parking = await channel.declare_queue(
            self.parking_name(sub.service), durable=True, arguments={"x-queue-type": "quorum"}
        )
        await parking.bind(dlx)
        queue = await channel.declare_queue(
            self.queue_name(sub.service, sub.consumer),
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-delivery-limit": sub.delivery_limit,
                "x-dead-letter-exchange": self.dlx_name(sub.service),
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
        )
        exchange = await channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        for pattern in sub.bindings:
            await queue.bind(exchange, routing_key=pattern)
        return queue

    async def _consume(self, sub: Subscription) -> None:
        key = (sub.service, sub.consumer)
        if key in self._consuming or self._conn is None:
            return
        channel = await self._conn.channel()
        concurrency = sub.concurrency or self.concurrency
        await channel.set_qos(prefetch_count=max(self.prefetch, concurrency))
        queue = await self._declare(channel, sub)
        limit = asyncio.Semaphore(concurrency)

        async def on_message(message: AbstractIncomingMessage) -> None:
            async with limit:
                if key not in self._consuming:
                    return  # unsubscribed: left unacked, it goes back when the channel closes
                # When its channel dies, aiormq cancels this task. The handler is left to
                # finish its transaction; the delivery is then not acked (see _settle).
                task = asyncio.create_task(
                    self._deliver(sub, message), name=f"deliver:{sub.service}.{sub.consumer}"
                )
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(task)

        tag = await queue.consume(on_message)
        self._consuming.add(key)
        self._consumers[key] = (channel, queue, tag)

    async def unsubscribe(self, service: str) -> None:
        """Stop consuming for `service` (a graceful stop): no new delivery reaches its
        handlers, those running finish, and what was prefetched goes back to the queue."""
        subs = [s for s in self._subs if s.service == service]
        self._subs = [s for s in self._subs if s.service != service]
        handles = []
        for sub in subs:
            key = (sub.service, sub.consumer)
            self._consuming.discard(key)
            handle = self._consumers.pop(key, None)
            if handle is not None:
                handles.append(handle)
                with contextlib.suppress(Exception):
                    await handle[1].cancel(handle[2])
        running = [t for t in self._inflight if t.get_name().startswith(f"deliver:{service}.")]
        if running:
            await asyncio.wait(running, timeout=10)
        for channel, _, _ in handles:
            with contextlib.suppress(Exception):
                await channel.close()

    async def _deliver(self, sub: Subscription, message: AbstractIncomingMessage) -> None:
        name = f"{sub.service}.{sub.consumer}"
        try:
            env = Envelope.from_json(message.body)
        except ValidationError:
            log.error("unreadable message rejected to parking", extra={"consumer": name})
            await _settle(message.reject(requeue=False), name)
            return
        returns = _delivery_count(message)  # this copy's deliveries that came back
        failures = _header_int(message.headers, FAILURES)
        returned = _header_int(message.headers, RETURNED)
        limit = sub.delivery_limit
        if returns >= limit and returned + returns < RETURNS_PER_LIMIT * limit:
            # One more return and the broker parks it; no handler failed on it.
            renewed = {FAILURES: failures, RETURNED: returned + returns}
            if await self._put_back(sub, message, renewed):
                await _settle(message.ack(), name)
                return
        key = (sub.service, sub.consumer)
        try:
            with consume_span(sub.consumer, env.type, str(env.id), env.traceparent):
                await handle_patiently(
                    sub.handler,
                    env,
                    stopping=lambda: self._closing or key not in self._consuming,
                    consumer=name,
                )
        except Stopped:
            return  # unsettled: it goes back to the queue when the channel closes
        except Exception as exc:
            failures += 1
            log.warning(
                "handler failed; returning the message",
                extra={
                    "consumer": name,
                    "event_id": str(env.id),
                    "event_type": env.type,
                    "delivery": failures,
                    "error_type": type(exc).__name__,
                },
            )
            if failures > limit:
                await _settle(message.reject(requeue=False), name)
                return
            # A short pause keeps a failing handler from spinning through its limit.
            await asyncio.sleep(min(0.05 * 2**failures, 2.0))
            if await self._put_back(sub, message, {FAILURES: failures, RETURNED: returned}):
                await _settle(message.ack(), name)
            else:
                # The broker counts this return; its delivery limit parks it in the end.
                await _settle(message.nack(requeue=True), name)
            return
        await _settle(message.ack(), name)

    async def _put_back(
        self, sub: Subscription, message: AbstractIncomingMessage, counts: dict[str, int]
    ) -> bool:
        """Publish a copy of `message` to the tail of its queue with `counts` in its
        headers; true once the broker confirmed it. The caller then acks the original (if
        that fails, the original comes back too: the inbox makes the pair harmless)."""
        # On the channel it came on: that one is open now, while the publishing channel
        # may still be coming back after the connection was restored.
        handle = self._consumers.get((sub.service, sub.consumer))
        if handle is None:
            return False
        headers = {k: v for k, v in (message.headers or {}).items() if k not in _BROKER_HEADERS}
        queue = self.queue_name(sub.service, sub.consumer)
        try:
            await self._send_copy(handle[0], message, headers | counts, queue)
        except Exception as exc:  # refused, unroutable, or the broker is away
            log.warning(
                "could not put a copy back; returning the message instead",
                extra={
                    "consumer": f"{sub.service}.{sub.consumer}",
                    "error_type": type(exc).__name__,
                },
            )
            return False
        return True

    # operations ------------------------------------------------------------

    async def parked(self, service: str) -> list[Parked]:
        return await self._through_parking(service, None)

    async def replay(self, service: str, event_ids: Collection[str] | None = None) -> list[Parked]:
        """Put `service`'s parked messages (those of `event_ids`, or all) back at the tail
        of the queues they were parked from, with their counts started anew, once their
        handlers can take them; return those put back. A message whose queue is gone stays
        parked."""
        return await self._through_parking(
            service, lambda p: event_ids is None or p.event_id in event_ids
        )

    async def _through_parking(
        self, service: str, replaying: Callable[[Parked], bool] | None
    ) -> list[Parked]:
        """Read the parking queue of `service` through: each message is either put back
        where it came from (when `replaying` says so) or returned to parking, in place."""
        if self._conn is None:
            raise BusUnavailable("not connected to the broker")
        name = self.parking_name(service)
        try:
            # A passive declare of a missing queue closes its channel: one of its own.
            async with self._conn.channel() as probe:
                await probe.declare_queue(name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return []  # the service never declared it: nothing was parked
        out: list[Parked] = []
        async with self._conn.channel() as channel:
            queue = await channel.declare_queue(name, passive=True)
            held: list[AbstractIncomingMessage] = []
            try:
                while True:
                    msg = await queue.get(no_ack=False, fail=False)
                    if msg is None:
                        break
                    record = _parked(msg, self._limit)
                    if replaying is None:
                        held.append(msg)
                        out.append(record)
                    elif replaying(record) and await self._unpark(channel, msg, record):
                        out.append(record)
                    else:
                        held.append(msg)
            finally:
                for msg in held:  # back to parking (so too when the channel is gone)
                    with contextlib.suppress(*_ACK_ERRORS):
                        await msg.nack(requeue=True)
        return out

    async def _unpark(
        self, channel: AbstractChannel, msg: AbstractIncomingMessage, record: Parked
    ) -> bool:
        origin = record.extra["queue"]
        if not origin:
            return False
        fresh = {k: v for k, v in (msg.headers or {}).items() if not k.startswith("x-")}
        try:
            await self._send_copy(channel, msg, fresh, origin)
        except (aiormq.exceptions.PublishError, aiormq.exceptions.DeliveryError):
            return False  # its queue is gone, or refuses it
        await msg.ack()
        log.info(
            "parked message put back",
            extra={"queue": origin, "event_id": record.event_id, "event_type": record.event_type},
        )
        return True

    async def _send_copy(
        self,
        channel: AbstractChannel,
        message: AbstractIncomingMessage,
        headers: dict[str, Any],
        queue: str,
    ) -> None:
        """Publish a copy of `message` with `headers` straight to `queue`; returns once
        the broker confirmed it, raises if it refused it or the queue is gone."""
        await channel.default_exchange.publish(
            _copy(message, headers), queue, mandatory=True, timeout=self.publish_timeout
        )

    def _limit(self, queue: str) -> int:
        for sub in self._declared.values():
            if self.queue_name(sub.service, sub.consumer) == queue:
                return sub.delivery_limit
        return self.delivery_limit

    async def delete_topology(self, services: Sequence[str] | None = None) -> None:
        """Remove this bus's queues and exchanges (tests, with a namespace). Its consumers
        stop first: a consumer's channel that its queue's deletion closed would otherwise
        be reopened, and the queue declared again, by the robust connection."""
        if self._conn is None:
            return
        if services is None:
            services = sorted({s.service for s in self._declared.values()})
        for service in sorted({s.service for s in self._subs}):
            await self.unsubscribe(service)
        async with self._conn.channel() as channel:
            for sub in self._declared.values():
                await channel.queue_delete(self.queue_name(sub.service, sub.consumer))
            for service in services:
                await channel.queue_delete(self.parking_name(service))
                await channel.exchange_delete(self.dlx_name(service))
            await channel.exchange_delete(self.exchange_name)


async def _settle(op: Any, consumer: str) -> None:
    # A delivery from a channel that died cannot be acked: its tag means nothing on the
    # reopened channel. The broker redelivers it; the inbox makes that harmless.
    try:
        await op
    except _ACK_ERRORS as exc:
        log.warning(
            "delivery not settled: its channel is gone; the broker will redeliver it",
            extra={"consumer": consumer, "error_type": type(exc).__name__},
        )


def _delivery_count(message: AbstractIncomingMessage) -> int:
    return _header_int(message.headers, "x-delivery-count")


def _header_int(headers: Any, name: str) -> int:
    value = (headers or {}).get(name, 0)
    try:
        return max(int(value), 0) if isinstance(value, int | str) else 0
    except ValueError:
        return 0


def _copy(message: AbstractIncomingMessage, headers: dict[str, Any]) -> aio_pika.Message:
    return aio_pika.Message(
        message.body,
        headers=headers,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        type=message.type,
        timestamp=message.timestamp,
        app_id=message.app_id,
    )


def _parked(msg: AbstractIncomingMessage, limit_of: Callable[[str], int]) -> Parked:
    headers = msg.headers or {}
    queue = str(headers.get("x-first-death-queue", ""))
    reason = str(headers.get("x-first-death-reason", "unknown"))
    failures = _header_int(headers, FAILURES)
    returned = _header_int(headers, RETURNED)
    # Dead-lettering resets the broker's delivery count; what it was follows from the
    # reason, and what earlier copies spent from the headers they carry.
    if reason == "rejected" and FAILURES in headers:
        reason = "delivery_limit"  # its handlers failed more often than the limit allows
        deliveries = failures + 1 + returned
    elif reason == "delivery_limit" and queue:
        deliveries = limit_of(queue) + 1 + failures + returned
    else:
        deliveries = 1 if reason == "rejected" else 0
    event_id = msg.message_id
    return Parked(
        consumer=queue.rsplit(".", 1)[-1] if queue else "",
        reason=reason,
        deliveries=deliveries,
        body=msg.body,
        parked_at=_death_time(headers),
        event_id=event_id,
        event_type=msg.type,
        extra={"queue": queue, "failed": str(failures), "returned": str(returned)},
    )


def _death_time(headers: Any) -> datetime | None:
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        when = deaths[0].get("time")
        if isinstance(when, datetime):
            return when if when.tzinfo else when.replace(tzinfo=UTC)
    return None
