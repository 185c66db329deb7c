"""The service directory: who may manage which service, creating, changing, finding."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from icrs_shared.auth import Caller
from icrs_shared.errors import Conflict, Forbidden, Invalid, NotFound, field_errors
from icrs_shared.outbox import Outbox

from ..models import Organization, Service
from . import repository
from .events import announce, routable
from .repository import After, ServiceQuery
from .schemas import ServicePatch, ServiceSpec

ADMIN = "partners:admin"
MANAGE = "services:manage"
READ = "partners:read"

#: Organization states in which services may be added (a suspended one may not).
OPEN_STATES = frozenset({"active", "pending"})


def caller_organization(caller: Caller) -> uuid.UUID | None:
    try:
        return uuid.UUID(caller.organization_id) if caller.organization_id else None
    except ValueError:
        return None


def is_admin(caller: Caller) -> bool:
    return ADMIN in caller.scopes


def manages(caller: Caller, organization_id: uuid.UUID) -> bool:
    """Admins manage every organization's services; others their own, with services:manage."""
    if is_admin(caller):
        return True
    return MANAGE in caller.scopes and caller_organization(caller) == organization_id


async def create(
    *,
    session: AsyncSession,
    outbox: Outbox,
    caller: Caller,
    organization_id: uuid.UUID,
    spec: ServiceSpec,
) -> tuple[Service, Organization]:
    if not manages(caller, organization_id):
        raise NotFound("no such organization")
    org = await repository.get_organization(session, organization_id, shared_lock=True)
    if org is None:
        raise NotFound("no such organization")
    if org.status not in OPEN_STATES:
        raise Conflict(f"the organization is {org.status}: it cannot add services")
    service = await add(session=session, outbox=outbox, organization=org, spec=spec, actor=caller)
    return service, org


async def add(
    *,
    session: AsyncSession,
    outbox: Outbox,
    organization: Organization,
    spec: ServiceSpec,
    actor: Caller,
    service_id: uuid.UUID | None = None,
) -> Service:
    """Store a new service of `organization` and announce it if routing may use it."""
    service = Service(
        id=service_id or uuid.uuid4(), organization_id=organization.id, **_columns(spec)
    )
    session.add(service)
    await session.flush()
    await repository.index_service(session, service, fresh=True)
    await announce(
        session=session,
        outbox=outbox,
        service=service,
        organization=organization,
        was_routable=False,
        actor=actor.client_id,
        actororg=actor.organization_id,
    )
    return service


async def for_change(
    *, session: AsyncSession, caller: Caller, service_id: uuid.UUID
) -> tuple[Service, Organization]:
    """The service the caller may change, locked until the transaction ends."""
    service = await repository.get_service(session, service_id)
    if service is None or not manages(caller, service.organization_id):
        raise NotFound("no such service")
    org = await repository.get_organization(session, service.organization_id, shared_lock=True)
    assert org is not None  # a foreign key
    locked = await repository.get_service(session, service_id, for_update=True)
    assert locked is not None
    return locked, org


async def update(
    *,
    session: AsyncSession,
    outbox: Outbox,
    service: Service,
    organization: Organization,
    patch: ServicePatch,
    actor: Caller,
) -> Service:
    """Apply a merge patch; a patch that changes nothing keeps the version."""
    current = ServiceSpec.of(service)
    try:
        spec = ServiceSpec.model_validate(patch.merge_into(current))
    except ValidationError as exc:
        errors = field_errors(exc.errors())
        raise Invalid(f"{len(errors)} invalid field(s)", errors=errors) from None
    await change(
        session=session,
        outbox=outbox,
        service=service,
        organization=organization,
        current=current,
        spec=spec,
        actor=actor,
    )
    return service


async def change(
    *,
    session: AsyncSession,
    outbox: Outbox,
    service: Service,
    organization: Organization,
    current: ServiceSpec,
    spec: ServiceSpec,
    actor: Caller,
) -> bool:
    """Make `service` (now `current`) follow `spec`; False when nothing changes."""
    if spec == current:
        return False
    was_routable = routable(service.status, organization.status)
    reindex = (spec.service_areas, spec.languages) != (current.service_areas, current.languages)
    apply(service, spec)
    service.version += 1
    service.updated_at = datetime.now(UTC)
    await session.flush()
    if reindex:
        await repository.index_service(session, service, fresh=False)
    await announce(
        session=session,
        outbox=outbox,
        service=service,
        organization=organization,
        was_routable=was_routable,
        actor=actor.client_id,
        actororg=actor.organization_id,
    )
    return True


def apply(service: Service, spec: ServiceSpec) -> None:
    for name, value in _columns(spec).items():
        setattr(service, name, value)


def _columns(spec: ServiceSpec) -> dict[str, Any]:
    """The table columns a validated spec sets."""
    return {
        "name": spec.name,
        "category": spec.category,
        "description": spec.description,
        "status": spec.status,
        "languages": list(spec.languages),
        "service_areas": list(spec.service_areas),
        "eligibility": spec.eligibility.model_dump(),
        "capacity_maximum": spec.capacity.maximum,
        "accepting": spec.capacity.accepting,
        "accept_within_seconds": spec.accept_within_seconds,
        "url": spec.url,
        "email": spec.email,
    }


async def get(
    *, session: AsyncSession, caller: Caller, service_id: uuid.UUID
) -> tuple[Service, Organization]:
    """A service the caller may see: any for admins, their own organization's, and
    those of active organizations."""
    service = await repository.get_service(session, service_id)
    if service is None:
        raise NotFound("no such service")
    org = await repository.get_organization(session, service.organization_id)
    assert org is not None
    if org.status != "active" and not manages(caller, org.id):
        raise NotFound("no such service")
    return service, org


async def find(
    *,
    session: AsyncSession,
    caller: Caller,
    query: ServiceQuery,
    after: After | None,
    limit: int,
) -> Sequence[tuple[Service, str]]:
    if not query.active_organizations_only and not (
        is_admin(caller)
        or (query.organization_id is not None and manages(caller, query.organization_id))
    ):
        raise Forbidden(
            "include_inactive_organizations needs partners:admin, or organization_id "
            "naming your own organization with services:manage"
        )
    return await repository.search(session, query, after=after, limit=limit)
