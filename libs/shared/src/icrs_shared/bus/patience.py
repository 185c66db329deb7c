"""Telling a handler's failure from its dependencies' outage.

A message whose handler fails because the database cannot be reached is not a bad
message: returning it to the queue would spend its delivery limit and, in a long enough
outage, park every message that arrives. Such failures are retried in place instead, the
message held unacked with its delivery count unchanged, until the handler gets through
or the consumer stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy import exc as sa

from ..events import Envelope
from .base import Handler

log = logging.getLogger(__name__)

MAX_PAUSE = 5.0


class Stopped(Exception):
    """The consumer stopped while the handler's dependencies were away; the message was
    neither handled nor refused, and goes back to the queue as it was."""


#: SQLSTATEs of a database that is away, full or busy, not of a bad message: connection
#: exceptions (08), insufficient resources (53: too many connections, out of memory, disk
#: full), shutting down or starting up (57P01-57P03), and a transaction that lost a race
#: and only needs running again (40001 serialization failure, 40P01 deadlock).
_TRANSIENT_CLASSES = ("08", "53")
_TRANSIENT_STATES = frozenset({"57P01", "57P02", "57P03", "40001", "40P01"})


def is_transient(exc: BaseException) -> bool:
    """True for an outage of what the handler depends on, false for a fault of the message."""
    if isinstance(exc, sa.DBAPIError):
        if exc.connection_invalidated:
            return True
        state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        if isinstance(state, str) and (
            state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES
        ):
            return True
    return isinstance(
        exc,
        sa.OperationalError | sa.InterfaceError | sa.TimeoutError | OSError | TimeoutError,
    )


async def handle_patiently(
    handler: Handler, envelope: Envelope, *, stopping: Callable[[], bool], consumer: str
) -> None:
    """Run `handler`; while it fails for a transient reason, pause and run it again.

    Raises what the handler raised for any other reason, and `Stopped` when `stopping()`
    becomes true during an outage.
    """
    pause = 0.1
    while True:
        try:
            await handler(envelope)
            return
        except Exception as exc:
            if not is_transient(exc):
                raise
            if stopping():
                raise Stopped from exc
            log.warning(
                "handler's dependency unavailable; trying again",
                extra={
                    "consumer": consumer,
                    "event_id": str(envelope.id),
                    "event_type": envelope.type,
                    "error_type": type(exc).__name__,
                    "pause": pause,
                },
            )
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_PAUSE)
