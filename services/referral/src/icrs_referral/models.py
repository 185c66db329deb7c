"""Tables of the referral service: its own SQLModel registry, so that no other service's
tables can clash with them in one process.

`known_*` tables are the service's view of the others, built from their events only:
what routing needs of organizations, services, cases, consents and needs, never personal
data. Each row remembers the time (and, where the event has one, the version) of the
event it reflects, so that events arriving late or twice change nothing.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, text
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from icrs_shared.tables import messaging_tables

from .lifecycle import ACCEPTED, DECLINED, LIVE, status_in


class Base(SQLModel, registry=registry()):
    pass


def _now() -> datetime:
    return datetime.now(UTC)


def _ts(**kw: Any) -> Any:
    return Field(default_factory=_now, sa_column=Column(DateTime(timezone=True), **kw))


def _opt_ts() -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))


def _json(default: Any = list) -> Any:
    return Field(default_factory=default, sa_column=Column(JSON, nullable=False))


class KnownOrganization(Base, table=True):
    __tablename__ = "known_organizations"

    id: uuid.UUID = Field(primary_key=True)
    kind: str = Field(max_length=32)
    status: str = Field(max_length=16)
    child_safeguarding: bool = False
    event_time: datetime = _ts(nullable=False)


class KnownService(Base, table=True):
    __tablename__ = "known_services"

    id: uuid.UUID = Field(primary_key=True)
    organization_id: uuid.UUID = Field(index=True)
    category: str = Field(max_length=32, index=True)
    #: `active` while routing may use it; its event's status otherwise.
    status: str = Field(max_length=24)
    areas: list[str] = _json()
    languages: list[str] = _json()
    eligibility: dict[str, Any] = _json(dict)
    maximum: int | None = None
    accepting: bool = True
    accept_within_seconds: int = 72 * 3600
    version: int = 0
    event_time: datetime = _ts(nullable=False)


class KnownCase(Base, table=True):
    __tablename__ = "known_cases"

    id: uuid.UUID = Field(primary_key=True)
    organization_id: uuid.UUID = Field(index=True)
    is_minor: bool = False
    sex: str = Field(default="unknown", max_length=16)
    age_band: str = Field(default="unknown", max_length=8)
    area: str | None = Field(default=None, max_length=16)
    languages: list[str] = _json()
    beneficiary_category: str | None = Field(default=None, max_length=32)
    programme_track: str | None = Field(default=None, max_length=16)
    status: str = Field(default="open", max_length=16)
    version: int = 0
    event_time: datetime = _ts(nullable=False)


class KnownConsent(Base, table=True):
    __tablename__ = "known_consents"

    id: uuid.UUID = Field(primary_key=True)
    case_id: uuid.UUID = Field(index=True)
    purposes: list[str] = _json()
    categories: list[str] = _json()
    organizations: list[str] = _json()
    expires_at: datetime | None = _opt_ts()
    #: Withdrawal is final: a late `consent.granted` never makes it active again.
    withdrawn: bool = False
    event_time: datetime = _ts(nullable=False)


class KnownNeed(Base, table=True):
    """A need to route, from `needs.assessed`: its category and priority only."""

    __tablename__ = "known_needs"

    id: uuid.UUID = Field(primary_key=True)
    case_id: uuid.UUID = Field(index=True)
    assessment_id: uuid.UUID
    requester_organization_id: uuid.UUID
    category: str = Field(max_length=32, index=True)
    priority: str = Field(max_length=16)
    #: open (not routed yet), referred, unmatched, closed (the case is no more).
    status: str = Field(default="open", max_length=16, index=True)
    reasons: list[str] = _json()
    attempts: int = 0
    created_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)


class Referral(Base, table=True):
    """A referral of one need to one service; re-routing makes a new one (its `attempt`
    one more, `previous_referral_id` the one it replaces)."""

    __tablename__ = "referrals"
    __table_args__ = (
        # What routing reads of a service, bounded however many referrals it has had:
        # its live referrals, and its latest answered ones.
        Index(
            "ix_referrals_live_service",
            "service_id",
            postgresql_where=text(status_in(LIVE)),
            sqlite_where=text(status_in(LIVE)),
        ),
        Index(
            "ix_referrals_answered_service",
            "service_id",
            "created_at",
            postgresql_where=text(status_in(ACCEPTED | DECLINED)),
            sqlite_where=text(status_in(ACCEPTED | DECLINED)),
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    case_id: uuid.UUID = Field(index=True)
    need_id: uuid.UUID | None = Field(default=None, index=True)
    need_category: str = Field(max_length=32)
    requester_organization_id: uuid.UUID = Field(index=True)
    organization_id: uuid.UUID = Field(index=True)
    service_id: uuid.UUID = Field(index=True)
    status: str = Field(default="requested", max_length=24, index=True)
    attempt: int = 1
    previous_referral_id: uuid.UUID | None = None
    #: The routing decision: the ranked candidates and why the others were left out.
    routing: dict[str, Any] = _json(dict)
    reason: str | None = Field(default=None, max_length=32)
    outcome: str | None = Field(default=None, max_length=64)
    #: Until when the provider may accept; past it, the referral expires.
    accept_by: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True, index=True)
    )
    version: int = 1
    created_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False, index=True)


class ReferralTransition(Base, table=True):
    """A referral's history: each move, when and by whom (a client id, never a person)."""

    __tablename__ = "referral_transitions"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    referral_id: uuid.UUID = Field(index=True)
    from_status: str | None = Field(default=None, max_length=24)
    to_status: str = Field(max_length=24, index=True)
    actor: str = Field(max_length=16)
    actor_id: str | None = Field(default=None, max_length=64)
    at: datetime = _ts(nullable=False)


metadata = Base.metadata
outbox_table, inbox_table = messaging_tables(metadata)

# Webhook tables live in this registry too (imported last: they subclass `Base`).
from .webhooks import models as webhook_models  # noqa: E402, F401
