"""The platform's event types (contract §7) and what each carries.

Payloads hold pseudonymous ids, codes and the quasi-identifiers that routing and
reporting need (sex, age band, minor flag, area, languages); never names, birth
dates, document numbers, contact details or free text.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field

from .registry import EventData, EventRegistry

Sex = Literal["female", "male", "other", "unknown"]
AgeBand = Literal["0-11", "12-14", "15-17", "18-24", "25-34", "35-49", "50-64", "65+", "unknown"]


class OrganizationEvent(EventData):
    """An organization's state changed."""

    organization_id: uuid.UUID
    kind: str
    status: str
    child_safeguarding: bool = False


class Eligibility(EventData):
    min_age: int | None = None
    max_age: int | None = None
    sexes: list[str] = Field(default_factory=list)
    beneficiary_categories: list[str] = Field(default_factory=list)
    programme_tracks: list[str] = Field(default_factory=list)
    accepts_minors: bool = False


class Capacity(EventData):
    maximum: int | None = None
    accepting: bool = True


class ServiceEvent(EventData):
    """A service was published, changed or withdrawn: what routing needs of it."""

    service_id: uuid.UUID
    organization_id: uuid.UUID
    category: str
    status: str
    service_areas: list[str] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=list)
    eligibility: Eligibility = Field(default_factory=Eligibility)
    capacity: Capacity = Field(default_factory=Capacity)
    accept_within_seconds: int = 72 * 3600
    version: int = 1


class ClientEvent(EventData):
    """An OAuth client was issued or revoked (never its secret)."""

    client_id: str
    organization_id: uuid.UUID
    scopes: list[str] = Field(default_factory=list)


class CaseEvent(EventData):
    """A case's routing attributes, as of this event."""

    case_id: uuid.UUID
    organization_id: uuid.UUID
    version: int = 1
    is_minor: bool = False
    sex: Sex = "unknown"
    age_band: AgeBand = "unknown"
    area: str | None = None
    languages: list[str] = Field(default_factory=list)
    beneficiary_category: str | None = None
    programme_track: str | None = None
    status: str = "open"


class CaseErased(EventData):
    """A case's personal data was destroyed; its pseudonymous history stays."""

    case_id: uuid.UUID
    organization_id: uuid.UUID


class CaseAccessed(EventData):
    """A partner read a case's referral view: who, for which referral, which fields."""

    case_id: uuid.UUID
    organization_id: uuid.UUID
    referral_id: uuid.UUID | None = None
    fields: list[str] = Field(default_factory=list)


class ConsentEvent(EventData):
    """Consent given or withdrawn, per purpose and recipient."""

    consent_id: uuid.UUID
    case_id: uuid.UUID
    organization_id: uuid.UUID
    purposes: list[str] = Field(default_factory=list)
    recipient_categories: list[str] = Field(default_factory=list)
    recipient_organizations: list[uuid.UUID] = Field(default_factory=list)
    given_by: Literal["self", "guardian"] = "self"
    expires_at: datetime | None = None
    status: Literal["active", "withdrawn", "expired"] = "active"


class AssessedNeed(EventData):
    need_id: uuid.UUID
    category: str
    priority: Literal["urgent", "high", "normal"] = "normal"


class NeedsAssessed(EventData):
    """A needs assessment was recorded; routing starts from it (notes stay in intake)."""

    assessment_id: uuid.UUID
    case_id: uuid.UUID
    organization_id: uuid.UUID
    needs: list[AssessedNeed]


class PlanItem(EventData):
    item_id: uuid.UUID
    category: str
    status: str
    referral_id: uuid.UUID | None = None


class PlanUpdated(EventData):
    """The reintegration plan changed."""

    case_id: uuid.UUID
    organization_id: uuid.UUID
    version: int
    items: list[PlanItem] = Field(default_factory=list)


class ImportCompleted(EventData):
    """A bulk import finished, with its counts."""

    import_id: uuid.UUID
    organization_id: uuid.UUID
    created: int
    updated: int = 0
    unchanged: int
    rejected: int


class ReferralEvent(EventData):
    """A referral moved through its lifecycle."""

    referral_id: uuid.UUID
    case_id: uuid.UUID
    need_id: uuid.UUID | None = None
    need_category: str
    requester_organization_id: uuid.UUID
    organization_id: uuid.UUID
    service_id: uuid.UUID
    status: str
    attempt: int = 1
    reason: str | None = None
    outcome: str | None = None
    previous_referral_id: uuid.UUID | None = None


class ReferralUnmatched(EventData):
    """No service fits a need; the reason codes say why."""

    case_id: uuid.UUID
    need_id: uuid.UUID | None = None
    need_category: str
    requester_organization_id: uuid.UUID
    reasons: list[str]
    attempt: int = 0


class WebhookDeliveryFailed(EventData):
    """A webhook delivery gave up; `disabled` when the endpoint was switched off."""

    webhook_id: uuid.UUID
    organization_id: uuid.UUID
    delivery_id: uuid.UUID
    event_id: uuid.UUID
    attempts: int
    disabled: bool = False


REFERRAL_VERBS = (
    "created",
    "received",
    "accepted",
    "rejected",
    "started",
    "held",
    "resumed",
    "completed",
    "failed",
    "cancelled",
    "expired",
    "rerouted",
)


def platform_events() -> EventRegistry:
    """A registry holding every event type of the contract."""
    reg = EventRegistry()
    for verb in ("registered", "verified", "suspended", "reactivated"):
        reg.register(f"icrs.organization.{verb}", OrganizationEvent, producer="partners")
    for verb in ("published", "updated", "withdrawn"):
        reg.register(f"icrs.service.{verb}", ServiceEvent, producer="partners")
    for verb in ("issued", "revoked"):
        reg.register(f"icrs.client.{verb}", ClientEvent, producer="partners")
    for verb in ("registered", "updated", "closed"):
        reg.register(f"icrs.case.{verb}", CaseEvent, producer="intake")
    reg.register("icrs.case.erased", CaseErased, producer="intake")
    reg.register("icrs.case.accessed", CaseAccessed, producer="intake")
    for verb in ("granted", "withdrawn"):
        reg.register(f"icrs.consent.{verb}", ConsentEvent, producer="intake")
    reg.register("icrs.needs.assessed", NeedsAssessed, producer="intake")
    reg.register("icrs.plan.updated", PlanUpdated, producer="intake")
    reg.register("icrs.import.completed", ImportCompleted, producer="intake")
    for verb in REFERRAL_VERBS:
        reg.register(f"icrs.referral.{verb}", ReferralEvent, producer="referral")
    reg.register("icrs.referral.unmatched", ReferralUnmatched, producer="referral")
    reg.register("icrs.webhook.delivery_failed", WebhookDeliveryFailed, producer="referral")
    return reg
