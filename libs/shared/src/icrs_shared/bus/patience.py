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

from ..db import is_transient
from ..events import Envelope
from .base import Handler

log = logging.getLogger(__name__)

MAX_PAUSE = 5.0


class Stopped(Exception):
    """The consumer stopped while the handler's dependencies were away; the message was
    neither handled nor refused, and goes back to the queue as it was."""


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
