"""The referral view: what a provider may see of a case (contract §5). A field that is
absent was not shared."""

from __future__ import annotations

import uuid
from datetime import date

from pydantic import BaseModel, Field


class ViewContact(BaseModel):
    phone: str | None = None
    address: str | None = None


class ViewDocument(BaseModel):
    type: str
    number: str


class ViewPerson(BaseModel):
    given_name: str | None = None
    family_name: str | None = None
    sex: str | None = None
    age_band: str | None = None
    languages: list[str] | None = None
    area: str | None = None
    date_of_birth: date | None = None
    estimated_age: int | None = None
    contact: ViewContact | None = None
    documents: list[ViewDocument] | None = None


class ViewNeed(BaseModel):
    need_id: uuid.UUID | None = None
    category: str
    priority: str | None = None
    note: str | None = Field(default=None, description="Only when the caseworker shared it.")


class ReferralView(BaseModel):
    case_id: uuid.UUID
    referral_id: uuid.UUID
    referral_status: str
    need: ViewNeed
    person: ViewPerson
    fields: list[str] = Field(description="The fields shown, as `case.accessed` records them.")
