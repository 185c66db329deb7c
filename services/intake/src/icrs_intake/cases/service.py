"""Cases: registration (with duplicate checks), reading, updating, closing, erasure.

A case belongs to the organization that registered it; to any other it does not exist.
Functions here never commit: the request or the consumer does.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pydantic import ValidationError
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icrs_shared.errors import Conflict, FieldError, Invalid, NotFound, field_errors
from icrs_shared.events.catalog import CaseErased
from icrs_shared.outbox import Outbox
from icrs_shared.vocabulary import ADULT_AGE

from ..crypto import Keyring
from ..models import Case, CaseIndex, CaseKey, Need, Plan
from ..settings import IntakeSettings
from . import dedup
from . import profile as profiles
from .create import create_cases
from .events import case_event
from .names import erased_key, index_digests
from .opened import Opened
from .profile import age_band, age_on
from .schemas import CaseCreate, CasePatch, DuplicateCandidate, Person, Profile


class ProbableDuplicate(Conflict):
    code, title = "probable-duplicate", "Probable duplicate"


class ExternalIdTaken(Conflict):
    code, title = "external-id-taken", "External id taken"


async def _external_id_free(
    session: AsyncSession,
    organization_id: uuid.UUID,
    external_id: str | None,
    case_id: uuid.UUID | None = None,
) -> None:
    """An external id names one case of the organization (a unique index says so too)."""
    if external_id is None:
        return
    holder = await find_by_external_id(session, organization_id, external_id)
    if holder is not None and holder.id != case_id:
        raise ExternalIdTaken(
            "another case of the organization has this external_id",
            extra={"case_id": str(holder.id)},
        )


async def register(
    *,
    session: AsyncSession,
    outbox: Outbox,
    keyring: Keyring,
    settings: IntakeSettings,
    data: CaseCreate,
    organization_id: uuid.UUID,
    actor: str,
    source_digest: bytes | None = None,
) -> Opened:
    """Register a case; raises ProbableDuplicate unless `data.duplicates_checked`."""
    await _external_id_free(session, organization_id, data.external_id)
    if not data.duplicates_checked:
        found = await dedup.candidates(
            session=session, keyring=keyring, settings=settings, person=data.person, area=data.area
        )
        if found:
            raise ProbableDuplicate(
                "probable duplicates exist: check them, then send duplicates_checked: true "
                "to register anyway",
                extra={"duplicates": [c.visible_to(organization_id).public() for c in found]},
            )
    [opened] = await create_cases(
        session=session,
        outbox=outbox,
        keyring=keyring,
        settings=settings,
        organization_id=organization_id,
        actor=actor,
        new=[(data, source_digest)],
    )
    return opened


async def _index(
    session: AsyncSession, keyring: Keyring, case_id: uuid.UUID, person: Person
) -> None:
    await session.execute(delete(CaseIndex).where(col(CaseIndex.case_id) == case_id))
    rows = index_digests(
        keyring,
        names=[person.given_name, person.family_name, *person.aliases],
        documents=[(d.type, d.number) for d in person.documents],
    )
    session.add_all(CaseIndex(case_id=case_id, kind=k, digest=d) for k, d in rows)
    await session.flush()


async def get(session: AsyncSession, case_id: uuid.UUID, organization_id: uuid.UUID) -> Case:
    """The caller's organization's case; 404 for any other (its existence is not told)."""
    case = await session.get(Case, case_id)
    if case is None or case.organization_id != organization_id:
        raise NotFound("no such case")
    return case


async def data_key(session: AsyncSession, keyring: Keyring, case: Case) -> bytes | None:
    """The case's data key, or None once erased."""
    row = await session.get(CaseKey, case.id)
    return None if row is None else profiles.unwrap(keyring, row)


async def open_case(session: AsyncSession, keyring: Keyring, case: Case) -> Opened:
    key = await data_key(session, keyring, case)
    if key is None or case.personal is None:
        return Opened(case, None, None)
    return Opened(case, key, profiles.unseal(key, case.id, case.personal))


