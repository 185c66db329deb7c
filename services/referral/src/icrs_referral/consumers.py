"""Event handlers of the referral service: its view of the other services."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from icrs_shared.events import Envelope
from icrs_shared.messaging import Consumers

from . import view

consumers = Consumers()

_Apply = Callable[[AsyncSession, Envelope], Awaitable[object]]
_BY_ENTITY: dict[str, _Apply] = {
    "organization": view.organization,
    "service": view.service,
    "case": view.case,
    "consent": view.consent,
    "needs": view.needs,
}


@consumers.on("view", "organization.*", "service.*", "case.*", "consent.*", "needs.assessed")
async def on_event(session: AsyncSession, envelope: Envelope) -> None:
    """One queue for the whole view, so that one entity's events mostly come in order."""
    apply = _BY_ENTITY.get(envelope.routing_key.split(".", 1)[0])
    if apply is not None:
        await apply(session, envelope)
