"""Request and response bodies of the directory routes."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from icrs_shared.text import plain_text, visible_text

from ..models import Service
from .areas import normalize_pcode
from .durations import format_duration, parse_duration
from .vocabulary import BeneficiaryCategory, Category, ProgrammeTrack, ServiceStatus, Sex

MIN_ACCEPT_WITHIN = 3600
MAX_ACCEPT_WITHIN = 30 * 86400
DEFAULT_ACCEPT_WITHIN = "PT72H"

_LANGUAGE = re.compile(r"^[a-z]{2,3}$")
_URL = re.compile(r"^https?://[^\s/?#]+[^\s]*$", re.IGNORECASE)
_EMAIL = re.compile(
    r"^[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?\.[A-Za-z]{2,63}$"
)


def _language(value: str) -> str:
    code = value.strip().lower()
    if not _LANGUAGE.fullmatch(code):
        raise ValueError("must be an ISO 639-1 or ISO 639-3 code, such as so or som")
    return code


def _url(value: str) -> str:
    if not _URL.fullmatch(value):
        raise ValueError("must be an http or https URL")
    return value


def _email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise ValueError("must be an email address")
    local, domain = value.rsplit("@", 1)
    return f"{local}@{domain.lower()}"


def _accept_within(value: str) -> str:
    seconds = parse_duration(value)
    if not MIN_ACCEPT_WITHIN <= seconds <= MAX_ACCEPT_WITHIN:
        raise ValueError("must be between 1 hour (PT1H) and 30 days (P30D)")
    return format_duration(seconds)


def _unique(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


Name = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=200), AfterValidator(plain_text)
]
Description = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=5000),
    AfterValidator(lambda v: visible_text(v, multiline=True)),
]
Language = Annotated[
    str,
    StringConstraints(max_length=8),
    AfterValidator(_language),
    Field(description="ISO 639-1 or 639-3 code, lower case.", examples=["so"]),
]
AreaCode = Annotated[
    str,
    StringConstraints(max_length=16),
    AfterValidator(normalize_pcode),
    Field(description="OCHA P-code.", examples=["SO11"]),
]
Url = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500), AfterValidator(_url)]
Email = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=200), AfterValidator(_email)
]
AcceptWithin = Annotated[
    str,
    StringConstraints(max_length=32),
    AfterValidator(_accept_within),
    Field(description="ISO 8601 duration, 1 hour to 30 days.", examples=["PT72H"]),
]
Age = Annotated[StrictInt, Field(ge=0, le=120)]
Maximum = Annotated[StrictInt, Field(ge=0, le=1_000_000)]


class Eligibility(BaseModel):
    """Who the service is for. Empty lists and null ages mean no restriction."""

    model_config = ConfigDict(extra="forbid")

    min_age: Age | None = None
    max_age: Age | None = None
    sexes: list[Sex] = Field(default_factory=list, max_length=3)
    beneficiary_categories: list[BeneficiaryCategory] = Field(default_factory=list, max_length=5)
    programme_tracks: list[ProgrammeTrack] = Field(default_factory=list, max_length=4)
    accepts_minors: StrictBool = False

    @field_validator("sexes", "beneficiary_categories", "programme_tracks")
    @classmethod
    def _dedupe(cls, v: list[str]) -> list[str]:
        return _unique(v)

    @field_validator("max_age")
    @classmethod
    def _not_below_min(cls, v: int | None, info: ValidationInfo) -> int | None:
        low = info.data.get("min_age")
        if v is not None and low is not None and v < low:
            raise ValueError("must not be below min_age")
        return v


class Capacity(BaseModel):
    """`maximum` concurrent active referrals (null: unlimited); `accepting` new ones."""

    model_config = ConfigDict(extra="forbid")

    maximum: Maximum | None = None
    accepting: StrictBool = True


class ServiceSpec(BaseModel):
    """A service as its organization describes it (`POST /v1/organizations/{id}/services`)."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    category: Category
    description: Description | None = None
    languages: list[Language] = Field(default_factory=list, max_length=50)
    service_areas: list[AreaCode] = Field(min_length=1, max_length=500)
    eligibility: Eligibility = Field(default_factory=Eligibility)
    capacity: Capacity = Field(default_factory=Capacity)
    accept_within: AcceptWithin = DEFAULT_ACCEPT_WITHIN
    url: Url | None = None
    email: Email | None = None
    status: ServiceStatus = "active"

    @field_validator("languages", "service_areas")
    @classmethod
    def _dedupe(cls, v: list[str]) -> list[str]:
        return _unique(v)

    @property
    def accept_within_seconds(self) -> int:
        return parse_duration(self.accept_within)

    @classmethod
    def of(cls, row: Service) -> ServiceSpec:
        """The spec a stored service was made from."""
        return cls.model_validate(
            {
                "name": row.name,
                "category": row.category,
                "description": row.description,
                "languages": row.languages,
                "service_areas": row.service_areas,
                "eligibility": row.eligibility,
                "capacity": {"maximum": row.capacity_maximum, "accepting": row.accepting},
                "accept_within": format_duration(row.accept_within_seconds),
                "url": row.url,
                "email": row.email,
                "status": row.status,
            }
        )


class EligibilityPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_age: Age | None = None
    max_age: Age | None = None
    sexes: list[Sex] | None = None
    beneficiary_categories: list[BeneficiaryCategory] | None = None
    programme_tracks: list[ProgrammeTrack] | None = None
    accepts_minors: StrictBool | None = None


class CapacityPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    maximum: Maximum | None = None
    accepting: StrictBool | None = None


class ServicePatch(BaseModel):
    """A JSON merge patch (RFC 7396) of a service: members left out stay as they are;
    `eligibility` and `capacity` merge member by member; null resets a member to its
    default on creation (null ages and `capacity.maximum` mean no limit)."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    category: Category | None = None
    description: Description | None = None
    languages: list[Language] | None = None
    service_areas: list[AreaCode] | None = None
    eligibility: EligibilityPatch | None = None
    capacity: CapacityPatch | None = None
    accept_within: AcceptWithin | None = None
    url: Url | None = None
    email: Email | None = None
    status: ServiceStatus | None = None

    def merge_into(self, current: ServiceSpec) -> dict[str, Any]:
        """The current spec with this patch applied (to be validated as a whole)."""
        merged: dict[str, Any] = merge_patch(
            current.model_dump(), self.model_dump(exclude_unset=True)
        )
        return merged


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class ServiceOut(BaseModel):
    id: uuid.UUID
    organization_id: uuid.UUID
    organization_name: str | None = None
    name: str
    category: str
    description: str | None
    url: str | None
    email: str | None
    status: str
    languages: list[str]
    service_areas: list[str]
    eligibility: Eligibility
    capacity: Capacity
    accept_within: str = Field(description="ISO 8601 duration.", examples=["PT72H"])
    accept_within_seconds: int
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Service, organization_name: str | None = None) -> ServiceOut:
        return cls(
            id=row.id,
            organization_id=row.organization_id,
            organization_name=organization_name,
            name=row.name,
            category=row.category,
            description=row.description,
            url=row.url,
            email=row.email,
            status=row.status,
            languages=list(row.languages),
            service_areas=list(row.service_areas),
            eligibility=Eligibility.model_validate(row.eligibility),
            capacity=Capacity(maximum=row.capacity_maximum, accepting=row.accepting),
            accept_within=format_duration(row.accept_within_seconds),
            accept_within_seconds=row.accept_within_seconds,
            version=row.version,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class Rejection(BaseModel):
    """One invalid entry of an import: its position, its id when it had one, and why."""

    index: int
    id: str | None = None
    field: str
    reason: str


class OrganizationCounts(BaseModel):
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[Rejection] = Field(default_factory=list)


class ServiceCounts(BaseModel):
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[Rejection] = Field(default_factory=list)


class ImportReport(BaseModel):
    organizations: OrganizationCounts = Field(default_factory=OrganizationCounts)
    services: ServiceCounts = Field(default_factory=ServiceCounts)
