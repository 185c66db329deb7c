"""The four services, by name: how to build each one's settings and app."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

import icrs_audit.app
import icrs_intake.app
import icrs_partners.app
import icrs_referral.app
from icrs_audit.settings import AuditSettings
from icrs_intake.settings import IntakeSettings
from icrs_partners.settings import PartnersSettings
from icrs_referral.settings import ReferralSettings
from icrs_shared.settings import ServiceSettings


@dataclass(frozen=True)
class ServiceEntry:
    name: str
    settings: type[ServiceSettings]
    create_app: Callable[..., FastAPI]
    prefixes: tuple[str, ...]
    package: str

    def make_settings(self, **overrides: Any) -> ServiceSettings:
        return self.settings(**overrides)


# Partners first: it issues the tokens and keys the others check.
SERVICES: dict[str, ServiceEntry] = {
    "partners": ServiceEntry(
        "partners",
        PartnersSettings,
        icrs_partners.app.create_app,
        icrs_partners.app.PATH_PREFIXES,
        "icrs_partners",
    ),
    "intake": ServiceEntry(
        "intake",
        IntakeSettings,
        icrs_intake.app.create_app,
        icrs_intake.app.PATH_PREFIXES,
        "icrs_intake",
    ),
    "referral": ServiceEntry(
        "referral",
        ReferralSettings,
        icrs_referral.app.create_app,
        icrs_referral.app.PATH_PREFIXES,
        "icrs_referral",
    ),
    "audit": ServiceEntry(
        "audit",
        AuditSettings,
        icrs_audit.app.create_app,
        icrs_audit.app.PATH_PREFIXES,
        "icrs_audit",
    ),
}


def service_for_path(path: str) -> str | None:
    """Which service owns a request path (contract §1), by the longest prefix."""
    best: tuple[int, str] | None = None
    for entry in SERVICES.values():
        for prefix in entry.prefixes:
            if (path == prefix or path.startswith(prefix.rstrip("/") + "/")) and (
                best is None or len(prefix) > best[0]
            ):
                best = (len(prefix), entry.name)
    return best[1] if best else None


def platform_consumers() -> list[tuple[str, str]]:
    """(service, consumer) of every queue the platform consumes: those each service
    declares, and those it subscribes when it starts (the audit log, referral's view)."""
    from icrs_audit.state import CONSUMER as AUDIT_LOG
    from icrs_referral.state import CONSUMER as REFERRAL_VIEW

    apps = (icrs_partners.app, icrs_intake.app, icrs_referral.app, icrs_audit.app)
    found = [
        (app.SPEC.name, consumer.name)
        for app in apps
        if app.SPEC.consumers is not None
        for consumer in app.SPEC.consumers.items
    ]
    return [*found, ("referral", REFERRAL_VIEW), ("audit", AUDIT_LOG)]
