"""Event payloads built from rows: what consumers learn of an organization or a service."""

from __future__ import annotations

from icrs_shared.events.catalog import (
    Capacity,
    ClientEvent,
    Eligibility,
    OrganizationEvent,
    ServiceEvent,
)

from ..models import Client, Organization, Service

_ELIGIBILITY_FIELDS = frozenset(Eligibility.model_fields)


def organization_event(org: Organization) -> OrganizationEvent:
    return OrganizationEvent(
        organization_id=org.id,
        kind=org.kind,
        status=org.status,
        child_safeguarding=org.child_safeguarding,
    )


def service_event(row: Service, *, status: str | None = None) -> ServiceEvent:
    """What routing needs of a service; `status` overrides the row's (a suspended
    organization's services are withdrawn with status `suspended`, their rows unchanged)."""
    eligibility = {k: v for k, v in row.eligibility.items() if k in _ELIGIBILITY_FIELDS}
    return ServiceEvent(
        service_id=row.id,
        organization_id=row.organization_id,
        category=row.category,
        status=status if status is not None else row.status,
        service_areas=list(row.service_areas),
        languages=list(row.languages),
        eligibility=Eligibility.model_validate(eligibility),
        capacity=Capacity(maximum=row.capacity_maximum, accepting=row.accepting),
        accept_within_seconds=row.accept_within_seconds,
        version=row.version,
    )


def client_event(client: Client) -> ClientEvent:
    return ClientEvent(
        client_id=client.client_id,
        organization_id=client.organization_id,
        scopes=sorted(client.scopes),
    )
