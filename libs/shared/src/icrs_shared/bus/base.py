"""The small interface both buses implement, and AMQP topic matching."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Protocol

from ..events import Envelope

Handler = Callable[[Envelope], Awaitable[None]]


class BusUnavailable(Exception):
    """The broker cannot be reached; nothing was published."""


class ConsumersMissing(BusUnavailable):
    """A consumer's queue does not exist yet (its service has not started once); nothing
    was published. Unlike an unreachable broker, it may be there any moment: worth
    asking again soon."""


class PublishError(Exception):
    """Some envelopes were not confirmed; `confirmed` holds the ids that were."""

    def __init__(self, message: str, confirmed: frozenset[str]) -> None:
        super().__init__(message)
        self.confirmed = confirmed


@dataclass(frozen=True)
class Subscription:
    service: str
    consumer: str
    bindings: tuple[str, ...]
    handler: Handler
    delivery_limit: int
    #: Deliveries handled at once; None is the bus's default.
    concurrency: int | None = None


@dataclass(frozen=True)
class Parked:
    """A message that went to a service's parking queue, and why."""

    consumer: str
    reason: str
    deliveries: int
    body: bytes
    parked_at: datetime | None = None
    event_id: str | None = None
    event_type: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


class Bus(Protocol):
    """Publish confirmed envelopes; consume them with at-least-once delivery.

    A handler that returns has handled the message (it is acked); one that raises
    gets it again, up to the subscription's delivery limit, after which the message
    is parked for the service. Handlers must tolerate redelivery (see `inbox`).
    """

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        """Return once every envelope is confirmed; raise BusUnavailable or PublishError."""

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
        """Deliver messages matching `bindings` to `handler`, up to `concurrency` at once
        (the bus's default when None; a handler that batches wants many)."""

    async def unsubscribe(self, service: str) -> None:
        """Stop delivering to `service`'s handlers; return once those running finish.
        Messages not handled stay for the next start."""

    async def ready(self) -> bool: ...

    async def parked(self, service: str) -> list[Parked]:
        """What the service's parking queue holds (left in place)."""


def topic_matches(binding: str, routing_key: str) -> bool:
    """AMQP topic semantics: `*` is exactly one word, `#` zero or more."""
    return _match(tuple(binding.split(".")), tuple(routing_key.split(".")))


@lru_cache(maxsize=4096)
def _match(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head == "*" or head == words[0]) and _match(rest, words[1:])
