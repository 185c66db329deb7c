"""The audit service:
the append-only, verifiable event log.
"""

from fastapi import FastAPI

from icrs_shared.auth import JWKSCache
from icrs_shared.bus import Bus
from icrs_shared.runtime import ServiceSpec, build_app

from .api import audit_router, log_router
from .consumers import consumers
from .models import metadata
from .settings import AuditSettings
from .state import start_audit_log, stop_audit_log

#: The path prefixes this service owns in the platform's URL space (contract §1).
PATH_PREFIXES: tuple[str, ...] = ("/v1/log", "/v1/audit")

SPEC = ServiceSpec(
    name="audit",
    package="icrs_audit",
    title="ICRS audit",
    description="the append-only, verifiable event log.",
    metadata=metadata,
    routers=(log_router, audit_router),
    consumers=consumers,
    on_start=(start_audit_log,),
    on_stop=(stop_audit_log,),
)


def create_app(settings: AuditSettings, bus: Bus, *, jwks: JWKSCache | None = None) -> FastAPI:
    """The service's app; the caller owns `bus`. `jwks` overrides where token keys come from."""
    return build_app(SPEC, settings, bus, jwks=jwks)
