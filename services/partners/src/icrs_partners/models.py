"""Tables of the partners service: its own SQLModel registry, so that no other service's
tables can clash with them in one process."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, ForeignKey, LargeBinary, String, Text, Uuid
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from icrs_shared.http import idempotency_table
from icrs_shared.tables import messaging_tables


class Base(SQLModel, registry=registry()):
    pass


def _now() -> datetime:
    return datetime.now(UTC)


def _ts(**kw: Any) -> Any:
    return Field(default_factory=_now, sa_column=Column(DateTime(timezone=True), **kw))


class Organization(Base, table=True):
    __tablename__ = "organizations"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(max_length=200)
    kind: str = Field(max_length=32, index=True)
    country: str | None = Field(default=None, max_length=2)
    contact: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="pending", max_length=16, index=True)
    child_safeguarding: bool = False
    version: int = 1
    verified_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    suspended_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    created_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)


class Client(Base, table=True):
    __tablename__ = "clients"

    client_id: str = Field(primary_key=True, max_length=64)
    organization_id: uuid.UUID = Field(foreign_key="organizations.id", index=True)
    name: str = Field(max_length=200)
    secret_hash: str = Field(max_length=255)
    scopes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    #: `client_secret` (basic or post), or `private_key_jwt` with the client's `jwks`.
    auth_method: str = Field(default="client_secret", max_length=32)
    jwks: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    created_at: datetime = _ts(nullable=False)
    revoked_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


class SigningKey(Base, table=True):
    """A token-signing key. The private half is stored encrypted under a key-encryption
    key; a retired key stays published until the tokens it signed have expired."""

    __tablename__ = "signing_keys"

    kid: str = Field(primary_key=True, max_length=64)
    alg: str = Field(max_length=16)
    public_jwk: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    private_jwk_encrypted: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = _ts(nullable=False)
    activated_at: datetime = _ts(nullable=False)
    retired_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


class Service(Base, table=True):
    """A service in the directory, in the shape of an Open Referral HSDS 3 service."""

    __tablename__ = "services"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    organization_id: uuid.UUID = Field(foreign_key="organizations.id", index=True)
    name: str = Field(max_length=200)
    description: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    category: str = Field(max_length=32, index=True)
    status: str = Field(default="active", max_length=24, index=True)
    languages: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    service_areas: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    eligibility: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    capacity_maximum: int | None = None
    accepting: bool = True
    accept_within_seconds: int = 72 * 3600
    url: str | None = Field(default=None, max_length=500)
    email: str | None = Field(default=None, max_length=200)
    version: int = 1
    created_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)


class ServiceArea(Base, table=True):
    """One area code a service covers (searchable: a query for SO1101 finds SO11 and SO)."""

    __tablename__ = "service_areas"

    service_id: uuid.UUID = Field(
        sa_column=Column(Uuid, ForeignKey("services.id", ondelete="CASCADE"), primary_key=True)
    )
    area_code: str = Field(sa_column=Column(String(16), primary_key=True, index=True))


class ServiceLanguage(Base, table=True):
    __tablename__ = "service_languages"

    service_id: uuid.UUID = Field(
        sa_column=Column(Uuid, ForeignKey("services.id", ondelete="CASCADE"), primary_key=True)
    )
    language: str = Field(sa_column=Column(String(16), primary_key=True, index=True))


metadata = Base.metadata
outbox_table, inbox_table = messaging_tables(metadata)
idempotency_keys = idempotency_table(metadata)
