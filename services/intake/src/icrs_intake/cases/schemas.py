"""Request and response bodies of the case routes (contract §5 and §10)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    model_validator,
)

from icrs_shared.text import Email, Phone, plain_text
from icrs_shared.times import Day
from icrs_shared.vocabulary import BeneficiaryCategory, ProgrammeTrack

Sex = Literal["female", "male", "other", "unknown"]
CaseStatus = Literal["open", "closed", "erased"]

Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(plain_text),
]
Address = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=300),
    AfterValidator(plain_text),
]
Code = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^[a-z][a-z0-9_]{1,39}$"),
]
Language = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^[a-z]{2,3}$"),
    Field(description="ISO 639 code.", examples=["so"]),
]
Area = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Z]{2}[A-Z0-9]{0,14}$"),
    Field(description="OCHA P-code of the person's area.", examples=["SO1101"]),
]
ExternalId = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$",
    ),
    Field(description="The case's id in a government registry."),
]
DocumentNumber = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64),
    AfterValidator(plain_text),
]


def _not_future(value: date | None) -> date | None:
    if value is not None and value > datetime.now(UTC).date():
        raise ValueError("must not be in the future")
    if value is not None and value.year < 1900:
        raise ValueError("must be in 1900 or later")
    return value


PastDate = Annotated[Day, AfterValidator(_not_future)]
#: Strict: JSON `false` is not an age of 0 (that would make the person a minor).
EstimatedAge = Annotated[StrictInt, Field(ge=0, le=120)]


class Contact(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone: Phone | None = None
    email: Email | None = None
    address: Address | None = None


class Document(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Code = Field(examples=["ddr_id"])
    number: DocumentNumber


class Person(BaseModel):
    """The person's profile: personal data, stored encrypted."""

    model_config = ConfigDict(extra="forbid")

    given_name: Name
    family_name: Name
    aliases: list[Name] = Field(default_factory=list, max_length=10)
    sex: Sex = "unknown"
    date_of_birth: PastDate | None = None
    estimated_age: EstimatedAge | None = Field(
        default=None, description="When the date of birth is not known."
    )
    languages: list[Language] = Field(default_factory=list, max_length=10)
    contact: Contact = Field(default_factory=Contact)
    documents: list[Document] = Field(default_factory=list, max_length=10)

    @model_validator(mode="after")
    def _age_is_known(self) -> Person:
        if self.date_of_birth is None and self.estimated_age is None:
            raise ValueError("give date_of_birth or estimated_age")
        return self


class CaseCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    person: Person
    beneficiary_category: BeneficiaryCategory
    programme_track: ProgrammeTrack
    area: Area
    demobilization_date: PastDate | None = None
    external_id: ExternalId | None = None
    vulnerabilities: list[Code] = Field(
        default_factory=list, max_length=20, examples=[["disability", "female_headed_household"]]
    )
    duplicates_checked: StrictBool = Field(
        default=False,
        description="The caller has looked at the probable duplicates and registers anyway.",
    )


class PersonPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    given_name: Name | None = None
    family_name: Name | None = None
    aliases: list[Name] | None = Field(default=None, max_length=10)
    sex: Sex | None = None
    date_of_birth: PastDate | None = None
    estimated_age: EstimatedAge | None = None
    languages: list[Language] | None = Field(default=None, max_length=10)
    contact: Contact | None = None
    documents: list[Document] | None = Field(default=None, max_length=10)


class CasePatch(BaseModel):
    """Fields given replace the case's; `person` fields replace the person's one by one."""

    model_config = ConfigDict(extra="forbid")

    person: PersonPatch | None = None
    beneficiary_category: BeneficiaryCategory | None = None
    programme_track: ProgrammeTrack | None = None
    area: Area | None = None
    demobilization_date: PastDate | None = None
    external_id: ExternalId | None = None
    vulnerabilities: list[Code] | None = Field(default=None, max_length=20)


class Profile(BaseModel):
    """What is sealed under the case's data key."""

    person: Person
    demobilization_date: date | None = None
    vulnerabilities: list[str] = Field(default_factory=list)
    registered_on: date


class CaseOut(BaseModel):
    id: uuid.UUID
    case_number: str
    organization_id: uuid.UUID
    status: CaseStatus
    version: int
    person: Person | None = Field(description="Absent once the case is erased.")
    beneficiary_category: str
    programme_track: str
    area: str
    demobilization_date: date | None
    external_id: str | None
    vulnerabilities: list[str]
    is_minor: bool
    age_band: str
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    erased_at: datetime | None


class CaseSummary(BaseModel):
    """A search result: enough to tell cases apart."""

    id: uuid.UUID
    case_number: str
    status: CaseStatus
    external_id: str | None
    given_name: str | None
    family_name: str | None
    area: str
    created_at: datetime


class DuplicateCandidate(BaseModel):
    """A probable duplicate: details of the caller's own cases only."""

    match: Literal["document", "name_and_birth_date"]
    organization_id: uuid.UUID
    case_id: uuid.UUID | None = None
    case_number: str | None = None
    score: float | None = None

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)
