"""Tables of the partners service: its own SQLModel registry, so that no other service's
tables can clash with them in one process."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

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
    created_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)


class Client(Base, table=True):
    __tablename__ = "clients"

    client_id: str = Field(primary_key=True, max_length=64)
    organization_id: uuid.UUID = Field(foreign_key="organizations.id", index=True)
    name: str = Field(max_length=200)
    secret_hash: str = Field(max_length=255)
    scopes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _ts(nullable=False)
    revoked_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


metadata = Base.metadata
outbox_table, inbox_table = messaging_tables(metadata)
