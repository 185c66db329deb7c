"""A steady stream of cases, as an organization's system sends them while the platform
is being hurt: every request that fails for the platform's sake (no connection, a 5xx, a
request with the same key still in progress) is sent again with the same Idempotency-Key,
so that a retry can never register a person twice.

    async with CaseStream(client, headers, first=1000) as stream:
        await stream.wait_for(10)
        ...hurt the platform...
        await stream.wait_for(40)
    stream.cases   # number -> case id, every case the stream registered
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import Counter
from types import TracebackType

import httpx

from .processes import PlatformClient


class CaseNotRegistered(RuntimeError):
    """A case could not be registered however long the stream kept trying."""


def retryable(response: httpx.Response) -> bool:
    """Whether an answer says "not now" rather than "not this": a server error, too many
    requests, or the same request still being answered (409 naming the key)."""
    if response.status_code >= 500 or response.status_code == 429:
        return True
    return response.status_code == 409 and "Idempotency-Key" in response.text


class CaseStream:
    """`workers` senders registering person `first`, `first + 1`, ... until stopped."""

    def __init__(
        self,
        client: PlatformClient,
        headers: dict[str, str],
        *,
        first: int,
        workers: int = 2,
        pause: float = 0.2,
        patience: float = 120.0,
    ) -> None:
        self.client = client
        self.headers = headers
        self.workers = workers
        self.pause = pause
        self.patience = patience
        self.cases: dict[int, str] = {}
        #: Why requests were sent again: an exception's type or an HTTP status.
        self.retries: Counter[str] = Counter()
        self._numbers = itertools.count(first)
        self._run = uuid.uuid4().hex[:8]
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def sent(self) -> int:
        return len(self.cases)

    async def __aenter__(self) -> CaseStream:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def start(self) -> None:
        self._stopping.clear()
        self._tasks = [
            asyncio.create_task(self._send(), name=f"cases:{i}") for i in range(self.workers)
        ]

    async def stop(self) -> None:
        """Let each sender finish the case in hand (with its retries), then stop."""
        self._stopping.set()
        try:
            await asyncio.gather(*self._tasks)
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks = []

    async def wait_for(self, count: int, within: float = 120.0) -> None:
        """Wait until the stream has registered `count` cases in all."""
        deadline = time.monotonic() + within
        while self.sent < count:
            for task in self._tasks:
                if task.done() and task.exception() is not None:
                    raise RuntimeError("the case stream stopped") from task.exception()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.sent} of {count} cases registered in {within}s")
            await asyncio.sleep(0.1)

    async def _send(self) -> None:
        while not self._stopping.is_set():
            number = next(self._numbers)
            self.cases[number] = await self.register(number)
            await asyncio.sleep(self.pause)

    async def register(self, number: int) -> str:
        """Register person `number` (consent, one need), trying again while the platform
        says "not now"; the case id."""
        key = f"{self._run}-{number}"
        deadline = time.monotonic() + self.patience
        delay = 0.2
        while True:
            try:
                return await self.client.refer(self.headers, number, idempotency_key=key)
            except httpx.HTTPStatusError as exc:
                if not retryable(exc.response):
                    raise
                why = str(exc.response.status_code)
            except httpx.TransportError as exc:
                why = type(exc).__name__
            self.retries[why] += 1
            if time.monotonic() > deadline:
                raise CaseNotRegistered(
                    f"person {number} not registered in {self.patience}s: {dict(self.retries)}"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
