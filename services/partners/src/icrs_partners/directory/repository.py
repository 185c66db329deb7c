"""Queries of the service directory; portable between PostgreSQL and SQLite."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, cast, delete, exists, func, insert, literal, or_, select
from sqlalchemy import true as sql_true
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from ..models import Organization, Service, ServiceArea, ServiceLanguage
from .areas import covering_codes
from .vocabulary import ADULT_AGE

_CHUNK = 500


@dataclass(frozen=True)
class ServiceQuery:
    """What `GET /v1/services` filters on; None means no filter."""

    status: str | None = "active"
    category: str | None = None
    area: str | None = None
    language: str | None = None
    age: int | None = None
    sex: str | None = None
    beneficiary_category: str | None = None
    programme_track: str | None = None
    minor: bool = False
    organization_id: uuid.UUID | None = None
    active_organizations_only: bool = True


#: Where a page starts: the sort key (name, id) of the last item of the page before.
After = tuple[str, uuid.UUID]


async def get_organization(
    session: AsyncSession, organization_id: uuid.UUID, *, shared_lock: bool = False
) -> Organization | None:
    """The organization; `shared_lock` holds its row against a concurrent change of state
    (suspension, verification) until the transaction ends, so that the events of both
    come in the order their transactions commit."""
    if not shared_lock:
        return await session.get(Organization, organization_id)
    return await session.get(
        Organization, organization_id, with_for_update={"read": True}, populate_existing=True
    )


async def get_service(
    session: AsyncSession, service_id: uuid.UUID, *, for_update: bool = False
) -> Service | None:
    return await session.get(
        Service, service_id, with_for_update=for_update, populate_existing=for_update
    )


async def organizations_by_id(
    session: AsyncSession, ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, Organization]:
    """The organizations that exist among `ids`, locked for update (in id order, so that
    two imports cannot deadlock)."""
    found: dict[uuid.UUID, Organization] = {}
    for chunk in _chunks(sorted(set(ids))):
        stmt = (
            select(Organization)
            .where(col(Organization.id).in_(chunk))
            .order_by(col(Organization.id))
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        found.update({o.id: o for o in (await session.execute(stmt)).scalars()})
    return found


async def services_by_id(
    session: AsyncSession, ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, Service]:
    """The services that exist among `ids`, locked for update in id order."""
    found: dict[uuid.UUID, Service] = {}
    for chunk in _chunks(sorted(set(ids))):
        stmt = (
            select(Service)
            .where(col(Service.id).in_(chunk))
            .order_by(col(Service.id))
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        found.update({s.id: s for s in (await session.execute(stmt)).scalars()})
    return found


async def index_service(session: AsyncSession, service: Service, *, fresh: bool) -> None:
    """Keep the search rows (areas, languages) equal to the service's lists."""
    if not fresh:
        await session.execute(delete(ServiceArea).where(col(ServiceArea.service_id) == service.id))
        await session.execute(
            delete(ServiceLanguage).where(col(ServiceLanguage.service_id) == service.id)
        )
    if service.service_areas:
        await session.execute(
            insert(ServiceArea),
            [{"service_id": service.id, "area_code": a} for a in service.service_areas],
        )
    if service.languages:
        await session.execute(
            insert(ServiceLanguage),
            [{"service_id": service.id, "language": lang} for lang in service.languages],
        )


async def search(
    session: AsyncSession, query: ServiceQuery, *, after: After | None, limit: int
) -> Sequence[tuple[Service, str]]:
    """Services matching `query` with their organization's name, by (name, id)."""
    dialect = session.get_bind().dialect.name
    stmt = select(Service, col(Organization.name)).join(
        Organization, col(Organization.id) == col(Service.organization_id)
    )
    stmt = stmt.where(*_conditions(query, dialect))
    if after is not None:
        name, last_id = after
        stmt = stmt.where(
            or_(
                col(Service.name) > name,
                and_(col(Service.name) == name, col(Service.id) > last_id),
            )
        )
    stmt = stmt.order_by(col(Service.name), col(Service.id)).limit(limit)
    return [(s, n) for s, n in (await session.execute(stmt)).all()]


def _conditions(q: ServiceQuery, dialect: str) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = []
    if q.active_organizations_only:
        out.append(col(Organization.status) == "active")
    if q.organization_id is not None:
        out.append(col(Service.organization_id) == q.organization_id)
    if q.status is not None:
        out.append(col(Service.status) == q.status)
    if q.category is not None:
        out.append(col(Service.category) == q.category)
    if q.area is not None:
        out.append(
            exists().where(
                col(ServiceArea.service_id) == col(Service.id),
                col(ServiceArea.area_code).in_(covering_codes(q.area)),
            )
        )
    if q.language is not None:
        out.append(
            exists().where(
                col(ServiceLanguage.service_id) == col(Service.id),
                col(ServiceLanguage.language) == q.language,
            )
        )
    eligibility = col(Service.eligibility)
    if q.age is not None:
        low, high = eligibility["min_age"].as_integer(), eligibility["max_age"].as_integer()
        out.append(or_(low.is_(None), low <= q.age))
        out.append(or_(high.is_(None), high >= q.age))
    if q.minor or (q.age is not None and q.age < ADULT_AGE):
        out.append(eligibility["accepts_minors"].as_boolean() == sql_true())
    for key, value in (
        ("sexes", q.sex),
        ("beneficiary_categories", q.beneficiary_category),
        ("programme_tracks", q.programme_track),
    ):
        if value is not None:
            out.append(_open_or_lists(key, value, dialect))
    return out


def _open_or_lists(key: str, value: str, dialect: str) -> ColumnElement[bool]:
    """The eligibility list `key` is empty (no restriction) or holds `value`."""
    if dialect == "postgresql":
        doc = cast(col(Service.eligibility), JSONB)
        length = func.coalesce(func.jsonb_array_length(doc[key]), 0)
        return or_(length == 0, doc.contains({key: [value]}))
    path = f"$.{key}"
    length = func.coalesce(func.json_array_length(col(Service.eligibility), path), 0)
    each = func.json_each(col(Service.eligibility), path).table_valued("value")
    held = exists(select(literal(1)).select_from(each).where(each.c.value == value))
    return or_(length == 0, held)


async def organizations_page(
    session: AsyncSession, *, after: uuid.UUID | None, limit: int, active_only: bool
) -> Sequence[Organization]:
    stmt = select(Organization)
    if active_only:
        stmt = stmt.where(col(Organization.status) == "active")
    if after is not None:
        stmt = stmt.where(col(Organization.id) > after)
    stmt = stmt.order_by(col(Organization.id)).limit(limit)
    return (await session.execute(stmt)).scalars().all()


async def services_of(
    session: AsyncSession, organization_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[Service]]:
    """Each organization's services, by (name, id)."""
    out: dict[uuid.UUID, list[Service]] = {i: [] for i in organization_ids}
    for chunk in _chunks(list(organization_ids)):
        stmt = (
            select(Service)
            .where(col(Service.organization_id).in_(chunk))
            .order_by(col(Service.name), col(Service.id))
        )
        for service in (await session.execute(stmt)).scalars():
            out[service.organization_id].append(service)
    return out


def _chunks(values: list[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]
