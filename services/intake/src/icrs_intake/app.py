"""The intake service:
cases, consent, needs assessments and reintegration plans; the only place personal data lives.
"""

from fastapi import FastAPI

from icrs_shared.auth import JWKSCache
from icrs_shared.bus import Bus
from icrs_shared.runtime import ServiceSpec, build_app

from .api import router
from .consumers import consumers
from .models import metadata
from .settings import IntakeSettings
from .state import start_keyring

#: The path prefixes this service owns in the platform's URL space (contract §1).
PATH_PREFIXES: tuple[str, ...] = ("/v1/cases", "/v1/imports", "/v1/reports/cases")

SPEC = ServiceSpec(
    name="intake",
    package="icrs_intake",
    title="ICRS intake",
    description=(
        "cases, consent, needs assessments and reintegration plans; "
        "the only place personal data lives."
    ),
    metadata=metadata,
    routers=(router,),
    consumers=consumers,
    on_start=(start_keyring,),
    uploads=(("POST", "/v1/imports"),),
)


def create_app(settings: IntakeSettings, bus: Bus, *, jwks: JWKSCache | None = None) -> FastAPI:
    """The service's app; the caller owns `bus`. `jwks` overrides where token keys come from."""
    return build_app(SPEC, settings, bus, jwks=jwks)
