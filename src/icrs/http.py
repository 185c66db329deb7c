"""The HTTP/1.1 protocol the platform's servers speak: uvicorn's h11 protocol with a
deadline for each request's head.

uvicorn's own keep-alive timeout stops at a connection's first byte, and a new connection
has none: a client that opens connections and sends their request lines and headers a
byte at a time could hold every one of them for ever. Here a connection that has not sent
a whole request head within `head_timeout` seconds of opening, or of the end of its
previous response, gets 408 (`request-timeout`, problem+json) and is closed. The body has
its own deadline (`ICRS_BODY_TIMEOUT`, `icrs_shared.limits`).
"""

from __future__ import annotations

import asyncio
import json
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from icrs_shared.errors import PROBLEM_JSON, RequestTimeout

log = logging.getLogger(__name__)


def _timeout_response() -> bytes:
    problem = RequestTimeout("the request's headers did not arrive in time")
    body = json.dumps(problem.body(), separators=(",", ":")).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        f"content-type: {PROBLEM_JSON}\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


_TIMEOUT_RESPONSE = _timeout_response()


class HeadTimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol; a request's head must arrive within `head_timeout`."""

    head_timeout: float = 10.0
    _head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_arrived()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:
            self._head_arrived()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._await_head()  # the next request on this connection

    def _await_head(self) -> None:
        self._head_arrived()
        self._head_deadline = self.loop.call_later(self.head_timeout, self._head_too_slow)

    def _head_arrived(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        log.info("request head not received in time: connection closed")
        self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()


def head_timed(seconds: float) -> type[HeadTimedH11Protocol]:
    """The protocol class, with its deadline for request heads (uvicorn makes one
    instance per connection)."""
    return type("HeadTimedH11Protocol", (HeadTimedH11Protocol,), {"head_timeout": seconds})
