"""The four services, by name: how to build each one's settings and app. A service's
modules are imported when first asked for: a command about one service, or none,
does not load all four."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from fastapi import FastAPI

    from icrs_shared.settings import ServiceSettings


@dataclass(frozen=True)
class ServiceEntry:
    name: str
    #: The name of its settings class in `<package>.settings`.
    settings_class: str

    @property
    def package(self) -> str:
        return f"icrs_{self.name}"

    def module(self, name: str) -> ModuleType:
        return importlib.import_module(f"{self.package}.{name}")

    @property
    def settings(self) -> type[ServiceSettings]:
        return cast("type[ServiceSettings]", getattr(self.module("settings"), self.settings_class))

    @property
    def create_app(self) -> Callable[..., FastAPI]:
        return cast("Callable[..., FastAPI]", self.module("app").create_app)

    @cached_property
    def prefixes(self) -> tuple[str, ...]:  # asked on every request of the one process
        return cast("tuple[str, ...]", self.module("app").PATH_PREFIXES)

    def make_settings(self, **overrides: Any) -> ServiceSettings:
        return self.settings(**overrides)


# Partners first: it issues the tokens and keys the others check.
SERVICES: dict[str, ServiceEntry] = {
    "partners": ServiceEntry("partners", "PartnersSettings"),
    "intake": ServiceEntry("intake", "IntakeSettings"),
    "referral": ServiceEntry("referral", "ReferralSettings"),
    "audit": ServiceEntry("audit", "AuditSettings"),
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

    found = [
        (app.SPEC.name, consumer.name)
        for app in (entry.module("app") for entry in SERVICES.values())
        if app.SPEC.consumers is not None
        for consumer in app.SPEC.consumers.items
    ]
    return [*found, ("referral", REFERRAL_VIEW), ("audit", AUDIT_LOG)]
