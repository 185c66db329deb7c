"""The referral view: the minimum a provider needs of a case for a referral it holds in a
live state, while the person's consent covers it. Every read emits `case.accessed` naming
the fields shown (never their values). Functions here never commit.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icrs_shared.errors import FieldError, Forbidden, Invalid, NotFound
from icrs_shared.events.catalog import CaseAccessed
from icrs_shared.outbox import Outbox

from ..cases import service as cases
from ..cases.schemas import Profile
from ..consents import service as consents
from ..crypto import Keyring
from ..models import Case, Need, ReferralLink
from ..needs.service import note_of
from ..plans.schemas import LIVE_STATUSES
from .schemas import ReferralView, ViewContact, ViewDocument, ViewNeed, ViewPerson

#: What every provider sees of the person.
BASE_FIELDS = ("given_name", "family_name", "sex", "age_band", "languages", "area", "contact.phone")
_AGE = ("date_of_birth", "estimated_age")
_ADDRESS = ("contact.address",)
_DOCUMENTS = ("documents",)
#: What a provider of each category of service sees besides.
EXTRA_FIELDS: dict[str, tuple[str, ...]] = {
    "health": _AGE,
    "psychosocial": _AGE,
    "gbv": _AGE,
    "child_protection": _AGE,
    "family_tracing": _AGE,
    "legal": _DOCUMENTS,
    "documentation": _DOCUMENTS,
    "housing": _ADDRESS,
    "livelihoods": _ADDRESS,
    "vocational_training": _ADDRESS,
    "education": _ADDRESS,
}


class ConsentRequired(Forbidden):
    code, title = "consent-required", "Consent does not cover this"


def fields_for(category: str) -> tuple[str, ...]:
    return BASE_FIELDS + EXTRA_FIELDS.get(category, ())


async def read(
    *,
    session: AsyncSession,
    outbox: Outbox,
    keyring: Keyring,
    case_id: uuid.UUID,
    organization_id: uuid.UUID,
    referral_id: uuid.UUID | None,
    actor: str,
) -> ReferralView:
    """The view for `organization_id`, the provider of a live referral for the case; 404
    (the case's existence is not told) for any other, 403 without a covering consent."""
    case = await session.get(Case, case_id)
    if case is None or case.status == "erased":
        raise NotFound("no live referral of your organization for this case")
    link = await _live_referral(session, case, organization_id, referral_id)
    consent = await consents.covering(
        session=session,
        case_id=case.id,
        purpose="referral",
        organization_id=organization_id,
        category=link.need_category,
    )
    if consent is None:
        raise ConsentRequired(
            "no active consent of the person for referral covers your organization or "
            f"services of the category {link.need_category}"
        )
    opened = await cases.open_case(session, keyring, case)
    if opened.profile is None:
        raise NotFound("no live referral of your organization for this case")
    shown = _shown(opened.profile, case, fields_for(link.need_category))
    need = await session.get(Need, link.need_id) if link.need_id is not None else None
    note = note_of(need, opened.data_key) if need is not None and need.share_note else None
    view = ReferralView(
        case_id=case.id,
        referral_id=link.referral_id,
        referral_status=link.status,
        need=ViewNeed(
            need_id=link.need_id,
            category=link.need_category,
            priority=need.priority if need is not None else None,
            note=note,
        ),
        person=_person(shown),
        fields=[*shown, "need.category"]
        + (["need.priority"] if need is not None else [])
        + (["need.note"] if note is not None else []),
    )
    await outbox.emit(
        session,
        "icrs.case.accessed",
        CaseAccessed(
            case_id=case.id,
            organization_id=organization_id,
            referral_id=link.referral_id,
            fields=view.fields,
        ),
        subject=case.id,
        actor=actor,
        actororg=organization_id,
    )
    return view


async def _live_referral(
    session: AsyncSession, case: Case, organization_id: uuid.UUID, referral_id: uuid.UUID | None
) -> ReferralLink:
    query = select(ReferralLink).where(
        col(ReferralLink.case_id) == case.id,
        col(ReferralLink.provider_organization_id) == organization_id,
        col(ReferralLink.status).in_(LIVE_STATUSES),
    )
    if referral_id is not None:
        query = query.where(col(ReferralLink.referral_id) == referral_id)
    found = (await session.execute(query.limit(2))).scalars().all()
    if not found:
        raise NotFound("no live referral of your organization for this case")
    if len(found) > 1:
        raise Invalid(
            "your organization holds several live referrals for this case: name one",
            errors=[
                FieldError(
                    field="query.referral_id",
                    message="name the referral to view",
                    code="referral_required",
                )
            ],
        )
    return found[0]


def _shown(profile: Profile, case: Case, allowed: tuple[str, ...]) -> dict[str, Any]:
    """The allowed fields that have a value, in the order of the table above."""
    person = profile.person
    values: dict[str, Any] = {
        "given_name": person.given_name,
        "family_name": person.family_name,
        "sex": case.sex,
        "age_band": case.age_band,
        "languages": list(case.languages) or None,
        "area": case.area,
        "contact.phone": person.contact.phone,
        "date_of_birth": person.date_of_birth,
        "estimated_age": person.estimated_age,
        "contact.address": person.contact.address,
        "documents": [ViewDocument(type=d.type, number=d.number) for d in person.documents] or None,
    }
    return {name: values[name] for name in allowed if values.get(name) is not None}


def _person(shown: dict[str, Any]) -> ViewPerson:
    plain = {k: v for k, v in shown.items() if not k.startswith("contact.")}
    contact = {k.removeprefix("contact."): v for k, v in shown.items() if k.startswith("contact.")}
    return ViewPerson(**plain, contact=ViewContact(**contact) if contact else None)
