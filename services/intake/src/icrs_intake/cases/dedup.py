"""Probable duplicates: the same document (matched by keyed hash), or a close name with a
close birth date in the same area (candidates found by keyed phonetic codes, then
compared after decryption, in memory only)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from rapidfuzz import fuzz
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from ..crypto import Keyring
from ..models import Case, CaseIndex, CaseKey
from ..settings import IntakeSettings
from . import profile as profiles
from .names import document_key, fold, sound, tokens
from .schemas import DuplicateCandidate, Person

#: Most cases compared by name for one registration.
MAX_NAME_CANDIDATES = 200


@dataclass(frozen=True)
class Candidate:
    match: Literal["document", "name_and_birth_date"]
    case: Case
    score: float | None = None

    def visible_to(self, organization_id: uuid.UUID) -> DuplicateCandidate:
        """Details of the caller's own cases; of another's, only that it exists and whose."""
        if self.case.organization_id != organization_id:
            return DuplicateCandidate(match=self.match, organization_id=self.case.organization_id)
        return DuplicateCandidate(
            match=self.match,
            organization_id=self.case.organization_id,
            case_id=self.case.id,
            case_number=self.case.case_number,
            score=self.score,
        )


async def candidates(
    *,
    session: AsyncSession,
    keyring: Keyring,
    settings: IntakeSettings,
    person: Person,
    area: str,
    exclude: uuid.UUID | None = None,
) -> list[Candidate]:
    docs = [keyring.blind("doc", document_key(d.type, d.number)) for d in person.documents]
    found: dict[uuid.UUID, Candidate] = {}
    for case in await _indexed(session, "doc", docs, limit=50):
        if case.id != exclude:
            found[case.id] = Candidate("document", case)
    sounds = [keyring.blind("sound", sound(t)) for t in tokens(person.family_name) if sound(t)]
    for case in await _indexed(session, "sound", sounds, limit=MAX_NAME_CANDIDATES):
        if case.id in found or case.id == exclude or not _same_area(case.area, area):
            continue
        score = await _likeness(session, keyring, settings, person, case)
        if score is not None:
            found[case.id] = Candidate("name_and_birth_date", case, round(score, 1))
    return list(found.values())


async def _indexed(
    session: AsyncSession, kind: str, digests: list[bytes], *, limit: int
) -> list[Case]:
    if not digests:
        return []
    matching = select(col(CaseIndex.case_id)).where(
        col(CaseIndex.kind) == kind, col(CaseIndex.digest).in_(digests)
    )
    query = (
        select(Case)
        .where(col(Case.id).in_(matching), col(Case.status) != "erased")
        .order_by(col(Case.created_at))
        .limit(limit)
    )
    return list((await session.execute(query)).scalars().all())


def _same_area(a: str, b: str) -> bool:
    return a.startswith(b) or b.startswith(a)


async def _likeness(
    session: AsyncSession, keyring: Keyring, settings: IntakeSettings, person: Person, case: Case
) -> float | None:
    """The name score when names and birth dates are close enough, else None."""
    key_row = await session.get(CaseKey, case.id)
    if key_row is None or case.personal is None:
        return None
    other = profiles.unseal(profiles.unwrap(keyring, key_row), case.id, case.personal).person
    if not _close_births(person, other, settings.intake_duplicate_birth_years):
        return None
    mine = fold(f"{person.given_name} {person.family_name}")
    names = [f"{other.given_name} {other.family_name}", *other.aliases]
    score = max(fuzz.token_sort_ratio(mine, fold(n)) for n in names)
    return score if score >= settings.intake_duplicate_name_score else None


def _close_births(a: Person, b: Person, years: int) -> bool:
    if a.date_of_birth is not None and b.date_of_birth is not None:
        return abs((a.date_of_birth - b.date_of_birth).days) <= 366 * years + 1
    # An estimated age is a guess: allow a year more.
    today = datetime.now(UTC).date()
    return abs(profiles.age_on(a, today) - profiles.age_on(b, today)) <= years + 1
