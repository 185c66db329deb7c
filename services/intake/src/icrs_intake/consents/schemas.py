"""Request and response bodies of consents (contract §5 and §10)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from icrs_shared.times import AwareInstant
from icrs_shared.vocabulary import Category

Purpose = Literal["referral", "follow_up"]
GivenBy = Literal["self", "guardian"]
ConsentStatus = Literal["active", "withdrawn", "expired"]

T = TypeVar("T")


def _unique(values: list[T]) -> list[T]:
    return list(dict.fromkeys(values))


def _in_future(value: datetime) -> datetime:
    if value <= datetime.now(UTC):
        raise ValueError("must be in the future")
    return value


Expiry = Annotated[AwareInstant, AfterValidator(_in_future)]


class Recipients(BaseModel):
    """Who may receive the person's data: services of these categories, or these
    organizations. At least one of either."""

    model_config = ConfigDict(extra="forbid")

    categories: Annotated[list[Category], AfterValidator(_unique)] = Field(
        default_factory=list, max_length=20
    )
    organizations: Annotated[list[uuid.UUID], AfterValidator(_unique)] = Field(
        default_factory=list, max_length=50
    )

    @model_validator(mode="after")
    def _someone(self) -> Recipients:
        if not self.categories and not self.organizations:
            raise ValueError("name at least one category of service or organization")
        return self


class ConsentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    purposes: Annotated[list[Purpose], AfterValidator(_unique)] = Field(min_length=1, max_length=10)
    recipients: Recipients
    given_by: GivenBy = Field(description="A minor's consent is given by a guardian.")
    expires_at: Expiry | None = Field(
        default=None, description="With a timezone, in the future; null: until withdrawn."
    )


class RecipientsOut(BaseModel):
    categories: list[str]
    organizations: list[uuid.UUID]


class ConsentOut(BaseModel):
    id: uuid.UUID
    case_id: uuid.UUID
    purposes: list[str]
    recipients: RecipientsOut
    given_by: str
    status: ConsentStatus = Field(description="`expired` once `expires_at` has passed.")
    expires_at: datetime | None
    created_at: datetime
    withdrawn_at: datetime | None
    recorded_by: str
