"""Request and response bodies of the referral routes (contract §6 and §10)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from icrs_shared.text import plain_text

from .lifecycle import Status
from .models import Referral

Code = Annotated[
    str, StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^[a-z][a-z0-9_-]{1,63}$")
]


class StatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Status
    reason: Code | None = Field(
        default=None,
        description="Why: for a rejection one of at-capacity, not-eligible, unreachable, other.",
    )
    note: (
        Annotated[
            str,
            StringConstraints(strip_whitespace=True, max_length=500),
            AfterValidator(plain_text),
        ]
        | None
    ) = Field(
        default=None,
        description="Not kept: the referral service holds no free text, which could hold "
        "personal data.",
    )
    outcome: Code | None = Field(
        default=None, description="Required on completion, e.g. `service-provided`."
    )


class ManualReferral(BaseModel):
    model_config = ConfigDict(extra="forbid")

    need_id: uuid.UUID
    service_id: uuid.UUID


class ReferralOut(BaseModel):
    id: uuid.UUID
    case_id: uuid.UUID
    need_id: uuid.UUID | None
    need_category: str
    status: str
    organization_id: uuid.UUID = Field(description="The provider.")
    requester_organization_id: uuid.UUID
    service_id: uuid.UUID
    attempt: int
    previous_referral_id: uuid.UUID | None
    routing: dict[str, Any] = Field(
        description="The decision: candidates ranked, and why each other was left out."
    )
    reason: str | None
    outcome: str | None
    accept_by: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Referral) -> ReferralOut:
        return cls.model_validate(row, from_attributes=True)
