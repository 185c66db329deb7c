"""What one valid row does to the organization's case with its external id.

A row is known by the keyed hash of its validated content (`Case.source_digest`):
- no case with the external id: the case is registered (see `register`). The probable-
  duplicate check is skipped: the government registry the ids come from keeps one record
  per person, and the external id is what matches a row to a case;
- a case whose digest is the row's: unchanged, whatever happened to the case since (a
  caseworker's edits stay; a closed case stays closed);
- a case with another digest: the case is updated from the row. What the row gives
  replaces the case's value (contact details one by one, documents by type); what it
  leaves out (an empty CSV cell, a key absent from an NDJSON object) is kept, so a
  registry that does not know a phone number does not erase the one a caseworker noted;
- a case that is closed cannot be changed by an import: the row is rejected.

Erasure removes a case's external id but keeps a keyed hash of it: a row that names an
erased person's id is rejected, not registered anew.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from icrs_shared.errors import DomainError
from icrs_shared.outbox import Outbox

from ..cases import service as cases
from ..cases.schemas import CaseCreate, CasePatch, Profile
from ..crypto import Keyring
from ..models import Case
from .repository import Outcome
from .rows import Row


def source_digest(keyring: Keyring, data: CaseCreate) -> bytes:
    given = data.model_dump(mode="json", exclude_unset=True, exclude={"duplicates_checked"})
    canonical = json.dumps(given, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return keyring.blind("row", canonical)


async def apply(
    *,
    session: AsyncSession,
    outbox: Outbox,
    keyring: Keyring,
    row: Row,
    digest: bytes,
    case: Case,
    actor: str,
) -> Outcome:
    """Apply a valid row to the case with its external id, inside the caller's
    transaction; a rejection is noted on `row`. (New cases: see `register`.)"""
    data = row.case
    assert data is not None, "only valid rows are applied"
    if case.source_digest == digest:
        return "unchanged"
    if case.status != "open":
        row.reject("external_id", f"the case is {case.status}: an import cannot change it")
        return "rejected"
    opened = await cases.open_case(session, keyring, case)
    try:
        if opened.profile is None:
            raise DomainError("the case has no readable profile")
        patch = merged(opened.profile, data)
        await cases.update_case(
            session=session, outbox=outbox, keyring=keyring, opened=opened, patch=patch, actor=actor
        )
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_context=False, include_input=False):
            row.reject(row.field_of(error["loc"]), f"with the case's values: {error['msg']}")
        return "rejected"
    except DomainError as exc:
        row.reject("external_id", exc.detail or exc.title)
        return "rejected"
    case.source_digest = digest
    session.add(case)
    return "updated"


def merged(profile: Profile, data: CaseCreate) -> CasePatch:
    """The case as the row leaves it: the row's values over the case's."""
    given = data.model_dump(exclude_unset=True, exclude={"duplicates_checked", "external_id"})
    person: dict[str, Any] = profile.person.model_dump()
    new: dict[str, Any] = given.pop("person", {})
    contact = {**person["contact"], **new.pop("contact", {})}
    documents = {d["type"]: d for d in person["documents"]}
    documents.update({d["type"]: d for d in new.pop("documents", [])})
    person.update(new, contact=contact, documents=list(documents.values()))
    return CasePatch.model_validate({**given, "person": person})
