"""Event handlers of the referral service: its view of the other services, and the routing
that what it learns sets off.

They need the service's outbox and settings, so they are subscribed when the service
starts (`state.start_routing`), each behind the inbox like every consumer.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icrs_shared.events import Envelope
from icrs_shared.events.catalog import (
    CaseErased,
    CaseEvent,
    ConsentEvent,
    OrganizationEvent,
    ServiceEvent,
)
from icrs_shared.messaging import Consumers
from icrs_shared.outbox import Outbox

from . import view
from .models import KnownService
from .router import route_need, route_waiting, routing_lock
from .service import cancel_uncovered
from .webhooks.consumer import webhook_consumers

#: The service's declared consumers (webhook deliveries); the routing handlers are
#: subscribed at start.
consumers = Consumers()
consumers.items.extend(webhook_consumers.items)

BINDINGS = ("organization.*", "service.*", "case.*", "consent.*", "needs.assessed")


@dataclass(frozen=True)
class Routing:
    outbox: Outbox
    max_attempts: int
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    async def __call__(self, session: AsyncSession, envelope: Envelope) -> None:
        """One queue for the whole view, so that one entity's events mostly come in order."""
        handle = self._handlers().get(envelope.routing_key.split(".", 1)[0])
        if handle is not None:
            await routing_lock(session, case_id=_routes_one_case(envelope))
            await handle(session, envelope)

    def _handlers(self) -> dict[str, Callable[[AsyncSession, Envelope], Awaitable[None]]]:
        return {
            "organization": self._organization,
            "service": self._service,
            "case": self._case,
            "consent": self._consent,
            "needs": self._needs,
        }

    async def _organization(self, session: AsyncSession, envelope: Envelope) -> None:
        """An organization verified, reactivated or changed may now take needs that waited
        for it: route again the waiting needs of its services' categories."""
        await view.organization(session, envelope)
        organization_id = OrganizationEvent.model_validate(envelope.data).organization_id
        categories = await session.execute(
            select(col(KnownService.category))
            .where(col(KnownService.organization_id) == organization_id)
            .distinct()
        )
        for category in sorted(categories.scalars()):
            await self._route_waiting(session, category=category)

    async def _service(self, session: AsyncSession, envelope: Envelope) -> None:
        await view.service(session, envelope)
        if envelope.type in ("icrs.service.published", "icrs.service.updated"):
            category = ServiceEvent.model_validate(envelope.data).category
            await self._route_waiting(session, category=category)

    async def _case(self, session: AsyncSession, envelope: Envelope) -> None:
        await view.case(session, envelope)
        if envelope.type == "icrs.case.erased":
            erased = CaseErased.model_validate(envelope.data)
            await cancel_uncovered(
                session=session,
                outbox=self.outbox,
                case_id=erased.case_id,
                now=self.clock(),
                reason="case-erased",
                max_attempts=self.max_attempts,
            )
        elif envelope.type in ("icrs.case.registered", "icrs.case.updated"):
            await self._route_waiting(
                session, case_id=CaseEvent.model_validate(envelope.data).case_id
            )

    async def _consent(self, session: AsyncSession, envelope: Envelope) -> None:
        await view.consent(session, envelope)
        case_id = ConsentEvent.model_validate(envelope.data).case_id
        if envelope.type == "icrs.consent.withdrawn":
            await cancel_uncovered(
                session=session,
                outbox=self.outbox,
                case_id=case_id,
                now=self.clock(),
                reason="consent-withdrawn",
                max_attempts=self.max_attempts,
            )
        else:
            await self._route_waiting(session, case_id=case_id)

    async def _needs(self, session: AsyncSession, envelope: Envelope) -> None:
        # By category, so that routings of two cases take services' locks in one order.
        for need in sorted(await view.needs(session, envelope), key=lambda n: n.category):
            await route_need(
                session=session,
                outbox=self.outbox,
                need=need,
                max_attempts=self.max_attempts,
                now=self.clock(),
            )

    async def _route_waiting(
        self,
        session: AsyncSession,
        *,
        case_id: uuid.UUID | None = None,
        category: str | None = None,
    ) -> None:
        await route_waiting(
            session=session,
            outbox=self.outbox,
            max_attempts=self.max_attempts,
            now=self.clock(),
            case_id=case_id,
            category=category,
        )


#: Events whose handling may route the needs of any case: a service or an organization
#: changed, or live referrals cancelled (which frees places).
_ROUTES_ANY_CASE = ("icrs.consent.withdrawn", "icrs.case.erased")


def _routes_one_case(envelope: Envelope) -> uuid.UUID | None:
    """The case whose needs only this event's handling routes, if there is one."""
    kind = envelope.routing_key.split(".", 1)[0]
    if kind not in ("case", "consent", "needs") or envelope.type in _ROUTES_ANY_CASE:
        return None
    case_id = envelope.data.get("case_id") if isinstance(envelope.data, dict) else None
    try:
        return uuid.UUID(str(case_id))
    except ValueError:
        return None  # the handler refuses the event; the lock taken is the whole one
