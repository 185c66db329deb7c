"""What the webhooks hold while the service runs: the sender and its HTTP client."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from icrs_shared.runtime import Runtime

from .delivery import TIMEOUT, USER_AGENT, Sender

_EXTRA = "webhooks"


@dataclass
class Webhooks:
    sender: Sender
    client: httpx.AsyncClient


async def start_webhooks(runtime: Runtime) -> None:
    client = httpx.AsyncClient(
        timeout=TIMEOUT,
        follow_redirects=False,
        headers={"user-agent": USER_AGENT},
    )
    sender = Sender(runtime.db, runtime.messaging.outbox, client)
    runtime.extras[_EXTRA] = Webhooks(sender, client)
    await sender.start()


async def stop_webhooks(runtime: Runtime) -> None:
    state = runtime.extras.pop(_EXTRA, None)
    if isinstance(state, Webhooks):
        await state.sender.stop()
        await state.client.aclose()
