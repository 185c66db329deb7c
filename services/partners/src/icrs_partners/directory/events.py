"""Which `service.*` event a change means for routing, and what it carries.

Routing sees a service while it is `active` and its organization is `active`. A change
that makes it visible publishes it, one that hides it withdraws it, and any other change
of a visible service (capacity first of all) updates it. Changes of invisible services
emit nothing: a pending organization's services are published when it is verified.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from icrs_shared.outbox import Outbox

from ..models import Organization, Service
from ..organizations.events import service_event

Verb = Literal["published", "updated", "withdrawn"]


def routable(service_status: str, organization_status: str) -> bool:
    return service_status == "active" and organization_status == "active"


def transition(*, before: bool, after: bool) -> Verb | None:
    """The event a change from visible-`before` to visible-`after` emits, if any."""
    if after:
        return "updated" if before else "published"
    return "withdrawn" if before else None


async def announce(
    *,
    session: AsyncSession,
    outbox: Outbox,
    service: Service,
    organization: Organization,
    was_routable: bool,
    actor: str | None,
    actororg: str | None,
) -> Verb | None:
    """Emit the event the service's change means (in the caller's transaction)."""
    verb = transition(before=was_routable, after=routable(service.status, organization.status))
    if verb is not None:
        await outbox.emit(
            session,
            f"icrs.service.{verb}",
            service_event(service),
            subject=service.id,
            actor=actor,
            actororg=actororg,
        )
    return verb
