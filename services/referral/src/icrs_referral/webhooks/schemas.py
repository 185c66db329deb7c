"""Request and response shapes of webhooks. The signing secret appears in one of them
only: the answer to the request that created the webhook."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    StringConstraints,
    field_validator,
)

from icrs_shared.events import platform_events
from icrs_shared.text import plain_text

if TYPE_CHECKING:
    from .models import WebhookAttempt, WebhookDelivery

#: Hosts a webhook may reach over plain `http://`: the machine itself, for development
#: and for receivers beside the service. Every other URL must use `https://`.
ALLOW_PLAIN_HTTP_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

#: Subscribes to every referral event, including types added later.
ALL_REFERRAL_EVENTS = "referral.*"
#: The names `event_types` accepts: `referral.*` and each referral event's routing key.
EVENT_TYPES: tuple[str, ...] = (
    ALL_REFERRAL_EVENTS,
    *(t.routing_key for t in platform_events() if t.routing_key.startswith("referral.")),
)

DeliveryStatus = Literal["pending", "delivered", "failed"]


def _utc(value: datetime) -> datetime:
    # SQLite gives back naive times; every time the service keeps is UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]


def _check_url(url: HttpUrl) -> HttpUrl:
    if len(str(url)) > 2048:
        raise ValueError("a webhook URL has at most 2048 characters")
    if url.username is not None or url.password is not None:
        raise ValueError("a webhook URL may not carry credentials")
    if url.fragment is not None:
        raise ValueError("a webhook URL may not have a fragment")
    host = (url.host or "").strip("[]").lower()
    if url.scheme != "https" and host not in ALLOW_PLAIN_HTTP_HOSTS:
        raise ValueError("a webhook URL must use https (plain http only to this machine)")
    return url


WebhookUrl = Annotated[HttpUrl, AfterValidator(_check_url)]
Description = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=500), AfterValidator(plain_text)
]


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: WebhookUrl = Field(
        description=(
            "Where deliveries are POSTed. `https://` only, except plain `http://` to "
            "127.0.0.1, localhost or [::1]. Redirects are not followed."
        ),
        examples=["https://partner.example/icrs/webhooks"],
    )
    event_types: list[str] = Field(
        default_factory=lambda: [ALL_REFERRAL_EVENTS],
        min_length=1,
        max_length=len(EVENT_TYPES),
        description="Referral events to receive: routing keys, or `referral.*` for all.",
        json_schema_extra={"items": {"type": "string", "enum": list(EVENT_TYPES)}},
    )
    description: Description | None = None

    @field_validator("event_types", mode="after")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [t for t in value if t not in EVENT_TYPES]
        if unknown:
            raise ValueError("unknown event types: " + ", ".join(sorted(set(unknown))))
        if ALL_REFERRAL_EVENTS in value:
            return [ALL_REFERRAL_EVENTS]
        return sorted(set(value))


class WebhookOut(BaseModel):
    """A webhook, as every answer but the first shows it: without its secret."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    organization_id: uuid.UUID
    url: str
    event_types: list[str]
    description: str | None
    enabled: bool
    consecutive_failures: int = Field(description="Deliveries given up on in a row.")
    disabled_at: UtcDatetime | None
    created_at: UtcDatetime
    updated_at: UtcDatetime


class WebhookCreated(WebhookOut):
    secret: str = Field(
        description=(
            "The signing secret (`whsec_` + base64 of 32 random bytes), shown in this answer "
            "only. Verify each delivery's `webhook-signature` with it."
        )
    )


class DeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="Also the `webhook-id` header of each attempt.")
    webhook_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_error: str | None = Field(description="The error class when no status came back.")
    next_attempt_at: UtcDatetime | None
    created_at: UtcDatetime
    delivered_at: UtcDatetime | None


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    number: int
    attempted_at: UtcDatetime
    status_code: int | None
    error: str | None
    duration_ms: int


class DeliveryDetail(DeliveryOut):
    history: list[AttemptOut] = Field(description="Every attempt so far, first to last.")

    @classmethod
    def of(cls, delivery: WebhookDelivery, attempts: list[WebhookAttempt]) -> DeliveryDetail:
        base = DeliveryOut.model_validate(delivery).model_dump()
        return cls(**base, history=[AttemptOut.model_validate(a) for a in attempts])
