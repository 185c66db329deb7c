"""The consumer that turns referral events into webhook deliveries, in the transaction
that records the event as handled: no event is lost between the two. An event no webhook
wants (asked first, outside any transaction) is acked with nothing written."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from icrs_shared.events import Envelope
from icrs_shared.messaging import Consumers

from . import service

webhook_consumers = Consumers()


@webhook_consumers.on("webhooks", "referral.#", wanted=service.wanted)
async def on_referral_event(session: AsyncSession, envelope: Envelope) -> None:
    await service.enqueue(session=session, envelope=envelope)
