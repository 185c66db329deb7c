"""Making cases: one from the API, or a batch from an import, the same way.

Each case gets its number, its data key (stored wrapped), its sealed profile, its keyed
hashes and its `case.registered` event; a minor also gets a `child_protection` need. A
batch costs a handful of statements whatever its size.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Table, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel, col

from icrs_shared.db import database_of
from icrs_shared.outbox import Outbox
from icrs_shared.vocabulary import ADULT_AGE

from ..crypto import Keyring
from ..models import Case, CaseCounter, CaseIndex, CaseKey
from ..needs import service as needs
from ..needs.schemas import NeedIn
from ..settings import IntakeSettings
from . import profile as profiles
from .events import case_event
from .names import index_digests
from .opened import Opened
from .profile import age_band, age_on
from .schemas import CaseCreate, Profile


async def create_cases(
    *,
    session: AsyncSession,
    outbox: Outbox,
    keyring: Keyring,
    settings: IntakeSettings,
    organization_id: uuid.UUID,
    actor: str,
    new: Sequence[tuple[CaseCreate, bytes | None]],
) -> list[Opened]:
    """Register each (case, source digest) of `new`; duplicates are not checked here."""
    if not new:
        return []
    today = datetime.now(UTC).date()
    numbers = await _case_numbers(session, settings, today.year, len(new))
    made: list[Opened] = []
    keys: list[dict[str, object]] = []
    index: list[dict[str, object]] = []
    for (data, digest), number in zip(new, numbers, strict=True):
        age = age_on(data.person, today)
        case = Case(
            organization_id=organization_id,
            case_number=number,
            external_id=data.external_id,
            sex=data.person.sex,
            age_band=age_band(age),
            is_minor=age < ADULT_AGE,
            area=data.area,
            languages=list(dict.fromkeys(data.person.languages)),
            beneficiary_category=data.beneficiary_category,
            programme_track=data.programme_track,
            source_digest=digest,
            registered_by=actor,
        )
        data_key, version, wrapped = keyring.new_data_key(case.id)
        profile = Profile(
            person=data.person,
            demobilization_date=data.demobilization_date,
            vulnerabilities=list(dict.fromkeys(data.vulnerabilities)),
            registered_on=today,
        )
        case.personal = profiles.seal(data_key, case.id, profile)
        made.append(Opened(case, data_key, profile))
        keys.append({"case_id": case.id, "key_version": version, "wrapped": wrapped})
        person = data.person
        found = index_digests(
            keyring,
            names=[person.given_name, person.family_name, *person.aliases],
            documents=[(d.type, d.number) for d in person.documents],
        )
        index += [{"case_id": case.id, "kind": k, "digest": d} for k, d in found]
    session.add_all(o.case for o in made)
    await session.flush()
    # Table inserts (not ORM ones): one multi-row statement per table.
    await session.execute(insert(_table(CaseKey)), keys)
    if index:
        await session.execute(insert(_table(CaseIndex)), index)
    for opened in made:
        case = opened.case
        await outbox.emit(
            session,
            "icrs.case.registered",
            case_event(case),
            subject=case.id,
            actor=actor,
            actororg=organization_id,
        )
        if case.is_minor and opened.data_key is not None:
            need = NeedIn(category="child_protection", priority="high")
            await needs.record(
                session=session,
                outbox=outbox,
                case=case,
                data_key=opened.data_key,
                needs=[need],
                actor=actor,
            )
    return made


def _table(model: type[SQLModel]) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


async def _case_numbers(
    session: AsyncSession, settings: IntakeSettings, year: int, count: int
) -> list[str]:
    """`count` human case numbers of `year` (`<prefix>-<year>-<number>`), taken at once.

    On PostgreSQL they are taken by one statement that commits at once (`Database.apart`):
    the year's counter row is then locked for that statement, not for the whole
    registration, and registrations run side by side. A registration that fails after
    this leaves its numbers unused (a gap, as a sequence would). SQLite has one writer at
    a time anyway."""
    dialect = session.get_bind().dialect.name
    upsert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    last = col(CaseCounter.last)
    stmt = (
        upsert(CaseCounter)
        .values(year=year, last=count)
        .on_conflict_do_update(index_elements=["year"], set_={"last": last + count})
        .returning(last)
    )
    database = database_of(session)
    if dialect == "postgresql" and database is not None:
        async with database.apart() as own:
            end = (await own.execute(stmt)).scalar_one()
    else:
        end = (await session.execute(stmt)).scalar_one()
    prefix = settings.intake_case_number_prefix
    return [f"{prefix}-{year}-{n:06d}" for n in range(end - count + 1, end + 1)]
