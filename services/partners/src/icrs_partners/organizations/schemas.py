"""Request and response bodies of the organization and client routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal, cast

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StringConstraints

from icrs_shared.text import Email, Phone, plain_text

from ..models import Client, Organization
from ..scopes import ALL_SCOPES, KIND_SCOPES, Kind
from .countries import COUNTRY_CODES

OrganizationStatus = Literal["pending", "active", "suspended"]

#: What can be registered: every kind but `platform`, which only the bootstrap makes.
RegistrableKind = Literal["un_agency", "ngo", "government", "service_provider", "auditor"]

Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(plain_text),
]


def _country(value: str) -> str:
    code = value.upper()
    if code not in COUNTRY_CODES:
        raise ValueError("must be an ISO 3166-1 alpha-2 country code, such as SO")
    return code


Country = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=2, max_length=2),
    AfterValidator(_country),
    Field(description="ISO 3166-1 alpha-2 code.", examples=["SO"]),
]


def _known_scope(value: str) -> str:
    if value not in ALL_SCOPES:
        raise ValueError("not a known scope")
    return value


Scope = Annotated[
    str,
    StringConstraints(max_length=64),
    AfterValidator(_known_scope),
    Field(json_schema_extra={"enum": sorted(ALL_SCOPES)}),
]


class Contact(BaseModel):
    """The organization's business contact (never a beneficiary's)."""

    model_config = ConfigDict(extra="forbid")

    email: Email | None = None
    phone: Phone | None = None


class OrganizationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    kind: RegistrableKind
    country: Country
    contact: Contact = Field(default_factory=Contact)


class VerifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    child_safeguarding: StrictBool | None = Field(
        default=None,
        description=(
            "Whether the organization's child safeguarding policy has been checked. "
            "Omitted: the organization keeps its current value (false when first verified)."
        ),
    )


class OrganizationOut(BaseModel):
    id: uuid.UUID
    name: str
    kind: Kind
    country: str | None
    contact: Contact | None = Field(
        description="Shown to the platform administrator and to the organization itself only."
    )
    status: OrganizationStatus
    child_safeguarding: bool
    allowed_scopes: list[str]
    version: int
    created_at: datetime
    updated_at: datetime
    verified_at: datetime | None
    suspended_at: datetime | None

    @classmethod
    def of(cls, org: Organization, *, show_contact: bool) -> OrganizationOut:
        kind = Kind(org.kind)
        return cls(
            id=org.id,
            name=org.name,
            kind=kind,
            country=org.country,
            contact=Contact.model_validate(org.contact) if show_contact else None,
            status=cast(OrganizationStatus, org.status),
            child_safeguarding=org.child_safeguarding,
            allowed_scopes=sorted(KIND_SCOPES[kind]),
            version=org.version,
            created_at=org.created_at,
            updated_at=org.updated_at,
            verified_at=org.verified_at,
            suspended_at=org.suspended_at,
        )


class ClientCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    scopes: list[Scope] = Field(min_length=1, max_length=len(ALL_SCOPES) * 2)


class ClientOut(BaseModel):
    """A client as listed: never its secret nor the secret's hash."""

    client_id: str
    name: str
    organization_id: uuid.UUID
    scopes: list[str]
    auth_method: str
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, client: Client) -> ClientOut:
        return cls(
            client_id=client.client_id,
            name=client.name,
            organization_id=client.organization_id,
            scopes=sorted(client.scopes),
            auth_method=client.auth_method,
            created_at=client.created_at,
            revoked_at=client.revoked_at,
        )


class ClientIssued(BaseModel):
    """A new client with its secret: the only answer that ever shows the secret."""

    client_id: str
    client_secret: str
    name: str
    organization_id: uuid.UUID
    scopes: list[str]
    created_at: datetime
