"""What the referral service runs besides its routes: the routing consumer and the sweep
for referrals not accepted in time."""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from datetime import UTC, datetime

from icrs_shared.inbox import once_per_event
from icrs_shared.runtime import Runtime

from .consumers import BINDINGS, Routing
from .service import expire_due
from .settings import ReferralSettings

log = logging.getLogger(__name__)

_SWEEPER = "expiry_sweeper"
CONSUMER = "view"


def _settings(runtime: Runtime) -> ReferralSettings:
    settings = runtime.settings
    if not isinstance(settings, ReferralSettings):
        raise TypeError("the referral service runs with ReferralSettings")
    return settings


async def start_routing(runtime: Runtime) -> None:
    settings = _settings(runtime)
    routing = Routing(runtime.messaging.outbox, settings.referral_max_attempts)
    handler = once_per_event(runtime.db, runtime.messaging.inbox, CONSUMER, routing)
    # Cases route side by side, but what may route any case waits for all of them
    # (`router.routing_lock`): a few deliveries at once, each holding a connection.
    await runtime.bus.subscribe("referral", CONSUMER, BINDINGS, handler, concurrency=8)
    runtime.extras[_SWEEPER] = asyncio.create_task(_sweep(runtime, settings), name=_SWEEPER)


async def stop_routing(runtime: Runtime) -> None:
    task = runtime.extras.pop(_SWEEPER, None)
    if isinstance(task, asyncio.Task):
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def _sweep(runtime: Runtime, settings: ReferralSettings) -> None:
    while True:
        await asyncio.sleep(settings.referral_expiry_interval)
        try:
            await expire_due(
                runtime.db,
                runtime.messaging.outbox,
                now=datetime.now(UTC),
                max_attempts=settings.referral_max_attempts,
            )
        except Exception as exc:
            log.warning("expiry sweep failed", extra={"error_type": type(exc).__name__})
