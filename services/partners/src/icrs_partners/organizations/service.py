"""Organizations' lifecycle (pending → active ⇄ suspended) and their OAuth clients.

Functions here change the session and write events to the outbox; the caller commits.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from icrs_shared.auth import Caller, InsufficientScope
from icrs_shared.errors import Conflict, FieldError, Invalid, NotFound
from icrs_shared.http import etag
from icrs_shared.outbox import Outbox
from icrs_shared.pagination import decode_keyset, encode_keyset

from ..credentials import hash_secret, new_client_id, new_secret
from ..models import Client, Organization
from ..scopes import Kind, beyond_kind
from . import repository
from .events import client_event, organization_event, service_event
from .schemas import ClientCreate, OrganizationCreate

ADMIN_SCOPE = "partners:admin"
READ_SCOPE = "partners:read"

#: What may be done to an organization in each status.
ALLOWED: dict[str, tuple[str, ...]] = {
    "pending": ("verify", "suspend"),
    "active": ("verify", "suspend"),
    "suspended": ("reactivate",),
}

#: Checks the organization's current ETag against the request's If-Match, when one was sent.
Precondition = Callable[[str], None]


def _now() -> datetime:
    return datetime.now(UTC)


# Reading ----------------------------------------------------------------------


def _is_member(caller: Caller, organization_id: uuid.UUID) -> bool:
    return caller.organization_id is not None and caller.organization_id == str(organization_id)


async def read(
    *, session: AsyncSession, organization_id: uuid.UUID, caller: Caller
) -> tuple[Organization, bool]:
    """The organization and whether the caller may see its contact details.

    The administrator and the organization's own clients see everything; a directory
    reader (`partners:read`) sees active organizations without their contact; anything
    else it asks for is not found, whether or not it exists.
    """
    privileged = caller.has_scopes(ADMIN_SCOPE) or _is_member(caller, organization_id)
    if not privileged and not caller.has_scopes(READ_SCOPE):
        raise InsufficientScope([READ_SCOPE])
    org = await repository.get_organization(session, organization_id)
    if org is None or (not privileged and org.status != "active"):
        raise NotFound("no such organization")
    return org, privileged


async def get(*, session: AsyncSession, organization_id: uuid.UUID) -> Organization:
    org = await repository.get_organization(session, organization_id)
    if org is None:
        raise NotFound("no such organization")
    return org


def _page_start(cursor: str | None, *, uuid_key: bool = False) -> repository.After | None:
    return decode_keyset(cursor, (lambda k: str(uuid.UUID(k))) if uuid_key else str)


def _next_cursor(created: datetime, key: object) -> str:
    return encode_keyset(created, key)


async def list_organizations(
    *,
    session: AsyncSession,
    status: str | None,
    kind: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[Sequence[Organization], str | None]:
    after = _page_start(cursor, uuid_key=True)
    rows = await repository.list_organizations(
        session, status=status, kind=kind, after=after, limit=limit + 1
    )
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, _next_cursor(rows[-1].created_at, rows[-1].id)


# Lifecycle ----------------------------------------------------------------------


async def register(
    *, session: AsyncSession, outbox: Outbox, data: OrganizationCreate, actor: Caller
) -> Organization:
    """A new organization, `pending` until the administrator verifies it."""
    org = Organization(
        name=data.name,
        kind=Kind(data.kind),
        country=data.country,
        contact=data.contact.model_dump(exclude_none=True),
        status="pending",
    )
    session.add(org)
    await session.flush()
    await _emit(session, outbox, org, "registered", actor)
    return org


async def verify(
    *,
    session: AsyncSession,
    outbox: Outbox,
    organization_id: uuid.UUID,
    child_safeguarding: bool | None,
    actor: Caller,
    precondition: Precondition | None = None,
) -> Organization:
    """pending → active, which publishes its active services to routing; on an active
    organization, records the child safeguarding check again. `child_safeguarding` None
    keeps the current value."""
    org = await _locked(session, organization_id, precondition)
    _require(org, "verify")
    was_active = org.status == "active"
    now = _now()
    org.status = "active"
    if org.verified_at is None:
        org.verified_at = now
    if child_safeguarding is not None:
        org.child_safeguarding = child_safeguarding
    await _changed(session, org, now)
    await _emit(session, outbox, org, "verified", actor)
    if not was_active:
        await _announce_services(session, outbox, org, "published", actor)
    return org


async def suspend(
    *,
    session: AsyncSession,
    outbox: Outbox,
    organization_id: uuid.UUID,
    actor: Caller,
    precondition: Precondition | None = None,
) -> Organization:
    """Stops the organization at once: its clients get no more tokens (the token
    endpoint checks the status on every request) and its services leave routing.

    The service rows keep their own status, so that reactivation restores them; the
    `service.withdrawn` events say `suspended`. A pending organization's services were
    never in routing, so its suspension withdraws nothing.
    """
    org = await _locked(session, organization_id, precondition)
    _require(org, "suspend")
    was_active = org.status == "active"
    now = _now()
    org.status = "suspended"
    org.suspended_at = now
    await _changed(session, org, now)
    await _emit(session, outbox, org, "suspended", actor)
    if was_active:
        await _announce_services(session, outbox, org, "withdrawn", actor, status="suspended")
    return org


async def reactivate(
    *,
    session: AsyncSession,
    outbox: Outbox,
    organization_id: uuid.UUID,
    actor: Caller,
    precondition: Precondition | None = None,
) -> Organization:
    """suspended → active if it was verified before, else back to pending."""
    org = await _locked(session, organization_id, precondition)
    _require(org, "reactivate")
    now = _now()
    org.status = "active" if org.verified_at is not None else "pending"
    org.suspended_at = None
    await _changed(session, org, now)
    await _emit(session, outbox, org, "reactivated", actor)
    if org.status == "active":
        await _announce_services(session, outbox, org, "published", actor)
    return org


async def _locked(
    session: AsyncSession, organization_id: uuid.UUID, precondition: Precondition | None
) -> Organization:
    org = await repository.get_organization(session, organization_id, for_update=True)
    if org is None:
        raise NotFound("no such organization")
    if precondition is not None:
        precondition(etag(org.id, org.version))
    return org


def _require(org: Organization, action: str) -> None:
    allowed = ALLOWED.get(org.status, ())
    if org.kind == Kind.PLATFORM:
        allowed = tuple(a for a in allowed if a != "suspend")
        if action == "suspend":
            raise _not_allowed(org, "the platform organization cannot be suspended", allowed)
    if action not in allowed:
        raise _not_allowed(org, f"a {org.status} organization cannot be asked to {action}", allowed)


def _not_allowed(org: Organization, detail: str, allowed: tuple[str, ...]) -> Conflict:
    names = ", ".join(allowed) or "none"
    return Conflict(
        f"{detail}; allowed: {names}",
        code="transition-not-allowed",
        title="Transition not allowed",
        extra={"current_status": org.status, "allowed": list(allowed)},
    )


async def _changed(session: AsyncSession, org: Organization, now: datetime) -> None:
    org.version += 1
    org.updated_at = now
    await session.flush()


async def _emit(
    session: AsyncSession, outbox: Outbox, org: Organization, verb: str, actor: Caller
) -> None:
    await outbox.emit(
        session,
        f"icrs.organization.{verb}",
        organization_event(org),
        subject=org.id,
        actor=actor.client_id,
        actororg=actor.organization_id,
    )


async def _announce_services(
    session: AsyncSession,
    outbox: Outbox,
    org: Organization,
    verb: str,
    actor: Caller,
    *,
    status: str | None = None,
) -> None:
    """Tell routing that the organization's active services appear or disappear."""
    for service in await repository.active_services(session, org.id):
        await outbox.emit(
            session,
            f"icrs.service.{verb}",
            service_event(service, status=status),
            subject=service.id,
            actor=actor.client_id,
            actororg=actor.organization_id,
        )


