"""Tables of the intake service: its own SQLModel registry, so that no other service's
tables can clash with them in one process.

Personal data is never stored in clear: a case's profile, need notes and plan goals are
AES-GCM ciphertexts under the case's data key (`case_keys`), and what must be found by
value (document numbers, names) is found through keyed hashes (`case_index`). What stays
in clear is what routing and reporting need: codes, area, sex, age band, minor flag.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import JSON, Column, Date, DateTime, ForeignKey, Index, LargeBinary, String, Uuid
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


def _opt_ts() -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))


def _json_list() -> Any:
    return Field(default_factory=list, sa_column=Column(JSON, nullable=False))


def _case_fk(**kw: Any) -> Any:
    return Field(sa_column=Column(Uuid, ForeignKey("cases.id"), nullable=False, **kw))


class Case(Base, table=True):
    __tablename__ = "cases"
    __table_args__ = (
        Index("ux_cases_org_external_id", "organization_id", "external_id", unique=True),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    organization_id: uuid.UUID = Field(index=True)
    case_number: str = Field(max_length=32, unique=True, index=True)
    external_id: str | None = Field(default=None, max_length=64)
    status: str = Field(default="open", max_length=16, index=True)
    version: int = 1
    # What routing and reports need, in clear (quasi-identifiers, contract §7).
    sex: str = Field(max_length=16)
    age_band: str = Field(max_length=8)
    is_minor: bool = False
    area: str = Field(max_length=16, index=True)
    languages: list[str] = _json_list()
    beneficiary_category: str = Field(max_length=32)
    programme_track: str = Field(max_length=16)
    # The person's profile: AES-GCM under the case's data key; NULL once erased.
    personal: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    #: Keyed hash of the imported row a case came from: a re-import finds it unchanged.
    source_digest: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    registered_by: str = Field(max_length=64)
    created_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)
    closed_at: datetime | None = _opt_ts()
    erased_at: datetime | None = _opt_ts()


class CaseKey(Base, table=True):
    """A case's data key, wrapped by the master key of `key_version`. Erasure deletes it."""

    __tablename__ = "case_keys"

    case_id: uuid.UUID = Field(sa_column=Column(Uuid, ForeignKey("cases.id"), primary_key=True))
    key_version: int
    wrapped: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class CaseIndex(Base, table=True):
    """Keyed hashes a case is found by: `doc` (document type and number), `name` (a
    name token), `sound` (a phonetic code of a name, for probable duplicates)."""

    __tablename__ = "case_index"
    __table_args__ = (Index("ix_case_index_lookup", "kind", "digest"),)

    case_id: uuid.UUID = Field(sa_column=Column(Uuid, ForeignKey("cases.id"), primary_key=True))
    kind: str = Field(sa_column=Column(String(8), primary_key=True))
    digest: bytes = Field(sa_column=Column(LargeBinary, primary_key=True))


class CaseCounter(Base, table=True):
    """The last case number given in a year."""

    __tablename__ = "case_counters"

    year: int = Field(primary_key=True)
    last: int = 0


class Consent(Base, table=True):
    __tablename__ = "consents"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    case_id: uuid.UUID = _case_fk(index=True)
    organization_id: uuid.UUID
    purposes: list[str] = _json_list()
    recipient_categories: list[str] = _json_list()
    recipient_organizations: list[str] = _json_list()
    given_by: str = Field(max_length=16)
    status: str = Field(default="active", max_length=16)
    expires_at: datetime | None = _opt_ts()
    created_at: datetime = _ts(nullable=False)
    withdrawn_at: datetime | None = _opt_ts()
    recorded_by: str = Field(max_length=64)


class Assessment(Base, table=True):
    __tablename__ = "assessments"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    case_id: uuid.UUID = _case_fk(index=True)
    organization_id: uuid.UUID
    recorded_by: str = Field(max_length=64)
    created_at: datetime = _ts(nullable=False)


class Need(Base, table=True):
    __tablename__ = "needs"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    assessment_id: uuid.UUID = Field(
        sa_column=Column(Uuid, ForeignKey("assessments.id"), nullable=False, index=True)
    )
    case_id: uuid.UUID = _case_fk(index=True)
    category: str = Field(max_length=32)
    priority: str = Field(max_length=16)
    #: The caseworker's note: AES-GCM under the case's data key; NULL once erased.
    note: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    share_note: bool = False
    #: `open`, `unmatched`, or the status of its latest referral (contract §6).
    status: str = Field(default="open", max_length=24)
    #: The time of the referral event that set `status` (events may arrive out of order).
    status_at: datetime | None = _opt_ts()
    #: Why no service fits it (reason codes of `referral.unmatched`), while unmatched.
    unmatched_reasons: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]")
    )
    created_at: datetime = _ts(nullable=False)


class Plan(Base, table=True):
    """The reintegration plan's own text; its items are the case's needs and referrals."""

    __tablename__ = "plans"

    case_id: uuid.UUID = Field(sa_column=Column(Uuid, ForeignKey("cases.id"), primary_key=True))
    version: int = 1
    #: Goals and notes: AES-GCM under the case's data key; NULL once erased.
    content: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    review_date: date | None = Field(default=None, sa_column=Column(Date, nullable=True))
    updated_at: datetime = _ts(nullable=False)
    updated_by: str = Field(max_length=64)


class ReferralLink(Base, table=True):
    """What intake knows of a referral from the referral service's events: enough to
    show it in the plan and to let its provider read the referral view while it is live."""

    __tablename__ = "referral_links"

    referral_id: uuid.UUID = Field(primary_key=True)
    case_id: uuid.UUID = Field(index=True)
    need_id: uuid.UUID | None = Field(default=None, index=True)
    need_category: str = Field(max_length=32)
    provider_organization_id: uuid.UUID = Field(index=True)
    service_id: uuid.UUID
    status: str = Field(max_length=24)
    attempt: int = 1
    outcome: str | None = Field(default=None, max_length=64)
    reason: str | None = Field(default=None, max_length=64)
    #: The time of the last event applied (events may arrive out of order).
    event_time: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)


class Import(Base, table=True):
    __tablename__ = "imports"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    organization_id: uuid.UUID = Field(index=True)
    format: str = Field(max_length=8)
    status: str = Field(default="running", max_length=16)
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    started_at: datetime = _ts(nullable=False)
    finished_at: datetime | None = _opt_ts()
    started_by: str = Field(max_length=64)


class ImportRejection(Base, table=True):
    """A rejected row: its number, the field and the reason (never the value)."""

    __tablename__ = "import_rejections"

    import_id: uuid.UUID = Field(sa_column=Column(Uuid, ForeignKey("imports.id"), primary_key=True))
    row: int = Field(primary_key=True)
    field: str = Field(primary_key=True, max_length=100)
    reason: str = Field(max_length=200)


metadata = Base.metadata
outbox_table, inbox_table = messaging_tables(metadata)
idempotency_keys = idempotency_table(metadata)
