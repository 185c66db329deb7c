"""Webhook subscriptions, their deliveries and each delivery's attempts.

The tables live in the referral service's registry (`..models.Base`), so that its
migrations and its metadata know them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, Text, UniqueConstraint
from sqlmodel import Field

from icrs_shared.http import idempotency_table

from ..models import Base

#: A delivery's states: waiting for its next attempt, answered with a 2xx, given up.
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


def _now() -> datetime:
    return datetime.now(UTC)


def _ts(**kw: Any) -> Any:
    return Field(default_factory=_now, sa_column=Column(DateTime(timezone=True), **kw))


def _opt_ts(**kw: Any) -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True, **kw))


class Webhook(Base, table=True):
    """An organization's endpoint and the referral events it wants."""

    __tablename__ = "webhooks"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    organization_id: uuid.UUID = Field(index=True)
    url: str = Field(max_length=2048)
    #: Routing keys (`referral.created`), or `referral.*` for every referral event.
    event_types: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    description: str | None = Field(default=None, max_length=500)
    #: The signing secret (`whsec_...`); it must be at hand to sign, so it is kept as
    #: issued, and shown only in the answer that created the webhook.
    secret: str = Field(max_length=100, repr=False)
    enabled: bool = True
    #: Deliveries given up on in a row; a delivered one sets it back to zero.
    consecutive_failures: int = 0
    disabled_at: datetime | None = _opt_ts()
    created_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)


class WebhookDelivery(Base, table=True):
    """One event for one webhook, sent until it is answered with a 2xx or given up on."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("webhook_id", "event_id", name="uq_webhook_deliveries_event"),
        Index("ix_webhook_deliveries_listing", "webhook_id", "created_at", "id"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    webhook_id: uuid.UUID = Field(foreign_key="webhooks.id", ondelete="CASCADE")
    event_id: uuid.UUID
    #: The event's routing key, e.g. `referral.accepted`.
    event_type: str = Field(max_length=64)
    #: The CloudEvents envelope, sent as the request body (it holds no personal data).
    payload: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default=PENDING, max_length=16)
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=64)
    #: When a sender may next take it; none once delivered or failed.
    next_attempt_at: datetime | None = _opt_ts(index=True)
    created_at: datetime = _ts(nullable=False, index=True)
    delivered_at: datetime | None = _opt_ts()


class WebhookAttempt(Base, table=True):
    """One request of a delivery: what came back (never the response body) and how fast."""

    __tablename__ = "webhook_attempts"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    delivery_id: uuid.UUID = Field(
        foreign_key="webhook_deliveries.id", ondelete="CASCADE", index=True
    )
    number: int
    attempted_at: datetime = _ts(nullable=False)
    status_code: int | None = None
    #: The class of the error when no status came back (`ConnectError`, `Timeout`).
    error: str | None = Field(default=None, max_length=64)
    duration_ms: int


idempotency_keys = idempotency_table(Base.metadata)