# Clients ----------------------------------------------------------------------


async def issue_client(
    *,
    session: AsyncSession,
    outbox: Outbox,
    organization_id: uuid.UUID,
    data: ClientCreate,
    actor: Caller,
) -> tuple[Client, str]:
    """A new client and its secret; only the secret's hash is kept."""
    org = await _locked(session, organization_id, None)
    scopes = sorted(set(data.scopes))
    beyond = sorted(beyond_kind(Kind(org.kind), set(scopes)))
    if beyond:
        listed = ", ".join(beyond)
        raise Invalid(
            f"an organization of kind {org.kind} may not hold: {listed}",
            errors=[
                FieldError(
                    field="scopes", message=f"not allowed for {org.kind}: {listed}", code="scope"
                )
            ],
            extra={"not_allowed": beyond},
        )
    if org.status == "suspended":
        raise Conflict(
            "the organization is suspended; reactivate it first", code="organization-suspended"
        )
    secret = new_secret()
    client = Client(
        client_id=new_client_id(),
        organization_id=org.id,
        name=data.name,
        secret_hash=await asyncio.to_thread(hash_secret, secret),
        scopes=scopes,
    )
    session.add(client)
    await session.flush()
    await outbox.emit(
        session,
        "icrs.client.issued",
        client_event(client),
        subject=client.client_id,
        actor=actor.client_id,
        actororg=actor.organization_id,
    )
    return client, secret


async def list_clients(
    *, session: AsyncSession, organization_id: uuid.UUID, limit: int, cursor: str | None
) -> tuple[Sequence[Client], str | None]:
    await get(session=session, organization_id=organization_id)
    after = _page_start(cursor)
    rows = await repository.list_clients(session, organization_id, after=after, limit=limit + 1)
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, _next_cursor(rows[-1].created_at, rows[-1].client_id)


async def revoke_client(
    *,
    session: AsyncSession,
    outbox: Outbox,
    organization_id: uuid.UUID,
    client_id: str,
    actor: Caller,
) -> Client:
    """Revokes the client; revoking it again changes nothing and emits nothing."""
    await get(session=session, organization_id=organization_id)
    client = await repository.get_client(session, organization_id, client_id, for_update=True)
    if client is None:
        raise NotFound("no such client")
    if client.revoked_at is not None:
        return client
    client.revoked_at = _now()
    await session.flush()
    await outbox.emit(
        session,
        "icrs.client.revoked",
        client_event(client),
        subject=client.client_id,
        actor=actor.client_id,
        actororg=actor.organization_id,
    )
    return client
