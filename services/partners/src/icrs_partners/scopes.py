"""Scopes (contract §3) and the most each kind of organization may hold."""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    UN_AGENCY = "un_agency"
    NGO = "ngo"
    GOVERNMENT = "government"
    SERVICE_PROVIDER = "service_provider"
    AUDITOR = "auditor"
    PLATFORM = "platform"


ALL_SCOPES: frozenset[str] = frozenset(
    {
        "partners:admin",
        "partners:read",
        "services:manage",
        "cases:write",
        "cases:read",
        "cases:import",
        "referrals:write",
        "referrals:read",
        "referrals:respond",
        "reports:read",
        "audit:read",
    }
)

_CASEWORK = {"cases:write", "cases:read", "referrals:write", "referrals:read", "reports:read"}

KIND_SCOPES: dict[Kind, frozenset[str]] = {
    Kind.PLATFORM: ALL_SCOPES,
    Kind.UN_AGENCY: frozenset(_CASEWORK | {"cases:import", "partners:read"}),
    Kind.NGO: frozenset(_CASEWORK | {"partners:read", "services:manage", "referrals:respond"}),
    Kind.GOVERNMENT: frozenset(_CASEWORK | {"cases:import", "partners:read"}),
    Kind.SERVICE_PROVIDER: frozenset({"partners:read", "services:manage", "referrals:respond"}),
    Kind.AUDITOR: frozenset({"audit:read", "reports:read"}),
}


def beyond_kind(kind: Kind, scopes: set[str] | frozenset[str]) -> set[str]:
    """The requested scopes that an organization of `kind` may not hold."""
    return set(scopes) - KIND_SCOPES[kind]
