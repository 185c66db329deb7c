"""Waiting for something that happens elsewhere (a consumer, a relay) without sleeping blind."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest


async def eventually(
    check: Callable[[], bool | Awaitable[bool]],
    within: float = 10.0,
    interval: float = 0.05,
) -> None:
    """Wait until `check()` holds; fail the test if it does not `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            pytest.fail(f"condition not met within {within}s")
        await asyncio.sleep(interval)
