"""Request and response bodies of the reintegration plan (contract §5)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from icrs_shared.text import plain_text
from icrs_shared.times import Day

#: Referral statuses (FHIR Task codes, contract §6) in which the provider works on it.
LIVE_STATUSES = frozenset({"requested", "received", "accepted", "in-progress", "on-hold"})
#: Every referral status a plan item can show.
REFERRAL_STATUSES = LIVE_STATUSES | {
    "completed",
    "failed",
    "rejected",
    "cancelled",
    "expired",
    "entered-in-error",
}

Goals = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=4000),
    AfterValidator(plain_text),
]


def _plausible(value: date) -> date:
    today = datetime.now(UTC).date()
    if value.year < 2000 or value.year > today.year + 10:
        raise ValueError(f"must be between 2000 and {today.year + 10}")
    return value


ReviewDate = Annotated[Day, AfterValidator(_plausible)]


class PlanUpdate(BaseModel):
    """The plan's own text; both fields are replaced (null clears them)."""

    model_config = ConfigDict(extra="forbid")

    goals: Goals | None = Field(default=None, description="Personal data: stored encrypted.")
    review_date: ReviewDate | None = None


class ReferralState(BaseModel):
    """The latest referral of a need, as the referral service's events told intake."""

    referral_id: uuid.UUID
    status: str
    organization_id: uuid.UUID = Field(description="The provider.")
    service_id: uuid.UUID
    attempt: int
    outcome: str | None
    reason: str | None
    updated_at: datetime = Field(description="The time of its latest event.")


class PlanItemOut(BaseModel):
    need_id: uuid.UUID
    category: str
    priority: str
    status: str = Field(
        description=(
            "`open` (no referral yet), `unmatched` (no service fits), or the status of the "
            "need's latest referral."
        )
    )
    unmatched_reasons: list[str] = Field(
        default_factory=list, description="Why no service fits, while `unmatched`."
    )
    referral: ReferralState | None


class PlanOut(BaseModel):
    case_id: uuid.UUID
    version: int = Field(description="0 until the plan first changes; the ETag names it.")
    goals: str | None
    review_date: date | None
    items: list[PlanItemOut]
    updated_at: datetime | None