async def update_case(
    *,
    session: AsyncSession,
    outbox: Outbox,
    keyring: Keyring,
    opened: Opened,
    patch: CasePatch,
    actor: str,
) -> Opened:
    case, key, profile = opened.case, opened.data_key, opened.profile
    if case.status != "open" or key is None or profile is None:
        raise Conflict(f"a case that is {case.status} cannot be changed")
    given = patch.model_dump(exclude_unset=True)
    if "external_id" in given:
        await _external_id_free(session, case.organization_id, given["external_id"], case.id)
    person = profile.person
    if "person" in given and patch.person is not None:
        merged = person.model_dump() | patch.person.model_dump(exclude_unset=True)
        try:
            person = Person.model_validate(merged)
        except ValidationError as exc:
            raise Invalid(
                "the person would not be valid with these changes",
                errors=[
                    # A rule of the whole person (an age must be known) names the person.
                    FieldError(
                        field="person" if e.field == "body" else f"person.{e.field}",
                        message=e.message,
                        code=e.code,
                    )
                    for e in field_errors(exc.errors())
                ],
            ) from None
    profile = Profile(
        person=person,
        demobilization_date=given.get("demobilization_date", profile.demobilization_date),
        vulnerabilities=given.get("vulnerabilities", profile.vulnerabilities) or [],
        registered_on=profile.registered_on,
    )
    age = age_on(person, profile.registered_on)
    for name in ("beneficiary_category", "programme_track", "area"):
        if given.get(name) is not None:
            setattr(case, name, given[name])
    if "external_id" in given:
        case.external_id = given["external_id"]
    case.sex = person.sex
    case.languages = list(dict.fromkeys(person.languages))
    case.age_band = age_band(age)
    case.is_minor = age < ADULT_AGE
    case.personal = profiles.seal(key, case.id, profile)
    case.version += 1
    case.updated_at = datetime.now(UTC)
    session.add(case)
    await session.flush()
    await _index(session, keyring, case.id, person)
    await outbox.emit(
        session,
        "icrs.case.updated",
        case_event(case),
        subject=case.id,
        actor=actor,
        actororg=case.organization_id,
    )
    return Opened(case, key, profile)


async def close(*, session: AsyncSession, outbox: Outbox, case: Case, actor: str) -> Case:
    if case.status != "open":
        raise Conflict(f"the case is {case.status} already")
    now = datetime.now(UTC)
    case.status, case.closed_at, case.updated_at = "closed", now, now
    case.version += 1
    session.add(case)
    await session.flush()
    await outbox.emit(
        session,
        "icrs.case.closed",
        case_event(case),
        subject=case.id,
        actor=actor,
        actororg=case.organization_id,
    )
    return case


async def erase(
    *, session: AsyncSession, outbox: Outbox, keyring: Keyring, case: Case, actor: str
) -> Case:
    """Crypto-shredding: the data key goes, and with it every ciphertext's meaning; the
    ciphertexts and keyed hashes go too. Ids, codes and history stay, and a keyed hash of
    the external id, so that an import does not register the person again."""
    if case.status == "erased":
        return case
    await session.execute(delete(CaseKey).where(col(CaseKey.case_id) == case.id))
    await session.execute(delete(CaseIndex).where(col(CaseIndex.case_id) == case.id))
    await session.execute(update(Need).where(col(Need.case_id) == case.id).values(note=None))
    await session.execute(update(Plan).where(col(Plan.case_id) == case.id).values(content=None))
    if case.external_id is not None:
        digest = keyring.blind("erased", erased_key(case.organization_id, case.external_id))
        session.add(CaseIndex(case_id=case.id, kind="erased", digest=digest))
    now = datetime.now(UTC)
    case.personal = None
    case.source_digest = None
    case.external_id = None
    case.status, case.erased_at, case.updated_at = "erased", now, now
    case.version += 1
    session.add(case)
    await session.flush()
    await outbox.emit(
        session,
        "icrs.case.erased",
        CaseErased(case_id=case.id, organization_id=case.organization_id),
        subject=case.id,
        actor=actor,
        actororg=case.organization_id,
    )
    return case


async def find_by_external_id(
    session: AsyncSession, organization_id: uuid.UUID, external_id: str
) -> Case | None:
    query = select(Case).where(
        col(Case.organization_id) == organization_id, col(Case.external_id) == external_id
    )
    found: Case | None = (await session.execute(query)).scalars().first()
    return found


__all__ = ["DuplicateCandidate", "ExternalIdTaken", "Opened", "ProbableDuplicate"]
