"""Importing a directory from HSDS JSON: organizations and services upserted by id.

The document is a list of HSDS organizations, each with its `services`, or a list of
HSDS services each naming its `organization_id`, or a mix of both. Every entry is
accounted for: created, updated, unchanged, or rejected with its index, field and
reason; the valid ones are imported in one transaction with the events the API would
emit. A new organization starts `pending` (an import never verifies one), and an
existing organization's kind and status never change by import.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from icrs_shared.auth import Caller
from icrs_shared.errors import FieldError, Invalid
from icrs_shared.events.catalog import OrganizationEvent
from icrs_shared.outbox import Outbox

from ..models import Organization
from ..scopes import Kind
from . import repository, service
from .hsds import HsdsOrganization, HsdsService, Rejected
from .hsds import organization_from_hsds as parse_organization
from .hsds import service_from_hsds as parse_service
from .schemas import ImportReport, Rejection, ServiceSpec

MAX_SERVICES = 50_000
MAX_ORGANIZATIONS = 10_000


@dataclass
class _Parsed:
    organizations: list[tuple[int, HsdsOrganization]]
    services: list[tuple[int, HsdsService]]


async def import_directory(
    *, session: AsyncSession, outbox: Outbox, caller: Caller, document: list[Any]
) -> ImportReport:
    report = ImportReport()
    parsed = _parse(document, report)
    wanted = {o.id for _, o in parsed.organizations} | {
        s.organization_id for _, s in parsed.services
    }
    organizations = await repository.organizations_by_id(session, wanted)
    for index, doc in parsed.organizations:
        try:
            outcome = await _upsert_organization(
                session, outbox, caller, doc, organizations.get(doc.id)
            )
        except Rejected as exc:
            _reject(report.organizations.rejected, index, doc.id, exc)
            organizations.pop(doc.id, None)
            continue
        organizations[doc.id] = outcome[1]
        _count(report.organizations, outcome[0])
    existing = await repository.services_by_id(session, [s.id for _, s in parsed.services])
    rejected_orgs = {r.id for r in report.organizations.rejected}
    for index, entry in parsed.services:
        org = organizations.get(entry.organization_id)
        try:
            if org is None:
                reason = (
                    "its organization was rejected"
                    if str(entry.organization_id) in rejected_orgs
                    else "no such organization"
                )
                raise Rejected([("organization_id", reason)])
            outcome_name = await _upsert_service(
                session, outbox, caller, entry, org, existing.get(entry.id)
            )
        except Rejected as exc:
            _reject(report.services.rejected, index, entry.id, exc)
            continue
        _count(report.services, outcome_name)
    report.organizations.rejected.sort(key=lambda r: r.index)
    report.services.rejected.sort(key=lambda r: r.index)
    return report


def _parse(document: list[Any], report: ImportReport) -> _Parsed:
    parsed = _Parsed([], [])
    seen_orgs: set[uuid.UUID] = set()
    seen_services: set[uuid.UUID] = set()
    position = 0

    def take_service(item: Any, enclosing: uuid.UUID | None, org_rejected: bool) -> None:
        nonlocal position
        index, position = position, position + 1
        try:
            if org_rejected:
                raise Rejected([("organization_id", "its organization was rejected")])
            doc = parse_service(item, organization_id=enclosing)
            if doc.id in seen_services:
                raise Rejected([("id", "appears more than once in the document")])
        except Rejected as exc:
            _reject(report.services.rejected, index, _id_of(item), exc)
            return
        seen_services.add(doc.id)
        parsed.services.append((index, doc))

    for index, item in enumerate(document):
        if _is_service(item):
            take_service(item, None, False)
            continue
        nested = item.get("services", []) if isinstance(item, dict) else []
        try:
            if not isinstance(nested, list):
                nested = []
                raise Rejected([("services", "must be a list")])
            org = parse_organization(item)
            if org.id in seen_orgs:
                raise Rejected([("id", "appears more than once in the document")])
        except Rejected as exc:
            _reject(report.organizations.rejected, index, _id_of(item), exc)
            for entry in nested:
                take_service(entry, None, True)
            continue
        seen_orgs.add(org.id)
        parsed.organizations.append((index, org))
        for entry in nested:
            take_service(entry, org.id, False)
    if len(parsed.organizations) > MAX_ORGANIZATIONS or position > MAX_SERVICES:
        raise Invalid(
            f"an import holds at most {MAX_ORGANIZATIONS} organizations and "
            f"{MAX_SERVICES} services: split it",
            errors=[FieldError(field="body", message="too many entries", code="too_long")],
        )
    return parsed


def _is_service(item: Any) -> bool:
    return isinstance(item, dict) and "organization_id" in item and "services" not in item


def _id_of(item: Any) -> str | None:
    value = item.get("id") if isinstance(item, dict) else None
    return str(value)[:64] if value is not None else None


def _reject(into: list[Rejection], index: int, entry_id: object, exc: Rejected) -> None:
    entry = str(entry_id) if entry_id is not None else None
    into.extend(Rejection(index=index, id=entry, field=f, reason=r) for f, r in exc.problems)


def _count(counts: Any, outcome: str) -> None:
    setattr(counts, outcome, getattr(counts, outcome) + 1)


async def _upsert_organization(
    session: AsyncSession,
    outbox: Outbox,
    caller: Caller,
    doc: HsdsOrganization,
    row: Organization | None,
) -> tuple[str, Organization]:
    contact = {k: v for k, v in doc.contact.items() if v is not None}
    if row is None:
        if doc.kind == Kind.PLATFORM:
            raise Rejected([("x_icrs.kind", "a platform organization cannot be imported")])
        row = Organization(
            id=doc.id,
            name=doc.name,
            kind=doc.kind.value,
            country=doc.country,
            contact=contact,
            status="pending",
        )
        session.add(row)
        await session.flush()
        await outbox.emit(
            session,
            "icrs.organization.registered",
            OrganizationEvent(organization_id=row.id, kind=row.kind, status=row.status),
            subject=row.id,
            actor=caller.client_id,
            actororg=caller.organization_id,
        )
        return "created", row
    current = {k: v for k, v in (row.contact or {}).items() if v is not None}
    merged = dict(current)
    for key in ("email", "phone"):
        if key in doc.present:
            merged.pop(key, None)
            merged.update({key: contact[key]} if key in contact else {})
    changes: dict[str, Any] = {}
    if row.name != doc.name:
        changes["name"] = doc.name
    if "country" in doc.present and row.country != doc.country:
        changes["country"] = doc.country
    if merged != current:
        changes["contact"] = merged
    if not changes:
        return "unchanged", row
    for key, value in changes.items():
        setattr(row, key, value)
    row.version += 1
    row.updated_at = datetime.now(UTC)
    await session.flush()
    return "updated", row


async def _upsert_service(
    session: AsyncSession,
    outbox: Outbox,
    caller: Caller,
    doc: HsdsService,
    org: Organization,
    row: Any,
) -> str:
    if row is None:
        if org.status not in service.OPEN_STATES:
            raise Rejected([("organization_id", f"the organization is {org.status}")])
        await service.add(
            session=session,
            outbox=outbox,
            organization=org,
            spec=doc.spec,
            actor=caller,
            service_id=doc.id,
        )
        return "created"
    if row.organization_id != org.id:
        raise Rejected([("organization_id", "the service belongs to another organization")])
    changed = await service.change(
        session=session,
        outbox=outbox,
        service=row,
        organization=org,
        current=ServiceSpec.of(row),
        spec=doc.spec,
        actor=caller,
    )
    return "updated" if changed else "unchanged"
